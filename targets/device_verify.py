#!/usr/bin/env python3
"""verify.py -- the device bundle's entry point: check the bundle, build engines, run parity.

Shipped as <bundle>/verify.py. Needs only Python 3, numpy and the device runtime (TensorRT on a
Jetson or GPU host, coremltools on a Mac, or ONNX Runtime as the stand-in runner): no PyTorch, no
voxc install. The gates are the project's own numpy-only modules, copied into lib/.

    python3 verify.py                       # the bundle's runtime (tensorrt or coreml)
    python3 verify.py --runner onnxruntime  # stand-in: proves golden files, gates and hashes
    (an onnxruntime-cuda bundle runs on onnxruntime-gpu's CUDA or TensorRT provider: its default runner)
    python3 verify.py --rebuild             # TensorRT: rebuild engines even if cached ones match
Then, on the build host:  voxc report --target <T> --merge parity.json
Exit status: 0 all gates pass, 1 a gate failed, 2 the bundle or the device is wrong.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "lib"))

import numpy as np  # noqa: E402

from voxc.core import gates, target as schema  # noqa: E402  (shipped copies)
from voxc.core.errors import VoxcError, first_line  # noqa: E402
from voxc.core.hashing import sha256_file  # noqa: E402


FIX = "copy the bundle tarball again or rebuild it on the host"


def load_manifest() -> tuple[dict, str]:
    """(the bundle manifest, the bundle id), every listed file inside the bundle and matching its sha256."""
    if not (HERE / schema.MANIFEST).is_file():
        raise VoxcError(f"{HERE / schema.MANIFEST} is missing: this is not a complete voxc bundle")
    return schema.read_bundle(HERE, FIX)


def bundle_file(manifest: dict, rel) -> Path:
    """A file the bundle manifest names: a relative path inside the bundle, listed in its file table."""
    p = schema.inside(HERE, rel, schema.MANIFEST, FIX)
    if rel not in manifest["files"]:
        raise VoxcError(f"{rel} is not among the bundle's hashed files; {FIX}")
    return p


def judged_files(manifest: dict, art: dict, kind: str) -> list[str]:
    """The bundle files a runner of `kind` loads for one artifact: what its verdicts are about. The
    result records their sha256 and `voxc report --merge` matches them against the bundle manifest."""
    if kind == "onnxruntime":
        return [art["stand_in"]["onnx"]]
    if "package" in art:                                    # a Core ML .mlpackage folder
        return sorted(rel for rel in manifest["files"] if rel.startswith(art["package"] + "/"))
    return sorted(set(art["files"].values()))


def judged_group(manifest: dict, model: dict, art: dict, kind: str) -> list[str]:
    """Everything a group's verdicts depend on in the bundle: the files the runner loads and the golden
    inputs/outputs they are judged against."""
    return sorted(set(judged_files(manifest, art, kind)) | {model["golden"]})


def device_fingerprint(runner: str) -> dict:
    import platform
    base = {"runner": runner, "host": platform.node(), "system": platform.system(), "machine": platform.machine(),
            "python": platform.python_version(), "numpy": np.__version__}
    if runner == "tensorrt":
        from voxc.targets import trt_engine
        return {**base, **trt_engine.device_fingerprint()}
    if runner == "coreml":
        from voxc.targets.coreml_runner import CoreMLRunner
        return {**base, **CoreMLRunner.fingerprint()}
    import onnxruntime
    available = onnxruntime.get_available_providers()
    if runner == "onnxruntime-cuda":    # gpu_provider: the evidence a merge requires; a session that could not
        gpu = next((p for p in available if p != "CPUExecutionProvider"), None)      # load it is refused
        return {**base, "onnxruntime": onnxruntime.__version__, "providers": available,
                **({"gpu_provider": gpu, "gpu": nvidia_gpu()} if gpu else {})}
    from voxc.targets.ort_runner import OrtRunner
    fp = OrtRunner.fingerprint()
    return {**base, "onnxruntime": fp["version"], "providers": fp["providers"]}


def nvidia_gpu() -> str | None:
    """The GPU's name as nvidia-smi says it (None without the driver's tool)."""
    import subprocess
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0] if out else None


def tensorrt_advice(manifest: dict) -> str:
    """How to get TensorRT on the kind of device this bundle was made for (its profile says where it builds)."""
    if (manifest.get("profile") or {}).get("build_on") == "device":
        return "on a Jetson use JetPack's python3 (JetPack 6 ships TensorRT 10 and CUDA; numpy: apt install python3-numpy)"
    return ("on an x86-64 GPU host pip install tensorrt-cu12==10.13.3.9 numpy for a CUDA 12 driver, or "
            "tensorrt-cu13==10.13.3.9 for CUDA 13 (`nvidia-smi` shows the driver's CUDA version)")


def tensorrt_runner(manifest: dict, art: dict, model: dict, fp: dict, rebuild: bool, log):
    """(runner, regime, evidence): the engine is reused only when it was built on a matching device from
    the very ONNX (and calibration cache) this bundle holds; the evidence is the plan's sha256."""
    from voxc.targets import trt_engine
    if not fp.get("tensorrt"):
        raise VoxcError(f"TensorRT is not importable here ({fp.get('tensorrt_error', 'unknown')}); "
                        f"{tensorrt_advice(manifest)}, or --runner onnxruntime for the stand-in check")
    recipe = art["recipe"]
    reg = trt_engine.regime(fp["tensorrt"], recipe.get("regime", "auto"))
    plan = trt_engine.plan(art["precision"], reg, art["files"])
    source = {rel: sha256_file(bundle_file(manifest, rel)) for rel in (plan["onnx"], plan.get("calibration_cache"))
              if rel}
    engines = HERE / "engines"
    engines.mkdir(exist_ok=True)
    engine = engines / f"{model['name']}.{art['precision']}.engine"
    again = f"python3 {HERE / 'verify.py'} --runner tensorrt --rebuild"
    reuse = engine.is_file() and not rebuild
    if reuse:
        side = trt_engine.read_sidecar(engine)
        trt_engine.check_compatible(engine, side["fingerprint"], fp, again)
        if side.get("sources") != source:
            log(f"  {engine.name} was built from other ONNX than this bundle's; building it again")
            reuse = False
    if not reuse:
        t0 = time.perf_counter()
        blob = trt_engine.build_engine(HERE / plan["onnx"], {**plan, "calibration_cache": plan["calibration_cache"] and
                                                             str(HERE / plan["calibration_cache"])},
                                       art["profiles"], recipe.get("workspace_mb", 1024), recipe.get("dla_core"),
                                       engines / "timing.cache")
        trt_engine.save_engine(engine, blob, fp, {"precision": art["precision"], "regime": reg, "onnx": plan["onnx"],
                                                  "sources": source, "profiles": art["profiles"],
                                                  "inputs": model["inputs"], "rebuild": again,
                                                  "bundle": manifest["target"]})
        log(f"  built {engine.name} ({reg} typing, {len(blob) / 1e6:.1f} MB, {time.perf_counter() - t0:.0f}s)")
    runner = trt_engine.TrtRunner(trt_engine.load_engine(engine, fp, again), art["profiles"], model["inputs"])
    return runner, reg, {"engine_sha256": sha256_file(engine), "engine_sources": source}


def make_runner(kind: str, manifest: dict, art: dict, model: dict, fp: dict, rebuild: bool, log):
    """(runner, precision label, runtime label, regime, evidence) for one artifact of one model."""
    if kind == "onnxruntime":
        from voxc.targets.ort_runner import OrtRunner
        stand = art["stand_in"]
        return OrtRunner(bundle_file(manifest, stand["onnx"])), stand["precision"], "onnxruntime-standin", None, {}
    if kind != art["runtime"]:
        raise VoxcError(f"this bundle holds {art['runtime']} artifacts; use --runner {art['runtime']} or onnxruntime")
    if kind == "tensorrt":
        r, reg, evidence = tensorrt_runner(manifest, art, model, fp, rebuild, log)
        return r, art["precision"], "tensorrt", reg, evidence
    if kind == "onnxruntime-cuda":      # exactly the recorded providers; one that fails to load is an error
        from voxc.targets.ort_runner import OrtRunner
        r = OrtRunner(bundle_file(manifest, art["files"][art["precision"]]), providers=art["providers"])
        return r, art["precision"], kind, None, {}
    from voxc.targets.coreml_runner import CoreMLRunner
    package = schema.inside(HERE, art["package"], schema.MANIFEST, FIX)
    r = CoreMLRunner(package, model["inputs"], model["outputs"])
    return r, art["precision"], "coreml", None, {"compiled_sha256": r.compiled_sha256()}


def run(kind: str, out: Path, rebuild: bool, only: set[str], log=print) -> bool:
    manifest, bundle_id = load_manifest()
    budgets = schema.load_json(bundle_file(manifest, "gates.json"), "gates", FIX)
    fp = device_fingerprint(kind)
    rows: list[dict] = []
    judged: list[dict] = []
    for name, model in manifest["models"].items():
        if only and name not in only:
            continue
        with np.load(bundle_file(manifest, model["golden"]), allow_pickle=False) as z:
            golden = {k: z[k] for k in z.files}
        outputs = [(o["name"], o["kind"]) for o in model["outputs"]]
        for art in model["artifacts"]:
            runner, precision, runtime, reg, evidence = make_runner(kind, manifest, art, model, fp, rebuild, log)
            base = {"model": name, "precision": precision, "runtime": runtime}
            judged.append({**base, **evidence,
                           "files": {rel: sha256_file(HERE / rel) for rel in judged_group(manifest, model, art, kind)}})
            for i, (b, n) in enumerate(model["points"]):
                feeds = {t["name"]: golden[f"p{i}.in.{t['name']}"] for t in model["inputs"]}
                ref = {o: golden[f"p{i}.out.{o}"] for o, _ in outputs}
                point = {**base, "length": n, "batch": b, **({"regime": reg} if reg else {})}
                try:
                    got = runner.infer(feeds)
                except Exception as exc:  # noqa: BLE001 -- a runner failure is a failed gate, not a crash
                    rows.append({**point, "output": "*", "metric": "runs", "value": 0.0, "tolerance": 1.0,
                                 "passed": False, "error": f"{type(exc).__name__}: {first_line(exc)}"})
                    continue
                want = {o: list(ref[o].shape) for o, _ in outputs}
                rows += [{**point, **r} for r in gates.judge(outputs, want, ref, got, budgets[name][precision],
                                                             int(model.get("sample_rate", 16000)))]
            failed = sum(not r["passed"] for r in rows if r["model"] == name and r["precision"] == precision)
            log(f"{name:<18} {runtime:<20} {precision}: {'PASS' if not failed else f'FAIL ({failed} checks)'}")
    passed = all(r["passed"] for r in rows)
    result = {"format": 2, "target": manifest["target"], "bundle": bundle_id, "runner": kind,
              "stand_in": kind != manifest["runtime"], "device": fp, "passed": passed, "judged": judged,
              "results": rows}
    schema.write_device_result(out, result)
    log(f"voxc-bundle: parity {'PASS' if passed else 'FAIL'}: {len(rows)} checks -> {out}; on the build host run "
        f"`voxc report --target {manifest['target']} --merge {out.name}`")
    return passed


def writable(out: str) -> Path:
    """--out: a file in a folder that exists and is writable (checked before any work)."""
    path = Path(out).resolve()
    if path.is_dir():
        raise VoxcError(f"--out {out} is a folder; pass a file name such as parity.json")
    if not path.parent.is_dir():
        raise VoxcError(f"--out {out}: the folder {path.parent} does not exist; create it or pass another --out")
    if not os.access(path.parent, os.W_OK):
        raise VoxcError(f"--out {out}: the folder {path.parent} is not writable; pass another --out")
    return path


def main(argv=None) -> int:
    manifest_runtime = None
    try:
        manifest_runtime = schema.parse_json((HERE / schema.MANIFEST).read_bytes(), schema.MANIFEST, FIX)["runtime"]
    except (OSError, VoxcError, KeyError, TypeError):
        pass
    p = argparse.ArgumentParser(description="Verify a voxc device bundle on this device")
    p.add_argument("--runner", default=manifest_runtime, choices=["tensorrt", "coreml", "onnxruntime-cuda", "onnxruntime"])
    p.add_argument("--out", default=schema.PARITY, help="where to write the device parity result")
    p.add_argument("--rebuild", action="store_true", help="TensorRT: rebuild engines even if cached ones match")
    p.add_argument("--models", default="", help="comma-separated subset of the bundle's models")
    args = p.parse_args(argv)
    try:
        ok = run(args.runner, writable(args.out), args.rebuild, {m for m in args.models.split(",") if m})
    except VoxcError as exc:
        print(f"voxc-bundle: error: {exc}", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
