"""A second model family added from tests/ alone builds, parity-checks, chain-checks and benches on
target cpu: the compiler, the backends and the calibration code know no graph of any family."""
from __future__ import annotations

import json

import pytest

from voxc.cli import main
from voxc.compiler.build import BuildRequest, build
from voxc.models.family import family


@pytest.fixture(scope="module")
def toy_build(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("VOXC_FAMILIES", "toy=toy_family")           # build workers inherit it
    family.cache_clear()
    fam = family("toy")
    artifacts = tmp_path_factory.mktemp("toy")
    ok = build(BuildRequest(target="cpu", preset=fam.preset("tiny"), preset_name="tiny", artifacts=artifacts,
                            jobs=2, precisions={"toy_acoustic": ("fp32",), "toy_vocoder": ("int8", "fp32")}))
    yield artifacts, ok
    mp.undo()
    family.cache_clear()


def test_toy_family_builds_and_passes_its_gates(toy_build):
    artifacts, ok = toy_build
    assert ok
    m = json.loads((artifacts / "cpu" / "manifest.json").read_text())
    assert m["family"] == "toy" and set(m["models"]) == {"toy_acoustic", "toy_vocoder"}
    assert (artifacts / "cpu" / "toy_vocoder" / "toy_vocoder.onnxruntime-fp32.onnx").is_file()
    parity = json.loads((artifacts / "cpu" / "parity.json").read_text())
    assert parity["passed"] and {r["model"] for r in parity["results"]} == {"toy_acoustic", "toy_vocoder"}
    int8 = [r for r in parity["results"] if r["precision"] == "int8"]
    assert int8 and all(r["runtime"] in ("onnxruntime", "openvino") for r in int8)   # calibrated on real mels


def test_toy_family_chain_is_checked(toy_build):
    artifacts, _ = toy_build
    chain = json.loads((artifacts / "cpu" / "parity.json").read_text())["chain"]
    rows = {r["config"] for r in chain["runtimes"]["onnxruntime"]["rows"]}
    assert rows == {"all artifacts", "only toy_acoustic", "only toy_vocoder"}
    assert all(r["within_budget"] for r in chain["runtimes"]["onnxruntime"]["rows"])


def test_toy_family_reverifies_and_benches(toy_build, monkeypatch):
    artifacts, _ = toy_build
    monkeypatch.setenv("VOXC_FAMILIES", "toy=toy_family")
    assert main(["parity", "--target", "cpu", "--artifacts", str(artifacts)]) == 0
    assert main(["bench", "--target", "cpu", "--artifacts", str(artifacts), "--quick", "--runs", "2"]) == 0
    doc = json.loads((artifacts / "cpu" / "bench.json").read_text())
    assert doc["chain"]["ratio"] > 0 and set(doc["chain"]["steps_ms"]) == {"phonemes", "toy_acoustic", "toy_vocoder"}
    assert any(r["model"] == "toy_vocoder" and r["rtf"] for r in doc["results"])


def test_a_warm_rebuild_of_the_toy_family_is_all_cached(toy_build, monkeypatch, capsys):
    artifacts, _ = toy_build
    monkeypatch.setenv("VOXC_FAMILIES", "toy=toy_family")
    family.cache_clear()
    fam = family("toy")
    assert build(BuildRequest(target="cpu", preset=fam.preset("tiny"), preset_name="tiny", artifacts=artifacts,
                              jobs=1, precisions={"toy_acoustic": ("fp32",), "toy_vocoder": ("int8", "fp32")}))
    out = capsys.readouterr().out
    total = out.count("cached") - 1
    assert "stages cached" in out and f"{total}/{total} stages cached" in out
    family.cache_clear()
