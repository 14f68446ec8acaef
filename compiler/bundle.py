"""Device bundles: what a Jetson, GPU host or Mac needs to build and verify a target's artifacts.

After a build whose profile says parity_on = "device", artifacts/<T>/bundle/ is assembled in a
temporary folder and renamed into place, then packed as artifacts/<T>/voxc-<T>-bundle.tar.gz:

    manifest.json   target, runtime, every model's IO, sweep points and artifacts; sha256 of every file
    gates.json      parity budgets per model and precision (the metrics themselves are in lib/)
    verify.py       the entry point (compiler/bundle_verify.py): hashes, engine builds, parity.json
    lib/            copies of the project's numpy-only modules: gates, metrics, split, trt_engine, ...
    models/<m>/     the host-validated ONNX (and .mlpackage), golden.npz (PyTorch inputs/outputs)
    README.md       the on-device steps

The bundle id is the sha256 of its manifest.json; the target manifest records it, and
`voxc report --merge` accepts only device results carrying that id.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import tarfile
import uuid
from pathlib import Path

from compiler import report
from compiler.graph import sha256_file
from models.errors import VoxcError
from models.registry import model_spec

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ROOT / "compiler" / "bundle_verify.py"
LOCAL_PACKAGES = ("compiler", "models", "targets", "calibration")
SHIPPED = {"common": ["compiler/gates.py", "targets/split.py", "targets/ort_runner.py"],
           "tensorrt": ["targets/trt_engine.py"], "coreml": ["targets/coreml_runner.py"]}
FORBIDDEN = ("torch", "onnx", "onnxscript", "onnxsim", "onnxslim", "safetensors", "scipy")


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(project-local module files, third-party top-level names) imported anywhere in a file."""
    local, other = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            top = n.split(".")[0]
            if top in LOCAL_PACKAGES:
                f = ROOT / (n.replace(".", "/") + ".py")
                if f.is_file():
                    local.add(str(f.relative_to(ROOT)))
            elif top not in ("__future__",):
                other.add(top)
    return local, other


def shipped_modules(runtime: str) -> list[str]:
    """The project files the verifier needs (with their project-local imports), checked torch-free."""
    todo = list(SHIPPED["common"] + SHIPPED.get(runtime, []))
    done: set[str] = set()
    while todo:
        rel = todo.pop()
        if rel in done:
            continue
        done.add(rel)
        local, other = _imports(ROOT / rel)
        bad = sorted(set(other) & set(FORBIDDEN))
        if bad:
            raise VoxcError(f"{rel} imports {', '.join(bad)} at module level or inside; the device bundle must run "
                            "with numpy and the device runtime only")
        todo += sorted(local - done)
    packages = {f"{Path(r).parts[0]}/__init__.py" for r in done}
    return sorted(done | packages)


def _device_artifacts(profile: dict) -> list[str]:
    from targets import backend
    return [b for b in profile["backends"] if getattr(backend(b), "PARITY", "host") == "device"]


def after_build(folder: Path, req, profile: dict, chains: dict, results: dict) -> Path | None:
    """Write the bundle when some parity of this target is deferred to a device; say so in one line."""
    parity = json.loads((folder / "parity.json").read_text())
    reasons = sorted({r.get("reason", "") for r in parity["results"] if r.get("status") == "deferred"})
    if not reasons:
        return None
    for reason in reasons:
        print(f"voxc: parity deferred: {reason}", flush=True)
    runtimes = _device_artifacts(profile)
    if len(runtimes) != 1:
        raise VoxcError(f"target {req.target} defers parity for backends {runtimes}; a bundle holds exactly one")
    path = write(folder, req, profile, chains, results, runtimes[0])
    info = json.loads((folder / "manifest.json").read_text())["bundle"]
    print(f"voxc: device bundle {path} ({info['files']} files, {info['bytes'] / 1e6:.1f} MB unpacked, tarball "
          f"{info['tarball_bytes'] / 1e6:.1f} MB); on the device: python3 verify.py, then "
          f"voxc report --target {req.target} --merge parity.json", flush=True)
    return path


def write(folder: Path, req, profile: dict, chains: dict, results: dict, runtime: str) -> Path:
    tmp = folder / f".bundle-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files: dict[str, dict] = {}
        by_hash: dict[str, str] = {}

        def put(src: Path, rel: str) -> str:
            """Copy one file in (identical content is stored once) and return its bundle path."""
            digest = sha256_file(src)
            if digest in by_hash:
                return by_hash[digest]
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            files[rel] = {"sha256": digest, "bytes": dst.stat().st_size}
            by_hash[digest] = rel
            return rel

        def put_tree(src: Path, rel: str) -> str:
            for f in sorted(p for p in src.rglob("*") if p.is_file()):
                dst = tmp / rel / f.relative_to(src)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dst)
                files[str(Path(rel) / f.relative_to(src))] = {"sha256": sha256_file(dst), "bytes": dst.stat().st_size}
            return rel

        models, budgets = {}, {}
        for name, chain in chains.items():
            spec = model_spec(name, chain["config"])
            arts = [a for a in chain["artifacts"] if a["runtime"] == runtime]
            if not arts:
                continue
            source = put(folder / name / f"{name}.onnx", f"models/{name}/{name}.onnx")
            golden = put(results[arts[0]["parity"]].path / "golden.npz", f"models/{name}/golden.npz")
            entries = []
            for a in arts:
                rec = results[a["artifact"]].record
                art_path = folder / report.artifact_path(name, runtime, a["precision"], rec["file"])
                entry = {"runtime": runtime, "precision": a["precision"]}
                if runtime == "tensorrt":
                    onnx = put(art_path, f"models/{name}/{art_path.name}")
                    entry.update(files={"fp32": source, a["precision"]: onnx}, profiles=rec["profiles"],
                                 recipe=rec["recipe"], stand_in={"onnx": onnx, "precision": a["precision"]})
                else:
                    entry.update(package=put_tree(art_path, f"models/{name}/{art_path.name}"),
                                 stand_in={"onnx": source, "precision": "fp32"}, shape_mode=rec.get("shape_mode"),
                                 ops_total=rec.get("ops_total"))
                entries.append(entry)
            precisions = {a["precision"] for a in arts} | {"fp32"}
            budgets[name] = {p: {t.kind: spec.budget(p, t.kind) for t in spec.outputs} for p in sorted(precisions)}
            j = spec.to_json()
            models[name] = {"name": name, "inputs": j["inputs"], "outputs": j["outputs"], "dims": j["dims"],
                            "points": [list(p) for p in spec.sweep()], "golden": golden, "artifacts": entries}
        (tmp / "gates.json").write_text(json.dumps(budgets, indent=1, sort_keys=True))
        files["gates.json"] = {"sha256": sha256_file(tmp / "gates.json"), "bytes": (tmp / "gates.json").stat().st_size}
        for rel in shipped_modules(runtime):
            put(ROOT / rel, f"lib/{rel}") if (ROOT / rel).stat().st_size else _empty(tmp, files, f"lib/{rel}")
        shutil.copy2(ENTRY, tmp / "verify.py")
        files["verify.py"] = {"sha256": sha256_file(tmp / "verify.py"), "bytes": (tmp / "verify.py").stat().st_size}
        (tmp / "README.md").write_text(_readme(req.target, runtime))
        files["README.md"] = {"sha256": sha256_file(tmp / "README.md"), "bytes": (tmp / "README.md").stat().st_size}
        manifest = {"format": 1, "target": req.target, "runtime": runtime, "voxc_version": report.VOXC_VERSION,
                    "preset": req.preset_name, "profile": {k: profile.get(k) for k in ("description", "build_on", "options")},
                    "target_manifest_sha256": sha256_file(folder / "manifest.json"), "models": models,
                    "files": dict(sorted(files.items()))}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        bundle_id = sha256_file(tmp / "manifest.json")
        final, tarball = folder / "bundle", folder / f"voxc-{req.target}-bundle.tar.gz"
        tar_tmp = folder / f".{tarball.name}.{uuid.uuid4().hex[:6]}.tmp"
        with tarfile.open(tar_tmp, "w:gz") as tar:
            tar.add(tmp, arcname=f"voxc-{req.target}-bundle")
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        os.replace(tar_tmp, tarball)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for t in folder.glob(".voxc-*-bundle.tar.gz.*.tmp"):
            t.unlink(missing_ok=True)
        raise
    target_manifest = json.loads((folder / "manifest.json").read_text())
    target_manifest["bundle"] = {"id": bundle_id, "path": "bundle", "runtime": runtime, "tarball": tarball.name,
                                 "tarball_sha256": sha256_file(tarball), "tarball_bytes": tarball.stat().st_size,
                                 "files": len(files) + 1, "bytes": sum(f["bytes"] for f in files.values())}
    report.write_atomic(folder / "manifest.json", json.dumps(target_manifest, indent=1, sort_keys=True))
    return final


def _empty(tmp: Path, files: dict, rel: str) -> None:
    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp / rel).write_text("")
    files[rel] = {"sha256": sha256_file(tmp / rel), "bytes": 0}


def _readme(target: str, runtime: str) -> str:
    device = {"tensorrt": "the Jetson (JetPack's python3 has TensorRT and numpy) or the GPU host",
              "coreml": "a Mac (python3 -m pip install numpy coremltools)"}[runtime]
    return f"""# voxc device bundle: target `{target}` ({runtime})

Host-validated artifacts, golden inputs/outputs from the PyTorch reference over each model's
length sweep, the parity gates, and a verifier that needs only Python 3, numpy and {runtime}.

On {device}:

    tar xzf voxc-{target}-bundle.tar.gz && cd voxc-{target}-bundle
    python3 verify.py                 # checks every file's sha256, {'builds the engines (engines/), ' if runtime == 'tensorrt' else ''}runs parity
    # -> parity.json (exit 0 pass, 1 a gate failed, 2 bundle/device problem)

Copy parity.json back to the build host and fold it into the target's report:

    voxc report --target {target} --merge parity.json

`python3 verify.py --runner onnxruntime` runs the same gates with ONNX Runtime (a stand-in that
proves the bundle is intact; it does not replace the {runtime} result).
{'''
TensorRT: `--rebuild` rebuilds engines; an engine whose recorded fingerprint (TensorRT version, GPU,
compute capability, L4T) differs from this device is refused before deserialization, naming the
difference. Inputs longer than a profile's max must be split by the caller (lib/targets/split.py).
''' if runtime == 'tensorrt' else ''}"""
