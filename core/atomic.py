"""Atomic writes: the content goes to a temporary sibling and is renamed over the target last, so a
reader never sees a half-written file. The one write helper of the tree (and of device bundles)."""
from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yields a temporary path next to `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_atomic(path: str | Path, data: str | bytes) -> None:
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)


def link_or_copy(src, dst):
    """Hard-link src to dst (same filesystem), else copy it; returns dst (a copytree copy_function)."""
    import shutil
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def swap_folder(tmp: str | Path, final: str | Path) -> None:
    """Put the finished folder `tmp` at `final`, replacing what is there (a folder, a file or a symlink,
    which is removed as a link: never followed, never left behind as a .old-* entry)."""
    import shutil
    tmp, final = Path(tmp), Path(final)
    old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
    if final.is_symlink() or final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    if old.is_symlink() or old.is_file():
        old.unlink()
    elif old.exists():
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def artifacts_lock(artifacts: str | Path, create: bool = True):
    """One writer at a time per artifacts folder (a build, a parity re-run, a device-result merge): a second
    waits. A build sweeps the temporaries of writers killed mid-way, which is only safe under this lock.
    With create=False a folder that does not exist is not made (the caller's read then says it is missing)."""
    import fcntl
    from voxc.core.errors import VoxcError
    artifacts = Path(artifacts)
    if not create and not artifacts.is_dir():
        yield
        return
    try:
        artifacts.mkdir(parents=True, exist_ok=True)
        fd = os.open(artifacts / ".voxc-build.lock", os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as exc:
        raise VoxcError(f"cannot write to the artifacts cache in {artifacts} ({exc.strerror}); pass --artifacts DIR "
                        "to a writable folder") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"voxc: another voxc process is writing to {artifacts}; waiting for it to finish", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
