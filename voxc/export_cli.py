"""`voxc export triton`: package a built target for a serving system (voxc/triton.py)."""
from __future__ import annotations

from pathlib import Path


def cmd_export_triton(args) -> int:
    from voxc.triton import export
    out = Path(args.out)
    s = export(Path(args.artifacts) / args.target, out, runtime=args.runtime, max_queue_delay_us=args.max_queue_delay_us,
               instances=args.instances, chunk=args.chunk_frames, force=args.force, threads=args.threads)
    print(f"voxc: Triton model repository {out} ({len(s['graphs'])} graph models, {s['runtime']}); see {out / 'README.md'}")
    return 0


def register(sub) -> None:
    from voxc.compiler.cli import target_arguments
    e = sub.add_parser("export", help="package a built target for a serving system").add_subparsers(
        dest="format", required=True)
    t = e.add_parser("triton", help="a Triton Inference Server model repository: one model per graph, the "
                                    "pipeline as a Python-backend (BLS) model and a decoupled streaming variant")
    target_arguments(t)
    t.add_argument("--out", required=True, help="repository folder to write (refused if not empty, unless --force)")
    t.add_argument("--runtime", help="which of the target's runtimes Triton serves (default: the profile's first)")
    t.add_argument("--max-queue-delay-us", type=int, default=100, help="dynamic batching queue delay")
    t.add_argument("--instances", type=int, default=1, help="instances per model (instance_group count)")
    t.add_argument("--threads", type=int, default=1, help="CPU threads per instance of each graph model")
    t.add_argument("--chunk-frames", type=int, help="streaming chunk length (default: the last graph's export length)")
    t.add_argument("--force", action="store_true", help="replace a non-empty --out")
    t.set_defaults(func=cmd_export_triton)
