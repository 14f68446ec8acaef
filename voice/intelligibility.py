"""Objective intelligibility of `voxc synth`: an offline ASR (PocketSphinx with the en-US model its
PyPI package ships; `pip install pocketsphinx`, the `asr` extra) transcribes synthesised held-out
sentences; word error rate against the text, next to the same ASR on the real corpus recordings
of the same sentences by the same speaker (the ceiling this ASR allows on this corpus), and on
the vocoder's copy synthesis of those recordings (ground-truth mel -> vocoder: what the vocoder
alone costs).

The ASR runs in a subprocess with any interpreter that has pocketsphinx (``--asr-python``), so the
project's environment need not carry it.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from voxc.models.text import normalize

_ASR_SCRIPT = r"""
import json, sys
import numpy as np, wave
from pocketsphinx import Decoder
d = Decoder(samprate=16000, loglevel="FATAL")
for path in sys.argv[1:]:
    with wave.open(path) as f:
        assert f.getframerate() == 16000 and f.getnchannels() == 1 and f.getsampwidth() == 2
        raw = f.readframes(f.getnframes())
    d.start_utt(); d.process_raw(raw, full_utt=True); d.end_utt()
    print(json.dumps({"file": path, "hyp": d.hyp().hypstr if d.hyp() else ""}))
"""


def words(text: str) -> list[str]:
    return [w.lstrip("^") for w in normalize(text, errors="skip") if w[0].isalpha() or w[0] == "^"]


def wer_counts(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d[0] = d.copy(), i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return int(d[len(hyp)])


def transcribe(paths: list[Path], asr_python: str = sys.executable) -> dict[str, str]:
    out = subprocess.run([asr_python, "-c", _ASR_SCRIPT, *map(str, paths)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "ASR failed")
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {r["file"]: r["hyp"] for r in rows}


def asr_available(asr_python: str = sys.executable) -> bool:
    return subprocess.run([asr_python, "-c", "import pocketsphinx"], capture_output=True).returncode == 0


def evaluate(voice, split, out_dir: Path, asr_python: str = sys.executable, speakers=("fest_slt",),
             max_sentences: int = 12) -> dict:
    """Synthesise neutral held-out sentences for each speaker (speaker reference: another held-out
    utterance of that speaker) and score synthesis and real recordings with the same ASR."""
    from voxc.voice.synth import write_wav
    out_dir.mkdir(parents=True, exist_ok=True)
    neutral = split.styles.index("neutral")
    jobs = []   # (kind, speaker, text, path)
    for spk in speakers:
        sid = split.speakers.index(spk)
        utts = [i for i in range(len(split)) if split.speaker_id(i) == sid and split.style_id(i) == neutral]
        for n, i in enumerate(utts[:max_sentences]):
            ref = utts[(n + 1) % len(utts)]
            text = split.text(i)
            wave, _ = voice.synthesize(text, split.wave(ref), "neutral")
            p_syn, p_real = out_dir / f"{spk}_{n:02d}_synth.wav", out_dir / f"{spk}_{n:02d}_real.wav"
            p_copy = out_dir / f"{spk}_{n:02d}_copy.wav"
            write_wav(p_syn, wave)
            write_wav(p_real, split.wave(i))
            with torch.no_grad():   # the vocoder alone: ground-truth mel of the real recording -> wave
                copy = voice.modules["vocoder"](torch.from_numpy(np.ascontiguousarray(split.mel(i)))[None])[0, 0]
            write_wav(p_copy, copy.numpy())
            jobs += [("synth", spk, text, p_syn), ("real", spk, text, p_real), ("copy", spk, text, p_copy)]
    hyps = transcribe([j[3] for j in jobs], asr_python)
    errors = {"synth": [0, 0], "real": [0, 0], "copy": [0, 0]}
    examples = []
    for kind, spk, text, path in jobs:
        ref_w, hyp = words(text), hyps.get(str(path), "").split()
        errors[kind][0] += wer_counts(ref_w, hyp)
        errors[kind][1] += len(ref_w)
        if len(examples) < 9:
            examples.append({"kind": kind, "speaker": spk, "text": text, "asr": " ".join(hyp)})
    return {"asr": "pocketsphinx en-us (the model shipped in the PyPI package), default decoder settings",
            "synth_wer": round(errors["synth"][0] / errors["synth"][1], 4),
            "real_recording_wer": round(errors["real"][0] / errors["real"][1], 4),
            "vocoder_copy_synthesis_wer": round(errors["copy"][0] / errors["copy"][1], 4),
            "sentences": len(jobs) // 3, "speakers": list(speakers), "style": "neutral",
            "words": errors["synth"][1], "examples": examples, "wavs": str(out_dir)}
