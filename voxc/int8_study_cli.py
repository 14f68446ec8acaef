"""`voxc bench --int8-study`: the INT8 study's options on the compiler's bench command (voxc/int8_study.py)."""
from __future__ import annotations

from pathlib import Path

from voxc.core.errors import VoxcError


def cmd_bench(args) -> int:
    """The study when --int8-study is given, else the compiler's latency benchmark."""
    from voxc.compiler.cli import cmd_bench as latency_bench
    if not args.int8_study:
        return latency_bench(args)
    if args.runs is not None and args.runs < 1:
        raise VoxcError(f"--runs must be at least 1, got {args.runs}")
    from voxc import int8_study
    models = tuple(m for m in (args.models or ",".join(int8_study.DEFAULT_MODELS)).split(",") if m)
    runtimes = tuple(r for r in (args.runtimes or ",".join(int8_study.RUNTIMES)).split(",") if r)
    names = set(args.configs.split(",")) if args.configs else None
    _check_study(int8_study, models, runtimes, names)
    doc = int8_study.run_study(Path(args.artifacts), args.target, models, runtimes, names, runs=args.runs)
    print(int8_study.study_markdown(doc))
    return 0


def _check_study(study, models: tuple, runtimes: tuple, names: set | None) -> None:
    """--int8-study: runtimes it can build for, and configurations that exist (no empty table)."""
    unknown = [r for r in runtimes if r not in study.RUNTIMES]
    if unknown or not runtimes:
        raise VoxcError(f"--runtimes {','.join(unknown) or '(none)'}: the INT8 study builds for "
                        f"{', '.join(study.RUNTIMES)}; choose from those")
    if names is not None:
        known = {k for m in models for c in study.configs_for(m, runtimes) for k in (c["name"], f"{c['runtime']}/{c['name']}")}
        if names - known:
            raise VoxcError(f"--configs {','.join(sorted(names - known))}: no such configuration for {', '.join(models)} on "
                            f"{', '.join(runtimes)}; `voxc bench --int8-study` without --configs runs them all")


def register(sub) -> None:
    """Adds the study's options to the `bench` parser the compiler registered."""
    n = sub.choices["bench"]
    n.add_argument("--int8-study", action="store_true",
                   help="search INT8 configurations (speed vs worst PESQ-WB Pareto table; voxc/int8_study.py) "
                        "instead of the latency benchmark")
    n.add_argument("--models", help="--int8-study: comma-separated models (default: the study's, voxc/int8_study.py)")
    n.add_argument("--runtimes", help="--int8-study: comma-separated runtimes (default: the target's host runtimes)")
    n.add_argument("--configs", help="--int8-study: only these configurations (NAME or RUNTIME/NAME, comma-separated)")
    n.set_defaults(func=cmd_bench)
