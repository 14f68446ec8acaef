"""The stage functions of the build graph: weights -> export -> check -> simplify -> artifact -> parity.

Each is a top-level pure function fn(out_dir, params, inputs) -> record, run in a worker process.
It rebuilds whatever it needs (module, ModelSpec) from its JSON parameters and input folders.
"""
from __future__ import annotations

import contextlib
import io
import time
import warnings
from pathlib import Path

import onnx
import torch

from compiler import onnx_info, parity
from models.registry import init_module, model_spec
from models.weights import load_into, save_safetensors

WEIGHTS = "weights.safetensors"
ONNX = "model.onnx"


def load_module(params: dict, weights_dir: Path) -> torch.nn.Module:
    from safetensors.torch import load_file
    module = init_module(params["model"], params["config"])
    module.load_state_dict(load_file(str(weights_dir / WEIGHTS)))
    return module.eval()


def weights(out: Path, params: dict, inputs: dict) -> dict:
    module = init_module(params["model"], params["config"])
    if "checkpoint" in inputs:
        load_into(module, inputs["checkpoint"], params["model"])
    save_safetensors(module, out / WEIGHTS)
    return {"parameters": sum(p.numel() for p in module.parameters()),
            "source": params.get("checkpoint_name") or f"seeded init (seed {params['config']['seed']})"}


def _dynamic_shapes(spec) -> dict:
    dims = {name: torch.export.Dim(name, min=d.min, max=d.max) for name, d in spec.dims.items()}
    return {t.name: {axis: dims[d] for axis, d in enumerate(t.dims) if isinstance(d, str)} for t in spec.inputs}


def export(out: Path, params: dict, inputs: dict) -> dict:
    spec = model_spec(params["model"], params["config"])
    module = load_module(params, inputs["weights"])
    example = spec.example_inputs()
    args = tuple(torch.from_numpy(example[t.name]) for t in spec.inputs)
    names = dict(input_names=[t.name for t in spec.inputs], output_names=[t.name for t in spec.outputs])
    t0 = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if params["exporter"] == "dynamo":
            torch.onnx.export(module, args, str(out / ONNX), dynamo=True, dynamic_shapes=_dynamic_shapes(spec),
                              opset_version=params["opset"], external_data=False, **names)
        else:
            axes = {t.name: {a: d for a, d in enumerate(t.dims) if isinstance(d, str)} for t in spec.inputs + spec.outputs}
            axes = {k: {a: (d if "*" not in d else d.replace("*", "x")) for a, d in v.items()} for k, v in axes.items()}
            torch.onnx.export(module, args, str(out / ONNX), dynamo=False, dynamic_axes=axes,
                              opset_version=min(params["opset"], 17), **names)
    model = onnx.load(str(out / ONNX))
    return {"exporter": params["exporter"], "export_seconds": round(time.perf_counter() - t0, 2),
            **onnx_info.graph_facts(model)}


def check(out: Path, params: dict, inputs: dict) -> dict:
    spec = model_spec(params["model"], params["config"])
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


def simplify(out: Path, params: dict, inputs: dict) -> dict:
    """onnxsim, then onnxslim, then the unsimplified graph; a result must still conform to the spec."""
    spec = model_spec(params["model"], params["config"])
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
            chosen, tool = candidate, name
            break
        except Exception as exc:
            reasons.append(f"{name}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__}")
    onnx.save(chosen, str(out / ONNX))
    before = onnx_info.graph_facts(original)["nodes"]
    return {"simplifier": tool, "fallback_reasons": reasons, "nodes_before": before, **onnx_info.graph_facts(chosen)}


def artifact(out: Path, params: dict, inputs: dict) -> dict:
    from targets import backend
    spec = model_spec(params["model"], params["config"])
    record = backend(params["runtime"]).build(
        inputs["onnx"] / ONNX, out, params["precision"], spec, calibration=None, options=params.get("options", {}),
        torch_module=lambda: load_module(params, inputs["weights"]))
    if not record["file"].endswith(".onnx"):  # e.g. a Core ML package: the backend records its own facts
        return record
    model = onnx.load(str(out / record["file"]))
    return {**record, **onnx_info.graph_facts(model)}


def parity_check(out: Path, params: dict, inputs: dict) -> dict:
    from targets import backend
    if getattr(backend(params["runtime"]), "PARITY", "host") == "device":
        from compiler import deferred
        return deferred.parity_stage(out, params, inputs)
    spec = model_spec(params["model"], params["config"])
    module = load_module(params, inputs["weights"])
    runner = backend(params["runtime"]).runner(inputs["artifact"] / params["file"])
    rows = parity.check(spec, module, runner, params["precision"], params["runtime"],
                        [tuple(p) for p in params["sweep"]])
    return {"passed": all(r["passed"] for r in rows), "rows": rows}


STAGE_VERSIONS = {"weights": 1, "export": 1, "check": 1, "simplify": 1, "artifact": 1, "parity": 1}
EXPORT_TOOLS = ("torch", "onnxscript", "onnx")


def stage_fn(name: str):
    return {"weights": weights, "export": export, "check": check, "simplify": simplify,
            "artifact": artifact, "parity": parity_check}[name]


