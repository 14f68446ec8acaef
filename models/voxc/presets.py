"""Size presets of the stack (tiny for tests, light for a CPU-trainable voice, base at EmotiVoice scale).

A preset is plain data (JSON-serialisable dicts) so build-graph keys can hash it and worker
processes can rebuild any module or ModelSpec from it.
"""
from __future__ import annotations

import copy

from voxc.core.errors import VoxcError

VOCODERS = {
    # HiFi-GAN generator configurations (Kong et al. 2020); hop = product of upsample rates = 256.
    "v1": {"initial_channels": 512, "upsample_rates": [8, 8, 2, 2], "upsample_kernels": [16, 16, 4, 4],
           "resblock": "1", "resblock_kernels": [3, 7, 11], "resblock_dilations": [[1, 3, 5]] * 3},
    "v2": {"initial_channels": 128, "upsample_rates": [8, 8, 2, 2], "upsample_kernels": [16, 16, 4, 4],
           "resblock": "1", "resblock_kernels": [3, 7, 11], "resblock_dilations": [[1, 3, 5]] * 3},
    "v3": {"initial_channels": 256, "upsample_rates": [8, 8, 4], "upsample_kernels": [16, 16, 8],
           "resblock": "2", "resblock_kernels": [3, 5, 7], "resblock_dilations": [[1, 2], [2, 6], [3, 12]]},
    "light": {"initial_channels": 128, "upsample_rates": [8, 8, 4], "upsample_kernels": [16, 16, 8],
              "resblock": "2", "resblock_kernels": [3, 5, 7], "resblock_dilations": [[1, 2], [2, 6], [3, 12]]},
    "tiny": {"initial_channels": 16, "upsample_rates": [8, 8, 4], "upsample_kernels": [16, 16, 8],
             "resblock": "2", "resblock_kernels": [3], "resblock_dilations": [[1, 3]]},
    # Vocos-style (Siuzdak 2023): ConvNeXt blocks at frame rate predict an STFT (log-magnitude and
    # phase) that an in-graph inverse STFT (n_fft 1024, hop 256) turns into audio. No upsampling
    # convolutions: ~3 M MAC per frame, nearly all of it large matrix products.
    "vocos_light": {"family": "vocos", "dim": 192, "intermediate": 576, "blocks": 8, "n_fft": 1024, "hop": 256},
    "vocos_tiny": {"family": "vocos", "dim": 32, "intermediate": 64, "blocks": 2, "n_fft": 1024, "hop": 256},
}


def vocoder_hop(name: str) -> int:
    """Samples per mel frame of a vocoder configuration."""
    v = VOCODERS[name]
    if v.get("family") == "vocos":
        return v["hop"]
    hop = 1
    for r in v["upsample_rates"]:
        hop *= r
    return hop

_COMMON = {
    "sample_rate": 16000, "hop": 256, "n_mels": 80, "n_symbols": 96, "speaker_dim": 256,
    "n_styles": 3, "emotion_mode": "reference", "seed": 1234,
}

PRESETS = {
    "tiny": {
        **_COMMON,
        "hidden": 32, "heads": 2, "ffn": 64, "encoder_layers": 1, "decoder_layers": 1, "ffn_kernel": 3,
        "predictor_channels": 32, "postnet_channels": 32, "postnet_layers": 2,
        "speaker_lstm_hidden": 32, "speaker_lstm_layers": 1, "emotion_channels": 32, "emotion_dim": 16,
        "vocoder": "tiny",
        # ranges of the named dims: min / opt / export example / max
        "dims": {"batch": [1, 1, 2, 4], "phonemes": [2, 24, 12, 96], "frames": [8, 96, 40, 384],
                 "ref_frames": [16, 96, 40, 320]},
    },
    "light": {
        **_COMMON,
        "hidden": 128, "heads": 2, "ffn": 512, "encoder_layers": 2, "decoder_layers": 2, "ffn_kernel": 9,
        "predictor_channels": 128, "postnet_channels": 128, "postnet_layers": 3,
        "speaker_lstm_hidden": 128, "speaker_lstm_layers": 3, "emotion_channels": 128, "emotion_dim": 64,
        "vocoder": "vocos_light",
        "dims": {"batch": [1, 1, 2, 8], "phonemes": [2, 64, 32, 256], "frames": [8, 320, 128, 1024],
                 "ref_frames": [32, 192, 96, 800]},
    },
    "base": {
        **_COMMON,
        "hidden": 384, "heads": 8, "ffn": 1536, "encoder_layers": 4, "decoder_layers": 4, "ffn_kernel": 9,
        "predictor_channels": 256, "postnet_channels": 512, "postnet_layers": 5,
        "speaker_lstm_hidden": 256, "speaker_lstm_layers": 3, "emotion_channels": 256, "emotion_dim": 128,
        "vocoder": "v1",
        "dims": {"batch": [1, 1, 2, 8], "phonemes": [2, 64, 32, 256], "frames": [8, 320, 128, 1024],
                 "ref_frames": [32, 192, 96, 800]},
    },
}


def preset(name: str) -> dict:
    """A deep copy of the named preset; unknown names are a VoxcError listing the valid ones."""
    if name not in PRESETS:
        raise VoxcError(f"unknown preset '{name}': choose one of {', '.join(PRESETS)}")
    return {"family": "voxc", **copy.deepcopy(PRESETS[name])}
