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
