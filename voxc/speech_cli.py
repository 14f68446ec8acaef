"""Speech commands over a built target (no PyTorch): `voxc speak`, `voxc serve`, `voxc loadtest`, `voxc soak`."""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from voxc.core.errors import VoxcError
from voxc.core.providers import HELP as PROVIDERS_HELP
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


def built_folder(args) -> Path:
    """The built target folder a speech command reads. `--target` means what it means for `voxc build`, a target
    name (the folder is ARTIFACTS/NAME); a folder is given as such (`--folder DIR`, or serve's positional FOLDER).
    Either one given as the other is one line saying which to use."""
    from voxc.targets import profiles
    flag = "--folder " if args.command == "speak" else ""
    if args.folder is not None:
        folder = Path(args.folder)
        if folder.is_dir():
            if args.target_given:
                raise VoxcError(f"give a built folder or --target NAME, not both ({args.folder} and --target "
                                f"{args.target})")
            return folder
        if args.folder in profiles.names() and (Path(args.artifacts) / args.folder).is_dir():
            raise VoxcError(f"{args.folder} is a target name, not a folder: pass --target {args.folder} (reads "
                            f"{Path(args.artifacts) / args.folder})")
        raise VoxcError(f"{flag}{args.folder} is not a folder: give a built target folder, e.g. artifacts/cpu "
                        "(`voxc build --target cpu` makes it)")
    name = args.target
    if "/" in name or "\\" in name or (name not in profiles.names() and Path(name).is_dir()):
        raise VoxcError(f"--target takes a target name ({', '.join(profiles.names())}), not a folder: pass the "
                        f"built folder as {flag}{name}")
    folder = Path(args.artifacts) / name
    if not folder.is_dir():
        raise VoxcError(f"target {name} is not built in {args.artifacts}: run `voxc build --target {name}`, or pass "
                        f"--artifacts DIR where it was built, or a built folder as {flag}DIR")
    return folder


def cmd_speak(args) -> int:
    from voxc.core import audio
    from voxc.core.wav_file import write_wav
    from voxc.runtime import Voice
    from voxc.core import providers
    providers.use(args.providers)
    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir() or out.suffix.lower() != ".wav":
        raise VoxcError(f"-o {out}: give a .wav file path in an existing folder")
    voice = Voice.open(built_folder(args), runtime=args.runtime)
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
        samples = write_wav(out, chunks, voice.sample_rate)     # as it is made; a full disk is one line
    _warn_letter_to_sound(caught)
    timings = stats["timings"]
    extra = f", first audio after {stats['ttfa_ms']:.0f} ms in {stats['chunks']} chunks" if args.stream else ""
    total = sum(timings.values())
    print(f"voxc: wrote {out} ({samples / voice.sample_rate:.2f} s of audio, {total:.0f} ms of model time{extra})")
    return 0


def cmd_serve(args) -> int:
    import math
    import os
    from voxc.openai_api import parse_voice_map
    from voxc.server import check_host, serve
    if not 0 < args.port < 65536:
        raise VoxcError(f"--port must be in 1..65535, got {args.port}")
    if args.cache_size < 0 or args.batch_window_ms < 0 or args.workers < 1 or args.queue < 0:
        raise VoxcError("--cache-size, --batch-window-ms and --queue must be >= 0 and --workers >= 1")
    if args.threads is not None and args.threads < 0:
        raise VoxcError(f"--threads must be >= 0 (0: the runtime's default), got {args.threads}")
    timeouts = {"--request-timeout": args.request_timeout, "--drain-timeout": args.drain_timeout,
                "--stall-timeout": args.stall_timeout, "--header-timeout": args.header_timeout,
                "--body-timeout": args.body_timeout}
    bad = [k for k, v in timeouts.items() if not math.isfinite(v) or v <= 0]
    if bad:
        raise VoxcError(f"{', '.join(bad)} must be a positive number of seconds")
    check_host(args.host)
    parse_voice_map(args.voice_map)
    from voxc.core import providers
    providers.use(args.providers)
    serve(built_folder(args), host=args.host, port=args.port, runtime=args.runtime, threads=args.threads,
          workers=args.workers, queue=args.queue, cache_size=args.cache_size, batch_window_ms=args.batch_window_ms,
          request_timeout=args.request_timeout, drain_timeout=args.drain_timeout, stall_timeout=args.stall_timeout,
          header_timeout=args.header_timeout, body_timeout=args.body_timeout,
          api_key=args.api_key or os.environ.get("VOXC_API_KEY") or None, cors_origins=args.cors_origin or (),
          docs=args.docs, voice_overrides=parse_voice_map(args.voice_map), default_voice=args.default_voice)
    return 0


def cmd_loadtest(args) -> int:
    from voxc.loadgen import run_loadtest
    items = [c.strip() for c in args.clients.split(",") if c.strip()]
    if not items or not all(c.isdigit() for c in items) or min(int(c) for c in items) < 1:
        raise VoxcError(f"--clients must be positive counts, e.g. 1,4,16; got '{args.clients}'")
    clients = [int(c) for c in items]
    if args.requests < 1:
        raise VoxcError(f"--requests must be at least 1, got {args.requests}")
    import shlex
    doc = run_loadtest(built_folder(args), clients, args.requests, modes=tuple(args.modes.split(",")), text=args.text,
                       server_args=shlex.split(args.server_args or ""))
    print(json.dumps(doc["summary"], indent=1))
    return 0


def cmd_soak(args) -> int:
    import shlex
    from voxc.soak import run_soak
    doc = run_soak(built_folder(args), args.minutes, args.max_requests, args.clients, slow_s=args.slow_s,
                   rss_growth_mb=args.rss_growth_mb, server_args=shlex.split(args.server_args or ""))
    print(json.dumps(doc, indent=1))
    return 0 if doc["passed"] else 1


class _TargetName(argparse.Action):
    """--target NAME, remembering that it was given (a folder and a name together are refused)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.target_given = True


def _where(p, positional: bool) -> None:
    """The options naming which built target a speech command reads: a target name (as for `voxc build`) under
    --artifacts, or a built folder."""
    if positional:
        p.add_argument("folder", nargs="?", metavar="FOLDER",
                       help="a built target folder, e.g. artifacts/cpu (default: ARTIFACTS/TARGET)")
    else:
        p.add_argument("--folder", metavar="DIR", help="a built target folder (default: ARTIFACTS/TARGET)")
    p.add_argument("--target", action=_TargetName, default=os.environ.get("TARGET", "cpu"),
                   help="the target name it was built for, as given to `voxc build --target`")
    p.add_argument("--artifacts", default="artifacts", help="the artifacts folder the target was built in")
    p.set_defaults(target_given=False)


def register(sub) -> None:
    s = sub.add_parser("speak", help="text -> a wav file with a built target's artifacts (no PyTorch)")
    s.add_argument("text")
    _where(s, positional=False)
    s.add_argument("-o", "--out", default="speech.wav")
    s.add_argument("--voice", help="a built-in voice name (see `voxc serve` GET /v1/voices)")
    s.add_argument("--speaker-ref", help="a reference recording of the speaker (voxc family)")
    s.add_argument("--speaker", help="a speaker name or id of the voice (emotivoice family)")
    s.add_argument("--style", help="a style name (voxc: neutral, fast_high, slow_low) or emotion prompt (emotivoice)")
    s.add_argument("--style-ref", help="a recording in the wanted style (voxc family)")
    s.add_argument("--speed", type=float, help="speaking rate (2.0 = twice as fast)")
    s.add_argument("--runtime", help="which runtime's artifacts (default: the first this host runs)")
    s.add_argument("--stream", action="store_true", help="synthesize in streamed chunks (reports time to first audio)")
    s.add_argument("--providers", help=PROVIDERS_HELP)
    s.set_defaults(func=cmd_speak)

    v = sub.add_parser("serve", help="an HTTP speech server (OpenAI-compatible /v1/audio/speech) over a target")
    _where(v, positional=True)
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--runtime", help="which runtime's artifacts (default: the first this host runs)")
    v.add_argument("--workers", type=int, default=4, help="syntheses in flight at once")
    v.add_argument("--threads", type=int, help="intra-op threads per graph run (default: the runtime's)")
    v.add_argument("--providers", help=PROVIDERS_HELP)
    v.add_argument("--cache-size", type=int, default=256, help="speaker/style embeddings kept (0: no cache)")
    v.add_argument("--batch-window-ms", type=float, default=0.0,
                   help="batch the vocoder's chunks of concurrent requests arriving within this window (default 0: "
                        "off; on this 2-core CPU batching lowered throughput, see README)")
    v.add_argument("--queue", type=int, default=32, help="requests that may wait behind them (then 503)")
    v.add_argument("--request-timeout", type=float, default=120.0,
                   help="seconds a speech request may take, audio sent included (default 120)")
    v.add_argument("--drain-timeout", type=float, default=30.0,
                   help="on SIGTERM, seconds in-flight requests get to finish (default 30)")
    v.add_argument("--stall-timeout", type=float, default=30.0,
                   help="/health fails when no synthesis step finished for this long while work waits (default 30)")
    v.add_argument("--header-timeout", type=float, default=10.0, help="seconds a request's headers may take")
    v.add_argument("--body-timeout", type=float, default=10.0, help="seconds a request's body may take")
    v.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (default: $VOXC_API_KEY; none: open)")
    v.add_argument("--cors-origin", action="append", help="an origin browsers may call from (repeatable)")
    v.add_argument("--docs", action="store_true", help="serve /docs and /openapi.json")
    v.add_argument("--voice-map", help="OpenAI voice names -> built-in voices, e.g. alloy=NAME,echo=NAME "
                                       "(default: the built-in voices in turn)")
    v.add_argument("--default-voice", help="the voice of requests naming none (default: the first built-in voice)")
    v.set_defaults(func=cmd_serve)

    lt = sub.add_parser("loadtest", help="drive a real `voxc serve` with concurrent clients; results into bench.json")
    _where(lt, positional=True)
    lt.add_argument("--clients", default="1,4,16", help="concurrency levels")
    lt.add_argument("--requests", type=int, default=4, help="requests per client per level")
    lt.add_argument("--modes", default="default", help="server modes to compare: default,batch,no-cache")
    lt.add_argument("--text", help="one fixed text for every request (default: a mix of held-out texts)")
    lt.add_argument("--server-args", help="extra `voxc serve` options, e.g. \"--workers 2 --queue 64\"")
    lt.set_defaults(func=cmd_loadtest)

    sk = sub.add_parser("soak", help="mixed clients (SDK, hang-ups, slow readers, oversized bodies) against a real "
                                     "`voxc serve`, then checks it recovered")
    _where(sk, positional=True)
    sk.add_argument("--minutes", type=float, default=10.0)
    sk.add_argument("--max-requests", type=int, default=20000)
    sk.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    sk.add_argument("--slow-s", type=float, default=5.0, help="how long a slow reader reads before leaving")
    sk.add_argument("--rss-growth-mb", type=float, default=300.0, help="largest RSS growth that passes")
    sk.add_argument("--server-args", help="extra `voxc serve` options")
    sk.set_defaults(func=cmd_soak)
