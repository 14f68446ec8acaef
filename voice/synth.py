"""`voxc synth`: text -> waveform with the PyTorch reference of the trained voice.

text -> models.text.text_to_ids -> speaker_encoder(reference mel) and a style embedding
(the style's centroid, or emotion_encoder(style reference mel)) -> acoustic_encoder -> the host
sums the predicted durations and builds frame_mask -> length_regulator -> acoustic_decoder ->
vocoder. This is the same chain of graphs that `voxc build` exports, run eagerly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models import audio
from models.errors import VoxcError
from models.presets import preset
from models.registry import init_module
from models.text import text_to_ids
from models.weights import load_into, read_checkpoint
from voice.weights import TRAINED_MODELS, VOICE_PRESET, style_centroids_path, weight_path

GRAPHS = ("speaker_encoder", "emotion_encoder", "acoustic_encoder", "length_regulator", "acoustic_decoder", "vocoder")


def read_wav(path: str | Path) -> np.ndarray:
    """A mono float32 wave at 16 kHz (resampled when needed), for use as a reference."""
    import soundfile as sf
    from scipy.signal import resample_poly
    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise VoxcError(f"cannot read reference audio {path}: {exc}") from None
    wave = wave.mean(axis=1)
    if sr != audio.SAMPLE_RATE:
        g = np.gcd(sr, audio.SAMPLE_RATE)
        wave = resample_poly(wave, audio.SAMPLE_RATE // g, sr // g).astype(np.float32)
    if len(wave) < audio.HOP * 16:
        raise VoxcError(f"reference audio {path} is too short ({len(wave) / audio.SAMPLE_RATE:.2f} s); give >= 0.5 s")
    return wave


def write_wav(path: str | Path, wave: np.ndarray) -> None:
    import soundfile as sf
    sf.write(str(path), np.clip(wave, -1, 1), audio.SAMPLE_RATE, subtype="PCM_16")


class Voice:
    """The six graphs of a preset with trained weights, in eval mode."""

    def __init__(self, checkpoints: dict[str, str | Path] | None = None, preset_name: str = VOICE_PRESET,
                 centroids: str | Path | None = None):
        self.cfg = preset(preset_name)
        checkpoints = dict(checkpoints or {})
        self.modules = {}
        for name in GRAPHS:
            module = init_module(name, self.cfg)
            if name in TRAINED_MODELS:
                path = Path(checkpoints.get(name, weight_path(name)))
                if not path.is_file():
                    raise VoxcError(f"no trained weights for {name} at {path}; train with `voxc train` "
                                    "or pass a checkpoint")
                load_into(module, path, name)
            self.modules[name] = module.eval()
        cpath = Path(centroids) if centroids else style_centroids_path()
        state = read_checkpoint(cpath)
        self.centroids = state["centroids"].float()

    @torch.no_grad()
    def speaker_embedding(self, ref_wave: np.ndarray) -> torch.Tensor:
        mel = torch.from_numpy(audio.log_mel(ref_wave))[None]
        return self.modules["speaker_encoder"](mel)

    @torch.no_grad()
    def style_embedding(self, style: str | None = None, style_wave: np.ndarray | None = None) -> torch.Tensor:
        if style_wave is not None:
            return self.modules["emotion_encoder"](torch.from_numpy(audio.log_mel(style_wave))[None])
        from voice.train import STYLES
        if style not in STYLES:
            raise VoxcError(f"unknown style '{style}': choose one of {', '.join(STYLES)}")
        return self.centroids[STYLES.index(style)][None]

    @torch.no_grad()
    def mel(self, text: str, speaker: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, dict]:
        ids = text_to_ids(text)
        phonemes = torch.tensor([ids], dtype=torch.int64)
        m = self.modules
        hidden, log_d, durations, pitch, energy = m["acoustic_encoder"](phonemes, speaker, style)
        total = int(durations.sum(1).max())                       # the host step between graphs
        frame_mask = (torch.arange(total)[None, :] < durations.sum(1)[:, None]).float()
        states = m["length_regulator"](hidden, durations, frame_mask)
        mel = m["acoustic_decoder"](states)
        return mel, {"phonemes": ids, "durations": durations[0].tolist(), "frames": total}

    @torch.no_grad()
    def synthesize(self, text: str, ref_wave: np.ndarray, style: str = "neutral",
                   style_wave: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        mel, info = self.mel(text, self.speaker_embedding(ref_wave), self.style_embedding(style, style_wave))
        wave = self.modules["vocoder"](mel)[0, 0].numpy()
        info["samples"] = len(wave)
        return wave, info


def synth(text: str, speaker_ref: str | Path, out: str | Path, style: str = "neutral",
          style_ref: str | Path | None = None, checkpoints: dict | None = None) -> dict:
    voice = Voice(checkpoints)
    wave, info = voice.synthesize(text, read_wav(speaker_ref), style,
                                  read_wav(style_ref) if style_ref else None)
    write_wav(out, wave)
    info.update(seconds=round(len(wave) / audio.SAMPLE_RATE, 3), out=str(out))
    return info
