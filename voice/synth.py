"""`voxc synth`: text -> waveform with the PyTorch reference of the trained voice.

The family pipeline (models/pipeline.py) over PyTorch runners: text -> phoneme ids ->
speaker_encoder(reference mel) and a style embedding (the style's centroid, given to the pipeline
so the emotion encoder does not run, or emotion_encoder(style reference mel)) -> acoustic_encoder
-> the host sums the durations and builds frame_mask -> length_regulator -> acoustic_decoder ->
vocoder: the same dataflow `voxc build` checks its artifacts with, run eagerly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from voxc.core import audio
from voxc.core.errors import VoxcError
from voxc.models import speaking
from voxc.models.family import init_module, model_spec
from voxc.models.pipeline import Pipeline
from voxc.models.weights import load_into, read_checkpoint
from voxc.targets.runner import TorchRunner
from voxc.voice.data import STYLES
from voxc.voice.weights import FAMILY, TRAINED_MODELS, VOICE_PRESET, style_centroids_path, weight_path


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
    if not np.isfinite(wave).all():
        raise VoxcError(f"reference audio {path} contains NaN or infinite samples; give a real recording")
    if float(np.abs(wave).max()) < 1e-4:
        raise VoxcError(f"reference audio {path} is silent (peak below -80 dBFS); give a recording of the speaker")
    return wave


def check_output(out: str | Path) -> Path:
    """The output wav path, checked before any work: a .wav name in an existing, writable folder."""
    import os
    out = Path(out)
    if out.suffix.lower() != ".wav":
        raise VoxcError(f"-o {out}: the output must be a .wav file name")
    if out.is_dir():
        raise VoxcError(f"-o {out} is a folder; give a .wav file name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise VoxcError(f"-o {out}: the folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise VoxcError(f"-o {out}: the folder {parent} is not writable")
    return out


def write_wav(path: str | Path, wave: np.ndarray) -> None:
    import soundfile as sf
    sf.write(str(path), np.clip(wave, -1, 1), audio.SAMPLE_RATE, subtype="PCM_16")


class Voice:
    """The family's graphs with trained weights, in eval mode, run through the family pipeline."""

    def __init__(self, checkpoints: dict[str, str | Path] | None = None, preset_name: str = VOICE_PRESET,
                 centroids: str | Path | None = None):
        self.cfg = FAMILY.preset(preset_name)
        checkpoints = dict(checkpoints or {})
        self.modules = {}
        for name in FAMILY.graph_names:
            module = init_module(name, self.cfg)
            if name in TRAINED_MODELS:
                path = Path(checkpoints.get(name, weight_path(name)))
                if not path.is_file():
                    raise VoxcError(f"no trained weights for {name} at {path}; train with `voxc train` "
                                    "or pass a checkpoint")
                load_into(module, path, name)
            self.modules[name] = module.eval()
        self.pipeline = Pipeline(FAMILY, self.cfg, {n: TorchRunner(m, model_spec(n, self.cfg))
                                                    for n, m in self.modules.items()})
        cpath = Path(centroids) if centroids else style_centroids_path()
        state = read_checkpoint(cpath)
        self.centroids = state["centroids"].float()

    def speaker_embedding(self, ref_wave: np.ndarray) -> torch.Tensor:
        run = self.pipeline.run({"reference_mel": audio.log_mel(ref_wave)}, ["speaker_embedding"])
        return torch.from_numpy(run.values["speaker_embedding"])

    def _style_inputs(self, style: str | None, style_wave: np.ndarray | None) -> dict:
        if style_wave is not None:
            return {"style_mel": audio.log_mel(style_wave)}
        if style not in STYLES:
            raise VoxcError(f"unknown style '{style}': choose one of {', '.join(STYLES)}")
        return {"emotion_embedding": self.centroids[STYLES.index(style)][None].numpy()}

    def style_embedding(self, style: str | None = None, style_wave: np.ndarray | None = None) -> torch.Tensor:
        inputs = self._style_inputs(style, style_wave)
        if "emotion_embedding" in inputs:
            return torch.from_numpy(inputs["emotion_embedding"])
        run = self.pipeline.run({"reference_mel": inputs["style_mel"], **inputs}, ["emotion_embedding"])
        return torch.from_numpy(run.values["emotion_embedding"])

    def pieces(self, text: str, ref_wave: np.ndarray, style: str = "neutral",
               style_wave: np.ndarray | None = None, info: dict | None = None):
        """(wave, pause after) per piece of `text`: long text is split (models/speaking.py) into
        segments that fit the graphs' ranges, each spoken with the embeddings computed once; `info`
        collects phonemes, durations, frames and per-step timings."""
        given = {"speaker_embedding": self.speaker_embedding(ref_wave).numpy(),
                 "emotion_embedding": self.style_embedding(style, style_wave).numpy()}
        info = {} if info is None else info
        info.update(phonemes=[], durations=[], frames=0, segments=[], timings_ms={})
        for seg in speaking.segments(self.pipeline, self.cfg, FAMILY.speaking.lengths, text):
            runs = list(speaking.pieces(self.pipeline, self.cfg, seg.text,
                                        lambda t, want: self.pipeline.run({"text": t, **given}, want).values,
                                        ["waveform", "frames"]))
            for i, run in enumerate(runs):
                v = run.values
                info["phonemes"] += v["phoneme_ids"].tolist()
                info["durations"] += v["durations"][0].tolist()
                info["frames"] += int(v["frames"])
                info["segments"].append(seg.text)
                for k, t in run.timings.items():
                    info["timings_ms"][k] = round(info["timings_ms"].get(k, 0.0) + t, 2)
                yield v["waveform"][0, 0], (seg.pause_after if i == len(runs) - 1 else 0.0)

    def synthesize(self, text: str, ref_wave: np.ndarray, style: str = "neutral",
                   style_wave: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        """The whole text as one wave (the pieces joined with pauses and short fades)."""
        info: dict = {}
        pieces = list(self.pieces(text, ref_wave, style, style_wave, info))
        wave = audio.join_segments([w for w, _ in pieces], [p for _, p in pieces])
        info["samples"] = len(wave)
        return wave, info


def synth(text: str, speaker_ref: str | Path, out: str | Path, style: str = "neutral",
          style_ref: str | Path | None = None, checkpoints: dict | None = None) -> dict:
    out = check_output(out)
    if not text.strip():
        raise VoxcError("the text is empty; give something to say")
    ref, style_wave = read_wav(speaker_ref), (read_wav(style_ref) if style_ref else None)
    voice = Voice(checkpoints)
    info: dict = {}
    from voxc.core.wav_file import write_wav
    samples = write_wav(out, audio.joined(voice.pieces(text, ref, style, style_wave, info)), audio.SAMPLE_RATE)
    info.update(samples=samples, seconds=round(samples / audio.SAMPLE_RATE, 3), out=str(out))
    return info
