"""vocoder graph: HiFi-GAN generator (the Vocos family is in models/vocos.py), mel [B, 80, frames] -> waveform [B, 1, frames*256].

Modules are built with plain convolutions; checkpoints trained with weight norm (old weight_g /
weight_v keys or the new parametrizations.weight.original0/1 keys) are folded into plain weights
when loaded (models/weights.py), so exported graphs never contain the normalisation.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from voxc.models.voxc.presets import VOCODERS, vocoder_hop
from voxc.models.voxc.speaker_encoder import reference_mel
from voxc.models.spec import ModelSpec, TensorSpec, dims_from_preset

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
    def __init__(self, cfg: dict):
        super().__init__()
        v = VOCODERS[cfg["vocoder"]]
        ch = v["initial_channels"]
        self.num_kernels = len(v["resblock_kernels"])
        self.conv_pre = nn.Conv1d(cfg["n_mels"], ch, 7, 1, padding=3)
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


def build(cfg: dict) -> nn.Module:
    """The vocoder module of a preset: HiFi-GAN or Vocos by the configuration's family."""
    if VOCODERS[cfg["vocoder"]].get("family") == "vocos":
        from voxc.models.voxc.vocos import Vocos
        return Vocos(cfg)
    return Generator(cfg)


def spec(cfg: dict) -> ModelSpec:
    hop = vocoder_hop(cfg["vocoder"])
    assert hop == cfg["hop"], f"vocoder {cfg['vocoder']} hop {hop} != preset hop {cfg['hop']}"
    family = "Vocos" if VOCODERS[cfg["vocoder"]].get("family") == "vocos" else "HiFi-GAN"
    return ModelSpec(
        name="vocoder", description=f"{family} {cfg['vocoder']}: mel -> waveform",
        inputs=(TensorSpec("mel", "float32", ("batch", cfg["n_mels"], "frames")),),
        outputs=(TensorSpec("waveform", "float32", ("batch", 1, f"frames*{hop}"), "waveform"),),
        dims=dims_from_preset(cfg, ["batch", "frames"]), sweep_dim="frames",
        make_inputs=lambda b, n, rng: {"mel": reference_mel(b, n, rng, cfg["n_mels"])})
