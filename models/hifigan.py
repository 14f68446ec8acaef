"""HiFi-GAN V1/V2/V3 generator (Kong et al. 2020), shared by the families whose vocoder it is.

Built with plain convolutions; checkpoints trained with weight norm (old weight_g / weight_v keys or
the new parametrizations.weight.original0/1 keys) are folded into plain weights when loaded
(models/weights.py), so exported graphs never contain the normalisation. State-dict keys follow the
original implementation (conv_pre, ups.N, resblocks.N.convs1/convs2, conv_post).

Any trained HiFi-GAN generator is expressible: upsample strides, kernels, paddings and output
paddings per stage, resblock kernel sizes and dilations, the LeakyReLU slopes (0.1 inside, and the
one before conv_post: 0.01 in the original code), and conv_pre/conv_post kernel sizes. Fields left out
take the original's values.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

LRELU_SLOPE = 0.1


def _pad(kernel: int, dilation: int = 1) -> int:
    return (kernel * dilation - dilation) // 2


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: list[int], slope: float = LRELU_SLOPE):
        super().__init__()
        self.slope = slope
        self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, 1, dilation=d, padding=_pad(kernel, d))
                                    for d in dilations)
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel, 1, dilation=1, padding=_pad(kernel))
                                    for _ in dilations)

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(nn.functional.leaky_relu(c1(nn.functional.leaky_relu(x, self.slope)), self.slope))
        return x


class ResBlock2(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: list[int], slope: float = LRELU_SLOPE):
        super().__init__()
        self.slope = slope
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel, 1, dilation=d, padding=_pad(kernel, d))
                                   for d in dilations)

    def forward(self, x):
        for c in self.convs:
            x = x + c(nn.functional.leaky_relu(x, self.slope))
        return x


class Generator(nn.Module):
    """v: initial_channels, upsample_rates, upsample_kernels, resblock ("1" or "2"), resblock_kernels,
    resblock_dilations (the HiFi-GAN config fields); optional upsample_paddings (default (k - r) // 2),
    upsample_output_paddings (default 0), lrelu_slope (0.1), post_slope (the LeakyReLU before conv_post,
    0.01), pre_kernel and post_kernel (7). n_mels: input channels. Each stage's output must be exactly
    `rate` times its input (the frame axis stays dynamic and samples = hop * frames); a configuration
    that is not is refused when built."""

    def __init__(self, v: dict, n_mels: int = 80):
        super().__init__()
        from voxc.core.errors import VoxcError
        ch = v["initial_channels"]
        rates, kernels = list(v["upsample_rates"]), list(v["upsample_kernels"])
        pads = list(v.get("upsample_paddings") or [(k - r) // 2 for k, r in zip(kernels, rates)])
        out_pads = list(v.get("upsample_output_paddings") or [0] * len(rates))
        if not len(rates) == len(kernels) == len(pads) == len(out_pads):
            raise VoxcError("hifigan: upsample_rates, upsample_kernels, upsample_paddings and "
                            "upsample_output_paddings must have one entry per stage")
        for i, (r, k, p, o) in enumerate(zip(rates, kernels, pads, out_pads)):
            if k - 2 * p + o != r:   # out = (in - 1) * r - 2p + k + o must be in * r
                raise VoxcError(f"hifigan: upsample stage {i} (stride {r}, kernel {k}, padding {p}, output padding "
                                f"{o}) does not make exactly {r}x its input: need kernel - 2*padding + output_padding "
                                f"== stride")
        self.num_kernels = len(v["resblock_kernels"])
        self.slope = float(v.get("lrelu_slope", LRELU_SLOPE))
        self.post_slope = float(v.get("post_slope", 0.01))
        pre_k, post_k = int(v.get("pre_kernel", 7)), int(v.get("post_kernel", 7))
        self.conv_pre = nn.Conv1d(n_mels, ch, pre_k, 1, padding=(pre_k - 1) // 2)
        block = ResBlock1 if str(v["resblock"]) == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel, pad, opad) in enumerate(zip(rates, kernels, pads, out_pads)):
            cin, cout = ch // (2 ** i), ch // (2 ** (i + 1))
            self.ups.append(nn.ConvTranspose1d(cin, cout, kernel, rate, padding=pad, output_padding=opad))
            for k, d in zip(v["resblock_kernels"], v["resblock_dilations"]):
                self.resblocks.append(block(cout, k, d, self.slope))
        self.conv_post = nn.Conv1d(ch // (2 ** len(self.ups)), 1, post_k, 1, padding=(post_k - 1) // 2)
        self.hop = int(np.prod(rates))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(nn.functional.leaky_relu(x, self.slope))
            xs = self.resblocks[i * self.num_kernels](x)
            for j in range(1, self.num_kernels):
                xs = xs + self.resblocks[i * self.num_kernels + j](x)
            x = xs / self.num_kernels
        return torch.tanh(self.conv_post(nn.functional.leaky_relu(x, self.post_slope)))
