"""Building blocks shared by the acoustic encoder and decoder (pre-LN Transformer, conv FFN, predictors).

Everything is shape-polymorphic: lengths come from tensor shapes, never from .item() or Python
control flow, so exported graphs keep their time axes dynamic.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def sinusoid_positions(length_like: torch.Tensor, channels: int) -> torch.Tensor:
    """[T, C] sinusoidal position table for T = length_like.shape[1], computed in-graph."""
    pos = torch.arange(length_like.shape[1], device=length_like.device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, channels, 2, dtype=torch.float32) * (-math.log(10000.0) / channels))
    angles = pos * div[None, :]
    return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(-1, channels)


class SelfAttention(nn.Module):
    def __init__(self, channels: int, heads: int):
        super().__init__()
        assert channels % heads == 0, "hidden must divide by heads"
        self.heads, self.head_dim = heads, channels // heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C]
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) * (self.head_dim ** -0.5), dim=-1)
        return self.out((att @ v).transpose(1, 2).reshape(b, t, c))


class ConvFeedForward(nn.Module):
    """FastSpeech-style feed-forward: conv(k) -> ReLU -> conv(1), over the time axis."""

    def __init__(self, channels: int, ffn: int, kernel: int):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, ffn, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(ffn, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C]
        return self.conv2(torch.relu(self.conv1(x.transpose(1, 2)))).transpose(1, 2)


class PreLNBlock(nn.Module):
    def __init__(self, channels: int, heads: int, ffn: int, kernel: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.attn = SelfAttention(channels, heads)
        self.ffn = ConvFeedForward(channels, ffn, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class TransformerStack(nn.Module):
    def __init__(self, channels: int, heads: int, ffn: int, kernel: int, layers: int):
        super().__init__()
        self.blocks = nn.ModuleList(PreLNBlock(channels, heads, ffn, kernel) for _ in range(layers))
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + sinusoid_positions(x, self.norm.normalized_shape[0])[None]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class VariancePredictor(nn.Module):
    """Two conv + ReLU + LayerNorm layers and a projection: one value per position (FastSpeech 2)."""

    def __init__(self, channels: int, hidden: int, kernel: int = 3):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, hidden, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2)
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.proj = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C] -> [B, T]
        h = self.norm1(torch.relu(self.conv1(x.transpose(1, 2))).transpose(1, 2))
        h = self.norm2(torch.relu(self.conv2(h.transpose(1, 2))).transpose(1, 2))
        return self.proj(h).squeeze(-1)
