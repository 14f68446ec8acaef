"""Length buckets: TensorRT optimization profiles and Core ML enumerated shapes are both cut at the
sizes real utterances have, so the ranges an engine is tuned for are the ones speech falls in. The
sizes come in the build options (`corpus_lengths`, {dim: [sizes]}: calibration/lengths.py, handed over
by the compiler); `buckets(dim, lengths, n)` splits a spec Dim's [min, max] into n contiguous ranges at
their quantiles, each with its median as opt.
"""
from __future__ import annotations

import numpy as np

from voxc.models.spec import Dim


def corpus_lengths(options: dict | None, dim_name: str) -> np.ndarray:
    """The sizes of `dim_name` the compiler handed over in the options (empty when it gave none)."""
    return np.asarray(((options or {}).get("corpus_lengths") or {}).get(dim_name, ()), dtype=np.int64)


def buckets(dim: Dim, lengths: np.ndarray, n: int) -> list[tuple[int, int, int]]:
    """Up to n contiguous (lo, opt, hi) ranges covering [dim.min, dim.max].

    Cuts sit at equal-count quantiles of the corpus lengths inside the range, so each bucket holds
    about the same share of real utterances; opt is the bucket's corpus median (the spec's opt when
    the corpus says nothing). The last bucket always reaches dim.max: longer inputs are split by
    the caller, never truncated.
    """
    inside = np.sort(lengths[(lengths >= dim.min) & (lengths <= dim.max)]) if lengths.size else lengths
    if n <= 1 or inside.size < 2 * n:
        return [(dim.min, _clip(dim.opt if inside.size == 0 else int(np.median(inside)), dim.min, dim.max), dim.max)]
    cuts = sorted({int(np.quantile(inside, q)) for q in np.linspace(0, 1, n + 1)[1:-1]} - {dim.min, dim.max})
    edges = [dim.min] + [c for c in cuts if dim.min < c < dim.max] + [dim.max]
    out = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        lo = lo if i == 0 else lo + 1
        members = inside[(inside >= lo) & (inside <= hi)]
        opt = int(np.median(members)) if members.size else (lo + hi) // 2
        out.append((lo, _clip(opt, lo, hi), hi))
    return out


def _clip(v: int, lo: int, hi: int) -> int:
    return int(min(max(v, lo), hi))
