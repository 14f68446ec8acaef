"""Target profiles (targets/profiles/<name>.toml): backends, precision ladders, where the build runs."""
from __future__ import annotations

import tomllib
from pathlib import Path

from voxc.core.errors import VoxcError

PROFILE_DIR = Path(__file__).parent / "profiles"


def names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load(name: str) -> dict:
    path = PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        raise VoxcError(f"unknown target '{name}': choose one of {', '.join(names())}")
    profile = tomllib.loads(path.read_text())
    profile.setdefault("name", name)
    return profile


def precisions(profile: dict, backend: str, model: str) -> list[str]:
    """The precision ladder for one model on one backend, most preferred first."""
    table = profile.get("precisions", {}).get(backend, {})
    return list(table.get(model, table.get("default", ["fp32"])))
