"""TensorRT optimization profiles derived from a ModelSpec and the corpus length distribution.

One profile per length bucket of the spec's sweep dim (targets/lengths.py), when one range would
cost speed: TensorRT tunes kernels for a profile's opt shape, so a 8..1024-frame range tuned at 320
runs short and long inputs slower than buckets tuned near their own lengths. A profile gives every
input its min/opt/max shape; other dynamic dims keep their full spec range. `select()` picks the
tightest profile for concrete sizes and refuses sizes no profile covers: the caller splits those
(targets/split.py), nothing is truncated.
"""
from __future__ import annotations

from voxc.models.spec import ModelSpec, resolve_dim
from voxc.targets.lengths import buckets, corpus_lengths
from voxc.targets.trt_engine import select_profile as select  # noqa: F401 -- the runner's choice, re-exported

DEFAULTS = {"max_profiles": 3, "split_ratio": 8.0, "opt_batch": 1}


def derive(spec: ModelSpec, options: dict | None = None) -> list[dict]:
    """[{name, ranges: {dim: [lo, opt, hi]}, shapes: {input: {min, opt, max}}}] covering the spec's ranges."""
    opts = {**DEFAULTS, **(options or {})}
    dyn = sorted(spec.dynamic_dims())
    sweep = spec.sweep_dim if spec.sweep_dim in dyn else None
    split = []
    if sweep:
        d = spec.dims[sweep]
        n = int(opts["max_profiles"]) if d.max / max(d.min, 1) > float(opts["split_ratio"]) else 1
        split = buckets(d, corpus_lengths(opts, sweep), n)
    profiles = []
    for i, bucket in enumerate(split or [None]):
        ranges = {}
        for name in dyn:
            d = spec.dims[name]
            if name == sweep and bucket:
                ranges[name] = list(bucket)
            elif name == "batch":
                ranges[name] = [d.min, min(max(int(opts["opt_batch"]), d.min), d.max), d.max]
            else:
                ranges[name] = [d.min, _corpus_opt(corpus_lengths(opts, name), d), d.max]
        profiles.append({"name": f"p{i}", "ranges": ranges, "shapes": _shapes(spec, ranges)})
    return profiles


def _corpus_opt(lengths, d) -> int:
    inside = lengths[(lengths >= d.min) & (lengths <= d.max)]
    return int(sorted(inside)[len(inside) // 2]) if inside.size else d.opt


def _shapes(spec: ModelSpec, ranges: dict) -> dict:
    out = {}
    for t in spec.inputs:
        out[t.name] = {k: [resolve_dim(d, {n: r[i] for n, r in ranges.items()}) for d in t.dims]
                       for i, k in enumerate(("min", "opt", "max"))}
    return out
