"""Shared fixtures: one tiny-preset cpu build per test session, reused by the build and CLI tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("VOXC_THREADS", "1")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Each pytest-xdist worker takes its share of the cores for PyTorch (OpenMP) and BLAS too, and so do the
# `voxc` processes tests start: two workers each running 2-thread PyTorch on 2 cores spin-wait for one
# another (measured here: `voxc parity` of the tiny build took half the CPU time with 1 thread per worker).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _SHARE = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _var in THREAD_VARS:
        os.environ.setdefault(_var, _SHARE)


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory) -> Path:
    """artifacts folder holding a complete tiny `cpu` build: built once per run and shared by every pytest-xdist
    worker (the first to take the lock builds it, the others wait for it). Tests copy what they alter."""
    from filelock import FileLock
    from voxc.compiler.build import BuildRequest, build
    from voxc.models.voxc.presets import preset
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent                      # the run's folder, above each worker's own
    artifacts = root / "tiny-artifacts"
    with FileLock(str(root / "tiny-artifacts.lock")):
        if not (artifacts / ".built").is_file():
            artifacts.mkdir(exist_ok=True)
            assert build(BuildRequest(target="cpu", preset=preset("tiny"), preset_name="tiny", artifacts=artifacts,
                                      jobs=2))
            (artifacts / ".built").touch()
    return artifacts


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under a target folder, by relative path."""
    from voxc.core.hashing import sha256_file
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def tiny_cfg() -> dict:
    from voxc.models.voxc.presets import preset
    return preset("tiny")
