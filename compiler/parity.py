"""Parity: drive a backend runner and the PyTorch FP32 reference over the spec's length sweep.

Inputs come from `feeds(batch, length)`: the build passes real held-out data cut or tiled to each
sweep length (calibration/feeds.sweep_feeds); the spec's shape-only make_inputs are the fallback
for graphs checked outside a build.

Every point yields rows {model, precision, runtime, length, batch, output, metric, value,
tolerance, passed}. Wrong shapes (a length frozen at export), NaN/Inf, runner errors and metrics
outside the spec's budget are all failures; a failed row fails the build.
"""
from __future__ import annotations

import numpy as np
import torch

from voxc.core import gates, metrics
from voxc.core.errors import first_line
from voxc.models.spec import ModelSpec


def torch_outputs(module: torch.nn.Module, spec: ModelSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        outs = module(*[torch.from_numpy(feeds[t.name]) for t in spec.inputs])
    outs = outs if isinstance(outs, tuple) else (outs,)
    return {t.name: o.numpy() for t, o in zip(spec.outputs, outs)}


def point_inputs(spec: ModelSpec, batch: int, length: int) -> dict[str, np.ndarray]:
    """Deterministic inputs per sweep point, independent of the export example's seed."""
    return spec.make_inputs(batch, length, np.random.default_rng(1000 + 7 * length + batch))


def check(spec: ModelSpec, module: torch.nn.Module, runner, precision: str, runtime: str,
          points: list[tuple[int, int]] | None = None, feeds=None, data: dict | None = None) -> list[dict]:
    """Gate rows for every sweep point; `data` (e.g. the parity set's hash) is copied into each row."""
    rows: list[dict] = []
    make = feeds or (lambda b, n: point_inputs(spec, b, n))
    for batch, length in points or spec.sweep():
        feeds_ = make(batch, length)
        feeds_ = {t.name: feeds_[t.name] for t in spec.inputs}
        sizes = spec.sizes_of(feeds_)
        ref = torch_outputs(module, spec, feeds_)
        base = {"model": spec.name, "precision": precision, "runtime": runtime, "length": length, "batch": batch,
                **(data or {})}

        def row(output, metric, value, tolerance, passed, **extra):
            rows.append({**base, "output": output, "metric": metric, "value": value, "tolerance": tolerance,
                         "passed": bool(passed), **extra})
        try:
            got = runner.infer(feeds_)
        except Exception as exc:
            row("*", "runs", 0.0, 1.0, False, error=first_line(exc) or type(exc).__name__)
            continue
        want = {t.name: list(spec.output_shape(t, sizes)) for t in spec.outputs}
        budgets = {t.kind: spec.budget(precision, t.kind) for t in spec.outputs}
        for r in gates.judge([(t.name, t.kind) for t in spec.outputs], want, ref, got, budgets, spec.sample_rate):
            row(r.pop("output"), r.pop("metric"), r.pop("value"), r.pop("tolerance"), r.pop("passed"))
    return rows


def summarise(rows: list[dict]) -> dict:
    """Per (model, runtime, precision): pass/fail, the worst value of each metric and the budget it was held to."""
    out: dict = {}
    for r in rows:
        key = f"{r['model']}/{r['runtime']}/{r['precision']}"
        s = out.setdefault(key, {"passed": True, "deferred": False, "points": set(), "worst": {}, "budget": {}})
        s["points"].add((r["batch"], r["length"]))
        if r.get("status") == "deferred":  # awaiting the device: neither a pass nor a failure
            s["deferred"] = True
            continue
        s["passed"] &= r["passed"]
        if isinstance(r["value"], float):
            name = f"{r['output']}.{r['metric']}"
            prev = s["worst"].get(name)
            worse = (lambda a, b: a > b) if r["metric"] in metrics.LOWER_IS_BETTER else (lambda a, b: a < b)
            if prev is None or worse(r["value"], prev):
                s["worst"][name] = r["value"]
                if isinstance(r.get("tolerance"), (int, float)):
                    s["budget"][name] = r["tolerance"]
    for s in out.values():
        s["points"] = sorted(s["points"])
    return out
