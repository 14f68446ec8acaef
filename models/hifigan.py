"""HiFi-GAN V1/V2/V3 generator (Kong et al. 2020), shared by the families whose vocoder it is.

Built with plain convolutions; checkpoints trained with weight norm (old weight_g / weight_v keys or
the new parametrizations.weight.original0/1 keys) are folded into plain weights when loaded
(models/weights.py), so exported graphs never contain the normalisation. State-dict keys follow the
original implementation (conv_pre, ups.N, resblocks.N.convs1/convs2, conv_post).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

LRELU_SLOPE = 0.1


def _pad(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: list[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, 1, dilation=d, padding=_pad(kernel, d))
                                    for d in dilations)
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, 1, dilation=1, padding=_pad(kernel))
                                    for _ in dilations)

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(nn.functional.leaky_relu(c1(nn.functional.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: list[int]):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel, 1, dilation=d, padding=_pad(kernel, d))
                                   for d in dilations)

    def forward(self, x):
        for c in self.convs:
            x = x + c(nn.functional.leaky_relu(x, LRELU_SLOPE))
        return x


class Generator(nn.Module):
    """v: initial_channels, upsample_rates, upsample_kernels, resblock ("1" or "2"), resblock_kernels,
    resblock_dilations (the HiFi-GAN config fields); n_mels: input channels."""

    def __init__(self, v: dict, n_mels: int = 80):
        super().__init__()
        ch = v["initial_channels"]
        self.num_kernels = len(v["resblock_kernels"])
        self.conv_pre = nn.Conv1d(n_mels, ch, 7, 1, padding=3)
        block = ResBlock1 if v["resblock"] == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(v["upsample_rates"], v["upsample_kernels"])):
            cin, cout = ch // (2 ** i), ch // (2 ** (i + 1))
            self.ups.append(nn.ConvTranspose1d(cin, cout, kernel, rate, padding=(kernel - rate) // 2))
            for k, d in zip(v["resblock_kernels"], v["resblock_dilations"]):
                self.resblocks.append(block(cout, k, d))
        self.conv_post = nn.Conv1d(ch // (2 ** len(self.ups)), 1, 7, 1, padding=3)
        self.hop = int(np.prod(v["upsample_rates"]))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(nn.functional.leaky_relu(x, LRELU_SLOPE))
            xs = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                xs = xs + self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        return torch.tanh(self.conv_post(nn.functional.leaky_relu(x)))
