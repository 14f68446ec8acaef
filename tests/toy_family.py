"""A toy second model family, declared entirely here (tests only): phonemes -> mel -> waveform.

It proves that a family is data: registered through VOXC_FAMILIES, it builds, parity-checks,
chain-checks and benches on target cpu with no change to compiler/, targets/ or calibration/.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from voxc.models.cutting import fit, speech_cut
from voxc.models.family import ChainCheck, Family, Feed, Graph, GraphStep, HostStep
from voxc.models.spec import ModelSpec, TensorSpec, dims_from_preset, preset_dim

UP = 2      # mel frames per phoneme
HOP = 64    # samples per mel frame


class ToyAcoustic(nn.Module):
    """phonemes [B, P] -> mel [B, 80, 2P]: an embedding, a convolution, each phoneme held for UP frames."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.embed = nn.Embedding(cfg["n_symbols"], cfg["hidden"])
        self.conv = nn.Conv1d(cfg["hidden"], cfg["n_mels"], 3, padding=1)

    def forward(self, phonemes: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.embed(phonemes).transpose(1, 2))
        return torch.tanh(h).repeat_interleave(UP, dim=2) * 3.0 - 5.0


class ToyVocoder(nn.Module):
    """mel [B, 80, F] -> waveform [B, 1, 64F]: a transposed convolution."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.pre = nn.Conv1d(cfg["n_mels"], cfg["hidden"], 3, padding=1)
        self.up = nn.ConvTranspose1d(cfg["hidden"], 1, HOP * 2, stride=HOP, padding=HOP // 2)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.up(torch.relu(self.pre(mel)))) * 0.3


def acoustic_spec(cfg: dict) -> ModelSpec:
    return ModelSpec(
        name="toy_acoustic", description="phonemes -> mel",
        inputs=(TensorSpec("phonemes", "int64", ("batch", "phonemes")),),
        outputs=(TensorSpec("mel", "float32", ("batch", cfg["n_mels"], f"phonemes*{UP}"), "mel"),),
        dims=dims_from_preset(cfg, ["batch", "phonemes"]), sweep_dim="phonemes",
        make_inputs=lambda b, n, rng: {"phonemes": rng.integers(1, cfg["n_symbols"], (b, n), dtype=np.int64)})


def vocoder_spec(cfg: dict) -> ModelSpec:
    return ModelSpec(
        name="toy_vocoder", description="mel -> waveform",
        inputs=(TensorSpec("mel", "float32", ("batch", cfg["n_mels"], "frames")),),
        outputs=(TensorSpec("waveform", "float32", ("batch", 1, f"frames*{HOP}"), "waveform"),),
        dims=dims_from_preset(cfg, ["batch", "frames"]), sweep_dim="frames",
        make_inputs=lambda b, n, rng: {"mel": rng.normal(-5, 2, (b, cfg["n_mels"], n)).astype(np.float32)})


def phoneme_batch(v: dict, cfg: dict) -> dict:
    return {"phonemes": np.asarray(v["phoneme_ids"], np.int64)[None] % cfg["n_symbols"]}


FAMILY = Family(
    name="toy",
    package="toy_family",
    graphs=(Graph("toy_acoustic", ToyAcoustic, acoustic_spec, ("n_symbols", "hidden", "n_mels"), ("batch", "phonemes")),
            Graph("toy_vocoder", ToyVocoder, vocoder_spec, ("hidden", "n_mels"), ("batch", "frames"))),
    steps=(HostStep("phonemes", phoneme_batch, ("phoneme_ids",), ("phonemes",)),
           GraphStep("toy_acoustic"),
           GraphStep("toy_vocoder")),
    feeds={"toy_acoustic": Feed(lambda u, n, cfg: {"phonemes": fit(u.phoneme_ids, n)[None] % cfg["n_symbols"]},
                                ("phonemes",), aligned=True),
           "toy_vocoder": Feed(lambda u, n, cfg: {"mel": speech_cut(u.mel, n)[None]}, ("mel",))},
    presets={"tiny": {"seed": 7, "n_symbols": 96, "hidden": 16, "n_mels": 80,
                      "dims": {"batch": [1, 1, 2, 2], "phonemes": [2, 16, 8, 48], "frames": [8, 32, 16, 96]}}},
    default_preset="tiny",
    item_inputs=lambda u, cfg, forced=False: {"phoneme_ids": u.phoneme_ids},
    item_length=lambda u, dim, cfg: {"phonemes": u.phoneme_ids.size, "batch": 1}.get(dim, u.frames),
    item_fits=lambda u, cfg: u.phoneme_ids.size <= preset_dim(cfg, "phonemes").max,
    host_config=("dims", "n_symbols"),
    chain=ChainCheck(output="waveform", kind="waveform"),
)
