"""Training losses: log-mel L1 (models.audio convention) and the multi-resolution STFT loss
(spectral convergence + log-magnitude L1, Yamamoto et al. 2020, Parallel WaveGAN)."""
from __future__ import annotations

import functools

import torch

from voxc.core import audio

# (n_fft, hop, win) per resolution, the Parallel WaveGAN set.
MRSTFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


@functools.lru_cache(maxsize=None)
def _basis32() -> torch.Tensor:
    return torch.from_numpy(audio.mel_basis())


def log_mel32(wave: torch.Tensor) -> torch.Tensor:
    """float32 log-mel of [..., samples] -> [..., 80, samples // 256], same definition as
    models.audio.log_mel (float64 there) but cheaper for training losses."""
    shape = wave.shape
    x = wave.reshape(-1, 1, shape[-1])
    x = torch.nn.functional.pad(x, (audio.PAD, audio.PAD), mode="reflect").squeeze(1)
    window = torch.hann_window(audio.WIN, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, audio.N_FFT, hop_length=audio.HOP, win_length=audio.WIN, window=window,
                      center=False, onesided=True, return_complex=True)
    mag = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + audio.MAG_EPS)
    mel = torch.log(torch.clamp(_basis32().to(x.device) @ mag, min=audio.LOG_FLOOR))
    return mel.reshape(*shape[:-1], audio.N_MELS, mel.shape[-1])


def mel_l1(wave_hat: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    m = log_mel32(wave_hat)
    n = min(m.shape[-1], mel.shape[-1])
    return (m[..., :n] - mel[..., :n]).abs().mean()


def _stft_mag(x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    window = torch.hann_window(win, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=win, window=window, return_complex=True)
    return torch.sqrt(torch.clamp(spec.real.pow(2) + spec.imag.pow(2), min=1e-7))


def mrstft(wave_hat: torch.Tensor, wave: torch.Tensor, resolutions=MRSTFT_RESOLUTIONS) -> torch.Tensor:
    """Mean over resolutions of spectral convergence + mean |log mag - log mag_hat|.
    Inputs [B, samples] or [B, 1, samples]; 0 for identical signals."""
    x_hat = wave_hat.reshape(-1, wave_hat.shape[-1])
    x = wave.reshape(-1, wave.shape[-1])
    n = min(x.shape[-1], x_hat.shape[-1])
    x_hat, x = x_hat[:, :n], x[:, :n]
    total = x.new_zeros(())
    for n_fft, hop, win in resolutions:
        m_hat, m = _stft_mag(x_hat, n_fft, hop, win), _stft_mag(x, n_fft, hop, win)
        sc = torch.linalg.norm(m - m_hat, dim=(-2, -1)) / torch.clamp(torch.linalg.norm(m, dim=(-2, -1)), min=1e-7)
        mag = (torch.log(m) - torch.log(m_hat)).abs().mean(dim=(-2, -1))
        total = total + (sc + mag).mean()
    return total / len(resolutions)
