"""Parity metrics per output kind, and which direction each one passes in.

Elementwise metrics apply to every float output; waveforms add SNR and the audio metrics of
core/audio_metrics (voiced SNR, multi-resolution STFT, log-mel L1, MCD, level change, and the
perceptual PESQ / STOI / DNSMOS of core/perceptual); mels add log-mel L1
and MCD; integer durations use the exact-match rate and the relative drift of the total frame count.
"""
from __future__ import annotations

import numpy as np

from voxc.core import audio_metrics
from voxc.core.directions import LOWER_IS_BETTER, passes  # noqa: F401 (re-exported)


def elementwise(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    r, o = ref.astype(np.float64).ravel(), out.astype(np.float64).ravel()
    diff = o - r
    nr, no = np.linalg.norm(r), np.linalg.norm(o)
    return {
        "max_abs": float(np.max(np.abs(diff))) if diff.size else 0.0,
        "rel_l2": float(np.linalg.norm(diff) / max(nr, 1e-12)),
        "cosine": float(r @ o / (nr * no)) if nr > 0 and no > 0 else float(nr == no),
    }


def snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    r = ref.astype(np.float64)
    noise = np.sum((out.astype(np.float64) - r) ** 2)
    return float(min(200.0, 10 * np.log10(max(np.sum(r ** 2), 1e-20) / max(noise, 1e-20))))


def durations(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    total = max(int(ref.sum()), 1)
    return {"exact_match": float(np.mean(ref == out)),
            "frame_drift": float(abs(int(out.sum()) - int(ref.sum())) / total)}


def compare(kind: str, ref: np.ndarray, out: np.ndarray, perceptual=audio_metrics.perceptual.METRICS,
            sample_rate: int = audio_metrics.audio.SAMPLE_RATE) -> dict[str, float]:
    """All metrics for one output of the given kind (shapes already known to match); of the (costly)
    perceptual waveform metrics only those named in `perceptual`; waveforms are audio at sample_rate."""
    if kind == "durations":
        return durations(ref, out)
    values = elementwise(ref, out)
    if kind == "waveform":
        values["snr_db"] = snr_db(ref, out)
        values.update(audio_metrics.waveform_metrics(ref, out, perceptual, sample_rate))
    elif kind == "mel":
        values.update(audio_metrics.mel_metrics(ref, out))
    return values
