"""Reports of a target folder: the manifest (what was built, from what, with which tools, every file
with its role and sha256), the parity report (every gate row) and parity.md (the same as readable
tables), written through core/target.py; and the target stage that assembles the folder from
verified cache bytes.
"""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

from voxc.compiler import deferred, parity
from voxc.compiler.graph import tool_versions
from voxc.compiler.plan import AssembleParams, GraphPlan, Rung, TargetInfo
from voxc.core import target as schema
from voxc.core.errors import VoxcError
from voxc.core.hashing import sha256_path
from voxc.models.family import model_spec
from voxc.targets import backend

VOXC_VERSION = importlib.metadata.version("voxc")


def artifact_path(name: str, runtime: str, precision: str, file: str) -> str:
    """Where a stage's output file ships in the target folder: the model file (and its weights) as
    <model>/<model>.<runtime>-<precision>.onnx | .xml/.bin | .mlpackage | .engine; any other file of the
    stage keeps its own name after that (<model>.tensorrt-int8.profiles.json), so none collide."""
    stem, dot, rest = file.partition(".")
    return f"{name}/{name}.{runtime}-{precision}" + (f".{rest}" if stem == "model" else f".{stem}{dot}{rest}")


def record_files(record: dict) -> list[str]:
    """The files (or package folders) an artifact stage produced, engine and fingerprint included."""
    return list(record_roles(record))


def record_roles(record: dict) -> dict[str, str]:
    """file -> its role (core/target.py ROLES), read off the record: its `file` is the model (a package
    when the format is a folder), files its backend declares in `roles` (OpenVINO's weights) have that
    role, any other file of the entry is configuration; `engine` is a built engine and its .json the
    engine's notes. No file name is sniffed."""
    main = record["file"]
    declared = record.get("roles") or {}
    roles = {f: declared.get(f, "config") for f in record.get("files") or [main]
             if f != main and not f.startswith(main + "/")}
    roles = {main: declared.get(main, "model"), **roles}
    if record.get("engine"):
        roles.update({record["engine"]: "engine", record["engine"] + ".json": "engine-info"})
    return roles


def _file_entry(folder: Path, rel: str, digests: dict, **extra) -> dict:
    """A manifest file record; its sha256 is the one assembly computed over the bytes it wrote."""
    p = folder / rel
    size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return {"path": rel, "sha256": digests[rel], "bytes": size, **extra}


def _weight_source(info: dict, record: dict) -> dict:
    """Where a model's weights came from: the trained voice, a user checkpoint, or the seeded init."""
    if not info:
        kind = "seeded" if record.get("parameters") else "none (no parameters)"
        return {"source": kind, "detail": record.get("source"), "parameters": record.get("parameters")}
    return {**info, "parameters": record.get("parameters")}


def _precision_entry(sel: dict, gp: GraphPlan, results: dict, runtime: str) -> dict:
    """Manifest record of the policy's decision on one runtime, with the parity figures (its timings
    go to the timings file: `timings_entry`)."""
    figures = {}
    for rung in gp.rungs.get(runtime, {}).values():
        rec = results[rung.artifact].record
        summary = parity.summarise(results[rung.parity].record["rows"])
        figures[rung.precision] = {
            "gates": "pass" if sel["gates"].get(rung.precision) is None else "fail",
            "worst": next(iter(summary.values()), {}).get("worst", {}),
            **{k: rec[k] for k in ("fp32_nodes", "fp32_ops", "int8", "calibration_items", "sensitivity", "quantised",
                                   "int8_search", "scheme", "error") if rec.get(k)},
            **({"calibration_set": rung.calibration_set} if rung.calibration_set else {}),
            "parity_set": rung.parity_set}
    return {"accepted": sel["accepted"], "ladder": sel["ladder"], "fallback": sel["fallback"],
            "rejected": sel["rejected"], "margin": sel["margin"], "timing_shape": sel["timing_shape"],
            "threads": sel["threads"], "figures": figures}


def timings_entry(sel: dict) -> dict:
    """What the policy measured on one runtime (milliseconds per rung, paired speed-ups): differs from
    run to run, so it lives beside the target folder (artifacts/<target>.timings.json), not in it."""
    return {k: sel.get(k) for k in ("accepted", "timings", "speedups", "margin", "timing_shape", "threads")}


def write_target(folder: Path, info: TargetInfo, graphs: dict[str, GraphPlan], results: dict,
                 chained: dict | None = None, digests: dict | None = None) -> tuple[bool, dict]:
    """Writes manifest.json, parity.json and parity.md (core/target.py); returns (passed, the policy's
    timings). `digests`: rel path -> sha256 of the bytes assembly wrote (else hashed here)."""
    if digests is None:
        digests = _Hashes(folder)
    rows: list[dict] = []
    models, timings = {}, {}
    for name, gp in graphs.items():
        spec = model_spec(name, gp.config)
        files = [_file_entry(folder, f"{name}/{name}.onnx", digests, precision="fp32", format="onnx", runtime=schema.PORTABLE,
                             role="model")]
        model_rows = []
        precision = {}
        for a in gp.all_rungs():
            sel = results[gp.select[a.runtime]].record if a.runtime in gp.select else None
            if sel is not None and a.runtime not in precision:
                precision[a.runtime] = _precision_entry(sel, gp, results, a.runtime)
                timings.setdefault(name, {})[a.runtime] = timings_entry(sel)
            accepted = sel is None or a.precision == sel["accepted"]
            gating = sel is None or a.precision in (sel["accepted"], sel["fallback"])
            model_rows += [{**r, "gating": gating, "accepted": accepted} for r in results[a.parity].record["rows"]]
            rec = results[a.artifact].record
            if not accepted or not rec.get("file"):      # a device rung that failed to build: its row fails
                continue
            for f, role in record_roles(rec).items():
                files.append(_file_entry(folder, artifact_path(name, a.runtime, a.precision, f), digests,
                                         precision=a.precision, format=rec.get("format", "onnx"),
                                         runtime=a.runtime, role=role,
                                         **({"parity_set": a.parity_set} if a.parity_set else {}),
                                         **({"calibration_set": a.calibration_set} if a.calibration_set else {}),
                                         **({k: rec[k] for k in backend(a.runtime).manifest_keys if k in rec}
                                            if f == rec["file"] else {})))
        rows += model_rows
        stage_labels = {"weights": gp.weights, "export": gp.export, "check": gp.check, "simplify": gp.simplify}
        stage_labels.update({a.artifact.split("/", 1)[1]: a.artifact for a in gp.all_rungs()})
        simplify = results[gp.simplify].record
        models[name] = {
            "artifacts": files,
            "reference": _file_entry(folder, f"{name}/reference.safetensors", digests, format="safetensors",
                                     role="reference"),
            **spec.to_json(),
            "config": gp.config,
            "stage_keys": {k: results[v].key for k, v in stage_labels.items()},
            "tools": tool_versions(tuple(info.tools)),
            "graph": {"export_nodes": results[gp.export].record["nodes"],
                      "simplified_nodes": simplify["nodes"], "simplifier": simplify["simplifier"],
                      "simplify_fallbacks": simplify["fallback_reasons"], "ops": simplify["ops"],
                      "exporter": results[gp.export].record["exporter"]},
            "precision": precision,
            "parity": deferred.status(model_rows),
            "weights": _weight_source(gp.weights_info, results[gp.weights].record),
        }
    manifest = {"target": info.target, "voxc_version": VOXC_VERSION, "preset": info.preset_name,
                "family": info.preset.get("family"), "profile": info.profile, "models": models,
                "preset_config": info.preset, "data_sets": info.data_sets}
    doc, markdown, passed = parity_doc(info.target, rows, chained)
    schema.write_reports(folder, manifest, doc, markdown)
    return passed, timings


class _Hashes(dict):
    """rel path -> sha256 of a file or package folder, hashed on first use."""
    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def __missing__(self, rel: str) -> str:
        self[rel] = sha256_path(self.folder / rel)
        return self[rel]


def merged_chains(records: list[dict]) -> dict:
    """One chained-parity record from the per-runtime chain stages (in the profile's runtime order)."""
    runtimes = {rt: c for r in records for rt, c in r["chain"]["runtimes"].items()}
    demotions = [d for r in records for d in r["demotions"]]
    passed = all(c.get("passed", True) for c in runtimes.values())
    return {"chain": {"runtimes": runtimes, "passed": passed, **({"demotions": demotions} if demotions else {})},
            "demotions": demotions}


def apply_selection(graphs: dict[str, GraphPlan], results: dict, chain_record: dict | None) -> None:
    """The chain gate's final choice, written into (copies of) the policy records: a demoted rung
    becomes a rejection with the chain's reason and its fallback the accepted precision."""
    for d in (chain_record or {}).get("demotions", []):
        r = results[graphs[d["model"]].select[d["runtime"]]]
        rec = dict(r.record)
        rec["rejected"] = sorted(rec["rejected"] + [{"precision": d["precision"], "reason": d["reason"]}],
                                 key=lambda x: rec["ladder"].index(x["precision"]))
        rec["accepted"] = d["to"]
        rec["chain_gate"] = d
        r.record = rec


def accepted_artifacts(gp: GraphPlan, results: dict) -> list[Rung]:
    """The rungs that ship: the policy's choice per host runtime, every device artifact built."""
    out = []
    for a in gp.all_rungs():
        label = gp.select.get(a.runtime)
        if label is None and not results[a.artifact].record.get("file"):
            continue
        if label is None or results[label].record["accepted"] == a.precision:
            out.append(a)
    return out


def target_stage(out: Path, params: AssembleParams, inputs: dict) -> dict:
    """The target folder, assembled once from verified bytes: reference weights, the portable ONNX and
    the accepted artifacts of every model are copied out of their cache entries, and the sha256 of each
    byte written must equal the one its stage recorded when it was verified (stage.json `files`): an
    entry altered since then is refused, never shipped (its next lookup finds it corrupt and rebuilds
    it). Then manifest.json, parity.json, parity.md."""
    from voxc.compiler.graph import Result, read_record
    graphs = params.graphs
    results = {}
    for label, path in inputs.items():
        rec = read_record(path)
        results[label] = Result(label, rec.get("key", ""), Path(path), rec, True, 0.0)
    chain_record = merged_chains([results[label].record for label in params.chains]) if params.chained else None
    apply_selection(graphs, results, chain_record)
    digests: dict[str, str] = {}

    def place(r, src: str, rel: str) -> None:
        digests[rel] = copy_verified(r.path, src, r.record.get("files") or {}, out / rel, r.label)
    for name, gp in graphs.items():
        place(results[gp.weights], "weights.safetensors", f"{name}/reference.safetensors")
        place(results[gp.simplify], "model.onnx", f"{name}/{name}.onnx")
        for a in accepted_artifacts(gp, results):
            r = results[a.artifact]
            for f in record_files(r.record):
                place(r, f, artifact_path(name, a.runtime, a.precision, f))
    passed, timings = write_target(out, params.info, graphs, results,
                                   chain_record["chain"] if chain_record else None, digests)
    return {"passed": passed, "timings": timings}


def copy_verified(entry: Path, rel: str, recorded: dict, dst: Path, label: str) -> str:
    """Copy entry/rel (a file or a package folder) to dst, hashing the bytes as they are written, and
    check them against the sha256 the entry recorded when its stage ran; returns the shipped sha256."""
    from voxc.core.hashing import copy_hashed, sha256_file
    src = entry / rel
    files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
    for f in files:
        name = str(f.relative_to(entry))
        want = (recorded.get(name) or {}).get("sha256")
        target = dst / f.relative_to(src) if src.is_dir() else dst
        target.parent.mkdir(parents=True, exist_ok=True)
        got = copy_hashed(f, target)
        if want is None or got != want:
            raise VoxcError(f"cache entry of {label} changed since its stage verified it ({name} "
                            f"{'is not in its record' if want is None else 'no longer matches its sha256'}); "
                            "nothing was shipped -- run the build again to rebuild that entry")
    if src.is_dir():
        for d in sorted(p for p in src.rglob("*") if p.is_dir()):     # empty folders a package lists
            (dst / d.relative_to(src)).mkdir(parents=True, exist_ok=True)
        return sha256_path(dst)
    return sha256_file(dst)


def parity_doc(target: str, rows: list[dict], chain: dict | None = None) -> tuple[dict, str, bool]:
    """(parity.json, parity.md, passed). `passed` covers the gates run so far (rejected precisions and
    device checks excluded, chained parity included); `status` says whether device checks are pending."""
    passed = deferred.host_passed(rows) and (chain is None or chain.get("passed", True))
    doc = {"target": target, "passed": passed, "status": "fail" if not passed else deferred.status(rows),
           **({"chain": chain} if chain else {}), "results": rows}
    return doc, parity_markdown(target, rows, chain), passed


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def parity_markdown(target: str, rows: list[dict], chain: dict | None = None) -> str:
    gating = deferred.gate_rows(rows)
    state = deferred.status(rows) if chain is None or chain.get("passed", True) else "fail"
    overall = {"pass": "PASS", "fail": "FAIL", "deferred": "HOST PASS, DEVICE PARITY DEFERRED"}[state]
    waiting = sorted({r.get("reason", "") for r in rows if deferred.is_deferred(r)})
    lines = [f"# Parity report: target `{target}`", "",
             f"**Overall: {overall}** ({len(gating)} gating checks, {sum(not r['passed'] for r in gating)} failed; "
             f"{sum(r.get('gating', True) is False for r in rows)} checks of rejected precisions reported only; "
             f"{sum(deferred.is_deferred(r) for r in rows)} deferred to the device)", "",
             *([f"Deferred: {'; '.join(waiting)}. Run the device bundle, then "
                f"`voxc report --target {target} --merge DEVICE_PARITY.json`.", ""] if waiting else []),
             "| model | runtime | precision | role | sweep (batch x length) | result | worst values |",
             "|---|---|---|---|---|---|---|"]
    roles = {f"{r['model']}/{r['runtime']}/{r['precision']}":
             ("accepted" if r.get("accepted", True) else "fallback" if r.get("gating", True) else "rejected")
             for r in rows}
    for key, s in parity.summarise(rows).items():
        model, runtime, precision = key.split("/")
        points = ", ".join(f"{b}x{n}" for b, n in s["points"])
        worst = "; ".join(f"{k} {_fmt(v)}" for k, v in s["worst"].items())
        result = "FAIL" if not s["passed"] else "DEFERRED" if s["deferred"] else "PASS"
        lines.append(f"| {model} | {runtime} | {precision} | {roles[key]} | {points} | {result} | {worst} |")
    if chain:
        from voxc.compiler.chain import chain_markdown
        lines += chain_markdown(chain)
    failed = [r for r in gating if not r["passed"]]
    if failed:
        lines += ["", "## Failed checks", "", "| model | runtime | precision | batch | length | output | metric | value | budget |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in failed:
            value = r.get("error", _fmt(r["value"]))
            lines.append(f"| {r['model']} | {r['runtime']} | {r['precision']} | {r['batch']} | {r['length']} | "
                         f"{r['output']} | {r['metric']} | {value} | {_fmt(r['tolerance'])} |")
    lines += ["", "## All checks", "", "| model | runtime | precision | batch | length | output | metric | value | budget | ok |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['runtime']} | {r['precision']} | {r['batch']} | {r['length']} | {r['output']} | "
                     f"{r['metric']} | {_fmt(r['value'])} | {_fmt(r['tolerance'])} | {'deferred' if deferred.is_deferred(r) else 'yes' if r['passed'] else 'NO'} |")
    return "\n".join(lines) + "\n"
