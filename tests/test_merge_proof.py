"""compiler/merge.py `prove` on a small hand-made bundle (no build): completeness covers every gated
metric (perceptual ones where the bundle says the item is long enough), duplicated rows are refused,
a device runner must leave its evidence, and a rebuilt bundle drops exactly the groups that changed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxc.compiler.merge import prove
from voxc.core.errors import VoxcError
from voxc.core.target import read_device_result

H = {c: c * 64 for c in "abcdef"}
BUDGETS = {m: {"fp16": {"waveform": {"snr_db": 20.0, "stoi": 0.9, "pesq_wb": None}}} for m in ("vocoder", "decoder")}


def bundle() -> dict:
    models = {}
    files = {}
    for m, onnx, golden in (("vocoder", H["a"], H["b"]), ("decoder", H["c"], H["d"])):
        files[f"models/{m}/{m}.onnx"] = {"sha256": onnx}
        files[f"models/{m}/golden.npz"] = {"sha256": golden}
        models[m] = {"outputs": [{"name": "waveform", "kind": "waveform"}], "points": [[1, 8], [1, 64]],
                     "golden": f"models/{m}/golden.npz", "perceptual_points": {"waveform": [False, True]},
                     "artifacts": [{"runtime": "tensorrt", "precision": "fp16", "files": {"fp16": f"models/{m}/{m}.onnx"}}]}
    return {"runtime": "tensorrt", "files": files, "models": models}


def device(b: dict) -> dict:
    rows, judged = [], []
    for m, model in b["models"].items():
        judged.append({"model": m, "precision": "fp16", "engine_sha256": H["e"],
                       "files": {model["artifacts"][0]["files"]["fp16"]: b["files"][model["artifacts"][0]["files"]["fp16"]]["sha256"],
                                 model["golden"]: b["files"][model["golden"]]["sha256"]}})
        for batch, n in model["points"]:
            row = {"model": m, "precision": "fp16", "runtime": "tensorrt", "batch": batch, "length": n,
                   "output": "waveform"}
            rows.append({**row, "metric": "snr_db", "value": 40.0, "tolerance": 20.0, "passed": True})
            if n == 64:       # long enough: STOI is judged (PESQ is a diagnostic here: no row)
                rows.append({**row, "metric": "stoi", "value": 0.97, "tolerance": 0.9, "passed": True})
    return {"target": "jetson", "bundle": "x", "runner": "tensorrt", "stand_in": False,
            "device": {"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}, "judged": judged,
            "results": rows}


def run(tmp_path: Path, dev: dict, b: dict | None = None, stale_ok: bool = False) -> list[dict]:
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(dev))
    return prove(read_device_result(path), b or bundle(), BUDGETS, path, stale_ok=stale_ok)


def test_an_honest_result_is_proven(tmp_path):
    assert len(run(tmp_path, device(bundle()))) == 6


def test_a_partial_group_without_one_stoi_row_is_refused(tmp_path):
    dev = device(bundle())
    dev["results"].remove(next(r for r in dev["results"] if r["metric"] == "stoi"))
    with pytest.raises(VoxcError, match=r"is incomplete: vocoder fp16 lacks waveform checks \(stoi\) at 1x64"):
        run(tmp_path, dev)


def test_duplicated_rows_are_refused(tmp_path):
    dev = device(bundle())
    dev["results"] = dev["results"] * 2
    with pytest.raises(VoxcError, match="appears twice"):
        run(tmp_path, dev)


@pytest.mark.parametrize("strip, message", [
    (lambda d: d["device"].pop("gpu"), "carries no gpu"),
    (lambda d: d["judged"][1].pop("engine_sha256"), "decoder fp16 group lacks engine_sha256"),
    (lambda d: d.update(stand_in=True), "a stand-in result cannot speak for tensorrt"),
])
def test_a_device_row_needs_its_runners_evidence(tmp_path, strip, message):
    dev = device(bundle())
    strip(dev)
    with pytest.raises(VoxcError, match=message):
        run(tmp_path, dev)


def test_a_rebuilt_bundle_drops_exactly_the_groups_that_changed(tmp_path):
    dev = device(bundle())
    rebuilt = bundle()
    rebuilt["files"]["models/decoder/decoder.onnx"]["sha256"] = H["f"]       # the decoder was rebuilt
    with pytest.raises(VoxcError, match="do not match the bundle's sha256"):
        run(tmp_path, dev, rebuilt)
    kept = run(tmp_path, dev, rebuilt, stale_ok=True)
    assert {r["model"] for r in kept} == {"vocoder"} and len(kept) == 3
