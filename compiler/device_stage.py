"""Device parity as a build stage: the bundle's verifier run on a device node, merged into parity.json.

With `voxc build --executor ray` and a live node advertising the target's device resource or labels
(the profile's [ray] table: jetson, cuda, macos), the build adds `target/device` after
`target/bundle` and Ray runs it on such a node. There it copies the bundle out of the cache, runs the
bundle's own verify.py (targets/device_verify.py: file hashes, TensorRT engine builds, parity over the
golden sweep) with the node's runner, and folds the result into the target's parity.json, parity.md
and manifest.json by the same proof as `voxc report --merge` (compiler/merge.py). The raw result is
kept as device-parity.json, built engines under engines/. Rows of the ONNX Runtime stand-in
(`--device-runner onnxruntime`) are labelled onnxruntime-standin and leave the deferred rows in place,
exactly as a manual merge does: a stand-in proves the bundle, not the device. Without such a node the
build is what it was: deferred rows and a bundle to carry over by hand.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from voxc.compiler.plan import DeviceParams
from voxc.core import target as schema
from voxc.core.errors import VoxcError

TIMEOUT_S = 3600        # engine builds on a Jetson take minutes per graph


def placement(profile: dict, runtime: str) -> dict:
    """{"resources": ..., "labels": ...} a node needs to run this target's device stage."""
    from voxc.targets import backend
    ray = profile.get("ray", {})
    resources = dict(ray.get("resources") or backend(runtime).resources)
    return {"resources": resources, "labels": dict(ray.get("labels") or {})}


def device_stage(out: Path, params: DeviceParams, inputs: dict) -> dict:
    from voxc.compiler import cache, graph
    from voxc.compiler.merge import merge
    bundle_out, assemble = Path(inputs["bundle"]), Path(inputs["assemble"])
    info = graph.read_record(bundle_out).get("bundle")
    if not info:                                          # nothing was deferred: nothing to verify
        return {"device": None}
    target, runner = params.target, params.runner
    with tempfile.TemporaryDirectory(prefix="voxc-device-") as tmp:
        folder = Path(tmp) / target
        shutil.copytree(assemble, folder, ignore=shutil.ignore_patterns(graph.META, cache.SEEN))
        shutil.copytree(bundle_out / "bundle", folder / "bundle")
        for name in (info.get("tarball"), schema.MANIFEST):
            shutil.copyfile(bundle_out / name, folder / name)
        result = Path(tmp) / "device-parity.json"
        proc = subprocess.run([sys.executable, "verify.py", "--runner", runner, "--out", str(result)],
                              cwd=folder / "bundle", capture_output=True, text=True, timeout=TIMEOUT_S)
        if proc.returncode not in (0, 1) or not result.is_file():
            last = (proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}").splitlines()[-1]
            raise VoxcError(f"the {target} bundle's verify.py --runner {runner} failed on this node: {last[:300]}")
        status = merge(Path(tmp), target, result)
        for name in (schema.MANIFEST,) + schema.ROOT_FILES:
            shutil.copyfile(folder / name, out / name)
        shutil.copyfile(result, out / "device-parity.json")
        if (folder / "bundle" / "engines").is_dir():
            shutil.copytree(folder / "bundle" / "engines", out / "engines")
    doc = schema.read_device_result(out / "device-parity.json")
    return {"device": {"runner": runner, "stand_in": doc.runner != runner or doc.stand_in, "status": status,
                       "rows": len(doc.results), "host": doc.device.get("host"),
                       "node": _ray_node()}}


def _ray_node() -> str | None:
    """The Ray node this ran on (its record only: never in a shipped file)."""
    if "ray" not in sys.modules:
        return None
    import ray
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
