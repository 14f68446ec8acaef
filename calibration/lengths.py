"""Which sizes real utterances give each named dim: what the compiler hands a backend that cuts shape
ranges from speech (TensorRT optimization profiles, Core ML enumerated shapes; targets/lengths.py
splits a range into buckets at these lengths' quantiles). Read from the committed calibration, parity
and reference sets.
"""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=8)
def corpus_lengths(dim_name: str) -> tuple[int, ...]:
    """Sizes of `dim_name` over the committed corpus (empty for dims speech does not define)."""
    from voxc.calibration.sets import load_set
    if dim_name == "ref_frames":
        return tuple(u.frames for u in load_set("refs"))
    utts = load_set("calibration") + load_set("parity")
    if dim_name == "phonemes":
        return tuple(int(u.phoneme_ids.size) for u in utts if u.aligned)
    if dim_name == "frames":
        return tuple(u.frames for u in utts)
    return ()


def lengths_for(spec) -> dict[str, list[int]]:
    """{dim: sorted sizes} for every dynamic dim of a ModelSpec but the batch."""
    return {d: sorted(corpus_lengths(d)) for d in sorted(spec.dynamic_dims()) if d != "batch"}
