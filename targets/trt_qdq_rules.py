"""TensorRT's explicit-quantization rules, checked on an INT8 QDQ ONNX graph before it ships (numpy + onnx only).

Its place: targets/tensorrt.py builds the int8 rung's QDQ graph (with ONNX Runtime's quantizer and the
TensorRT backend's own INT8 settings), then refuses it here if TensorRT 10/11 would not accept it, so a
device never receives a graph its builder rejects or runs unfused. Each violation is one line naming
the node and the rule. The rules (TensorRT's IQuantizeLayer/IDequantizeLayer and ONNX parser):

  opset        the default-domain opset is >= 13 (per-channel Q/DQ with an axis)
  domain       every node is in the standard ONNX domain (no com.microsoft contrib ops)
  int8         Q/DQ quantize to int8 only (not uint8, int16, nor an int32 bias DQ)
  zero point   zero points are all 0 (TensorRT quantization is symmetric)
  scale        scales are constant and > 0; activation scales are per-tensor (scalars)
  weight axis  a per-channel weight scale lies on the axis TensorRT's kernels quantize, and has that
               axis' length: Conv 0 (output channels); ConvTranspose 0 (TensorRT's deconvolution
               kernels quantize per input channel, NVIDIA/TensorRT#2380 -- not ORT's default axis 1);
               MatMul 1 (weight [K, N]); Gemm 0 with transB=1, else 1
  fusable      a quantized Conv/ConvTranspose/MatMul/Gemm has DQ on both its data input and its weight
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from voxc.core.errors import VoxcError

QDQ = ("QuantizeLinear", "DequantizeLinear")
FUSED = ("Conv", "ConvTranspose", "MatMul", "Gemm")
STANDARD_DOMAINS = ("", "ai.onnx")
MIN_OPSET = 13


def weight_axis(node) -> int:
    """The per-channel axis TensorRT expects for this node's weight (input 1)."""
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return 1 if node.op_type == "MatMul" else 0


def check(path: Path | str) -> list[str]:
    """Violations of TensorRT's INT8 explicit-quantization rules in the ONNX file at path ([] = accepted)."""
    import onnx
    path = Path(path)
    if not path.is_file():
        raise VoxcError(f"no ONNX file at {path} to check against TensorRT's int8 rules")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise VoxcError(f"{path} is not a readable ONNX model ({type(exc).__name__}); rebuild it") from None
    return check_model(model)


def check_model(model) -> list[str]:
    from onnx import numpy_helper
    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.domain in STANDARD_DOMAINS:
            value = next((a.t for a in n.attribute if a.name == "value"), None)
            if value is not None:
                consts[n.output[0]] = numpy_helper.to_array(value)
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = []
    opset = next((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), 0)
    if opset < MIN_OPSET:
        out.append(f"model [opset]: opset {opset} < {MIN_OPSET}: per-channel Q/DQ needs opset 13 or later")
    for n in graph.node:
        name = f"{n.op_type} {n.name or n.output[0]}"
        if n.domain not in STANDARD_DOMAINS:
            out.append(f"{name} [domain]: domain '{n.domain}': TensorRT parses standard ONNX ops only")
            continue
        if n.op_type in QDQ:
            out += _qdq(n, name, consts, producer, consumers)
        elif n.op_type in FUSED:
            out += _fusable(n, name, producer)
    return out


def _qtype(n, consts, producer) -> str | None:
    """The integer type a Q/DQ node quantizes to, when the graph says it."""
    from onnx import helper
    if len(n.input) > 2 and n.input[2] in consts:
        return str(consts[n.input[2]].dtype)
    if n.op_type == "QuantizeLinear":
        to = next((a.i for a in n.attribute if a.name == "output_dtype"), 0)
        return str(helper.tensor_dtype_to_np_dtype(to)) if to else "uint8"   # ONNX: no zero point -> uint8
    if n.input[0] in consts:
        return str(consts[n.input[0]].dtype)
    src = producer.get(n.input[0])
    return _qtype(src, consts, producer) if src is not None and src.op_type == "QuantizeLinear" else None


def _qdq(n, name, consts, producer, consumers) -> list[str]:
    out = []
    qtype = _qtype(n, consts, producer)
    if qtype is not None and qtype != "int8":
        hint = " (an int32 bias: keep biases float)" if qtype == "int32" else ""
        out.append(f"{name} [int8]: quantized type {qtype}{hint}: TensorRT accepts int8 Q/DQ only")
    if len(n.input) > 2 and n.input[2]:
        zp = consts.get(n.input[2])
        if zp is None:
            out.append(f"{name} [zero point]: zero point {n.input[2]} is not a constant: it must be all 0")
        elif np.any(zp.astype(np.int64) != 0):
            out.append(f"{name} [zero point]: zero point {zp.ravel()[:4].tolist()}: TensorRT needs 0 (symmetric)")
    scale = consts.get(n.input[1])
    if scale is None:
        return out + [f"{name} [scale]: scale {n.input[1]} is not a constant: TensorRT needs build-time scales"]
    if scale.size == 0 or not np.all(scale > 0):
        out.append(f"{name} [scale]: scale has non-positive values: TensorRT needs scales > 0")
    weight = consts.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
    if weight is None:                      # an activation: per-tensor only
        if scale.size != 1:
            out.append(f"{name} [scale]: activation scale has shape {list(scale.shape)}: "
                       "TensorRT quantizes activations per tensor (a scalar scale)")
        return out
    if scale.size == 1 and scale.ndim <= 1:
        return out                          # per-tensor weight: always accepted
    axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
    axis = axis + weight.ndim if axis < 0 else axis
    users = [c for c in consumers.get(n.output[0], []) if c.op_type in FUSED and list(c.input[1:2]) == [n.output[0]]]
    want = weight_axis(users[0]) if users else axis
    if scale.ndim != 1 or axis != want or axis >= weight.ndim or scale.size != weight.shape[axis]:
        dim = weight.shape[want] if want < weight.ndim else "?"
        user = f" for {users[0].op_type}" if users else ""
        out.append(f"{name} [weight axis]: per-channel weight scale of {scale.size} on axis {axis}: TensorRT needs "
                   f"axis {want}{user} with {dim} scales (weight shape {list(weight.shape)})")
    return out


def _fusable(n, name, producer) -> list[str]:
    """A quantized layer must read DQ on both its data input and its weight, or TensorRT cannot fuse it."""
    data, weight = (producer.get(i) for i in (list(n.input) + ["", ""])[:2])
    dq = [p is not None and p.op_type == "DequantizeLinear" for p in (data, weight)]
    if any(dq) and not all(dq):
        missing = "data input" if not dq[0] else "weight"
        return [f"{name} [fusable]: no DequantizeLinear on its {missing}: TensorRT fuses a quantized layer only with "
                "DQ on both its data input and its weight"]
    return []
