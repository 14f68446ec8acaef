"""The exit-code promise: 1 a gate failed, 2 a user's mistake in ONE `voxc: error:` line naming the input
and what to do (checked before any work), 3 a bug. Argument errors, bench requests the benchmark would
ignore, a file where a target folder belongs, a full disk under `speak`/`synth`, and a reader that
leaves early (`voxc build | head -1`), which must neither stop a build nor turn its failure into 0."""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxc.cli import main

ROOT = Path(__file__).resolve().parent.parent


def one_line(rc: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("voxc: error: "), (rc, err)
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["build", "--jobs", "x"], "voxc: error: build: argument --jobs: invalid int value: 'x'; see `voxc build --help`"),
    (["build", "--exporter", "onnx"], "build: argument --exporter: invalid choice: 'onnx'"),
    ([], "the following arguments are required: command"),
    (["nosuch"], "argument command: invalid choice: 'nosuch'"),
    (["export", "triton"], "export triton: the following arguments are required: --out"),
    (["speak"], "speak: the following arguments are required: text"),
])
def test_an_argument_error_is_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert message in one_line(stop.value.code, capsys.readouterr().err)


@pytest.mark.parametrize("argv, message", [
    (["--text", ""], "--text is empty; give a sentence to time"),
    (["--text", "   "], "--text is empty"),
    (["--text", "你好"], "--text '你好': unsupported character '你'"),
    (["--text", "Hello.", "--input", "nosuch=1"], "--input nosuch: the voxc pipeline takes no input of that name"),
    (["--input", "speed=1.5"], "--input sets a pipeline input of the --text runs; pass --text too"),
    (["--int8-study", "--runtimes", "nosuch"], "--runtimes nosuch: the INT8 study builds for onnxruntime, openvino"),
    (["--int8-study", "--runtimes", "onnxruntime", "--configs", "pc-u8rr-k0,nosuch"], "--configs nosuch: no such "
                                                                                   "configuration"),
])
def test_a_bench_request_it_would_ignore_is_refused_before_any_work(tiny_build, tmp_path, capsys, argv, message):
    shutil.copytree(tiny_build / "cpu", tmp_path / "cpu")
    before = sorted(p.name for p in (tmp_path / "cpu").iterdir())
    rc = main(["bench", "--target", "cpu", "--artifacts", str(tmp_path), "--quick", *argv])
    assert message in one_line(rc, capsys.readouterr().err)
    assert sorted(p.name for p in (tmp_path / "cpu").iterdir()) == before       # no bench.json: nothing ran


def test_bench_times_the_text_it_is_given(tiny_cfg):
    """--text replaces the held-out item's own phonemes (before, the item was timed under the text's name)."""
    from voxc.compiler.bench import text_inputs
    from voxc.models.family import family_of
    from voxc.models.pipeline import Pipeline
    fam = family_of(tiny_cfg)
    item = fam.items("parity")[0]
    inputs = text_inputs(fam, tiny_cfg, item, "Hi.", {"speed": "1.5"})
    assert "phoneme_ids" not in inputs and inputs["text"] == "Hi." and inputs["speed"] == "1.5"
    ids = Pipeline(fam, tiny_cfg, {}).run(inputs, ["phoneme_ids"]).values["phoneme_ids"]
    assert 0 < ids.size < item.phoneme_ids.size           # the text's phonemes, not the item's


def test_speak_with_a_file_for_its_target_is_one_line(tmp_path, capsys):
    (tmp_path / "notafolder").write_text("")
    rc = main(["speak", "Hello.", "--folder", str(tmp_path / "notafolder"), "-o", str(tmp_path / "out.wav")])
    assert f"--folder {tmp_path / 'notafolder'} is not a folder" in one_line(rc, capsys.readouterr().err)
    assert not (tmp_path / "out.wav").exists()


def test_target_means_a_name_everywhere_and_a_folder_is_given_as_one(tiny_build, tmp_path, capsys, monkeypatch):
    """`--target` is a target name for every command; a folder given to it, or a name given as a folder, is one
    line saying which to use; a name reads ARTIFACTS/NAME."""
    out = tmp_path / "out.wav"
    rc = main(["speak", "Hello.", "--target", str(tiny_build / "cpu"), "-o", str(out)])
    assert f"pass the built folder as --folder {tiny_build / 'cpu'}" in one_line(rc, capsys.readouterr().err)
    monkeypatch.chdir(tiny_build.parent)
    rc = main(["serve", "cpu", "--artifacts", tiny_build.name])
    assert f"cpu is a target name, not a folder: pass --target cpu (reads {tiny_build.name}/cpu)" in \
        one_line(rc, capsys.readouterr().err)
    rc = main(["speak", "Hello.", "--target", "apple", "--artifacts", str(tmp_path), "-o", str(out)])
    assert "target apple is not built in" in one_line(rc, capsys.readouterr().err)
    rc = main(["serve", str(tiny_build / "cpu"), "--target", "cpu"])
    assert "not both" in one_line(rc, capsys.readouterr().err)
    assert not out.exists()
    assert main(["speak", "Hello there.", "--target", "cpu", "--artifacts", str(tiny_build), "-o", str(out)]) == 0
    assert out.stat().st_size > 1000


def _file_limit(limit: int):
    """In the child: files may grow to `limit` bytes; a write beyond fails (EFBIG: Python ignores SIGXFSZ),
    as a full disk's ENOSPC does."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _voxc(*args, **kw) -> subprocess.CompletedProcess:
    kw = {"capture_output": True, **kw}
    return subprocess.run([sys.executable, "-m", "voxc.cli", *args], text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, **kw)


def test_synth_onto_a_full_disk_is_one_line_and_leaves_no_file(tmp_path):
    wave = 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    sf.write(str(tmp_path / "ref.wav"), wave, 16000)
    res = _voxc("synth", "Hello there, this sentence is long enough.", "--speaker-ref", str(tmp_path / "ref.wav"),
                "-o", str(tmp_path / "out.wav"), preexec_fn=_file_limit(4096))
    assert f"cannot write {tmp_path / 'out.wav'} (the file-size limit of 4096 bytes (ulimit -f) is reached)" \
        in one_line(res.returncode, res.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.wav"]


def test_speak_onto_a_full_disk_is_one_line_and_leaves_no_file(tiny_build, tmp_path):
    out = tmp_path / "out.wav"
    res = _voxc("speak", "Hello there, this sentence is long enough.", "--folder", str(tiny_build / "cpu"),
                "-o", str(out), preexec_fn=_file_limit(4096))
    assert f"cannot write {out} (the file-size limit" in one_line(res.returncode, res.stderr)
    assert not list(tmp_path.iterdir())


def test_write_wav_says_no_space_left_on_a_full_device(tmp_path):
    """/dev/full answers every write with ENOSPC: the one-line error names the file, not libsndfile."""
    from voxc.core.errors import VoxcError
    from voxc.core.wav_file import _cannot_write
    try:
        with open("/dev/full", "wb") as f:
            f.write(b"x" * 8192)
            f.flush()
    except OSError as exc:
        err = _cannot_write(tmp_path / "out.wav", tmp_path / ".out.wav.tmp", exc)
    else:
        pytest.skip("no /dev/full here")
    assert isinstance(err, VoxcError) and "No space left on device" in str(err)


# ---- a reader that leaves: `voxc build | head -1` ----------------------------------------------------

def _with_dead_stdout(*args) -> subprocess.CompletedProcess:
    """The command's stdout is a pipe nobody reads any more: its first write fails with EPIPE."""
    r, w = os.pipe()
    os.close(r)
    try:
        return _voxc(*args, stdout=w, stderr=subprocess.PIPE, capture_output=False)
    finally:
        os.close(w)


def test_a_build_whose_reader_left_finishes_and_keeps_its_exit_status(tmp_path):
    art = tmp_path / "art"
    res = _with_dead_stdout("build", "--preset", "tiny", "--target", "onnxruntime", "--models", "vocoder",
                            "--precisions", "vocoder=fp32", "--jobs", "1", "--artifacts", str(art))
    assert res.returncode == 0, res.stderr[-500:]
    assert (art / "onnxruntime" / "manifest.json").is_file()       # the build ran to the end, then said 0
    assert "Traceback" not in res.stderr


def test_a_failed_build_whose_reader_left_is_not_exit_0(tmp_path, tiny_cfg):
    import torch

    from voxc.models.family import init_module
    torch.save(init_module("speaker_encoder", tiny_cfg).state_dict(), tmp_path / "spk.pt")
    res = _with_dead_stdout("build", "--preset", "tiny", "--models", "vocoder", "--jobs", "1",
                            "--checkpoint", f"vocoder={tmp_path / 'spk.pt'}", "--artifacts", str(tmp_path / "a"))
    assert "does not match model 'vocoder'" in one_line(res.returncode, res.stderr)
