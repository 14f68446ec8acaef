"""Plans and runs a target's build: the whole build is one graph of content-addressed stages.

Per graph of the family: weights -> export -> check -> simplify -> (per backend and precision)
artifact -> parity; per graph and host runtime, select (the precision policy). Then, per target:
chain (chained parity of the policy's choice, the chain gate's demotions, the final selection),
target (the target folder -- artifacts, reference weights, manifest.json, parity.json, parity.md --
assembled once, inside the cache) and, for device targets, bundle. Placing the target folder at
artifacts/<T>/ links those outputs into a fresh folder and swaps it in. A warm rebuild is all cache hits.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from voxc.compiler import cache, graph
from voxc.compiler.graph import BuildGraph, Stage
from voxc.compiler.policy import DEFAULT_RUNS, ROUNDS
from voxc.compiler.stages import EXPORT_TOOLS
from voxc.core.atomic import swap_folder, write_atomic
from voxc.core.errors import VoxcError
from voxc.core.hashing import sha256_file
from voxc.core.target import read as read_target
from voxc.core.sources import package_modules
from voxc.models.family import family_of, model_config, model_spec
from voxc.targets import backend, profiles


@dataclass
class BuildRequest:
    target: str = "cpu"
    preset: dict = field(default_factory=dict)
    preset_name: str = "tiny"
    models: tuple[str, ...] = ()                                         # default: every graph of the family
    checkpoints: dict[str, Path] = field(default_factory=dict)
    artifacts: Path = Path("artifacts")
    exporter: str = "dynamo"
    opset: int = 20
    jobs: int = 2
    precisions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # --precisions override per model
    margin: float | None = None                                          # --margin override of the policy
    retime: bool = False                                                 # re-measure the policy's timings
    weight_sources: dict[str, str] = field(default_factory=dict)  # model -> "trained voice" / "user checkpoint"
    executor: str = "local"                                              # local (process pool) or ray
    address: str | None = None                                           # --address of a Ray cluster
    store: str | None = None                                             # --store: shared folder or file:// URI
    device_runner: str | None = None                                     # device stage runner (default: the backend)
    data: Path | None = None                                             # --data: the user's audio folder
    quantisation: dict = field(default_factory=dict)                     # --quantisation: the user's option tables

    def __post_init__(self):
        self.models = tuple(self.models) or family_of(self.preset).graph_names


def _stage(g: BuildGraph, label: str, fn, params: dict, inputs: dict, tools=(), code=(), after=()) -> Stage:
    return g.add(Stage(label=label, name=fn.__name__, fn=fn, params=params,
                       inputs=inputs, tools=tuple(tools), code=tuple(code), after=tuple(after)))


def ladders(req: BuildRequest, profile: dict, name: str) -> dict[str, list[str]]:
    """Precision ladder per runtime for one model: the profile's, or --precisions' override."""
    out = {}
    for runtime in profile["backends"]:
        ladder = list(req.precisions.get(name) or profiles.precisions(profile, runtime, name))
        for p in ladder:
            if p not in backend(runtime).precisions:
                raise VoxcError(f"unknown precision '{p}' for {name} on {runtime}: choose from "
                                f"{', '.join(backend(runtime).precisions)}")
        if len(set(ladder)) != len(ladder) or not ladder:
            raise VoxcError(f"precision ladder for {name} must list distinct precisions, got {ladder}")
        out[runtime] = ladder
    return out


def host_fingerprint() -> dict:
    """What policy timings depend on: the CPU, its core count and the OS."""
    import platform
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "system": platform.system(), "release": platform.release()}


def _weight_info(req: BuildRequest, name: str) -> dict:
    """Where a model's weights come from (the manifest's `weights`), fixed at plan time."""
    ckpt = req.checkpoints.get(name)
    if ckpt is None:
        return {}
    path = Path(ckpt).resolve()
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return {"source": req.weight_sources.get(name, "user checkpoint"), "checkpoint": shown, "sha256": sha256_file(path)}


def plan(req: BuildRequest, profile: dict) -> tuple[BuildGraph, dict]:
    """The build graph plus, per model, the labels of its stages (and the tail stages' labels)."""
    from voxc.calibration.feeds import upstream_graphs
    from voxc.compiler import bundle, chain as chain_mod, merge, report, rung_options, stages
    fam = family_of(req.preset)
    for name, path in req.checkpoints.items():
        fam.graph(name)
        if not Path(path).is_file():
            raise VoxcError(f"checkpoint {path} does not exist; pass --checkpoint {name}=PATH to an existing file")
    for name in list(req.precisions) + list(req.models):
        fam.graph(name)
    g = BuildGraph(req.artifacts / "cache")
    family_code = tuple(package_modules(fam.package))
    parity_set, calibration_set = fam.items_hash("parity"), fam.items_hash("calibration")
    policy = profile.get("policy", {})
    margin = float(req.margin if req.margin is not None else policy.get("margin", 0.10))
    runs = max(ROUNDS, int(policy.get("runs", DEFAULT_RUNS)))
    # policy timings run single-threaded unless the profile says otherwise: two select stages share
    # the build's workers, and the choice must not depend on --jobs (it is part of their keys)
    threads = int(policy.get("threads", 1))
    upstream_of = {n: upstream_graphs(n, req.preset) for n in req.models}
    needed = [n for n in fam.graph_names if n in req.models or any(n in upstream_of[m] for m in req.models)]
    weights: dict[str, Stage] = {}
    for name in needed:
        cfg = model_config(name, req.preset)
        ckpt = req.checkpoints.get(name)
        weights[name] = _stage(g, f"{name}/weights", stages.weights,
                               {"model": name, "config": cfg, "checkpoint_name": ckpt.name if ckpt else None},
                               {"checkpoint": ckpt} if ckpt else {}, ("torch", "safetensors"), family_code)
    chains: dict[str, dict] = {}
    parity_stages: list[Stage] = []
    selects: list[tuple[str, str, dict, dict]] = []
    full_config = {"family": fam.name, **{k: req.preset[k] for k in fam.host_config}}
    for name in [n for n in fam.graph_names if n in req.models]:
        cfg = model_config(name, req.preset)
        spec = model_spec(name, cfg)
        base = {"model": name, "config": cfg}
        upstream = {u: model_config(u, req.preset) for u in upstream_of[name]}
        data = {"upstream": upstream, "full_config": full_config}
        up_inputs = {f"up.{u}": weights[u] for u in upstream}
        w = weights[name]
        e = _stage(g, f"{name}/export", stages.export, {**base, "exporter": req.exporter, "opset": req.opset},
                   {"weights": w}, EXPORT_TOOLS, family_code)
        c = _stage(g, f"{name}/check", stages.check, base, {"onnx": e}, ("onnx",), family_code)
        s = _stage(g, f"{name}/simplify", stages.simplify, base, {"onnx": c}, ("onnx", "onnxsim", "onnxslim"),
                   family_code)
        chain = {"config": cfg, "weights": w.label, "export": e.label, "check": c.label, "simplify": s.label,
                 "artifacts": [], "ladders": ladders(req, profile, name), "select": {},
                 "weights_info": _weight_info(req, name)}
        for runtime, ladder in chain["ladders"].items():
            be = backend(runtime)
            options = rung_options.options(profile, runtime, fam.graph(name), req.quantisation)
            stages_of = {}
            device = be.parity == "device"  # golden files + deferred rows
            code = family_code + be.modules
            for precision in ladder:
                cal = {"calibration_set": calibration_set} if precision == "int8" else {}
                a = _stage(g, f"{name}/{runtime}-{precision}", stages.artifact,
                           {**base, **data, **cal, "runtime": runtime, "precision": precision, "options": options,
                            "fallback": precision == ladder[-1]},
                           {"onnx": s, "weights": w, **up_inputs}, be.tools, code)
                p = _stage(g, f"{name}/{runtime}-{precision}/parity", stages.parity_check,
                           {**base, **data, "runtime": runtime, "precision": precision, "parity_set": parity_set,
                            "budgets": spec.budgets.get(precision), "sweep": spec.sweep(),
                            **({"options": options} if device else {})},
                           {"weights": w, "artifact": a, **up_inputs}, ("torch",) + be.tools, code)
                parity_stages.append(p)
                stages_of[precision] = (a, p)
                chain["artifacts"].append({"runtime": runtime, "precision": precision, "artifact": a.label,
                                           "parity": p.label, "calibration_set": cal.get("calibration_set"),
                                           "parity_set": parity_set})
            if device:  # nothing to time here: every listed precision ships and is verified on the device
                continue
            selects.append((name, runtime, {**base, **data, "runtime": runtime, "ladder": ladder, "margin": margin,
                                            "runs": runs, "threads": threads, "parity_set": parity_set,
                                            "host": host_fingerprint(),
                                            **({"retimed": time.time_ns()} if req.retime else {})},
                            {"weights": w, **up_inputs,
                             **{f"artifact.{k}": v[0] for k, v in stages_of.items()},
                             **{f"parity.{k}": v[1] for k, v in stages_of.items()}}, code))
        chains[name] = chain
    # Policy stages time artifacts: they wait for every parity stage so they do not share the CPU
    # with builds (only with each other); ordering only, so their keys stay per model.
    for name, runtime, params, inputs, code in selects:
        sel = _stage(g, f"{name}/{runtime}/select", stages.select, params, inputs, backend(runtime).tools, code,
                     after=parity_stages)
        chains[name]["select"][runtime] = sel.label
    # ---- the target: chained parity + chain gate, the folder, the device bundle ----------------
    every = {label: g.stages[label] for c in chains.values()
             for label in [c["weights"], c["export"], c["check"], c["simplify"], *c["select"].values()]
             + [x for a in c["artifacts"] for x in (a["artifact"], a["parity"])]}
    host_runtimes = [r for r in profile["backends"] if backend(r).parity == "host"]
    tail: dict = {"chains": []}
    if fam.chain is not None and set(fam.graph_names) <= set(chains):
        tail["chained"] = True
        for runtime in host_runtimes:     # one per runtime: targets sharing a runtime share its chain
            layout = {n: {"config": c["config"], "weights": c["weights"], "select": {runtime: c["select"][runtime]},
                          "artifacts": [a for a in c["artifacts"] if a["runtime"] == runtime]} for n, c in chains.items()}
            used = {label: g.stages[label] for c in layout.values()
                    for label in [c["weights"], c["select"][runtime], *(a["artifact"] for a in c["artifacts"])]}
            ch = _stage(g, f"target/{runtime}/chain", chain_mod.chain_stage,
                        {"layout": layout, "preset": req.preset, "runtimes": [runtime], "parity_set": parity_set},
                        used, ("torch",) + backend(runtime).tools, family_code + backend(runtime).modules)
            tail["chains"].append(ch.label)
    info = {"target": req.target, "preset_name": req.preset_name, "preset": req.preset, "profile": profile,
            "data_sets": {"calibration": calibration_set, "parity": parity_set},
            "tools": sorted(set(EXPORT_TOOLS + ("onnxsim", "onnxslim")
                                + tuple(t for r in profile["backends"] for t in backend(r).tools)))}
    t = _stage(g, "target/assemble", report.target_stage, {"layout": chains, "tail": tail, **info},
               {**every, **{label: g.stages[label] for label in tail["chains"]}}, (), family_code)
    tail["assemble"] = t.label
    device = [r for r in profile["backends"] if backend(r).parity == "device"]
    if len(device) > 1:
        raise VoxcError(f"target {req.target} defers parity for backends {device}; a bundle holds exactly one")
    if device:
        b = _stage(g, "target/bundle", bundle.bundle_stage,
                   {"layout": chains, "runtime": device[0], "assemble": t.label, **info},
                   {**every, t.label: t}, (), family_code + backend(device[0]).modules + backend(device[0]).shipped)
        tail["bundle"] = b.label
        stored = merge.stored_results(req.artifacts, req.target)
        if stored:     # device results merged before: inputs of this build, by content
            m = _stage(g, "target/merged", merge.merged_stage, {"target": req.target},
                       {"assemble": t, "bundle": b, **{f"device.{p.stem}": p for p in stored}}, (),
                       (backend(device[0]).__module__,))
            tail["merged"] = m.label
    return g, {"models": chains, "tail": tail}


def add_device_stage(g: BuildGraph, layout: dict, req: BuildRequest, profile: dict, executor) -> Stage | None:
    """target/device (compiler/device_stage.py) when the executor has a node that offers the target's device."""
    from voxc.compiler import device_stage
    tail = layout["tail"]
    if "bundle" not in tail or not hasattr(executor, "offers"):
        return None
    runtime = g.stages[tail["bundle"]].params["runtime"]
    where = device_stage.placement(profile, runtime)
    if not executor.offers(**where):
        print(f"voxc: no Ray node offers {where['resources']}{where['labels'] or ''}; {req.target} device parity "
              "stays deferred to the bundle", flush=True)
        return None
    s = g.add(Stage(label="target/device", name="device_stage", fn=device_stage.device_stage,
                    params={"target": req.target, "runner": req.device_runner or runtime},
                    inputs={"assemble": g.stages[tail["assemble"]], "bundle": g.stages[tail["bundle"]]},
                    code=("voxc.compiler.merge", "voxc.targets.device_verify") + backend(runtime).shipped, **where))
    tail["device"] = s.label
    return s


def make_executor(req: BuildRequest):
    if req.executor == "ray":
        from voxc.compiler.ray_executor import RayExecutor
        return RayExecutor(req.address, req.jobs)
    if req.executor != "local":
        raise VoxcError(f"unknown executor '{req.executor}': choose local or ray")
    if req.address or req.store:
        raise VoxcError("--address and --store need --executor ray")
    return graph.LocalPoolExecutor(req.jobs) if req.jobs > 1 else graph.InlineExecutor()


def use_store(g: BuildGraph, req: BuildRequest) -> None:
    if req.store:
        from voxc.compiler.store import open_store
        g.use_store(open_store(req.store, req.artifacts / "cache"))


def sweep(req: BuildRequest, g: BuildGraph) -> None:
    """Temporaries a killed build left, in the artifacts folder and its own cache (never a shared store's:
    other builds may be writing there)."""
    swept = sweep_target_temporaries(req.artifacts)
    if g.cache == req.artifacts / "cache":
        swept += cache.sweep_temporaries(g.cache)
    if swept:
        print(f"voxc: removed {swept} temporary folder(s) an interrupted build left", flush=True)


def ship(req: BuildRequest, results: dict, layout: dict, artifacts: Path | None = None) -> Path:
    """Place one target's folder (and its timings) from its tail stages' outputs."""
    from voxc.core.target import dumps
    artifacts = artifacts or req.artifacts
    tail = layout["tail"]
    for d in [d for label in tail["chains"] for d in results[label].record.get("demotions", [])]:
        print(f"voxc: {d['model']} on {d['runtime']}: {d['reason']}; falls back to {d['to']}", flush=True)
    folder = place(artifacts, req.target, [results[tail[k]].path for k in ("assemble", "bundle", "device", "merged")
                                           if k in tail])
    write_atomic(timings_path(artifacts, req.target),
                 dumps({"target": req.target, "models": results[tail["assemble"]].record.get("timings", {})},
                       sort_keys=True))
    dev = results[tail["device"]].record.get("device") if "device" in tail else None
    if dev:
        print(f"voxc: device parity ran on node {dev['host']} with {dev['runner']}"
              f"{' (stand-in: proves the bundle, not the device)' if dev['stand_in'] else ''}: {dev['rows']} rows "
              f"merged into the reports of {folder}", flush=True)
    return folder


def _progress(total: int):
    count = [0]

    def show(r: graph.Result) -> None:
        count[0] += 1
        status = "cached" if r.cached else f"{r.seconds:6.1f}s"
        print(f"[{count[0]:>3}/{total}] {r.label:<44} {status}", flush=True)
    return show


@contextlib.contextmanager
def build_lock(artifacts: Path):
    """One build at a time per artifacts folder: a second build waits, then reuses the first's stages."""
    import fcntl
    try:
        artifacts.mkdir(parents=True, exist_ok=True)
        fd = os.open(artifacts / ".voxc-build.lock", os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as exc:
        raise VoxcError(f"cannot write to the artifacts cache in {artifacts} ({exc.strerror}); pass --artifacts DIR "
                        "to a writable folder") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"voxc: another build is using {artifacts}; waiting for it to finish", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def sweep_target_temporaries(artifacts: Path) -> int:
    n = 0
    for p in list(artifacts.glob(".tmp-*")) + list(artifacts.glob(".old-*")):
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


def place(artifacts: Path, target: str, sources: list[Path]) -> Path:
    """artifacts/<target>/ <- the files of the target stages' outputs (later ones win), swapped in whole."""
    final = artifacts / target
    tmp = artifacts / f".tmp-{target}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        for src in sources:
            for f in sorted(src.rglob("*")):
                dst = tmp / f.relative_to(src)
                if f.is_dir():               # empty folders too: a Core ML package lists its own
                    dst.mkdir(parents=True, exist_ok=True)
                elif f.name not in (graph.META, cache.SEEN):
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    if dst.exists():
                        dst.unlink()
                    shutil.copyfile(f, dst)      # a copy: editing a shipped file can never reach the cache
        swap_folder(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise VoxcError(f"cannot write the target folder {final} ({exc.strerror}); free some space or pass "
                        f"--artifacts DIR; the previous {target} folder is left as it was") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def timings_path(artifacts: Path, target: str) -> Path:
    """The precision policy's measurements for a target: beside its folder, because timings differ from
    run to run and the target folder is byte-identical across clean builds."""
    return artifacts / f"{target}.timings.json"


def build(req: BuildRequest) -> bool:
    """Run the whole build for one target; returns whether every parity gate passed. With `req.data`,
    the user's audio folder replaces the committed sets (its content hash keys every stage reading it)."""
    with audio_folder(req.data):
        return _build(req)


@contextlib.contextmanager
def audio_folder(folder: Path | None):
    """The user's audio folder as the calibration/parity data for this build (its workers inherit it)."""
    from voxc.calibration.audio_folder import ENV, files
    if folder is None:
        yield
        return
    files(folder)                                  # a missing or empty folder is refused before planning
    old = os.environ.get(ENV)
    os.environ[ENV] = str(Path(folder).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


def _build(req: BuildRequest) -> bool:
    profile = profiles.load(req.target)
    t0 = time.perf_counter()
    g, layout = plan(req, profile)
    use_store(g, req)
    with build_lock(req.artifacts):
        sweep(req, g)
        executor = make_executor(req)
        try:
            add_device_stage(g, layout, req, profile, executor)
            print(f"voxc: building target '{req.target}' (family {family_of(req.preset).name}, preset "
                  f"{req.preset_name}, {len(req.models)} models, {len(g.stages)} stages, "
                  f"{f'{req.jobs} workers' if req.executor == 'local' else 'each a Ray task'})", flush=True)
            results = g.run(executor, _progress(len(g.stages)))
        finally:
            executor.shutdown()
        tail = layout["tail"]
        folder = ship(req, results, layout)
    shipped = read_target(folder)             # what ships is what was verified: read back through the schema
    pending = False
    if "bundle" in tail:
        from voxc.compiler.bundle import announce
        pending = announce(shipped, req.target)
    passed = shipped.parity.passed
    cached = sum(r.cached for r in results.values())
    print(f"voxc: {cached}/{len(results)} stages cached; {time.perf_counter() - t0:.1f}s; "
          f"parity {'PASS' if passed else 'FAIL'}{' on the host, device parity deferred' if pending else ''}; "
          f"outputs in {folder}", flush=True)
    if not passed:
        print(f"voxc: parity FAILED -- see {folder / 'parity.md'}", file=sys.stderr)
    return passed
