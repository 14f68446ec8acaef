"""ONNX graph lookups shared by the backends that quantise (ONNX Runtime, OpenVINO/NNCF)."""
from __future__ import annotations

import onnx


def nodes_using(model: onnx.ModelProto, prefixes) -> list[str]:
    """Names of nodes that read a parameter whose name starts with one of the prefixes
    (e.g. 'conv_pre.' -> the vocoder's first convolution), following a Q/DQ or Cast in between."""
    prefixes = tuple(prefixes)
    if not prefixes:
        return []
    params = {i.name for i in model.graph.initializer if i.name.startswith(prefixes)}
    produced = {o: n for n in model.graph.node for o in n.output}
    out = []
    for n in model.graph.node:
        for i in n.input:
            src = produced.get(i)
            names = {i} | (set(src.input) if src is not None and src.op_type in ("Cast", "DequantizeLinear") else set())
            if names & params:
                out.append(n.name)
                break
    return out


QDQ_MARKERS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")


def quantised_nodes(model: onnx.ModelProto) -> dict:
    """How much of an ONNX graph runs quantised: `markers` counts its Q/DQ nodes; `ops` counts, per op
    type, the nodes that read a dequantised tensor or are integer ops (QLinear*, *Integer*); `nodes`
    is their total. A graph with no marker and no integer op is a float graph, whatever it is called."""
    from collections import Counter
    dequantised = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    markers, ops = 0, Counter()
    for n in model.graph.node:
        if n.op_type in QDQ_MARKERS:
            markers += 1
        elif n.op_type.startswith("QLinear") or "Integer" in n.op_type or dequantised & set(n.input):
            ops[n.op_type] += 1
    return {"markers": markers, "nodes": sum(ops.values()), "ops": dict(sorted(ops.items()))}
