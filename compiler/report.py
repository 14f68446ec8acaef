"""Reports of a target folder: manifest.json (what was built, from what, with which tools),
parity.json (every gate row) and parity.md (the same as readable tables). Writes are atomic.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import uuid
from pathlib import Path

from compiler import deferred, parity
from compiler.graph import sha256_file, sha256_tree, tool_versions
from models.registry import model_spec

VOXC_VERSION = importlib.metadata.version("voxc")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def artifact_path(name: str, runtime: str, precision: str, record: dict) -> str:
    """Where an artifact sits in the target folder, keeping its format's suffix (.onnx, .mlpackage)."""
    return f"{name}/{name}.{runtime}-{precision}{Path(record['file']).suffix}"


def file_hash(p: Path) -> str:
    """sha256 of a file, or of a folder artifact's tree (relative paths + contents)."""
    return sha256_tree(p) if p.is_dir() else sha256_file(p)


def _file_entry(folder: Path, rel: str, **extra) -> dict:
    p = folder / rel
    size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return {"path": rel, "sha256": file_hash(p), "bytes": size, **extra}


def write_target(folder: Path, req, profile: dict, chains: dict, results: dict) -> bool:
    rows: list[dict] = []
    models = {}
    for name, chain in chains.items():
        spec = model_spec(name, chain["config"])
        files = [_file_entry(folder, f"{name}/{name}.onnx", precision="fp32", format="onnx", runtime="portable")]
        model_rows = []
        for a in chain["artifacts"]:
            rec = results[a["artifact"]].record
            files.append(_file_entry(folder, artifact_path(name, a["runtime"], a["precision"], rec),
                                     precision=a["precision"], format=rec.get("format", "onnx"), runtime=a["runtime"]))
            model_rows += results[a["parity"]].record["rows"]
        rows += model_rows
        stage_labels = {k: chain[k] for k in ("weights", "export", "check", "simplify")}
        stage_labels.update({a["artifact"].split("/", 1)[1]: a["artifact"] for a in chain["artifacts"]})
        simplify = results[chain["simplify"]].record
        models[name] = {
            "artifacts": files,
            "reference": _file_entry(folder, f"{name}/reference.safetensors", format="safetensors"),
            **spec.to_json(),
            "config": chain["config"],
            "stage_keys": {k: results[v].key for k, v in stage_labels.items()},
            "tools": tool_versions(("torch", "onnx", "onnxscript", "onnxsim", "onnxslim", "onnxruntime")),
            "graph": {"export_nodes": results[chain["export"]].record["nodes"],
                      "simplified_nodes": simplify["nodes"], "simplifier": simplify["simplifier"],
                      "simplify_fallbacks": simplify["fallback_reasons"], "ops": simplify["ops"],
                      "exporter": results[chain["export"]].record["exporter"]},
            "parity": deferred.status(model_rows),
        }
    passed = deferred.host_passed(rows)
    manifest = {"target": req.target, "voxc_version": VOXC_VERSION, "preset": req.preset_name,
                "profile": profile, "models": models}
    write_atomic(folder / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    write_parity(folder, req.target, rows)
    return passed


def write_parity(folder: Path, target: str, rows: list[dict], **extra) -> bool:
    """parity.json + parity.md; `passed` covers the gates run so far, `status` says if device checks are pending."""
    passed = deferred.host_passed(rows)
    write_atomic(folder / "parity.json", json.dumps({"target": target, "passed": passed,
                                                     "status": deferred.status(rows), **extra, "results": rows}, indent=1))
    write_atomic(folder / "parity.md", parity_markdown(target, rows))
    return passed


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def parity_markdown(target: str, rows: list[dict]) -> str:
    overall = {"pass": "PASS", "fail": "FAIL", "deferred": "HOST PASS, DEVICE PARITY DEFERRED"}[deferred.status(rows)]
    waiting = sorted({r.get("reason", "") for r in rows if deferred.is_deferred(r)})
    lines = [f"# Parity report: target `{target}`", "",
             f"**Overall: {overall}** ({len(rows)} checks, {sum(r['passed'] is False for r in rows)} failed, "
             f"{sum(deferred.is_deferred(r) for r in rows)} deferred to the device)", "",
             *([f"Deferred: {'; '.join(waiting)}. Run the device bundle, then "
                f"`voxc report --target {target} --merge DEVICE_PARITY.json`.", ""] if waiting else []),
             "| model | runtime | precision | sweep (batch x length) | result | worst values |",
             "|---|---|---|---|---|---|"]
    for key, s in parity.summarise(rows).items():
        model, runtime, precision = key.split("/")
        points = ", ".join(f"{b}x{n}" for b, n in s["points"])
        worst = "; ".join(f"{k} {_fmt(v)}" for k, v in s["worst"].items())
        result = "FAIL" if not s["passed"] else "DEFERRED" if s["deferred"] else "PASS"
        lines.append(f"| {model} | {runtime} | {precision} | {points} | {result} | {worst} |")
    failed = [r for r in rows if r["passed"] is False]
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
