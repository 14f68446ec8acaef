"""The release gate (compiler/release_gate.py, `voxc report --release --baseline PREV`) and the CI script
that runs it (.ci/artifacts): a tiny onnxruntime build released, an unchanged rebuild passing the gate, a
deliberately regressed rebuild (a bigger acoustic decoder) failing it with the diff printed, and the gate's
rules each shown rejecting a regressed report."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from voxc.compiler import release_gate
from voxc.compiler.release import verdict
from voxc.core.errors import VoxcError

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / ".ci" / "artifacts"


def run_ci(artifacts: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "ARTIFACTS": str(artifacts), "PRESET": "tiny",
               "VOXC": str(Path(sys.executable).parent / "voxc"), **env}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=900, env=environ)


@pytest.fixture(scope="module")
def released(tiny_build, tmp_path_factory) -> dict:
    """A tiny onnxruntime target built and released by the CI script (the stage cache comes from the
    session's tiny build), its release.json kept as the baseline of the next release."""
    from voxc.core.atomic import link_or_copy
    art = tmp_path_factory.mktemp("ci")
    shutil.copytree(tiny_build / "cache", art / "cache", copy_function=link_or_copy)
    build = run_ci(art, "build", "onnxruntime")
    assert build.returncode == 0, build.stderr + build.stdout
    rel = run_ci(art, "release")
    assert rel.returncode == 0, rel.stderr + rel.stdout
    baseline = art.parent / f"{art.name}-baseline.json"
    shutil.copyfile(art / "release.json", baseline)
    return {"artifacts": art, "baseline": baseline, "doc": json.loads(baseline.read_text())}


@pytest.mark.slow
def test_release_header_and_verdict(released):
    doc = released["doc"]
    assert doc["verdict"] == "pass"
    prov = doc["provenance"]
    assert prov["voxc_version"] and prov["commit"] and prov["host"]["cpus"]
    assert {"onnxruntime", "torch", "onnx"} <= set(prov["tools"])
    page = (released["artifacts"] / "release.html").read_text()
    assert 'data-verdict="pass"' in page and 'id="release-header"' in page
    vocoder = doc["targets"][0]["models"]["vocoder"]["runtimes"]["onnxruntime"]
    accepted = vocoder["accepted"]
    assert vocoder["speed"]["vs_fp32"] > 0
    checks = vocoder["checks"][accepted]
    assert set(checks["budget"]) <= set(checks["worst"]) and "waveform.snr_db" in checks["budget"]


@pytest.mark.slow
def test_unchanged_rebuild_passes_and_regressed_rebuild_fails_the_gate(released):
    art, baseline = released["artifacts"], released["baseline"]
    same = run_ci(art, "build", "onnxruntime")
    assert same.returncode == 0, same.stderr
    ok = run_ci(art, "release", BASELINE=str(baseline))
    assert ok.returncode == 0, ok.stderr + ok.stdout
    assert "REGRESSION" not in ok.stdout and "verdict PASS" in ok.stdout
    # a bigger acoustic decoder: the same gates pass, but what ships grew past the size tolerance
    grown = run_ci(art, "build", "onnxruntime", BUILD_ARGS="--set postnet_channels=96")
    assert grown.returncode == 0, grown.stderr
    bad = run_ci(art, "release", BASELINE=str(baseline))
    print(bad.stdout)                                            # the diff the gate printed (pytest -s shows it)
    assert bad.returncode == 1, bad.stderr + bad.stdout
    assert "voxc: release gate: REGRESSION onnxruntime/acoustic_decoder/onnxruntime: size" in bad.stdout
    assert "verdict FAIL" in bad.stdout
    doc = json.loads((art / "release.json").read_text())
    assert doc["verdict"] == "fail" and not doc["gate"]["passed"]
    assert any(r["model"] == "acoustic_decoder" and r["what"] == "size" for r in doc["gate"]["regressions"])
    assert 'id="baseline-diff"' in (art / "release.html").read_text()
    # publish: every shipped file with its sha256
    dist = art.parent / f"{art.name}-dist"
    pub = run_ci(art, "publish", str(dist))
    assert pub.returncode == 0, pub.stderr
    sums = dict(reversed(line.split(None, 1)) for line in (dist / "SHA256SUMS").read_text().splitlines())
    assert {"release.html", "release.json", "voxc-onnxruntime.tar.gz"} <= set(sums)
    for name, digest in sums.items():
        assert hashlib.sha256((dist / name).read_bytes()).hexdigest() == digest


# ---- the gate's rules on a real report, each changed the way a regressed release would be -------------------

@pytest.fixture(scope="module")
def doc(released) -> dict:
    return released["doc"]


def _runtime(doc: dict, model: str = "vocoder") -> dict:
    return doc["targets"][0]["models"][model]["runtimes"]["onnxruntime"]


@pytest.mark.slow
def test_identical_reports_pass(doc):
    diff = release_gate.compare(doc, copy.deepcopy(doc))
    assert diff["passed"] and not diff["regressions"] and not diff["changes"]


@pytest.mark.slow
def test_metric_that_eats_its_headroom_is_a_regression(doc):
    cur = copy.deepcopy(doc)
    rt = _runtime(cur)
    checks = rt["checks"][rt["accepted"]]
    key = next(k for k in checks["worst"] if k.endswith(".snr_db"))
    base, budget = checks["worst"][key], checks["budget"][key]
    checks["worst"][key] = base - 0.5 * (base - budget)          # half the way to its budget
    diff = release_gate.compare(doc, cur)
    assert not diff["passed"]
    assert any(r["what"] == "metric" and key in r["text"] for r in diff["regressions"])
    checks["worst"][key] = base - 0.1 * (base - budget)          # a tenth: within the tolerance
    assert release_gate.compare(doc, cur)["passed"]
    checks["worst"][key] = base + 1.0                            # better: an improvement
    diff = release_gate.compare(doc, cur)
    assert diff["passed"] and any(key in r["text"] for r in diff["improvements"])


@pytest.mark.slow
def test_size_speed_status_and_missing_target_are_regressions(doc):
    cur = copy.deepcopy(doc)
    _runtime(cur)["bytes"] = int(_runtime(doc)["bytes"] * 1.5)
    assert [r["what"] for r in release_gate.compare(doc, cur)["regressions"]] == ["size"]
    cur = copy.deepcopy(doc)
    _runtime(cur)["speed"]["vs_fp32"] = _runtime(doc)["speed"]["vs_fp32"] * 0.5
    assert [r["what"] for r in release_gate.compare(doc, cur)["regressions"]] == ["speed"]
    cur = copy.deepcopy(doc)
    cur["targets"][0]["status"] = "fail"
    diff = release_gate.compare(doc, cur)
    assert not diff["passed"] and diff["failing_targets"] == [doc["targets"][0]["target"]]
    assert verdict(cur["targets"], diff) == "fail"
    cur = copy.deepcopy(doc)
    cur["targets"] = []
    assert [r["what"] for r in release_gate.compare(doc, cur)["regressions"]] == ["target"]


def test_verdict_without_baseline():
    assert verdict([{"status": "pass"}, {"status": "deferred"}], None) == "deferred"
    assert verdict([{"status": "pass"}], None) == "pass"
    assert verdict([{"status": "pass"}, {"status": "fail"}], None) == "fail"
    assert verdict([{"status": "pass"}], {"passed": False}) == "fail"


def test_baseline_that_is_not_a_report_is_one_line(tmp_path):
    for content, name in ((None, "missing.json"), (b"\xff\xfe", "binary.json"), (b"[1, 2]", "list.json"),
                          (b'{"targets": "cpu"}', "shape.json")):
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(VoxcError) as err:
            release_gate.load_baseline(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)
