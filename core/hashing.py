"""Content hashing for the whole tree: files, folders, byte streams and canonical JSON (numpy-free)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable


def canonical(obj) -> str:
    """JSON with sorted keys and no whitespace: equal data, equal text, equal hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_chunks(chunks: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def sha256_bytes(data: bytes | str) -> str:
    return sha256_chunks([data.encode() if isinstance(data, str) else data])


def _file_chunks(path: Path, size: int = 1 << 20):
    with open(path, "rb") as f:
        yield from _file_chunks_of(f, size)


def sha256_file(path: str | Path) -> str:
    return sha256_chunks(_file_chunks(Path(path)))


def sha256_tree(folder: Path, exclude: tuple[str, ...] = ()) -> str:
    """Hash of every file under folder (relative path + content), files named in `exclude` left out."""
    parts = []
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and p.name not in exclude:
            parts += [str(p.relative_to(folder)).encode(), sha256_file(p).encode()]
    return sha256_chunks(parts)


def sha256_path(p: Path) -> str:
    """sha256 of a file, or of a folder artifact's tree (e.g. a Core ML .mlpackage)."""
    return sha256_tree(p) if Path(p).is_dir() else sha256_file(p)


def copy_hashed(src: str | Path, dst: str | Path) -> str:
    """Copy a file and return the sha256 of the bytes written (src is read once)."""
    h = hashlib.sha256()
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        for block in _file_chunks_of(fi):
            h.update(block)
            fo.write(block)
    return h.hexdigest()


def _file_chunks_of(f, size: int = 1 << 20):
    while block := f.read(size):
        yield block
