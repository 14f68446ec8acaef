"""The x86-cuda-ort target end to end at the tiny preset on a host without a GPU: ONNX Runtime's CUDA
provider as a device-gated runtime (targets/onnxruntime_cuda.py). The host checks the exact files on the
CPU provider and defers the GPU rows to the bundle; the bundle's verify.py refuses to run without the GPU
provider (never a quiet CPU run); a result merges only with a GPU run's evidence; speaking on this host
says what to install."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from voxc.cli import main
from voxc.core import providers as eps
from voxc.core.errors import VoxcError
from voxc.models.family import family
from voxc.targets import backend
from voxc.targets.onnxruntime_cuda import wanted

pytestmark = pytest.mark.slow
TARGET = "x86-cuda-ort"
GPU_HERE = not eps.missing(["CUDAExecutionProvider"])
NO_GPU = "this host's onnxruntime has the CUDA provider: the gates would run here instead of deferring"


@pytest.fixture(scope="module")
def ort_cuda(tiny_build, tmp_path_factory) -> Path:
    """An artifacts folder (the tiny build's stage cache, hard-linked) with the x86-cuda-ort target built."""
    from voxc.compiler.build import BuildRequest, build
    from voxc.core.atomic import link_or_copy
    from voxc.models.voxc.presets import preset
    out = tmp_path_factory.mktemp("ortcuda")
    shutil.copytree(tiny_build / "cache", out / "cache", copy_function=link_or_copy)
    with contextlib.redirect_stdout(io.StringIO()):
        assert build(BuildRequest(target=TARGET, preset=preset("tiny"), preset_name="tiny", artifacts=out, jobs=2))
    return out


def _verify(bundle: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "verify.py", *args], cwd=bundle, capture_output=True, text=True, timeout=300)


def _as_gpu_run(standin: dict, **device) -> dict:
    """The stand-in's result relabelled as an onnxruntime-cuda run (the GPU cannot run here)."""
    dev = json.loads(json.dumps(standin))
    dev.update(runner="onnxruntime-cuda", stand_in=False)
    for r in dev["results"] + dev["judged"]:
        r["runtime"] = "onnxruntime-cuda"
    dev["device"].update(device)
    return dev


@pytest.mark.skipif(GPU_HERE, reason=NO_GPU)
def test_the_host_defers_the_gpu_rows_and_records_the_providers(ort_cuda):
    folder = ort_cuda / TARGET
    p = json.loads((folder / "parity.json").read_text())
    assert p["status"] == "deferred"
    deferred = [r for r in p["results"] if r.get("status") == "deferred"]
    assert deferred and {r["runtime"] for r in deferred} == {"onnxruntime-cuda"}
    assert "CUDAExecutionProvider is not on this host" in deferred[0]["reason"]
    checked = [r for r in p["results"] if r.get("checked") == "onnx for onnxruntime-cuda"]
    assert checked and all(r["passed"] for r in checked)         # the exact files, on the CPU provider
    m = json.loads((folder / "manifest.json").read_text())
    for name in family("voxc").graph_names:
        art = next(a for a in m["models"][name]["artifacts"] if a["runtime"] == "onnxruntime-cuda")
        assert art["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    bundle = json.loads((folder / "bundle" / "manifest.json").read_text())
    assert bundle["runtime"] == "onnxruntime-cuda"
    assert all(a["providers"][0] == "CUDAExecutionProvider" for mod in bundle["models"].values() for a in mod["artifacts"])


@pytest.mark.skipif(GPU_HERE, reason=NO_GPU)
def test_the_bundle_refuses_to_run_without_the_gpu_provider_and_merges_only_gpu_evidence(ort_cuda, tmp_path, capsys):
    bundle = ort_cuda / TARGET / "bundle"
    res = _verify(bundle, "--out", str(tmp_path / "gpu.json"))         # the default runner: the bundle's own
    assert res.returncode == 2 and not (tmp_path / "gpu.json").exists()
    line = res.stderr.strip()
    assert "\n" not in line and "has no CUDAExecutionProvider" in line and "onnxruntime-gpu" in line
    res = _verify(bundle, "--runner", "onnxruntime", "--out", str(tmp_path / "standin.json"))
    assert res.returncode == 0, res.stderr
    standin = json.loads((tmp_path / "standin.json").read_text())
    before = (ort_cuda / TARGET / "parity.json").read_bytes()
    (tmp_path / "nogpu.json").write_text(json.dumps(_as_gpu_run(standin)))       # no GPU provider recorded
    capsys.readouterr()
    assert main(["report", "--target", TARGET, "--artifacts", str(ort_cuda), "--merge", str(tmp_path / "nogpu.json")]) == 2
    assert "carries no gpu_provider" in capsys.readouterr().err
    assert (ort_cuda / TARGET / "parity.json").read_bytes() == before
    dev = _as_gpu_run(standin, gpu_provider="CUDAExecutionProvider", gpu="NVIDIA H100 80GB HBM3")
    (tmp_path / "gpu.json").write_text(json.dumps(dev))
    assert main(["report", "--target", TARGET, "--artifacts", str(ort_cuda), "--merge", str(tmp_path / "gpu.json")]) == 0
    p = json.loads((ort_cuda / TARGET / "parity.json").read_text())
    assert p["status"] == "pass" and not any(r.get("status") == "deferred" for r in p["results"])
    merged = [r for r in p["results"] if r.get("site") == "device"]
    assert merged and merged[0]["device"]["gpu_provider"] == "CUDAExecutionProvider"
    bad = json.loads(json.dumps(dev))
    row = next(r for r in bad["results"] if r["metric"] == "rel_l2")
    row.update(value=row["tolerance"] * 10)                               # altered value, verdict kept
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert main(["report", "--target", TARGET, "--artifacts", str(ort_cuda), "--merge", str(tmp_path / "bad.json")]) == 2


@pytest.mark.skipif(GPU_HERE, reason=NO_GPU)
def test_speaking_on_a_host_without_the_gpu_says_what_to_install(ort_cuda, tmp_path, capsys):
    rc = main(["speak", "Hello there.", "--target", TARGET, "--artifacts", str(ort_cuda), "-o", str(tmp_path / "x.wav")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "onnxruntime-gpu" in err
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.skipif(GPU_HERE, reason=NO_GPU)
def test_the_prepared_device_check_falls_back_to_the_stand_in_and_says_so(ort_cuda, tmp_path):
    script = Path(__file__).resolve().parents[1] / ".ci" / "device-check"
    res = subprocess.run([str(script), str(ort_cuda / TARGET / f"voxc-{TARGET}-bundle.tar.gz"), str(tmp_path / "out")],
                         env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "onnxruntime-cuda cannot run here: the onnxruntime stand-in runs" in res.stdout
    assert json.loads((tmp_path / "out" / "parity.json").read_text())["stand_in"] is True


def test_provider_choice_is_checked_before_anything_is_built():
    assert wanted({}) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert wanted({"providers": ["tensorrt", "cuda", "cpu"]}) == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(VoxcError, match="name no GPU provider"):
        wanted({"providers": ["cpu"]})
    with pytest.raises(VoxcError, match="unknown ONNX Runtime execution provider 'cuda13'"):
        wanted({"providers": ["cuda13"]})
    be = backend("onnxruntime-cuda")
    assert be.parity == "device" and be.evidence_device == ("onnxruntime", "gpu_provider")
    if not GPU_HERE:
        assert "onnxruntime-gpu" in be.unavailable()
