"""vocoder graph, Vocos family (Siuzdak 2023): mel [B, 80, frames] -> waveform [B, 1, frames*hop].

ConvNeXt blocks run at frame rate and predict, per frame, a phase for each STFT bin and a correction
to a log-magnitude prior: the mel's least-squares linear spectrum, max(pinv(mel_basis) @ exp(mel),
1e-5) -- the magnitude Griffin-Lim starts from -- so training spends itself on phase and fine
spectral detail instead of re-learning the mel filterbank. An inverse STFT written with plain tensor
ops (a four-step inverse FFT of small constant matrix products, then overlap-add by concatenating
and summing) makes the waveform. Every op exports to ONNX with a
dynamic frame axis and runs on ONNX Runtime, OpenVINO, TensorRT and Core ML alike. The framing
matches models.audio (hann window, reflect-free "same" padding of (n_fft - hop) / 2), so frame t of
the input mel describes the same samples the vocoder writes for it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from voxc.core.audio import LOG_FLOOR, mel_basis
from voxc.models.voxc.presets import VOCODERS


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, intermediate: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate)
        self.pwconv2 = nn.Linear(intermediate, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1.0 / 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T]
        y = self.dwconv(x).transpose(1, 2)
        y = self.pwconv2(nn.functional.gelu(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class InverseDFT(nn.Module):
    """Onesided spectrum [B, T, 2F] (real parts, then imaginary parts) -> hann-windowed frames
    [B, T, n_fft], i.e. window * irfft(re + i im), as a four-step FFT (Bailey 1990) written with
    small constant matrix products: n_fft = N1 * N2, bin k = k1 + N1 k2 and sample n = N2 n1 + n2, so
    the n_fft-point inverse DFT is N2-point DFTs over k2, a twiddle, N1-point DFTs over k1 and one
    transpose -- 2 * 64 * 32 * 32 multiply-adds a frame at n_fft 1024 instead of the dense basis's
    1026 * 1024 (ONNX's DFT op measured 2.6x slower than the dense product on ONNX Runtime's CPU
    provider, and TensorRT has none). The Nyquist bin (k = n_fft / 2, real by symmetry) is added
    as (-1)^n. Its constants (initializers idft.basis_*) are kept float by the int8 profiles."""

    def __init__(self, n_fft: int):
        super().__init__()
        n1 = 2 ** (int(np.log2(n_fft)) // 2)
        n2, self.n_fft = n_fft // n1, n_fft
        assert n1 * n2 == n_fft and n2 % 2 == 0, "the four-step inverse DFT needs a power-of-two n_fft"
        self.n1, self.n2, self.k2 = n1, n2, n2 // 2          # bins 0 .. n_fft/2 - 1 are k2 < n2 / 2
        f = n_fft // 2 + 1
        scale = np.full(f, 2.0 / n_fft)
        scale[0] = scale[-1] = 1.0 / n_fft
        e2 = np.exp(2j * np.pi * np.outer(np.arange(n2), np.arange(self.k2)) / n2)        # [n2, k2]
        twiddle = np.exp(2j * np.pi * np.outer(np.arange(n2), np.arange(n1)) / n_fft)     # [n2, k1]
        e1 = np.exp(2j * np.pi * np.outer(np.arange(n1), np.arange(n1)) / n1)             # [k1, n1]
        window = np.sin(np.pi * np.arange(n_fft) / n_fft) ** 2                             # periodic hann
        consts = {
            "basis_scale": np.concatenate([scale, scale]),                                 # irfft weights
            "basis_inner": np.block([[e2.real, -e2.imag], [e2.imag, e2.real]]),            # [2 n2, 2 k2]
            "basis_twiddle_re": twiddle.real, "basis_twiddle_im": twiddle.imag,            # [n2, n1]
            "basis_outer": np.concatenate([e1.real, -e1.imag]),                            # [2 n1, n1]: real part only
            "basis_nyquist": ((-1.0) ** np.arange(n2))[:, None] * window.reshape(n1, n2).T,  # [n2, n1]
            "basis_window": window.reshape(n1, n2).T,                                      # [n2, n1]
        }
        for name, value in consts.items():
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(value)).float(), persistent=False)

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        b, t, _ = spectrum.shape
        f = self.n_fft // 2 + 1
        x = spectrum * self.basis_scale
        half = self.n_fft // 2
        re = x[..., :half].reshape(b, t, self.k2, self.n1)                # [.., k2, k1]
        im = x[..., f:f + half].reshape(b, t, self.k2, self.n1)
        a = self.basis_inner @ torch.cat([re, im], dim=2)                  # [.., 2 n2, k1]
        ar, ai = a[:, :, : self.n2], a[:, :, self.n2:]
        br = ar * self.basis_twiddle_re - ai * self.basis_twiddle_im
        bi = ar * self.basis_twiddle_im + ai * self.basis_twiddle_re
        frames = torch.cat([br, bi], dim=-1) @ self.basis_outer           # [.., n2, n1]
        frames = frames * self.basis_window + x[..., half:half + 1].unsqueeze(-1) * self.basis_nyquist
        return frames.transpose(2, 3).reshape(b, t, self.n_fft)

    def macs_per_frame(self) -> int:
        return self.basis_inner.shape[0] * self.basis_inner.shape[1] * self.n1 + \
            self.n2 * self.basis_outer.shape[0] * self.basis_outer.shape[1]


def overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """[B, T, n_fft] frames placed hop apart and summed -> [B, (T - 1) * hop + n_fft].

    Each hop-long slice i of every frame lands i hops later: shift it by concatenating zero blocks
    (sliced from the input times 0, so they follow its dynamic batch size) and sum. Concat instead
    of Pad because Core ML converts only 1-D padding on dynamic shapes. Needs T >= n_fft / hop - 1
    (3) frames; the vocoder's spec starts at 8."""
    b, t, n = frames.shape
    k = n // hop
    parts = frames.reshape(b, t, k, hop)
    zeros = parts[:, : k - 1, 0] * 0.0                                   # [B, k-1, hop]
    out = torch.cat([parts[:, :, 0], zeros], dim=1)
    for i in range(1, k):
        pieces = [zeros[:, :i], parts[:, :, i]] + ([zeros[:, : k - 1 - i]] if i < k - 1 else [])
        out = out + torch.cat(pieces, dim=1)
    return out.reshape(b, -1)


class Vocos(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        v = VOCODERS[cfg["vocoder"]]
        self.n_fft, self.hop = v["n_fft"], v["hop"]
        assert self.n_fft % self.hop == 0, "overlap-add needs n_fft to be a multiple of hop"
        dim = v["dim"]
        self.embed = nn.Conv1d(cfg["n_mels"], dim, 7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, v["intermediate"]) for _ in range(v["blocks"]))
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.out = nn.Linear(dim, self.n_fft + 2)
        f = self.n_fft // 2 + 1
        with torch.no_grad():   # the magnitude correction starts at zero: the prior alone
            self.out.weight[:f].zero_()
            self.out.bias[:f].zero_()
        assert self.n_fft == mel_basis().shape[1] * 2 - 2, "the magnitude prior needs the mel's n_fft"
        # [n_mels, F]: stored transposed so the exported graph reads it as the initializer "mel_pinv"
        self.register_buffer("mel_pinv", torch.from_numpy(np.linalg.pinv(mel_basis().astype(np.float64)).T).float(),
                             persistent=False)
        self.idft = InverseDFT(self.n_fft)
        # Window-envelope normalisation: the overlap-added squared hann windows are constant (1.5 at
        # n_fft = 4 hops) except over the `edge` samples at each end of the output that fewer frames
        # cover; those edges are fixed profiles, so the graph multiplies by precomputed inverses
        # instead of overlap-adding the window for every call.
        window_sq = np.sin(np.pi * np.arange(self.n_fft) / self.n_fft) ** 4
        self.pad = (self.n_fft - self.hop) // 2
        self.edge = self.n_fft - self.hop - self.pad
        frames = 2 * self.n_fft // self.hop + 2
        envelope = np.zeros((frames - 1) * self.hop + self.n_fft)
        for t in range(frames):
            envelope[t * self.hop:t * self.hop + self.n_fft] += window_sq
        core = envelope[self.pad:self.pad + frames * self.hop]
        assert np.allclose(core[self.edge:-self.edge], core[self.edge]), "hann^2 overlap-add is not constant"
        self.interior_gain = float(1.0 / core[self.edge])
        self.register_buffer("envelope_head", torch.from_numpy(1.0 / core[:self.edge]).float(), persistent=False)
        self.register_buffer("envelope_tail", torch.from_numpy(1.0 / core[-self.edge:]).float(), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.embed(mel)
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        h = self.out(self.final_norm(x.transpose(1, 2)))  # [B, T, n_fft + 2]
        f = self.n_fft // 2 + 1
        prior = torch.log(torch.clamp(torch.exp(mel).transpose(1, 2) @ self.mel_pinv, min=LOG_FLOOR))
        mag = torch.clamp(torch.exp(prior + h[..., :f]), max=100.0)
        phase = h[..., f:]
        return self.istft(torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], dim=-1)).unsqueeze(1)

    def fixed_macs(self, batch: int, frames: int) -> int:
        """Multiply-accumulates of the constant matrix products (magnitude prior, inverse DFT) that
        are not nn.Linear / nn.Conv1d layers, for throughput accounting (compiler/bench.py)."""
        return batch * frames * (self.mel_pinv.numel() + self.idft.macs_per_frame())

    def istft(self, spectrum: torch.Tensor) -> torch.Tensor:
        """[B, T, 2F] (real parts, then imaginary parts, of a onesided STFT in models.audio's framing)
        -> waveform [B, T * hop]: windowed inverse DFT, overlap-add, window-envelope normalisation.
        Needs T >= 3 (overlap_add; and the two edges must not overlap)."""
        length = spectrum.shape[1] * self.hop
        wave = overlap_add(self.idft(spectrum), self.hop)[:, self.pad:self.pad + length]
        e = self.edge
        return torch.cat([wave[:, :e] * self.envelope_head, wave[:, e:length - e] * self.interior_gain,
                          wave[:, length - e:] * self.envelope_tail], dim=1)
