"""Length buckets from the corpus: which sizes of each named dim real utterances have.

TensorRT optimization profiles and Core ML enumerated shapes are both cut from these buckets, so
the ranges an engine is tuned for are the ones speech actually falls in. `corpus_lengths(dim)`
reads the committed calibration/parity/refs sets; `buckets(dim, lengths, n)` splits a spec Dim's
[min, max] into n contiguous ranges at corpus quantiles, each with its corpus median as opt.
"""
from __future__ import annotations

import functools

import numpy as np

from voxc.models.spec import Dim


@functools.lru_cache(maxsize=8)
def _corpus(dim_name: str) -> tuple[int, ...]:
    from voxc.calibration.sets import load_set
    if dim_name == "ref_frames":
        return tuple(u.frames for u in load_set("refs"))
    utts = load_set("calibration") + load_set("parity")
    if dim_name == "phonemes":
        return tuple(int(u.phoneme_ids.size) for u in utts if u.aligned)
    if dim_name == "frames":
        return tuple(u.frames for u in utts)
    return ()


def corpus_lengths(dim_name: str) -> np.ndarray:
    """Sizes of `dim_name` over the committed corpus (empty for dims speech does not define)."""
    return np.asarray(_corpus(dim_name), dtype=np.int64)


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
