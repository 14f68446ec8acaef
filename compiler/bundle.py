"""Device bundles: what a Jetson, GPU host or Mac needs to build and verify a target's artifacts.

The bundle stage of a target whose backend runs parity on a device writes bundle/ and its tarball
voxc-<T>-bundle.tar.gz into the cache; the build places them in artifacts/<T>/:

    manifest.json   target, runtime, every model's IO, sweep points and artifacts; sha256 of every file
    gates.json      parity budgets per model and precision (the metrics themselves are in lib/)
    verify.py       the entry point (targets/device_verify.py): hashes, engine builds, parity.json
    lib/voxc/       copies of the project's numpy-only modules: core (gates, metrics), the runners, split, ...
    models/<m>/     the host-validated ONNX (and .mlpackage), golden.npz (PyTorch inputs/outputs)
    README.md       the on-device steps

The bundle id is the sha256 of its manifest.json; the target manifest records it, and
`voxc report --merge` accepts only device results carrying that id.
"""
from __future__ import annotations

import ast
import gzip
import shutil
import tarfile
from pathlib import Path

from voxc.compiler import report
from voxc.compiler.plan import BundleParams, GraphPlan, TargetInfo
from voxc.core import target as schema
from voxc.core.errors import VoxcError
from voxc.core.hashing import sha256_file
from voxc.core.sources import closure, module_file
from voxc.models.family import model_spec
from voxc.targets import backend
from voxc.targets.base import STAND_IN

COMMON = ("voxc.core.gates", "voxc.targets.split", "voxc.targets.ort_runner")
ENTRY = "voxc.targets.device_verify"
FORBIDDEN = ("torch", "onnx", "onnxscript", "onnxsim", "onnxslim", "safetensors", "scipy")


def _third_party(name: str) -> set[str]:
    """Top-level non-voxc packages a module imports anywhere in its text."""
    other = set()
    for node in ast.walk(ast.parse(module_file(name).read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        other |= {n.split(".")[0] for n in names if n.split(".")[0] not in ("voxc", "__future__")}
    return other


def shipped_modules(runtime: str) -> list[str]:
    """Bundle paths (voxc/...) of the modules the verifier needs, with their voxc imports, checked torch-free."""
    mods = closure(COMMON + backend(runtime).shipped + (ENTRY,))
    for m in mods:
        bad = sorted(_third_party(m) & set(FORBIDDEN))
        if bad:
            raise VoxcError(f"{m} imports {', '.join(bad)} at module level or inside; the device bundle must run "
                            "with numpy and the device runtime only")
    return [m for m in mods if m != ENTRY]


def bundle_path(module: str) -> str:
    """lib/ path of a shipped module: voxc/core/gates.py, voxc/__init__.py, ..."""
    f = module_file(module)
    return "/".join(module.split(".")) + ("/__init__.py" if f.name == "__init__.py" else ".py")


def announce(shipped: schema.Shipped, target: str) -> bool:
    """Say which parity is deferred and where the bundle is; True when some parity waits for a device."""
    folder = shipped.folder
    reasons = sorted({r.get("reason", "") for r in shipped.parity.results if schema.is_deferred(r)})
    for reason in reasons:
        print(f"voxc: parity deferred: {reason}", flush=True)
    info = shipped.manifest.bundle
    if info:
        print(f"voxc: device bundle {folder / 'bundle'} ({info['files']} files, {info['bytes'] / 1e6:.1f} MB unpacked, "
              f"tarball {info['tarball_bytes'] / 1e6:.1f} MB); on the device: python3 verify.py, then "
              f"voxc report --target {target} --merge parity.json", flush=True)
    return bool(reasons)


def bundle_stage(out: Path, params: BundleParams, inputs: dict) -> dict | None:
    """The device bundle of a target whose parity is deferred, with the target manifest recording it."""
    from voxc.compiler.graph import Result, read_record
    results = {label: Result(label, "", Path(p), read_record(p), True, 0.0) for label, p in inputs.items()}
    folder = Path(inputs[params.assemble])
    shipped = schema.read(folder, verify_files=False)       # a verified cache entry
    if not any(schema.is_deferred(r) for r in shipped.parity.results):
        return {"bundle": None}
    info = write(out, shipped, params.info, params.graphs, results, params.runtime)
    return {"bundle": info}


def write(out: Path, built: schema.Shipped, info: TargetInfo, graphs: dict[str, GraphPlan], results: dict,
          runtime: str) -> dict:
    """bundle/ and its tarball into out/, plus the target's manifest with the bundle's id."""
    folder = built.folder
    target = info.target
    be = backend(runtime)
    tmp = out / "bundle"
    tmp.mkdir()
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
    for name, gp in graphs.items():
        spec = model_spec(name, gp.config)
        arts = [a for a in gp.rungs.get(runtime, {}).values() if results[a.artifact].record.get("file")]
        if not arts:
            continue
        source = put(folder / name / f"{name}.onnx", f"models/{name}/{name}.onnx")
        golden = put(results[arts[0].parity].path / "golden.npz", f"models/{name}/golden.npz")
        entries = []
        for a in arts:
            rec = results[a.artifact].record
            art_path = folder / report.artifact_path(name, runtime, a.precision, rec["file"])
            entries.append({"runtime": runtime, "precision": a.precision,
                            **be.bundle_entry(name, art_path, rec, a.precision, source, put, put_tree)})
        precisions = {a.precision for a in arts} | {"fp32"}
        budgets[name] = {p: {t.kind: spec.budget(p, t.kind) for t in spec.outputs} for p in sorted(precisions)}
        j = spec.to_json()
        models[name] = {"name": name, "inputs": j["inputs"], "outputs": j["outputs"], "dims": j["dims"],
                        "sample_rate": spec.sample_rate,
                        "points": [list(p) for p in spec.sweep()], "golden": golden, "artifacts": entries,
                        "perceptual_points": _perceptual_points(tmp / golden, spec)}

    def put_text(rel: str, text: str) -> None:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
        files[rel] = {"sha256": sha256_file(tmp / rel), "bytes": (tmp / rel).stat().st_size}
    put_text("gates.json", schema.dumps(budgets, sort_keys=True))
    shipped = [bundle_path(m) for m in shipped_modules(runtime)]
    for m in shipped_modules(runtime):
        if not bundle_path(m).endswith("__init__.py"):
            put(module_file(m), f"lib/{bundle_path(m)}")
    for package in sorted({str(Path(p).parent) for p in shipped} | {"voxc"}):   # bare package markers
        for i in range(1, len(Path(package).parts) + 1):
            rel = f"lib/{Path(*Path(package).parts[:i])}/__init__.py"
            if rel not in files:
                put_text(rel, "")
    put_text("verify.py", module_file(ENTRY).read_text())
    put_text("README.md", _readme(target, be))
    manifest = {"format": 1, "target": target, "runtime": runtime, "voxc_version": report.VOXC_VERSION,
                "preset": info.preset_name,
                "profile": {k: info.profile.get(k) for k in ("description", "build_on", "options")},
                "target_manifest_sha256": sha256_file(folder / schema.MANIFEST), "models": models,
                "files": dict(sorted(files.items()))}
    bundle_id = schema.write_bundle_manifest(tmp, manifest)
    tarball = out / f"voxc-{target}-bundle.tar.gz"
    with open(tarball, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:          # no clocks or owners: equal builds, equal bytes
        tar.add(tmp, arcname=f"voxc-{target}-bundle", filter=_plain)
    bundle = {"id": bundle_id, "path": "bundle", "runtime": runtime, "tarball": tarball.name,
              "tarball_sha256": sha256_file(tarball), "tarball_bytes": tarball.stat().st_size,
              "files": len(files) + 1, "bytes": sum(f["bytes"] for f in files.values())}
    schema.write_manifest(out, {**built.manifest.doc, "bundle": bundle})
    return bundle


def _perceptual_points(golden: Path, spec) -> dict[str, list[bool]]:
    """Per output and sweep point: whether the reference is long enough for the perceptual metrics (where
    a gated perceptual metric must have a device row)."""
    import numpy as np

    from voxc.compiler.deferred import golden_key
    from voxc.core.perceptual import long_enough
    with np.load(golden, allow_pickle=False) as z:
        return {t.name: [bool(long_enough(z[golden_key(i, "out", t.name)], spec.sample_rate)) for i in range(len(spec.sweep()))]
                for t in spec.outputs}


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def _empty(tmp: Path, files: dict, rel: str) -> None:
    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp / rel).write_text("")
    files[rel] = {"sha256": sha256_file(tmp / rel), "bytes": 0}


def _readme(target: str, be) -> str:
    runtime = be.name
    return f"""# voxc device bundle: target `{target}` ({runtime})

Host-validated artifacts, golden inputs/outputs from the PyTorch reference over each model's
length sweep, the parity gates, and a verifier that needs only Python 3, numpy and {runtime}.

On {be.device}:

    tar xzf voxc-{target}-bundle.tar.gz && cd voxc-{target}-bundle
    python3 verify.py                 # checks every file's sha256, {be.verify_steps}runs parity
    # -> parity.json (exit 0 pass, 1 a gate failed, 2 bundle/device problem)

Copy parity.json back to the build host and fold it into the target's report:

    voxc report --target {target} --merge parity.json

`python3 verify.py --runner {STAND_IN}` runs the same gates with the stand-in runtime (it proves
the bundle is intact; it does not replace the {runtime} result).
{be.bundle_notes}"""
