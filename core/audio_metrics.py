"""Audio-domain parity metrics: what a listener would notice, on top of the elementwise ones.

core/metrics.compare() calls these per output kind:
waveform -> SNR on voiced frames, multi-resolution STFT distance, log-mel L1, mel-cepstral
distortion, level change, and the perceptual metrics of core/perceptual (PESQ, STOI, DNSMOS);
mel -> log-mel L1 and MCD (the graph's mel output is already a log-mel).
All take the PyTorch FP32 output as reference and one item ([samples] or [80, frames]) at a time.
"""
from __future__ import annotations

import functools

import numpy as np

from voxc.core import audio, perceptual
from voxc.core.directions import LOWER_IS_BETTER

# (n_fft, hop) pairs of the multi-resolution STFT distance (Parallel WaveGAN's loss resolutions,
# scaled to 16 kHz).
STFT_RESOLUTIONS = ((256, 64), (512, 128), (1024, 256))
SPEECH_RANGE_DB = 40.0   # frames within 40 dB of the loudest one count as speech (silence is left out,
                         # as MCD is usually computed: log-spectra of near-silence are all noise floor)
MCD_COEFFS = 24          # mel-cepstral coefficients c1..c24 (c0, the loudness, is left out)
_MCD_SCALE = 10.0 / np.log(10.0) * np.sqrt(2.0)


@functools.lru_cache(maxsize=None)
def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II: the mel cepstrum of a log-mel frame is dct @ frame."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    m = np.cos(np.pi * k * (2 * i + 1) / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


def speech_frames(ref_logmel: np.ndarray) -> np.ndarray:
    """Frames of a natural-log mel [80, T] whose energy is within SPEECH_RANGE_DB of the loudest."""
    power = np.log10(np.maximum(np.exp(ref_logmel.astype(np.float64)).sum(axis=0), 1e-20)) * 20.0
    return power >= power.max() - SPEECH_RANGE_DB


def mcd_db(ref_logmel: np.ndarray, out_logmel: np.ndarray) -> float:
    """Mel-cepstral distortion (dB) between two natural-log mels [80, T], mean over speech frames:
    10/ln10 * sqrt(2 * sum_d (c_d - c'_d)^2), c = DCT-II of the log-mel, d = 1..MCD_COEFFS."""
    keep = speech_frames(ref_logmel)
    d = _dct_matrix(ref_logmel.shape[0])[1:MCD_COEFFS + 1]
    diff = d @ (out_logmel[:, keep].astype(np.float64) - ref_logmel[:, keep].astype(np.float64))
    return float(np.mean(_MCD_SCALE * np.sqrt(np.sum(diff ** 2, axis=0))))


def logmel_l1(ref_logmel: np.ndarray, out_logmel: np.ndarray) -> float:
    """Mean |log-mel difference| (natural log) over speech frames."""
    keep = speech_frames(ref_logmel)
    return float(np.mean(np.abs(out_logmel[:, keep].astype(np.float64) - ref_logmel[:, keep].astype(np.float64))))


def _stft_mag(wave: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    x = np.pad(wave.astype(np.float64), (n_fft // 2, n_fft // 2), mode="reflect" if wave.size > n_fft // 2 else "constant")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    return np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=-1))


def mrstft(ref: np.ndarray, out: np.ndarray) -> float:
    """Multi-resolution STFT distance: spectral convergence + mean |log-magnitude| difference,
    averaged over STFT_RESOLUTIONS (lower is better; 0 for identical signals)."""
    total = 0.0
    for n_fft, hop in STFT_RESOLUTIONS:
        r, o = _stft_mag(ref, n_fft, hop), _stft_mag(out, n_fft, hop)
        sc = np.linalg.norm(o - r) / max(np.linalg.norm(r), 1e-9)
        mag = np.mean(np.abs(np.log(np.maximum(o, 1e-5)) - np.log(np.maximum(r, 1e-5))))
        total += sc + mag
    return float(total / len(STFT_RESOLUTIONS))


def voiced_frames(ref: np.ndarray) -> np.ndarray:
    """Boolean mask over log-mel frames: voiced by the YIN tracker of models.audio; when the reference
    has no voiced frame (an untrained vocoder makes noise), its louder half of frames instead."""
    f0, energy = audio.pitch_energy(ref.astype(np.float32))
    voiced = f0 > 0
    if not voiced.any():
        voiced = energy >= np.median(energy)
    return voiced


def voiced_snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    """SNR over the samples of the reference's voiced frames only (noise there is what one hears)."""
    mask = np.repeat(voiced_frames(ref), audio.HOP)[: ref.size]
    r, o = ref[: mask.size][mask].astype(np.float64), out[: mask.size][mask].astype(np.float64)
    noise = np.sum((o - r) ** 2)
    return float(min(200.0, 10 * np.log10(max(np.sum(r ** 2), 1e-20) / max(noise, 1e-20))))


def level_db(ref: np.ndarray, out: np.ndarray) -> float:
    """|loudness change| in dB (RMS over the whole item): PESQ and STOI align levels, so a gain change
    is this metric's to catch."""
    rms = lambda x: np.sqrt(np.mean(x.astype(np.float64) ** 2))
    return float(min(200.0, abs(20 * np.log10(max(rms(out), 1e-10) / max(rms(ref), 1e-10)))))


def waveform_metrics(ref: np.ndarray, out: np.ndarray, wanted=perceptual.METRICS,
                     sample_rate: int = audio.SAMPLE_RATE) -> dict[str, float]:
    """Audio metrics for waveforms [B, 1, samples] at sample_rate: the worst item of the batch for each
    metric; the perceptual ones (core/perceptual.py) named in `wanted`, on items long enough for them.
    Audio at another rate than the metrics' analysis rate (16 kHz) is resampled to it first, so every
    metric hears the same band whatever rate the vocoder makes."""
    rows = []
    for r, o in zip(ref.reshape(ref.shape[0], -1), out.reshape(out.shape[0], -1)):
        if sample_rate != audio.SAMPLE_RATE:
            from voxc.core.mel import resample
            r, o = resample(r, sample_rate, audio.SAMPLE_RATE), resample(o, sample_rate, audio.SAMPLE_RATE)
        if r.size <= audio.PAD:   # too short for a spectrum: the elementwise metrics judge it
            continue
        rm, om = audio.log_mel(r), audio.log_mel(o)
        rows.append({"snr_voiced_db": voiced_snr_db(r, o), "mrstft": mrstft(r, o),
                     "logmel_l1": logmel_l1(rm, om), "mcd_db": mcd_db(rm, om), "level_db": level_db(r, o),
                     **perceptual.scores(r, o, wanted)})
    return _worst(rows)


def mel_metrics(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """Metrics for log-mel outputs [B, 80, frames]."""
    return _worst([{"logmel_l1": logmel_l1(r, o), "mcd_db": mcd_db(r, o)} for r, o in zip(ref, out)])


def _worst(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = dict.fromkeys(k for r in rows for k in r)
    return {k: (max if k in LOWER_IS_BETTER else min)(r[k] for r in rows if k in r) for k in keys}
