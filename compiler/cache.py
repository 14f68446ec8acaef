"""The content-addressed cache verifies itself: an entry is served only while its files match the
sha256 recorded when it was written.

Each entry's stage.json lists every output file's sha256 and size. A hit re-checks them: a file whose
(inode, size, mtime, ctime) still equals what was seen when it was last hashed is trusted without
re-reading it (an in-place edit changes mtime and ctime, and ctime cannot be set back); any other
file is hashed again. An entry holds its own bytes: the entry, its stage.json or any file in it being
a symbolic link (e.g. to a copy outside the cache) is a problem like a changed byte. A missing, truncated, altered or unreadable entry is moved aside to
cache/.corrupt/ with one line saying so, and its stage runs again. Shipped target folders are copies,
never links into the cache, so a user's edit of a shipped file cannot reach the cache.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from voxc.core.atomic import write_atomic
from voxc.core.hashing import sha256_file

META = "stage.json"
SEEN = ".verified.json"          # per entry: rel path -> [ino, size, mtime_ns, ctime_ns] when last hashed


def file_table(folder: Path) -> dict[str, dict]:
    """rel path -> {sha256, bytes} of every output file of an entry (written into its stage.json).
    A stage that wrote a symbolic link is a bug: an entry must hold bytes, not point at them."""
    links = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_symlink()]
    if links:
        raise RuntimeError(f"the stage wrote symbolic link(s) {', '.join(sorted(links)[:3])}; a cache entry "
                           "holds its own files")
    return {str(p.relative_to(folder)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in (META, SEEN)}


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def remember(entry: Path, files: dict) -> None:
    """Record the stat stamps of files just hashed (a new entry needs no second hashing)."""
    write_atomic(entry / SEEN, json.dumps({rel: _stamp((entry / rel).stat()) for rel in files}))


def symlink_in(entry: Path, rel: str) -> str | None:
    """The first symbolic link on the way from the entry to rel (the entry itself included), or None."""
    here = Path(entry)
    for part in ("",) + Path(rel).parts:
        here = here / part if part else here
        if here.is_symlink():
            return str(here.relative_to(entry)) if here != Path(entry) else "the entry itself"
    return None


def problem(entry: Path) -> str | None:
    """None when the entry is intact; else what is wrong with it, in a few words."""
    link = symlink_in(entry, META)
    if link is not None:
        return f"{link} is a symbolic link (a cache entry holds its own files)"
    try:
        record = json.loads((entry / META).read_text())
    except FileNotFoundError:
        return "its stage.json is missing"
    except (OSError, ValueError) as exc:
        return f"its stage.json is unreadable ({type(exc).__name__})"
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict):
        return "its stage.json lists no file hashes"
    try:
        seen = json.loads((entry / SEEN).read_text())
    except (OSError, ValueError):
        seen = {}
    fresh, changed = {}, False
    for rel, info in files.items():
        p = entry / rel
        link = symlink_in(entry, rel)
        if link is not None:
            return f"{link} is a symbolic link (a cache entry holds its own files)"
        try:
            st = p.stat()
        except OSError:
            return f"{rel} is missing"
        if st.st_size != info.get("bytes"):
            return f"{rel} has {st.st_size} bytes, {info.get('bytes')} were written"
        stamp = _stamp(st)
        if seen.get(rel) != stamp:
            try:
                digest = sha256_file(p)
            except OSError as exc:
                return f"{rel} is unreadable ({exc.strerror})"
            if digest != info.get("sha256"):
                return f"{rel} does not match its recorded sha256"
            changed = True
        fresh[rel] = stamp
    if changed or set(seen) != set(fresh):
        try:
            write_atomic(entry / SEEN, json.dumps(fresh))
        except OSError:
            pass                               # a read-only cache is still verified, just not remembered
    return None


def move_aside(cache: Path, key: str) -> Path:
    """Take a bad entry out of the cache (kept under cache/.corrupt/ for inspection)."""
    dest = cache / ".corrupt" / f"{key}-{uuid.uuid4().hex[:6]}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(cache / key, dest)
    except OSError:
        shutil.rmtree(cache / key, ignore_errors=True)
    return dest


def sweep_temporaries(cache: Path) -> int:
    """Remove temporary folders a killed build left (only called while holding the build lock)."""
    n = 0
    for p in cache.glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n
