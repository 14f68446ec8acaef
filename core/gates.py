"""The parity gates for one inference: shapes, finiteness, then every budgeted metric per output.

numpy-only (with compiler/metrics.py): host parity (compiler/parity.py) and the device bundle's
verifier both call `judge`, so a device is held to exactly the gates the host build applies.
"""
from __future__ import annotations

import numpy as np

from voxc.core import metrics, perceptual


def judge(outputs: list[tuple[str, str]], want: dict[str, list[int]], ref: dict[str, np.ndarray],
          got: dict[str, np.ndarray], budgets: dict[str, dict[str, float]], sample_rate: int = 16000) -> list[dict]:
    """Rows {output, metric, value, tolerance, passed} for outputs [(name, kind)] against the reference.

    want: the shape each output must have; budgets: kind -> {metric: tolerance}, a tolerance of None
    recording the metric without gating on it (`diagnostic: true`). A perceptual metric is judged only on
    items long enough for it; one this host cannot compute (a device without the packages) fails, saying so.
    sample_rate: the rate of the waveform outputs (the graph's ModelSpec says it).
    """
    rows = []
    for name, kind in outputs:
        out = got.get(name)
        shape = list(out.shape) if out is not None else None
        if shape != list(want[name]) or list(ref[name].shape) != list(want[name]):
            rows.append({"output": name, "metric": "shape", "value": str(shape), "tolerance": str(list(want[name])),
                         "passed": False})
            continue
        if out.dtype.kind == "f" and not np.isfinite(out).all():
            rows.append({"output": name, "metric": "finite", "value": 0.0, "tolerance": 1.0, "passed": False})
            continue
        budget = budgets[kind]
        values = metrics.compare(kind, ref[name], out, [k for k, t in budget.items() if k in perceptual.METRICS],
                                 sample_rate)
        for metric, tol in budget.items():
            value = values.get(metric)
            extra = {"diagnostic": True} if tol is None else {}
            if value is None and metric in perceptual.METRICS:
                why = perceptual.missing(metric) if perceptual.long_enough(ref[name], sample_rate) else None
                if why is None or tol is None:     # too short to judge, or a diagnostic: no row
                    continue
                extra = {"error": f"{metric} cannot be computed here: {why}"}
            rows.append({"output": name, "metric": metric, "value": value, "tolerance": tol,
                         "passed": bool(metrics.passes(metric, value, tol)), **extra})
    return rows
