"""Installs where users are: a clean virtualenv with only the runtime and `serve` extra (no PyTorch, no
compiler) speaks from a built target and serves it. `make test` does it on the running Python; set
VOXC_TEST_PYTHONS=3.12,3.13 to do it on those too (each skipped, saying so, where the host lacks it; about
30 s each). The wheel is built from this tree."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _interpreter(version: str) -> str | None:
    """A working python<version>: this one, one on PATH, or one under pyenv's versions (its shims may be inactive)."""
    if version == f"{sys.version_info.major}.{sys.version_info.minor}":
        return getattr(sys, "_base_executable", None) or sys.executable
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [shutil.which(f"python{version}")] + sorted(str(p) for p in root.glob(f"{version}*/bin/python{version}"))
    for c in filter(None, candidates):
        if subprocess.run([c, "-c", "import venv"], capture_output=True, timeout=60).returncode == 0:
            return c
    return None


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """voxc's wheel, built once from a copy of this tree (no build isolation: the dev venv has setuptools)."""
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src") / "voxc"      # setuptools writes build/ beside the source: not in the tree
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "artifacts", "build", "*.egg-info",
                                                             "__pycache__", ".pytest_cache"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(out), str(src)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return next(out.glob("voxc-*.whl"))


OTHER_PYTHONS = [v.strip() for v in os.environ.get("VOXC_TEST_PYTHONS", "").split(",") if v.strip()]
CURRENT = f"{sys.version_info.major}.{sys.version_info.minor}"
VERSIONS = [pytest.param(v, marks=pytest.mark.skipif(
    v != CURRENT and v not in OTHER_PYTHONS, reason=f"python{v}: set VOXC_TEST_PYTHONS={v} to install and run there too"))
    for v in ("3.11", "3.12", "3.13")]


@pytest.mark.parametrize("version", VERSIONS)
def test_runtime_only_install_speaks_and_serves(version, wheel, tiny_build, tmp_path):
    python = _interpreter(version)
    if python is None:
        pytest.skip(f"python{version} is not on PATH on this host")
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[serve]"],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-2000:]
    py = venv / "bin" / "python"
    for heavy in ("torch", "onnx", "openvino", "transformers", "pesq"):
        probe = subprocess.run([str(py), "-c", f"import {heavy}"], capture_output=True, timeout=60)
        assert probe.returncode != 0, f"{heavy} is installed by the runtime-only extra"
    size = _size_mb(venv)
    print(f"\nruntime-only venv (Python {version}): {size:.0f} MB; full dev venv: {_size_mb(Path(sys.prefix)):.0f} MB")

    target = tiny_build / "cpu"
    out = tmp_path / "hello.wav"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    spoke = subprocess.run([str(venv / "bin" / "voxc"), "speak", "Hello from a small install.", "--folder",
                            str(target), "-o", str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                           env=env)
    assert spoke.returncode == 0, spoke.stderr
    wave, rate = sf.read(out)
    assert rate > 0 and len(wave) > rate // 10 and abs(wave).max() > 0

    port = _free_port()
    server = subprocess.Popen([str(venv / "bin" / "voxc"), "serve", str(target), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stdout.read()[-2000:]
            try:
                if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.3)
        voices = httpx.get(url + "/v1/voices", timeout=10).json()["voices"]
        body = {"input": "Served without PyTorch.", "response_format": "wav", "voice": voices[0]}
        r = httpx.post(url + "/v1/audio/speech", json=body, timeout=120)
        assert r.status_code == 200, r.text
        assert r.content[:4] == b"RIFF" and len(r.content) > 1000
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
