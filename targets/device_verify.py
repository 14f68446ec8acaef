#!/usr/bin/env python3
"""verify.py -- the device bundle's entry point: check the bundle, build engines, run parity.

Shipped as <bundle>/verify.py. Needs only Python 3, numpy and the device runtime (TensorRT on a
Jetson or GPU host, coremltools on a Mac, or ONNX Runtime as the stand-in runner): no PyTorch, no
voxc install. The gates are the project's own numpy-only modules, copied into lib/.

    python3 verify.py                       # the bundle's runtime (tensorrt or coreml)
    python3 verify.py --runner onnxruntime  # stand-in: proves golden files, gates and hashes
    python3 verify.py --rebuild             # TensorRT: rebuild engines even if cached ones match
Then, on the build host:  voxc report --target <T> --merge parity.json
Exit status: 0 all gates pass, 1 a gate failed, 2 the bundle or the device is wrong.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "lib"))

import numpy as np  # noqa: E402

from voxc.core import gates  # noqa: E402  (shipped copies)
from voxc.core.atomic import write_atomic  # noqa: E402
from voxc.core.errors import VoxcError  # noqa: E402
from voxc.core.hashing import sha256_bytes, sha256_file  # noqa: E402


def load_manifest() -> tuple[dict, str]:
    path = HERE / "manifest.json"
    if not path.is_file():
        raise VoxcError(f"{path} is missing: this is not a complete voxc bundle")
    raw = path.read_bytes()
    return json.loads(raw), sha256_bytes(raw)


def check_files(manifest: dict) -> None:
    """Every file the manifest lists must exist with its recorded sha256 (tamper/damage detection)."""
    for rel, info in sorted(manifest["files"].items()):
        p = HERE / rel
        if not p.is_file():
            raise VoxcError(f"{rel} is missing from the bundle; copy voxc-{manifest['target']}-bundle.tar.gz again")
        if sha256_file(p) != info["sha256"]:
            raise VoxcError(f"{rel} does not match its sha256 in manifest.json: the bundle was altered or damaged; "
                            f"copy voxc-{manifest['target']}-bundle.tar.gz again or rebuild it on the host")


def judged_files(manifest: dict, art: dict, kind: str) -> list[str]:
    """The bundle files a runner of `kind` loads for one artifact: what its verdicts are about. The
    result records their sha256 and `voxc report --merge` matches them against the bundle manifest."""
    if kind == "onnxruntime":
        return [art["stand_in"]["onnx"]]
    if "package" in art:                                    # a Core ML .mlpackage folder
        return sorted(rel for rel in manifest["files"] if rel.startswith(art["package"] + "/"))
    return sorted(set(art["files"].values()))


def device_fingerprint(runner: str) -> dict:
    import platform
    base = {"runner": runner, "host": platform.node(), "system": platform.system(), "machine": platform.machine(),
            "python": platform.python_version(), "numpy": np.__version__}
    if runner == "tensorrt":
        from voxc.targets import trt_engine
        return {**base, **trt_engine.device_fingerprint()}
    if runner == "coreml":
        from voxc.targets import coreml_runner
        return {**base, **coreml_runner.fingerprint()}
    import onnxruntime
    from voxc.targets.ort_runner import providers
    return {**base, "onnxruntime": onnxruntime.__version__, "providers": providers()}


def tensorrt_runner(manifest: dict, art: dict, model: dict, fp: dict, rebuild: bool, log):
    from voxc.targets import trt_engine
    if not fp.get("tensorrt"):
        raise VoxcError(f"TensorRT is not importable here ({fp.get('tensorrt_error', 'unknown')}); "
                        "use JetPack's python3, or --runner onnxruntime for the stand-in check")
    recipe = art["recipe"]
    reg = trt_engine.regime(fp["tensorrt"], recipe.get("regime", "auto"))
    plan = trt_engine.plan(art["precision"], reg, art["files"])
    engines = HERE / "engines"
    engines.mkdir(exist_ok=True)
    engine = engines / f"{model['name']}.{art['precision']}.engine"
    again = f"python3 {HERE / 'verify.py'} --runner tensorrt --rebuild"
    if engine.is_file() and not rebuild:
        trt_engine.check_compatible(engine, trt_engine.read_sidecar(engine)["fingerprint"], fp, again)
    else:
        t0 = time.perf_counter()
        blob = trt_engine.build_engine(HERE / plan["onnx"], {**plan, "calibration_cache": plan["calibration_cache"] and
                                                             str(HERE / plan["calibration_cache"])},
                                       art["profiles"], recipe.get("workspace_mb", 1024), recipe.get("dla_core"),
                                       engines / "timing.cache")
        trt_engine.save_engine(engine, blob, fp, {"precision": art["precision"], "regime": reg, "onnx": plan["onnx"],
                                                  "profiles": art["profiles"], "inputs": model["inputs"],
                                                  "rebuild": again, "bundle": manifest["target"]})
        log(f"  built {engine.name} ({reg} typing, {len(blob) / 1e6:.1f} MB, {time.perf_counter() - t0:.0f}s)")
    return trt_engine.TrtRunner(trt_engine.load_engine(engine, fp, again), art["profiles"], model["inputs"]), reg


def make_runner(kind: str, manifest: dict, art: dict, model: dict, fp: dict, rebuild: bool, log):
    """(runner, precision label, runtime label, regime) for one artifact of one model."""
    if kind == "onnxruntime":
        from voxc.targets import ort_runner as ort_backend
        stand = art["stand_in"]
        return ort_backend.runner(HERE / stand["onnx"]), stand["precision"], "onnxruntime-standin", None
    if kind != art["runtime"]:
        raise VoxcError(f"this bundle holds {art['runtime']} artifacts; use --runner {art['runtime']} or onnxruntime")
    if kind == "tensorrt":
        r, reg = tensorrt_runner(manifest, art, model, fp, rebuild, log)
        return r, art["precision"], "tensorrt", reg
    from voxc.targets import coreml_runner
    return coreml_runner.runner(HERE / art["package"], model["inputs"], model["outputs"]), art["precision"], "coreml", None


def run(kind: str, out: Path, rebuild: bool, only: set[str], log=print) -> bool:
    manifest, bundle_id = load_manifest()
    check_files(manifest)
    budgets = json.loads((HERE / "gates.json").read_text())
    fp = device_fingerprint(kind)
    rows: list[dict] = []
    judged: list[dict] = []
    for name, model in manifest["models"].items():
        if only and name not in only:
            continue
        with np.load(HERE / model["golden"], allow_pickle=False) as z:
            golden = {k: z[k] for k in z.files}
        outputs = [(o["name"], o["kind"]) for o in model["outputs"]]
        for art in model["artifacts"]:
            runner, precision, runtime, reg = make_runner(kind, manifest, art, model, fp, rebuild, log)
            base = {"model": name, "precision": precision, "runtime": runtime}
            judged.append({**base, "files": {rel: sha256_file(HERE / rel) for rel in judged_files(manifest, art, kind)}})
            for i, (b, n) in enumerate(model["points"]):
                feeds = {t["name"]: golden[f"p{i}.in.{t['name']}"] for t in model["inputs"]}
                ref = {o: golden[f"p{i}.out.{o}"] for o, _ in outputs}
                point = {**base, "length": n, "batch": b, **({"regime": reg} if reg else {})}
                try:
                    got = runner.infer(feeds)
                except Exception as exc:  # noqa: BLE001 -- a runner failure is a failed gate, not a crash
                    rows.append({**point, "output": "*", "metric": "runs", "value": 0.0, "tolerance": 1.0,
                                 "passed": False, "error": f"{type(exc).__name__}: {str(exc).strip()[:200]}"})
                    continue
                want = {o: list(ref[o].shape) for o, _ in outputs}
                rows += [{**point, **r} for r in gates.judge(outputs, want, ref, got, budgets[name][precision])]
            failed = sum(not r["passed"] for r in rows if r["model"] == name and r["precision"] == precision)
            log(f"{name:<18} {runtime:<20} {precision}: {'PASS' if not failed else f'FAIL ({failed} checks)'}")
    passed = all(r["passed"] for r in rows)
    result = {"format": 2, "target": manifest["target"], "bundle": bundle_id, "runner": kind,
              "stand_in": kind != manifest["runtime"], "device": fp, "passed": passed, "judged": judged,
              "results": rows}
    write_atomic(out, json.dumps(result, indent=1))
    log(f"voxc-bundle: parity {'PASS' if passed else 'FAIL'}: {len(rows)} checks -> {out}; on the build host run "
        f"`voxc report --target {manifest['target']} --merge {out.name}`")
    return passed


def main(argv=None) -> int:
    manifest_runtime = None
    try:
        manifest_runtime = json.loads((HERE / "manifest.json").read_text())["runtime"]
    except (OSError, ValueError, KeyError):
        pass
    p = argparse.ArgumentParser(description="Verify a voxc device bundle on this device")
    p.add_argument("--runner", default=manifest_runtime, choices=["tensorrt", "coreml", "onnxruntime"])
    p.add_argument("--out", default="parity.json", help="where to write the device parity result")
    p.add_argument("--rebuild", action="store_true", help="TensorRT: rebuild engines even if cached ones match")
    p.add_argument("--models", default="", help="comma-separated subset of the bundle's models")
    args = p.parse_args(argv)
    try:
        ok = run(args.runner, Path(args.out).resolve(), args.rebuild, {m for m in args.models.split(",") if m})
    except VoxcError as exc:
        print(f"voxc-bundle: error: {exc}", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
