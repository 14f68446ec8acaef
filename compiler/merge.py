"""`voxc report --merge DEVICE_PARITY.json`: fold a device bundle's parity result into the target report.

The device file must come from the bundle this target folder was built with (same bundle id), and
it is proven, not believed (`prove`): every row must belong to a model, precision and sweep point the
bundle holds, carry the bundle's own budget (gates.json), and its verdict is recomputed from its
value; a group of rows must be complete (every point, output and metric); and the sha256 of every
file the device judged must match the bundle manifest. Its rows replace the target's deferred rows for the same (model, runtime, precision); rows from a
stand-in runner (ONNX Runtime) are added under their own runtime label and leave the deferred rows
in place, because a stand-in proves the bundle, not the device. Merging again replaces the earlier
device rows. parity.json, parity.md and manifest.json are rewritten atomically.
"""
from __future__ import annotations

import json
from pathlib import Path

from voxc.compiler import deferred, report
from voxc.core import metrics, perceptual
from voxc.core.hashing import sha256_bytes, sha256_file
from voxc.compiler.verify import load_manifest
from voxc.core.atomic import write_atomic
from voxc.core.errors import VoxcError
from voxc.targets import backend
from voxc.targets.base import STAND_IN
from voxc.targets.device_verify import judged_files

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


FAILURE_METRICS = ("shape", "finite", "runs")      # rows that record a failure by their kind


def _bundle(folder: Path, info: dict) -> tuple[dict, dict]:
    """The bundle manifest and gates.json in the target folder, checked against the bundle id."""
    base = folder / info.get("path", "bundle")
    try:
        raw = (base / "manifest.json").read_bytes()
        if sha256_bytes(raw) != info["id"]:
            raise VoxcError(f"{base}/manifest.json does not match the bundle id in {folder}/manifest.json; "
                            f"rebuild the target with `voxc build --target {folder.name}`")
        manifest = json.loads(raw)
        gates_raw = (base / "gates.json").read_bytes()
    except FileNotFoundError as exc:
        raise VoxcError(f"{exc.filename} is missing; rebuild the target with `voxc build --target {folder.name}`") from None
    if sha256_bytes(gates_raw) != manifest["files"]["gates.json"]["sha256"]:
        raise VoxcError(f"{base}/gates.json was altered since the build; rebuild with `voxc build --target {folder.name}`")
    return manifest, json.loads(gates_raw)


def prove(device: dict, bundle: dict, budgets: dict, path: Path) -> list[dict]:
    """The device rows with verdicts recomputed from their values; refuses any row, group or file that
    the bundle does not account for (a forged, foreign or partial result)."""
    runner = device["runner"]
    if runner not in (STAND_IN, bundle["runtime"]):
        raise VoxcError(f"{path}: runner '{runner}' cannot verify a {bundle['runtime']} bundle")
    label = f"{STAND_IN}-standin" if runner == STAND_IN else runner
    groups = {}                                      # (model, precision) -> (model entry, artifact entry)
    for name, model in bundle["models"].items():
        for art in model["artifacts"]:
            precision = art["stand_in"]["precision"] if runner == STAND_IN else art["precision"]
            groups[(name, precision)] = (model, art)
    judged = device.get("judged")
    if not isinstance(judged, list):
        raise VoxcError(f"{path} does not say which files it judged (written by an older verify.py); "
                        "run this bundle's verify.py again")
    seen = set()
    for j in judged:
        key = (j.get("model"), j.get("precision"))
        if key not in groups:
            raise VoxcError(f"{path} judged {key[0]} {key[1]}, which this bundle does not contain")
        model, art = groups[key]
        want = {rel: bundle["files"][rel]["sha256"] for rel in judged_files(bundle, art, runner)}
        if j.get("files") != want:
            raise VoxcError(f"{path}: the files judged for {key[0]} {key[1]} do not match the bundle's sha256; "
                            "it verified other artifacts than this build's -- run this bundle's verify.py again")
        seen.add(key)
    rows, covered = [], {}
    for r in device["results"]:
        key = (r["model"], r["precision"])
        if key not in groups or r["runtime"] != label:
            raise VoxcError(f"{path}: a row for {r['model']} {r['runtime']} {r['precision']}, which this bundle "
                            "does not contain; the result was not written by this bundle's verify.py")
        if key not in seen:
            raise VoxcError(f"{path}: rows for {key[0]} {key[1]} without the sha256 of the files they judged")
        model, _ = groups[key]
        kinds = {o["name"]: o["kind"] for o in model["outputs"]}
        point = [r["batch"], r["length"]]
        if point not in model["points"] or (r["output"] not in kinds and r["metric"] != "runs"):
            raise VoxcError(f"{path}: a row for {key[0]} at {r['batch']}x{r['length']} output {r['output']}, "
                            "outside the bundle's sweep")
        if r["metric"] in FAILURE_METRICS:
            passed = False
        else:
            budget = budgets[key[0]][key[1]][kinds[r["output"]]]
            if r["metric"] not in budget or r["tolerance"] != budget[r["metric"]]:
                raise VoxcError(f"{path}: {key[0]} {key[1]} {r['output']} {r['metric']} is judged against "
                                f"{r['tolerance']}, not the bundle's budget {budget.get(r['metric'])}")
            passed = bool(metrics.passes(r["metric"], r["value"], r["tolerance"]))
        if passed != r["passed"]:
            raise VoxcError(f"{path}: {key[0]} {key[1]} {r['output']} {r['metric']} {r['value']} against "
                            f"{r['tolerance']} {'passes' if passed else 'fails'}, but the row says otherwise; "
                            "the result was altered")
        covered.setdefault(key, {}).setdefault(tuple(point), set()).add((r["output"], r["metric"]))
        rows.append(r)
    for key in seen:
        model, _ = groups[key]
        for point in model["points"]:
            got = covered.get(key, {}).get(tuple(point), set())
            if any(m in FAILURE_METRICS for _, m in got):
                continue
            for o in model["outputs"]:
                need = {(o["name"], m) for m in budgets[key[0]][key[1]][o["kind"]]   # perceptual: not on short items
                        if m not in perceptual.METRICS}
                if not need <= got and not any(n == o["name"] and m in FAILURE_METRICS for n, m in got):
                    raise VoxcError(f"{path} is incomplete: {key[0]} {key[1]} lacks {o['name']} checks at "
                                    f"{point[0]}x{point[1]}; run this bundle's verify.py again")
    return rows


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
    bundle_manifest, budgets = _bundle(folder, bundle)
    proven = prove(device, bundle_manifest, budgets, Path(device_path))
    rows = json.loads((folder / "parity.json").read_text())["results"]
    identity = backend(bundle["runtime"]).identity
    site = {"site": "device", "device": {k: device.get("device", {}).get(k) for k in identity
                                         if device.get("device", {}).get(k)}}
    incoming = [{**r, **site} for r in proven]
    covered = {_key(r) for r in incoming}
    kept = [r for r in rows
            if not (r.get("site") == "device" and _key(r) in covered)          # an earlier merge of the same groups
            and not (deferred.is_deferred(r) and _key(r) in covered)]          # deferred rows the device now answers
    merged = kept + incoming
    merges = [m for m in manifest.get("device_parity", []) if m.get("runner") != device["runner"]]
    merges.append({"file_sha256": sha256_file(Path(device_path)), "runner": device["runner"],
                   "stand_in": bool(device.get("stand_in")), "device": site["device"],
                   "passed": all(r["passed"] for r in incoming), "rows": len(incoming),
                   "judged": device["judged"]})
    manifest["device_parity"] = merges
    for name, info in manifest["models"].items():
        info["parity"] = deferred.status([r for r in merged if r["model"] == name])
    report.write_parity(folder, target, merged)
    write_atomic(folder / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    return deferred.status(merged)
