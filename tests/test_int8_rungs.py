"""INT8 is never silently a no-op, and a rung's transient failure is never its cached verdict: the
quantised-node counts of real ONNX Runtime and OpenVINO (NNCF) int8 builds, the refusal of an int8
build that quantised nothing, and a failing rung retried once (compiler/stages.py attempt_rung)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from voxc.compiler import stages
from voxc.compiler.graph import BuildGraph, InlineExecutor, Stage
from voxc.compiler.plan import RungParams
from voxc.core.errors import VoxcError
from voxc.targets import backend


@pytest.fixture(scope="module")
def conv_graph(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A one-Conv ONNX graph with a dynamic time axis, and calibration feeds for it."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 4, 3)).astype(np.float32), "conv.weight")
    b = numpy_helper.from_array(np.zeros(8, np.float32), "conv.bias")
    node = helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["y"], name="conv", pads=[1, 1])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, "t"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, "t"])], [w, b])
    path = tmp_path_factory.mktemp("conv") / "src.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path, [{"x": rng.standard_normal((1, 4, 32)).astype(np.float32)} for _ in range(4)]


def _ort_int8(conv_graph, out: Path, op_types: list[str]) -> dict:
    src, cal = conv_graph
    out.mkdir()
    return backend("onnxruntime").build(src, out, "int8", None, cal, {"op_types": op_types, "sensitivity_layers": 0})


def test_onnxruntime_int8_counts_its_quantised_nodes_and_refuses_a_float_graph(conv_graph, tmp_path):
    be = backend("onnxruntime")
    rec = _ort_int8(conv_graph, tmp_path / "conv", ["Conv"])
    counts = stages.quantised_or_refused(be, tmp_path / "conv", rec, "g onnxruntime int8", {"op_types": ["Conv"]})
    assert counts["markers"] > 0 and counts["ops"] == {"Conv": 1} and counts["nodes"] == 1
    # the HiFi-GAN-under-Vocos-settings trap: op types the graph does not have quantise nothing
    rec = _ort_int8(conv_graph, tmp_path / "matmul", ["MatMul", "Gemm"])
    assert be.quantised(tmp_path / "matmul", rec) == {"markers": 0, "nodes": 0, "ops": {}}
    with pytest.raises(VoxcError, match=r"g onnxruntime int8: no quantised node in the built graph .*"
                                        r"op_types \['MatMul', 'Gemm'\]"):
        stages.quantised_or_refused(be, tmp_path / "matmul", rec, "g onnxruntime int8", {"op_types": ["MatMul", "Gemm"]})


def test_openvino_counts_fake_quantize_layers_of_an_nncf_build(conv_graph, tmp_path):
    import nncf
    import openvino as ov

    from voxc.targets.openvino import quantised_layers
    src, cal = conv_graph
    quantized = nncf.quantize(ov.convert_model(str(src)), nncf.Dataset(cal), subset_size=len(cal))
    ov.save_model(quantized, str(tmp_path / "int8.xml"), compress_to_fp16=False)
    counts = backend("openvino").quantised(tmp_path, {"file": "int8.xml"})
    assert counts["markers"] > 0 and counts["ops"] == {"Convolution": 1}
    ov.save_model(ov.convert_model(str(src)), str(tmp_path / "fp32.xml"), compress_to_fp16=False)
    assert quantised_layers((tmp_path / "fp32.xml").read_text()) == {"markers": 0, "nodes": 0, "ops": {}}
    with pytest.raises(VoxcError, match="no quantised node"):
        stages.quantised_or_refused(backend("openvino"), tmp_path, {"file": "fp32.xml"}, "g openvino int8", {})


# ---- a failing rung: retried once; only a deterministic failure is its result --------------------

class Flaky:
    """A rung build that writes a partial file, then raises the given errors in turn (None: succeeds)."""

    def __init__(self, out: Path, errors: list):
        self.out, self.errors, self.calls = out, list(errors), 0

    def __call__(self) -> dict:
        self.calls += 1
        (self.out / f"partial-{self.calls}.onnx").write_text("half")
        err = self.errors.pop(0)
        if err is not None:
            raise err
        for p in self.out.iterdir():
            p.unlink()
        (self.out / "model.onnx").write_text("built")
        return {"file": "model.onnx", "precision": "int8", "runtime": "onnxruntime"}


RUNG = RungParams(model="g", config={}, precision="int8", runtime="onnxruntime", fallback=False)


def test_a_transient_failure_is_retried_and_the_retry_is_the_result(tmp_path):
    build = Flaky(tmp_path, [RuntimeError("core.cpp:117: None"), None])
    rec = stages.attempt_rung(tmp_path, RUNG, build)
    assert build.calls == 2 and rec["file"] == "model.onnx" and "core.cpp:117" in rec["retried_after"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_two_different_errors_are_raised_so_no_entry_records_them(tmp_path):
    build = Flaky(tmp_path, [RuntimeError("core.cpp:117: None"), OSError("stale file handle")])
    with pytest.raises(RuntimeError, match="two different errors .*transient"):
        stages.attempt_rung(tmp_path, RUNG, build)


def test_the_same_error_twice_is_deterministic_and_recorded(tmp_path):
    build = Flaky(tmp_path, [RuntimeError("unsupported op X"), RuntimeError("unsupported op X")])
    rec = stages.attempt_rung(tmp_path, RUNG, build)
    assert rec == {"file": None, "error": "RuntimeError: unsupported op X", "attempts": 2, "precision": "int8",
                   "runtime": "onnxruntime"}
    assert not list(tmp_path.iterdir())                  # nothing half-written stays in the entry


def test_a_refusal_is_recorded_at_once_and_the_fallback_never_hides_an_error(tmp_path):
    build = Flaky(tmp_path, [VoxcError("the built graph has no quantised node")])
    rec = stages.attempt_rung(tmp_path, RUNG, build)
    assert build.calls == 1 and rec["attempts"] == 1 and "no quantised node" in rec["error"]
    with pytest.raises(RuntimeError, match="boom"):
        stages.attempt_rung(tmp_path, dataclasses.replace(RUNG, fallback=True), Flaky(tmp_path, [RuntimeError("boom"), None]))


FAILURES: list = []


def _flaky_stage(out: Path, params: RungParams, inputs: dict) -> dict:
    return stages.attempt_rung(out, params, Flaky(out, FAILURES))


def test_a_transient_rung_failure_leaves_no_cache_entry_and_the_next_build_builds_it(tmp_path):
    def run():
        g = BuildGraph(tmp_path)
        g.add(Stage("vocoder/onnxruntime-int8", "artifact", _flaky_stage, RUNG))
        return g.run(InlineExecutor())
    FAILURES[:] = [RuntimeError("core.cpp:117: None"), RuntimeError("another transient failure")]
    with pytest.raises(VoxcError, match="stage vocoder/onnxruntime-int8 failed: .*transient"):
        run()
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    FAILURES[:] = [None]
    done = run()["vocoder/onnxruntime-int8"]
    assert not done.cached and done.record["file"] == "model.onnx"
