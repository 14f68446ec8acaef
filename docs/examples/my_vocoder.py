"""my_vocoder: a user's own trained HiFi-GAN declared as a voxc model family, kept outside voxc's tree.

The worked example of docs/own-vocoder.md (tests/test_own_vocoder.py builds it from a copy in a
temporary folder). Everything voxc needs to know about this vocoder is declared here, as data:
- its generator's shape (any strides / kernels / paddings / output paddings / slopes: models/hifigan.py);
- its mel front end (sample rate, n_fft, window, hop, band edges, log floor and base): a user's audio
  folder (`voxc build --data DIR`) becomes this vocoder's input through it, and the spec's sample rate is
  what every audio metric reads;
- its own int8 settings: every weighted layer type the exported graph holds ("auto": Conv and
  ConvTranspose here), the first and last convolutions kept float. A user's --quantisation TOML can
  still override them; the target profile's tuning for voxc's own `vocoder` never applies.
Register it with VOXC_FAMILIES=my_vocoder=my_vocoder (this file's folder on PYTHONPATH).
"""
from __future__ import annotations

import numpy as np

from voxc.core.mel import MelFrontEnd
from voxc.models.cutting import speech_cut
from voxc.models.family import ChainCheck, Family, Feed, Graph, GraphStep
from voxc.models.hifigan import Generator
from voxc.models.spec import ModelSpec, TensorSpec, dims_from_preset

# 24 kHz audio, 10 ms hop, a 40 ms window inside a 1024-point FFT, 20 Hz - 11 kHz, log10 of clamp(1e-5).
MEL = MelFrontEnd(sample_rate=24000, n_fft=1024, win=960, hop=240, n_mels=80, fmin=20.0, fmax=11000.0,
                  log_floor=1e-5, log_base="10")

# strides 5*4*3*4 = 240 = the hop; stages 0 and 2 need an output padding to make exactly `stride` x.
GENERATOR = {"initial_channels": 64, "upsample_rates": [5, 4, 3, 4], "upsample_kernels": [10, 8, 6, 8],
             "upsample_paddings": [3, 2, 2, 2], "upsample_output_paddings": [1, 0, 1, 0],
             "resblock": "1", "resblock_kernels": [3, 5], "resblock_dilations": [[1, 3], [1, 3]],
             "lrelu_slope": 0.1, "post_slope": 0.01}


def build(cfg: dict):
    return Generator(cfg["generator"], cfg["n_mels"])


def spec(cfg: dict) -> ModelSpec:
    hop = int(np.prod(cfg["generator"]["upsample_rates"]))
    return ModelSpec(
        name="vocoder", description="log10-mel (24 kHz, hop 240) -> waveform",
        inputs=(TensorSpec("mel", "float32", ("batch", cfg["n_mels"], "frames")),),
        outputs=(TensorSpec("waveform", "float32", ("batch", 1, f"frames*{hop}"), "waveform"),),
        dims=dims_from_preset(cfg, ["batch", "frames"]), sweep_dim="frames", sample_rate=MEL.sample_rate,
        make_inputs=lambda b, n, rng: {"mel": rng.normal(-2.5, 1.0, (b, cfg["n_mels"], n)).astype(np.float32)})


FAMILY = Family(
    name="my_vocoder",
    package="my_vocoder",
    graphs=(Graph("vocoder", build, spec, ("generator", "n_mels"), ("batch", "frames"),
                  quantisation={"*": {"op_types": "auto", "keep_fp32": ["conv_pre.", "conv_post."]}}),),
    steps=(GraphStep("vocoder"),),
    feeds={"vocoder": Feed(lambda u, n, cfg: {"mel": speech_cut(u.mel, n)[None]}, ("mel",))},
    presets={"small": {"seed": 1, "n_mels": MEL.n_mels, "generator": GENERATOR,
                       "dims": {"batch": [1, 1, 2, 2], "frames": [16, 64, 48, 160]}}},
    default_preset="small",
    # whole items for chained parity and streaming: the clip's loudest stretch up to the longest length
    item_inputs=lambda u, cfg, forced=False: {"mel": speech_cut(u.mel, min(u.frames, cfg["dims"]["frames"][3]))[None]},
    item_length=lambda u, dim, cfg: {"batch": 1}.get(dim, u.frames),
    item_fits=lambda u, cfg: u.frames >= cfg["dims"]["frames"][0],
    chain=ChainCheck(output="waveform", kind="waveform"),
    mel=MEL,
)
