"""Precision policy: which rung of a model's precision ladder ships, per runtime.

A ladder is ordered by preference (e.g. int8, fp16, fp32); its last rung is the fallback. Walking
up from the fallback, a precision is accepted only if every parity gate passed AND it is faster than
the precision it would replace by the margin (default 10 %) with confidence: the candidates are timed
at the opt shape after warm-up in ROUNDS interleaved rounds in one process (A B C, C B A, ...), each
round gives a paired speed ratio (median of its runs), and the rung needs the LOWEST of those ratios
to clear 1 + margin. With 5 rounds that is a ~97 % lower confidence bound on the median ratio, so a
rung whose speed-up is within the noise (a load spike that favoured it once) is never shipped.
Everything else is rejected with a reason; the fallback's own gate failures fail the build.

Reasons and decisions go into the manifest; the measured milliseconds and ratios (which differ from
run to run) go into the target's timings file, so that two clean builds give byte-identical folders.
"""
from __future__ import annotations

import time

import numpy as np

from voxc.core import metrics

DEFAULT_MARGIN = 0.10
DEFAULT_RUNS = 15
ROUNDS = 5
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
                     warmup: int = WARMUP, rounds: int = ROUNDS) -> dict[str, dict]:
    """Latency (ms) of each runner on the same feeds: median, p90 and the median of each round.
    Runs are taken in blocks per runner (so each runtime's thread pool is warm, not fighting the
    previous one's spinning threads), the blocks interleaved over `rounds` rounds in alternating
    order (A B C, C B A) so a load change on a shared machine hits every candidate alike."""
    samples: dict[str, list[list[float]]] = {k: [] for k in runners}
    rounds = max(1, min(rounds, runs))
    order = list(runners)
    per_round = [runs // rounds + (i < runs % rounds) for i in range(rounds)]
    for i, n in enumerate(per_round):
        for k in (order if i % 2 == 0 else order[::-1]):
            r = runners[k]
            for _ in range(warmup if i == 0 else 1):
                r.infer(feeds)
            block = []
            for _ in range(n):
                t0 = time.perf_counter()
                r.infer(feeds)
                block.append((time.perf_counter() - t0) * 1e3)
            samples[k].append(block)
    out = {}
    for k, blocks in samples.items():
        flat = [t for b in blocks for t in b]
        out[k] = {"median_ms": float(np.median(flat)), "p90_ms": float(np.percentile(flat, 90)), "runs": len(flat),
                  "round_ms": [float(np.median(b)) for b in blocks]}
    return out


def speedup(slow: dict, fast: dict) -> dict:
    """How much faster `fast` is than `slow`: the median ratio and its spread over paired rounds
    (low = the worst round, the bound the policy decides on)."""
    if slow.get("round_ms") and len(slow["round_ms"]) == len(fast.get("round_ms", ())):
        ratios = [a / b for a, b in zip(slow["round_ms"], fast["round_ms"])]
    else:                                   # timings from elsewhere (no rounds): the medians only
        ratios = [slow["median_ms"] / fast["median_ms"]]
    return {"ratio": float(np.median(ratios)), "low": float(min(ratios)), "high": float(max(ratios)),
            "rounds": len(ratios)}


def decide(ladder: list[str], gates: dict[str, str | None], timings: dict[str, dict],
           margin: float = DEFAULT_MARGIN) -> dict:
    """gates: precision -> None (passed) or the failure reason; timings: precision -> time_interleaved's.
    Returns {"accepted", "rejected": [{"precision", "reason"}], "fallback", "margin", "speedups"}:
    reasons hold no measured numbers (those are in "speedups"), so decisions compare byte for byte."""
    fallback = ladder[-1]
    accepted = fallback
    rejected, speedups = [], {}
    for p in reversed(ladder[:-1]):
        if gates.get(p) is not None:
            rejected.append({"precision": p, "reason": f"{p} rejected: {gates[p]}"})
            continue
        if p not in timings or accepted not in timings:
            rejected.append({"precision": p, "reason": f"{p} rejected: not timed"})
            continue
        s = speedups[p] = {**speedup(timings[accepted], timings[p]), "versus": accepted}
        if s["low"] < 1.0 + margin:
            rejected.append({"precision": p, "reason": f"{p} rejected: not {1.0 + margin:.2f}x faster than "
                                                       f"{accepted} in every timing round"})
            continue
        accepted = p
    rejected.sort(key=lambda r: ladder.index(r["precision"]))
    return {"accepted": accepted, "rejected": rejected, "fallback": fallback, "margin": margin,
            "fallback_gate": gates.get(fallback), "speedups": speedups}
