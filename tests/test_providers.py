"""ONNX Runtime execution providers are a setting: chosen by the profile (recorded with the artifact),
by --providers or VOXC_ORT_PROVIDERS; a provider the installed onnxruntime lacks is one clear line and
a non-zero exit, never a quiet run on the CPU. GPU runs skip here with the reason."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from voxc.cli import main
from voxc.core import providers
from voxc.core.errors import VoxcError
from voxc.targets import backend
from voxc.targets.ort_runner import OrtRunner

HAS_CUDA = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
NO_CUDA = (f"needs onnxruntime-gpu with CUDAExecutionProvider and an NVIDIA GPU (this onnxruntime "
           f"{onnxruntime.__version__} has {', '.join(onnxruntime.get_available_providers())})")


@pytest.fixture
def double(tmp_path):
    """y = x + x, as an ONNX file."""
    node = helper.make_node("Add", ["x", "x"], ["y"])
    graph = helper.make_graph([node], "double", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])])
    path = tmp_path / "double.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_names_short_or_full_in_order():
    assert providers.parse("cuda, cpu") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers.parse(["TensorrtExecutionProvider", "cuda", "cpu"]) == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers.parse("") == [] and providers.parse(None) == []
    with pytest.raises(VoxcError, match="unknown ONNX Runtime execution provider 'gpu'"):
        providers.parse("gpu")


def test_the_cpu_is_the_default_and_the_environment_or_record_choose(monkeypatch):
    monkeypatch.delenv(providers.ENV, raising=False)
    assert providers.chosen() == ["CPUExecutionProvider"]
    monkeypatch.setenv(providers.ENV, "cpu")
    assert providers.chosen() == ["CPUExecutionProvider"]
    monkeypatch.setenv(providers.ENV, "cuda,cpu")
    assert providers.chosen(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]   # a build's record wins


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has the CUDA provider")
def test_a_missing_cuda_provider_is_one_line_naming_what_to_install(monkeypatch, double):
    monkeypatch.setenv(providers.ENV, "CUDAExecutionProvider,CPUExecutionProvider")
    with pytest.raises(VoxcError) as err:
        OrtRunner(double)
    line = str(err.value)
    assert "\n" not in line and "no CUDAExecutionProvider" in line and "onnxruntime-gpu" in line
    assert "in place of onnxruntime" in line and "both own the `onnxruntime` module" in line


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has the CUDA provider")
def test_a_profile_naming_cuda_stops_the_build_here(double, tmp_path):
    with pytest.raises(VoxcError, match="no CUDAExecutionProvider.*onnxruntime-gpu"):
        backend("onnxruntime").build(double, tmp_path, "fp32", options={"providers": ["CUDAExecutionProvider",
                                                                                      "CPUExecutionProvider"]})
    assert not (tmp_path / "model.onnx").exists()


def test_the_record_carries_the_providers_its_runner_uses(double, tmp_path, monkeypatch):
    monkeypatch.setenv(providers.ENV, "CUDAExecutionProvider")     # not for a built artifact: its record decides
    record = backend("onnxruntime").build(double, tmp_path, "fp32", options={"providers": ["cpu"]})
    assert record["providers"] == ["CPUExecutionProvider"]
    r = backend("onnxruntime").open(tmp_path / record["file"], record)
    assert r.providers == ["CPUExecutionProvider"]
    np.testing.assert_array_equal(r.infer({"x": np.ones(3, np.float32)})["y"], np.full(3, 2, np.float32))


def test_a_provider_that_fails_to_load_is_refused():
    class Session:
        def get_providers(self):
            return ["CPUExecutionProvider"]
    with pytest.raises(VoxcError, match="could not load CUDAExecutionProvider.*CUDA 12"):
        providers.confirm(Session(), ["CUDAExecutionProvider", "CPUExecutionProvider"])


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has the CUDA provider")
@pytest.mark.parametrize("argv", [["speak", "hello", "--providers", "cuda"],
                                  ["serve", "artifacts/cpu", "--providers", "cuda"],
                                  ["parity", "--target", "cpu", "--providers", "cuda"]])
def test_commands_refuse_a_missing_provider_with_one_line(argv, capsys, monkeypatch):
    monkeypatch.delenv(providers.ENV, raising=False)
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "onnxruntime-gpu" in err[0], err
    assert providers.ENV not in __import__("os").environ


def test_dnsmos_runs_where_the_setting_says(monkeypatch):
    from voxc.core import perceptual
    if perceptual.missing("dnsmos_ovrl_drop"):
        pytest.skip(perceptual.missing("dnsmos_ovrl_drop"))
    monkeypatch.setenv(providers.ENV, "cpu")
    assert perceptual._dnsmos_session().get_providers() == ["CPUExecutionProvider"]
    if not HAS_CUDA:
        monkeypatch.setenv(providers.ENV, "cuda")
        with pytest.raises(VoxcError, match="onnxruntime-gpu"):
            perceptual._dnsmos_session()


@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)
def test_cuda_provider_runs_a_graph(double, tmp_path):
    record = backend("onnxruntime").build(double, tmp_path, "fp32", options={"providers": ["cuda", "cpu"]})
    r = backend("onnxruntime").open(tmp_path / record["file"], record)
    assert r.providers[0] == "CUDAExecutionProvider"
    np.testing.assert_array_equal(r.infer({"x": np.ones(3, np.float32)})["y"], np.full(3, 2, np.float32))
