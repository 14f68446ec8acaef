"""End-to-end tiny build of the cpu target: artifacts, manifest, reports, dynamic axes, caching."""
from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest

from voxc.compiler.build import BuildRequest, build
from voxc.core.hashing import sha256_file
from voxc.models.family import family, model_spec
from voxc.targets.ort_runner import OrtRunner as runner

pytestmark = pytest.mark.slow

MODEL_NAMES = family("voxc").graph_names


def test_manifest_lists_every_graph_with_hashes_and_pass(tiny_build):
    folder = tiny_build / "cpu"
    m = json.loads((folder / "manifest.json").read_text())
    assert m["target"] == "cpu" and m["voxc_version"] and set(m["models"]) == set(MODEL_NAMES)
    for name, info in m["models"].items():
        assert info["parity"] == "pass"
        assert {"weights", "export", "check", "simplify", "onnxruntime-fp32", "openvino-fp32"} <= set(info["stage_keys"])
        assert info["tools"]["torch"].startswith("2.13.0")
        ort = [a for a in info["artifacts"] if a["runtime"] == "onnxruntime"]
        accepted = info["precision"]["onnxruntime"]["accepted"]
        assert len(ort) == 1 and ort[0]["precision"] == accepted and ort[0]["format"] == "onnx"
        for a in info["artifacts"]:
            assert sha256_file(folder / a["path"]) == a["sha256"] and (folder / a["path"]).stat().st_size == a["bytes"]
        assert [i["name"] for i in info["inputs"]] == [t.name for t in model_spec(name, info["config"]).inputs]


def test_parity_report_covers_the_whole_sweep(tiny_build):
    p = json.loads((tiny_build / "cpu" / "parity.json").read_text())
    assert p["passed"] and p["target"] == "cpu"
    keys = {"model", "precision", "runtime", "length", "batch", "metric", "value", "tolerance", "passed"}
    assert all(keys <= set(r) for r in p["results"])
    for name in MODEL_NAMES:
        spec = model_spec(name, json.loads((tiny_build / "cpu" / "manifest.json").read_text())["models"][name]["config"])
        checked = {(r["batch"], r["length"]) for r in p["results"] if r["model"] == name and r["metric"] != "builds"}
        assert checked == set(spec.sweep())
    assert "**Overall: PASS**" in (tiny_build / "cpu" / "parity.md").read_text()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_exported_graphs_keep_named_dynamic_axes(tiny_build, name):
    model = onnx.load(str(tiny_build / "cpu" / name / f"{name}.onnx"))
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    spec = model_spec(name, json.loads((tiny_build / "cpu" / "manifest.json").read_text())["models"][name]["config"])
    for t in spec.inputs:
        assert all(isinstance(g, str) and g for w, g in zip(t.dims, dims[t.name]) if isinstance(w, str)), dims


def test_vocoder_artifact_runs_far_beyond_export_length(tiny_build, tiny_cfg):
    spec = model_spec("vocoder", tiny_cfg)
    n = spec.dims["frames"].max
    assert n > 2 * spec.dims["frames"].export
    out = runner(tiny_build / "cpu" / "vocoder" / "vocoder.onnx").infer(
        {"mel": np.zeros((1, 80, n), np.float32)})
    assert out["waveform"].shape == (1, 1, n * 256)


def test_rebuild_is_cached_and_config_change_rebuilds_one_chain(tiny_build, tiny_cfg, capsys):
    # the onnxruntime profile builds the same stages as cpu: the shared cache serves them all; only the
    # target's own folder (a stage of each target since the whole build is in the graph) is new
    again = BuildRequest(target="onnxruntime", preset=tiny_cfg, artifacts=tiny_build, jobs=1)
    assert build(again)
    out = capsys.readouterr().out
    cached = re.search(r"(\d+)/(\d+) stages cached", out)
    assert cached and int(cached.group(1)) == int(cached.group(2)) - 1
    assert [label for label, status in re.findall(r"^\[\s*\d+/\d+\] (\S+)\s+(\S+)$", out, re.M)
            if status != "cached"] == ["target/assemble"]
    changed = BuildRequest(target="onnxruntime", preset={**tiny_cfg, "vocoder": "v2"}, artifacts=tiny_build, jobs=1,
                           models=("vocoder", "length_regulator"))
    assert build(changed)
    lines = re.findall(r"^\[\s*\d+/\d+\] (\S+)\s+(\S+)$", capsys.readouterr().out, re.M)
    rebuilt = [label for label, status in lines if status != "cached"]
    assert rebuilt and all(label.startswith("vocoder/") for label in rebuilt if label != "target/assemble")
    cached = [label for label, status in lines if status == "cached"]
    # length_regulator's chain and the upstream weights its real-data parity feeds come from
    assert not any(label.startswith("vocoder/") for label in cached), cached
    assert any(label.startswith("length_regulator/") for label in cached)


def test_two_clean_builds_give_byte_identical_target_folders(tmp_path):
    """Two builds from nothing (each its own cache and fresh worker processes) ship the same bytes: IR
    names normalised, no timings in the folder (they go to artifacts/cpu.timings.json). The policy's
    speed decisions are taken out of the comparison with a margin no rung can clear: a rung whose
    speed-up sits at the margin can flip between builds on a loaded machine (README, precision policy)."""
    from conftest import folder_hashes
    from voxc.models.voxc.presets import preset
    hashes = []
    for run in ("a", "b"):
        assert build(BuildRequest(target="cpu", preset=preset("tiny"), preset_name="tiny", artifacts=tmp_path / run,
                                  jobs=2, margin=10.0, models=("emotion_encoder",)))
        hashes.append(folder_hashes(tmp_path / run / "cpu"))
        assert json.loads((tmp_path / run / "cpu.timings.json").read_text())["models"]["emotion_encoder"]["onnxruntime"]
    assert len(hashes[0]) > 4 and hashes[0] == hashes[1], sorted(k for k in hashes[0] if hashes[0][k] != hashes[1].get(k))
