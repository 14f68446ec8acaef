"""Precision policy: which rung of a model's precision ladder ships, per runtime.

A ladder is ordered by preference (e.g. int8, fp16, fp32); its last rung is the fallback. Walking
up from the fallback, a precision is accepted only if every parity gate passed AND it is measured
faster than the precision it would replace by the margin (default 10 %), median of >= 10 timed runs
at the opt shape after warm-up, interleaved in one process so load changes hit every candidate
alike. Everything else is rejected with a reason; the fallback's own gate failures fail the build.
"""
from __future__ import annotations

import time

import numpy as np

from compiler import metrics

DEFAULT_MARGIN = 0.10
DEFAULT_RUNS = 10
WARMUP = 3


def gate_reason(rows: list[dict]) -> str | None:
    """None when every row passed; else the first failure in words ('MCD 1.4 > 0.5 budget')."""
    for r in rows:
        if r["passed"]:
            continue
        if "error" in r:
            return f"{r['metric']} failed: {r['error']}"
        if not isinstance(r["value"], float):
            return f"{r['output']} {r['metric']} {r['value']} != {r['tolerance']} at {r['batch']}x{r['length']}"
        op = ">" if r["metric"] in metrics.LOWER_IS_BETTER else "<"
        return (f"{r['output']} {r['metric']} {r['value']:.4g} {op} {r['tolerance']:.4g} budget "
                f"at {r['batch']}x{r['length']}")
    return None


def time_interleaved(runners: dict[str, object], feeds: dict, runs: int = DEFAULT_RUNS,
                     warmup: int = WARMUP) -> dict[str, dict]:
    """Median/p90 latency (ms) of each runner on the same feeds, runs interleaved round-robin."""
    for _ in range(warmup):
        for r in runners.values():
            r.infer(feeds)
    samples: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(runs):
        for k, r in runners.items():
            t0 = time.perf_counter()
            r.infer(feeds)
            samples[k].append((time.perf_counter() - t0) * 1e3)
    return {k: {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)), "runs": len(v)}
            for k, v in samples.items()}


def decide(ladder: list[str], gates: dict[str, str | None], timings: dict[str, dict],
           margin: float = DEFAULT_MARGIN) -> dict:
    """gates: precision -> None (passed) or the failure reason; timings: precision -> {median_ms}.
    Returns {"accepted", "rejected": [{"precision", "reason"}], "fallback", "margin"}."""
    fallback = ladder[-1]
    accepted = fallback
    rejected = []
    for p in reversed(ladder[:-1]):
        if gates.get(p) is not None:
            rejected.append({"precision": p, "reason": f"{p} rejected: {gates[p]}"})
            continue
        if p not in timings or accepted not in timings:
            rejected.append({"precision": p, "reason": f"{p} rejected: not timed"})
            continue
        speedup = timings[accepted]["median_ms"] / timings[p]["median_ms"]
        if speedup < 1.0 + margin:
            rejected.append({"precision": p, "reason": f"{p} rejected: {speedup:.2f}x {accepted} speed "
                                                       f"(needs >= {1.0 + margin:.2f}x)"})
            continue
        accepted = p
    rejected.sort(key=lambda r: ladder.index(r["precision"]))
    return {"accepted": accepted, "rejected": rejected, "fallback": fallback, "margin": margin,
            "fallback_gate": gates.get(fallback)}
