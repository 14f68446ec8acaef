"""Where the committed reference voice lives: voice/weights/<model>.safetensors (light preset)."""
from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
VOICE_PRESET = "light"
# graphs with trained weights (the length regulator has no parameters)
TRAINED_MODELS = ("speaker_encoder", "emotion_encoder", "acoustic_encoder", "acoustic_decoder", "vocoder")


def weight_path(model: str) -> Path:
    return WEIGHTS_DIR / f"{model}.safetensors"


def style_centroids_path() -> Path:
    return WEIGHTS_DIR / "style_centroids.safetensors"


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_checkpoints(preset_name: str, cfg: dict, models, exclude=()) -> dict[str, Path]:
    """For the voice's preset with an unmodified configuration: each trained model's committed
    weights (models with a user checkpoint excluded). Other presets or --set changes: none."""
    from models.presets import preset
    from models.registry import model_config
    if preset_name != VOICE_PRESET:
        return {}
    ref = preset(VOICE_PRESET)
    out = {}
    for m in models:
        if m in TRAINED_MODELS and m not in exclude and weight_path(m).is_file() \
                and model_config(m, cfg) == model_config(m, ref):
            out[m] = weight_path(m)
    return out
