"""ModelSpecs of the EmotiVoice family's graphs (numpy only): IO names, dims, kinds and shape-only inputs."""
from __future__ import annotations

import numpy as np

from voxc.models.spec import ModelSpec, TensorSpec, dims_from_preset, preset_dim


def _ids(b, n, rng, high):
    return rng.integers(1, high, size=(b, n), dtype=np.int64)


def prompt_spec(cfg: dict) -> ModelSpec:
    return ModelSpec(
        name="prompt_encoder", description="BERT token ids -> pooler output (emotion prompt, content text)",
        inputs=(TensorSpec("input_ids", "int64", ("batch", "tokens")),),
        outputs=(TensorSpec("pooler_output", "float32", ("batch", cfg["bert_dim"]), "embedding"),),
        dims=dims_from_preset(cfg, ["batch", "tokens"]), sweep_dim="tokens",
        make_inputs=lambda b, n, rng: {"input_ids": _ids(b, n, rng, cfg["bert"]["vocab_size"])})


def encoder_spec(cfg: dict) -> ModelSpec:
    h, s = cfg["hidden"], cfg["bert_dim"]
    return ModelSpec(
        name="acoustic_encoder", description="tokens + speaker + style + content -> states, durations, pitch, energy",
        inputs=(TensorSpec("ids", "int64", ("batch", "phonemes")), TensorSpec("speaker", "int64", ("batch",)),
                TensorSpec("style", "float32", ("batch", s)), TensorSpec("content", "float32", ("batch", s))),
        outputs=(TensorSpec("hidden", "float32", ("batch", "phonemes", h), "hidden"),
                 TensorSpec("log_durations", "float32", ("batch", "phonemes"), "hidden"),
                 TensorSpec("durations", "int64", ("batch", "phonemes"), "durations"),
                 TensorSpec("pitch", "float32", ("batch", "phonemes"), "hidden"),
                 TensorSpec("energy", "float32", ("batch", "phonemes"), "hidden")),
        dims=dims_from_preset(cfg, ["batch", "phonemes"]), sweep_dim="phonemes",
        make_inputs=lambda b, n, rng: {
            "ids": _ids(b, n, rng, cfg["n_tokens"]),
            "speaker": rng.integers(0, cfg["n_speakers"], size=(b,), dtype=np.int64),
            "style": np.tanh(rng.normal(size=(b, s))).astype(np.float32),
            "content": np.tanh(rng.normal(size=(b, s))).astype(np.float32)})


def regulator_inputs(b: int, n: int, rng: np.random.Generator, cfg: dict) -> dict[str, np.ndarray]:
    """States and (possibly fractional) durations for n tokens; frames = the longest item's total."""
    lo, hi = preset_dim(cfg, "frames").min, preset_dim(cfg, "frames").max
    per = max(1, min(6, hi // max(n, 1)))
    d = rng.integers(1, per + 1, size=(b, n)).astype(np.float32)
    totals = d.sum(1)
    frames = int(np.clip(totals.max(), lo, hi))
    mask = (np.arange(frames)[None, :] < totals[:, None]).astype(np.float32)
    return {"hidden": rng.normal(size=(b, n, cfg["hidden"])).astype(np.float32), "durations": d, "frame_mask": mask}


def regulator_spec(cfg: dict) -> ModelSpec:
    h = cfg["hidden"]
    return ModelSpec(
        name="length_regulator", description="Gaussian upsampling: token states -> frame states (frames from frame_mask)",
        inputs=(TensorSpec("hidden", "float32", ("batch", "phonemes", h)),
                TensorSpec("durations", "float32", ("batch", "phonemes")),
                TensorSpec("frame_mask", "float32", ("batch", "frames"))),
        outputs=(TensorSpec("frame_states", "float32", ("batch", "frames", h), "hidden"),),
        dims=dims_from_preset(cfg, ["batch", "phonemes", "frames"]), sweep_dim="phonemes",
        make_inputs=lambda b, n, rng: regulator_inputs(b, n, rng, cfg))


def decoder_spec(cfg: dict) -> ModelSpec:
    return ModelSpec(
        name="acoustic_decoder", description="frame states -> the 80-channel latent the vocoder reads",
        inputs=(TensorSpec("frame_states", "float32", ("batch", "frames", cfg["hidden"])),),
        outputs=(TensorSpec("mel", "float32", ("batch", cfg["n_mels"], "frames"), "mel"),),
        dims=dims_from_preset(cfg, ["batch", "frames"]), sweep_dim="frames",
        make_inputs=lambda b, n, rng: {"frame_states": rng.normal(size=(b, n, cfg["hidden"])).astype(np.float32)})


def vocoder_spec(cfg: dict) -> ModelSpec:
    return ModelSpec(
        name="vocoder", description="HiFi-GAN V1: latent -> 16 kHz waveform",
        inputs=(TensorSpec("mel", "float32", ("batch", cfg["n_mels"], "frames")),),
        outputs=(TensorSpec("waveform", "float32", ("batch", 1, f"frames*{cfg['hop']}"), "waveform"),),
        dims=dims_from_preset(cfg, ["batch", "frames"]), sweep_dim="frames",
        make_inputs=lambda b, n, rng: {"mel": rng.normal(0, 1, size=(b, cfg["n_mels"], n)).astype(np.float32)})
