"""TensorRT logic that runs without TensorRT: regimes, build recipes, fingerprints, profiles, buckets."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from voxc.core.errors import VoxcError
from voxc.models.family import model_spec
from voxc.models.spec import Dim
from voxc.targets import tensorrt, trt_engine, trt_profiles
from voxc.calibration.lengths import corpus_lengths, lengths_for
from voxc.targets.lengths import buckets

FILES = {"fp32": "m.onnx", "fp16": "m.fp16.onnx", "int8": "m.int8.onnx"}


def test_regime_follows_the_tensorrt_major_version():
    assert trt_engine.regime("10.3.0.30") == "weak"          # JetPack 6
    assert trt_engine.regime("11.1.0") == "strong"
    assert trt_engine.regime("10.13.3.9", "strong") == "strong"
    with pytest.raises(VoxcError, match="removed weak typing"):
        trt_engine.regime("11.0.0", "weak")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_one_config_drives_both_regimes(precision):
    weak, strong = trt_engine.plan(precision, "weak", FILES), trt_engine.plan(precision, "strong", FILES)
    assert strong["builder_flags"] == [] and strong["network_flags"] == ["STRONGLY_TYPED"]
    assert strong["onnx"] == FILES[precision]            # precision comes from the ONNX itself
    assert weak["network_flags"] == []
    if precision == "fp16":
        assert weak["onnx"] == FILES["fp32"] and weak["builder_flags"] == ["FP16"]
    if precision == "int8":
        assert weak["onnx"] == FILES["int8"] and "INT8" in weak["builder_flags"] and weak["calibration_cache"] is None


def test_int8_weak_falls_back_to_a_calibration_cache_and_strong_refuses_without_qdq():
    files = {"fp32": "m.onnx", "calibration_cache": "calib.cache"}
    weak = trt_engine.plan("int8", "weak", files)
    assert weak["onnx"] == "m.onnx" and weak["calibration_cache"] == "calib.cache"
    with pytest.raises(VoxcError, match="explicit-QDQ int8 ONNX"):
        trt_engine.plan("int8", "strong", files)
    with pytest.raises(VoxcError, match="mixed-precision fp16 ONNX"):
        trt_engine.plan("fp16", "strong", {"fp32": "m.onnx"})


def test_fingerprint_mismatch_names_what_differs_and_the_rebuild_command(tmp_path):
    built = {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "l4t": "R36.3.0", "driver": "x"}
    here = {**built, "tensorrt": "10.13.3", "compute_capability": "8.9", "gpu": "NVIDIA L4", "l4t": None}
    problems = trt_engine.mismatches(built, here)
    assert {p.split(":")[0] for p in problems} == {"tensorrt", "gpu", "compute_capability", "l4t"}
    assert trt_engine.mismatches(built, {**built, "driver": "newer"}) == []   # drivers stay compatible
    engine = tmp_path / "vocoder.fp16.engine"
    engine.write_bytes(b"not an engine: must never reach deserialization")
    trt_engine.save_engine(engine, engine.read_bytes(), built, {"precision": "fp16"})
    # this host has no TensorRT: reaching the fingerprint error proves the check runs before any TensorRT call
    with pytest.raises(trt_engine.EngineMismatch) as err:
        trt_engine.load_engine(engine, here, "python3 verify.py --runner tensorrt --rebuild")
    msg = str(err.value)
    assert "tensorrt: engine built with 10.3.0, this device has 10.13.3" in msg
    assert "compute_capability" in msg and "rebuild it with: python3 verify.py --runner tensorrt --rebuild" in msg
    engine.with_name(engine.name + ".json").unlink()
    with pytest.raises(trt_engine.EngineMismatch, match="no fingerprint"):
        trt_engine.load_engine(engine, here, "x")


def test_device_fingerprint_reports_absent_tensorrt_instead_of_failing():
    fp = trt_engine.device_fingerprint()
    assert "tensorrt" in fp and "machine" in fp


def test_buckets_cover_the_range_contiguously_at_corpus_quantiles():
    frames = np.asarray(corpus_lengths("frames"))
    assert frames.size > 50
    d = Dim("frames", 8, 320, 128, 1024)
    b = buckets(d, frames, 3)
    assert len(b) == 3 and b[0][0] == 8 and b[-1][2] == 1024
    assert all(lo <= opt <= hi for lo, opt, hi in b)
    assert all(b[i][2] + 1 == b[i + 1][0] for i in range(len(b) - 1))
    share = [np.mean((frames >= lo) & (frames <= hi)) for lo, _, hi in b]
    assert min(share) > 0.2                                   # each bucket holds real utterances
    assert buckets(Dim("x", 1, 2, 2, 4), np.array([], np.int64), 3) == [(1, 2, 4)]


def test_profiles_from_spec_and_corpus_and_profile_selection(tiny_cfg):
    spec = model_spec("vocoder", tiny_cfg)
    lengths = {"corpus_lengths": lengths_for(spec)}            # what the compiler hands a TensorRT rung
    assert set(lengths["corpus_lengths"]) == {"frames"}
    profiles = trt_profiles.derive(spec, {"max_profiles": 3, "split_ratio": 8, **lengths})
    assert len(profiles) == 3
    d = spec.dims["frames"]
    assert profiles[0]["ranges"]["frames"][0] == d.min and profiles[-1]["ranges"]["frames"][2] == d.max
    for p in profiles:
        lo, opt, hi = p["ranges"]["frames"]
        assert p["shapes"]["mel"] == {"min": [1, 80, lo], "opt": [1, 80, opt], "max": [4, 80, hi]}
    assert len(trt_profiles.derive(spec, {"split_ratio": 1000, **lengths})) == 1      # narrow range: one profile
    assert len(trt_profiles.derive(spec, {"max_profiles": 3, "split_ratio": 8})) == 1  # no lengths handed: one
    assert trt_profiles.select(profiles, {"batch": 1, "frames": profiles[1]["ranges"]["frames"][1]}) == 1
    with pytest.raises(VoxcError, match="split the input"):
        trt_profiles.select(profiles, {"batch": 1, "frames": d.max + 1})
    reg = trt_profiles.derive(model_spec("length_regulator", tiny_cfg))
    assert all(set(p["shapes"]) == {"hidden", "durations", "frame_mask"} for p in reg)
    assert all(p["shapes"]["hidden"]["max"][2] == tiny_cfg["hidden"] for p in reg)


def test_tensorrt_artifact_rejects_onnx_with_non_standard_ops(tmp_path, tiny_cfg):
    node = helper.make_node("FusedConv", ["x", "w"], ["y"], domain="com.microsoft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 80, "frames"]),
                                            helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 80, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    src = tmp_path / "src.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("com.microsoft", 1)]),
              str(src))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(VoxcError, match="non-standard ops com.microsoft::FusedConv"):
        tensorrt.TensorRT().build(src, out, "fp32", model_spec("vocoder", tiny_cfg), options={})
    with pytest.raises(VoxcError, match="not supported"):
        tensorrt.TensorRT().build(src, out, "bf16", model_spec("vocoder", tiny_cfg), options={})


def test_engine_build_and_inference_on_a_gpu(tiny_build, tiny_cfg):
    if not tensorrt.trt_available():
        pytest.skip("needs TensorRT: not installable on this host")
    spec = model_spec("vocoder", tiny_cfg)
    onnx_path = tiny_build / "cpu" / "vocoder" / "vocoder.onnx"
    profiles = trt_profiles.derive(spec)
    fp = trt_engine.device_fingerprint()
    blob = trt_engine.build_engine(onnx_path, trt_engine.plan("fp32", trt_engine.regime(fp["tensorrt"]), {"fp32": str(onnx_path)}),
                                   profiles, 1024, None, None)
    engine = tiny_build / "vocoder.engine"
    trt_engine.save_engine(engine, blob, fp, {})
    r = trt_engine.TrtRunner(trt_engine.load_engine(engine, fp, "x"), profiles, spec.to_json()["inputs"])
    assert r.infer(spec.make_inputs(1, 50, np.random.default_rng(0)))["waveform"].shape == (1, 1, 50 * 256)
    json.dumps(fp)


def test_tensorrt_advice_follows_the_bundles_device_and_pip_cudart_is_found(tmp_path, monkeypatch):
    from voxc.targets.device_verify import tensorrt_advice
    from voxc.targets.trt_engine import pip_cudart
    jetson, x86 = tensorrt_advice({"profile": {"build_on": "device"}}), tensorrt_advice({"profile": {"build_on": "host-if-gpu"}})
    assert "JetPack" in jetson and "tensorrt-cu12" not in jetson
    assert "tensorrt-cu12==" in x86 and "tensorrt-cu13==" in x86 and "JetPack" not in x86
    lib = tmp_path / "nvidia" / "cuda_runtime" / "lib"
    lib.mkdir(parents=True)
    (lib / "libcudart.so.12").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert str(lib / "libcudart.so.12") in pip_cudart()
