"""Plans and runs a target's build: one stage chain per model, then the target folder and reports.

weights -> export -> check -> simplify -> (per backend and precision) artifact -> parity.
The chain is planned from the preset, the target profile and the ModelSpecs; the build graph
decides what is cached. The target folder artifacts/<T>/ is assembled in a temporary folder and
swapped into place, then manifest.json, parity.json and parity.md describe it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from compiler import graph, report
from compiler.graph import BuildGraph, Stage
from compiler.stages import EXPORT_TOOLS, STAGE_VERSIONS, stage_fn
from models.errors import VoxcError
from models.registry import MODEL_NAMES, entry, model_config, model_spec
from targets import profiles

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def models_source_hash() -> str:
    """Model code is an input of every stage that runs it: editing models/ rebuilds them."""
    h = hashlib.sha256()
    for p in sorted(MODELS_DIR.glob("*.py")):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


@dataclass
class BuildRequest:
    target: str = "cpu"
    preset: dict = field(default_factory=dict)
    preset_name: str = "tiny"
    models: tuple[str, ...] = MODEL_NAMES
    checkpoints: dict[str, Path] = field(default_factory=dict)
    artifacts: Path = Path("artifacts")
    exporter: str = "dynamo"
    opset: int = 20
    jobs: int = 2
    weight_sources: dict[str, str] = field(default_factory=dict)  # model -> "trained voice" / "user checkpoint"


def _stage(g: BuildGraph, label: str, name: str, params: dict, inputs: dict, tools=()) -> Stage:
    return g.add(Stage(label=label, name=name, version=STAGE_VERSIONS[name], fn=stage_fn(name),
                       params=params, inputs=inputs, tools=tools))


def plan(req: BuildRequest, profile: dict) -> tuple[BuildGraph, dict]:
    """The build graph plus, per model, the labels of its stages."""
    for name, path in req.checkpoints.items():
        entry(name)
        if not Path(path).is_file():
            raise VoxcError(f"checkpoint {path} does not exist; pass --checkpoint {name}=PATH to an existing file")
    g = BuildGraph(req.artifacts / "cache")
    src = models_source_hash()
    chains: dict[str, dict] = {}
    for name in req.models:
        cfg = model_config(name, req.preset)
        spec = model_spec(name, cfg)
        base = {"model": name, "config": cfg, "models_source": src}
        ckpt = req.checkpoints.get(name)
        w = _stage(g, f"{name}/weights", "weights",
                   {**base, "checkpoint_name": ckpt.name if ckpt else None},
                   {"checkpoint": ckpt} if ckpt else {}, ("torch", "safetensors"))
        e = _stage(g, f"{name}/export", "export", {**base, "exporter": req.exporter, "opset": req.opset},
                   {"weights": w}, EXPORT_TOOLS)
        c = _stage(g, f"{name}/check", "check", {"model": name, "config": cfg}, {"onnx": e}, ("onnx",))
        s = _stage(g, f"{name}/simplify", "simplify", {"model": name, "config": cfg}, {"onnx": c},
                   ("onnx", "onnxsim", "onnxslim"))
        chain = {"config": cfg, "weights": w.label, "export": e.label, "check": c.label, "simplify": s.label, "artifacts": []}
        for runtime in profile["backends"]:
            for precision in profiles.precisions(profile, runtime, name):
                a = _stage(g, f"{name}/{runtime}-{precision}", "artifact",
                           {**base, "runtime": runtime, "precision": precision,
                            "options": profile.get("options", {}).get(runtime, {})},
                           {"onnx": s, "weights": w}, (runtime, "onnx"))
                p = _stage(g, f"{name}/{runtime}-{precision}/parity", "parity",
                           {**base, "runtime": runtime, "precision": precision, "file": "model.onnx",
                            "budgets": spec.budgets.get(precision), "sweep": spec.sweep()},
                           {"weights": w, "artifact": a}, ("torch", runtime))
                chain["artifacts"].append({"runtime": runtime, "precision": precision,
                                           "artifact": a.label, "parity": p.label})
        chains[name] = chain
    return g, chains


def _progress(total: int):
    count = [0]

    def show(r: graph.Result) -> None:
        count[0] += 1
        status = "cached" if r.cached else f"{r.seconds:6.1f}s"
        print(f"[{count[0]:>3}/{total}] {r.label:<44} {status}", flush=True)
    return show


def _assemble(req: BuildRequest, chains: dict, results: dict[str, graph.Result]) -> Path:
    """Hard-link (or copy) accepted files into a fresh target folder, then swap it into place."""
    final = req.artifacts / req.target
    tmp = req.artifacts / f".tmp-{req.target}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)

    def place(src: Path, rel: str) -> None:
        dst = tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    try:
        for name, chain in chains.items():
            place(results[chain["weights"]].path / "weights.safetensors", f"{name}/reference.safetensors")
            place(results[chain["simplify"]].path / "model.onnx", f"{name}/{name}.onnx")
            for a in chain["artifacts"]:
                r = results[a["artifact"]]
                place(r.path / r.record["file"], f"{name}/{name}.{a['runtime']}-{a['precision']}.onnx")
        old = req.artifacts / f".old-{req.target}-{uuid.uuid4().hex[:8]}"
        if final.exists():
            os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def build(req: BuildRequest) -> bool:
    """Run the whole build for one target; returns whether every parity gate passed."""
    profile = profiles.load(req.target)
    t0 = time.perf_counter()
    g, chains = plan(req, profile)
    print(f"voxc: building target '{req.target}' (preset {req.preset_name}, {len(req.models)} models, "
          f"{len(g.stages)} stages, {req.jobs} workers)", flush=True)
    executor = graph.LocalPoolExecutor(req.jobs) if req.jobs > 1 else graph.InlineExecutor()
    try:
        results = g.run(executor, _progress(len(g.stages)))
    finally:
        executor.shutdown()
    folder = _assemble(req, chains, results)
    passed = report.write_target(folder, req, profile, chains, results)
    cached = sum(r.cached for r in results.values())
    print(f"voxc: {cached}/{len(results)} stages cached; {time.perf_counter() - t0:.1f}s; "
          f"parity {'PASS' if passed else 'FAIL'}; outputs in {folder}", flush=True)
    if not passed:
        print(f"voxc: parity FAILED -- see {folder / 'parity.md'}", file=sys.stderr)
    return passed
