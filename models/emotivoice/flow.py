"""The EmotiVoice family's host steps, feed recipes and data items (numpy only, plus its front end).

text -> g2p_cn_en tokens -> ids (the voice's tokenlist); the emotion prompt and the text -> BERT
WordPiece ids (the voice's SimBERT vocabulary) -> prompt_encoder twice (style, content; both
cacheable); acoustic_encoder -> the host turns predicted durations into the frame axis (a speed
factor `alpha` scales them, or `target_frames` stretches them to an exact count) -> length_regulator
-> acoustic_decoder -> vocoder. Data items are sentences with an emotion prompt and a speaker: the
family has no recorded corpus, so calibration and parity run the imported model on text.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxc.core.errors import VoxcError
from voxc.models.cutting import fit
from voxc.models.spec import preset_dim

DATA = Path(__file__).resolve().parent / "data"


@functools.lru_cache(maxsize=8)
def _token_index(tokens: tuple[str, ...]) -> dict[str, int]:
    return {t: i for i, t in enumerate(tokens)}


@functools.lru_cache(maxsize=4)
def _bert_tokenizer(vocab: tuple[str, ...]):
    from transformers import BertTokenizer
    return BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})


def lexicon_entries(cfg: dict) -> dict | None:
    """The imported English lexicon's entries (cfg["lexicon"], models/emotivoice/lexicon.py), if any."""
    lex = cfg.get("lexicon")
    return lex.get("entries") if isinstance(lex, dict) else None


def phoneme_ids(text: str, cfg: dict) -> np.ndarray:
    from voxc.models.emotivoice.frontend import g2p
    index = _token_index(tuple(cfg["tokens"]))
    toks = g2p(text, lexicon_entries(cfg))
    missing = sorted({t for t in toks if t not in index})
    if missing:
        raise VoxcError(f"the voice's tokenlist has no {', '.join(missing[:5])}: the text needs symbols this voice "
                        "was not trained with")
    return np.array([index[t] for t in toks], np.int64)


def bert_ids(text: str, cfg: dict) -> np.ndarray:
    """BertTokenizer([text]) as EmotiVoice calls it: [CLS] ... [SEP], no padding, no truncation."""
    return np.asarray(_bert_tokenizer(tuple(cfg["bert_vocab"]))([text])["input_ids"][0], np.int64)


def g2p_step(v: dict, cfg: dict) -> dict:
    return {"ids": phoneme_ids(v["text"], cfg)[None]}


def prompt_tokens(v: dict, cfg: dict) -> dict:
    return {"prompt_ids": bert_ids(v["prompt"], cfg)[None]}


def content_tokens(v: dict, cfg: dict) -> dict:
    return {"content_ids": bert_ids(v["text"], cfg)[None]}


def speaker_row(v: dict, cfg: dict) -> dict:
    """A speaker id, or a name from the voice's speaker list -> the speaker table row [1]."""
    s = v["speaker_name"]
    names = cfg.get("speakers") or []
    if isinstance(s, str) and s in names:          # names first: EmotiVoice's are numbers too ("8051")
        s = names.index(s)
    elif isinstance(s, str) and not s.isdigit():
        raise VoxcError(f"unknown speaker '{s}': this voice has {len(names)} speakers (see its speaker list)")
    s = int(s)
    if not 0 <= s < cfg["n_speakers"]:
        raise VoxcError(f"speaker {s} is outside this voice's table (0..{cfg['n_speakers'] - 1})")
    return {"speaker": np.array([s], np.int64)}


def frame_timing(v: dict, cfg: dict) -> dict:
    """Predicted (or forced) durations -> the frame axis. `alpha` scales durations (speed: 2.0 is half as
    fast), `target_frames` stretches them to an exact frame count; the Gaussian upsampler takes the
    fractional durations as they are. EmotiVoice's guard: all-zero durations count one frame per token."""
    d = np.asarray(v["forced_durations"] if "forced_durations" in v else v["predicted_durations"][0], np.float32)
    if d.sum() == 0:
        d = np.ones_like(d)
    if "target_frames" in v:
        d = d * (float(v["target_frames"]) / float(d.sum()))
        total = int(v["target_frames"])
    else:
        d = d * float(v.get("alpha", 1.0))
        total = int(round(float(d.sum())))
    frames = max(total, preset_dim(cfg, "frames").min)
    mask = (np.arange(frames)[None, :] < total).astype(np.float32)
    return {"durations": d[None], "frame_mask": mask, "frames": frames}


# ---- data: sentences with an emotion prompt and a speaker -----------------------------------

@dataclass(frozen=True)
class Sentence:
    utt_id: str
    text: str
    prompt: str
    speaker: int
    aligned: bool = True           # every item can feed every graph


@functools.lru_cache(maxsize=None)
def _sentences() -> dict:
    return json.loads((DATA / "sentences.json").read_text(encoding="utf-8"))


def load_set(name: str) -> list[Sentence]:
    doc = _sentences()
    if name not in doc["sets"]:
        raise VoxcError(f"no EmotiVoice sentence set '{name}': choose from {', '.join(doc['sets'])}")
    prompts = doc["prompts"]
    return [Sentence(f"{name}-{i:02d}", text, prompts[i % len(prompts)], (37 * i + 11) % 2014)
            for i, text in enumerate(doc["sets"][name])]


def set_hash(name: str) -> str:
    from voxc.core.hashing import canonical, sha256_bytes
    return sha256_bytes(canonical({"set": name, "items": [s.__dict__ for s in load_set(name)]}))


def _speaker(u, cfg) -> int:
    return u.speaker % cfg["n_speakers"]


def _ids_at(u, n: int, cfg: dict) -> np.ndarray:
    return fit(phoneme_ids(u.text, cfg), n)[None]


def prompt_feed(u, n, cfg):
    """n BERT tokens of the sentence: [CLS], then its WordPieces (with [SEP]) cut or tiled to n - 1."""
    ids = bert_ids(u.text, cfg)
    return {"prompt_ids": np.concatenate([ids[:1], fit(ids[1:], n - 1)])[None]}


def phoneme_feed(u, n, cfg):
    return {"ids": _ids_at(u, n, cfg), "text": u.text, "prompt": u.prompt, "speaker_name": _speaker(u, cfg)}


def frames_feed(u, n, cfg):
    """n frames of the model's own prediction: about n / 5 tokens, durations stretched to exactly n."""
    lo, hi = preset_dim(cfg, "phonemes").min, preset_dim(cfg, "phonemes").max
    tokens = int(np.clip(n // 5, lo, hi))
    return {"ids": _ids_at(u, tokens, cfg), "text": u.text, "prompt": u.prompt, "speaker_name": _speaker(u, cfg),
            "target_frames": n}


def item_inputs(u, cfg: dict, forced: bool = False) -> dict:
    return {"text": u.text, "prompt": u.prompt, "speaker_name": _speaker(u, cfg)}


def item_length(u, dim: str, cfg: dict) -> int:
    tokens = phoneme_ids(u.text, cfg).size
    return {"batch": 1, "phonemes": tokens, "tokens": bert_ids(u.text, cfg).size}.get(dim, 5 * tokens)


def item_fits(u, cfg: dict) -> bool:
    n = phoneme_ids(u.text, cfg).size
    return n <= preset_dim(cfg, "phonemes").max and 5 * n <= preset_dim(cfg, "frames").max and \
        bert_ids(u.text, cfg).size <= preset_dim(cfg, "tokens").max


# ---- speaking at run time (voxc/runtime.py): a request's options -> pipeline inputs ------------

def speak_inputs(o: dict, cfg: dict, given: set, manifest: dict) -> dict:
    """voice/speaker -> speaker_name (a name of the voice's speaker list or an id); style/emotion ->
    the emotion prompt (EmotiVoice's prompts, e.g. 开心 'happy'); speed -> alpha (durations / speed)."""
    speaker = o.get("speaker", o.get("voice"))
    if speaker is None:
        raise VoxcError("no speaker: pass a speaker name or id of this voice")
    out = {"speaker_name": speaker}
    if "style" not in given:
        out["prompt"] = o.get("style") or DEFAULT_PROMPT
    if o.get("speed") not in (None, 1, 1.0):
        out["alpha"] = 1.0 / float(o["speed"])
    return out


DEFAULT_PROMPT = "普通"


def style_for_instructions(text: str, cfg: dict, manifest: dict) -> dict:
    """EmotiVoice's style control is a free-text emotion prompt: the instruction is the prompt itself."""
    return {"style": text.strip()}


def voices(cfg: dict) -> dict:
    """Built-in voices: the voice's named speakers (or the first ids when it has no names)."""
    names = cfg.get("speakers") or [str(i) for i in range(min(int(cfg.get("n_speakers", 1)), 16))]
    return {str(n): {"speaker": n} for n in names}
