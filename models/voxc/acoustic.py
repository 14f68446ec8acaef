"""The acoustic model, split into three graphs around the one data-dependent step.

acoustic_encoder: phoneme ids + speaker/emotion embeddings -> hidden states, log-durations,
  integer durations, pitch and energy per phoneme (pre-LN Transformer, variance predictors whose
  pitch/energy embeddings are added back, as in EmotiVoice).
length_regulator: hidden [B, P, H] + durations [B, P] + frame_mask [B, frames] -> [B, frames, H].
  The frame count is data-dependent (sum of durations). Instead of computing it in-graph with
  .item() or repeat_interleave -- which the TorchScript exporter freezes at the example length --
  the host sums the durations (a few integers) and the frame axis arrives as an input dimension
  (frame_mask). Expansion is cumsum + compare + gather: batched, exact, portable to ONNX Runtime,
  OpenVINO, TensorRT and Core ML, and correct at any length.
acoustic_decoder: frame states [B, frames, H] -> mel [B, 80, frames] (Transformer + postnet).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from voxc.models.layers import TransformerStack, VariancePredictor
from voxc.models.spec import ModelSpec, TensorSpec, dims_from_preset, preset_dim


class AcousticEncoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        h = cfg["hidden"]
        self.embed = nn.Embedding(cfg["n_symbols"], h, padding_idx=0)
        self.speaker_proj = nn.Linear(cfg["speaker_dim"], h)
        self.emotion_proj = nn.Linear(cfg["emotion_dim"], h)
        self.encoder = TransformerStack(h, cfg["heads"], cfg["ffn"], cfg["ffn_kernel"], cfg["encoder_layers"])
        pc = cfg["predictor_channels"]
        self.duration = VariancePredictor(h, pc)
        self.pitch = VariancePredictor(h, pc)
        self.energy = VariancePredictor(h, pc)
        self.pitch_embed = nn.Conv1d(1, h, 3, padding=1)
        self.energy_embed = nn.Conv1d(1, h, 3, padding=1)

    def forward(self, phonemes, speaker_embedding, emotion_embedding, pitch_target=None, energy_target=None):
        cond = self.speaker_proj(speaker_embedding) + self.emotion_proj(emotion_embedding)  # [B, H]
        x = self.encoder(self.embed(phonemes) + cond[:, None, :])
        log_durations = self.duration(x)
        pitch, energy = self.pitch(x), self.energy(x)
        p = pitch if pitch_target is None else pitch_target        # teacher forcing in training
        e = energy if energy_target is None else energy_target
        hidden = x + self.pitch_embed(p[:, None, :]).transpose(1, 2) + self.energy_embed(e[:, None, :]).transpose(1, 2)
        durations = torch.clamp(torch.round(torch.exp(log_durations) - 1.0), min=1.0).to(torch.int64)
        return hidden, log_durations, durations, pitch, energy


def build_regulator(cfg: dict) -> "LengthRegulator":
    return LengthRegulator()


class LengthRegulator(nn.Module):
    def forward(self, hidden: torch.Tensor, durations: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        # Comparing with the first P-1 phone ends only caps the index at P-1 (frames past the
        # total, masked below, reuse the last phone) without a clamp: Core ML's clip is float-only.
        ends = torch.cumsum(durations, dim=1)[:, :-1]                                  # [B, P-1]
        frame = torch.arange(frame_mask.shape[1], device=hidden.device, dtype=ends.dtype)  # [T]
        index = (frame[None, :, None] >= ends[:, None, :]).to(torch.int64).sum(-1)     # [B, T]
        states = torch.gather(hidden, 1, index[..., None].expand(-1, -1, hidden.shape[2]))
        return states * frame_mask[..., None]


class AcousticDecoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        h, pc = cfg["hidden"], cfg["postnet_channels"]
        self.decoder = TransformerStack(h, cfg["heads"], cfg["ffn"], cfg["ffn_kernel"], cfg["decoder_layers"])
        self.to_mel = nn.Linear(h, cfg["n_mels"])
        layers: list[nn.Module] = []
        chans = [cfg["n_mels"]] + [pc] * (cfg["postnet_layers"] - 1) + [cfg["n_mels"]]
        for i in range(cfg["postnet_layers"]):
            layers.append(nn.Conv1d(chans[i], chans[i + 1], 5, padding=2))
            if i < cfg["postnet_layers"] - 1:
                layers.append(nn.Tanh())
        self.postnet = nn.Sequential(*layers)

    def forward(self, frame_states: torch.Tensor) -> torch.Tensor:
        coarse = self.to_mel(self.decoder(frame_states)).transpose(1, 2)   # [B, 80, T]
        return coarse + self.postnet(coarse)


def _phonemes(b: int, n: int, rng: np.random.Generator, cfg: dict) -> np.ndarray:
    return rng.integers(1, cfg["n_symbols"], size=(b, n), dtype=np.int64)


def _unit_rows(b: int, d: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(b, d))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def encoder_spec(cfg: dict) -> ModelSpec:
    h = cfg["hidden"]
    return ModelSpec(
        name="acoustic_encoder", description="phonemes + speaker/emotion embeddings -> phoneme states and prosody",
        inputs=(TensorSpec("phonemes", "int64", ("batch", "phonemes")),
                TensorSpec("speaker_embedding", "float32", ("batch", cfg["speaker_dim"])),
                TensorSpec("emotion_embedding", "float32", ("batch", cfg["emotion_dim"]))),
        outputs=(TensorSpec("hidden", "float32", ("batch", "phonemes", h), "hidden"),
                 TensorSpec("log_durations", "float32", ("batch", "phonemes"), "hidden"),
                 TensorSpec("durations", "int64", ("batch", "phonemes"), "durations"),
                 TensorSpec("pitch", "float32", ("batch", "phonemes"), "hidden"),
                 TensorSpec("energy", "float32", ("batch", "phonemes"), "hidden")),
        dims=dims_from_preset(cfg, ["batch", "phonemes"]), sweep_dim="phonemes",
        make_inputs=lambda b, n, rng: {
            "phonemes": _phonemes(b, n, rng, cfg),
            "speaker_embedding": _unit_rows(b, cfg["speaker_dim"], rng),
            "emotion_embedding": np.tanh(rng.normal(size=(b, cfg["emotion_dim"]))).astype(np.float32)})


def regulator_inputs(b: int, n: int, rng: np.random.Generator, cfg: dict) -> dict[str, np.ndarray]:
    """Hidden states and durations for n phonemes; frames = the longest item's total duration."""
    lo, hi = preset_dim(cfg, "frames").min, preset_dim(cfg, "frames").max
    per_phone = max(1, min(6, hi // max(n, 1)))
    durations = rng.integers(1, per_phone + 1, size=(b, n)).astype(np.int64)
    totals = durations.sum(1)
    frames = int(np.clip(totals.max(), lo, hi))
    mask = (np.arange(frames)[None, :] < totals[:, None]).astype(np.float32)
    hidden = rng.normal(size=(b, n, cfg["hidden"])).astype(np.float32)
    return {"hidden": hidden, "durations": durations, "frame_mask": mask}


def regulator_spec(cfg: dict) -> ModelSpec:
    h = cfg["hidden"]
    return ModelSpec(
        name="length_regulator", description="phoneme states -> frame states (frame axis given by frame_mask)",
        inputs=(TensorSpec("hidden", "float32", ("batch", "phonemes", h)),
                TensorSpec("durations", "int64", ("batch", "phonemes")),
                TensorSpec("frame_mask", "float32", ("batch", "frames"))),
        outputs=(TensorSpec("frame_states", "float32", ("batch", "frames", h), "hidden"),),
        dims=dims_from_preset(cfg, ["batch", "phonemes", "frames"]), sweep_dim="phonemes",
        make_inputs=lambda b, n, rng: regulator_inputs(b, n, rng, cfg))


def decoder_spec(cfg: dict) -> ModelSpec:
    return ModelSpec(
        name="acoustic_decoder", description="frame states -> mel",
        inputs=(TensorSpec("frame_states", "float32", ("batch", "frames", cfg["hidden"])),),
        outputs=(TensorSpec("mel", "float32", ("batch", cfg["n_mels"], "frames"), "mel"),),
        dims=dims_from_preset(cfg, ["batch", "frames"]), sweep_dim="frames",
        make_inputs=lambda b, n, rng: {"frame_states": rng.normal(size=(b, n, cfg["hidden"])).astype(np.float32)})


