"""Speech commands over a built target (no PyTorch): `voxc speak`, `voxc serve`, `voxc loadtest`."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from voxc.core.errors import VoxcError
from voxc.models.text import LetterToSound


def _read_wav(path: str):
    import numpy as np
    import soundfile as sf
    from voxc.core import audio
    try:
        wave, sr = sf.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError) as exc:
        raise VoxcError(f"cannot read {path} as audio ({type(exc).__name__}); pass a WAV or FLAC file") from None
    if sr != audio.SAMPLE_RATE:
        raise VoxcError(f"{path} is {sr} Hz; voxc voices take {audio.SAMPLE_RATE} Hz references (resample it first)")
    wave = wave.mean(axis=1)
    if wave.size < audio.SAMPLE_RATE // 2 or not np.isfinite(wave).all() or np.sqrt(np.mean(wave ** 2)) < 1e-4:
        raise VoxcError(f"{path} is shorter than 0.5 s, silent or not finite; record at least a second of speech")
    return wave


def _warn_letter_to_sound(caught) -> None:
    """One line for every English word the front end read by rule (none of the voice's lexicons had it)."""
    words = sorted({w.message.word for w in caught if isinstance(w.message, LetterToSound)})
    if words:
        print(f"voxc: warning: {len(words)} English word(s) are in no lexicon of this voice and were read by "
              f"letter-to-sound rules ({', '.join(words[:8])}{' ...' if len(words) > 8 else ''}); they may sound "
              "unlike the voice's training (EmotiVoice: import its lexicon/librispeech-lexicon.txt)", file=sys.stderr)


def cmd_speak(args) -> int:
    import numpy as np
    import soundfile as sf
    from voxc.core import audio
    from voxc.core.atomic import atomic_path
    from voxc.runtime import Voice
    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir() or out.suffix.lower() != ".wav":
        raise VoxcError(f"-o {out}: give a .wav file path in an existing folder")
    voice = Voice.open(args.target, runtime=args.runtime)
    options = {"style": args.style, "speed": args.speed}
    if args.speaker_ref:
        options["speaker_ref"] = _read_wav(args.speaker_ref)
    if args.style_ref:
        options["style_ref"] = _read_wav(args.style_ref)
    if args.speaker is not None:
        options["speaker"] = args.speaker
    if args.voice is None and not args.speaker_ref and args.speaker is None:
        args.voice = next(iter(voice.voices()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LetterToSound)
        voice.segments(args.text)                       # refuse what cannot be spoken before writing anything
        voice.validate(args.voice, **options)
        stats: dict = {"timings": {}}
        if args.stream:
            chunks = voice.stream(args.text, args.voice, stats=stats, **options)
        else:
            chunks = audio.joined((w, p) for w, p, _ in voice.pieces(args.text, args.voice, stats["timings"], **options))
        samples = 0
        with atomic_path(out) as tmp:       # written as it is made: memory does not grow with the text
            with sf.SoundFile(str(tmp), "w", voice.sample_rate, 1, subtype="PCM_16", format="WAV") as f:
                for chunk in chunks:
                    f.write(np.clip(chunk, -1, 1))
                    samples += len(chunk)
    _warn_letter_to_sound(caught)
    timings = stats["timings"]
    extra = f", first audio after {stats['ttfa_ms']:.0f} ms in {stats['chunks']} chunks" if args.stream else ""
    total = sum(timings.values())
    print(f"voxc: wrote {out} ({samples / voice.sample_rate:.2f} s of audio, {total:.0f} ms of model time{extra})")
    return 0


def cmd_serve(args) -> int:
    from voxc.server import serve
    if not 0 < args.port < 65536:
        raise VoxcError(f"--port must be in 1..65535, got {args.port}")
    if args.cache_size < 0 or args.batch_window_ms < 0 or args.workers < 1 or args.queue < 0:
        raise VoxcError("--cache-size, --batch-window-ms and --queue must be >= 0 and --workers >= 1")
    if args.threads is not None and args.threads < 0:
        raise VoxcError(f"--threads must be >= 0 (0: the runtime's default), got {args.threads}")
    serve(args.target, host=args.host, port=args.port, runtime=args.runtime, threads=args.threads,
          max_inflight=args.workers, max_queue=args.queue, cache_size=args.cache_size,
          batch_window_ms=args.batch_window_ms)
    return 0


def cmd_loadtest(args) -> int:
    from voxc.loadgen import run_loadtest
    clients = [int(c) for c in args.clients.split(",") if c.strip()]
    if not clients or min(clients) < 1:
        raise VoxcError(f"--clients must be positive counts, e.g. 1,4,16; got '{args.clients}'")
    if args.requests < 1:
        raise VoxcError(f"--requests must be at least 1, got {args.requests}")
    doc = run_loadtest(Path(args.target), clients, args.requests, modes=tuple(args.modes.split(",")), text=args.text)
    print(json.dumps(doc["summary"], indent=1))
    return 0


def register(sub) -> None:
    s = sub.add_parser("speak", help="text -> a wav file with a built target's artifacts (no PyTorch)")
    s.add_argument("text")
    s.add_argument("--target", default="artifacts/cpu", help="a built target folder")
    s.add_argument("-o", "--out", default="speech.wav")
    s.add_argument("--voice", help="a built-in voice name (see `voxc serve` GET /v1/voices)")
    s.add_argument("--speaker-ref", help="a reference recording of the speaker (voxc family)")
    s.add_argument("--speaker", help="a speaker name or id of the voice (emotivoice family)")
    s.add_argument("--style", help="a style name (voxc: neutral, fast_high, slow_low) or emotion prompt (emotivoice)")
    s.add_argument("--style-ref", help="a recording in the wanted style (voxc family)")
    s.add_argument("--speed", type=float, help="speaking rate (2.0 = twice as fast)")
    s.add_argument("--runtime", help="which runtime's artifacts (default: the first this host runs)")
    s.add_argument("--stream", action="store_true", help="synthesize in streamed chunks (reports time to first audio)")
    s.set_defaults(func=cmd_speak)

    v = sub.add_parser("serve", help="an HTTP speech server (OpenAI-compatible /v1/audio/speech) over a target")
    v.add_argument("target", help="a built target folder, e.g. artifacts/cpu")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--runtime", help="which runtime's artifacts (default: the first this host runs)")
    v.add_argument("--workers", type=int, default=4, help="syntheses in flight at once")
    v.add_argument("--threads", type=int, help="intra-op threads per graph run (default: the runtime's)")
    v.add_argument("--cache-size", type=int, default=256, help="speaker/style embeddings kept (0: no cache)")
    v.add_argument("--batch-window-ms", type=float, default=0.0,
                   help="batch the vocoder's chunks of concurrent requests arriving within this window (default 0: "
                        "off; on this 2-core CPU batching lowered throughput, see README)")
    v.add_argument("--queue", type=int, default=32, help="requests that may wait behind them (then 503)")
    v.set_defaults(func=cmd_serve)

    lt = sub.add_parser("loadtest", help="drive a real `voxc serve` with concurrent clients; results into bench.json")
    lt.add_argument("target", help="a built target folder, e.g. artifacts/cpu")
    lt.add_argument("--clients", default="1,4,16", help="concurrency levels")
    lt.add_argument("--requests", type=int, default=4, help="requests per client per level")
    lt.add_argument("--modes", default="default", help="server modes to compare: default,batch,no-cache")
    lt.add_argument("--text", help="one fixed text for every request (default: a mix of held-out texts)")
    lt.set_defaults(func=cmd_loadtest)
