"""What voxc ships is what it verified, tried from outside on the tiny cpu build: a target folder whose
manifest points outside itself or through a symlink, or whose verdict or stream settings were edited,
is refused by every entry point (voxc.open, speak, serve, parity); assembly never ships bytes that
changed after their stage verified them; every JSON the build writes is strict."""
from __future__ import annotations

import functools
import json
import os
import shutil
import socket
from pathlib import Path

import pytest

import voxc
from voxc.cli import main
from voxc.core.errors import VoxcError
from voxc.core.hashing import sha256_file

pytestmark = pytest.mark.slow


def _vocoder_artifact(manifest: dict) -> dict:
    return next(a for a in manifest["models"]["vocoder"]["artifacts"]
                if a["runtime"] == "onnxruntime" and a.get("role") == "model")


def _outside(folder: Path, tmp: Path) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    a = _vocoder_artifact(m)
    (tmp / "outside").mkdir()
    shutil.copyfile(folder / a["path"], tmp / "outside" / "evil.onnx")     # same bytes: its sha256 matches
    a["path"] = "../../outside/evil.onnx"
    (folder / "manifest.json").write_text(json.dumps(m))


def _absolute(folder: Path, tmp: Path) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    a = _vocoder_artifact(m)
    shutil.copyfile(folder / a["path"], tmp / "evil.onnx")
    a["path"] = str(tmp / "evil.onnx")
    (folder / "manifest.json").write_text(json.dumps(m))


def _symlink(folder: Path, tmp: Path) -> None:
    a = _vocoder_artifact(json.loads((folder / "manifest.json").read_text()))
    shutil.copyfile(folder / a["path"], tmp / "copy.onnx")
    (folder / a["path"]).unlink()
    os.symlink(tmp / "copy.onnx", folder / a["path"])


def _verdict(folder: Path, tmp: Path) -> None:
    p = json.loads((folder / "parity.json").read_text())
    p["results"][0]["value"] = 0.0 if isinstance(p["results"][0]["value"], float) else p["results"][0]["value"]
    p["results"][0]["note"] = "edited"
    (folder / "parity.json").write_text(json.dumps(p))


def _stream(folder: Path, tmp: Path) -> None:
    p = json.loads((folder / "parity.json").read_text())
    p["chain"]["runtimes"]["onnxruntime"]["stream"].update(chunk=0, first=0)
    (folder / "parity.json").write_text(json.dumps(p))


DAMAGE = {"traversal": (_outside, "leaves its folder"), "absolute": (_absolute, "leaves its folder"),
          "symlink": (_symlink, "is a symlink"),
          "verdict": (_verdict, "does not match the sha256 its manifest records"),
          "stream": (_stream, "does not match the sha256 its manifest records")}


@pytest.fixture
def damaged(tiny_build, tmp_path, request):
    art = tmp_path / "a" / "art"
    art.mkdir(parents=True)
    folder = art / "cpu"
    shutil.copytree(tiny_build / "cpu", folder)
    fn, message = DAMAGE[request.param]
    fn(folder, tmp_path)
    return folder, message


def _one_line(capsys, rc: int, message: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("voxc: error:") and message in err[0], (rc, err)


@pytest.mark.parametrize("damaged", list(DAMAGE), indirect=True)
def test_a_target_trusted_beyond_its_hashes_is_refused_everywhere(damaged, tmp_path, capsys):
    folder, message = damaged
    with pytest.raises(VoxcError, match=message):
        voxc.open(folder)
    _one_line(capsys, main(["speak", "Hello there.", "--folder", str(folder), "-o", str(tmp_path / "x.wav")]), message)
    assert not (tmp_path / "x.wav").exists()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _one_line(capsys, main(["serve", str(folder), "--host", "127.0.0.1", "--port", str(port)]), message)
    _one_line(capsys, main(["parity", "--target", "cpu", "--artifacts", str(folder.parent)]), message)


def test_export_triton_refuses_to_replace_a_target_or_the_cache(tiny_build, tmp_path, capsys):
    art = tmp_path / "art"
    shutil.copytree(tiny_build / "cpu", art / "cpu")
    (art / "cache" / "abc").mkdir(parents=True)
    (art / "cache" / "abc" / "stage.json").write_text("{}")
    for out in (art / "cpu", art / "cache", art):
        before = sorted(str(p) for p in art.rglob("*"))
        rc = main(["export", "triton", "--target", "cpu", "--artifacts", str(art), "--out", str(out), "--force"])
        _one_line(capsys, rc, "is a voxc target or cache folder" if out != art else "holds voxc targets")
        assert sorted(str(p) for p in art.rglob("*")) == before


def test_bytes_altered_between_verification_and_assembly_never_ship(tiny_build, tmp_path, monkeypatch):
    """A hook in the assemble stage flips a byte of the vocoder's verified ONNX Runtime artifact in its
    cache entry just before assembly: the build refuses and ships nothing; the next build finds the entry
    corrupt, rebuilds it and ships the clean bytes."""
    from voxc.compiler import report
    from voxc.compiler.build import BuildRequest, build
    from voxc.models.voxc.presets import preset
    art = tmp_path / "art"
    shutil.copytree(tiny_build / "cache", art / "cache", ignore=shutil.ignore_patterns(".corrupt"))
    clean = json.loads((tiny_build / "cpu" / "manifest.json").read_text())
    shipped = _vocoder_artifact(clean)
    label = f"vocoder/onnxruntime-{shipped['precision']}"
    original = report.target_stage
    flipped = {}

    @functools.wraps(original)
    def flip_then_assemble(out, params, inputs):
        f = Path(inputs[label]) / "model.onnx"
        data = bytearray(f.read_bytes())
        data[-7] ^= 0x01
        f.write_bytes(bytes(data))
        flipped["sha256"] = sha256_file(f)
        return original(out, params, inputs)
    req = lambda: BuildRequest(target="cpu", preset=preset("tiny"), preset_name="tiny (assembly trial)",
                               artifacts=art, jobs=1)
    monkeypatch.setattr(report, "target_stage", flip_then_assemble)
    with pytest.raises(VoxcError, match="changed since its stage verified it"):
        build(req())
    assert flipped and not (art / "cpu").exists()
    monkeypatch.setattr(report, "target_stage", original)
    assert build(req())
    got = json.loads((art / "cpu" / "manifest.json").read_text())
    a = _vocoder_artifact(got)
    assert a["sha256"] == shipped["sha256"] != flipped["sha256"]
    assert sha256_file(art / "cpu" / a["path"]) == shipped["sha256"]
    assert list((art / "cache" / ".corrupt").iterdir())          # the altered entry was set aside


def _strict(path: Path):
    def refuse(c):
        raise AssertionError(f"{path}: {c} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_every_json_the_build_writes_is_strict(tiny_build):
    files = [p for p in tiny_build.rglob("*.json") if ".corrupt" not in p.parts]
    assert len(files) > 20
    for p in files:
        _strict(p)
