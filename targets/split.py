"""Running inputs longer than an artifact's range: split into overlapping chunks, crossfade back.

An engine or package accepts lengths up to its profile's max; a longer input is the caller's to
split, never something to truncate silently. `chunked()` cuts the length axis into equal chunks of
at most `max_len` (each overlapping its neighbour by at least `overlap` steps), runs every chunk,
and joins the outputs with linear crossfades normalised to a partition of unity, so the seams
carry no gain change. Convolutional graphs (the vocoder: mel frames -> frames*hop samples) split
well once the overlap exceeds their receptive field; graphs with global attention (acoustic
encoder/decoder) change meaning when split -- rebuild those with a larger range instead.
`stream()` is the streaming form: chunks emitted in order, each run with `context` input steps either
side and trimmed to its own samples (the runtime, the server and Triton's decoupled model use it,
with the context the build's streaming gate accepted; `receptive_radius` measures where to start).
numpy-only: it ships inside device bundles for the application that calls the engine.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from voxc.core.errors import VoxcError


def spans(total: int, max_len: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) chunks of equal length <= max_len covering [0, total), neighbours overlapping >= overlap."""
    if total <= max_len:
        return [(0, total)]
    if not 0 <= overlap < max_len // 2:
        raise VoxcError(f"overlap {overlap} must be in [0, {max_len // 2}) for chunks of at most {max_len}")
    n = math.ceil((total - overlap) / (max_len - overlap))
    length = math.ceil((total + (n - 1) * overlap) / n)
    starts = [round(i * (total - length) / (n - 1)) for i in range(n)]
    return [(s, s + length) for s in starts]


def _window(n: int, ramp_in: int, ramp_out: int) -> np.ndarray:
    w = np.ones(n, dtype=np.float64)
    if ramp_in:
        w[:ramp_in] = (np.arange(ramp_in) + 0.5) / ramp_in
    if ramp_out:
        w[n - ramp_out:] = np.minimum(w[n - ramp_out:], (np.arange(ramp_out)[::-1] + 0.5) / ramp_out)
    return w


def chunked(infer: Callable[[dict], dict], feeds: dict[str, np.ndarray], in_axes: dict[str, int],
            out_axes: dict[str, tuple[int, int]], max_len: int, overlap: int = 16) -> dict[str, np.ndarray]:
    """infer() over overlapping chunks of the length axis; outputs joined with crossfades.

    in_axes: input name -> its length axis; out_axes: output name -> (length axis, samples per input
    step), e.g. the vocoder: {"mel": 2} and {"waveform": (2, 256)}.
    """
    total = {int(feeds[k].shape[a]) for k, a in in_axes.items()}
    if len(total) != 1:
        raise VoxcError(f"inputs disagree on the length to split: {sorted(total)}")
    total_len = total.pop()
    cuts = spans(total_len, max_len, overlap)
    if len(cuts) == 1:
        return infer(feeds)
    acc: dict[str, np.ndarray] = {}
    norm: dict[str, np.ndarray] = {}
    for i, (s, e) in enumerate(cuts):
        part = {k: (np.take(v, np.arange(s, e), axis=in_axes[k]) if k in in_axes else v) for k, v in feeds.items()}
        got = infer(part)
        ramp_in = cuts[i - 1][1] - s if i else 0
        ramp_out = e - cuts[i + 1][0] if i + 1 < len(cuts) else 0
        for name, (axis, scale) in out_axes.items():
            y = got[name].astype(np.float64)
            if y.shape[axis] != (e - s) * scale:
                raise VoxcError(f"output '{name}' has {y.shape[axis]} steps for a {e - s}-step chunk; expected x{scale}")
            if name not in acc:
                shape = list(y.shape)
                shape[axis] = total_len * scale
                acc[name], norm[name] = np.zeros(shape), np.zeros(total_len * scale)
            w = _window((e - s) * scale, ramp_in * scale, ramp_out * scale)
            view = [None] * y.ndim
            view[axis] = slice(None)
            index = [slice(None)] * y.ndim
            index[axis] = slice(s * scale, e * scale)
            acc[name][tuple(index)] += y * w[tuple(view)]
            norm[name][s * scale:e * scale] += w
    out = {}
    for name, (axis, _) in out_axes.items():
        view = [None] * acc[name].ndim
        view[axis] = slice(None)
        out[name] = (acc[name] / norm[name][tuple(view)]).astype(np.float32)
    return out


# ---- streaming: audio out in chunks as soon as the frames for a chunk exist ---------------------

def receptive_radius(infer: Callable[[dict], dict], name: str, out: str, channels: int, hop: int,
                     frames: int = 96, rel_tol: float = 1e-3) -> int:
    """How many frames either side of an input frame change the output (above rel_tol of the largest
    change), measured by perturbing the middle frame of a speech-like input: a graph's receptive field."""
    rng = np.random.default_rng(0)
    base = (-4.0 + 0.5 * rng.standard_normal((1, channels, frames))).astype(np.float32)
    bumped = base.copy()
    c = frames // 2
    bumped[:, :, c] += 1.0
    diff = np.abs(infer({name: bumped})[out].astype(np.float64) - infer({name: base})[out].astype(np.float64)).ravel()
    hit = np.nonzero(diff > rel_tol * diff.max())[0]
    if hit.size == 0:
        return 0
    reach = max(c * hop - hit.min(), hit.max() - (c + 1) * hop, 0)
    return int(math.ceil(reach / hop))


def stream_spans(total: int, chunk: int, first: int, context: int, min_len: int) -> list[tuple[int, int, int, int]]:
    """(emit_start, emit_end, run_start, run_end) per chunk: frames [emit_start, emit_end) are emitted
    from a run over [run_start, run_end), which adds `context` frames each side (never under min_len)."""
    out, s = [], 0
    while s < total:
        e = min(total, s + (first if not out else chunk))
        a, b = max(0, s - context), min(total, e + context)
        while b - a < min(min_len, total):
            a, b = max(0, a - 1), min(total, b + 1)
        out.append((s, e, a, b))
        s = e
    return out


def stream(infer: Callable[[dict], dict], feeds: dict, name: str, out: str, hop: int, chunk: int, first: int,
           context: int, min_len: int = 1):
    """Yields the output of `infer` over `feeds[name]` [.., frames] chunk by chunk (samples per frame: hop):
    each chunk runs with `context` frames of input either side and keeps only its own samples."""
    x = feeds[name]
    for s, e, a, b in stream_spans(x.shape[-1], chunk, first, context, min_len):
        y = infer({**feeds, name: x[..., a:b]})[out]
        yield y[..., (s - a) * hop:(e - a) * hop]
