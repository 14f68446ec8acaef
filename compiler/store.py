"""The shared content-addressed store a distributed build's nodes read inputs from and write outputs to.

A store holds the same entries as artifacts/cache/ -- <key>/ with stage.json listing every file's
sha256 -- and plain input files (checkpoints) by content. Two kinds:

    /shared/voxc-cache      a folder on a filesystem every node mounts (NFS, a cluster volume). It is
                            the build's cache itself: a worker runs the stage into a temporary folder
                            there and renames it into place last (compiler/graph.py), so no node ever
                            sees a partial entry.
    file:///path/bucket     an object store: whole objects, put and got by name, no folders, no rename.
                            Here a local folder stands in for the bucket (FileBucket).

The object-store contract (what an S3, GCS or Azure bucket class must provide; `open_store` maps a URI
scheme to it):

    get(name) -> bytes | None   the object, or None when there is none
    put(name, data)             writes one object; a reader sees all of it or nothing (S3 PUT is)
    exists(name) -> bool

An entry is two objects: entries/<key>.tar (the folder) first, then entries/<key>.json (its
stage.json) last. The .json is the commit: an entry without one is invisible, so a worker killed
while uploading leaves nothing any build trusts. Whoever reads an entry unpacks it into its own local
cache and verifies every file against the sha256 in stage.json before using it. Input files go to
files/<sha256>/<name>. Keys are content hashes, so two nodes racing on one key write equal bytes.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import uuid
from pathlib import Path

from voxc.compiler import cache as cache_mod
from voxc.core.atomic import write_atomic
from voxc.core.errors import VoxcError
from voxc.core.hashing import sha256_bytes, sha256_file

META = cache_mod.META


def scratch() -> Path:
    """A node's own local cache for entries fetched from an object store."""
    return Path(os.environ.get("VOXC_SCRATCH") or Path(tempfile.gettempdir()) / "voxc-scratch")


def open_store(uri: str, local: Path | None = None):
    """The store named by a --store value; `local` is this process's own cache (object stores only)."""
    if uri.startswith("file://"):
        return ObjectStore(FileBucket(Path(uri[len("file://"):])), Path(local or scratch()), uri)
    if "://" in uri:
        raise VoxcError(f"--store {uri}: no store for the scheme '{uri.split('://')[0]}'; use a shared folder "
                        "or file:///PATH (compiler/store.py says how to add one)")
    return DirStore(Path(uri))


class DirStore:
    """A cache folder on a shared filesystem: the workers' cache and the driver's are the same folder."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.uri = str(self.root)

    def cache_dir(self) -> Path:
        return self.root

    def open(self, key: str) -> Path | None:
        entry = self.root / key
        return entry if (entry / META).is_file() and cache_mod.problem(entry) is None else None

    def publish(self, key: str, entry: Path) -> None:
        pass                                    # the rename into self.root was the publication

    def put_file(self, path: Path) -> str:
        ref = f"{sha256_file(path)}/{Path(path).name}"
        dest = self.root / "files" / ref
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(dest, Path(path).read_bytes())
        return ref

    def get_file(self, ref: str) -> Path:
        return self.root / "files" / ref


class FileBucket:
    """A local folder with the object-store contract (stands in for a bucket)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def get(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, name: str, data: bytes) -> None:
        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.root / name, data)

    def exists(self, name: str) -> bool:
        return (self.root / name).is_file()


class ObjectStore:
    """Entries as objects in a bucket, each node unpacking what it uses into its own local cache."""

    def __init__(self, bucket, local: Path, uri: str):
        self.bucket, self.local, self.uri = bucket, Path(local), uri

    def cache_dir(self) -> Path:
        return self.local

    def open(self, key: str) -> Path | None:
        entry = self.local / key
        if (entry / META).is_file() and cache_mod.problem(entry) is None:
            return entry
        meta = self.bucket.get(f"entries/{key}.json")
        blob = self.bucket.get(f"entries/{key}.tar") if meta is not None else None
        if blob is None:
            return None
        self.local.mkdir(parents=True, exist_ok=True)
        tmp = self.local / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        try:
            with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
                tar.extractall(tmp, filter="data")
            (tmp / META).write_bytes(meta)
            bad = cache_mod.problem(tmp)
            if bad or json.loads(meta).get("key") != key:
                raise VoxcError(f"store entry {key} in {self.uri} is damaged ({bad or 'another key'}); remove "
                                f"entries/{key}.json there and build again")
            if entry.exists():
                cache_mod.move_aside(self.local, key)
            try:
                os.rename(tmp, entry)
            except OSError:                  # another process of this node unpacked it first
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return entry

    def publish(self, key: str, entry: Path) -> None:
        if self.bucket.exists(f"entries/{key}.json"):
            return
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for p in sorted(entry.rglob("*")):
                if p.name not in (META, cache_mod.SEEN):
                    tar.add(p, arcname=str(p.relative_to(entry)), recursive=False)
        self.bucket.put(f"entries/{key}.tar", buf.getvalue())
        self.bucket.put(f"entries/{key}.json", (entry / META).read_bytes())      # the commit, last

    def put_file(self, path: Path) -> str:
        data = Path(path).read_bytes()
        ref = f"{sha256_bytes(data)}/{Path(path).name}"
        if not self.bucket.exists(f"files/{ref}"):
            self.bucket.put(f"files/{ref}", data)
        return ref

    def get_file(self, ref: str) -> Path:
        dest = self.local / "files" / ref
        if not dest.is_file():
            data = self.bucket.get(f"files/{ref}")
            if data is None or sha256_bytes(data) != ref.split("/")[0]:
                raise VoxcError(f"input file {ref} is missing or damaged in the store {self.uri}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(dest, data)
        return dest
