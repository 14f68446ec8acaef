"""speaker_encoder graph: reference mel [B, 80, ref_frames] -> L2-normalised d-vector [B, 256] (GE2E-style LSTM)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from voxc.models.spec import ModelSpec, TensorSpec, dims_from_preset


class SpeakerEncoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.lstm = nn.LSTM(cfg["n_mels"], cfg["speaker_lstm_hidden"], cfg["speaker_lstm_layers"], batch_first=True)
        self.proj = nn.Linear(cfg["speaker_lstm_hidden"], cfg["speaker_dim"])

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        frames, _ = self.lstm(mel.transpose(1, 2))
        return nn.functional.normalize(self.proj(frames.mean(dim=1)), dim=-1)


def reference_mel(batch: int, frames: int, rng: np.random.Generator, n_mels: int = 80) -> np.ndarray:
    """A log-mel-like tensor (smooth in time, speech-like range) for shape-only sweeps."""
    base = rng.normal(-5.0, 2.0, size=(batch, n_mels, 1))
    wiggle = np.cumsum(rng.normal(0, 0.3, size=(batch, n_mels, frames)), axis=-1)
    return np.clip(base + wiggle, -11.5, 2.5).astype(np.float32)


def spec(cfg: dict) -> ModelSpec:
    return ModelSpec(
        name="speaker_encoder",
        description="reference mel -> d-vector",
        inputs=(TensorSpec("mel", "float32", ("batch", cfg["n_mels"], "ref_frames")),),
        outputs=(TensorSpec("speaker_embedding", "float32", ("batch", cfg["speaker_dim"]), "embedding"),),
        dims=dims_from_preset(cfg, ["batch", "ref_frames"]),
        sweep_dim="ref_frames",
        make_inputs=lambda b, n, rng: {"mel": reference_mel(b, n, rng, cfg["n_mels"])},
    )
