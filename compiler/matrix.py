"""Farm builds: `voxc build --matrix voices.toml` builds several voices x targets as one graph.

Each (voice, target) is planned as `voxc build` plans it (compiler/build.py); the plans are merged
into one graph in which structurally identical stages -- same function, parameters, code, tools and
identical inputs -- are one stage, run once (the same ONNX export feeds every target of a voice; two
targets sharing a runtime share its artifacts and parity). Identical stages have identical keys, so
merging them changes no output. Target folders go to ARTIFACTS/<voice>/<target>/; the cache (or
--store) is shared by all. One summary: stages planned, distinct, run, cache hits, time.

    [defaults]                          # optional; any voice key
    preset = "tiny"
    targets = ["onnxruntime", "openvino", "jetson"]

    [[voice]]
    name = "ref"                        # folder name under ARTIFACTS
    seeded = true
    [[voice]]
    name = "seed7"
    family = "voxc"                     # voice keys: name, family, preset, targets, models, seeded,
    set = { seed = 7 }                  #   set (--set), checkpoint (--checkpoint), from (--from)
"""
from __future__ import annotations

import dataclasses
import re
import time
import tomllib
from pathlib import Path

from voxc.core.errors import VoxcError, first_line
from voxc.core.hashing import canonical, sha256_bytes
from voxc.core.target import read

VOICE_KEYS = {"name", "family", "preset", "targets", "models", "seeded", "set", "checkpoint", "from"}


def load(path: Path) -> list[dict]:
    """The voices of a matrix file, each with its defaults applied; one line for anything malformed."""
    try:
        doc = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise VoxcError(f"matrix file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise VoxcError(f"matrix file {path} is not valid TOML ({first_line(exc)})") from None
    extra = set(doc) - {"defaults", "voice"}
    voices = doc.get("voice")
    if extra or not isinstance(voices, list) or not voices or not isinstance(doc.get("defaults", {}), dict):
        raise VoxcError(f"matrix file {path} needs one or more [[voice]] tables (and optionally [defaults]); "
                        f"{'unknown ' + ', '.join(sorted(extra)) if extra else 'none found'}")
    out, names = [], set()
    for i, v in enumerate(voices, 1):
        v = {**doc.get("defaults", {}), **v}
        bad = set(v) - VOICE_KEYS
        name = v.get("name")
        if bad:
            raise VoxcError(f"matrix file {path}: voice {i} has unknown key(s) {', '.join(sorted(bad))}; "
                            f"use {', '.join(sorted(VOICE_KEYS))}")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) or name in names:
            raise VoxcError(f"matrix file {path}: voice {i} needs a unique name of letters, digits, '.', '_', '-'")
        targets = v.get("targets")
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
            raise VoxcError(f"matrix file {path}: voice {name} needs targets = [\"cpu\", ...]")
        names.add(name)
        out.append(v)
    return out


def requests(voice: dict, artifacts: Path, jobs: int, distributed: dict) -> list:
    from voxc.compiler.request import build_request
    from voxc.core.args import set_overrides
    from voxc.models.family import family
    fam = family(voice.get("family", "voxc"))
    overrides = set_overrides(fam.preset(voice.get("preset") or fam.default_preset),
                           [f"{k}={v}" for k, v in voice.get("set", {}).items()])
    return [dataclasses.replace(build_request(
        t, fam.name, voice.get("preset"), artifacts=artifacts, models=tuple(voice.get("models", ())),
        checkpoints=voice.get("checkpoint"), overrides=overrides, seeded=bool(voice.get("seeded")), jobs=jobs,
        source=voice.get("from")), **distributed) for t in voice["targets"]]


def _identity(stage, ident: dict) -> str:
    from voxc.compiler.graph import Stage, plain_params
    return sha256_bytes(canonical({
        "fn": f"{stage.fn.__module__}.{stage.fn.__qualname__}", "name": stage.name, "params": plain_params(stage.params),
        "tools": stage.tools, "code": stage.code, "resources": stage.resources, "labels": stage.labels,
        "inputs": {k: ident[v.label] if isinstance(v, Stage) else str(Path(v).resolve())
                   for k, v in stage.inputs.items()}}))


def merge(combined, plans: list[tuple[str, str, object]]) -> tuple[list[dict], int]:
    """Add every plan's stages to `combined`, one stage per identity; returns each plan's label map."""
    by_ident, renames, planned = {}, [], 0
    for voice, target, g in plans:
        ident, rename = {}, {}
        for label, st in g.stages.items():          # insertion order: dependencies first
            planned += 1
            ident[label] = _identity(st, ident)
            if ident[label] in by_ident:
                rename[label] = by_ident[ident[label]]
                continue
            new = f"{voice}/{target}/{label[len('target/'):]}" if label.startswith("target/") else f"{voice}/{label}"
            if new in combined.stages:
                new = f"{voice}/{target}/{label}"
            combined.add(dataclasses.replace(
                st, label=new, inputs={k: combined.stages[rename[v.label]] if hasattr(v, "label") else v
                                       for k, v in st.inputs.items()},
                after=tuple(combined.stages[rename[a.label]] for a in st.after)))
            rename[label] = by_ident[ident[label]] = new
        renames.append(rename)
    return renames, planned


def build_matrix(path: Path, artifacts: Path, jobs: int = 2, **distributed) -> bool:
    from voxc.compiler import build as b
    from voxc.compiler.graph import BuildGraph
    from voxc.targets import profiles
    t0 = time.perf_counter()
    voices = load(path)
    jobs_list = [(v["name"], req) for v in voices for req in requests(v, artifacts, jobs, distributed)]
    plans = [(name, req, profiles.load(req.target), *b.plan(req, profiles.load(req.target))) for name, req in jobs_list]
    first = jobs_list[0][1]
    with b.build_lock(artifacts):
        executor = b.make_executor(first)
        try:
            for name, req, profile, g, plan in plans:
                b.add_device_stage(g, plan, req, profile, executor)
            combined = BuildGraph(artifacts / "cache")
            b.use_store(combined, first)
            b.sweep(first, combined)
            renames, planned = merge(combined, [(name, req.target, g) for name, req, _, g, _ in plans])
            print(f"voxc: matrix {path}: {len(voices)} voice(s), {len(plans)} builds, {planned} stages planned, "
                  f"{len(combined.stages)} distinct", flush=True)
            results = b.run_graph(combined, executor, first)
        finally:
            executor.shutdown()
        passed = True
        for (name, req, _, g, plan), rename in zip(plans, renames):
            view = {label: results[rename[label]] for label in g.stages}
            folder = b.ship(req, view, plan, artifacts / name)
            report = read(folder).parity
            passed &= report.passed
            print(f"voxc: {name}/{req.target}: parity {report.status.upper()}; outputs in {folder}", flush=True)
    ran = sum(not r.cached for r in results.values())
    print(f"voxc: matrix done: {len(plans)} builds, {planned} stages planned, {len(results)} distinct, {ran} run, "
          f"{len(results) - ran} cache hits; {time.perf_counter() - t0:.1f}s; parity {'PASS' if passed else 'FAIL'}",
          flush=True)
    return passed
