"""Precision policy: which rung of a model's precision ladder ships, per runtime.

A ladder is ordered by preference (e.g. int8, fp16, fp32); its last rung is the fallback. Walking
up from the fallback, a precision is accepted only if every parity gate passed AND it is measured
faster than the precision it would replace by the margin (default 10 %), median of >= 10 timed runs
at the opt shape after warm-up, in interleaved blocks in one process so load changes hit every
candidate alike. Everything else is rejected with a reason; the fallback's own gate failures fail the build.
"""
from __future__ import annotations

import time

import numpy as np

from voxc.core import metrics

DEFAULT_MARGIN = 0.10
DEFAULT_RUNS = 10
WARMUP = 3


def gate_reason(rows: list[dict]) -> str | None:
    """None when every row passed; else the first failing metric, at its worst point, in words
    ('waveform mcd_db 2.13 > 1 budget at 1x320')."""
    failed = [r for r in rows if not r["passed"]]
    if failed:
        first = (failed[0]["output"], failed[0]["metric"])
        same = [r for r in failed if (r["output"], r["metric"]) == first and isinstance(r["value"], float)]
        if same:
            lower = first[1] in metrics.LOWER_IS_BETTER
            failed = [max(same, key=lambda r: r["value"]) if lower else min(same, key=lambda r: r["value"])]
    for r in failed:
        if "error" in r:
            return f"{r['metric']} failed: {r['error']}"
        if not isinstance(r["value"], float):
            return f"{r['output']} {r['metric']} {r['value']} != {r['tolerance']} at {r['batch']}x{r['length']}"
        op = ">" if r["metric"] in metrics.LOWER_IS_BETTER else "<"
        return (f"{r['output']} {r['metric']} {r['value']:.4g} {op} {r['tolerance']:.4g} budget "
                f"at {r['batch']}x{r['length']}")
    return None


def time_interleaved(runners: dict[str, object], feeds: dict, runs: int = DEFAULT_RUNS,
                     warmup: int = WARMUP, rounds: int | None = None) -> dict[str, dict]:
    """Median/p90 latency (ms) of each runner on the same feeds. Runs are taken in blocks per runner
    (so each runtime's thread pool is warm, not fighting the previous one's spinning threads), the
    blocks interleaved over `rounds` rounds (default: blocks of 2 runs, at most 5 rounds) in alternating order (A B C, C B A) so a load change on
    a shared machine hits every candidate alike."""
    samples: dict[str, list[float]] = {k: [] for k in runners}
    rounds = rounds or max(1, min(5, runs // 2))
    order = list(runners)
    per_round = [runs // rounds + (i < runs % rounds) for i in range(rounds)]
    for i, n in enumerate(per_round):
        for k in (order if i % 2 == 0 else order[::-1]):
            r = runners[k]
            for _ in range(warmup if i == 0 else 1):
                r.infer(feeds)
            for _ in range(n):
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
