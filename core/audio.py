"""Audio features shared by the whole flow: corpus → training → vocoder loss → parity checks.

One definition of the 80-band log-mel (HiFi-GAN convention) so that the corpus, the
training losses and the parity sweeps all agree:

* 16 kHz mono float32 in [-1, 1]; STFT n_fft=1024, hop=256, hann window of 1024;
* reflect-pad (N_FFT - HOP) // 2 = 384 samples on both sides, STFT with center=False, so
  a wave of ``frames * 256`` samples gives exactly ``frames`` mel frames;
* magnitude ``sqrt(re² + im² + 1e-9)``, slaney mel filterbank (librosa's default, built
  here with numpy), natural ``log(clamp(x, 1e-5))``.

``log_mel`` takes a numpy array or a torch tensor of shape ``[..., samples]`` and returns
the same type, shape ``[..., 80, samples // 256]``; the torch path is differentiable (it
computes in float64 and casts back to the input dtype) and the numpy path agrees with it
to 1e-4 (in practice ~1e-6). ``pitch_energy`` gives per-frame F0 (Hz, 0 when
unvoiced; YIN-style, numpy only) and per-frame energy (L2 norm of the magnitude frame),
both aligned with ``log_mel``'s frames.
"""

from __future__ import annotations

import functools
import sys

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 256
WIN = 1024
N_MELS = 80
FMIN = 0.0
FMAX = 8000.0
PAD = (N_FFT - HOP) // 2  # 384: makes frames == samples // HOP with center=False
LOG_FLOOR = 1e-5
MAG_EPS = 1e-9

# Pitch tracker range (Hz) and YIN threshold.
F0_MIN = 60.0
F0_MAX = 500.0
YIN_THRESHOLD = 0.15


def _hz_to_mel(f):
    """Slaney mel scale (linear below 1 kHz, log above), as librosa with htk=False."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * m
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


@functools.lru_cache(maxsize=None)
def _mel_basis64() -> np.ndarray:
    fft_freqs = np.linspace(0.0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]  # slaney area normalisation
    return weights


def mel_basis() -> np.ndarray:
    """Slaney-style mel filterbank, float32 ``[N_MELS, N_FFT // 2 + 1]`` (a fresh copy)."""
    return _mel_basis64().astype(np.float32)


@functools.lru_cache(maxsize=None)
def hann() -> np.ndarray:
    n = np.arange(WIN, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / WIN)  # periodic, == torch.hann_window(WIN)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _frames_np(wave: np.ndarray) -> np.ndarray:
    """[..., samples] → reflect-padded frames [..., frames, N_FFT] (a strided view)."""
    if wave.shape[-1] <= PAD:
        raise ValueError(f"wave too short for reflect padding: {wave.shape[-1]} samples (need > {PAD})")
    pad = [(0, 0)] * (wave.ndim - 1) + [(PAD, PAD)]
    padded = np.pad(wave, pad, mode="reflect")
    n_frames = (padded.shape[-1] - N_FFT) // HOP + 1
    return np.lib.stride_tricks.sliding_window_view(padded, N_FFT, axis=-1)[..., ::HOP, :][..., :n_frames, :]


def _magnitude_np(wave: np.ndarray) -> np.ndarray:
    """Magnitude spectrogram [..., N_FFT//2+1, frames] in float64."""
    frames = _frames_np(np.asarray(wave, dtype=np.float64))
    spec = np.fft.rfft(frames * hann(), n=N_FFT, axis=-1)
    mag = np.sqrt(spec.real**2 + spec.imag**2 + MAG_EPS)
    return np.swapaxes(mag, -1, -2)


def _log_mel_torch(wave):
    # The caller holds a tensor, so torch is loaded: take it from sys.modules rather than importing
    # it, which keeps this module numpy-only for the device bundles that ship it (compiler/bundle.py).
    torch = sys.modules["torch"]

    shape = wave.shape
    out_dtype = wave.dtype if torch.is_floating_point(wave) else torch.float32
    # float64 inside: float32 FFT rounding alone moves quiet bins of loud frames by >1e-4 in
    # log space; in float64 numpy, CPU and GPU agree to ~1e-6. Casts keep gradients.
    x = wave.reshape(-1, 1, shape[-1]).to(torch.float64)
    x = torch.nn.functional.pad(x, (PAD, PAD), mode="reflect").squeeze(1)
    window = torch.hann_window(WIN, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, N_FFT, hop_length=HOP, win_length=WIN, window=window,
                      center=False, normalized=False, onesided=True, return_complex=True)
    mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + MAG_EPS)
    basis = torch.from_numpy(_mel_basis64()).to(device=x.device, dtype=x.dtype)
    mel = torch.matmul(basis, mag)
    out = torch.log(torch.clamp(mel, min=LOG_FLOOR)).to(out_dtype)
    return out.reshape(*shape[:-1], N_MELS, out.shape[-1])


def log_mel(wave):
    """Log-mel of ``wave`` [..., samples] → [..., 80, samples // 256] (numpy in → numpy out,
    torch in → torch out; the torch path keeps gradients, device and float dtype)."""
    if _is_torch(wave):
        return _log_mel_torch(wave)
    wave = np.asarray(wave)
    mel = np.matmul(_mel_basis64(), _magnitude_np(wave))
    return np.log(np.maximum(mel, LOG_FLOOR)).astype(np.float32)


def frame_energy(wave: np.ndarray) -> np.ndarray:
    """Per-frame energy: L2 norm over frequency of the magnitude spectrum frame, [..., frames]."""
    return np.sqrt(np.sum(_magnitude_np(np.asarray(wave)) ** 2, axis=-2)).astype(np.float32)


def _yin_f0(wave: np.ndarray) -> np.ndarray:
    """YIN F0 for a 1-D wave, one value per log_mel frame (frame t centred on sample
    t*HOP + HOP/2, a 1024-sample window); 0 for unvoiced frames."""
    frames = _frames_np(np.asarray(wave, dtype=np.float64))  # [T, N_FFT]
    n_t = frames.shape[0]
    tau_min = int(SAMPLE_RATE / F0_MAX)
    tau_max = int(np.ceil(SAMPLE_RATE / F0_MIN))
    w = N_FFT - tau_max  # integration window
    frames = frames - frames.mean(axis=1, keepdims=True)
    n = 2 * N_FFT
    # acf[tau] = sum_{j<w} x[j] x[j+tau]
    acf = np.fft.irfft(np.conj(np.fft.rfft(frames[:, :w], n)) * np.fft.rfft(frames, n), n)[:, : tau_max + 1]
    csum = np.concatenate([np.zeros((n_t, 1)), np.cumsum(frames**2, axis=1)], axis=1)
    taus = np.arange(tau_max + 1)
    e0 = csum[:, w:w + 1]
    e_tau = csum[:, taus + w] - csum[:, taus]
    diff = np.maximum(e0 + e_tau - 2.0 * acf, 0.0)
    cmndf = np.ones_like(diff)
    cum = np.cumsum(diff[:, 1:], axis=1)
    cmndf[:, 1:] = diff[:, 1:] * taus[1:] / np.maximum(cum, 1e-12)

    search = cmndf[:, tau_min:tau_max]
    below = search < YIN_THRESHOLD
    has = below.any(axis=1)
    idx = np.where(has, below.argmax(axis=1), search.argmin(axis=1))
    rows = np.arange(n_t)
    for _ in range(tau_max - tau_min):  # descend to the local minimum after the first dip
        nxt = np.minimum(idx + 1, search.shape[1] - 1)
        step = search[rows, nxt] < search[rows, idx]
        if not step.any():
            break
        idx = np.where(step, nxt, idx)
    tau = idx + tau_min
    # parabolic interpolation around the minimum
    left = cmndf[rows, np.maximum(tau - 1, 1)]
    mid = cmndf[rows, tau]
    right = cmndf[rows, np.minimum(tau + 1, tau_max)]
    denom = left - 2 * mid + right
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0.0)
    f0 = SAMPLE_RATE / (tau + np.clip(shift, -1, 1))

    # voicing: a clear periodic dip and enough energy relative to the loudest frame
    rms = np.sqrt(np.mean(frames[:, (N_FFT - HOP) // 2:(N_FFT + HOP) // 2] ** 2, axis=1))
    loud = rms > max(rms.max(), 1e-8) * 10 ** (-40 / 20)
    voiced = has & (mid < YIN_THRESHOLD) & loud & (rms > 1e-4)
    return np.where(voiced, f0, 0.0).astype(np.float32)


def pitch_energy(wave) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (F0 Hz, 0 = unvoiced; energy) for a 1-D wave, frames aligned with log_mel."""
    if _is_torch(wave):
        wave = wave.detach().cpu().numpy()
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"pitch_energy expects a 1-D wave, got shape {wave.shape}")
    return _yin_f0(wave), frame_energy(wave)


def joined(pieces, fade_ms: float = 8.0):
    """Consecutive segments' audio as a stream of arrays: each (wave, pause) piece faded out and the
    next faded in over `fade_ms` (no clicks at a cut), with `pause` seconds of silence after it
    (none after the last). Holds one piece at a time, so memory does not grow with the text."""
    fade = int(SAMPLE_RATE * fade_ms / 1000)
    held, first = None, True
    for wave, pause in pieces:
        if held is not None:
            yield from _faded(*held, first, False)
            first = False
        held = (np.asarray(wave, np.float32).copy(), pause, fade)
    if held is not None:
        yield from _faded(*held, first, True)


def _faded(w: np.ndarray, pause: float, fade: int, first: bool, last: bool):
    n = min(fade, len(w) // 2)
    if n:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        if not first:
            w[:n] *= ramp
        if not last:
            w[-n:] *= ramp[::-1]
    yield w
    if not last and pause > 0:
        yield np.zeros(int(round(pause * SAMPLE_RATE)), np.float32)


def join_segments(waves: list[np.ndarray], pauses: list[float], fade_ms: float = 8.0) -> np.ndarray:
    """`joined` as one array."""
    parts = list(joined(zip(waves, pauses), fade_ms))
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)
