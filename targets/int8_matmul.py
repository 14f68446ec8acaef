"""ONNX Runtime int8 with float outputs: 1-D convolutions rewritten as int8 matrix products, time-major.

ORT runs a static QDQ convolution in int8 only as a fused QLinearConv, whose output is rounded to 8 bits
again; on a trained HiFi-GAN that second rounding is what costs the voice (docs/own-vocoder.md: worst
PESQ-WB 3.0 with conv outputs in 8 bits, 4.0 with them in float). This module rewrites chosen Convs (1-D,
group 1, stride 1, constant weight) and ConvTransposes (1-D, group 1; `_conv_transpose`) of an exported
graph so that input and weights are 8-bit and the output stays float, on ORT's integer GEMM (MLAS: VNNI/AMX where the CPU has them):

    x [B,T,C] float -> DynamicQuantizeLinear (u8, this call's own range) -> Pad (with the zero point) to
    whole blocks of G samples -> Reshape [B, blocks, G*C] (free) -> Gather rows m + shift for every block
    shift read -> [B, n, shifts*G*C] -> MatMulIntegerToFloat(int8 block-Toeplitz weights [shifts*G*C, G*O],
    per-channel scales, bias) -> Reshape [B, n*G, O] (free) -> Slice to T rows

One row of the product makes G output samples from the few blocks its taps reach, so the im2col (one
Gather) copies whole blocks (G*C bytes) instead of one C-byte row per tap; the zero taps of the block-Toeplitz matrix cost
multiply-adds, which int8 GEMM units have to spare, not memory traffic, which they do not.

Tensors between rewritten convolutions are kept time-major ([B,T,C]): every connected region of rewritten
convolutions and element-wise ops (LeakyRelu, Add, Mul, ...) is converted as a whole, with one Transpose
where a channel-major tensor enters the region and one where a region tensor leaves it. Called by the ORT
backend's int8 rung when its activation calibration is "dynamic" (targets/onnxruntime.py).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

ELEMENTWISE = {"LeakyRelu", "Relu", "Tanh", "Sigmoid", "Add", "Sub", "Mul", "Div", "Identity"}


def _attrs(n) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


def rewritable(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes this module can rewrite: 1-D Conv (group 1, stride 1) and 1-D ConvTranspose (group 1,
    dilation 1, output padding no larger than the end padding) with an initializer weight and bias."""
    params = {i.name: i for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose") or len(n.input) < 2 or n.input[1] not in params:
            continue
        a = _attrs(n)
        ok = (len(params[n.input[1]].dims) == 3 and a.get("group", 1) == 1
              and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
              and (len(n.input) < 3 or not n.input[2] or n.input[2] in params))
        if n.op_type == "Conv":
            ok = ok and list(a.get("strides", [1])) == [1]
        else:
            pads = (list(a.get("pads", [0, 0])) + [0, 0])[:2]
            ok = (ok and list(a.get("dilations", [1])) == [1] and "output_shape" not in a
                  and int((list(a.get("output_padding", [0])) + [0])[0]) <= pads[1])
        if ok:
            out.append(n.name)
    return out


def _shifts(k: int, dilation: int, block: int) -> list[int]:
    return sorted({(r + j * dilation) // block for r in range(block) for j in range(k)})


def block_length(channels: int, outputs: int, k: int, dilation: int) -> int:
    """Samples per block G, from a cost per output sample (in ns, fitted on this project's AVX-512/AMX
    host): the im2col's bytes (0.1 each), its copies (10 per block copied) and the GEMM's multiply-adds,
    zeros of the block-Toeplitz matrix included (0.0005 each)."""
    def cost(g):
        n = len(_shifts(k, dilation, g))
        return 0.1 * n * channels + 10.0 * n / g + 0.0005 * n * g * channels * outputs
    return min((1, 2, 4, 8, 16, 32), key=cost)


def block_toeplitz(w: np.ndarray, dilation: int, block: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """[O,C,k] float weights -> (int8 block-Toeplitz matrix [len(shifts)*G*C, G*O], per-column scale [G*O],
    shifts: the block offsets an output block reads). Output sample r of a block reads tap j of W[o, c] at
    offset r + j*dilation, i.e. sample (r + j*dilation) % G of block shift (r + j*dilation) // G."""
    o, c, k = w.shape
    g = block
    shifts = _shifts(k, dilation, g)
    row = {b: i for i, b in enumerate(shifts)}
    scale = np.maximum(np.abs(w).reshape(o, -1).max(axis=1), 1e-12) / 127.0
    q = np.clip(np.round(w / scale[:, None, None]), -127, 127).astype(np.int8)
    big = np.zeros((len(shifts), g, c, g, o), np.int8)
    for r in range(g):
        for j in range(k):
            at = r + j * dilation
            big[row[at // g], at % g, :, r, :] = q[:, :, j].T
    return big.reshape(len(shifts) * g * c, g * o), np.tile(scale, g).astype(np.float32), shifts


class _Graph:
    """Builds the replacement nodes and initializers, naming everything under one prefix per node."""

    def __init__(self):
        self.nodes, self.inits = [], []

    def const(self, name: str, value) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str, **kw) -> None:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **kw))


def _product(out: _Graph, p: str, x: str, y: str, block: int, channels: int, shifts: list[int], pads: str, rows: str,
             weights: np.ndarray, scale: np.ndarray, bias: np.ndarray, outputs: int, start: int, length: str) -> None:
    """The int8 product shared by both layer kinds: quantise x [B,T,C] (this call's range), pad it with the zero
    point by `pads`, view it as blocks of `block` samples, gather for each of `rows` product rows the blocks at
    row + shift for every shift, multiply by the int8 `weights` (per-column `scale`, `bias`) and view the rows
    as [B, rows * (columns / outputs), outputs]; y is that from sample `start`, `length` samples long."""
    C = out.const
    out.node("Pad", [p + "/q", pads, p + "/zp"], [p + "/qp"], p + "/pad")
    out.node("Reshape", [p + "/qp", C(p + "/blocked_shape", np.array([0, -1, block * channels], np.int64))],
             [p + "/qb"], p + "/blocked")
    axis = C(p + "/axis", np.array([1], np.int64))
    # im2col as one Gather: row m of the product reads blocks m + shift for every shift read
    out.node("Squeeze", [rows, C(p + "/sq", np.array([0], np.int64))], [p + "/rows_scalar"], p + "/rows_scalar")
    out.node("Range", [C(p + "/r0", np.array(0, np.int64)), p + "/rows_scalar", C(p + "/r1", np.array(1, np.int64))],
             [p + "/rows_idx"], p + "/rows_idx")
    out.node("Unsqueeze", [p + "/rows_idx", axis], [p + "/rows_col"], p + "/rows_col")
    out.node("Add", [p + "/rows_col", C(p + "/shifts", np.array(shifts, np.int64)[None, :])], [p + "/idx"], p + "/idx")
    out.node("Gather", [p + "/qb", p + "/idx"], [p + "/cols4"], p + "/im2col", axis=1)
    out.node("Reshape", [p + "/cols4", C(p + "/cols_shape", np.array([0, 0, -1], np.int64))], [p + "/cols"],
             p + "/cols")
    out.node("MatMulIntegerToFloat", [p + "/cols", C(p + "/w", weights), p + "/s", C(p + "/w_scale", scale), p + "/zp",
                                      "", C(p + "/bias", bias.astype(np.float32))], [p + "/yb"], p[:-3],
             domain="com.microsoft")
    out.node("Reshape", [p + "/yb", C(p + "/rows_shape", np.array([0, -1, outputs], np.int64))], [p + "/yr"], p + "/rows")
    begin = C(p + "/begin", np.array([start], np.int64))
    out.node("Add", [length, begin], [p + "/end"], p + "/end")
    out.node("Slice", [p + "/yr", begin, p + "/end", axis], [y], p + "/crop")


def _lengths(out: _Graph, p: str, x: str) -> str:
    """Quantise x and return the name of its length T (a 1-element int64 tensor)."""
    out.node("DynamicQuantizeLinear", [x], [p + "/q", p + "/s", p + "/zp"], p + "/quantise")
    out.node("Shape", [x], [p + "/shape"], p + "/shape", start=1, end=2)
    return p + "/shape"


def _conv(out: _Graph, n, w: np.ndarray, bias: np.ndarray, x: str, y: str) -> None:
    """The nodes computing Conv `n` on time-major x [B,T,C] into time-major y [B,T_out,O]: blocks of G input
    samples make G output samples through the block-Toeplitz matrix."""
    a = _attrs(n)
    o, c, k = w.shape
    d = int(a.get("dilations", [1])[0])
    pad_l, pad_r = (list(a.get("pads", [0, 0])) + [0, 0])[:2]
    g = block_length(c, o, k, d)
    big, scale, shifts = block_toeplitz(w, d, g)
    p = n.name + "/i8"
    C = out.const
    t = _lengths(out, p, x)
    # T_out = T + pad_l + pad_r - (k-1)d; rows n = ceil(T_out / G); padded length (n + last shift) * G
    out.node("Add", [t, C(p + "/grow", np.array([pad_l + pad_r - (k - 1) * d], np.int64))], [p + "/t_out"], p + "/t_out")
    out.node("Add", [p + "/t_out", C(p + "/g1", np.array([g - 1], np.int64))], [p + "/t_up"], p + "/t_up")
    out.node("Div", [p + "/t_up", C(p + "/g", np.array([g], np.int64))], [p + "/n"], p + "/n")
    out.node("Add", [p + "/n", C(p + "/last", np.array([shifts[-1]], np.int64))], [p + "/blocks"], p + "/blocks")
    out.node("Mul", [p + "/blocks", p + "/g"], [p + "/padded"], p + "/padded")
    out.node("Sub", [p + "/padded", t], [p + "/right0"], p + "/right0")
    out.node("Sub", [p + "/right0", C(p + "/left", np.array([pad_l], np.int64))], [p + "/right"], p + "/right")
    zeros = C(p + "/z1", np.array([0], np.int64))
    out.node("Concat", [zeros, p + "/left", zeros, zeros, p + "/right", zeros], [p + "/pads"], p + "/pads", axis=0)
    _product(out, p, x, y, g, c, shifts, p + "/pads", p + "/n", big, scale, np.tile(bias, g), o, 0, p + "/t_out")


def transposed_toeplitz(w: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray, int]:
    """ConvTranspose weights [C,O,K] -> (int8 [M*C, stride*O], per-column scale [stride*O], M = ceil(K/stride)).
    Output block t' (stride samples) is the sum over m < M of x[t' - m] @ W_m, W_m[c, r*O + o] = W[c, o, m*s + r];
    row block i of the matrix reads x[t' - (M-1) + i], i.e. m = M-1-i."""
    c, o, k = w.shape
    s = stride
    m_taps = -(-k // s)
    scale = np.maximum(np.abs(w).transpose(1, 0, 2).reshape(o, -1).max(axis=1), 1e-12) / 127.0
    q = np.clip(np.round(w / scale[None, :, None]), -127, 127).astype(np.int8)
    big = np.zeros((m_taps, c, s, o), np.int8)
    for m in range(m_taps):
        for r in range(s):
            if m * s + r < k:
                big[m_taps - 1 - m, :, r, :] = q[:, :, m * s + r]
    return big.reshape(m_taps * c, s * o), np.tile(scale, s).astype(np.float32), m_taps


def _conv_transpose(out: _Graph, n, w: np.ndarray, bias: np.ndarray, x: str, y: str) -> None:
    """The nodes computing ConvTranspose `n` on time-major x [B,T,C] into time-major y [B,T_out,O]: each input
    sample with the M-1 before it makes `stride` output samples; the full output is cropped by the padding."""
    a = _attrs(n)
    c, o, k = w.shape
    s = int(a["strides"][0])
    pad_l, pad_r = (list(a.get("pads", [0, 0])) + [0, 0])[:2]
    extra = int((list(a.get("output_padding", [0])) + [0])[0])
    big, scale, m_taps = transposed_toeplitz(w, s)
    p = n.name + "/i8"
    C = out.const
    t = _lengths(out, p, x)
    # rows T + M - 1 (every output block any input reaches); T_out = (T-1)s + K - pad_l - pad_r + output_padding
    out.node("Add", [t, C(p + "/more", np.array([m_taps - 1], np.int64))], [p + "/n"], p + "/n")
    out.node("Mul", [t, C(p + "/stride", np.array([s], np.int64))], [p + "/ts"], p + "/ts")
    out.node("Add", [p + "/ts", C(p + "/grow", np.array([k - s - pad_l - pad_r + extra], np.int64))], [p + "/t_out"],
             p + "/t_out")
    pads = C(p + "/pads", np.array([0, m_taps - 1, 0, 0, m_taps - 1, 0], np.int64))
    _product(out, p, x, y, 1, c, list(range(m_taps)), pads, p + "/n", big, scale, np.tile(bias, s), o, pad_l,
             p + "/t_out")


def _regions(model, chosen: set[str]) -> set[str]:
    """Nodes to run time-major: connected regions of chosen convolutions and element-wise ops (whose
    other inputs are scalars or [1,C,1] constants) that hold at least one chosen convolution."""
    params = {i.name: i for i in model.graph.initializer}
    consts = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    inferred = onnx.shape_inference.infer_shapes(model).graph
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in [*inferred.value_info, *inferred.input, *inferred.output]
            if v.type.tensor_type.HasField("shape")}

    def agnostic(n) -> bool:
        if n.name in chosen:
            return True
        if n.op_type not in ELEMENTWISE:
            return False
        for i in n.input:
            if i in consts or (i not in params and rank.get(i) != 3):     # only [B,C,T] tensors change layout
                return False
            if i in params and not (int(np.prod(params[i].dims)) == 1 or
                                    (len(params[i].dims) == 3 and params[i].dims[0] == 1 and params[i].dims[2] == 1)):
                return False
        return True

    nodes = [n for n in model.graph.node if agnostic(n)]
    parent = {n.name: n.name for n in nodes}

    def root(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a
    producer = {o: n.name for n in nodes for o in n.output}
    for n in nodes:
        for i in n.input:
            if i in producer:
                parent[root(n.name)] = root(producer[i])
    with_conv = {root(c) for c in chosen if c in parent}
    return {n.name for n in nodes if root(n.name) in with_conv}


def rewrite(model: onnx.ModelProto, nodes: list[str]) -> onnx.ModelProto:
    """A copy of `model` with the named Conv nodes (from rewritable()) as int8 matmuls with float output,
    and the regions around them time-major."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if nodes and opset < 15:
        from voxc.core.errors import VoxcError
        raise VoxcError(f"int8 'dynamic' needs an ONNX graph of opset 15 or later (Shape with start/end); this one "
                        f"is opset {opset}: export with a newer opset")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    params = {i.name: i for i in g.initializer}
    chosen = set(nodes) & set(rewritable(model))
    region = _regions(model, chosen)
    produced_in = {o for n in g.node if n.name in region for o in n.output}
    outside_use = {i for n in g.node if n.name not in region for i in n.input} | {o.name for o in g.output}
    out = _Graph()
    to_time = {}

    def time_major(name: str) -> str:
        if name in produced_in:
            return name + "/tm"
        if name in params and len(params[name].dims) == 3:
            if name + "/tm" not in to_time:
                to_time[name + "/tm"] = out.const(name + "/tm", numpy_helper.to_array(params[name]).transpose(0, 2, 1))
            return name + "/tm"
        if name in params or not name:
            return name
        if name not in to_time:
            to_time[name] = name + "/tm"
            out.node("Transpose", [name], [name + "/tm"], name + "/to_time", perm=[0, 2, 1])
        return to_time[name]

    for n in g.node:
        if n.name not in region:
            out.nodes.append(n)
            continue
        ins = [time_major(i) for i in n.input]
        if n.name in chosen:
            w = numpy_helper.to_array(params[n.input[1]]).astype(np.float32)
            o = w.shape[0] if n.op_type == "Conv" else w.shape[1]
            bias = (numpy_helper.to_array(params[n.input[2]]).astype(np.float32) if len(n.input) > 2 and n.input[2]
                    else np.zeros(o, np.float32))
            (_conv if n.op_type == "Conv" else _conv_transpose)(out, n, w, bias, ins[0], n.output[0] + "/tm")
        else:
            m = onnx.NodeProto()
            m.CopyFrom(n)
            m.input[:] = ins
            m.output[:] = [o + "/tm" for o in n.output]
            out.nodes.append(m)
        for o in n.output:
            if o in outside_use:
                out.node("Transpose", [o + "/tm"], [o], o + "/to_channels", perm=[0, 2, 1])
    used = {i for m in out.nodes for i in m.input}
    del g.node[:]
    g.node.extend(out.nodes)
    names = used | {o for m in out.nodes for o in m.output}
    kept_info = [v for v in g.value_info if v.name in names]
    del g.value_info[:]
    g.value_info.extend(kept_info)
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep + [i for i in out.inits if i.name in used])
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model
