"""The compiler's subcommands of `voxc` (build, parity, bench, report [--release], inspect), registered by voxc/cli.py,
and the argument helpers other command groups reuse. User mistakes end in one line and exit status 2."""
from __future__ import annotations

import json
import os
from pathlib import Path

from voxc.core.args import checkpoints, csv, set_overrides
from voxc.core.errors import VoxcError, first_line
from voxc.targets import BACKENDS
from voxc.core.providers import HELP as PROVIDERS_HELP
from voxc.targets.base import STAND_IN

EXIT_USER, EXIT_PARITY = 2, 1


_csv, _checkpoints = csv, checkpoints


def _precisions(items: list[str]) -> dict[str, tuple[str, ...]]:
    """--precisions MODEL=P1,P2 (repeatable): a model's ladder, most preferred first, for every runtime."""
    out = {}
    for item in items or []:
        for part in item.split(";"):
            name, sep, ladder = part.partition("=")
            if not sep or not name or not _csv(ladder):
                raise VoxcError(f"--precisions expects MODEL=PRECISION[,PRECISION...], e.g. MODEL=int8,fp32; "
                                f"got '{part}'")
            out[name.strip()] = _csv(ladder)
    return out


def _check_config(preset: dict) -> None:
    """Every graph's spec must come out of the configuration (unknown names, sizes that do not fit)."""
    import torch

    from voxc.models.family import family_of, init_module, model_spec
    fam = family_of(preset)
    for g in fam.graph_names:
        try:
            model_spec(g, preset)
            with torch.device("meta"):          # construction only: no memory, no time
                init_module(g, preset)
        except VoxcError:
            raise
        except Exception as exc:  # noqa: BLE001 -- any failure here is a configuration the family cannot build
            raise VoxcError(f"the configuration does not fit {g} of family {fam.name} ({type(exc).__name__}: "
                            f"{first_line(exc)}); check the --set values") from None


def _request(args):
    from voxc.compiler.request import build_request
    if args.jobs < 1:
        raise VoxcError(f"--jobs must be at least 1, got {args.jobs}")
    if args.margin is not None and not 0 <= args.margin <= 10:
        raise VoxcError(f"--margin must be between 0 and 10 (a speed-up of 1 + margin), got {args.margin}")
    if args.set:
        _check_config(set_overrides(_family_preset(args), args.set))
    import dataclasses
    req = build_request(args.target, args.family, args.preset, artifacts=args.artifacts,
                         models=_csv(args.models) if args.models else (), checkpoints=_checkpoints(args.checkpoint),
                         overrides=set_overrides(_family_preset(args), args.set), seeded=args.seeded, jobs=args.jobs,
                         exporter=args.exporter, precisions=_precisions(args.precisions), margin=args.margin,
                         retime=args.retime,
                         source=args.source, source_files=_pairs(args.source_file, "--from-file", "KIND=PATH"),
                         data=args.data, quantisation=args.quantisation)
    return dataclasses.replace(req, quiet=getattr(args, "quiet", False), **_distributed(args))


def _distributed(args) -> dict:
    """--executor, --address, --store, --device-runner: where the stages run and where their outputs live."""
    if args.executor != "ray" and (args.address or args.store or args.device_runner):
        raise VoxcError("--address, --store and --device-runner need --executor ray")
    return {"executor": args.executor, "address": args.address, "store": args.store,
            "device_runner": args.device_runner}


def _pairs(items, flag: str, form: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        k, sep, v = item.partition("=")
        if not sep or not k or not v:
            raise VoxcError(f"{flag} expects {form}, got '{item}'")
        out[k.strip()] = v.strip()
    return out


def _family_preset(args) -> dict:
    from voxc.models.family import family
    fam = family(args.family)
    return fam.preset(args.preset or fam.default_preset)


def cmd_build(args) -> int:
    from voxc.compiler.build import build
    if args.matrix:
        from voxc.compiler.matrix import build_matrix
        return 0 if build_matrix(Path(args.matrix), Path(args.artifacts), jobs=args.jobs, quiet=args.quiet,
                              **_distributed(args)) \
            else EXIT_PARITY
    return 0 if build(_request(args)) else EXIT_PARITY


def cmd_parity(args) -> int:
    """Re-run parity for an already built target against its recorded reference weights."""
    from voxc.compiler.build import audio_folder
    from voxc.compiler.verify import verify_target
    from voxc.core import providers
    providers.use(args.providers)
    with audio_folder(Path(args.data) if getattr(args, "data", None) else None):
        return 0 if verify_target(Path(args.artifacts), args.target) else EXIT_PARITY


def cmd_report(args) -> int:
    """Print a target's parity summary; with --merge, first fold a device bundle's parity.json into it;
    with --release, write the release report across every target under --artifacts."""
    from voxc.compiler import deferred, report
    if args.release:
        if args.merge:
            raise VoxcError("--release reads every target as merged so far; run --merge first, then --release")
        from voxc.compiler.release import release
        page, doc = release(Path(args.artifacts), Path(args.out) if args.out else None,
                            baseline=Path(args.baseline) if args.baseline else None)
        for line in (doc.get("gate") or {}).get("lines", []):
            print(f"voxc: release gate: {line}")
        print(f"voxc: release report {page} (+ {page.with_suffix('.json').name}) over "
              f"{', '.join(t['target'] + ' ' + t['status'].upper() for t in doc['targets'])}; "
              f"verdict {doc['verdict'].upper()}")
        return EXIT_PARITY if doc["verdict"] == "fail" else 0
    if args.out or args.baseline:
        raise VoxcError(f"{'--out' if args.out else '--baseline'} goes with --release")
    folder = Path(args.artifacts) / args.target
    if args.merge:
        from voxc.compiler.merge import merge
        status = merge(Path(args.artifacts), args.target, Path(args.merge))
        print(f"voxc: merged {args.merge} into the reports of {folder}; target {args.target} parity {status.upper()}")
    from voxc.core.target import read
    rows = read(folder).parity.results
    print(report.parity_markdown(args.target, rows).split("\n## All checks")[0])
    return EXIT_PARITY if deferred.status(rows) == "fail" else 0


def cmd_bench(args) -> int:
    from voxc.compiler.bench import bench_target
    if args.runs is not None and args.runs < 1:
        raise VoxcError(f"--runs must be at least 1, got {args.runs}")
    bench_target(Path(args.artifacts), args.target, quick=args.quick, runs=args.runs, texts=tuple(args.text or ()),
                 inputs=_pairs(args.input, "--input", "NAME=VALUE"))
    return 0


def cmd_inspect(args) -> int:
    from voxc.compiler.inspect_cmd import inspect_path
    print(inspect_path(Path(args.path)))
    return 0


def target_arguments(sp) -> None:
    """--target and --artifacts, as every command on a built target takes them."""
    from voxc.targets.profiles import names
    sp.add_argument("--target", default=os.environ.get("TARGET", "cpu"),
                    help=f"target profile: {', '.join(names())} (default: $TARGET if set, else cpu)")
    sp.add_argument("--artifacts", default="artifacts", help="artifacts folder (cache and per-target outputs)")


def register(sub) -> None:
    common = target_arguments

    b = sub.add_parser("build", help="export, simplify, build and parity-check every model for a target")
    common(b)
    b.add_argument("--family", default="voxc", help="model family (models/<family>/)")
    b.add_argument("--models", help="comma-separated subset of the family's graphs")
    b.add_argument("--preset", help="size preset of the family (voxc: tiny, light, base; default: its trained voice, light)")
    b.add_argument("--checkpoint", action="append", metavar="NAME=PATH", help="weights for one model")
    b.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one preset value")
    b.add_argument("--data", metavar="DIR", help="calibrate and check on your own audio: a folder of .wav/.flac files "
                   "(read with the family's mel front end)")
    b.add_argument("--quantisation", metavar="FILE.toml", help="int8 settings per runtime and graph, as a profile's "
                   "[options.<runtime>.models.<graph>] tables (override the family's and the target's)")
    b.add_argument("--exporter", default="dynamo", choices=["dynamo", "torchscript"])
    b.add_argument("--jobs", type=int, default=2, help="worker processes (1 runs stages inline)")
    b.add_argument("--quiet", action="store_true",
                   help="no line per stage nor heartbeat: only warnings, errors and the closing line")
    b.add_argument("--precisions", action="append", metavar="MODEL=P1,P2",
                   help="override a model's precision ladder, most preferred first (e.g. MODEL=int8,fp32)")
    b.add_argument("--margin", type=float, help="speed margin a lower precision must win by (default 0.10)")
    b.add_argument("--retime", action="store_true",
                   help="re-measure the precision policy's timings instead of reusing cached ones")
    b.add_argument("--from", dest="source", metavar="DIR",
                   help="import the family's own checkpoints from DIR (emotivoice: an EmotiVoice checkout)")
    b.add_argument("--from-file", dest="source_file", action="append", metavar="KIND=PATH",
                   help="one file of the import, e.g. generator=g_00140000 (emotivoice kinds: generator, "
                        "style_encoder, bert, config, tokens, speakers, lexicon)")
    b.add_argument("--seeded", action="store_true",
                   help="seeded random weights instead of the trained voice (voice/weights) for the light preset")
    b.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="where stages run: a local process pool, or Ray tasks (pip install -e '.[ray]')")
    b.add_argument("--address", help="Ray cluster: HOST:PORT, ray://HOST:PORT or auto (default: a private local Ray)")
    b.add_argument("--store", metavar="DIR|file:///PATH",
                   help="shared content-addressed cache every Ray node reaches (default: ARTIFACTS/cache)")
    b.add_argument("--device-runner", choices=list(BACKENDS),
                   help=f"runner of the device stage on a device node (default: the target's; {STAND_IN} = stand-in)")
    b.add_argument("--matrix", metavar="VOICES.toml",
                   help="build several voices x targets in one graph (compiler/matrix.py); ignores --target")
    b.set_defaults(func=cmd_build)

    n = sub.add_parser("bench", help="latency, RTF, size and memory of a built target vs PyTorch eager")
    common(n)
    n.add_argument("--quick", action="store_true", help="few runs, short shapes (for tests)")
    n.add_argument("--runs", type=int, help="timed runs per measurement (default 20, --quick 3)")
    n.add_argument("--text", action="append", help="also time text -> waveform for this text (repeatable)")
    n.add_argument("--input", action="append", metavar="NAME=VALUE",
                   help="a pipeline input for the --text runs, e.g. prompt=开心 or speaker_name=5 (emotivoice)")
    n.set_defaults(func=cmd_bench)

    q = sub.add_parser("parity", help="re-check a built target's artifacts against PyTorch")
    q.add_argument("--data", metavar="DIR", help="the audio folder the target was built with (voxc build --data)")
    common(q)
    q.add_argument("--providers", help=PROVIDERS_HELP)
    q.set_defaults(func=cmd_parity)

    r = sub.add_parser("report", help="print a target's parity report; --merge folds in a device bundle's result")
    common(r)
    r.add_argument("--merge", metavar="DEVICE_PARITY.json", help="parity.json written by a device bundle's verify.py")
    r.add_argument("--release", action="store_true",
                   help="write the release report (HTML with A/B audio and plots, and its JSON) across every "
                        "target under --artifacts (ignores --target)")
    r.add_argument("--out", metavar="FILE.html", help="where --release writes (default ARTIFACTS/release.html)")
    r.add_argument("--baseline", metavar="PREV",
                   help="with --release: the previous release's release.json (or its folder); exit 1 on a "
                        "regression beyond the stated tolerances or a failing target")
    r.set_defaults(func=cmd_report)

    i = sub.add_parser("inspect", help="inputs, outputs, dynamic dims and op histogram of an ONNX file or target")
    i.add_argument("path")
    i.set_defaults(func=cmd_inspect)


