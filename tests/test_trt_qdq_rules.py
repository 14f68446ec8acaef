"""TensorRT's INT8 explicit-quantization rules (targets/trt_qdq_rules.py) on small graphs: a toy model quantized
with the TensorRT backend's settings passes, one quantized with ORT's CPU defaults fails, and a hand-built QDQ
graph broken one rule at a time fails on exactly that rule."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from voxc.core.errors import VoxcError
from voxc.targets import onnxruntime as ort_backend
from voxc.targets import tensorrt, trt_qdq_rules
from voxc.targets.ort_runner import OrtRunner as runner

ALL_WEIGHTED = ["Conv", "ConvTranspose", "MatMul", "Gemm"]


class Toy(torch.nn.Module):
    """Conv -> ConvTranspose -> Linear (a MatMul with a weight), the layer kinds a vocoder quantizes."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 6, 3, padding=1)
        self.up = torch.nn.ConvTranspose1d(6, 5, 4, stride=2, padding=1)
        self.lin = torch.nn.Linear(5, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        h = torch.nn.functional.leaky_relu(self.up(h), 0.1)
        return self.lin(h.transpose(1, 2))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("toy")
    x = torch.randn(1, 4, 16)
    torch.onnx.export(Toy().eval(), (x,), str(d / "fp32.onnx"), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {2: "t"}, "y": {1: "t2"}})
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.standard_normal((1, 4, n)).astype(np.float32)} for n in (12, 16, 20, 24)]
    return d, feeds


def quantize(toy, name: str, options: dict):
    d, feeds = toy
    out = d / name
    out.mkdir(exist_ok=True)
    rec = ort_backend.OnnxRuntime().build(d / "fp32.onnx", out, "int8", calibration=feeds, options=options)
    return out / rec["file"]


def test_tensorrt_settings_pass_and_run_on_ort(toy):
    path = quantize(toy, "trt", tensorrt.ort_options("int8", {"onnxruntime": {"op_types": ALL_WEIGHTED}}))
    assert trt_qdq_rules.check(path) == []
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("DequantizeLinear") >= 6 and "ConvTranspose" in ops      # really quantized, ConvTranspose too
    rec = tensorrt.qdq_rules(path, "toy")
    assert rec["violations"] == 0 and rec["dequantize_nodes"] >= 6
    d, feeds = toy
    want, got = runner(d / "fp32.onnx").infer(feeds[0])["y"], runner(path).infer(feeds[0])["y"]
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.1                # the ORT host gate's stand-in runs it


def test_ort_cpu_defaults_fail_on_the_zero_point_rule(toy):
    path = quantize(toy, "cpu", {})                          # today's int8: uint8 asymmetric, reduce_range
    problems = trt_qdq_rules.check(path)
    assert any("[zero point]" in p and "QuantizeLinear" in p for p in problems)
    assert any("[int8]" in p and "uint8" in p for p in problems)
    with pytest.raises(VoxcError, match=r"explicit-quantization rules: .*\[(zero point|int8)\]"):
        tensorrt.qdq_rules(path, "toy")


def test_ort_default_conv_transpose_axis_is_refused(toy):
    """ORT quantizes ConvTranspose weights on axis 1; TensorRT's deconvolution kernels need axis 0."""
    opts = tensorrt.ort_options("int8", {"onnxruntime": {"op_types": ALL_WEIGHTED, "weight_axes": {}}})
    problems = trt_qdq_rules.check(quantize(toy, "ct1", opts))
    assert len(problems) == 1 and "[weight axis]" in problems[0] and "ConvTranspose" in problems[0]


def test_tensorrt_int8_options_layer_over_the_profile():
    opts = tensorrt.ort_options("int8", {"onnxruntime": {"keep_fp32": ["conv_pre."], "extra_options": {"X": 1}},
                                         "validation": [{"x": 1}]})
    assert opts["activation_type"] == "int8" and opts["reduce_range"] is False and opts["keep_fp32"] == ["conv_pre."]
    assert opts["extra_options"]["ActivationSymmetric"] is True and opts["extra_options"]["X"] == 1
    assert opts["validation"] == [{"x": 1}]
    assert tensorrt.ort_options("fp16", {"onnxruntime": {"keep_fp32": ["a"]}}) == {"keep_fp32": ["a"]}


# ---- hand-built QDQ graphs, broken one rule at a time ---------------------------------------------------------

def qdq_graph(op="Conv", act_zp=np.int8(0), act_scale=np.float32(0.02), w_axis=None, w_scales=None,
              data_dq=True, opset=17, extra_node=None, bias_dq=False):
    """x -> Q -> DQ -> op(DQ(int8 weight)) -> y; defaults keep every TensorRT rule."""
    shapes = {"Conv": (6, 4, 3), "ConvTranspose": (4, 6, 3), "MatMul": (4, 5), "Gemm": (5, 4)}
    w = np.random.default_rng(0).integers(-127, 128, shapes[op]).astype(np.int8)
    axis = {"Conv": 0, "ConvTranspose": 0, "MatMul": 1, "Gemm": 0}[op] if w_axis is None else w_axis
    n = w.shape[axis] if w_scales is None else w_scales
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.full(n, 0.01, np.float32), "w_s"),
             numpy_helper.from_array(np.zeros(n, np.int8), "w_zp"),
             numpy_helper.from_array(np.asarray(act_scale, np.float32), "x_s"),
             numpy_helper.from_array(np.asarray(act_zp), "x_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["xq"], name="q_x"),
             helper.make_node("DequantizeLinear", ["xq", "x_s", "x_zp"], ["xd"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["w", "w_s", "w_zp"], ["wd"], name="dq_w", axis=axis)]
    inputs = ["xd" if data_dq else "x", "wd"]
    if bias_dq:
        inits += [numpy_helper.from_array(np.zeros(6, np.int32), "b"),
                  numpy_helper.from_array(np.full(6, 2e-4, np.float32), "b_s")]
        nodes.append(helper.make_node("DequantizeLinear", ["b", "b_s"], ["bd"], name="dq_b", axis=0))
        inputs.append("bd")
    attrs = {"transB": 1} if op == "Gemm" else {}
    nodes.append(helper.make_node(op, inputs, ["y"], name="layer", **attrs))
    if extra_node is not None:
        nodes.append(extra_node)
    x_shape = [2, 4] if op in ("MatMul", "Gemm") else [1, 4, 8]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose", "MatMul", "Gemm"])
def test_the_unbroken_hand_graph_passes(op):
    assert trt_qdq_rules.check_model(qdq_graph(op)) == []


@pytest.mark.parametrize("kwargs,node,rule", [
    ({"act_zp": np.int8(3)}, "q_x", "zero point"),
    ({"act_zp": np.uint8(0)}, "q_x", "int8"),
    ({"w_axis": 1}, "dq_w", "weight axis"),                                     # Conv weight scales on input channels
    ({"w_scales": 5}, "dq_w", "weight axis"),                                   # length != output channels
    ({"act_scale": np.full(4, 0.02, np.float32)}, "q_x", "scale"),              # per-channel activation
    ({"act_scale": np.float32(-0.02)}, "q_x", "scale"),
    ({"extra_node": helper.make_node("QuickGelu", ["y"], ["z"], name="gelu", domain="com.microsoft")}, "gelu", "domain"),
    ({"data_dq": False}, "layer", "fusable"),                                   # DQ on the weight only
    ({"opset": 12}, "model", "opset"),
    ({"bias_dq": True}, "dq_b", "int8"),                                        # int32 bias DQ
])
def test_each_broken_rule_is_named_with_its_node(kwargs, node, rule):
    problems = trt_qdq_rules.check_model(qdq_graph(**kwargs))
    assert problems, kwargs
    assert any(f"{node} [{rule}]" in p or (node == "model" and p.startswith(f"model [{rule}]")) for p in problems), problems


@pytest.mark.parametrize("op,axis", [("ConvTranspose", 1), ("MatMul", 0), ("Gemm", 1)])
def test_per_channel_weights_must_use_tensorrts_axis(op, axis):
    problems = trt_qdq_rules.check_model(qdq_graph(op, w_axis=axis))
    assert len(problems) == 1 and "dq_w [weight axis]" in problems[0] and op in problems[0]


def test_a_missing_or_unreadable_file_is_one_clear_line(tmp_path):
    with pytest.raises(VoxcError, match="no ONNX file"):
        trt_qdq_rules.check(tmp_path / "none.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(VoxcError, match="not a readable ONNX model"):
        trt_qdq_rules.check(tmp_path / "bad.onnx")


@pytest.mark.slow
def test_jetson_int8_rung_passes_the_rules_and_ships_the_file_the_host_gate_ran(tmp_path):
    """A tiny jetson build with an int8 vocoder: the rule row passes, the manifest records it, and the bundle's
    int8 ONNX (TensorRT's input and the ORT stand-in's) is byte-for-byte the file the host checks ran."""
    import contextlib
    import io
    import json
    from voxc.compiler.build import BuildRequest, build
    from voxc.models.voxc.presets import preset
    with contextlib.redirect_stdout(io.StringIO()):
        build(BuildRequest(target="jetson", preset=preset("tiny"), preset_name="tiny", models=("vocoder",),
                           precisions={"vocoder": ("int8", "fp32")}, artifacts=tmp_path, jobs=2))
    folder = tmp_path / "jetson"
    rows = json.loads((folder / "parity.json").read_text())["results"]
    rule = [r for r in rows if r["metric"] == "trt_qdq_rules"]
    assert len(rule) == 1 and rule[0]["passed"] is True and rule[0]["value"] == 0.0
    assert any(r["checked"] == "onnx for tensorrt" and r["runtime"] == "onnxruntime" and r["precision"] == "int8"
               for r in rows if r.get("checked"))                                  # the ORT host gate ran it
    entry = next(a for a in json.loads((folder / "manifest.json").read_text())["models"]["vocoder"]["artifacts"]
                 if a["path"].endswith("tensorrt-int8.onnx"))
    assert entry["qdq_rules"]["violations"] == 0 and entry["qdq_rules"]["dequantize_nodes"] > 0
    bm = json.loads((folder / "bundle" / "manifest.json").read_text())
    art = next(a for a in bm["models"]["vocoder"]["artifacts"] if a["precision"] == "int8")
    assert art["files"]["int8"] == art["stand_in"]["onnx"] and art["qdq_rules"]["violations"] == 0
    assert bm["files"][art["files"]["int8"]]["sha256"] == rule[0]["sha256"] == entry["sha256"]


@pytest.mark.slow
def test_a_jetson_int8_rung_built_with_cpu_settings_is_refused_in_one_line(tmp_path, monkeypatch):
    """The profile asks for today's CPU int8 (uint8, asymmetric): the rung is refused at build time, its one
    failing row names the broken rule, the build fails and the bundle ships only what was built."""
    import contextlib
    import io
    import json
    from voxc.compiler.build import BuildRequest, build
    from voxc.models.voxc.presets import preset
    from voxc.targets import profiles
    load = profiles.load

    def cpu_int8(name):
        p = load(name)
        p["options"]["tensorrt"]["models"]["vocoder"]["onnxruntime"].update(
            activation_type="uint8", extra_options={"ActivationSymmetric": False})
        return p
    monkeypatch.setattr(profiles, "load", cpu_int8)
    with contextlib.redirect_stdout(io.StringIO()):
        ok = build(BuildRequest(target="jetson", preset=preset("tiny"), preset_name="tiny", models=("vocoder",),
                                precisions={"vocoder": ("int8", "fp32")}, artifacts=tmp_path, jobs=2))
    assert ok is False
    folder = tmp_path / "jetson"
    failed = [r for r in json.loads((folder / "parity.json").read_text())["results"] if r["passed"] is False]
    assert len(failed) == 1 and failed[0]["metric"] == "builds" and failed[0]["precision"] == "int8"
    assert "explicit-quantization rules" in failed[0]["error"] and "[int8]" in failed[0]["error"]
    assert "\n" not in failed[0]["error"]
    bm = json.loads((folder / "bundle" / "manifest.json").read_text())
    assert [a["precision"] for a in bm["models"]["vocoder"]["artifacts"]] == ["fp32"]
