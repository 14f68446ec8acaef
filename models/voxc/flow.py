"""The voxc family's host steps and feed recipes (numpy only): the glue between its graphs.

text -> phoneme ids; a reference mel -> speaker_encoder and emotion_encoder (or a style id ->
the emotion table); acoustic_encoder -> the host sums the durations and builds frame_mask ->
length_regulator -> acoustic_decoder -> vocoder. Declared as data in models/voxc/__init__.py.
"""
from __future__ import annotations

import numpy as np

from voxc.models.cutting import cut_to_frames, fit, speech_cut
from voxc.models.spec import preset_dim

STYLES = ("neutral", "fast_high", "slow_low")  # the corpus's style ids 0, 1, 2


def _clip_ref(mel: np.ndarray, cfg: dict) -> np.ndarray:
    lo, hi = preset_dim(cfg, "ref_frames").min, preset_dim(cfg, "ref_frames").max
    return fit(mel, int(np.clip(mel.shape[-1], lo, hi)))[None]


def reference(v: dict, cfg: dict) -> dict:
    """A reference log-mel [80, T] cut or tiled into the encoders' range, with a batch axis; the
    style reference is a second recording when given, else the speaker's."""
    ref = _clip_ref(v["reference_mel"], cfg)
    style = _clip_ref(v["style_mel"], cfg) if "style_mel" in v else ref
    return {"ref_mel": ref, "style_ref_mel": style}


def style_label(v: dict, cfg: dict) -> dict:
    """Style id -> the emotion table's input (emotion_mode = table)."""
    return {"emotion_id": np.array([int(v["style_id"]) % cfg["n_styles"]], np.int64)}


def phoneme_batch(v: dict, cfg: dict) -> dict:
    return {"phonemes": np.asarray(v["phoneme_ids"], np.int64)[None]}


def frame_mask(totals: np.ndarray, frames: int) -> np.ndarray:
    """[batch, frames] 1.0 where a frame is inside its item's total duration: the frame axis enters
    the length regulator as an input dimension, never as a value computed in-graph."""
    return (np.arange(frames)[None, :] < np.asarray(totals).reshape(-1, 1)).astype(np.float32)


def frame_timing(v: dict, cfg: dict) -> dict:
    """The host step between the acoustic encoder and the length regulator: forced durations when
    given (so outputs line up with a reference), else the predicted ones; their sum is the frame
    count (never below the spec's minimum; never cut at its maximum: a longer utterance must be
    split by the caller, not truncated)."""
    dur = np.asarray(v["forced_durations"] if "forced_durations" in v else v["predicted_durations"][0], np.int64)
    if "speed" in v and "forced_durations" not in v:        # 2.0 speaks twice as fast; every phone keeps a frame
        dur = np.maximum(np.rint(dur / float(v["speed"])), np.minimum(dur, 1)).astype(np.int64)
    total = int(dur.sum())
    frames = max(total, preset_dim(cfg, "frames").min)
    return {"durations": dur[None], "frame_mask": frame_mask([total], frames), "frames": frames}


# ---- feed recipes: one data item (calibration.sets.Utterance) at length n -------------------

def reference_feed(u, n: int, cfg: dict) -> dict:
    cut = speech_cut(u.mel, n)[None]
    return {"ref_mel": cut, "style_ref_mel": cut, "style_id": u.style_id}


def mel_feed(u, n: int, cfg: dict) -> dict:
    return {"mel": speech_cut(u.mel, n)[None]}


def _conditioning(u) -> dict:
    return {"reference_mel": u.mel, "style_id": u.style_id}


def phoneme_feed(u, n: int, cfg: dict) -> dict:
    return {"phonemes": fit(u.phoneme_ids, n)[None], **_conditioning(u)}


def regulator_feed(u, n: int, cfg: dict) -> dict:
    return {"phonemes": fit(u.phoneme_ids, n)[None], "forced_durations": fit(u.durations, n), **_conditioning(u)}


def frames_feed(u, n: int, cfg: dict) -> dict:
    ids, dur = cut_to_frames(u.phoneme_ids, u.durations, u.mel, n, preset_dim(cfg, "phonemes").min)
    return {"phonemes": ids[None], "forced_durations": dur, **_conditioning(u)}


def item_inputs(u, cfg: dict, forced: bool = False) -> dict:
    """A whole utterance as pipeline inputs (forced: its aligned durations fix the timing)."""
    out = {"phoneme_ids": u.phoneme_ids, **_conditioning(u)}
    if forced:
        out["forced_durations"] = u.durations
    return out


def item_fits(u, cfg: dict) -> bool:
    """Whether a whole utterance fits the preset's ranges (phonemes, and frames of its durations)."""
    return u.phoneme_ids.size <= preset_dim(cfg, "phonemes").max and int(u.durations.sum()) <= preset_dim(cfg, "frames").max


def text_ids(v: dict, cfg: dict) -> dict:
    """The text front end (English: normalisation, CMUdict + letter-to-sound) -> phoneme ids."""
    from voxc.models.text import text_to_ids
    return {"phoneme_ids": np.asarray(text_to_ids(v["text"], errors="speakable"), np.int64)}


def item_length(u, dim: str, cfg: dict) -> int:
    return {"phonemes": u.phoneme_ids.size, "batch": 1}.get(dim, u.frames)


# ---- speaking at run time (voxc/runtime.py): a request's options -> pipeline inputs ------------

def speak_inputs(o: dict, cfg: dict, given: set, manifest: dict) -> dict:
    """speaker_ref (a wave) -> the reference mel; style: a style name (the trained voice's style
    centroids, or the style table), style_ref (a second recording), or neither (the speaker
    reference's own style); speed. Values already in `given` (cached embeddings) need nothing
    computed for them."""
    from voxc.core import audio
    from voxc.core.errors import VoxcError
    out = {"speed": float(o["speed"])} if o.get("speed") not in (None, 1, 1.0) else {}
    need_style = "emotion_embedding" not in given
    if need_style and o.get("style_ref") is not None:
        out["style_ref_mel"] = _clip_ref(audio.log_mel(o["style_ref"]), cfg)
    elif need_style and o.get("style"):
        out.update(_named_style(o["style"], cfg, manifest))
    if "speaker_embedding" not in given or (need_style and not out.keys() & {"style_ref_mel", "emotion_embedding",
                                                                             "style_id"}):
        if o.get("speaker_ref") is None:
            raise VoxcError("no speaker reference: pass a voice name or a reference recording (speaker_ref)")
        out["reference_mel"] = audio.log_mel(o["speaker_ref"])
    return out


def _named_style(style: str, cfg: dict, manifest: dict) -> dict:
    from voxc.core.errors import VoxcError
    from voxc.models.family import family
    if style not in STYLES:
        raise VoxcError(f"unknown style '{style}': choose one of {', '.join(STYLES)}, or pass style_ref")
    if cfg.get("emotion_mode") == "table":
        return {"style_id": STYLES.index(style)}
    weights = manifest["models"].get("emotion_encoder", {}).get("weights", {})
    if weights.get("source") != "trained voice":
        raise VoxcError(f"style names need the trained voice's style centroids, and this target's emotion encoder "
                        f"has {weights.get('source', 'other')} weights; pass style_ref (a recording in that style)")
    from safetensors.numpy import load_file
    table = load_file(str(family("voxc").voice_folder() / "style_centroids.safetensors"))["centroids"]
    return {"emotion_embedding": table[STYLES.index(style)][None].astype(np.float32)}


# words of a free-text instruction that point at one of the trained styles (its nearest style)
STYLE_WORDS = {
    "fast_high": ("fast", "quick", "rapid", "hurried", "high", "excited", "energetic", "cheerful", "happy", "upbeat",
                  "lively", "enthusiastic", "bright", "urgent", "loud"),
    "slow_low": ("slow", "low", "calm", "soft", "gentle", "sad", "quiet", "relaxed", "soothing", "deep", "whisper",
                 "serious", "somber", "sleepy", "tired"),
}


def style_for_instructions(text: str, cfg: dict, manifest: dict) -> dict:
    """A style name in the instruction, else the style whose cue words it uses most (a tie or none:
    neutral). The voxc voice knows three styles: neutral, fast_high, slow_low; a target without named
    styles (an emotion encoder with other than the trained voice's weights) takes no instruction."""
    import re
    weights = manifest.get("models", {}).get("emotion_encoder", {}).get("weights", {})
    if cfg.get("emotion_mode") != "table" and weights.get("source") != "trained voice":
        return {}
    words = re.findall(r"[a-z_]+", text.lower())
    named = [w for w in words if w in STYLES]
    if named:
        return {"style": named[0]}
    score = {s: sum(w.startswith(cue) for w in words for cue in cues) for s, cues in STYLE_WORDS.items()}
    best = max(score, key=score.get)
    return {"style": best if score[best] > 0 and list(score.values()).count(score[best]) == 1 else "neutral"}


def voices(cfg: dict) -> dict:
    """Built-in voices: one neutral reference recording per held-out speaker of the parity set."""
    from voxc.models.family import family
    out = {}
    for u in family("voxc").items("parity"):
        if u.wave is not None and u.speaker not in out and u.style_id == 0:
            out[u.speaker] = {"speaker_ref": u.wave}
    return out
