"""Facts read off an ONNX graph: op histogram, IO with symbolic dims, and the spec conformance check."""
from __future__ import annotations

from collections import Counter

import onnx

from voxc.core.errors import VoxcError, first_line
from voxc.models.spec import ModelSpec

_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
           onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT8: "int8",
           onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.BOOL: "bool", onnx.TensorProto.DOUBLE: "float64"}


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    """Node counts per op type, including nodes inside subgraphs and local functions."""
    counts: Counter = Counter()

    def walk(graph):
        for node in graph.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
    walk(model.graph)
    for fn in model.functions:
        for node in fn.node:
            counts[node.op_type] += 1
    return dict(sorted(counts.items()))


def _dims(value_info) -> list:
    dims = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else "?"))
    return dims


def io_summary(model: onnx.ModelProto) -> dict:
    def one(v):
        return {"name": v.name, "dtype": _DTYPES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type)),
                "dims": _dims(v)}
    inits = {i.name for i in model.graph.initializer}
    return {"inputs": [one(v) for v in model.graph.input if v.name not in inits],
            "outputs": [one(v) for v in model.graph.output]}


def graph_facts(model: onnx.ModelProto) -> dict:
    hist = op_histogram(model)
    return {"nodes": sum(hist.values()), "ops": hist, "opset": max((o.version for o in model.opset_import
                                                                     if o.domain in ("", "ai.onnx")), default=0)}


def conformance_problems(model: onnx.ModelProto, spec: ModelSpec) -> list[str]:
    """Where the graph's IO disagrees with the spec: names, dtypes, fixed dims, frozen dynamic dims."""
    io = io_summary(model)
    problems = []
    for side, declared in (("inputs", spec.inputs), ("outputs", spec.outputs)):
        got = {v["name"]: v for v in io[side]}
        for t in declared:
            if t.name not in got:
                problems.append(f"{side[:-1]} '{t.name}' is missing (graph has {sorted(got)})")
                continue
            g = got[t.name]
            if len(g["dims"]) != len(t.dims):
                problems.append(f"'{t.name}' has rank {len(g['dims'])}, spec says {len(t.dims)}")
                continue
            for axis, (want, have) in enumerate(zip(t.dims, g["dims"])):
                if isinstance(want, int) and have != want:
                    problems.append(f"'{t.name}' axis {axis} is {have}, spec fixes {want}")
                if isinstance(want, str) and isinstance(have, int):
                    problems.append(f"'{t.name}' axis {axis} ('{want}') was frozen to {have} at export")
            if side == "inputs" and g["dtype"] != t.dtype:
                problems.append(f"input '{t.name}' is {g['dtype']}, spec says {t.dtype}")
    return problems


def check_graph(model: onnx.ModelProto, spec: ModelSpec) -> onnx.ModelProto:
    """onnx.checker + shape inference + conformance; returns the shape-inferred model."""
    try:
        onnx.checker.check_model(model, full_check=False)
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, data_prop=True)
    except Exception as exc:
        raise VoxcError(f"{spec.name}: ONNX check failed: {first_line(exc)}") from None
    problems = conformance_problems(inferred, spec)
    if problems:
        raise VoxcError(f"{spec.name}: exported graph does not match its spec: {'; '.join(problems)}")
    return inferred
