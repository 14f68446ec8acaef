"""ModelSpec: everything about one exported graph's inputs and outputs, declared once.

Export (dynamic axes), checks (which dims must stay symbolic), parity (length sweeps, metrics
per output kind, budgets per precision), and later TensorRT profiles / OpenVINO bounds /
Core ML ranges are all derived from the spec; nothing about a graph's IO is written twice.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from voxc.core.errors import VoxcError

OUTPUT_KINDS = ("waveform", "mel", "embedding", "durations", "hidden")

# Parity budgets per precision and output kind. Metric names are defined in compiler/metrics.py,
# which also knows each metric's direction (<= for errors, >= for similarities).
#
# Audio metrics (compiler/audio_metrics.py), applied to waveforms (and to mels where they apply):
#   snr_voiced_db  SNR on the reference's voiced frames only -- noise under voiced speech is what is
#                  heard; silence dominated by noise would otherwise hide behind a loud vowel.
#   mrstft         spectral convergence + mean |log-magnitude| difference over 3 STFT resolutions.
#   logmel_l1      mean |natural-log mel difference| on speech frames (0.1 ~ 0.9 dB per band).
#   mcd_db         mel-cepstral distortion on speech frames. Between two TTS systems ~0.2-0.5 dB is
#                  the smallest difference listening tests resolve and < 1 dB is rarely heard.
#
# Perceptual metrics (core/perceptual.py; README "Perceptual gates" has the measurements behind the numbers):
#   pesq_wb, stoi  worst item; dnsmos_ovrl_drop  the reference-free DNSMOS OVRL lost; level_db  |gain change|.
# They judge the audio of fp16 and int8 (graph parity of waveform outputs, the chain, streaming): a vocoder
# that predicts phase (Vocos) moves the waveform without moving what is heard, so SNR, MCD and the
# elementwise errors are recorded there as diagnostics (None: reported, never failing). fp32 keeps the
# signal budgets: it differs from PyTorch only by summation order, and anything more is a bug.
# Measured on the light voice's Vocos vocoder (README "Perceptual gates", 12 held-out utterances): fp32 and
# fp16 artifacts score the scale's top (PESQ-WB 4.64, STOI 1.000, DNSMOS unchanged); a one-sample shift,
# which nobody hears, moves DNSMOS OVRL by up to 0.17 (its own noise), hence 0.2-0.25 there; white noise
# 45 dB under the speech scores PESQ-WB 3.74-3.97, so fp16's 4.4 rejects it; int8 (worst 3.79, STOI 0.992)
# passes 3.8 only by a hair, a zeroed ConvNeXt layer (3.52) and weights noised by 3 % (1.23, STOI 0.947) do
# not. PESQ and STOI align level, so level_db (a 0.7 gain is 3.1 dB) is gated beside them.
PERCEPTUAL: dict[str, dict[str, float]] = {
    "fp32": {"pesq_wb": 4.5, "stoi": 0.995, "dnsmos_ovrl_drop": 0.2, "level_db": 0.1},
    "fp16": {"pesq_wb": 4.4, "stoi": 0.99, "dnsmos_ovrl_drop": 0.2, "level_db": 0.2},
    "int8": {"pesq_wb": 3.8, "stoi": 0.98, "dnsmos_ovrl_drop": 0.25, "level_db": 0.3},
}
SIGNAL_DIAGNOSTICS = dict.fromkeys(("rel_l2", "cosine", "snr_db", "snr_voiced_db", "mrstft", "logmel_l1", "mcd_db"))

BUDGETS: dict[str, dict[str, dict[str, float]]] = {
    # fp32 artifacts differ from PyTorch only by kernel order of summation: ~1e-6 relative.
    # 1e-3 relative L2 leaves room for long LSTM/attention accumulations yet catches any real
    # change (one perturbed weight moves rel_l2 to >1e-2). 60 dB waveform SNR is 40 dB above
    # Polygraphy's 20 dB floor, because fp32 has no excuse to add audible noise; the audio metrics
    # of an fp32 artifact measure ~1e-4 dB MCD, so 0.05 dB is pure headroom for summation order.
    "fp32": {
        "waveform": {"rel_l2": 1e-3, "cosine": 0.99999, "snr_db": 60.0, "max_abs": 1e-2, "snr_voiced_db": 60.0,
                     "mrstft": 0.01, "logmel_l1": 0.01, "mcd_db": 0.05, "pesq_wb": None, "stoi": None},
        "mel": {"rel_l2": 1e-3, "cosine": 0.99999, "max_abs": 5e-2, "logmel_l1": 0.01, "mcd_db": 0.05},
        "embedding": {"rel_l2": 1e-3, "cosine": 0.99999, "max_abs": 1e-2},
        "hidden": {"rel_l2": 1e-3, "cosine": 0.99999, "max_abs": 5e-2},
        # durations are rounded in-graph: a rounding tie may flip one phone in a few hundred.
        "durations": {"exact_match": 0.99, "frame_drift": 0.01},
    },
    # fp16 keeps ~3 decimal digits: relative L2 around 1e-3 is expected. 40 dB keeps the
    # quantisation noise 20 dB under Polygraphy's floor, inaudible under speech; 0.2 dB MCD is
    # below the smallest difference listening tests resolve between systems.
    "fp16": {
        "waveform": {**SIGNAL_DIAGNOSTICS, **PERCEPTUAL["fp16"]},
        "mel": {"rel_l2": 2e-2, "cosine": 0.9998, "max_abs": 0.25, "logmel_l1": 0.03, "mcd_db": 0.2},
        "embedding": {"rel_l2": 2e-2, "cosine": 0.9998, "max_abs": 2e-2},
        "hidden": {"rel_l2": 2e-2, "cosine": 0.9998, "max_abs": 0.25},
        "durations": {"exact_match": 0.95, "frame_drift": 0.02},
    },
    # int8 is judged by how it sounds more than by elementwise error (compiler/metrics adds the
    # audio metrics); 25 dB is 5 dB above Polygraphy's floor and where coarse noise stops being
    # obvious on speech, cosine 0.995 for embeddings keeps speaker identity (EER moves < 1 %).
    # Voiced-frame SNR at the same 25 dB; MCD 1 dB and log-mel L1 0.1 (~0.9 dB per band) are the
    # "rarely heard" line above; mrstft 0.25 allows that level of broadband quantisation noise.
    "int8": {
        "waveform": {**SIGNAL_DIAGNOSTICS, **PERCEPTUAL["int8"]},
        "mel": {"rel_l2": 0.1, "cosine": 0.995, "logmel_l1": 0.1, "mcd_db": 1.0},
        "embedding": {"rel_l2": 0.1, "cosine": 0.995},
        "hidden": {"rel_l2": 0.1, "cosine": 0.995},
        "durations": {"exact_match": 0.85, "frame_drift": 0.05},
    },
}


@dataclass(frozen=True)
class Dim:
    """A named dynamic dimension with its range; `export` is the example length used at export."""
    name: str
    min: int
    opt: int
    export: int
    max: int


@dataclass(frozen=True)
class TensorSpec:
    """One input or output. dims: ints, dim names, or 'name*k' for a derived dim (e.g. samples)."""
    name: str
    dtype: str
    dims: tuple
    kind: str = ""  # outputs only: one of OUTPUT_KINDS


_DERIVED = re.compile(r"^([a-z_]+)\*(\d+)$")


def resolve_dim(d, sizes: dict[str, int]) -> int:
    if isinstance(d, int):
        return d
    m = _DERIVED.match(d)
    if m:
        return sizes[m.group(1)] * int(m.group(2))
    return sizes[d]


@dataclass
class ModelSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dims: dict[str, Dim]
    sweep_dim: str                      # the length axis parity sweeps over
    make_inputs: Callable[[int, int, np.random.Generator], dict[str, np.ndarray]]  # (batch, length, rng)
    budgets: dict = field(default_factory=lambda: BUDGETS)
    perceptual: dict = field(default_factory=lambda: PERCEPTUAL)
    description: str = ""
    sample_rate: int = 16000            # Hz of its waveform outputs: every audio metric reads it from here

    # ---- derived facts -------------------------------------------------------------
    def dynamic_dims(self) -> set[str]:
        return {d for t in self.inputs for d in t.dims if isinstance(d, str)}

    def example_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Inputs at the export example size (batch 2 so the batch axis cannot specialise to 1)."""
        b = min(max(2, self.dims["batch"].export), self.dims["batch"].max)
        return self.make_inputs(b, self.dims[self.sweep_dim].export, np.random.default_rng(seed))

    def sweep(self) -> list[tuple[int, int]]:
        """(batch, length) points: min, opt, export, > 2x export, max at batch 1; opt at batch 2."""
        d = self.dims[self.sweep_dim]
        beyond = min(2 * d.export + 3, d.max)
        lengths = sorted({d.min, d.opt, d.export, beyond, d.max})
        points = [(1, n) for n in lengths]
        if self.dims["batch"].max >= 2:
            points.append((2, d.opt))
        return points

    def budget(self, precision: str, kind: str) -> dict[str, float]:
        if precision not in self.budgets:
            raise VoxcError(f"no parity budget for precision '{precision}' in spec {self.name}")
        return self.budgets[precision][kind]

    def perceptual_budget(self, precision: str) -> dict[str, float]:
        """What the audio this graph feeds must keep at `precision` (the chain gate's budget)."""
        if precision not in self.perceptual:
            raise VoxcError(f"no perceptual budget for precision '{precision}' in spec {self.name}")
        return self.perceptual[precision]

    def output_shape(self, out: TensorSpec, sizes: dict[str, int]) -> tuple[int, ...]:
        return tuple(resolve_dim(d, sizes) for d in out.dims)

    def sizes_of(self, feeds: dict[str, np.ndarray]) -> dict[str, int]:
        """Named dim sizes read off concrete inputs, checked against the spec's ranges."""
        sizes: dict[str, int] = {}
        for t in self.inputs:
            if t.name not in feeds:
                raise VoxcError(f"{self.name}: missing input '{t.name}'; expected {[i.name for i in self.inputs]}")
            arr = feeds[t.name]
            if arr.ndim != len(t.dims):
                raise VoxcError(f"{self.name}: input '{t.name}' has rank {arr.ndim}, spec says {len(t.dims)} {t.dims}")
            for axis, d in enumerate(t.dims):
                n = int(arr.shape[axis])
                if isinstance(d, int):
                    if n != d:
                        raise VoxcError(f"{self.name}: input '{t.name}' axis {axis} is {n}, spec fixes it at {d}")
                    continue
                if sizes.setdefault(d, n) != n:
                    raise VoxcError(f"{self.name}: dim '{d}' is {sizes[d]} in one input and {n} in '{t.name}'")
                r = self.dims[d]
                if not r.min <= n <= r.max:
                    raise VoxcError(f"{self.name}: {d}={n} on input '{t.name}' is outside the spec's range "
                                    f"[{r.min}, {r.max}]; split the input or rebuild with a larger range")
        return sizes

    def to_json(self) -> dict:
        io = lambda ts: [{"name": t.name, "dtype": t.dtype, "dims": list(t.dims), **({"kind": t.kind} if t.kind else {})}
                         for t in ts]
        return {"inputs": io(self.inputs), "outputs": io(self.outputs),
                "dims": {k: {"min": v.min, "opt": v.opt, "export": v.export, "max": v.max}
                         for k, v in self.dims.items() if k in self.dynamic_dims() or k == "batch"},
                **({"sample_rate": self.sample_rate} if any(t.kind == "waveform" for t in self.outputs) else {})}


def dims_from_preset(cfg: dict, names: list[str]) -> dict[str, Dim]:
    """Dim ranges for the named symbols, read from a preset's "dims" table."""
    return {n: preset_dim(cfg, n) for n in names}


def preset_dim(cfg: dict, name: str) -> Dim:
    """One named dim's range from a configuration's "dims" table (a preset, a graph's or the host's slice)."""
    return Dim(name, *cfg["dims"][name])


def spec_from_json(name: str, j: dict) -> ModelSpec:
    """A ModelSpec's IO and dims read back from a manifest (what running a built artifact needs;
    no example inputs)."""
    io = lambda ts: tuple(TensorSpec(t["name"], t["dtype"], tuple(t["dims"]), t.get("kind", "")) for t in ts)
    dims = {k: Dim(k, v["min"], v["opt"], v["export"], v["max"]) for k, v in j.get("dims", {}).items()}
    return ModelSpec(name=name, inputs=io(j["inputs"]), outputs=io(j["outputs"]), dims=dims,
                     sweep_dim=next(iter(d for d in dims if d != "batch"), "batch"),
                     make_inputs=lambda b, n, rng: {}, sample_rate=int(j.get("sample_rate", 16000)))
