"""The stage functions of the build graph: weights -> export -> check -> simplify -> artifact -> parity
-> select (the precision policy, one per model and runtime).

Each is a top-level pure function fn(out_dir, params, inputs) -> record, run in a worker process.
It rebuilds whatever it needs (module, ModelSpec, upstream reference modules for real-data feeds)
from its JSON parameters and input folders. Calibration and parity sets enter by content hash in
the params (so in every key); the data itself is read from calibration/data.
"""
from __future__ import annotations

import contextlib
import io
import time
import warnings
from pathlib import Path

import onnx
import torch

from voxc.compiler import onnx_info, parity
from voxc.compiler.plan import (ExportParams, FeedParams, GraphParams, ParityParams, RungParams, SelectParams,
                                WeightsParams)
from voxc.core.errors import VoxcError, first_line
from voxc.models.family import init_module, model_spec
from voxc.models.weights import load_into, load_module as load_reference, save_safetensors

WEIGHTS = "weights.safetensors"
ONNX = "model.onnx"


def load_module(params: GraphParams, weights_dir: Path) -> torch.nn.Module:
    return load_reference(params.model, params.config, weights_dir / WEIGHTS)


def weights(out: Path, params: WeightsParams, inputs: dict) -> dict:
    module = init_module(params.model, params.config)
    if "checkpoint" in inputs:
        load_into(module, inputs["checkpoint"], params.model)
    save_safetensors(module, out / WEIGHTS)
    return {"parameters": sum(p.numel() for p in module.parameters()),
            "source": params.checkpoint_name or f"seeded init (seed {params.config['seed']})"}


def _dynamic_shapes(spec) -> dict:
    dims = {name: torch.export.Dim(name, min=d.min, max=d.max) for name, d in spec.dims.items()}
    return {t.name: {axis: dims[d] for axis, d in enumerate(t.dims) if isinstance(d, str)} for t in spec.inputs}


def export(out: Path, params: ExportParams, inputs: dict) -> dict:
    spec = model_spec(params.model, params.config)
    module = load_module(params, inputs["weights"])
    example = spec.example_inputs()
    args = tuple(torch.from_numpy(example[t.name]) for t in spec.inputs)
    names = dict(input_names=[t.name for t in spec.inputs], output_names=[t.name for t in spec.outputs])
    t0 = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if params.exporter == "dynamo":
            torch.onnx.export(module, args, str(out / ONNX), dynamo=True, dynamic_shapes=_dynamic_shapes(spec),
                              opset_version=params.opset, external_data=False, **names)
        else:
            axes = {t.name: {a: d for a, d in enumerate(t.dims) if isinstance(d, str)} for t in spec.inputs + spec.outputs}
            axes = {k: {a: (d if "*" not in d else d.replace("*", "x")) for a, d in v.items()} for k, v in axes.items()}
            torch.onnx.export(module, args, str(out / ONNX), dynamo=False, dynamic_axes=axes,
                              opset_version=min(params.opset, 17), **names)
    model = onnx.load(str(out / ONNX))
    return {"exporter": params.exporter, "export_seconds": round(time.perf_counter() - t0, 2),
            **onnx_info.graph_facts(model)}


def check(out: Path, params: GraphParams, inputs: dict) -> dict:
    spec = model_spec(params.model, params.config)
    model = onnx_info.check_graph(onnx.load(str(inputs["onnx"] / ONNX)), spec)
    onnx.save(model, str(out / ONNX))
    return {**onnx_info.graph_facts(model), **onnx_info.io_summary(model)}


def _try_onnxsim(model):
    import onnxsim
    simplified, ok = onnxsim.simplify(model, check_n=0)
    if not ok:
        raise RuntimeError("onnxsim reported its result invalid")
    return simplified


def _try_onnxslim(model):
    import onnxslim
    return onnxslim.slim(model)


def _outputs(model, feeds: dict) -> dict:
    from voxc.targets import backend
    from voxc.targets.base import STAND_IN
    return backend(STAND_IN).open_graph(model.SerializeToString()).infer(feeds)


def output_mismatch(original, candidate, spec) -> str | None:
    """A simplified graph must compute what the exported one computes: both run on the spec's inputs at
    the opt and export lengths; integer outputs must be equal, float ones within 1e-5 relative L2."""
    import numpy as np
    from voxc.compiler.parity import point_inputs
    d = spec.dims[spec.sweep_dim]
    for length in sorted({d.opt, d.export}):
        feeds = point_inputs(spec, 1, length)
        feeds = {t.name: feeds[t.name] for t in spec.inputs}
        want, got = _outputs(original, feeds), _outputs(candidate, feeds)
        for t in spec.outputs:
            a, b = want[t.name], got.get(t.name)
            if b is None or a.shape != b.shape:
                return f"output {t.name} has shape {None if b is None else list(b.shape)}, not {list(a.shape)}"
            if a.dtype.kind in "iu":
                if not np.array_equal(a, b):
                    return f"output {t.name} differs at length {length}"
            else:
                err = float(np.linalg.norm((b - a).astype(np.float64)) / max(np.linalg.norm(a.astype(np.float64)), 1e-12))
                if not err <= 1e-5:
                    return f"output {t.name} differs at length {length} (relative L2 {err:.2e})"
    return None


def simplify(out: Path, params: GraphParams, inputs: dict) -> dict:
    """onnxsim, then onnxslim, then the unsimplified graph; a result must still conform to the spec and
    compute the same outputs as the exported graph (checked by running both)."""
    spec = model_spec(params.model, params.config)
    original = onnx.load(str(inputs["onnx"] / ONNX))
    reasons = []
    chosen, tool = original, "none"
    for name, fn in (("onnxsim", _try_onnxsim), ("onnxslim", _try_onnxslim)):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                candidate = fn(onnx.load(str(inputs["onnx"] / ONNX)))
            problems = onnx_info.conformance_problems(candidate, spec)
            if problems:
                raise RuntimeError("; ".join(problems))
            onnx.checker.check_model(candidate)
            mismatch = output_mismatch(original, candidate, spec)
            if mismatch:
                raise RuntimeError(f"outputs differ from the exported graph: {mismatch}")
            chosen, tool = candidate, name
            break
        except Exception as exc:
            reasons.append(f"{name}: {first_line(exc) or type(exc).__name__}")
    onnx.save(chosen, str(out / ONNX))
    before = onnx_info.graph_facts(original)["nodes"]
    return {"simplifier": tool, "fallback_reasons": reasons, "nodes_before": before, **onnx_info.graph_facts(chosen)}


def feed_maker(params: FeedParams, inputs: dict):
    """Real-data feeds for this graph; upstream graphs run as their FP32 reference modules."""
    from voxc.calibration.feeds import FeedMaker
    from voxc.targets.runner import TorchRunner
    up = {}
    for name, config in params.upstream.items():
        up[name] = TorchRunner(load_reference(name, config, inputs[f"up.{name}"] / WEIGHTS), model_spec(name, config))
    specs = {name: model_spec(name, config) for name, config in params.upstream.items()}
    return FeedMaker(params.model, model_spec(params.model, params.config), params.host_config, up, specs)


VALIDATION_ITEMS = 4


def _build_rung(out: Path, params: RungParams, inputs: dict) -> dict:
    """Build one precision of one graph into out; an int8 build that quantised nothing is refused."""
    from voxc.calibration.feeds import calibration_feeds, same_data
    from voxc.targets import backend
    spec = model_spec(params.model, params.config)
    options = dict(params.options)
    calibration = None
    if params.precision == "int8":
        maker = feed_maker(params, inputs)
        same_data(maker.family, "calibration", params.calibration_set)
        n = int(options.get("calibration_items", 32))
        d = spec.dims[spec.sweep_dim]
        items = calibration_feeds(maker, n + VALIDATION_ITEMS, max_length=d.opt)
        calibration, options["validation"] = items[:-VALIDATION_ITEMS] or items, items[-VALIDATION_ITEMS:]
    be = backend(params.runtime)
    record = be.build(inputs["onnx"] / ONNX, out, params.precision, spec, calibration=calibration, options=options,
                      torch_module=lambda: load_module(params, inputs["weights"]))
    if params.precision == "int8":
        record["quantised"] = quantised_or_refused(be, out, record, f"{params.model} {params.runtime} int8",
                                                   options)
    return record


def quantised_or_refused(be, out: Path, record: dict, label: str, options: dict) -> dict | None:
    """What an int8 artifact quantised (the backend's count: markers, nodes, ops per type); an artifact
    with no quantisation marker is the float graph under an int8 name and is refused with that reason."""
    counts = be.quantised(out, record)
    if counts is not None and not counts["markers"]:
        raise VoxcError(f"{label}: no quantised node in the built graph (no QuantizeLinear/DequantizeLinear or "
                        f"FakeQuantize): op_types {list(options.get('op_types') or [])} quantise nothing here; list "
                        "its weighted layer types (e.g. Conv, ConvTranspose) in op_types")
    return counts


def _clear(out: Path) -> None:
    import shutil
    for p in out.iterdir():
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"


def _refused(out: Path, params: RungParams, error: str, attempts: int) -> dict:
    _clear(out)
    return {"file": None, "error": error, "attempts": attempts, "precision": params.precision,
            "runtime": params.runtime}


def attempt_rung(out: Path, params: RungParams, build) -> dict:
    """A rung's record. A rung that is not the ladder's fallback may fail to build: a refusal (VoxcError:
    settings it cannot use, nothing quantised) is its result at once; any other error is retried once
    from an empty folder, and becomes its result only when the retry fails the same way (deterministic).
    Two different errors are transient: raised, so no cache entry records them. The fallback's errors
    fail the build."""
    fallback = params.fallback
    try:
        return build()
    except VoxcError as exc:
        if fallback:
            raise
        return _refused(out, params, _said(exc), 1)
    except Exception as first:
        if fallback:
            raise
        _clear(out)
        try:
            record = build()
        except VoxcError as exc:
            return _refused(out, params, _said(exc), 2)
        except Exception as second:
            if _said(second) != _said(first):
                raise RuntimeError(f"the {params.precision} rung raised two different errors ({_said(first)}; "
                                   f"then {_said(second)}): a transient failure, not recorded as its result; "
                                   "build again") from second
            return _refused(out, params, _said(second), 2)
        return {**record, "retried_after": _said(first)}


def artifact(out: Path, params: RungParams, inputs: dict) -> dict:
    """One precision of one graph (attempt_rung: what a failing rung records). Records, for int8, how
    many nodes run quantised (`quantised`: markers, nodes, ops per type)."""
    record = attempt_rung(out, params, lambda: _build_rung(out, params, inputs))
    if record.get("file") is None:
        return record
    if params.calibration_set:
        record["calibration_set"] = params.calibration_set
    if record.get("format") == "onnx":    # a Core ML package or an OpenVINO IR records its own facts
        record.update(onnx_info.graph_facts(onnx.load(str(out / record["file"]))))
    return record


def _artifact_record(folder: Path) -> dict:
    from voxc.compiler.graph import read_record
    return read_record(folder)


def parity_check(out: Path, params: ParityParams, inputs: dict) -> dict:
    from voxc.calibration.feeds import same_data, sweep_feeds
    from voxc.targets import backend
    spec = model_spec(params.model, params.config)
    rec = _artifact_record(inputs["artifact"])
    data = {"parity_set": params.parity_set}
    if rec.get("file") is None:          # a rung that failed to build (or was refused): one failing row, any runtime
        rows = [{"model": spec.name, "precision": params.precision, "runtime": params.runtime, "length": 0,
                 "batch": 0, "output": "*", "metric": "builds", "value": 0.0, "tolerance": 1.0, "passed": False,
                 "error": rec.get("error", "no artifact"), **data}]
        return {"passed": False, "rows": rows}
    if backend(params.runtime).parity == "device":
        from voxc.compiler import deferred
        return deferred.parity_stage(out, params, inputs, load_module(params, inputs["weights"]))
    module = load_module(params, inputs["weights"])
    maker = feed_maker(params, inputs)
    same_data(maker.family, "parity", params.parity_set)
    runner = backend(params.runtime).open(inputs["artifact"] / rec["file"], rec)
    rows = parity.check(spec, module, runner, params.precision, params.runtime,
                        [tuple(p) for p in params.sweep], feeds=lambda b, n: sweep_feeds(maker, b, n), data=data)
    return {"passed": all(r["passed"] for r in rows), "rows": rows}


def select(out: Path, params: SelectParams, inputs: dict) -> dict:
    """The precision policy for one model on one runtime: gates + interleaved timing at the opt shape."""
    import os
    from voxc.calibration.feeds import sweep_feeds
    from voxc.compiler import policy
    from voxc.targets import backend
    spec = model_spec(params.model, params.config)
    ladder = list(params.ladder)
    gates, runners = {}, {}
    for p in ladder:
        rows = _artifact_record(inputs[f"parity.{p}"])["rows"]
        gates[p] = policy.gate_reason(rows)
        rec = _artifact_record(inputs[f"artifact.{p}"])
        if rec.get("file"):          # rungs that failed a gate are timed too: the manifest reports their speed
            runners[p] = backend(params.runtime).open(inputs[f"artifact.{p}"] / rec["file"], rec,
                                                      threads=params.threads or None)
    timings = {}
    if len(ladder) > 1 and len(runners) > 1:
        d = spec.dims[spec.sweep_dim]
        feeds = sweep_feeds(feed_maker(params, inputs), 1, d.opt)
        feeds = {t.name: feeds[t.name] for t in spec.inputs}
        timings = policy.time_interleaved(runners, feeds, runs=params.runs)
    decision = policy.decide(ladder, gates, timings, params.margin)
    return {**decision, "ladder": ladder, "gates": gates, "timings": timings,
            "timing_shape": {"batch": 1, spec.sweep_dim: spec.dims[spec.sweep_dim].opt},
            "threads": params.threads or os.cpu_count()}


EXPORT_TOOLS = ("torch", "onnxscript", "onnx")


