"""Real-data inputs for each graph: INT8 calibration batches and parity sweep points.

Every graph is fed from the committed sets (calibration/sets.py), never from random numbers:
encoders and the vocoder get real log-mels; the acoustic encoder gets real phoneme ids plus the
speaker/style embeddings that the upstream encoders compute from the same utterance; the length
regulator and decoder get the states the upstream graphs compute from real phonemes and the
reference (aligned) durations. Upstream graphs run through `upstream` runners (anything with
.infer(dict) -> dict, normally targets.runner.TorchRunner on the FP32 reference modules).

Sweep points cut or tile one utterance per batch item to the requested length, so parity runs at
min / opt / export / >2x export / max lengths on held-out speech.
"""
from __future__ import annotations

import numpy as np

from calibration.sets import Utterance, load_set
from models.errors import VoxcError

# Graphs whose inputs are computed by upstream graphs (run on the same real utterance).
UPSTREAM: dict[str, tuple[str, ...]] = {
    "speaker_encoder": (), "emotion_encoder": (), "vocoder": (),
    "acoustic_encoder": ("speaker_encoder", "emotion_encoder"),
    "length_regulator": ("speaker_encoder", "emotion_encoder", "acoustic_encoder"),
    "acoustic_decoder": ("speaker_encoder", "emotion_encoder", "acoustic_encoder", "length_regulator"),
}
PARITY_SET, CALIBRATION_SET = "parity", "calibration"


def fit(a: np.ndarray, n: int) -> np.ndarray:
    """Cut or tile the last axis of a to exactly n (tiling repeats the utterance)."""
    reps = -(-n // a.shape[-1])
    return np.ascontiguousarray(np.concatenate([a] * reps, axis=-1)[..., :n]) if reps > 1 else np.ascontiguousarray(a[..., :n])


def loudest_start(mel: np.ndarray, n: int) -> int:
    """Start frame of the n-frame window of a log-mel [80, T] with the most energy (0 when n >= T):
    a short sweep point or calibration item is then speech, not an utterance's leading silence."""
    if n >= mel.shape[-1]:
        return 0
    energy = np.exp(mel.astype(np.float64)).sum(axis=0)
    window = np.convolve(energy, np.ones(n), mode="valid")
    return int(np.argmax(window))


def speech_cut(mel: np.ndarray, n: int) -> np.ndarray:
    """fit() of the loudest n-frame window (tiling when n is longer than the utterance)."""
    a = loudest_start(mel, n)
    return fit(mel[..., a:], n)


def _cut_to_frames(u: Utterance, n: int, min_phones: int) -> tuple[np.ndarray, np.ndarray]:
    """Phonemes and durations (tiled as needed) whose durations sum to exactly n frames, starting at
    the phone where the utterance's loudest n-frame window starts."""
    k0 = min(int(np.searchsorted(np.cumsum(u.durations), loudest_start(u.mel, n), side="right")),
             u.phoneme_ids.size - 1)
    reps = -(-n // max(int(u.durations.sum()), 1)) + 1
    ids = np.concatenate([u.phoneme_ids[k0:]] + [u.phoneme_ids] * reps)
    dur = np.concatenate([u.durations[k0:]] + [u.durations] * reps)
    k = int(np.searchsorted(np.cumsum(dur), n)) + 1
    k = max(k, min_phones)
    ids, dur = ids[:k].copy(), dur[:k].copy()
    dur[-1] = max(0, n - int(dur[:-1].sum()))
    while dur.sum() > n:     # min_phones forced more phones than fit: shorten from the front
        i = int(np.argmax(dur))
        dur[i] -= 1
    return ids, dur.astype(np.int64)


class FeedMaker:
    """Builds feeds for one graph from utterances; `upstream` maps graph name -> runner."""

    def __init__(self, name: str, spec, cfg: dict, upstream: dict | None = None):
        self.name, self.spec, self.cfg = name, spec, cfg
        self.up = upstream or {}
        missing = [u for u in UPSTREAM[name] if u not in self.up]
        if missing:
            raise VoxcError(f"{name}: real-data inputs need the upstream graphs {', '.join(missing)}")

    # ---- upstream pieces, one utterance at a time (batch 1) -----------------------------------
    def _ref_mel(self, u: Utterance) -> np.ndarray:
        d = self.spec_dim("ref_frames")
        n = int(np.clip(u.frames, d[0], d[1])) if d else u.frames
        return fit(u.mel, n)[None]

    def spec_dim(self, dim: str):
        r = self.cfg["dims"].get(dim)
        return (r[0], r[3]) if r else None

    def _embeddings(self, u: Utterance) -> dict[str, np.ndarray]:
        mel = self._ref_mel(u)
        spk = self.up["speaker_encoder"].infer({"mel": mel})["speaker_embedding"]
        emo_in = ({"emotion_id": np.array([u.style_id % self.cfg["n_styles"]], np.int64)}
                  if self.cfg.get("emotion_mode") == "table" else {"mel": mel})
        emo = self.up["emotion_encoder"].infer(emo_in)["emotion_embedding"]
        return {"speaker_embedding": spk.astype(np.float32), "emotion_embedding": emo.astype(np.float32)}

    def _hidden(self, u: Utterance, ids: np.ndarray) -> np.ndarray:
        out = self.up["acoustic_encoder"].infer({"phonemes": ids[None], **self._embeddings(u)})
        return out["hidden"]

    # ---- one batch item at a given length ----------------------------------------------------
    def item(self, u: Utterance, n: int) -> dict[str, np.ndarray]:
        name = self.name
        if name in ("speaker_encoder", "emotion_encoder"):
            if "emotion_id" in [t.name for t in self.spec.inputs]:
                return {"emotion_id": np.array([u.style_id % self.cfg["n_styles"]], np.int64)}
            return {"mel": speech_cut(u.mel, n)[None]}
        if name == "vocoder":
            return {"mel": speech_cut(u.mel, n)[None]}
        if name == "acoustic_encoder":
            return {"phonemes": fit(u.phoneme_ids, n)[None], **self._embeddings(u)}
        if name == "length_regulator":
            ids, dur = fit(u.phoneme_ids, n), fit(u.durations, n)
            return {"hidden": self._hidden(u, ids), "durations": dur[None]}
        if name == "acoustic_decoder":
            ids, dur = _cut_to_frames(u, n, self.cfg["dims"]["phonemes"][0])
            hidden = self._hidden(u, ids)
            states = self.up["length_regulator"].infer(
                {"hidden": hidden, "durations": dur[None], "frame_mask": np.ones((1, n), np.float32)})
            return {"frame_states": states["frame_states"]}
        raise VoxcError(f"no real-data feeds for graph '{name}'")

    def batch(self, utts: list[Utterance], n: int) -> dict[str, np.ndarray]:
        items = [self.item(u, n) for u in utts]
        if self.name == "emotion_encoder" and "emotion_id" in items[0]:
            return {"emotion_id": np.concatenate([i["emotion_id"] for i in items])}
        if self.name == "length_regulator":   # frame axis = longest total, clipped to the spec's range
            lo, hi = self.cfg["dims"]["frames"][0], self.cfg["dims"]["frames"][3]
            totals = np.array([int(i["durations"].sum()) for i in items])
            frames = int(np.clip(totals.max(), lo, hi))
            mask = (np.arange(frames)[None, :] < totals[:, None]).astype(np.float32)
            return {"hidden": np.concatenate([i["hidden"] for i in items]),
                    "durations": np.concatenate([i["durations"] for i in items]), "frame_mask": mask}
        return {k: np.concatenate([i[k] for i in items]) for k in items[0]}


def usable(name: str, utts: list[Utterance]) -> list[Utterance]:
    """Graphs fed phonemes need aligned utterances; mel-fed graphs take every utterance."""
    need_align = name in ("acoustic_encoder", "length_regulator", "acoustic_decoder")
    return [u for u in utts if u.aligned] if need_align else list(utts)


def sweep_feeds(maker: FeedMaker, batch: int, length: int, set_name: str = PARITY_SET) -> dict[str, np.ndarray]:
    """Held-out real inputs for one sweep point (deterministic: utterances picked by length)."""
    utts = usable(maker.name, load_set(set_name))
    count = length if maker.spec.sweep_dim == "batch" else batch   # a label table sweeps the batch axis
    start = (7 * length + batch) % len(utts)
    return maker.batch([utts[(start + i) % len(utts)] for i in range(count)], length)


def calibration_feeds(maker: FeedMaker, count: int, set_name: str = CALIBRATION_SET,
                      max_length: int | None = None) -> list[dict[str, np.ndarray]]:
    """Batch-1 calibration inputs at each utterance's natural length, clipped to the spec's range
    (and to max_length, which bounds calibration time)."""
    spec = maker.spec
    d = spec.dims[spec.sweep_dim]
    utts = usable(maker.name, load_set(set_name))
    if not utts:
        raise VoxcError(f"calibration set '{set_name}' has no utterances usable for {maker.name}")
    step = max(1, len(utts) // max(count, 1))
    out = []
    for u in utts[::step][:count]:
        natural = {"phonemes": u.phoneme_ids.size, "batch": 1}.get(spec.sweep_dim, u.frames)
        hi = min(d.max, max_length or d.max)
        out.append(maker.batch([u], int(np.clip(natural, d.min, hi))))
    return out
