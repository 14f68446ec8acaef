"""The voxc command line: bad input ends in one clear line, exit 2, and nothing half-written."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from voxc.cli import main
from voxc.core.hashing import sha256_file

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voxc.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("voxc: error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["--target", "mars"], "unknown target 'mars': choose one of"),
    (["--models", "vocoder,wavenet"], "unknown model 'wavenet'"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--checkpoint", "vocoder"], "--checkpoint expects NAME=PATH"),
    (["--checkpoint", "vocoder=/nonexistent/g.pt"], "checkpoint /nonexistent/g.pt does not exist"),
    (["--checkpoint", "vocodr=/tmp/x.pt"], "unknown model 'vocodr'"),
    (["--set", "hiddne=3"], "--set expects KEY=VALUE"),
])
def test_bad_build_arguments(tmp_path, args, message):
    result = run_cli("build", "--artifacts", str(tmp_path / "a"), "--preset", "tiny", *args)
    assert message in one_error_line(result)
    assert not (tmp_path / "a" / "cpu").exists()


def test_mismatched_checkpoint_fails_without_output(tmp_path, tiny_cfg):
    import torch
    from voxc.models.family import init_module
    torch.save(init_module("speaker_encoder", tiny_cfg).state_dict(), tmp_path / "spk.pt")
    result = run_cli("build", "--artifacts", str(tmp_path / "a"), "--preset", "tiny", "--models", "vocoder",
                     "--checkpoint", f"vocoder={tmp_path / 'spk.pt'}", "--jobs", "1")
    assert "does not match model 'vocoder': missing keys" in one_error_line(result)
    assert not (tmp_path / "a" / "cpu").exists()
    assert not [p for p in (tmp_path / "a" / "cache").iterdir()
                if p.name.startswith(".tmp") or (p / "model.onnx").exists()]


def test_unwritable_artifacts_directory(tmp_path):
    (tmp_path / "file").write_text("")
    result = run_cli("build", "--artifacts", str(tmp_path / "file" / "art"), "--preset", "tiny")
    assert "cannot write to the artifacts cache" in one_error_line(result)


def test_inspect_shows_dynamic_dims(tiny_build, capsys):
    assert main(["inspect", str(tiny_build / "cpu" / "vocoder" / "vocoder.onnx")]) == 0
    out = capsys.readouterr().out
    assert "dynamic: batch, frames" in out and "ConvTranspose" in out
    assert main(["inspect", str(tiny_build / "cpu")]) == 0
    assert "vocoder: parity pass" in capsys.readouterr().out
    assert main(["inspect", str(tiny_build / "nothing.onnx")]) == 2


def test_parity_command_rejects_a_tampered_file_and_fails_a_broken_one(tiny_build, tmp_path, capsys):
    # (a clean copy passing `voxc parity`: tests/test_perceptual_gates.py test_voxc_parity_reruns_and_reports_the_chain)
    shutil.copytree(tiny_build / "cpu", tmp_path / "cpu")
    accepted = json.loads((tmp_path / "cpu" / "manifest.json").read_text())["models"]["vocoder"]["precision"]
    path = tmp_path / "cpu" / "vocoder" / f"vocoder.onnxruntime-{accepted['onnxruntime']['accepted']}.onnx"
    model = onnx.load(str(path))
    big = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    big.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(big) * 1.3, big.name))
    onnx.save(model, str(path))
    assert main(["parity", "--target", "cpu", "--artifacts", str(tmp_path)]) == 2
    assert "altered since the build" in capsys.readouterr().err
    manifest_path = tmp_path / "cpu" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for a in manifest["models"]["vocoder"]["artifacts"]:
        if a["path"] == f"vocoder/{path.name}":
            a["sha256"], a["bytes"] = sha256_file(path), path.stat().st_size
    manifest_path.write_text(json.dumps(manifest))
    assert main(["parity", "--target", "cpu", "--artifacts", str(tmp_path)]) == 1
    assert json.loads(manifest_path.read_text())["models"]["vocoder"]["parity"] == "fail"
    assert "**Overall: FAIL**" in (tmp_path / "cpu" / "parity.md").read_text()
