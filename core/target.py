"""The shipped target folder's schema, and the one module that reads or writes its JSON.

A target folder (artifacts/<T>/) holds manifest.json (what was built, every file with its role and
sha256), parity.json (every gate row, the summary, the chained parity with its accepted stream
settings) and parity.md. A device bundle holds its own manifest.json, and a device run writes a
device result (verify.py's parity.json). Every reader and writer of those files in the tree goes
through here, on the build host and on a device alike (stdlib only: this module ships in bundles).

Reading is verifying: JSON that parses (UTF-8), the required keys with their types, every listed
path relative and inside the folder after resolving (no `..`, no absolute path, no symlink anywhere
on the way), every file's sha256, and the manifest's root record (`root`: the sha256 of parity.json
and parity.md), so a changed verdict or stream setting is an altered target. The verdict must agree
with its rows, and stream settings must be usable. Each problem is one VoxcError line.
Writing is strict JSON (a non-finite number becomes null, with the reason beside it), atomic per
file; `rewrite_reports` replaces the reports and the root record together by swapping the folder.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from voxc.core.atomic import swap_folder, write_atomic
from voxc.core.errors import VoxcError
from voxc.core.hashing import sha256_bytes, sha256_file, sha256_path

MANIFEST = "manifest.json"
PARITY = "parity.json"
PARITY_MD = "parity.md"
ROOT_FILES = (PARITY, PARITY_MD)     # what the manifest's root record covers
DEFERRED = "deferred"
STATUSES = ("pass", "fail", DEFERRED)
ROLES = ("model", "weights", "package", "engine", "engine-info", "config", "reference")
ROW_KEYS = {"model": str, "runtime": str, "precision": str, "metric": str}
PORTABLE = "portable"                # the runtime label of the plain fp32 ONNX, which no backend built


def portable(entry: dict) -> bool:
    """An artifact entry of a manifest that is the plain exported ONNX (runs anywhere, built by no backend)."""
    return entry.get("runtime") == PORTABLE


# ---- the schema -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileRecord:
    """One shipped file (or package folder): where it is, its content hash and what it is for."""
    path: str
    sha256: str
    bytes: int
    role: str                       # one of ROLES
    runtime: str | None = None      # the backend that runs it; PORTABLE for the plain ONNX
    precision: str | None = None
    format: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def portable(self) -> bool:
        """The plain exported ONNX (built by no backend)."""
        return self.runtime == PORTABLE

    @property
    def runnable(self) -> bool:
        """A file a backend opens as a model (not its weights, engine notes or the reference)."""
        return self.role in ("model", "package") and self.runtime is not None and not self.portable

    def to_json(self) -> dict:
        base = {"path": self.path, "sha256": self.sha256, "bytes": self.bytes, "role": self.role}
        base.update({k: v for k, v in (("runtime", self.runtime), ("precision", self.precision),
                                       ("format", self.format)) if v is not None})
        return {**self.extra, **base}


@dataclass(frozen=True)
class ModelRecord:
    """One graph of the target: its shipped files, reference weights, config, IO and decisions."""
    name: str
    artifacts: tuple[FileRecord, ...]
    reference: FileRecord
    config: dict
    io: dict                        # inputs, outputs, dims (models/spec.py spec_from_json reads it)
    precision: dict                 # runtime -> the policy's decision
    parity: str
    weights: dict
    doc: dict                       # the full record as written (stage keys, tools, graph facts, ...)

    def runnable(self, runtime: str | None = None) -> list[FileRecord]:
        return [a for a in self.artifacts if a.runnable and (runtime is None or a.runtime == runtime)]


@dataclass(frozen=True)
class Manifest:
    target: str
    family: str | None
    preset: str
    profile: dict
    preset_config: dict
    models: dict[str, ModelRecord]
    bundle: dict | None
    device_parity: list
    doc: dict                       # the whole manifest as written

    @property
    def backends(self) -> list[str]:
        return list(self.profile.get("backends") or [])


@dataclass(frozen=True)
class StreamSettings:
    """How the last graph streams: the chunking the build's streaming gate accepted."""
    graph: str
    input: str
    output: str
    hop: int
    chunk: int
    first: int
    context: int
    min_len: int
    radius: int
    passed: bool


@dataclass(frozen=True)
class ParityReport:
    target: str
    passed: bool
    status: str
    results: list[dict]
    chain: dict | None
    doc: dict

    def streams(self) -> dict[str, StreamSettings]:
        """runtime -> the stream settings its chain recorded (validated when read)."""
        out = {}
        for rt, c in ((self.chain or {}).get("runtimes") or {}).items():
            if isinstance(c, dict) and c.get("stream"):
                out[rt] = _stream(c["stream"], f"{PARITY} chain.runtimes.{rt}.stream")
        return out


@dataclass(frozen=True)
class Shipped:
    """A verified target folder."""
    folder: Path
    manifest: Manifest
    parity: ParityReport


# ---- verdicts (one definition for host and device) -----------------------------------------------

def is_deferred(row: dict) -> bool:
    return row.get("status") == DEFERRED


def gating(rows: list[dict]) -> list[dict]:
    """Rows that decide pass/fail: not deferred to a device, not of a precision the policy rejected."""
    return [r for r in rows if not is_deferred(r) and r.get("gating", True)]


def status_of(rows: list[dict], chain_passed: bool = True) -> str:
    """'fail' if any gate failed, else 'deferred' if device checks are outstanding, else 'pass'."""
    if not chain_passed or not all(r.get("passed") is True for r in gating(rows)):
        return "fail"
    return DEFERRED if any(is_deferred(r) for r in rows) else "pass"


# ---- strict JSON ----------------------------------------------------------------------------------

def strict(obj):
    """A copy where every non-finite float is None, with `<key>_reason` beside it saying what it was."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
                out[f"{k}_reason"] = f"not finite ({v})"
            else:
                out[k] = strict(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [None if isinstance(v, float) and not math.isfinite(v) else strict(v) for v in obj]
    return obj


def dumps(obj, sort_keys: bool = False) -> str:
    """Strict JSON text (no NaN/Infinity: strict parsers reject them)."""
    return json.dumps(strict(obj), indent=1, sort_keys=sort_keys, allow_nan=False)


def _bad_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def load_json(path: Path, what: str, fix: str):
    """Parsed strict JSON of a file, or one line naming it and what to do."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise VoxcError(f"{path} is missing; {fix}") from None
    except OSError as exc:
        raise VoxcError(f"{path} is not readable ({exc.strerror}); {fix}") from None
    return parse_json(raw, path, fix)


def parse_json(raw: bytes, path, fix: str):
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_bad_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise VoxcError(f"{path} is not readable JSON ({type(exc).__name__}); {fix}") from None


# ---- checks ---------------------------------------------------------------------------------------

def _need(doc, key: str, kind, where: str, fix: str, optional: bool = False):
    if not isinstance(doc, dict):
        raise VoxcError(f"{where} is not a JSON object; {fix}")
    if key not in doc:
        if optional:
            return None
        raise VoxcError(f"{where} lacks '{key}'; {fix}")
    v = doc[key]
    ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool)) and \
        not (kind == (int, float) and isinstance(v, bool))
    if not ok and not (optional and v is None):
        raise VoxcError(f"{where}: '{key}' must be {_kind(kind)}, not {type(v).__name__}; {fix}")
    return v


def _kind(kind) -> str:
    names = {str: "a string", int: "an integer", dict: "an object", list: "a list", bool: "true or false"}
    return names.get(kind, "a number") if not isinstance(kind, tuple) else "a number"


def inside(folder: Path, rel, where: str, fix: str) -> Path:
    """folder/rel, refused unless rel is a plain relative path that stays inside folder with no
    symlink anywhere on the way (the folder itself may be one)."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        raise VoxcError(f"{where}: path {rel!r} is not a relative path; {fix}")
    p = PurePosixPath(rel)
    if p.is_absolute() or rel.startswith("~") or any(part in ("..", ".", "") for part in rel.split("/")):
        raise VoxcError(f"{where}: path {rel!r} leaves its folder (absolute or with '..'); {fix}")
    cur = Path(folder)
    for part in p.parts:
        cur = cur / part
        if cur.is_symlink():
            raise VoxcError(f"{where}: {cur} is a symlink; a target or bundle holds plain files only; {fix}")
    root = Path(folder).resolve()
    if root not in cur.resolve().parents:
        raise VoxcError(f"{where}: path {rel!r} leaves its folder once resolved; {fix}")
    if cur.is_dir():
        for q in cur.rglob("*"):
            if q.is_symlink():
                raise VoxcError(f"{where}: {q} is a symlink; a target or bundle holds plain files only; {fix}")
    return cur


def _file(folder: Path, doc, where: str, fix: str, role: str | None = None, verify: bool = True) -> FileRecord:
    path = _need(doc, "path", str, where, fix)
    digest = _need(doc, "sha256", str, where, fix)
    size = _need(doc, "bytes", int, where, fix)
    got_role = _need(doc, "role", str, where, fix, optional=True) or role
    if got_role not in ROLES:
        raise VoxcError(f"{where}: {path} has role {got_role!r}, not one of {', '.join(ROLES)}; {fix}")
    if verify:
        p = inside(folder, path, where, fix)
        if not p.exists():
            raise VoxcError(f"{p} is missing; {fix}")
        if sha256_path(p) != digest:
            raise VoxcError(f"{p} is missing or altered since the build (sha256 mismatch); {fix}")
    known = ("path", "sha256", "bytes", "role", "runtime", "precision", "format")
    return FileRecord(path, digest, size, got_role, doc.get("runtime"), doc.get("precision"), doc.get("format"),
                      {k: v for k, v in doc.items() if k not in known})


def _stream(s, where: str) -> StreamSettings:
    fix = "rebuild the target"
    vals = {k: _need(s, k, str, where, fix) for k in ("graph", "input", "output")}
    vals.update({k: _need(s, k, int, where, fix) for k in ("hop", "chunk", "first", "context", "min_len")})
    vals["radius"] = _need(s, "radius", int, where, fix, optional=True) or 0
    vals["passed"] = _need(s, "passed", bool, where, fix)
    for k in ("hop", "chunk", "first", "min_len"):
        if vals[k] < 1:
            raise VoxcError(f"{where}: {k} must be a positive number of frames, not {vals[k]}; {fix}")
    if vals["context"] < max(vals["radius"], 0) or vals["context"] < 0:
        raise VoxcError(f"{where}: context {vals['context']} is below the graph's receptive radius "
                        f"{vals['radius']}; streamed audio would differ from the whole; {fix}")
    return StreamSettings(**vals)


# ---- target folder: read ----------------------------------------------------------------------------

def is_target(folder: Path) -> bool:
    """A folder that looks like a built target (both reports present); read() verifies it."""
    return (Path(folder) / MANIFEST).is_file() and (Path(folder) / PARITY).is_file()


def _fix(folder: Path) -> str:
    return f"rebuild with `voxc build --target {Path(folder).name}`"


def manifest_of(doc, folder: Path, verify_files: bool = True) -> Manifest:
    """The typed manifest of a parsed manifest.json (every listed file checked when verify_files)."""
    fix, where = _fix(folder), f"{Path(folder) / MANIFEST}"
    if not isinstance(doc, dict) or not {"target", "models", "preset_config", "profile"} <= set(doc):
        raise VoxcError(f"{where} is not a voxc manifest (it lacks target, models, preset_config or profile); {fix}")
    target = _need(doc, "target", str, where, fix)
    models_doc = _need(doc, "models", dict, where, fix)
    profile = _need(doc, "profile", dict, where, fix)
    cfg = _need(doc, "preset_config", dict, where, fix)
    if not isinstance(profile.get("backends"), list):
        raise VoxcError(f"{where}: profile.backends must be a list; {fix}")
    models = {}
    for name, m in models_doc.items():
        w = f"{where} models.{name}"
        arts = _need(m, "artifacts", list, w, fix)
        ref = _need(m, "reference", dict, w, fix)
        _need(m, "config", dict, w, fix)
        for k in ("inputs", "outputs"):
            _need(m, k, list, w, fix)
        def read(d, ww, role=None):
            return _file(folder, d, ww, fix, role, verify_files)
        files = tuple(read(a, f"{w}.artifacts[{i}]") for i, a in enumerate(arts))
        models[name] = ModelRecord(name, files, read(ref, f"{w}.reference", "reference"), m["config"],
                                   {k: m.get(k, {}) for k in ("inputs", "outputs", "dims")},
                                   _need(m, "precision", dict, w, fix, optional=True) or {},
                                   _need(m, "parity", str, w, fix, optional=True) or "fail",
                                   _need(m, "weights", dict, w, fix, optional=True) or {}, m)
    return Manifest(target, doc.get("family"), str(doc.get("preset", "")), profile, cfg, models,
                    _need(doc, "bundle", dict, where, fix, optional=True),
                    _need(doc, "device_parity", list, where, fix, optional=True) or [], doc)


def parity_of(doc, where, fix: str) -> ParityReport:
    """The typed parity report of a parsed parity.json: rows, summary and stream settings checked."""
    rows = doc.get("results") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        raise VoxcError(f"{where} is not a voxc parity report; {fix}")
    for i, r in enumerate(rows):
        for k, kind in ROW_KEYS.items():
            _need(r, k, kind, f"{where} results[{i}]", fix)
        if "passed" not in r or not (r["passed"] is None or isinstance(r["passed"], bool)):
            raise VoxcError(f"{where} is not a voxc parity report (results[{i}] lacks a verdict); {fix}")
        if r["passed"] is None and not is_deferred(r):
            raise VoxcError(f"{where}: results[{i}] has no verdict and is not deferred to a device; {fix}")
    target = _need(doc, "target", str, where, fix)
    passed = _need(doc, "passed", bool, where, fix)
    status = _need(doc, "status", str, where, fix)
    chain = _need(doc, "chain", dict, where, fix, optional=True)
    if status not in STATUSES:
        raise VoxcError(f"{where}: status {status!r} is not one of {', '.join(STATUSES)}; {fix}")
    report = ParityReport(target, passed, status, rows, chain, doc)
    report.streams()
    truth = status_of(rows, (chain or {}).get("passed", True) is not False)
    if (passed and truth == "fail") or (status == "pass" and truth != "pass") or \
            (status == DEFERRED and truth == "fail"):
        raise VoxcError(f"{where} says {status} but its rows say {truth}; the report was altered; {fix}")
    return report


def read(folder: str | Path, verify_files: bool = True) -> Shipped:
    """A built target folder, verified (see the module docstring); one VoxcError line if it is not."""
    folder = Path(folder)
    fix = _fix(folder)
    if not (folder / MANIFEST).is_file():
        raise VoxcError(f"no build found at {folder}; run `voxc build --target {folder.name}` first")
    for name in (MANIFEST, PARITY):
        inside(folder, name, str(folder), fix)
    raw_parity = _read_bytes(folder / PARITY, f"run `voxc parity --target {folder.name}` or {fix}")
    mdoc = parse_json(_read_bytes(folder / MANIFEST, fix), folder / MANIFEST, fix)
    pdoc = parse_json(raw_parity, folder / PARITY, f"run `voxc parity --target {folder.name}` to rewrite it")
    manifest_of(mdoc, folder, verify_files=False)
    rewrite = f"run `voxc parity --target {folder.name}` to rewrite it"
    if not isinstance(pdoc, dict) or not isinstance(pdoc.get("results"), list):
        raise VoxcError(f"{folder / PARITY} is not a voxc parity report; {rewrite}")
    root = mdoc.get("root")
    if not isinstance(root, dict) or not isinstance(root.get(PARITY), str):
        raise VoxcError(f"{folder / MANIFEST} has no root record over {PARITY} (built by an older voxc, or "
                        f"altered); {fix}")
    if sha256_bytes(raw_parity) != root[PARITY]:
        raise VoxcError(f"{folder / PARITY} does not match the sha256 its manifest records: the verdict or "
                        f"stream settings were altered since the build; {fix}")
    report = parity_of(pdoc, folder / PARITY, rewrite)
    if verify_files and (folder / PARITY_MD).exists():
        inside(folder, PARITY_MD, str(folder), fix)
        if sha256_file(folder / PARITY_MD) != root.get(PARITY_MD):
            raise VoxcError(f"{folder / PARITY_MD} does not match the sha256 its manifest records; {fix}")
    manifest = manifest_of(mdoc, folder, verify_files)
    if verify_files and manifest.bundle:
        _check_bundle(folder, manifest.bundle, fix)
    return Shipped(folder, manifest, report)


def _read_bytes(path: Path, fix: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise VoxcError(f"{path} is missing; {fix}") from None
    except OSError as exc:
        raise VoxcError(f"{path} is not readable ({exc.strerror}); {fix}") from None


def _check_bundle(folder: Path, info: dict, fix: str) -> None:
    where = f"{folder / MANIFEST} bundle"
    base = inside(folder, _need(info, "path", str, where, fix), where, fix)
    if sha256_file(inside(base, MANIFEST, where, fix)) != _need(info, "id", str, where, fix):
        raise VoxcError(f"{base / MANIFEST} does not match the bundle id in {folder / MANIFEST}; {fix}")
    tarball = inside(folder, _need(info, "tarball", str, where, fix), where, fix)
    if sha256_file(tarball) != info.get("tarball_sha256"):
        raise VoxcError(f"{tarball} is altered since the build (sha256 mismatch); {fix}")


# ---- target folder: write ---------------------------------------------------------------------------

def write_reports(folder: Path, manifest: dict, parity: dict, markdown: str) -> dict:
    """parity.json, parity.md and manifest.json (with its root record over the first two) into a folder
    being assembled; returns the manifest as written."""
    folder = Path(folder)
    ptext, mdtext = dumps(parity), markdown
    write_atomic(folder / PARITY, ptext)
    write_atomic(folder / PARITY_MD, mdtext)
    doc = {**manifest, "root": {PARITY: sha256_bytes(ptext), PARITY_MD: sha256_bytes(mdtext)}}
    write_atomic(folder / MANIFEST, dumps(doc, sort_keys=True))
    return doc


def write_manifest(folder: Path, doc: dict) -> None:
    """A target manifest written as is (its root record kept): a stage adding facts about the folder."""
    write_atomic(Path(folder) / MANIFEST, dumps(doc, sort_keys=True))


def rewrite_reports(folder: Path, manifest: dict, parity: dict, markdown: str) -> None:
    """Replace a built target's reports and root record together: a copy of the folder (hard links)
    gets the new files, then is swapped in whole, so no reader ever sees one without the other."""
    folder = Path(folder)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(folder, tmp, symlinks=True, copy_function=_link,
                        ignore=lambda d, names: [n for n in names if Path(d) == folder and n in (MANIFEST,) + ROOT_FILES])
        write_reports(tmp, manifest, parity, markdown)
        swap_folder(tmp, folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise VoxcError(f"cannot rewrite the reports of {folder} ({exc.strerror}); free some space; the folder is "
                        "left as it was") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _link(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


# ---- device bundle and device results ----------------------------------------------------------------

def write_bundle_manifest(bundle: Path, doc: dict) -> str:
    """The bundle's manifest.json; returns the bundle id (its sha256)."""
    text = dumps(doc, sort_keys=True)
    (Path(bundle) / MANIFEST).write_text(text)
    return sha256_bytes(text)


def read_bundle(bundle: Path, fix: str) -> tuple[dict, str]:
    """(the bundle manifest, the bundle id) with every listed file checked inside the bundle."""
    bundle = Path(bundle)
    path = inside(bundle, MANIFEST, str(bundle), fix) if bundle.exists() else bundle / MANIFEST
    raw = _read_bytes(path, fix)
    doc = parse_json(raw, path, fix)
    files = _need(doc, "files", dict, str(path), fix)
    for key in ("target", "runtime"):
        _need(doc, key, str, str(path), fix)
    _need(doc, "models", dict, str(path), fix)
    for rel, info in sorted(files.items()):
        p = inside(bundle, rel, str(path), fix)
        if not p.is_file():
            raise VoxcError(f"{rel} is missing from the bundle; {fix}")
        if sha256_file(p) != _need(info, "sha256", str, f"{path} files.{rel}", fix):
            raise VoxcError(f"{rel} does not match its sha256 in {MANIFEST}: the bundle was altered or damaged; {fix}")
    return doc, sha256_bytes(raw)


@dataclass(frozen=True)
class DeviceResult:
    """What a device run of verify.py reports: which runner judged which files, on what, with which rows."""
    target: str
    bundle: str
    runner: str
    stand_in: bool
    device: dict
    judged: list[dict]
    results: list[dict]
    doc: dict


DEVICE_ROW = {"model": str, "precision": str, "runtime": str, "output": str, "metric": str}


def read_device_result(path: Path) -> DeviceResult:
    """A device result file with its types checked (values numbers or null, judged groups objects)."""
    fix = "pass the parity.json written by the bundle's verify.py"
    doc = load_json(path, "device result", fix)
    if not isinstance(doc, dict) or not {"target", "bundle", "runner", "results"} <= set(doc):
        raise VoxcError(f"{path} is not a voxc device parity result (needs target, bundle, runner, results)")
    rows = doc["results"]
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise VoxcError(f"{path}: 'results' must be a non-empty list of result rows; it was not written by verify.py")
    for i, r in enumerate(rows):
        missing = [k for k in (*DEVICE_ROW, "length", "batch", "value", "tolerance", "passed") if k not in r]
        if missing or not isinstance(r["passed"], bool):
            raise VoxcError(f"{path}: a result row lacks {missing or ['a boolean passed']}; it was not written by verify.py")
        w = f"{path} results[{i}]"
        for k, kind in DEVICE_ROW.items():
            _need(r, k, kind, w, fix)
        for k in ("length", "batch"):
            _need(r, k, int, w, fix)
        for k in ("value", "tolerance"):
            if r[k] is not None and (isinstance(r[k], bool) or not isinstance(r[k], (int, float))):
                raise VoxcError(f"{w}: '{k}' must be a number or null, not {type(r[k]).__name__}; {fix}")
    for k in ("target", "bundle", "runner"):
        _need(doc, k, str, str(path), fix)
    judged = doc.get("judged")
    if judged is not None:
        if not isinstance(judged, list):
            raise VoxcError(f"{path}: 'judged' must be a list of groups; {fix}")
        for i, j in enumerate(judged):
            w = f"{path} judged[{i}]"
            _need(j, "model", str, w, fix)
            _need(j, "precision", str, w, fix)
            files = _need(j, "files", dict, w, fix)
            if not all(isinstance(v, str) for v in files.values()):
                raise VoxcError(f"{w}: 'files' must map paths to sha256 strings; {fix}")
    device = doc.get("device", {})
    if not isinstance(device, dict):
        raise VoxcError(f"{path}: 'device' must be an object; {fix}")
    return DeviceResult(doc["target"], doc["bundle"], doc["runner"], doc.get("stand_in") is not False, device,
                        judged if judged is not None else None, rows, doc)


def write_device_result(path: Path, doc: dict) -> None:
    write_atomic(path, dumps(doc))
