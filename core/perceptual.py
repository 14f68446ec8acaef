"""Perceptual audio metrics: how an artifact's audio would be scored by a listener, not how far its
samples moved.

core/audio_metrics.waveform_metrics adds these to every waveform comparison (vocoder parity, chained
parity, streamed vs whole), per item of at least MIN_SECONDS, against the PyTorch reference audio:
  pesq_wb           wideband PESQ, ITU-T P.862.2 (the `pesq` package): 1.04 (bad) .. 4.64 (identical)
  stoi              short-time objective intelligibility (`pystoi`): 0 .. 1 (identical)
  dnsmos_*_drop     how much the reference-free DNSMOS P.835 score (SIG, BAK, OVRL; 1 .. 5) falls from
                    the reference audio to the artifact's (negative: the artifact scores higher)
PESQ and STOI align level and (PESQ) delay, as a listener does: a phase-predicting vocoder (Vocos) or
a one-sample shift moves the waveform without moving them. DNSMOS runs the P.835 ONNX model the
`speechmos` wheel ships, with onnxruntime (speechmos's own module needs librosa; not imported).

The packages are optional where parity runs on a device (bundle verify.py: numpy and the runtime):
`missing()` says what is not installed, and a budgeted metric that cannot be computed fails its gate
with that reason (core/gates.judge).
"""
from __future__ import annotations

import functools
import importlib.util

import numpy as np

from voxc.core.audio import SAMPLE_RATE   # the rate PESQ-WB and DNSMOS are defined at

MIN_SECONDS = 0.5            # PESQ needs >= 0.25 s; STOI needs 30 frames of speech (~0.4 s at 10 kHz)
PESQ_TOP = 4.644             # P.862.2's score for identical signals
PESQ_STOI = ("pesq_wb", "stoi")
DNSMOS = ("dnsmos_sig_drop", "dnsmos_bak_drop", "dnsmos_ovrl_drop")
METRICS = PESQ_STOI + DNSMOS
INSTALL = "pip install pesq==0.0.4 pystoi==0.4.1 speechmos==0.0.1.1 onnxruntime"

_DNSMOS_SECONDS = 9.01       # the model's input window; shorter clips are tiled to it (as speechmos does)
# P.835 polynomial maps of the raw SIG/BAK/OVRL outputs (DNSMOS, non-personalised; from speechmos/Microsoft)
_DNSMOS_POLY = (np.poly1d([-0.08397278, 1.22083953, 0.0052439]), np.poly1d([-0.13166888, 1.60915514, -0.39604546]),
                np.poly1d([-0.06766283, 1.11546468, 0.04602535]))


def missing(metric: str | None = None) -> str | None:
    """None when `metric` (or every perceptual metric) can be computed here; else which package to install."""
    need = {"pesq": "pesq", "pystoi": "pystoi"} if metric in (None, *PESQ_STOI) else {}
    if metric is None or metric in DNSMOS:
        need.update(onnxruntime="onnxruntime", speechmos="speechmos")
    absent = [pkg for pkg, mod in need.items() if importlib.util.find_spec(mod) is None]
    return f"{', '.join(absent)} not installed ({INSTALL})" if absent else None


def long_enough(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bool:
    """Whether items of this waveform ([..., samples] at sample_rate) are long enough for the perceptual metrics."""
    return wave.shape[-1] >= MIN_SECONDS * sample_rate


def pesq_wb(ref: np.ndarray, out: np.ndarray) -> float:
    """Wideband PESQ of `out` against `ref` (1-D, 16 kHz); NaN where PESQ finds no speech in `ref`."""
    from pesq import pesq, PesqError
    score = pesq(SAMPLE_RATE, ref.astype(np.float32), out.astype(np.float32), "wb", on_error=PesqError.RETURN_VALUES)
    return float(score) if score > 0 else float("nan")


def stoi(ref: np.ndarray, out: np.ndarray) -> float:
    from pystoi import stoi as _stoi
    return float(_stoi(ref.astype(np.float64), out.astype(np.float64), SAMPLE_RATE))


def _dnsmos_session():
    """DNSMOS's session on the execution providers VOXC_ORT_PROVIDERS names (the CPU's by default:
    core/providers.py); a provider this onnxruntime lacks is an error, not a quiet CPU run."""
    from voxc.core import providers
    return _dnsmos_session_on(tuple(providers.chosen()))


@functools.lru_cache(maxsize=2)
def _dnsmos_session_on(wanted: tuple[str, ...]):
    import importlib.resources
    import onnxruntime as ort
    from voxc.core import providers
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    model = importlib.resources.files("speechmos") / "dnsmos_models" / "sig_bak_ovr.onnx"
    return providers.session(model.read_bytes(), opts, list(wanted))


def _windows(wave: np.ndarray) -> np.ndarray:
    """The model's 9.01 s input windows of a clip: tiled up to one window (as speechmos does), longer
    clips cut into windows that overlap only as far as needed to cover the end (speechmos steps by one
    second; at ~0.5 s per window on these CPUs that costs too much inside a build)."""
    audio = np.clip(wave.astype(np.float32), -1.0, 1.0)
    window = int(_DNSMOS_SECONDS * SAMPLE_RATE)
    while audio.size < window:
        audio = np.concatenate([audio, audio])
    n = int(np.ceil(audio.size / window))
    starts = np.linspace(0, audio.size - window, n).astype(int)
    return np.stack([audio[s: s + window] for s in starts])


_DNSMOS_SEEN: dict[bytes, np.ndarray] = {}    # clip digest -> its scores: a reference is scored against many outputs
_DNSMOS_SEEN_MAX = 256


def dnsmos(*waves: np.ndarray) -> np.ndarray:
    """DNSMOS P.835 [SIG, BAK, OVRL] per 16 kHz clip (rows): the mean over its windows. Each clip is its own
    batch, so its scores never depend on what it was scored beside, and a clip scored before (the chain
    gate's reference, once per configuration) is not run again."""
    import hashlib
    rows = []
    for wave in waves:
        key = hashlib.blake2b(np.ascontiguousarray(wave, dtype=np.float32).tobytes(), digest_size=16).digest()
        if key not in _DNSMOS_SEEN:
            raw = _dnsmos_session().run(None, {"input_1": _windows(wave)})[0].astype(np.float64)
            if len(_DNSMOS_SEEN) >= _DNSMOS_SEEN_MAX:
                _DNSMOS_SEEN.pop(next(iter(_DNSMOS_SEEN)))
            _DNSMOS_SEEN[key] = np.array([np.mean(p(raw[:, i])) for i, p in enumerate(_DNSMOS_POLY)])
        rows.append(_DNSMOS_SEEN[key])
    return np.array(rows)


def scores(ref: np.ndarray, out: np.ndarray, wanted=METRICS, sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
    """The perceptual metrics in `wanted` this host can compute for one item (1-D audio at sample_rate);
    {} when it is shorter than MIN_SECONDS. PESQ-WB and DNSMOS are defined at 16 kHz: audio at any other
    rate is resampled to it first (STOI resamples on its own)."""
    if not long_enough(ref, sample_rate):
        return {}
    if sample_rate != SAMPLE_RATE:
        from voxc.core.mel import resample
        ref, out = resample(ref, sample_rate, SAMPLE_RATE), resample(out, sample_rate, SAMPLE_RATE)
    values = {}
    if set(wanted) & set(PESQ_STOI) and missing("pesq_wb") is None:
        values.update(pesq_wb=pesq_wb(ref, out), stoi=stoi(ref, out))
    if set(wanted) & set(DNSMOS) and missing("dnsmos_ovrl_drop") is None:
        r, o = dnsmos(ref, out)
        values.update(zip(DNSMOS, (float(v) for v in r - o)))
    return values
