"""Triton model repository: a built target folder -> a Triton Inference Server model repository.

`voxc export triton --target T --out DIR` reads artifacts/T (voxc.api.open_target: every file's sha256
checked) and writes, atomically (a temporary sibling renamed into place last):

    <graph>/config.pbtxt, <graph>/1/model.*   one model per graph: the accepted precision's artifact of
                                              one runtime (targets/serving.py: platform or backend, file
                                              names, instance kind, CPU threads); dims from the manifest's
                                              spec (-1 for dynamic axes; the batch axis left out when the
                                              spec's batch range allows batching: max_batch_size and dynamic
                                              batching); a warm-up request at the spec's opt lengths
    <family>_pipeline/                        text -> waveform as a Python-backend model (BLS): the inputs
                                              of `voxc serve` (text, voice, style/emotion, speed as BYTES
                                              and FP32) through voxc.runtime's Voice, every graph step a
                                              request to that graph's model; model.py is
                                              voxc/triton_model.py, beside it pipeline.json and the
                                              voxc modules it runs (checked to load torch-free)
    <family>_stream/                          the same, decoupled: the last graph runs over overlapping
                                              chunks (the build's accepted streaming-gate chunking) and each
                                              piece of audio is a response as soon as it is ready
    README.md                                 what is where, how to serve it, what was checked

Runtimes whose artifact is built on the serving device (TensorRT plans, unless this host built the
engine) get their config, the host-validated ONNX beside it and the command that builds the plan;
Triton loads such a model once the plan is in its version folder.

Every config.pbtxt is generated with Triton's own protobuf classes (tritonclient's model_config_pb2)
and written with text_format, so it parses by construction; the placed ONNX files' input and output
names and element types are checked against the spec. tests/test_triton.py parses every config back,
compares it with the manifest and the ONNX files, and imports and plans the shipped modules with torch
blocked. Served for real (nvidia-pytriton 0.7.0's tritonserver 2.51, which carries the Python backend
only, graphs swapped for Python stand-ins running the same model.onnx): all eight configs loaded and the
pipeline model ran its host steps and its first BLS call, which failed because that stub predates NumPy
2's ABI (tensors arrive with 0 bytes) while voxc pins numpy 2; so the served tests skip, saying so.
Not validated: Triton's ONNX Runtime / OpenVINO / TensorRT backends loading these configs and files,
and an end-to-end served waveform.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import uuid
from pathlib import Path


from voxc.core.atomic import swap_folder
from voxc.core.errors import VoxcError
from voxc.core.sources import closure, module_file

DTYPES = {"string": "TYPE_STRING", "float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "int64": "TYPE_INT64",
          "int32": "TYPE_INT32", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL"}
MODEL_PY = "voxc.triton_model"
# voxc.runtime's folder reader (Voice.open): the pipeline model makes its Voice from pipeline.json instead
NOT_SHIPPED = ("voxc.api",)
_STDLIB = __import__("sys").stdlib_module_names


def _pb():
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2
    return model_config_pb2, text_format


def _batched(spec) -> bool:
    """Batch through Triton (max_batch_size > 0, batch axis left out of dims) when the spec allows it."""
    b = spec.dims.get("batch")
    return bool(b and b.max > 1 and all(t.dims and t.dims[0] == "batch" for t in spec.inputs + spec.outputs))


def _dims(dims, batched: bool) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in (dims[1:] if batched else dims)]


def graph_config(name: str, spec, serving: dict, max_queue_delay_us: int, instances: int, threads: int = 1):
    """A graph's ModelConfig: IO from the spec, batching from its batch range, the runtime's platform, its
    CPU threads per instance (the backend's own parameters) and a warm-up request of zeros at the spec's
    opt lengths, so the first client request does not pay for the runtime's first-run setup."""
    mc, _ = _pb()
    batched = _batched(spec)
    cfg = mc.ModelConfig(name=name, max_batch_size=spec.dims["batch"].max if batched else 0)
    setattr(cfg, serving["field"], serving["value"])
    cfg.input.extend(mc.ModelInput(name=t.name, data_type=mc.DataType.Value(DTYPES[t.dtype]),
                                   dims=_dims(t.dims, batched)) for t in spec.inputs)
    cfg.output.extend(mc.ModelOutput(name=t.name, data_type=mc.DataType.Value(DTYPES[t.dtype]),
                                     dims=_dims(t.dims, batched)) for t in spec.outputs)
    if batched:
        b = spec.dims["batch"]
        cfg.dynamic_batching.preferred_batch_size.extend(sorted({n for n in (b.opt, b.export, b.max) if n > 1}))
        cfg.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    cfg.instance_group.append(mc.ModelInstanceGroup(count=instances,
                                                    kind=mc.ModelInstanceGroup.Kind.Value(serving["kind"])))
    for key, value in serving.get("threads", {}).items():
        cfg.parameters[key].string_value = value.format(threads=threads)
    opt = {n: d.opt for n, d in spec.dims.items()}
    warm = mc.ModelWarmup(name=f"{name}_opt_lengths", batch_size=1)
    for t in spec.inputs:
        warm.inputs[t.name].CopyFrom(mc.ModelWarmup.Input(
            data_type=mc.DataType.Value(DTYPES[t.dtype]), zero_data=True,
            dims=[d if isinstance(d, int) else (1 if d == "batch" else opt[d]) for d in (t.dims[1:] if batched else t.dims)]))
    cfg.model_warmup.append(warm)
    return cfg


def pipeline_config(name: str, inputs: dict, output: str, instances: int, decoupled: bool):
    mc, _ = _pb()
    cfg = mc.ModelConfig(name=name, backend="python", max_batch_size=0)
    cfg.input.extend(mc.ModelInput(name=n, data_type=mc.DataType.Value(DTYPES[i["dtype"]]), dims=i["dims"],
                                   optional=i["optional"]) for n, i in inputs.items())
    cfg.output.append(mc.ModelOutput(name=output, data_type=mc.TYPE_FP32, dims=[-1]))
    cfg.instance_group.append(mc.ModelInstanceGroup(count=instances, kind=mc.ModelInstanceGroup.KIND_CPU))
    if decoupled:
        cfg.model_transaction_policy.decoupled = True
    return cfg


def _text(cfg) -> str:
    return _pb()[1].MessageToString(cfg)


def _check_onnx(path: Path, spec) -> None:
    """The ONNX file's own graph inputs/outputs must be the spec's names and element types."""
    import onnx
    from onnx import helper
    g = onnx.load(str(path), load_external_data=False).graph
    for kind, declared, found in (("inputs", spec.inputs, g.input), ("outputs", spec.outputs, g.output)):
        got = {v.name: helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name for v in found}
        want = {t.name: t.dtype for t in declared}
        if {k: v for k, v in got.items() if k in want} != want:
            raise VoxcError(f"{path}: {kind} {got} do not match the manifest's {want}; rebuild the target")


def _trt_shapes(spec) -> dict[str, str]:
    """min/opt/max shapes per input (the device-build command's profile), from the spec's ranges."""
    out = {}
    for key, pick in (("min", lambda d: d.min), ("opt", lambda d: d.opt), ("max", lambda d: d.max)):
        sizes = {n: pick(d) for n, d in spec.dims.items()}
        out[key] = ",".join(f"{t.name}:" + "x".join(str(d if isinstance(d, int) else sizes[d]) for d in t.dims)
                            for t in spec.inputs)
    return out


def _place_graph(tmp: Path, target, name: str, runtime: str, serving: dict, spec, opts: dict) -> dict:
    """<graph>/config.pbtxt and its version folder; returns what the README says about it."""
    info = target.manifest.models[name]
    precision = info.precision[runtime]["accepted"]
    arts = [a for a in info.artifacts if a.runtime == runtime and a.precision == precision]
    mdir = tmp / name
    (mdir / "1").mkdir(parents=True)
    (mdir / "config.pbtxt").write_text(_text(graph_config(name, spec, serving, opts["max_queue_delay_us"],
                                                          opts["instances"], opts["threads"])))
    placed = {serving["files"][a.role]: a for a in arts if a.role in serving["files"]}
    row = {"graph": name, "precision": precision, "batched": _batched(spec)}
    if not placed:
        onnx_art = next((a for a in arts if a.role == "model" and a.format == "onnx"), None)
        if onnx_art is None or "device_build" not in serving:
            raise VoxcError(f"{target.folder}: no {runtime} artifact of {name} that Triton can load")
        shutil.copy2(target.folder / onnx_art.path, mdir / "model.onnx")
        _check_onnx(mdir / "model.onnx", spec)
        row["device_build"] = serving["device_build"].format(onnx=f"{name}/model.onnx", plan=f"{name}/1/model.plan",
                                                             **_trt_shapes(spec))
        return row
    for fname, a in placed.items():
        shutil.copy2(target.folder / a.path, mdir / "1" / fname)
        if a.role == "model" and a.format == "onnx":
            _check_onnx(mdir / "1" / fname, spec)
    return row


# ---- the pipeline (BLS) ------------------------------------------------------------------------

def text_inputs(fam) -> dict:
    """The pipeline model's inputs: what `voxc serve` takes in POST /v1/audio/speech (text, voice, style or
    its alias emotion, speed), plus `speaker` where the family takes one (an EmotiVoice speaker name or id).
    Strings are BYTES (UTF-8), one element each; only `text` is required."""
    names = ["text", "voice"] + (["speaker"] if "speaker" in fam.speaking.options else []) + ["style", "emotion", "speed"]
    return {n: {"dtype": "float32" if n == "speed" else "string", "dims": [1], "optional": n != "text"} for n in names}


def _imports_anywhere(name: str) -> set[str]:
    """Top-level packages a module imports anywhere in its text (function bodies included)."""
    import ast
    out: set[str] = set()
    for node in ast.walk(ast.parse(module_file(name).read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def _loaded_imports(name: str) -> set[str]:
    """Top-level packages a module imports when it is loaded (module-level statements, not function bodies)."""
    import ast
    out, todo = set(), list(ast.parse(module_file(name).read_text()).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            todo += [n for f in ("body", "orelse", "finalbody", "handlers") for n in getattr(node, f, [])]
    return out


def _ship_modules(mdir: Path, fam) -> list[str]:
    """The pipeline's voxc modules into mdir/voxc/..., checked to load with numpy alone (a function that
    imports torch, e.g. building a graph's module, is never called by the pipeline)."""
    from voxc.compiler.bundle import FORBIDDEN, bundle_path
    mods = closure(("voxc.models.family", "voxc.models.pipeline", "voxc.models.spec", "voxc.targets.split",
                    "voxc.runtime", fam.package), exclude=NOT_SHIPPED)
    for m in mods:
        bad = sorted(_loaded_imports(m) - {"voxc", "__future__", "numpy"} - set(_STDLIB))
        if bad or set(bad) & set(FORBIDDEN):
            raise VoxcError(f"{m} imports {', '.join(bad)} when loaded; the Triton pipeline model runs with numpy only")
    for m in mods:
        dst = mdir / bundle_path(m)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(module_file(m), dst)
    for p in sorted({p for f in mdir.rglob("*.py") for p in f.relative_to(mdir).parents if str(p) != "."}):
        (mdir / p / "__init__.py").touch()   # bare package markers where no real __init__ is shipped
    return mods


def _voices(fam, cfg: dict) -> tuple[dict, dict]:
    """The family's built-in voices for pipeline.json (their options; arrays, e.g. reference recordings,
    by the name of their entry in voices.npz): the served model knows the voices `voxc serve` knows."""
    import numpy as np
    doc, arrays = {}, {}
    for name, options in fam.speaking.builtin_voices(cfg).items():
        doc[name] = {}
        for k, v in options.items():
            if isinstance(v, np.ndarray):
                arrays[f"v{len(arrays)}"] = v
                doc[name][k] = {"npz": f"v{len(arrays) - 1}"}
            else:
                doc[name][k] = v
    return doc, arrays


def _place_pipeline(tmp: Path, target, specs: dict, models: dict, opts: dict) -> dict:
    """<family>_pipeline and <family>_stream: text in, waveform out, through voxc.runtime's Voice (the code
    `voxc speak` and `voxc serve` run) over the repository's graph models."""
    from voxc.compiler.bundle import FORBIDDEN
    from voxc.models.family import GraphStep, family_of
    from voxc.models.pipeline import Pipeline
    fam = family_of(target.config)
    missing = [g for g in fam.graph_names if g not in specs]
    if missing or fam.chain is None or fam.speaking is None:
        return {"skipped": f"the target lacks graphs {', '.join(missing)}" if missing else
                "the family declares no run-time speech" if fam.speaking is None else "no chain output"}
    pipe = Pipeline(fam, target.config, {}, specs)
    output = fam.chain.output
    inputs = text_inputs(fam)
    last = next(s for s in reversed(fam.steps) if isinstance(s, GraphStep) and output in pipe.writes(s))
    models_info = {g: target.manifest.models[g] for g in specs}
    doc = {"family": fam.name, "config": target.config, "models": models, "inputs": inputs, "output": output,
           "specs": {g: {k: m.io[k] for k in ("inputs", "outputs", "dims")} for g, m in models_info.items()},
           "manifest": {"models": {g: {"dims": m.io["dims"], "weights": m.weights or {}}
                                   for g, m in models_info.items()}}}
    doc["voices"], arrays = _voices(fam, target.config)
    rows = {}
    stream = _stream_plan(target, last.graph, opts)
    for kind, decoupled in (("pipeline", False), ("stream", True)):
        if decoupled and "skipped" in stream:
            rows[kind] = stream
            continue
        name = f"{fam.name}_{kind}"
        mdir = tmp / name / "1"
        mdir.mkdir(parents=True)
        shutil.copy2(module_file(MODEL_PY), mdir / "model.py")
        mods = _ship_modules(mdir, fam)
        (mdir / "pipeline.json").write_text(json.dumps({**doc, "stream": stream}, indent=1, sort_keys=True))
        if arrays:
            import numpy as np
            with open(mdir / "voices.npz", "wb") as f:
                np.savez(f, **arrays)
        (tmp / name / "config.pbtxt").write_text(_text(pipeline_config(name, inputs, output, opts["instances"],
                                                                       decoupled)))
        needs = sorted(set().union(*(_imports_anywhere(m) for m in mods)) - {"voxc", "__future__"} - set(_STDLIB)
                       - set(FORBIDDEN))       # imported only by code the pipeline never runs (building graphs)
        rows[kind] = {"model": name, "inputs": inputs, "output": output, "modules": mods, "packages": needs}
    rows["stream_plan"] = stream
    return rows


def _stream_plan(target, graph: str, opts: dict) -> dict:
    """Chunking of the last graph for the decoupled model: the chunking the build's streaming gate
    accepted (parity.json chain.stream: chunk, first chunk, context each side), so what Triton streams
    is what the gate proved equal to the whole utterance. `--chunk-frames` overrides the chunk length."""
    accepted = next((s for s in target.parity.streams().values() if s.passed and s.graph == graph), None)
    if accepted is None:
        return {"skipped": f"the build has no passed streaming gate for {graph} (rebuild with this voxc to get one)"}
    if opts.get("chunk"):
        accepted = dataclasses.replace(accepted, chunk=max(int(opts["chunk"]), accepted.context))
    return dataclasses.asdict(accepted)


# ---- the repository -----------------------------------------------------------------------------

def export(folder: Path, out: Path, runtime: str | None = None, max_queue_delay_us: int = 100, instances: int = 1,
           chunk: int | None = None, force: bool = False, threads: int = 1) -> dict:
    """Write the Triton model repository of a built target folder to `out`; returns its summary."""
    from voxc.api import open_target
    from voxc.models.spec import spec_from_json
    from voxc.targets.serving import triton
    if max_queue_delay_us < 0 or instances < 1 or threads < 1 or (chunk is not None and chunk < 1):
        raise VoxcError("--max-queue-delay-us must be >= 0, --instances, --threads and --chunk-frames >= 1")
    target = open_target(folder)
    runtimes = target.manifest.backends
    runtime = runtime or runtimes[0]
    if runtime not in runtimes:
        raise VoxcError(f"target {target.manifest.target} has no {runtime} artifacts: choose from {', '.join(runtimes)}")
    serving = triton(runtime)
    out = Path(out)
    _refuse_voxc_folder(out, target.folder)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise VoxcError(f"{out} exists and is not empty; pass --force to replace it or choose another --out")
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:6]}.tmp"
    try:
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise VoxcError(f"cannot write to {out.parent} ({exc.strerror}); choose a writable --out") from None
    try:
        specs = {n: spec_from_json(n, m.io) for n, m in target.manifest.models.items()}
        opts = {"max_queue_delay_us": max_queue_delay_us, "instances": instances, "chunk": chunk, "threads": threads}
        graphs = [_place_graph(tmp, target, n, runtime, serving, s, opts) for n, s in specs.items()]
        python = _place_pipeline(tmp, target, specs, {n: n for n in specs}, opts)
        summary = {"target": target.manifest.target, "runtime": runtime, "graphs": graphs, "python": python}
        (tmp / "README.md").write_text(_readme(summary, serving))
        swap_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary



def _refuse_voxc_folder(out: Path, source: Path) -> None:
    """--out must not be (or hold, or sit inside) a voxc target folder or build cache: --force replaces
    a Triton repository, never a build's outputs."""
    from voxc.compiler.graph import META
    from voxc.core.target import is_target
    out = out.resolve()
    for p in (out, *out.parents):
        if is_target(p) or p.name == "cache" and any(p.glob(f"*/{META}")) or p == source.resolve():
            raise VoxcError(f"--out {out} is {'inside ' if p != out else ''}a voxc target or cache folder ({p}); "
                            "choose an empty folder of its own for the Triton repository")
    if out.is_dir() and (any(out.glob(f"*/{META}")) or any(is_target(c) for c in out.iterdir() if c.is_dir())):
        raise VoxcError(f"--out {out} holds voxc targets or cache entries; choose an empty folder of its own "
                        "for the Triton repository")


def _readme(s: dict, serving: dict) -> str:
    lines = [f"# Triton model repository: voxc target `{s['target']}` ({s['runtime']} artifacts)", "",
             "Written by `voxc export triton`. Serve it with:", "",
             "    tritonserver --model-repository .", "",
             "| model | precision | batching |", "| --- | --- | --- |"]
    for g in s["graphs"]:
        lines.append(f"| {g['graph']} | {g['precision']} | {'dynamic batching (same-shape requests)' if g['batched'] else 'none'} |")
    builds = [g for g in s["graphs"] if "device_build" in g]
    if builds:
        lines += ["", "These plans are built on the serving GPU (an engine is specific to its GPU and TensorRT",
                  "version); Triton loads each model once its plan is in place. From this folder:", ""]
        lines += [f"    {g['device_build']}" for g in builds]
    p = s["python"]
    if "skipped" in p:
        lines += ["", f"No pipeline model: {p['skipped']}."]
    else:
        ins = ", ".join(f"{n} ({i['dtype']} {i['dims']}{', optional' if i['optional'] else ''})"
                        for n, i in p["pipeline"]["inputs"].items())
        lines += ["", f"`{p['pipeline']['model']}` (Python backend, BLS): {ins} -> {p['pipeline']['output']} (float32 [-1]).",
                  "The request of `voxc serve`'s POST /v1/audio/speech, as tensors: strings are BYTES (UTF-8); the",
                  "text goes through the same front end, segmentation and speaking code as `voxc speak`",
                  "(voxc.runtime.Voice), every graph step an inference request to the graph's model here.",
                  f"Its Python environment needs {', '.join(p['pipeline']['packages'])}; the voxc modules it runs "
                  "are in its 1/voxc/."]
        st = p["stream_plan"]
        if "skipped" in st:
            lines += [f"No streaming model: {st['skipped']}."]
        else:
            lines += [f"`{p['stream']['model']}` (decoupled): the same inputs; {st['graph']} runs over chunks of "
                      f"{st['chunk']} frames (the first {st['first']}) with {st['context']} frames of context each "
                      "side -- the chunking the build's streaming gate accepted -- each piece of audio sent when ready.",
                      "Edit `chunk` in its 1/pipeline.json to trade calls for first-audio latency (keep `context`)."]
    return "\n".join(lines) + "\n"
