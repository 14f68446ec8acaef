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

from voxc.calibration.lengths import lengths_for
from voxc.compiler import cache, graph, rung_options, stages
from voxc.compiler.graph import BuildGraph, Stage
from voxc.compiler.plan import (AssembleParams, BuildPlan, BundleParams, ChainParams, DeviceParams, ExportParams,
                                GraphParams, GraphPlan, MergedParams, ParityParams, Rung, RungParams, SelectParams,
                                TargetInfo, TargetPlan, WeightsParams)
from voxc.compiler.policy import DEFAULT_RUNS, ROUNDS
from voxc.compiler.progress import Progress
from voxc.compiler.stages import EXPORT_TOOLS
from voxc.core.atomic import artifacts_lock as build_lock, swap_folder, write_atomic
from voxc.core.errors import VoxcError
from voxc.core.hashing import sha256_file
from voxc.core.target import read as read_target
from voxc.core.sources import package_modules
from voxc.models.family import GraphConfig, HostConfig, family_of, host_config, model_config, model_spec
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
    quiet: bool = False                                                  # --quiet: no stage lines nor heartbeat
    data: Path | None = None                                             # --data: the user's audio folder
    quantisation: dict = field(default_factory=dict)                     # --quantisation: the user's option tables

    def __post_init__(self):
        self.models = tuple(self.models) or family_of(self.preset).graph_names


def _stage(g: BuildGraph, label: str, fn, params, inputs: dict, tools=(), code=(), after=()) -> Stage:
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


@dataclass
class _Planning:
    """What every per-graph and per-rung planning step reads: the request, profile, graph, family."""
    req: BuildRequest
    profile: dict
    g: BuildGraph
    family_code: tuple[str, ...]
    parity_set: str
    calibration_set: str
    upstream_of: dict[str, list[str]]
    host: HostConfig


@dataclass
class _PendingSelect:
    """A select stage planned with its graph, added once every parity stage is in the graph."""
    graph: str
    runtime: str
    params: SelectParams
    inputs: dict
    code: tuple[str, ...]


def plan(req: BuildRequest, profile: dict) -> tuple[BuildGraph, BuildPlan]:
    """The build graph, and the plan that names its stages per graph and for the target."""
    from voxc.calibration.feeds import upstream_graphs
    fam = family_of(req.preset)
    for name, path in req.checkpoints.items():
        fam.graph(name)
        if not Path(path).is_file():
            raise VoxcError(f"checkpoint {path} does not exist; pass --checkpoint {name}=PATH to an existing file")
    for name in list(req.precisions) + list(req.models):
        fam.graph(name)
    g = BuildGraph(req.artifacts / "cache")
    ctx = _Planning(req, profile, g, tuple(package_modules(fam.package)), fam.items_hash("parity"),
                    fam.items_hash("calibration"), {n: upstream_graphs(n, req.preset) for n in req.models},
                    host_config(req.preset))
    needed = [n for n in fam.graph_names if n in req.models or any(n in ctx.upstream_of[m] for m in req.models)]
    weights = {name: _plan_weights(ctx, name) for name in needed}
    graphs: dict[str, GraphPlan] = {}
    parity_stages: list[Stage] = []
    selects: list[_PendingSelect] = []
    for name in [n for n in fam.graph_names if n in req.models]:
        graphs[name] = _plan_graph(ctx, name, weights, parity_stages, selects)
    # Policy stages time artifacts: they wait for every parity stage so they do not share the CPU
    # with builds (only with each other); ordering only, so their keys stay per model.
    for s in selects:
        sel = _stage(g, f"{s.graph}/{s.runtime}/select", stages.select, s.params, s.inputs, backend(s.runtime).tools,
                     s.code, after=parity_stages)
        graphs[s.graph].select[s.runtime] = sel.label
    return g, BuildPlan(graphs, _plan_target(ctx, graphs))


def _plan_weights(ctx: _Planning, name: str) -> Stage:
    ckpt = ctx.req.checkpoints.get(name)
    return _stage(ctx.g, f"{name}/weights", stages.weights,
                  WeightsParams(model=name, config=model_config(name, ctx.req.preset),
                                checkpoint_name=ckpt.name if ckpt else None),
                  {"checkpoint": ckpt} if ckpt else {}, ("torch", "safetensors"), ctx.family_code)


def _plan_graph(ctx: _Planning, name: str, weights: dict[str, Stage], parity_stages: list[Stage],
                selects: list[_PendingSelect]) -> GraphPlan:
    """weights -> export -> check -> simplify, then every rung of every runtime's ladder; the select
    stages are queued (they are added after every parity stage)."""
    g, req = ctx.g, ctx.req
    config = model_config(name, req.preset)
    w = weights[name]
    e = _stage(g, f"{name}/export", stages.export,
               ExportParams(model=name, config=config, exporter=req.exporter, opset=req.opset),
               {"weights": w}, EXPORT_TOOLS, ctx.family_code)
    c = _stage(g, f"{name}/check", stages.check, GraphParams(model=name, config=config), {"onnx": e}, ("onnx",),
               ctx.family_code)
    s = _stage(g, f"{name}/simplify", stages.simplify, GraphParams(model=name, config=config), {"onnx": c},
               ("onnx", "onnxsim", "onnxslim"), ctx.family_code)
    plan_ = GraphPlan(name=name, config=config, weights=w.label, export=e.label, check=c.label, simplify=s.label,
                      weights_info=_weight_info(req, name))
    upstream = {u: model_config(u, req.preset) for u in ctx.upstream_of[name]}
    up_inputs = {f"up.{u}": weights[u] for u in upstream}
    for runtime, ladder in ladders(req, ctx.profile, name).items():
        be = backend(runtime)
        code = ctx.family_code + be.modules
        built = {p: _plan_rung(ctx, name, config, upstream, runtime, p, ladder, s, w, up_inputs, code)
                 for p in ladder}
        parity_stages += [p for _, p in built.values()]
        plan_.rungs[runtime] = {p: Rung(runtime, p, a.label, par.label, ctx.parity_set, a.params.calibration_set)
                                for p, (a, par) in built.items()}
        if be.parity == "device":   # nothing to time here: every listed precision ships and is verified on the device
            continue
        selects.append(_PendingSelect(
            name, runtime, _select_params(ctx, name, config, upstream, runtime, ladder),
            {"weights": w, **up_inputs, **{f"artifact.{k}": a for k, (a, _) in built.items()},
             **{f"parity.{k}": par for k, (_, par) in built.items()}}, code))
    return plan_


def _plan_rung(ctx: _Planning, name: str, config: GraphConfig, upstream: dict, runtime: str, precision: str,
               ladder: list[str], simplified: Stage, w: Stage, up_inputs: dict, code: tuple) -> tuple[Stage, Stage]:
    """One rung: the artifact stage and its parity stage."""
    be = backend(runtime)
    options = rung_options.options(ctx.profile, runtime, family_of(ctx.req.preset).graph(name), ctx.req.quantisation)
    spec = model_spec(name, config)
    if be.speech_lengths:              # its shape ranges are cut at the sizes real utterances have
        options = {**options, "corpus_lengths": lengths_for(spec)}
    feed = dict(model=name, config=config, upstream=upstream, host_config=ctx.host)
    a = _stage(ctx.g, f"{name}/{runtime}-{precision}", stages.artifact,
               RungParams(**feed, runtime=runtime, precision=precision, options=options,
                          fallback=precision == ladder[-1],
                          calibration_set=ctx.calibration_set if precision == "int8" else None),
               {"onnx": simplified, "weights": w, **up_inputs}, be.tools, code)
    p = _stage(ctx.g, f"{name}/{runtime}-{precision}/parity", stages.parity_check,
               ParityParams(**feed, runtime=runtime, precision=precision, parity_set=ctx.parity_set,
                            budgets=spec.budgets.get(precision), sweep=tuple(spec.sweep()),
                            options=options if be.parity == "device" else None),   # golden files + deferred rows
               {"weights": w, "artifact": a, **up_inputs}, ("torch",) + be.tools, code)
    return a, p


def _select_params(ctx: _Planning, name: str, config: GraphConfig, upstream: dict, runtime: str,
                   ladder: list[str]) -> SelectParams:
    policy = ctx.profile.get("policy", {})
    return SelectParams(
        model=name, config=config, upstream=upstream, host_config=ctx.host, runtime=runtime, ladder=tuple(ladder),
        margin=float(ctx.req.margin if ctx.req.margin is not None else policy.get("margin", 0.10)),
        runs=max(ROUNDS, int(policy.get("runs", DEFAULT_RUNS))),
        # policy timings run single-threaded unless the profile says otherwise: two select stages share
        # the build's workers, and the choice must not depend on --jobs (it is part of their keys)
        threads=int(policy.get("threads", 1)), parity_set=ctx.parity_set, host=host_fingerprint(),
        retimed=time.time_ns() if ctx.req.retime else None)


def _plan_target(ctx: _Planning, graphs: dict[str, GraphPlan]) -> TargetPlan:
    """The tail: chained parity + chain gate per host runtime, the target folder, the device bundle."""
    from voxc.compiler import bundle, chain as chain_mod, merge, report
    g, req, profile = ctx.g, ctx.req, ctx.profile
    fam = family_of(req.preset)
    every = {label: g.stages[label] for gp in graphs.values() for label in gp.labels()}
    tail = TargetPlan()
    if fam.chain is not None and set(fam.graph_names) <= set(graphs):
        tail.chained = True
        for runtime in [r for r in profile["backends"] if backend(r).parity == "host"]:
            # one per runtime: targets sharing a runtime share its chain
            seen = {n: gp.on(runtime) for n, gp in graphs.items()}
            used = {label: g.stages[label] for gp in seen.values()
                    for label in [gp.weights, gp.select[runtime], *(r.artifact for r in gp.all_rungs())]}
            ch = _stage(g, f"target/{runtime}/chain", chain_mod.chain_stage,
                        ChainParams(graphs=seen, preset=req.preset, runtimes=(runtime,), parity_set=ctx.parity_set),
                        used, ("torch",) + backend(runtime).tools, ctx.family_code + backend(runtime).modules)
            tail.chains.append(ch.label)
    info = TargetInfo(target=req.target, preset_name=req.preset_name, preset=req.preset, profile=profile,
                      data_sets={"calibration": ctx.calibration_set, "parity": ctx.parity_set},
                      tools=tuple(sorted(set(EXPORT_TOOLS + ("onnxsim", "onnxslim")
                                             + tuple(t for r in profile["backends"] for t in backend(r).tools)))))
    t = _stage(g, "target/assemble", report.target_stage,
               AssembleParams(graphs=graphs, chains=tuple(tail.chains), chained=tail.chained, info=info),
               {**every, **{label: g.stages[label] for label in tail.chains}}, (), ctx.family_code)
    tail.assemble = t.label
    device = [r for r in profile["backends"] if backend(r).parity == "device"]
    if len(device) > 1:
        raise VoxcError(f"target {req.target} defers parity for backends {device}; a bundle holds exactly one")
    if device:
        b = _stage(g, "target/bundle", bundle.bundle_stage,
                   BundleParams(graphs=graphs, runtime=device[0], assemble=t.label, info=info),
                   {**every, t.label: t}, (), ctx.family_code + backend(device[0]).modules + backend(device[0]).shipped)
        tail.bundle = b.label
        stored = merge.stored_results(req.artifacts, req.target)
        if stored:     # device results merged before: inputs of this build, by content
            m = _stage(g, "target/merged", merge.merged_stage, MergedParams(target=req.target),
                       {"assemble": t, "bundle": b, **{f"device.{p.stem}": p for p in stored}}, (),
                       (backend(device[0]).__module__,))
            tail.merged = m.label
    return tail


def run_graph(g: BuildGraph, executor, req: BuildRequest) -> dict:
    """Run a build graph with its progress said (compiler/progress.py) and its stage durations kept."""
    progress = Progress(g.cache, list(g.stages), workers=req.jobs, quiet=req.quiet)
    try:
        return g.run(executor, progress)
    finally:
        progress.save()


def add_device_stage(g: BuildGraph, plan_: BuildPlan, req: BuildRequest, profile: dict, executor) -> Stage | None:
    """target/device (compiler/device_stage.py) when the executor has a node that offers the target's device."""
    from voxc.compiler import device_stage
    tail = plan_.target
    if tail.bundle is None or not hasattr(executor, "offers"):
        return None
    runtime = g.stages[tail.bundle].params.runtime
    where = device_stage.placement(profile, runtime)
    if not executor.offers(**where):
        print(f"voxc: no Ray node offers {where['resources']}{where['labels'] or ''}; {req.target} device parity "
              "stays deferred to the bundle", flush=True)
        return None
    s = g.add(Stage(label="target/device", name="device_stage", fn=device_stage.device_stage,
                    params=DeviceParams(target=req.target, runner=req.device_runner or runtime),
                    inputs={"assemble": g.stages[tail.assemble], "bundle": g.stages[tail.bundle]},
                    code=("voxc.compiler.merge", "voxc.targets.device_verify") + backend(runtime).shipped, **where))
    tail.device = s.label
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


def ship(req: BuildRequest, results: dict, plan_: BuildPlan, artifacts: Path | None = None) -> Path:
    """Place one target's folder (and its timings) from its tail stages' outputs."""
    from voxc.core.target import dumps
    artifacts = artifacts or req.artifacts
    tail = plan_.target
    for d in [d for label in tail.chains for d in results[label].record.get("demotions", [])]:
        print(f"voxc: {d['model']} on {d['runtime']}: {d['reason']}; falls back to {d['to']}", flush=True)
    folder = place(artifacts, req.target, [results[label].path for label in tail.shipped()])
    write_atomic(timings_path(artifacts, req.target),
                 dumps({"target": req.target, "models": results[tail.assemble].record.get("timings", {})},
                       sort_keys=True))
    dev = results[tail.device].record.get("device") if tail.device else None
    if dev and not req.quiet:
        print(f"voxc: device parity ran on node {dev['host']} with {dev['runner']}"
              f"{' (stand-in: proves the bundle, not the device)' if dev['stand_in'] else ''}: {dev['rows']} rows "
              f"merged into the reports of {folder}", flush=True)
    return folder


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
    g, plan_ = plan(req, profile)
    use_store(g, req)
    with build_lock(req.artifacts):
        sweep(req, g)
        executor = make_executor(req)
        try:
            add_device_stage(g, plan_, req, profile, executor)
            if not req.quiet:
                print(f"voxc: building target '{req.target}' (family {family_of(req.preset).name}, preset "
                      f"{req.preset_name}, {len(req.models)} models, {len(g.stages)} stages, "
                      f"{f'{req.jobs} workers' if req.executor == 'local' else 'each a Ray task'})", flush=True)
            results = run_graph(g, executor, req)
        finally:
            executor.shutdown()
        folder = ship(req, results, plan_)
    shipped = read_target(folder)             # what ships is what was verified: read back through the schema
    pending = False
    if plan_.target.bundle:
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
