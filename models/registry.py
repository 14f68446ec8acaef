"""The exported graphs of the stack, in chain order: name -> module builder, ModelSpec, config keys.

Each graph declares which preset keys it reads, so a build key changes only when that graph's own
configuration changes (changing the vocoder rebuilds the vocoder's chain only).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from models import acoustic, emotion_encoder, speaker_encoder, vocoder
from models.errors import VoxcError
from models.spec import ModelSpec


@dataclass(frozen=True)
class GraphEntry:
    build: Callable[[dict], nn.Module]
    spec: Callable[[dict], ModelSpec]
    keys: tuple[str, ...]
    dims: tuple[str, ...]


GRAPHS: dict[str, GraphEntry] = {
    "speaker_encoder": GraphEntry(speaker_encoder.SpeakerEncoder, speaker_encoder.spec,
                                  ("n_mels", "speaker_lstm_hidden", "speaker_lstm_layers", "speaker_dim"),
                                  ("batch", "ref_frames")),
    "emotion_encoder": GraphEntry(emotion_encoder.build, emotion_encoder.spec,
                                  ("n_mels", "emotion_channels", "emotion_dim", "n_styles", "emotion_mode"),
                                  ("batch", "ref_frames")),
    "acoustic_encoder": GraphEntry(acoustic.AcousticEncoder, acoustic.encoder_spec,
                                   ("n_symbols", "hidden", "heads", "ffn", "ffn_kernel", "encoder_layers",
                                    "predictor_channels", "speaker_dim", "emotion_dim"),
                                   ("batch", "phonemes")),
    "length_regulator": GraphEntry(lambda cfg: acoustic.LengthRegulator(), acoustic.regulator_spec,
                                   ("hidden",), ("batch", "phonemes", "frames")),
    "acoustic_decoder": GraphEntry(acoustic.AcousticDecoder, acoustic.decoder_spec,
                                   ("n_mels", "hidden", "heads", "ffn", "ffn_kernel", "decoder_layers",
                                    "postnet_channels", "postnet_layers"),
                                   ("batch", "frames")),
    "vocoder": GraphEntry(vocoder.build, vocoder.spec, ("n_mels", "hop", "vocoder"), ("batch", "frames")),
}

MODEL_NAMES = tuple(GRAPHS)


def entry(name: str) -> GraphEntry:
    if name not in GRAPHS:
        raise VoxcError(f"unknown model '{name}': choose from {', '.join(GRAPHS)}")
    return GRAPHS[name]


def model_config(name: str, cfg: dict) -> dict:
    """The part of a preset that this graph depends on (its build-key parameters)."""
    e = entry(name)
    sub = {k: cfg[k] for k in e.keys}
    sub["dims"] = {d: cfg["dims"][d] for d in e.dims}
    sub["seed"] = cfg["seed"]
    return sub


def model_spec(name: str, cfg: dict) -> ModelSpec:
    return entry(name).spec(cfg)


def init_module(name: str, cfg: dict) -> nn.Module:
    """A deterministically initialised module in eval mode (seed mixed with the graph name)."""
    torch.manual_seed(cfg["seed"] + zlib.crc32(name.encode()) % 100_000)
    return entry(name).build(cfg).eval()
