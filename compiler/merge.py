"""`voxc report --merge DEVICE_PARITY.json`: fold a device bundle's parity result into the target report.

The device file must come from the bundle this target folder was built with (same bundle id).
Its rows replace the target's deferred rows for the same (model, runtime, precision); rows from a
stand-in runner (ONNX Runtime) are added under their own runtime label and leave the deferred rows
in place, because a stand-in proves the bundle, not the device. Merging again replaces the earlier
device rows. parity.json, parity.md and manifest.json are rewritten atomically.
"""
from __future__ import annotations

import json
from pathlib import Path

from voxc.compiler import deferred, report
from voxc.core.hashing import sha256_file
from voxc.compiler.verify import load_manifest
from voxc.core.atomic import write_atomic
from voxc.core.errors import VoxcError
from voxc.targets import backend

ROW_KEYS = ("model", "precision", "runtime", "length", "batch", "output", "metric", "value", "tolerance", "passed")


def _key(r: dict) -> tuple:
    return r["model"], r["runtime"], r["precision"]


def load_device_result(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise VoxcError(f"{path} does not exist; pass the parity.json written by the bundle's verify.py") from None
    except (OSError, ValueError) as exc:
        raise VoxcError(f"{path} is not readable JSON ({type(exc).__name__}); pass the bundle's parity.json") from None
    if not isinstance(data, dict) or not {"target", "bundle", "runner", "results"} <= set(data):
        raise VoxcError(f"{path} is not a voxc device parity result (needs target, bundle, runner, results)")
    if not isinstance(data["results"], list) or not data["results"] or not all(isinstance(r, dict) for r in data["results"]):
        raise VoxcError(f"{path}: 'results' must be a non-empty list of result rows; it was not written by verify.py")
    for r in data["results"]:
        missing = [k for k in ROW_KEYS if k not in r]
        if missing or not isinstance(r["passed"], bool):
            raise VoxcError(f"{path}: a result row lacks {missing or ['a boolean passed']}; it was not written by verify.py")
    return data


def merge(artifacts: Path, target: str, device_path: Path) -> str:
    """Merge and rewrite the reports; returns the target's new status (pass, fail or deferred)."""
    folder = artifacts / target
    manifest = load_manifest(folder)
    device = load_device_result(device_path)
    bundle = manifest.get("bundle")
    if not bundle:
        raise VoxcError(f"target {target} has no device bundle; nothing of it awaits a device")
    if device["target"] != target:
        raise VoxcError(f"{device_path} is a result for target {device['target']}, not {target}")
    if device["bundle"] != bundle["id"]:
        raise VoxcError(f"{device_path} was verified from bundle {device['bundle'][:12]}, but {folder} was built as "
                        f"bundle {bundle['id'][:12]}; copy artifacts/{target}/{bundle['tarball']} to the device and "
                        "run verify.py again")
    rows = json.loads((folder / "parity.json").read_text())["results"]
    identity = backend(bundle["runtime"]).identity
    site = {"site": "device", "device": {k: device.get("device", {}).get(k) for k in identity
                                         if device.get("device", {}).get(k)}}
    incoming = [{**r, **site} for r in device["results"]]
    covered = {_key(r) for r in incoming}
    kept = [r for r in rows
            if not (r.get("site") == "device" and _key(r) in covered)          # an earlier merge of the same groups
            and not (deferred.is_deferred(r) and _key(r) in covered)]          # deferred rows the device now answers
    merged = kept + incoming
    merges = [m for m in manifest.get("device_parity", []) if m.get("runner") != device["runner"]]
    merges.append({"file_sha256": sha256_file(Path(device_path)), "runner": device["runner"],
                   "stand_in": bool(device.get("stand_in")), "device": site["device"],
                   "passed": all(r["passed"] for r in incoming), "rows": len(incoming)})
    manifest["device_parity"] = merges
    for name, info in manifest["models"].items():
        info["parity"] = deferred.status([r for r in merged if r["model"] == name])
    report.write_parity(folder, target, merged)
    write_atomic(folder / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    return deferred.status(merged)
