"""Command-line argument helpers shared by every command group (compiler, voice, the top-level CLI)."""
from __future__ import annotations

import json
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


def set_overrides(cfg: dict, items: list[str]) -> dict:
    """--set key=value on the preset (ints, floats and strings; unknown keys are refused)."""
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or key not in cfg or key in ("dims", "family"):
            raise VoxcError(f"--set expects KEY=VALUE with KEY one of "
                            f"{', '.join(k for k in cfg if k not in ('dims', 'family'))}; "
                            f"got '{item}'")
        old = cfg[key]
        try:
            cfg[key] = type(old)(raw) if not isinstance(old, (list, dict)) else json.loads(raw)
        except ValueError:
            raise VoxcError(f"--set {key}: '{raw}' is not a valid {type(old).__name__}") from None
        if isinstance(old, int) and key != "seed" and not 0 < cfg[key] <= 1 << 16:
            raise VoxcError(f"--set {key}={raw}: a size must be between 1 and 65536")
    return cfg
