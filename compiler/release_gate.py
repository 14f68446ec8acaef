"""The release gate: `voxc report --release --baseline PREV` compares this release with the previous one.

It comes after the release report (compiler/release.py) and reads only the two reports' JSON documents
(release.json), never a target folder, so a CI job can keep the previous release's JSON as its baseline.
Per target, model and runtime it compares the decision (accepted precision), the worst value of every
gated metric against its budget, the shipped size and the speed-up over fp32, and sorts every change into
`regressions` (beyond the tolerance: the gate fails), `changes` (within tolerance, or neutral) and
`improvements`. A target that fails its own gates fails the gate with or without a baseline.

Tolerances (TOLERANCES, overridable per key) are stated once here and printed with the diff:
  headroom  a metric may use up at most this share of the baseline's distance to its budget
  size      the shipped bytes of a model/runtime may grow by at most this share
  speedup   the speed-up over fp32 at the policy's margin may shrink by at most this share
"""
from __future__ import annotations

import json
from pathlib import Path

from voxc.core.errors import VoxcError
from voxc.core.metrics import LOWER_IS_BETTER

TOLERANCES = {"headroom": 0.25, "size": 0.10, "speedup": 0.15}


def load_baseline(path: Path) -> dict:
    """A previous release report's JSON: release.json itself, or the folder (or .html page) beside it."""
    path = Path(path)
    if path.is_dir():
        path = path / "release.json"
    elif path.suffix == ".html":
        path = path.with_suffix(".json")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VoxcError(f"baseline {path} does not exist; pass the previous release's release.json "
                        "(or the folder holding it)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise VoxcError(f"baseline {path} is not a readable release report ({type(exc).__name__}); "
                        "pass the previous release's release.json") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("targets"), list) or \
            not all(isinstance(t, dict) and isinstance(t.get("target"), str) for t in doc["targets"]):
        raise VoxcError(f"baseline {path} is not a voxc release report (no list of targets); "
                        "pass the release.json that `voxc report --release` wrote")
    return doc


def _worse(metric: str, a: float, b: float) -> bool:
    """Whether value a is worse than value b for this metric."""
    return a > b if metric in LOWER_IS_BETTER else a < b


def _metric_change(key: str, base: float, cur: float, budget: float | None, tol: float) -> tuple[str, str] | None:
    """(kind, text) for a worst value that moved, or None when it did not."""
    metric = key.rsplit(".", 1)[-1]
    if cur == base:
        return None
    if not _worse(metric, cur, base):
        return "improvement", f"{key} {base:.4g} -> {cur:.4g} (better)"
    if budget is None:
        return "change", f"{key} {base:.4g} -> {cur:.4g} (no budget recorded)"
    headroom = abs(budget - base)
    used = abs(cur - base) / headroom if headroom > 0 else float("inf")
    text = f"{key} {base:.4g} -> {cur:.4g}, budget {budget:.4g}: {used:.0%} of the headroom used"
    return ("regression" if used > tol else "change"), text


def _speedup(rt: dict) -> float | None:
    s = rt.get("speed") or {}
    v = s.get("vs_fp32")
    return float(v) if isinstance(v, (int, float)) else None


def compare(baseline: dict, current: dict, tolerances: dict | None = None) -> dict:
    """The diff of two release reports: regressions, changes and improvements, each a list of
    {"target", "model", "runtime", "what", "text"}; `passed` is False on a regression or a failing target."""
    tol = {**TOLERANCES, **(tolerances or {})}
    out = {"tolerances": tol, "regressions": [], "changes": [], "improvements": []}

    def add(kind: str, target: str, model: str | None, runtime: str | None, what: str, text: str) -> None:
        bucket = {"regression": "regressions", "change": "changes", "improvement": "improvements"}[kind]
        out[bucket].append({"target": target, "model": model, "runtime": runtime, "what": what, "text": text})

    base_targets = {t["target"]: t for t in baseline.get("targets", [])}
    cur_targets = {t["target"]: t for t in current.get("targets", [])}
    for name in sorted(set(base_targets) - set(cur_targets)):
        add("regression", name, None, None, "target", f"target {name} was released before and is missing now")
    for name in sorted(set(cur_targets) - set(base_targets)):
        add("change", name, None, None, "target", f"target {name} is new in this release")
    for name in sorted(set(base_targets) & set(cur_targets)):
        b, c = base_targets[name], cur_targets[name]
        if b.get("status") != c.get("status"):
            kind = "regression" if c.get("status") == "fail" else \
                "improvement" if b.get("status") == "fail" else "change"
            add(kind, name, None, None, "status", f"status {b.get('status')} -> {c.get('status')}")
        for model in sorted(set(b.get("models", {})) | set(c.get("models", {}))):
            bm, cm = b.get("models", {}).get(model), c.get("models", {}).get(model)
            if bm is None or cm is None:
                add("regression" if cm is None else "change", name, model, None, "model",
                    f"model {model} {'dropped' if cm is None else 'added'}")
                continue
            for rt in sorted(set(bm["runtimes"]) | set(cm["runtimes"])):
                br, cr = bm["runtimes"].get(rt), cm["runtimes"].get(rt)
                if br is None or cr is None:
                    add("regression" if cr is None else "change", name, model, rt, "runtime",
                        f"runtime {rt} {'dropped' if cr is None else 'added'}")
                    continue
                _compare_runtime(add, tol, name, model, rt, br, cr)
    failing = [t["target"] for t in current.get("targets", []) if t.get("status") == "fail"]
    out["failing_targets"] = failing
    out["passed"] = not out["regressions"] and not failing
    return out


def _compare_runtime(add, tol: dict, target: str, model: str, rt: str, br: dict, cr: dict) -> None:
    if br.get("accepted") != cr.get("accepted"):
        add("change", target, model, rt, "decision", f"accepted {br.get('accepted')} -> {cr.get('accepted')}")
    bb, cb = br.get("bytes") or 0, cr.get("bytes") or 0
    if bb and cb != bb:
        grew = (cb - bb) / bb
        kind = "regression" if grew > tol["size"] else "improvement" if grew < 0 else "change"
        add(kind, target, model, rt, "size", f"size {bb / 1e6:.2f} -> {cb / 1e6:.2f} MB ({grew:+.0%})")
    bs, cs = _speedup(br), _speedup(cr)
    if bs and cs and cs != bs:
        shrank = (bs - cs) / bs
        kind = "regression" if shrank > tol["speedup"] else "improvement" if shrank < 0 else "change"
        add(kind, target, model, rt, "speed", f"speed-up over fp32 {bs:.2f}x -> {cs:.2f}x")
    # worst values of the accepted precision, each against its budget
    bp, cp = br.get("accepted"), cr.get("accepted")
    bc = (br.get("checks") or {}).get(bp) or {}
    cc = (cr.get("checks") or {}).get(cp) or {}
    budgets = cc.get("budget") or {}
    for key in sorted(set(bc.get("worst") or {}) & set(cc.get("worst") or {})):
        bv, cv = bc["worst"][key], cc["worst"][key]
        if not isinstance(bv, (int, float)) or not isinstance(cv, (int, float)):
            continue
        change = _metric_change(key, float(bv), float(cv), budgets.get(key), tol["headroom"])
        if change:
            add(change[0], target, model, rt, "metric", f"{cp}: {change[1]}")


def lines(diff: dict) -> list[str]:
    """The diff as printable lines, regressions first."""
    out = [f"FAIL target {t}: its gates failed" for t in diff.get("failing_targets", [])]
    for kind, label in (("regressions", "REGRESSION"), ("changes", "change"), ("improvements", "improved")):
        for d in diff[kind]:
            where = "/".join(x for x in (d["target"], d["model"], d["runtime"]) if x)
            out.append(f"{label} {where}: {d['text']}")
    return out
