"""emotion_encoder graph: reference mel [B, 80, ref_frames] -> style embedding [B, E].

With cfg["emotion_mode"] == "table" the graph is a label table instead: emotion id [B] -> [B, E].
The style classifier used in training sits outside the exported graph.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from voxc.models.voxc.speaker_encoder import reference_mel
from voxc.models.spec import ModelSpec, TensorSpec, dims_from_preset


class EmotionEncoder(nn.Module):
    """Conv stack + attentive statistics pooling (mean and std weighted by learned attention)."""

    def __init__(self, cfg: dict):
        super().__init__()
        c = cfg["emotion_channels"]
        self.convs = nn.Sequential(
            nn.Conv1d(cfg["n_mels"], c, 5, padding=2), nn.ReLU(),
            nn.Conv1d(c, c, 5, padding=2), nn.ReLU(),
            nn.Conv1d(c, c, 5, padding=2), nn.ReLU())
        self.attention = nn.Conv1d(c, 1, 1)
        self.proj = nn.Linear(2 * c, cfg["emotion_dim"])
        self.classifier = nn.Linear(cfg["emotion_dim"], cfg["n_styles"])  # training only

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.convs(mel)                                  # [B, C, T]
        w = torch.softmax(self.attention(h), dim=-1)         # [B, 1, T]
        mean = (h * w).sum(-1)
        std = torch.sqrt(((h - mean[..., None]) ** 2 * w).sum(-1) + 1e-5)
        return torch.tanh(self.proj(torch.cat([mean, std], dim=-1)))


class EmotionTable(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.table = nn.Embedding(cfg["n_styles"], cfg["emotion_dim"])

    def forward(self, emotion_id: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.table(emotion_id))


def build(cfg: dict) -> nn.Module:
    return EmotionTable(cfg) if cfg["emotion_mode"] == "table" else EmotionEncoder(cfg)


def spec(cfg: dict) -> ModelSpec:
    out = (TensorSpec("emotion_embedding", "float32", ("batch", cfg["emotion_dim"]), "embedding"),)
    if cfg["emotion_mode"] == "table":
        return ModelSpec(
            name="emotion_encoder", description="emotion id -> style embedding (label table)",
            inputs=(TensorSpec("emotion_id", "int64", ("batch",)),), outputs=out,
            dims=dims_from_preset(cfg, ["batch"]), sweep_dim="batch",
            make_inputs=lambda b, n, rng: {"emotion_id": rng.integers(0, cfg["n_styles"], size=(n,), dtype=np.int64)})
    return ModelSpec(
        name="emotion_encoder", description="reference mel -> style embedding",
        inputs=(TensorSpec("mel", "float32", ("batch", cfg["n_mels"], "ref_frames")),), outputs=out,
        dims=dims_from_preset(cfg, ["batch", "ref_frames"]), sweep_dim="ref_frames",
        make_inputs=lambda b, n, rng: {"mel": reference_mel(b, n, rng, cfg["n_mels"])})

