"""The "dynamic" ONNX Runtime int8 form (targets/int8_matmul.py): 1-D convolutions as time-major int8
block-Toeplitz matmuls with float outputs. Exact against the same integer arithmetic done in numpy, for
every kernel/dilation/padding/length/batch; the region stays time-major between rewritten layers; the
backend builds it, counts it, refuses it on a graph without convolutions; and a tampered weight fails."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from voxc.core.errors import VoxcError
from voxc.targets import backend
from voxc.targets import int8_matmul
from voxc.targets.ort_runner import OrtRunner

RNG = np.random.default_rng(0)


def _resblock(c: int, k: int, d: int, pads: tuple[int, int], k2: int = 3) -> onnx.ModelProto:
    """x -> LeakyRelu -> conv1 (k, dilation d, pads) -> LeakyRelu -> conv2 (k2) -> + x[crop] -> * 0.5."""
    w1 = (RNG.standard_normal((c, c, k)) * 0.1).astype(np.float32)
    w2 = (RNG.standard_normal((c, c, k2)) * 0.1).astype(np.float32)
    nodes = [helper.make_node("LeakyRelu", ["x"], ["a"], alpha=0.1, name="act1"),
             helper.make_node("Conv", ["a", "w1", "b1"], ["c1"], pads=list(pads), dilations=[d], name="conv1"),
             helper.make_node("LeakyRelu", ["c1"], ["a2"], alpha=0.1, name="act2"),
             helper.make_node("Conv", ["a2", "w2"], ["c2"], pads=[(k2 - 1) // 2, k2 // 2], name="conv2"),
             helper.make_node("Mul", ["c2", "half"], ["y"], name="scale")]
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(RNG.standard_normal(c).astype(np.float32), "b1"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", c, "t"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", c, "t2"])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _dq(x: np.ndarray) -> np.ndarray:
    """ONNX DynamicQuantizeLinear then dequantised: uint8, range including 0, round half to even."""
    lo, hi = min(np.float32(x.min()), np.float32(0)), max(np.float32(x.max()), np.float32(0))
    scale = (hi - lo) / np.float32(255) or np.float32(1.0)
    zp = np.clip(np.rint(-lo / scale), 0, 255)
    q = np.clip(np.rint(x / scale) + zp, 0, 255)
    return ((q - zp) * scale).astype(np.float64)


def _conv(x: np.ndarray, w: np.ndarray, b, d: int, pads) -> np.ndarray:
    """Conv1d in float64 with int8-rounded per-output-channel weights (what the rewrite multiplies by)."""
    scale = np.maximum(np.abs(w).reshape(w.shape[0], -1).max(axis=1), 1e-12) / 127.0
    wq = np.clip(np.rint(w / scale[:, None, None]), -127, 127) * scale[:, None, None]
    xp = np.pad(x, ((0, 0), (0, 0), pads))
    k = w.shape[2]
    t = xp.shape[2] - d * (k - 1)
    y = sum(np.einsum("oc,bct->bot", wq[:, :, j], xp[:, :, j * d: j * d + t]) for j in range(k))
    return y + (0 if b is None else b[None, :, None])


def _reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    p = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    a = {n.name: {t.name: helper.get_attribute_value(t) for t in n.attribute} for n in model.graph.node}
    lrelu = lambda v: np.where(v > 0, v, 0.1 * v)          # noqa: E731
    c1 = _conv(_dq(lrelu(x)), p["w1"], p["b1"], a["conv1"]["dilations"][0], tuple(a["conv1"]["pads"]))
    c2 = _conv(_dq(lrelu(c1).astype(np.float32)), p["w2"], None, 1, tuple(a["conv2"]["pads"]))
    return 0.5 * c2


@pytest.mark.parametrize("c,k,d,pads", [(256, 11, 5, (25, 25)), (128, 7, 3, (9, 9)), (64, 3, 1, (1, 1)),
                                        (32, 11, 5, (25, 25)), (32, 4, 2, (3, 3)), (5, 3, 1, (0, 2))])
def test_the_rewrite_is_the_int8_arithmetic_exactly(c, k, d, pads):
    model = _resblock(c, k, d, pads)
    rewritten = int8_matmul.rewrite(model, ["conv1", "conv2"])
    onnx.checker.check_model(rewritten)
    ops = [n.op_type for n in rewritten.graph.node]
    assert ops.count("MatMulIntegerToFloat") == 2 and "Conv" not in ops
    assert ops.count("Transpose") == 2           # into the time-major region once, out of it once
    run = OrtRunner(rewritten.SerializeToString(), 1, optimize=False)
    for batch, t in [(1, 37), (2, 64), (1, 1 + d * (k - 1)), (1, 301)]:
        x = RNG.standard_normal((batch, c, t)).astype(np.float32)
        y = next(iter(run.infer({"x": x}).values()))
        ref = _reference(model, x)
        assert y.shape == ref.shape
        err, top = np.abs(y - ref), np.abs(ref).max()
        # equal up to float32 rounding; a rare second-layer input one uint8 step over (float32 vs float64
        # landing on the other side of a .5) moves a few outputs by one step times a weight
        assert np.median(err) < 1e-5 * top and err.max() < 5e-3 * top, (batch, t)


def _conv_transpose_graph(c, o, k, s, pads, extra) -> onnx.ModelProto:
    w = (RNG.standard_normal((c, o, k)) * 0.1).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="up", strides=[s], pads=list(pads),
                            output_padding=[extra], kernel_shape=[k])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", c, "t"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", o, "t2"])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(RNG.standard_normal(o).astype(np.float32), "b")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("c,o,k,s,pads,extra", [(16, 8, 16, 8, (4, 4), 0), (8, 4, 10, 5, (3, 3), 1),
                                                 (4, 4, 4, 2, (1, 1), 0), (3, 2, 3, 2, (0, 0), 0)])
def test_a_transposed_convolution_is_its_int8_arithmetic_exactly(c, o, k, s, pads, extra):
    model = _conv_transpose_graph(c, o, k, s, pads, extra)
    rewritten = int8_matmul.rewrite(model, ["up"])
    assert [n.op_type for n in rewritten.graph.node].count("MatMulIntegerToFloat") == 1
    run = OrtRunner(rewritten.SerializeToString(), 1, optimize=False)
    p = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    scale = np.maximum(np.abs(p["w"]).transpose(1, 0, 2).reshape(o, -1).max(axis=1), 1e-12) / 127.0
    wq = np.clip(np.rint(p["w"] / scale[None, :, None]), -127, 127) * scale[None, :, None]
    for batch, t in [(1, 1), (2, 9), (1, 40)]:
        x = RNG.standard_normal((batch, c, t)).astype(np.float32)
        xd = _dq(x)
        full = np.zeros((batch, o, (t - 1) * s + k + extra))
        for i in range(t):
            full[:, :, i * s: i * s + k] += np.einsum("bc,cok->bok", xd[:, :, i], wq)
        ref = full[:, :, pads[0]: (t - 1) * s + k + extra - pads[1]] + p["b"][None, :, None]
        y = next(iter(run.infer({"x": x}).values()))
        assert y.shape == ref.shape and np.abs(y - ref).max() < 1e-4 * max(np.abs(ref).max(), 1), (batch, t)


def test_only_1d_stride_1_group_1_convolutions_with_constant_weights_are_rewritten():
    w = numpy_helper.from_array(np.ones((4, 2, 3), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="plain", pads=[1, 1]),
             helper.make_node("Conv", ["x", "w"], ["b"], name="strided", strides=[2]),
             helper.make_node("Conv", ["x", "wdyn"], ["c"], name="dynamic_weight")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, "t"]),
                                       helper.make_tensor_value_info("wdyn", TensorProto.FLOAT, [4, 2, 3])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in "abc"], [w])
    assert int8_matmul.rewritable(helper.make_model(g)) == ["plain"]


def test_block_toeplitz_rows_hold_each_tap_once():
    w = RNG.standard_normal((3, 2, 5)).astype(np.float32)
    for d, g in [(1, 1), (1, 4), (3, 8), (5, 2)]:
        big, scale, shifts = int8_matmul.block_toeplitz(w, d, g)
        assert big.shape == (len(shifts) * g * 2, g * 3) and scale.shape == (g * 3,)
        assert np.count_nonzero(big) == np.count_nonzero(np.rint(w / (np.abs(w).reshape(3, -1).max(1) / 127)[:, None, None])) * g


@pytest.fixture(scope="module")
def vocoder_onnx(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A small HiFi-GAN exported to ONNX, and calibration feeds for it."""
    import torch
    from voxc.models.hifigan import Generator
    cfg = {"initial_channels": 32, "upsample_rates": [4, 2], "upsample_kernels": [8, 4], "resblock": "1",
           "resblock_kernels": [3, 5], "resblock_dilations": [[1, 3], [1, 3]]}
    gen = Generator(cfg, 16).eval()
    path = tmp_path_factory.mktemp("voc") / "src.onnx"
    torch.onnx.export(gen, (torch.randn(1, 16, 20),), str(path), dynamo=False, input_names=["mel"],
                      output_names=["waveform"], dynamic_axes={"mel": {0: "b", 2: "t"}, "waveform": {0: "b", 2: "s"}})
    return path, [{"mel": RNG.standard_normal((1, 16, 24)).astype(np.float32)} for _ in range(3)]


def test_the_backend_builds_the_dynamic_form_and_counts_it(vocoder_onnx, tmp_path):
    src, cal = vocoder_onnx
    be = backend("onnxruntime")
    rec = be.build(src, tmp_path, "int8", None, cal, {"calibrate_method": "dynamic", "op_types": "auto",
                                                       "keep_fp32": ["conv_pre.", "conv_post."], "sensitivity_layers": 0})
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(src)).graph.node)
    counts = be.quantised(tmp_path, rec)
    ups = sum(n.op_type == "ConvTranspose" for n in onnx.load(str(src)).graph.node)
    assert counts["ops"] == {"MatMulIntegerToFloat": convs - 2 + ups} and "float outputs" in rec["scheme"]
    assert len(rec["fp32_nodes"]) == 2
    feed = {"mel": RNG.standard_normal((2, 16, 31)).astype(np.float32)}
    ref = next(iter(OrtRunner(src).infer(feed).values()))
    out = next(iter(be.open(tmp_path / be.file, rec).infer(feed).values()))
    assert out.shape == ref.shape and np.linalg.norm(out - ref) < 0.1 * np.linalg.norm(ref)


def test_the_dynamic_form_refuses_a_graph_it_cannot_quantise(vocoder_onnx, tmp_path):
    src, cal = vocoder_onnx
    with pytest.raises(VoxcError, match="'dynamic' quantises 1-D convolutions only"):
        backend("onnxruntime").build(src, tmp_path, "int8", None, cal,
                                     {"calibrate_method": "dynamic", "op_types": ["MatMul"], "sensitivity_layers": 0})


def test_a_tampered_int8_weight_fails_the_int8_gate(vocoder_onnx, tmp_path):
    """The gate that judges the dynamic form sees a broken one: one weight matrix's scales zeroed."""
    from voxc.targets import sensitivity
    from voxc.models.spec import ModelSpec, TensorSpec, Dim
    src, cal = vocoder_onnx
    be = backend("onnxruntime")
    rec = be.build(src, tmp_path, "int8", None, cal, {"calibrate_method": "dynamic", "op_types": "auto",
                                                       "sensitivity_layers": 0})
    spec = ModelSpec(name="vocoder", inputs=(TensorSpec("mel", "float32", ("batch", 16, "frames")),),
                     outputs=(TensorSpec("waveform", "float32", ("batch", 1, "frames*8"), "waveform"),),
                     dims={"batch": Dim("batch", 1, 1, 1, 1), "frames": Dim("frames", 8, 24, 24, 64)},
                     sweep_dim="frames", make_inputs=lambda b, n, rng: {}, sample_rate=16000)
    feeds = [{"mel": RNG.standard_normal((1, 16, 64)).astype(np.float32) - 4} for _ in range(2)]
    reference = [OrtRunner(src).infer(f) for f in feeds]
    budgets = sensitivity.int8_budgets(spec)
    good = sensitivity.score(spec, budgets, reference, [be.open(tmp_path / be.file, rec).infer(f) for f in feeds])
    model = onnx.load(str(tmp_path / be.file))
    scale = next(i for i in model.graph.initializer if i.name.endswith("/w_scale"))
    scale.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(scale)), scale.name))
    broken = OrtRunner(model.SerializeToString(), 1, optimize=False)
    bad = sensitivity.score(spec, budgets, reference, [broken.infer(f) for f in feeds])
    assert bad > 1.0 and bad > good


@pytest.fixture(scope="module")
def small_vocoder(vocoder_onnx):
    """The vocoder_onnx graph's PyTorch module (same seed-free weights: rebuilt from the ONNX initialisers),
    its spec, and held-out validation items."""
    import torch
    from voxc.models.hifigan import Generator
    from voxc.models.spec import Dim, ModelSpec, TensorSpec
    src, cal = vocoder_onnx
    cfg = {"initial_channels": 32, "upsample_rates": [4, 2], "upsample_kernels": [8, 4], "resblock": "1",
           "resblock_kernels": [3, 5], "resblock_dilations": [[1, 3], [1, 3]]}
    gen = Generator(cfg, 16).eval()
    params = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in onnx.load(str(src)).graph.initializer}
    gen.load_state_dict({k: params[k] for k in gen.state_dict()})
    spec = ModelSpec(name="vocoder", inputs=(TensorSpec("mel", "float32", ("batch", 16, "frames")),),
                     outputs=(TensorSpec("waveform", "float32", ("batch", 1, "frames*8"), "waveform"),),
                     dims={"batch": Dim("batch", 1, 1, 1, 1), "frames": Dim("frames", 8, 24, 24, 64)},
                     sweep_dim="frames", make_inputs=lambda b, n, rng: {}, sample_rate=16000)
    validation = [{"mel": RNG.standard_normal((1, 16, 40)).astype(np.float32) - 3} for _ in range(2)]
    return src, cal, spec, validation, lambda: gen


def test_openvino_int8_runs_the_bounded_one_shot_search(small_vocoder, tmp_path):
    """OpenVINO's int8 with a search table: the one-shot ranking and at most len(methods) + len(steps)
    nncf.quantize trials (instead of accuracy control's one trial per layer group); the IR keeps the
    chosen layers float and the record says which."""
    src, cal, spec, validation, module = small_vocoder
    be = backend("openvino")
    rec = be.build(src, tmp_path, "int8", spec, cal, {"keep_fp32": ["conv_pre."], "validation": validation,
                                                      "search": {"steps": [1, 3], "target": 0.0, "ranking_items": 2}},
                   module)
    search = rec["int8_search"]
    assert search["method"] == "mixed" and 1 <= len(search["trials"]) <= 3
    assert len(search["ranking"]) == sum(n.op_type in ("Conv", "ConvTranspose") for n in onnx.load(str(src)).graph.node) - 1
    chosen = min((t for t in search["trials"]), key=lambda t: t["score"])
    assert search["float_layers"] == chosen["layers"]
    assert rec["fp32_nodes"][0].startswith("/conv_pre") and len(rec["fp32_nodes"]) == 1 + len(chosen["layers"])
    convs = sum(n.op_type in ("Conv", "ConvTranspose") for n in onnx.load(str(src)).graph.node)
    counted = be.quantised(tmp_path, rec)["ops"]
    assert counted.get("Convolution", 0) + counted.get("ConvolutionBackpropData", 0) == convs - len(rec["fp32_nodes"])
    with pytest.raises(VoxcError, match="NNCF presets"):
        be.build(src, tmp_path / "x", "int8", spec, cal, {"validation": validation,
                                                          "search": {"methods": ["minmax"]}}, module)
