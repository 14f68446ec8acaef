"""vocoder graph: HiFi-GAN (models/hifigan.py) or Vocos (models/voxc/vocos.py), mel [B, 80, frames] -> waveform [B, 1, frames*256]."""
from __future__ import annotations

from torch import nn

from voxc.models.hifigan import Generator
from voxc.models.voxc.presets import VOCODERS, vocoder_hop
from voxc.models.voxc.speaker_encoder import reference_mel
from voxc.models.spec import ModelSpec, TensorSpec, dims_from_preset


def build(cfg: dict) -> nn.Module:
    """The vocoder module of a preset: HiFi-GAN or Vocos by the configuration's family."""
    if VOCODERS[cfg["vocoder"]].get("family") == "vocos":
        from voxc.models.voxc.vocos import Vocos
        return Vocos(cfg)
    return Generator(VOCODERS[cfg["vocoder"]], cfg["n_mels"])


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
