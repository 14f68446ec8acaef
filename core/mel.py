"""A mel front end declared as data, and the resampling the audio metrics need.

A family whose vocoder was trained on its own mel (sample rate, FFT size, window, hop, band edges,
log floor and base) declares it once as a `MelFrontEnd`; the user's audio folder
(calibration/audio_folder.py) is turned into that vocoder's inputs with it, and the waveform metrics
read the sample rate from the graph's ModelSpec. numpy only (it ships in device bundles with core/).

The frame convention is HiFi-GAN's: reflect-pad (n_fft - hop) // 2 samples on both sides, STFT
without centring, a Hann window of `win` samples centred in `n_fft`, magnitude sqrt(re² + im² + 1e-9),
a slaney mel filterbank, log(max(x, log_floor)) in the declared base; `samples // hop` frames.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

from voxc.core.errors import VoxcError

MAG_EPS = 1e-9


@dataclass(frozen=True)
class MelFrontEnd:
    sample_rate: int = 16000
    n_fft: int = 1024
    win: int = 1024
    hop: int = 256
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    log_floor: float = 1e-5
    log_base: str = "e"          # "e" (natural log) or "10"

    def __post_init__(self):
        problems = []
        if not (0 < self.win <= self.n_fft and 0 < self.hop <= self.n_fft):
            problems.append(f"need 0 < win <= n_fft and 0 < hop <= n_fft (win {self.win}, hop {self.hop}, "
                            f"n_fft {self.n_fft})")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            problems.append(f"need 0 <= fmin < fmax <= sample_rate / 2 (fmin {self.fmin}, fmax {self.fmax}, "
                            f"sample_rate {self.sample_rate})")
        if self.log_base not in ("e", "10") or not self.log_floor > 0 or self.n_mels < 1:
            problems.append("log_base must be 'e' or '10', log_floor > 0 and n_mels >= 1")
        if problems:
            raise VoxcError(f"mel front end {self.to_json()}: {'; '.join(problems)}")

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def pad(self) -> int:
        return (self.n_fft - self.hop) // 2

    def log_mel(self, wave: np.ndarray) -> np.ndarray:
        """[..., samples] float audio at sample_rate -> float32 log-mel [..., n_mels, samples // hop]."""
        wave = np.asarray(wave, np.float64)
        if wave.shape[-1] <= self.pad:
            raise VoxcError(f"audio of {wave.shape[-1]} samples is too short for this mel front end "
                            f"(needs more than {self.pad})")
        padded = np.pad(wave, [(0, 0)] * (wave.ndim - 1) + [(self.pad, self.pad)], mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft, axis=-1)[..., ::self.hop, :]
        frames = frames[..., : wave.shape[-1] // self.hop, :]
        spec = np.fft.rfft(frames * _window(self.n_fft, self.win), axis=-1)
        mag = np.sqrt(spec.real ** 2 + spec.imag ** 2 + MAG_EPS)
        mel = np.matmul(mag, _basis(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax).T)
        logged = np.log(np.maximum(mel, self.log_floor))
        if self.log_base == "10":
            logged = logged / math.log(10.0)
        return np.swapaxes(logged, -1, -2).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _window(n_fft: int, win: int) -> np.ndarray:
    n = np.arange(win, dtype=np.float64)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win)      # periodic Hann, as torch.hann_window
    left = (n_fft - win) // 2
    return np.pad(w, (left, n_fft - win - left))


def _hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp, logstep = 200.0 / 3, np.log(6.4) / 27.0
    return np.where(f >= 1000.0, 1000.0 / f_sp + np.log(np.maximum(f, 1e-10) / 1000.0) / logstep, f / f_sp)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, logstep = 200.0 / 3, np.log(6.4) / 27.0
    return np.where(m >= 1000.0 / f_sp, 1000.0 * np.exp(logstep * (m - 1000.0 / f_sp)), f_sp * m)


@functools.lru_cache(maxsize=8)
def _basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Slaney mel filterbank (librosa's default) [n_mels, n_fft // 2 + 1]."""
    fft_freqs = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    weights = np.maximum(0.0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]))
    return weights * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]


def resample(wave: np.ndarray, rate_from: int, rate_to: int) -> np.ndarray:
    """Band-limited resampling along the last axis (FFT method; the output has round(n * to / from)
    samples). Used where a metric is defined at one rate (PESQ-WB and DNSMOS at 16 kHz)."""
    wave = np.asarray(wave)
    if rate_from == rate_to:
        return wave
    n = wave.shape[-1]
    m = max(1, int(round(n * rate_to / rate_from)))
    spec = np.fft.rfft(wave.astype(np.float64), axis=-1)
    keep = min(spec.shape[-1], m // 2 + 1)
    out = np.zeros(wave.shape[:-1] + (m // 2 + 1,), np.complex128)
    out[..., :keep] = spec[..., :keep]
    return (np.fft.irfft(out, n=m, axis=-1) * (m / n)).astype(wave.dtype if wave.dtype.kind == "f" else np.float32)
