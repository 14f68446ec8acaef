"""Reports of a target folder: manifest.json (what was built, from what, with which tools),
parity.json (every gate row) and parity.md (the same as readable tables). Writes are atomic.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import uuid
from pathlib import Path

from compiler import parity
from compiler.graph import sha256_file, tool_versions
from models.registry import model_spec

VOXC_VERSION = importlib.metadata.version("voxc")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _file_entry(folder: Path, rel: str, **extra) -> dict:
    p = folder / rel
    return {"path": rel, "sha256": sha256_file(p), "bytes": p.stat().st_size, **extra}


def _weight_source(req, name: str, record: dict) -> dict:
    """Where a model's weights came from: the trained voice, a user checkpoint, or the seeded init."""
    ckpt = req.checkpoints.get(name)
    if ckpt is None:
        kind = "seeded" if record.get("parameters") else "none (no parameters)"
        return {"source": kind, "detail": record.get("source"), "parameters": record.get("parameters")}
    kind = getattr(req, "weight_sources", {}).get(name, "user checkpoint")
    path = Path(ckpt).resolve()
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return {"source": kind, "checkpoint": shown, "sha256": sha256_file(path), "parameters": record.get("parameters")}


def write_target(folder: Path, req, profile: dict, chains: dict, results: dict) -> bool:
    rows: list[dict] = []
    models = {}
    for name, chain in chains.items():
        spec = model_spec(name, chain["config"])
        files = [_file_entry(folder, f"{name}/{name}.onnx", precision="fp32", format="onnx", runtime="portable")]
        model_rows = []
        for a in chain["artifacts"]:
            files.append(_file_entry(folder, f"{name}/{name}.{a['runtime']}-{a['precision']}.onnx",
                                     precision=a["precision"], format="onnx", runtime=a["runtime"]))
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
            "parity": "pass" if all(r["passed"] for r in model_rows) else "fail",
            "weights": _weight_source(req, name, results[chain["weights"]].record),
        }
    passed = all(r["passed"] for r in rows)
    manifest = {"target": req.target, "voxc_version": VOXC_VERSION, "preset": req.preset_name,
                "profile": profile, "models": models}
    write_atomic(folder / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    write_parity(folder, req.target, rows)
    return passed


def write_parity(folder: Path, target: str, rows: list[dict]) -> bool:
    passed = all(r["passed"] for r in rows)
    write_atomic(folder / "parity.json", json.dumps({"target": target, "passed": passed, "results": rows}, indent=1))
    write_atomic(folder / "parity.md", parity_markdown(target, rows))
    return passed


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def parity_markdown(target: str, rows: list[dict]) -> str:
    passed = all(r["passed"] for r in rows)
    lines = [f"# Parity report: target `{target}`", "",
             f"**Overall: {'PASS' if passed else 'FAIL'}** ({len(rows)} checks, "
             f"{sum(not r['passed'] for r in rows)} failed)", "",
             "| model | runtime | precision | sweep (batch x length) | result | worst values |",
             "|---|---|---|---|---|---|"]
    for key, s in parity.summarise(rows).items():
        model, runtime, precision = key.split("/")
        points = ", ".join(f"{b}x{n}" for b, n in s["points"])
        worst = "; ".join(f"{k} {_fmt(v)}" for k, v in s["worst"].items())
        lines.append(f"| {model} | {runtime} | {precision} | {points} | {'PASS' if s['passed'] else 'FAIL'} | {worst} |")
    failed = [r for r in rows if not r["passed"]]
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
                     f"{r['metric']} | {_fmt(r['value'])} | {_fmt(r['tolerance'])} | {'yes' if r['passed'] else 'NO'} |")
    return "\n".join(lines) + "\n"
