"""Cut or tile utterance arrays to a requested length (numpy only): how a data item becomes a
sweep point or calibration item at any length, and how a reference fits a graph's range."""
from __future__ import annotations

import numpy as np


def fit(a: np.ndarray, n: int) -> np.ndarray:
    """Cut or tile the last axis of a to exactly n (tiling repeats the utterance)."""
    reps = -(-n // a.shape[-1])
    return np.ascontiguousarray(np.concatenate([a] * reps, axis=-1)[..., :n]) if reps > 1 else np.ascontiguousarray(a[..., :n])


def loudest_start(mel: np.ndarray, n: int) -> int:
    """Start frame of the n-frame window of a log-mel [80, T] with the most energy (0 when n >= T):
    a short sweep point or calibration item is then speech, not an utterance's leading silence."""
    if n >= mel.shape[-1]:
        return 0
    energy = np.exp(mel.astype(np.float64)).sum(axis=0)
    window = np.convolve(energy, np.ones(n), mode="valid")
    return int(np.argmax(window))


def speech_cut(mel: np.ndarray, n: int) -> np.ndarray:
    """fit() of the loudest n-frame window (tiling when n is longer than the utterance)."""
    a = loudest_start(mel, n)
    return fit(mel[..., a:], n)


def cut_to_frames(ids: np.ndarray, durations: np.ndarray, mel: np.ndarray, n: int,
                  min_phones: int) -> tuple[np.ndarray, np.ndarray]:
    """Phonemes and durations (tiled as needed) whose durations sum to exactly n frames, starting at
    the phone where the utterance's loudest n-frame window starts."""
    k0 = min(int(np.searchsorted(np.cumsum(durations), loudest_start(mel, n), side="right")), ids.size - 1)
    reps = -(-n // max(int(durations.sum()), 1)) + 1
    ids_ = np.concatenate([ids[k0:]] + [ids] * reps)
    dur = np.concatenate([durations[k0:]] + [durations] * reps)
    k = int(np.searchsorted(np.cumsum(dur), n)) + 1
    k = max(k, min_phones)
    ids_, dur = ids_[:k].copy(), dur[:k].copy()
    dur[-1] = max(0, n - int(dur[:-1].sum()))
    while dur.sum() > n:     # min_phones forced more phones than fit: shorten from the front
        i = int(np.argmax(dur))
        dur[i] -= 1
    return ids_, dur.astype(np.int64)
