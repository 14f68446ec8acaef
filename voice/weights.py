"""Where the committed reference voice lives: voice/weights/<model>.safetensors (light preset)."""
from __future__ import annotations

from pathlib import Path

from voxc.models.family import family

FAMILY = family("voxc")
WEIGHTS_DIR = FAMILY.voice_folder()
VOICE_PRESET = FAMILY.voice.preset
TRAINED_MODELS = FAMILY.trained_graphs()   # graphs with trained weights (the length regulator has none)


def weight_path(model: str) -> Path:
    return WEIGHTS_DIR / f"{model}.safetensors"


def style_centroids_path() -> Path:
    return WEIGHTS_DIR / "style_centroids.safetensors"


def default_checkpoints(preset_name: str, cfg: dict, models, exclude=()) -> dict[str, Path]:
    """The committed trained weights a build of this preset uses by default (see Family.committed_weights)."""
    return FAMILY.committed_weights(preset_name, cfg, models, exclude)
