"""`voxc report --merge DEVICE_PARITY.json`: fold a device bundle's parity result into the target report.

The device file must come from the bundle this target folder was built with (same bundle id), and
it is proven, not believed (`prove`): every row must belong to a model, precision and sweep point the
bundle holds, carry the bundle's own budget (gates.json), and its verdict is recomputed from its
value; a group of rows must be complete (every point, output and gated metric, perceptual ones
included) with no row twice; the sha256 of every file the device judged (and the golden file) must
match the bundle manifest; and a device runner must leave its own evidence (backend.evidence_*: for
TensorRT the engine plans' sha256 with TensorRT version, GPU and compute capability). The proven
result is stored under artifacts/device-results/<T>/ and is an input of the next builds
(`merged_stage`), so a no-op rebuild keeps its rows. Its rows replace the target's deferred rows for the same (model, runtime, precision); rows from a
stand-in runner (ONNX Runtime) are added under their own runtime label and leave the deferred rows
in place, because a stand-in proves the bundle, not the device. Merging again replaces the earlier
device rows. The reports and the manifest's root record are replaced together (core/target.py).
"""
from __future__ import annotations

from pathlib import Path

from voxc.compiler import deferred, report
from voxc.compiler.plan import MergedParams
from voxc.core import metrics, perceptual, target as schema
from voxc.core.atomic import artifacts_lock, write_atomic
from voxc.core.errors import VoxcError
from voxc.core.hashing import sha256_bytes, sha256_file
from voxc.targets import backend
from voxc.targets.base import STAND_IN
from voxc.targets.device_verify import judged_group

ROW_KEYS = ("model", "precision", "runtime", "length", "batch", "output", "metric", "value", "tolerance", "passed")
FAILURE_METRICS = ("shape", "finite", "runs")      # rows that record a failure by their kind
RESULTS = "device-results"                         # artifacts/<RESULTS>/<target>/<runner>.json: inputs of the build


def _key(r: dict) -> tuple:
    return r["model"], r["runtime"], r["precision"]


def load_device_result(path: Path) -> schema.DeviceResult:
    return schema.read_device_result(Path(path))


def stored_results(artifacts: Path, target: str) -> list[Path]:
    """The device results merged into a target so far (one per runner): the build reads them back."""
    folder = Path(artifacts) / RESULTS / target
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _bundle(folder: Path, info: dict) -> tuple[dict, dict]:
    """The bundle manifest and gates.json in a target folder (or the bundle stage's entry)."""
    fix = f"rebuild the target with `voxc build --target {folder.name}`"
    base = schema.inside(folder, info.get("path", "bundle"), str(folder), fix)
    manifest, bundle_id = schema.read_bundle(base, fix)
    if bundle_id != info["id"]:
        raise VoxcError(f"{base} does not match the bundle id its target records; {fix}")
    return manifest, schema.load_json(base / "gates.json", "gates", fix)


def _evidence(device: schema.DeviceResult, runner: str, path: Path) -> None:
    """A device runner's own evidence must be there: its runtime and hardware, and per judged group the
    hash of what the runtime loaded (a TensorRT engine plan, a compiled Core ML model)."""
    be = backend(runner)
    missing = [k for k in be.evidence_device if not device.device.get(k)]
    if missing:
        raise VoxcError(f"{path} says {runner} judged it, but carries no {', '.join(missing)} of the device it "
                        f"ran on; this bundle's verify.py --runner {runner} records them -- run it on the device")
    for j in device.judged or []:
        bad = [k for k in be.evidence_judged if not (isinstance(j.get(k), str) and len(j[k]) == 64)]
        if bad:
            raise VoxcError(f"{path}: the {j['model']} {j['precision']} group lacks {', '.join(bad)} (what {runner} "
                            "really loaded); it was not written by a device run of this bundle's verify.py")


def prove(device: schema.DeviceResult, bundle: dict, budgets: dict, path: Path, stale_ok: bool = False) -> list[dict]:
    """The device rows with verdicts recomputed from their values; refuses any row, group or file that
    the bundle does not account for (a forged, foreign, duplicated or partial result). With stale_ok
    (a rebuilt bundle), groups whose judged files changed are dropped instead of refused."""
    runner = device.runner
    if runner not in (STAND_IN, bundle["runtime"]):
        raise VoxcError(f"{path}: runner '{runner}' cannot verify a {bundle['runtime']} bundle")
    label = f"{STAND_IN}-standin" if runner == STAND_IN else runner
    if runner != STAND_IN:
        if device.stand_in:
            raise VoxcError(f"{path}: a stand-in result cannot speak for {runner}; run the bundle's verify.py "
                            "on the device")
        _evidence(device, runner, path)
    groups = {}                                      # (model, precision) -> (model entry, artifact entry)
    for name, model in bundle["models"].items():
        for art in model["artifacts"]:
            precision = art["stand_in"]["precision"] if runner == STAND_IN else art["precision"]
            groups[(name, precision)] = (model, art)
    if device.judged is None:
        raise VoxcError(f"{path} does not say which files it judged (written by an older verify.py); "
                        "run this bundle's verify.py again")
    seen, stale = set(), set()
    for j in device.judged:
        key = (j["model"], j["precision"])
        if key not in groups:
            raise VoxcError(f"{path} judged {key[0]} {key[1]}, which this bundle does not contain")
        if key in seen or key in stale:
            raise VoxcError(f"{path} judged {key[0]} {key[1]} twice; it was not written by verify.py")
        model, art = groups[key]
        want = {rel: bundle["files"][rel]["sha256"] for rel in judged_group(bundle, model, art, runner)}
        if j["files"] != want:
            if stale_ok:
                stale.add(key)
                continue
            raise VoxcError(f"{path}: the files judged for {key[0]} {key[1]} do not match the bundle's sha256; "
                            "it verified other artifacts than this build's -- run this bundle's verify.py again")
        seen.add(key)
    rows, covered, points_seen = [], {}, set()
    for r in device.results:
        key = (r["model"], r["precision"])
        if key in stale:
            continue
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
        ident = (*key, *point, r["output"], r["metric"])
        if ident in points_seen:
            raise VoxcError(f"{path}: {key[0]} {key[1]} {r['output']} {r['metric']} at {point[0]}x{point[1]} "
                            "appears twice; a device result has one row per check -- run verify.py again")
        points_seen.add(ident)
        if r["metric"] in FAILURE_METRICS:
            passed = False
        else:
            budget = budgets[key[0]][key[1]][kinds[r["output"]]]
            if r["metric"] not in budget or r["tolerance"] != budget[r["metric"]]:
                raise VoxcError(f"{path}: {key[0]} {key[1]} {r['output']} {r['metric']} is judged against "
                                f"{r['tolerance']}, not the bundle's budget {budget.get(r['metric'])}")
            value = float("nan") if r["value"] is None else r["value"]
            passed = bool(metrics.passes(r["metric"], value, r["tolerance"]))
        if passed != r["passed"]:
            raise VoxcError(f"{path}: {key[0]} {key[1]} {r['output']} {r['metric']} {r['value']} against "
                            f"{r['tolerance']} {'passes' if passed else 'fails'}, but the row says otherwise; "
                            "the result was altered")
        covered.setdefault(key, {}).setdefault(tuple(point), set()).add((r["output"], r["metric"]))
        rows.append(r)
    for key in seen:
        model, _ = groups[key]
        for i, point in enumerate(model["points"]):
            got = covered.get(key, {}).get(tuple(point), set())
            if any(m in FAILURE_METRICS for _, m in got):
                continue
            for o in model["outputs"]:
                long = (model.get("perceptual_points") or {}).get(o["name"]) or []
                need = {(o["name"], m) for m, tol in budgets[key[0]][key[1]][o["kind"]].items()   # every gated metric:
                        if m not in perceptual.METRICS or (tol is not None and i < len(long) and long[i])}  # perceptual
                # ones where the reference is long enough for them (verify.py judges them there)
                if not need <= got and not any(n == o["name"] and m in FAILURE_METRICS for n, m in got):
                    lacking = sorted(m for _, m in need - got)
                    raise VoxcError(f"{path} is incomplete: {key[0]} {key[1]} lacks {o['name']} checks "
                                    f"({', '.join(lacking)}) at {point[0]}x{point[1]}; run this bundle's verify.py again")
    return rows


def fold(manifest: dict, rows: list[dict], device: schema.DeviceResult, proven: list[dict], runtime: str,
         file_sha256: str) -> tuple[dict, list[dict]]:
    """(the target manifest, its parity rows) with a proven device result folded in: its rows replace the
    deferred rows (and earlier device rows) of the groups it answers; stand-in rows sit beside them."""
    identity = backend(runtime).identity
    site = {"site": "device", "device": {k: device.device.get(k) for k in identity if device.device.get(k)}}
    incoming = [{**r, **site} for r in proven]
    covered = {_key(r) for r in incoming}
    kept = [r for r in rows
            if not (r.get("site") == "device" and _key(r) in covered)          # an earlier merge of the same groups
            and not (deferred.is_deferred(r) and _key(r) in covered)]          # deferred rows the device now answers
    merged = kept + incoming
    manifest = {**manifest}
    merges = [m for m in manifest.get("device_parity", []) if m.get("runner") != device.runner]
    answered = {(r["model"], r["precision"]) for r in proven}
    merges.append({"file_sha256": file_sha256, "runner": device.runner, "stand_in": device.runner == STAND_IN,
                   "device": site["device"], "passed": all(r["passed"] for r in incoming), "rows": len(incoming),
                   "judged": [j for j in device.judged if (j["model"], j["precision"]) in answered]})
    manifest["device_parity"] = merges
    manifest["models"] = {name: {**info, "parity": deferred.status([r for r in merged if r["model"] == name])}
                          for name, info in manifest["models"].items()}
    return manifest, merged


def merge(artifacts: Path, target: str, device_path: Path) -> str:
    """Prove a device result, keep it as an input of the target's next builds, and rewrite the target's
    reports (together with their root record); returns the target's new status. A refused result
    leaves every file as it was. Holds the artifacts folder's writer lock: a build beside it waits."""
    with artifacts_lock(artifacts, create=False):
        return _merge(Path(artifacts), target, device_path)


def _merge(artifacts: Path, target: str, device_path: Path) -> str:
    folder = artifacts / target
    shipped = schema.read(folder)
    device = load_device_result(device_path)
    bundle = shipped.manifest.bundle
    if not bundle:
        raise VoxcError(f"target {target} has no device bundle; nothing of it awaits a device")
    if device.target != target:
        raise VoxcError(f"{device_path} is a result for target {device.target}, not {target}")
    if device.bundle != bundle["id"]:
        raise VoxcError(f"{device_path} was verified from bundle {device.bundle[:12]}, but {folder} was built as "
                        f"bundle {bundle['id'][:12]}; copy artifacts/{target}/{bundle['tarball']} to the device and "
                        "run verify.py again")
    bundle_manifest, budgets = _bundle(folder, bundle)
    proven = prove(device, bundle_manifest, budgets, Path(device_path))
    raw = Path(device_path).read_bytes()
    manifest, rows = fold(shipped.manifest.doc, shipped.parity.results, device, proven, bundle["runtime"],
                          sha256_bytes(raw))
    stored = Path(artifacts) / RESULTS / target / f"{device.runner}.json"
    try:
        stored.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(stored, schema.dumps(device.doc))
    except OSError as exc:
        raise VoxcError(f"cannot keep the device result in {stored.parent} ({exc.strerror}); free some space or "
                        "make the artifacts folder writable, then merge again") from None
    _write(folder, target, manifest, rows, shipped.parity.chain)
    return deferred.status(rows)


def _write(folder: Path, target: str, manifest: dict, rows: list[dict], chain: dict | None) -> None:
    doc, markdown, _ = report.parity_doc(target, rows, chain)
    schema.rewrite_reports(folder, manifest, doc, markdown)


def merged_stage(out: Path, params: MergedParams, inputs: dict) -> dict:
    """target/merged: the stored device results folded into a fresh build's reports. A group whose judged
    files (artifact, golden) are unchanged in the rebuilt bundle keeps its device rows; a group that
    changed goes back to deferred until the device verifies the new bundle."""
    from voxc.compiler.graph import read_record
    assemble, bundle_out = Path(inputs["assemble"]), Path(inputs["bundle"])
    info = read_record(bundle_out).get("bundle")
    shipped = schema.read(assemble, verify_files=False)     # a verified cache entry
    manifest, rows = shipped.manifest.doc, shipped.parity.results
    kept = {}
    if info:
        manifest = {**manifest, "bundle": info}
        bundle_manifest, budgets = _bundle(bundle_out, info)
        for label in sorted(k for k in inputs if k.startswith("device.")):
            path = Path(inputs[label])
            device = load_device_result(path)
            if device.target != params.target:
                continue
            proven = prove(device, bundle_manifest, budgets, path, stale_ok=True)
            if proven:
                manifest, rows = fold(manifest, rows, device, proven, info["runtime"], sha256_file(path))
            kept[device.runner] = len(proven)
    doc, markdown, passed = report.parity_doc(params.target, rows, shipped.parity.chain)
    schema.write_reports(out, manifest, doc, markdown)
    return {"passed": passed, "device_rows": kept}
