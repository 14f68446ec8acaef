"""Subcommands of the reference voice, registered into `voxc`: train, voice-report, synth."""
from __future__ import annotations

import json
from pathlib import Path


def cmd_train(args) -> int:
    from voxc.voice import train
    if args.install:
        print(json.dumps(train.install(args.preset, Path(args.out), loops=args.models or None), indent=1))
        return 0
    train.train(args.models or list(train.TRAINABLE), args.preset, args.corpus, args.out, args.seed,
                args.threads, {"steps": args.steps, "minutes": args.minutes, "lr": args.lr, "batch": args.batch,
                               "segment_frames": args.segment_frames, "init": args.init})
    return 0


def cmd_report(args) -> int:
    from voxc.voice.quality import report
    result = report(args.corpus, args.out, _ckpts(args.checkpoint), args.vocoder_utts, args.acoustic_utts,
                    asr_python=args.asr_python)
    print(json.dumps({k: result[k] for k in ("vocoder", "acoustic", "speaker_encoder", "emotion_encoder",
                                             "intelligibility", "bars")}, indent=1))
    print(f"voxc: wrote {args.out}")
    return 0


def cmd_synth(args) -> int:
    from voxc.voice.synth import synth
    info = synth(args.text, args.speaker_ref, args.output, args.style, args.style_ref, _ckpts(args.checkpoint))
    print(f"voxc: wrote {info['out']} ({info['seconds']} s, {len(info['phonemes'])} phonemes, {info['frames']} frames)")
    return 0


def _ckpts(items):
    from voxc.core.args import checkpoints
    return {k: str(v) for k, v in checkpoints(items).items()}


def register(sub) -> None:
    from voxc.models.voxc import FAMILY
    from voxc.voice.data import DEFAULT_CORPUS, STYLES
    TRAIN_DIR, TRAINABLE = Path("artifacts/train"), tuple(FAMILY.training)   # as voice/train.py (torch-free here)

    t = sub.add_parser("train", help="train the reference voice on the corpus (CPU, resumable, seeded)")
    t.add_argument("models", nargs="*", help=f"subset of {', '.join(TRAINABLE)} (default: all, in order)")
    t.add_argument("--preset", default="light")
    t.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="folder with the corpus npz files")
    t.add_argument("--out", default=str(TRAIN_DIR), help="checkpoints and logs (resumed when present)")
    t.add_argument("--seed", type=int, help="default: the preset's seed")
    t.add_argument("--threads", type=int, default=1, help="torch threads for this process")
    t.add_argument("--steps", type=int, help="override the model's step count")
    t.add_argument("--minutes", type=float, help="override the model's wall-time budget")
    t.add_argument("--lr", type=float, help="override the peak learning rate")
    t.add_argument("--batch", type=int, help="override the batch size")
    t.add_argument("--segment-frames", type=int, help="vocoder: training segment length in frames")
    t.add_argument("--init", help="vocoder: start from these weights (.safetensors) instead of the seeded init")
    t.add_argument("--install", action="store_true",
                   help="copy trained weights to voice/weights/ (only the named models' when models are given)")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("voice-report", help="quality of the trained voice on the held-out set -> quality.json")
    r.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    r.add_argument("--out", default="artifacts/voice/quality.json")
    r.add_argument("--checkpoint", action="append", metavar="NAME=PATH", help="weights for one model")
    r.add_argument("--vocoder-utts", type=int, default=48)
    r.add_argument("--acoustic-utts", type=int, default=60)
    r.add_argument("--asr-python", help="an interpreter with pocketsphinx for the intelligibility check "
                                        "(default: this one; skipped when it lacks pocketsphinx)")
    r.set_defaults(func=cmd_report)

    s = sub.add_parser("synth", help="text -> wav with the PyTorch reference of the trained voice")
    s.add_argument("text")
    s.add_argument("--speaker-ref", required=True, help="a wav of the target speaker (any rate, mono or stereo)")
    s.add_argument("--style", default="neutral", choices=STYLES)
    s.add_argument("--style-ref", help="a wav whose speaking style to copy (overrides --style)")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--checkpoint", action="append", metavar="NAME=PATH", help="weights for one model")
    s.set_defaults(func=cmd_synth)
