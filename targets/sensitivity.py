"""Sensitivity pass for INT8: keep the layers that break the audio gates in float.

Used by the ONNX Runtime int8 builder (targets/onnxruntime.py) after calibration. The quantised
graph is scored on held-out validation items (calibration-set utterances not used to calibrate)
against the float graph with the model's own int8 gates (compiler/gates.judge, budgets from the
ModelSpec). If it misses them, every quantised layer is tried alone in float, the layers are ranked
by how much that helps, and the most helpful are kept in float one at a time until the gates pass
with headroom or `max_layers` are kept. The record says which layers were kept and every score.

Score: the worst gate row's excess over its budget (1.0 = exactly at the budget; below 1 passes):
value / budget for errors, the noise-power ratio 10^((budget - value) / 10) for SNRs,
(1 - value) / (1 - budget) for cosine, STOI and exact-match rates, and the same distance from the top of
the scale for PESQ. Diagnostics (budget None) do not count, and DNSMOS (~0.5 s a clip) is left to the
parity gate, so that trying every layer stays affordable.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from voxc.core import gates, perceptual

DB_METRICS = ("snr_db", "snr_voiced_db")


def excess(row: dict) -> float:
    """How far one gate row is past its budget (< 1 passes)."""
    value, tol = row["value"], row["tolerance"]
    if tol is None:
        return 0.0
    if not isinstance(value, (int, float)) or not np.isfinite(value):
        return float("inf")
    if row["metric"] in DB_METRICS:
        return float(10 ** ((tol - value) / 10))
    if row["metric"] in ("cosine", "exact_match", "stoi"):
        return float((1 - value) / max(1 - tol, 1e-12))
    if row["metric"] == "pesq_wb":
        return float((perceptual.PESQ_TOP - value) / max(perceptual.PESQ_TOP - tol, 1e-12))
    return float(value / tol) if tol > 0 else float("inf") * (value > 0)


def int8_budgets(spec) -> dict:
    """The model's int8 gates per output kind (models/spec.py), without diagnostics and DNSMOS."""
    return {t.kind: {k: v for k, v in spec.budget("int8", t.kind).items() if v is not None and k not in perceptual.DNSMOS}
            for t in spec.outputs}


def score(spec, budgets: dict, reference: list[dict], outputs: list[dict]) -> float:
    """Worst excess over all validation items and gated outputs."""
    worst = 0.0
    kinds = [(t.name, t.kind) for t in spec.outputs]
    for ref, got in zip(reference, outputs):
        want = {name: list(ref[name].shape) for name, _ in kinds}
        for row in gates.judge(kinds, want, ref, got, budgets, spec.sample_rate):
            worst = max(worst, excess(row))
    return round(worst, 4)


def keep_sensitive(candidates: list[str], evaluate: Callable[[list[str]], float], max_layers: int,
                   target: float) -> dict:
    """Greedy search: evaluate(excluded node names) -> score. Returns the record of the search."""
    first = evaluate([])
    record = {"score_all_int8": first, "target": target, "kept_fp32": [], "score": first, "trials": {}}
    if first <= target or max_layers <= 0 or not candidates:
        return record
    ranking = rank(candidates, evaluate, first)
    trials = ranking["trials"]
    record["trials"] = trials
    kept, current = [], first
    for c in ranking["ranked"][:max_layers]:
        if trials[c] >= first:          # keeping this layer in float does not help
            break
        kept.append(c)
        current = trials[c] if len(kept) == 1 else evaluate(kept)
        if current <= target:
            break
    record.update(kept_fp32=kept, score=current)
    return record


def rank(candidates: list[str], evaluate: Callable[[list[str]], float], first: float | None = None) -> dict:
    """Every candidate layer tried alone in float: {"score_all_int8", "trials" (layer -> score, best
    first), "ranked" (the layers, most helpful first)}."""
    first = evaluate([]) if first is None else first
    trials = {c: evaluate([c]) for c in candidates}
    ranked = sorted(candidates, key=trials.get)
    return {"score_all_int8": first, "trials": {c: trials[c] for c in ranked}, "ranked": ranked}
