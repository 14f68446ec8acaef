"""Where voxc's modules live, and the hash of the code a build stage runs.

Installed, the code is the `voxc` namespace; in the repository the folders sit at the top (core/,
models/, compiler/, targets/, calibration/, voice/, voxc/). A stage's cache key includes the hash
of its source closure: its module and every voxc module it imports (at any depth, including
imports inside functions), so editing code invalidates exactly the stages that run it. Modules
loaded by name through a registry (families, backends) are not followed: stages name them.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

from voxc.core.hashing import sha256_chunks

ROOT_PACKAGE = "voxc"


def module_file(name: str) -> Path | None:
    """The source file of a voxc module (a package's __init__.py), or None if it does not exist."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def read_source(path: Path) -> bytes:
    return path.read_bytes()


@functools.lru_cache(maxsize=None)
def direct_imports(name: str) -> tuple[str, ...]:
    """voxc modules a module imports anywhere in its text (absolute imports only)."""
    path = module_file(name)
    if path is None:
        return ()
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        mods = []
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for m in mods:
            if m.split(".")[0] == ROOT_PACKAGE and module_file(m) is not None:
                found.append(m)
    return tuple(sorted(set(found)))


def closure(names, exclude=()) -> list[str]:
    """The modules named and every voxc module they import, transitively (not following `exclude`)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or name in exclude or module_file(name) is None:
            continue
        seen.add(name)
        todo += direct_imports(name)
    return sorted(seen)


def package_modules(package: str) -> list[str]:
    """Every module of a package folder (e.g. a model family: its declaration and its graphs)."""
    init = module_file(package)
    if init is None or init.name != "__init__.py":
        return [package] if init is not None else []
    return [package] + sorted(f"{package}.{p.stem}" for p in init.parent.glob("*.py") if p.name != "__init__.py")


def source_hash(names) -> str:
    """Hash of the text of the closure of `names` (module name + bytes of each file)."""
    mods = closure(names)
    return sha256_chunks(m.encode() + read_source(module_file(m)) for m in mods)[:16]
