"""The build options of one graph's rungs on one runtime: where int8 (and fp16) settings come from.

Layers, each overriding the one before:
  1. the target profile's `[options.<runtime>]` (generic to every graph);
  2. the graph's own settings declared by its family (models/family.Graph.quantisation, for this
     runtime or "*"); only when it declares none, the profile's `[options.<runtime>.models.<graph>]`
     table (the built-in families' tuning, keyed by graph name -- so another family's graph that
     happens to share a name but declares its own settings never inherits it);
  3. the user's TOML (`voxc build --quantisation FILE`): `[options.<runtime>]` and
     `[options.<runtime>.models.<graph>]`, as in a profile.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

from voxc.core.errors import VoxcError


def read_user(path: str | Path | None) -> dict:
    """A user's quantisation TOML (the `options` table of a profile), checked for its shape."""
    if path is None:
        return {}
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise VoxcError(f"--quantisation {path}: cannot read it as TOML ({str(exc).strip()[:120]}); "
                        "write [options.<runtime>.models.<graph>] tables as in a target profile") from None
    opts = doc.get("options", {})
    extra = set(doc) - {"options"}
    if extra or not isinstance(opts, dict) or not all(isinstance(v, dict) for v in opts.values()):
        raise VoxcError(f"--quantisation {path}: expected only [options.<runtime>] tables (as in a target profile), "
                        f"got {', '.join(sorted(extra)) or 'a malformed options table'}")
    return opts


def _own(table: dict, graph: str) -> dict:
    out = {k: v for k, v in table.items() if k != "models"}
    out.update(table.get("models", {}).get(graph, {}))
    return out


def options(profile: dict, runtime: str, graph, user: dict | None = None) -> dict:
    """Options of `graph` (a models.family.Graph) on `runtime` after the three layers above."""
    table = profile.get("options", {}).get(runtime, {})
    out = {k: v for k, v in table.items() if k != "models"}
    declared = {**graph.quantisation.get("*", {}), **graph.quantisation.get(runtime, {})}
    out.update(declared or table.get("models", {}).get(graph.name, {}))
    out.update(_own((user or {}).get(runtime, {}), graph.name))
    return out
