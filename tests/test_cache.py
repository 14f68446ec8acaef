"""Nothing corrupt is ever shipped: cache entries are verified on every hit, shipped files are copies,
builds into one artifacts folder take turns, and a killed build leaves no worker behind."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from voxc.compiler.graph import META, BuildGraph, InlineExecutor, Stage
from voxc.core.hashing import sha256_file


def write_text(out: Path, params: dict, inputs: dict) -> dict:
    text = params["text"] + "".join((p / "out.txt").read_text() for p in inputs.values() if p.is_dir())
    (out / "out.txt").write_text(text)
    (out / "sub").mkdir()
    (out / "sub" / "more.bin").write_bytes(text.encode() * 100)
    return {"length": len(text)}


def _graph(cache: Path) -> BuildGraph:
    g = BuildGraph(cache)
    a = g.add(Stage("a", "write", write_text, {"text": "a"}))
    g.add(Stage("ab", "write", write_text, {"text": "+"}, {"a": a}))
    return g


def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "meta-truncate", "meta-delete", "flip-keep-mtime",
                                    "file-symlink", "folder-symlink", "meta-symlink", "entry-symlink"])
def test_a_damaged_cache_entry_is_moved_aside_and_rebuilt(tmp_path, capsys, damage):
    first = _graph(tmp_path).run(InlineExecutor())
    entry = first["a"].path
    target = entry / "sub" / "more.bin"
    outside = tmp_path.parent / f"{tmp_path.name}-outside"       # identical bytes, outside the cache
    if damage.endswith("symlink"):
        shutil.copytree(entry, outside, symlinks=True)
        link = {"file-symlink": target, "folder-symlink": entry / "sub", "meta-symlink": entry / META,
                "entry-symlink": entry}[damage]
        (shutil.rmtree if link.is_dir() else Path.unlink)(link)
        link.symlink_to(outside / link.relative_to(entry))
        assert (entry / "sub" / "more.bin").read_bytes() == b"a" * 100    # the same bytes, reached through a link
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:10])
    elif damage == "flip":
        _flip(target)
    elif damage == "flip-keep-mtime":          # an in-place edit that restores the old mtime
        st = target.stat()
        _flip(target)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif damage == "delete":
        target.unlink()
    elif damage == "meta-truncate":
        (entry / META).write_text((entry / META).read_text()[:20])
    elif damage == "meta-delete":
        (entry / META).unlink()
    again = _graph(tmp_path).run(InlineExecutor())
    out = capsys.readouterr().out
    assert not again["a"].cached and "cache entry of a is corrupt" in out
    assert (again["a"].path / "sub" / "more.bin").read_bytes() == b"a" * 100
    assert again["ab"].cached and (again["ab"].path / "out.txt").read_text() == "+a"
    assert list((tmp_path / ".corrupt").iterdir())
    third = _graph(tmp_path).run(InlineExecutor())
    assert all(r.cached for r in third.values())


@pytest.fixture(scope="module")
def own_build(tiny_build, tmp_path_factory):
    """A copy of the session's tiny cpu cache: these tests rebuild and tamper without touching it."""
    art = tmp_path_factory.mktemp("cache-tests")
    shutil.copytree(tiny_build / "cache", art / "cache", symlinks=True)
    return art


def _build(art: Path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "voxc.cli", "build", "--preset", "tiny", "--target", "cpu",
                           "--artifacts", str(art), "--jobs", "1", *extra], capture_output=True, text=True,
                          timeout=600)


def test_a_tampered_shipped_file_never_reaches_the_cache(own_build):
    assert _build(own_build).returncode == 0
    shipped = own_build / "cpu" / "vocoder" / "vocoder.onnx"
    manifest = json.loads((own_build / "cpu" / "manifest.json").read_text())
    want = next(a["sha256"] for a in manifest["models"]["vocoder"]["artifacts"] if a["path"].endswith("vocoder.onnx"))
    _flip(shipped)
    res = _build(own_build)
    assert res.returncode == 0 and "stages cached" in res.stdout and "corrupt" not in res.stdout
    assert sha256_file(shipped) == want                       # the rebuild shipped the verified bytes again


def test_concurrent_builds_into_one_folder_take_turns_and_agree(own_build):
    cmd = [sys.executable, "-m", "voxc.cli", "build", "--preset", "tiny", "--target", "cpu",
           "--artifacts", str(own_build), "--jobs", "1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outs]
    assert sum("waiting for it to finish" in o[0] for o in outs) <= 1
    json.loads((own_build / "cpu" / "manifest.json").read_text())


def test_a_full_disk_while_shipping_leaves_the_previous_target_intact(own_build, monkeypatch, capsys):
    import errno

    from voxc.cli import main
    from voxc.compiler import build as build_mod
    assert main(["build", "--preset", "tiny", "--target", "cpu", "--artifacts", str(own_build), "--jobs", "1"]) == 0
    before = {p.relative_to(own_build): sha256_file(p) for p in (own_build / "cpu").rglob("*") if p.is_file()}
    real, calls = shutil.copyfile, [0]

    def filling(src, dst, *a, **k):
        calls[0] += 1
        if calls[0] > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *a, **k)
    monkeypatch.setattr(build_mod.shutil, "copyfile", filling)
    capsys.readouterr()
    rc = main(["build", "--preset", "tiny", "--target", "cpu", "--artifacts", str(own_build), "--jobs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "No space left on device" in err[0] and "left as it was" in err[0], err
    after = {p.relative_to(own_build): sha256_file(p) for p in (own_build / "cpu").rglob("*") if p.is_file()}
    assert after == before and not list(own_build.glob(".tmp-*"))


def link_out(out: Path, params: dict, inputs: dict) -> dict:
    (out / "model.onnx").symlink_to(params["target"])
    return {}


def test_a_stage_that_writes_a_symbolic_link_makes_no_entry(tmp_path):
    from voxc.core.errors import VoxcError
    (tmp_path / "outside.onnx").write_text("bytes outside the cache")
    g = BuildGraph(tmp_path / "cache")
    g.add(Stage("a", "link", link_out, {"target": str(tmp_path / "outside.onnx")}))
    with pytest.raises(VoxcError, match="stage a failed: RuntimeError: the stage wrote symbolic link"):
        g.run(InlineExecutor())
    assert not list((tmp_path / "cache").iterdir())
