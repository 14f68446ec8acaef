"""Shared fixtures: one tiny-preset cpu build per test session, reused by the build and CLI tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("VOXC_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory) -> Path:
    """artifacts folder holding a complete tiny `cpu` build (built once per session)."""
    from voxc.compiler.build import BuildRequest, build
    from voxc.models.voxc.presets import preset
    artifacts = tmp_path_factory.mktemp("artifacts")
    assert build(BuildRequest(target="cpu", preset=preset("tiny"), preset_name="tiny", artifacts=artifacts, jobs=2))
    return artifacts


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under a target folder, by relative path."""
    from voxc.core.hashing import sha256_file
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def tiny_cfg() -> dict:
    from voxc.models.voxc.presets import preset
    return preset("tiny")
