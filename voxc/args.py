"""Command-line argument helpers shared by every command group (compiler and voice)."""
from __future__ import annotations

from pathlib import Path

from voxc.core.errors import VoxcError


def csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def checkpoints(items: list[str] | None) -> dict[str, Path]:
    """--checkpoint NAME=PATH (repeatable)."""
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise VoxcError(f"--checkpoint expects NAME=PATH, got '{item}'")
        out[name] = Path(path)
    return out
