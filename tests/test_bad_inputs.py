"""Every bad input ends in one `voxc: error:` line naming what is wrong and what to do, exit status 2,
and no half-written output; anything unforeseen is exit 3 with one line and a log, never a traceback."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxc.cli import main


def _wav(path: Path, wave: np.ndarray, subtype: str = "PCM_16") -> str:
    sf.write(str(path), wave, 16000, subtype=subtype)
    return str(path)


@pytest.fixture()
def files(tmp_path):
    rng = np.random.default_rng(0)
    f = {"ref": _wav(tmp_path / "ref.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32)),
         "short": _wav(tmp_path / "short.wav", np.zeros(800, np.float32) + 0.1),
         "silent": _wav(tmp_path / "silent.wav", np.zeros(16000, np.float32)),
         "nan": _wav(tmp_path / "nan.wav", np.full(16000, np.nan, np.float32), subtype="FLOAT"),
         "notwav": str(tmp_path / "notwav.wav"), "garbage": str(tmp_path / "garbage.safetensors"),
         "onnx": str(tmp_path / "broken.onnx"), "dir": str(tmp_path / "adir"), "tmp": str(tmp_path)}
    Path(f["notwav"]).write_text("not audio")
    Path(f["garbage"]).write_bytes(b"\x00" * 64)
    Path(f["onnx"]).write_bytes(b"not an onnx model")
    Path(f["dir"]).mkdir()
    return f


BUILD = ["build", "--preset", "tiny"]
CASES = [
    (BUILD + ["--target", "nosuch"], "unknown target 'nosuch'"),
    (["build", "--preset", "huge"], "unknown preset 'huge'"),
    (["build", "--family", "nosuch"], "unknown model family 'nosuch'"),
    (BUILD + ["--models", "vocodr"], "unknown model 'vocodr'"),
    (BUILD + ["--set", "nosuch=1"], "--set expects KEY=VALUE"),
    (BUILD + ["--set", "hop"], "--set expects KEY=VALUE"),
    (BUILD + ["--set", "hop=0"], "a size must be between 1 and 65536"),
    (BUILD + ["--set", "hidden=-4"], "a size must be between 1 and 65536"),
    (BUILD + ["--set", "hidden=10000000"], "a size must be between 1 and 65536"),
    (BUILD + ["--set", "hidden=abc"], "is not a valid int"),
    (BUILD + ["--set", "vocoder=nosuch"], "the configuration does not fit vocoder"),
    (BUILD + ["--set", "heads=3"], "the configuration does not fit"),
    (BUILD + ["--set", "dims=1"], "--set expects KEY=VALUE"),
    (BUILD + ["--set", "family=emotivoice"], "--set expects KEY=VALUE"),
    (BUILD + ["--jobs", "0"], "--jobs must be at least 1"),
    (BUILD + ["--margin", "-1"], "--margin must be between 0 and 10"),
    (BUILD + ["--precisions", "vocoder=int4"], "unknown precision 'int4'"),
    (BUILD + ["--precisions", "vocoder"], "--precisions expects MODEL=PRECISION"),
    (BUILD + ["--precisions", "vocoder=fp32,fp32"], "must list distinct precisions"),
    (BUILD + ["--precisions", "nosuch=fp32"], "unknown model 'nosuch'"),
    (BUILD + ["--checkpoint", "vocoder=/nonexistent.pt"], "does not exist"),
    (BUILD + ["--checkpoint", "vocoder"], "--checkpoint expects NAME=PATH"),
    (BUILD + ["--from", "/nonexistent-dir"], "family voxc has no importer"),
    (["build", "--family", "emotivoice", "--from", "/nonexistent-dir"], "does not exist"),
    (["build", "--family", "emotivoice"], "compiles a voice you bring: pass --from DIR"),
    (["build", "--family", "emotivoice", "--from-file", "generator"], "--from-file expects KIND=PATH"),
    (["build", "--family", "emotivoice", "--from", "{tmp}", "--from-file", "weird=/x"], "unknown EmotiVoice file kind"),
    (["parity", "--target", "cpu", "--artifacts", "{tmp}"], "no build found"),
    (["report", "--target", "cpu", "--artifacts", "{tmp}"], "no build found"),
    (["bench", "--target", "cpu", "--artifacts", "{tmp}"], "no build found"),
    (["bench", "--target", "cpu", "--runs", "-5"], "--runs must be at least 1"),
    (["bench", "--target", "cpu", "--runs", "0"], "--runs must be at least 1"),
    (["bench", "--target", "cpu", "--input", "noequals"], "--input expects NAME=VALUE"),
    (["inspect", "{tmp}/nothing.onnx"], ""),
    (["inspect", "{onnx}"], ""),
    (["synth", "", "--speaker-ref", "{ref}", "-o", "{tmp}/out.wav"], "the text is empty"),
    (["synth", "   ", "--speaker-ref", "{ref}", "-o", "{tmp}/out.wav"], "the text is empty"),
    (["synth", "Hello.", "--speaker-ref", "{ref}", "-o", "{tmp}/missing/out.wav"], "does not exist; create it first"),
    (["synth", "Hello.", "--speaker-ref", "{ref}", "-o", "{dir}"], "the output must be a .wav file name"),
    (["synth", "Hello.", "--speaker-ref", "{ref}", "-o", "{tmp}/out.txt"], "the output must be a .wav file name"),
    (["synth", "Hello.", "--speaker-ref", "{tmp}/absent.wav", "-o", "{tmp}/out.wav"], "cannot read reference audio"),
    (["synth", "Hello.", "--speaker-ref", "{notwav}", "-o", "{tmp}/out.wav"], "cannot read reference audio"),
    (["synth", "Hello.", "--speaker-ref", "{short}", "-o", "{tmp}/out.wav"], "is too short"),
    (["synth", "Hello.", "--speaker-ref", "{silent}", "-o", "{tmp}/out.wav"], "is silent"),
    (["synth", "Hello.", "--speaker-ref", "{nan}", "-o", "{tmp}/out.wav"], "contains NaN"),
    (["synth", "Hello.", "--speaker-ref", "{ref}", "--style-ref", "{silent}", "-o", "{tmp}/out.wav"], "is silent"),
    (["synth", "你好", "--speaker-ref", "{ref}", "-o", "{tmp}/out.wav"], "use the emotivoice family"),
    (["synth", "مرحبا world", "--speaker-ref", "{ref}", "-o", "{tmp}/out.wav"], "cannot speak it"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(files, capsys, argv, message):
    argv = [a.format(**files) for a in argv]
    if "--artifacts" not in argv and argv[0] in ("build", "bench"):
        argv += ["--artifacts", files["tmp"] + "/art"]
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("voxc: error: ") and message in err[0], (rc, err)
    assert "Traceback" not in "\n".join(err)
    assert not (Path(files["tmp"]) / "out.wav").exists() and not (Path(files["tmp"]) / "art" / "cpu").exists()


@pytest.mark.parametrize("damage, message", [
    ("manifest-truncated", "manifest.json is not readable JSON"),
    ("manifest-empty-object", "is not a voxc manifest"),
    ("parity-malformed", "parity.json is not readable JSON"),
    ("parity-not-rows", "is not a voxc parity report"),
])
def test_malformed_reports_are_one_line(tiny_build, tmp_path, capsys, damage, message):
    folder = tmp_path / "cpu"
    shutil.copytree(tiny_build / "cpu", folder)
    if damage == "manifest-truncated":
        (folder / "manifest.json").write_text((folder / "manifest.json").read_text()[:100])
    elif damage == "manifest-empty-object":
        (folder / "manifest.json").write_text("{}")
    elif damage == "parity-malformed":
        (folder / "parity.json").write_text("{")
    else:
        (folder / "parity.json").write_text(json.dumps({"results": 5}))
    rc = main(["report", "--target", "cpu", "--artifacts", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("results", [5, [], [5]])
def test_a_device_result_without_rows_is_refused(tmp_path, results):
    from voxc.compiler.merge import load_device_result
    from voxc.core.errors import VoxcError
    bad = tmp_path / "device.json"
    bad.write_text(json.dumps({"target": "jetson", "bundle": "x", "runner": "tensorrt", "results": results}))
    with pytest.raises(VoxcError, match="'results' must be a non-empty list"):
        load_device_result(bad)


def test_an_internal_error_is_one_line_with_a_log_and_exit_3(monkeypatch, capsys):
    from voxc.compiler import cli as compiler_cli

    def boom(args):
        raise RuntimeError("an unforeseen failure")
    monkeypatch.setattr(compiler_cli, "cmd_inspect", boom)
    rc = main(["inspect", "x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3 and len(err) == 1 and err[0].startswith("voxc: internal error: RuntimeError: an unforeseen failure")
    log = err[0].split("the traceback is in ")[1].split(" ")[0]
    assert "Traceback" in Path(log).read_text()
