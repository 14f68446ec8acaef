"""Plans and runs a target's build: one stage chain per model, then the target folder and reports.

weights -> export -> check -> simplify -> (per backend and precision) artifact -> parity -> (per backend)
select: the precision policy accepts one rung of each model's ladder per runtime.
The chain is planned from the preset, the target profile and the ModelSpecs; the build graph
decides what is cached. The target folder artifacts/<T>/ is assembled in a temporary folder and
swapped into place, then manifest.json, parity.json and parity.md describe it.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from compiler import graph, metrics, report
from compiler.graph import BuildGraph, Stage
from compiler.stages import EXPORT_TOOLS, STAGE_VERSIONS, stage_fn
from models.errors import VoxcError
from models.registry import MODEL_NAMES, entry, model_config, model_spec
from targets import backend, profiles

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def _graph_sources(roots: tuple[str, ...] = ("registry", "weights")) -> list[Path]:
    """models/ files the graphs and their weights come from: the roots and what they import, transitively."""
    seen: dict[str, Path] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        path = MODELS_DIR / f"{name}.py"
        if name in seen or not path.is_file():
            continue
        seen[name] = path
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "models":
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("models."):
                todo.append(node.module.split(".")[1])
    return sorted(seen.values())


def models_source_hash() -> str:
    """Graph code is an input of every stage that runs it: editing it rebuilds them (the text front
    end and feature extraction are not part of any graph and do not count)."""
    h = hashlib.sha256()
    for p in _graph_sources():
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
    precisions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # --precisions override per model
    margin: float | None = None                                          # --margin override of the policy
    weight_sources: dict[str, str] = field(default_factory=dict)  # model -> "trained voice" / "user checkpoint"


def _stage(g: BuildGraph, label: str, name: str, params: dict, inputs: dict, tools=(), after=()) -> Stage:
    return g.add(Stage(label=label, name=name, version=STAGE_VERSIONS[name], fn=stage_fn(name),
                       params=params, inputs=inputs, tools=tools, after=tuple(after)))


def ladders(req: BuildRequest, profile: dict, name: str) -> dict[str, list[str]]:
    """Precision ladder per runtime for one model: the profile's, or --precisions' override."""
    out = {}
    for runtime in profile["backends"]:
        ladder = list(req.precisions.get(name) or profiles.precisions(profile, runtime, name))
        for p in ladder:
            if p not in ("fp32", "fp16", "int8"):
                raise VoxcError(f"unknown precision '{p}' for {name}: choose from fp32, fp16, int8")
        if len(set(ladder)) != len(ladder) or not ladder:
            raise VoxcError(f"precision ladder for {name} must list distinct precisions, got {ladder}")
        out[runtime] = ladder
    return out


def plan(req: BuildRequest, profile: dict) -> tuple[BuildGraph, dict]:
    """The build graph plus, per model, the labels of its stages."""
    from calibration.feeds import UPSTREAM
    from calibration.sets import set_hash
    for name, path in req.checkpoints.items():
        entry(name)
        if not Path(path).is_file():
            raise VoxcError(f"checkpoint {path} does not exist; pass --checkpoint {name}=PATH to an existing file")
    for name in req.precisions:
        entry(name)
    g = BuildGraph(req.artifacts / "cache")
    src = models_source_hash()
    parity_set, calibration_set = set_hash("parity"), set_hash("calibration")
    policy = profile.get("policy", {})
    margin = float(req.margin if req.margin is not None else policy.get("margin", 0.10))
    runs = max(10, int(policy.get("runs", 10)))
    # policy timings run single-threaded unless the profile says otherwise: two select stages share
    # the build's workers, and the choice must not depend on --jobs (it is part of their keys)
    threads = int(policy.get("threads", 1))
    needed = list(dict.fromkeys([u for n in req.models for u in UPSTREAM[n]] + list(req.models)))
    weights: dict[str, Stage] = {}
    for name in needed:
        cfg = model_config(name, req.preset)
        ckpt = req.checkpoints.get(name)
        weights[name] = _stage(g, f"{name}/weights", "weights",
                               {"model": name, "config": cfg, "models_source": src,
                                "checkpoint_name": ckpt.name if ckpt else None},
                               {"checkpoint": ckpt} if ckpt else {}, ("torch", "safetensors"))
    chains: dict[str, dict] = {}
    parity_stages: list[Stage] = []
    selects: list[tuple[str, str, dict, dict]] = []
    for name in req.models:
        cfg = model_config(name, req.preset)
        spec = model_spec(name, cfg)
        base = {"model": name, "config": cfg, "models_source": src}
        upstream = {u: model_config(u, req.preset) for u in UPSTREAM[name]}
        data = {"upstream": upstream, "full_config": {k: req.preset[k] for k in ("dims", "n_styles", "emotion_mode")}}
        up_inputs = {f"up.{u}": weights[u] for u in upstream}
        w = weights[name]
        e = _stage(g, f"{name}/export", "export", {**base, "exporter": req.exporter, "opset": req.opset},
                   {"weights": w}, EXPORT_TOOLS)
        c = _stage(g, f"{name}/check", "check", {"model": name, "config": cfg}, {"onnx": e}, ("onnx",))
        s = _stage(g, f"{name}/simplify", "simplify", {"model": name, "config": cfg}, {"onnx": c},
                   ("onnx", "onnxsim", "onnxslim"))
        chain = {"config": cfg, "weights": w.label, "export": e.label, "check": c.label, "simplify": s.label,
                 "artifacts": [], "ladders": ladders(req, profile, name), "select": {}}
        for runtime, ladder in chain["ladders"].items():
            options = profile.get("options", {}).get(runtime, {})
            options = {**options, **options.get("models", {}).get(name, {})}
            options.pop("models", None)
            stages_of = {}
            device = getattr(backend(runtime), "PARITY", "host") == "device"  # golden files + deferred rows
            for precision in ladder:
                cal = {"calibration_set": calibration_set} if precision == "int8" else {}
                a = _stage(g, f"{name}/{runtime}-{precision}", "artifact",
                           {**base, **data, **cal, "runtime": runtime, "precision": precision, "options": options,
                            "fallback": precision == ladder[-1]},
                           {"onnx": s, "weights": w, **up_inputs}, (runtime, "onnx", "nncf"))
                p = _stage(g, f"{name}/{runtime}-{precision}/parity", "parity",
                           {**base, **data, "runtime": runtime, "precision": precision, "parity_set": parity_set,
                            "budgets": spec.budgets.get(precision), "sweep": spec.sweep(),
                            **({"options": options} if device else {})},
                           {"weights": w, "artifact": a, **up_inputs}, ("torch", runtime))
                parity_stages.append(p)
                stages_of[precision] = (a, p)
                chain["artifacts"].append({"runtime": runtime, "precision": precision, "artifact": a.label,
                                           "parity": p.label, "calibration_set": cal.get("calibration_set"),
                                           "parity_set": parity_set})
            if device:  # nothing to time here: every listed precision ships and is verified on the device
                continue
            selects.append((name, runtime, {**base, **data, "runtime": runtime, "ladder": ladder, "margin": margin,
                                            "runs": runs, "threads": threads, "parity_set": parity_set},
                            {"weights": w, **up_inputs,
                             **{f"artifact.{k}": v[0] for k, v in stages_of.items()},
                             **{f"parity.{k}": v[1] for k, v in stages_of.items()}}))
        chains[name] = chain
    # Policy stages time artifacts: they wait for every parity stage so they do not share the CPU
    # with builds (only with each other); ordering only, so their keys stay per model.
    for name, runtime, params, inputs in selects:
        sel = _stage(g, f"{name}/{runtime}/select", "select", params, inputs, (runtime,), after=parity_stages)
        chains[name]["select"][runtime] = sel.label
    return g, chains


def _progress(total: int):
    count = [0]

    def show(r: graph.Result) -> None:
        count[0] += 1
        status = "cached" if r.cached else f"{r.seconds:6.1f}s"
        print(f"[{count[0]:>3}/{total}] {r.label:<44} {status}", flush=True)
    return show


def accepted_artifacts(chain: dict, results: dict) -> list[dict]:
    """The artifact entries that ship: the policy's choice per host runtime, every device artifact."""
    out = []
    for a in chain["artifacts"]:
        label = chain["select"].get(a["runtime"])
        if label is None or results[label].record["accepted"] == a["precision"]:
            out.append(a)
    return out


def _assemble(req: BuildRequest, chains: dict, results: dict[str, graph.Result]) -> Path:
    """Hard-link (or copy) accepted files into a fresh target folder, then swap it into place."""
    final = req.artifacts / req.target
    tmp = req.artifacts / f".tmp-{req.target}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)

    def place(src: Path, rel: str) -> None:
        dst = tmp / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():  # e.g. a Core ML .mlpackage
            shutil.copytree(src, dst, copy_function=_link_or_copy)
        else:
            _link_or_copy(src, dst)
    try:
        for name, chain in chains.items():
            place(results[chain["weights"]].path / "weights.safetensors", f"{name}/reference.safetensors")
            place(results[chain["simplify"]].path / "model.onnx", f"{name}/{name}.onnx")
            for a in accepted_artifacts(chain, results):
                r = results[a["artifact"]]
                for f in report.record_files(r.record):
                    place(r.path / f, report.artifact_path(name, a["runtime"], a["precision"], f))
        old = req.artifacts / f".old-{req.target}-{uuid.uuid4().hex[:8]}"
        if final.exists():
            os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


LOOSENESS = ("fp32", "fp16", "int8")


def chained_parity(folder: Path, req: BuildRequest, profile: dict, chains: dict, results: dict) -> dict | None:
    """Chained parity of the accepted artifacts, per runtime (only when the whole stack was built)."""
    from compiler.chain import STAGES, chain_parity
    from compiler.verify import _reference
    from targets import backend
    from targets.runner import TorchRunner
    if set(STAGES) - set(chains):
        return None
    ref = {n: TorchRunner(_reference(folder / n, chains[n]["config"], n), model_spec(n, chains[n]["config"]))
           for n in STAGES}
    out = {"runtimes": {}}
    for runtime in profile["backends"]:
        if getattr(backend(runtime), "PARITY", "host") == "device":
            continue  # device artifacts run in their bundle
        arts, precs = {}, {}
        for n in STAGES:
            for a in accepted_artifacts(chains[n], results):
                if a["runtime"] == runtime:
                    f = results[a["artifact"]].record["file"]
                    arts[n] = backend(runtime).runner(folder / report.artifact_path(n, runtime, a["precision"], f))
                    precs[n] = a["precision"]
        loosest = max(precs.values(), key=LOOSENESS.index)
        budget = {**model_spec("vocoder", chains["vocoder"]["config"]).budget(loosest, "waveform"),
                  **model_spec("acoustic_encoder", chains["acoustic_encoder"]["config"]).budget(
                      precs["acoustic_encoder"], "durations")}
        out["runtimes"][runtime] = {**chain_parity(ref, arts, req.preset, budget, label=runtime),
                                    "precisions": precs, "budget_precision": loosest}
    return out


CHAIN_VERSION = 1


def cached_chained_parity(folder: Path, req: BuildRequest, profile: dict, chains: dict, results: dict) -> dict | None:
    """chained_parity, content-addressed like a stage: its inputs are the accepted artifacts and the
    reference weights (their stage keys), the preset and the parity set, so an unchanged rebuild
    reads the cached result instead of running the chain again."""
    from calibration.sets import set_hash
    inputs = {n: [results[c["weights"]].key] + [results[a["artifact"]].key for a in accepted_artifacts(c, results)]
              for n, c in chains.items()}
    key = hashlib.sha256(graph.canonical({"stage": "chain", "version": CHAIN_VERSION, "inputs": inputs,
                                          "backends": profile["backends"], "preset": req.preset,
                                          "parity_set": set_hash("parity"),
                                          "tools": graph.tool_versions(("torch", "onnxruntime", "openvino"))}
                                         ).encode()).hexdigest()[:32]
    path = req.artifacts / "cache" / f"chain-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    chain = chained_parity(folder, req, profile, chains, results)
    report.write_atomic(path, json.dumps(chain))
    return chain


# A stage upstream of the vocoder is judged at the audio output by spectral metrics only: a vocoder
# that predicts phase (Vocos) turns any mel change, however inaudible, into a different waveform, so
# waveform SNR says nothing there. The vocoder itself keeps its whole waveform budget.
CHAIN_SPECTRAL = ("mrstft", "logmel_l1", "mcd_db")


def chain_demotions(chain: dict | None, chains: dict, results: dict) -> list[dict]:
    """The chain gate: for each host runtime, a stage whose artifact, swapped alone into the all-PyTorch
    chain, moves the audio past the budget of its own precision (spectral metrics at the waveform,
    durations of the unforced chain) falls back to its ladder's fallback. Returns the demotions."""
    out = []
    for runtime, c in (chain or {}).get("runtimes", {}).items():
        for row in c["rows"]:
            stage = row["config"].removeprefix("only ")
            label = chains.get(stage, {}).get("select", {}).get(runtime)
            if stage == row["config"] or label is None:
                continue
            rec = results[label].record
            if rec["accepted"] == rec["fallback"]:
                continue
            spec = model_spec(stage, chains[stage]["config"])
            wave = spec.budget(rec["accepted"], "waveform")
            budget = {**(wave if stage == "vocoder" else {k: wave[k] for k in CHAIN_SPECTRAL if k in wave}),
                      **spec.budget(rec["accepted"], "durations")}
            over = [(k, row[k], tol) for k, tol in budget.items() if k in row and not metrics.passes(k, row[k], tol)]
            if over:
                k, v, tol = over[0]
                out.append({"model": stage, "runtime": runtime, "precision": rec["accepted"], "to": rec["fallback"],
                            "reason": f"{rec['accepted']} rejected: chain {k} {v:.4g} {'>' if k in metrics.LOWER_IS_BETTER else '<'} "
                                      f"{tol:g} budget with only {stage} swapped in"})
    return out


def apply_demotions(demotions: list[dict], chains: dict, results: dict) -> None:
    """Move each demoted (model, runtime) to its fallback in this build's policy records."""
    for d in demotions:
        rec = results[chains[d["model"]]["select"][d["runtime"]]].record
        rec["rejected"] = sorted(rec["rejected"] + [{"precision": d["precision"], "reason": d["reason"]}],
                                 key=lambda r: rec["ladder"].index(r["precision"]))
        rec["accepted"] = d["to"]
        rec["chain_gate"] = d


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
    chain = cached_chained_parity(folder, req, profile, chains, results)
    demotions = chain_demotions(chain, chains, results)
    if demotions:                  # the chain gate: reassemble with the fallbacks and measure again
        for d in demotions:
            print(f"voxc: {d['model']} on {d['runtime']}: {d['reason']}; falls back to {d['to']}", flush=True)
        apply_demotions(demotions, chains, results)
        folder = _assemble(req, chains, results)
        chain = {**cached_chained_parity(folder, req, profile, chains, results), "demotions": demotions}
    passed = report.write_target(folder, req, profile, chains, results, chain)
    from compiler import bundle
    pending = bundle.after_build(folder, req, profile, chains, results)
    cached = sum(r.cached for r in results.values())
    print(f"voxc: {cached}/{len(results)} stages cached; {time.perf_counter() - t0:.1f}s; "
          f"parity {'PASS' if passed else 'FAIL'}{' on the host, device parity deferred' if pending else ''}; "
          f"outputs in {folder}", flush=True)
    if not passed:
        print(f"voxc: parity FAILED -- see {folder / 'parity.md'}", file=sys.stderr)
    return passed
