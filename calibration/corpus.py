"""Synthetic multi-speaker, multi-style English corpus: the start of the data flow.

corpus (this module, needs Festival + espeak-ng + sox) → ``artifacts/corpus/`` (training
reads it) and the compact committed sets in ``calibration/data/`` (read by
calibration/sets.py for INT8 calibration and parity sweeps on machines without Festival).

* Sentences come from a deterministic template generator (``sentences(n, seed)``).
* Festival voices (slt HTS, kal and ked diphone) give aligned speech: each phone's end time
  from the Segment relation becomes a duration in mel frames (62.5 frames/s) summing
  exactly to the mel length. Festival ``pau`` → ``sil``, or → the punctuation token when it
  follows a word carrying ``, . ? !`` (so training sees what ``models.text.text_to_ids``
  emits at inference).
* Three prosody styles stand in for emotions: ``neutral``, ``fast_high`` (durations x0.8,
  F0 x1.3), ``slow_low`` (durations x1.25, F0 x0.8). Diphone voices use Duration_Stretch
  and int_lr_params; the HTS voice uses the engine's ``-r`` speed and ``sox pitch``
  (duration-preserving) for F0.
* espeak-ng voices are extra speakers without alignment (wave + mel) for the speaker
  encoder; two of them are held out of training (parity split only).

Run: ``python -m calibration.corpus --out artifacts/corpus`` (``make corpus``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from voxc.core.atomic import atomic_path, write_atomic
from voxc.core.hashing import sha256_file

from voxc.core import audio
from voxc.models import text as textmod

GENERATOR_VERSION = "1"
DEFAULT_SEED = 1234
FRAME_RATE = audio.SAMPLE_RATE / audio.HOP  # 62.5 mel frames per second
MIN_SEC, MAX_SEC = 1.0, 8.0
SPLITS = ("train", "validation", "calibration", "parity")
SPLIT_FRACTIONS = {"validation": 0.1, "calibration": 0.1, "parity": 0.1}  # rest: train

# name → (engine, voice). Festival voices are aligned; espeak-ng voices are not.
SPEAKERS = {
    "fest_slt": ("festival", "voice_cmu_us_slt_arctic_hts"),
    "fest_kal": ("festival", "voice_kal_diphone"),
    "fest_ked": ("festival", "voice_ked_diphone"),
    "espk_us": ("espeak", "en-us"),
    "espk_us_f2": ("espeak", "en-us+f2"),
    "espk_gb_m3": ("espeak", "en-gb+m3"),
    "espk_scot_f3": ("espeak", "en-gb-scotland+f3"),
    "espk_carib_m2": ("espeak", "en-029+m2"),
    "espk_rp_f4": ("espeak", "en-gb-x-rp+f4"),
    "espk_lanc_m7": ("espeak", "en-gb-x-gbclan+m7"),
    "espk_nyc_f5": ("espeak", "en-us-nyc+f5"),
}
HELD_OUT_SPEAKERS = ("espk_lanc_m7", "espk_nyc_f5")
# style → (duration factor, F0 factor). Named for what they are, not for an emotion.
STYLES = {"neutral": (1.0, 1.0), "fast_high": (0.8, 1.3), "slow_low": (1.25, 0.8)}
# espeak-ng: words per minute = 165 / duration factor; its 0-99 pitch knob per style (measured
# to give roughly the same F0 ratios as the Festival styles).
ESPEAK_BASE_WPM = 165
ESPEAK_PITCH = {"neutral": 50, "fast_high": 78, "slow_low": 22}

# Festival radio phoneset → SYMBOLS of models/text.py.
FESTIVAL_PHONE_MAP = {"ax": "ah", "axr": "er", "ix": "ih", "dx": "d", "el": "l", "em": "m",
                      "en": "n", "nx": "n", "hv": "hh", "pau": "sil", "h#": "sil", "brth": "sil"}

# ---------------------------------------------------------------- sentence generator
_W = {
    "adj": "quiet small bright heavy old gentle curious broken golden narrow patient wooden "
           "careful distant empty famous sudden honest yellow silver hidden friendly tired".split(),
    "noun": "lantern garden bicycle letter river engine window teacher puppy kettle story "
            "bridge violin market island harbor ladder painting blanket compass orchard".split(),
    "nouns": "apples letters candles pencils boats stones tickets songs maps cookies shells "
             "bottles flowers chairs questions photographs".split(),
    "place": "station library kitchen village valley museum bakery harbor meadow hallway "
             "hospital school theater forest".split(),
    "name": "Anna Peter Maria James Lucy Daniel Grace Oliver Emma Samuel Ruth Henry Clara "
            "Thomas Nora Victor".split(),
    "rel": "sister brother neighbor teacher cousin friend grandmother uncle".split(),
    "past": "carried found painted fixed opened cleaned watched moved lost visited borrowed "
            "noticed".split(),
    "base": "carry find paint fix open clean watch move visit borrow count describe".split(),
    "adv": "slowly quietly happily carefully suddenly gladly softly proudly".split(),
    "prep": "near behind across beside under inside".split(),
    "act": "read a book|bake some bread|play cards|write letters|watch the rain|tidy the attic".split("|"),
}
_W["time"] = ["yesterday", "this morning", "last winter", "after dinner", "on Sunday",
              "before sunrise", "at noon", "tonight", "next week", "in the evening"]

_TEMPLATES = [
    "The {adj} {noun} stood {prep} the {place}.",
    "{name} {past} the {adj} {noun} {time}.",
    "Did you see the {adj} {noun} {prep} the {place}?",
    "Please {base} the {noun} before {time2}.",
    "We {past} {num} {nouns} {time}, and {name} {past2} the rest.",
    "What a {adj} {noun} that was!",
    "{Time}, {name} will {base} the {noun} with {poss} {rel}.",
    "How many {nouns} can you {base} in {num} minutes?",
    "The {noun} in the {place} costs {num} dollars.",
    "If it rains {time}, we will stay at home and {act}.",
    "My {rel} {past} a {adj} {noun} near the {place}.",
    "Although the {noun} was {adj}, the children {past} it {adv}.",
    "Why did {name} leave the {noun} in the {place}?",
    "{name} and {name2} walked {adv} to the {place}, talking about {nouns}.",
    "There are {num} {nouns} on the table, and one {adj} {noun}.",
    "Nobody expected the {noun} to be so {adj}.",
    "Look, the {noun} is {adj} again!",
    "I think the {place} opens at {hour} o'clock, but I am not sure.",
    "The {rel} {adv} {past} the {noun}, then went back to the {place}.",
    "Is the {noun} still {prep} the {place}, or did someone {base} it?",
]

_FIXED = [
    "The sun rose slowly over the quiet hills.",
    "A cold wind blew across the open field.",
    "She kept the old key in a small wooden box.",
    "Bring the blue folder to the meeting, please.",
    "The train was late again, so we took a taxi.",
    "Every morning he walks his dog along the river.",
    "Could you tell me the way to the nearest station?",
    "They painted the fence white and planted roses beside it.",
    "It is never too late to learn something new.",
    "The children laughed when the clown fell over.",
    "Thank you so much for the lovely dinner!",
    "Our flight leaves at seven, so we must hurry.",
    "The museum is closed on Mondays and holidays.",
    "He read the letter twice and then folded it carefully.",
    "Where did you put the scissors and the tape?",
    "Rain is expected later this afternoon.",
    "The small boat drifted toward the rocky shore.",
    "Good stories are worth telling more than once.",
    "We waited for hours, but nobody came.",
    "The soup needs a little more salt and pepper.",
]


def sentences(n: int, seed: int = DEFAULT_SEED) -> list[str]:
    """``n`` distinct sentences, deterministic for a seed (fixed ones first, then templates)."""
    rng = random.Random(seed)
    out, seen = [], set()
    fixed = list(_FIXED)
    rng.shuffle(fixed)
    for s in fixed[: n // 10]:
        out.append(s)
        seen.add(s)
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n:
            raise RuntimeError("sentence generator ran out of variety")
        tpl = rng.choice(_TEMPLATES)
        names = rng.sample(_W["name"], 2)
        t = rng.choice(_W["time"])
        fill = {k: rng.choice(v) for k, v in _W.items()}
        fill.update(name=names[0], name2=names[1], time=t, Time=t[0].upper() + t[1:],
                    time2=rng.choice(_W["time"]), past2=rng.choice(_W["past"]),
                    num=str(rng.choice([2, 3, 4, 5, 7, 9, 11, 12, 15, 20, 24, 30, 45, 100, 250])),
                    hour=rng.choice(["six", "seven", "eight", "nine", "ten", "eleven"]),
                    poss=rng.choice(["her", "his", "their", "our"]))
        s = tpl.format(**fill)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


# ---------------------------------------------------------------- synthesis
def _scheme_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival_batch(voice: str, style: str, jobs: list[tuple[str, str]], tmp: Path) -> dict:
    """Synthesize [(uid, text)] with one festival process; returns uid → (wav path, segments)."""
    dur, f0 = STYLES[style]
    hts = "hts" in voice
    lines = [f"({voice})"]
    if hts:  # HTS voice: engine speed (-r, >1 is faster); F0 is shifted afterwards with sox
        lines.append(f"(set! hts_engine_params (append hts_engine_params (list '(\"-r\" {1.0 / dur:.6f}))))")
    else:
        lines.append(f"(Parameter.set 'Duration_Stretch (* {dur} (Parameter.get 'Duration_Stretch)))")
        lines.append(
            "(set! int_lr_params (list "
            f"(list 'target_f0_mean (* {f0} (cadr (assoc 'target_f0_mean int_lr_params)))) "
            f"(list 'target_f0_std (* {f0} (cadr (assoc 'target_f0_std int_lr_params)))) "
            "(assoc 'model_f0_mean int_lr_params) (assoc 'model_f0_std int_lr_params)))")
    lines.append(
        "(define (voxc_synth uid text path) (let ((u (utt.synth (eval (list 'Utterance 'Text text)))))"
        " (utt.save.wave u path 'riff) (format t \"UTT %s\\n\" uid)"
        " (mapcar (lambda (s) (format t \"SEG %s %f %s\\n\" (item.name s) (item.feat s \"end\")"
        " (item.feat s \"p.R:SylStructure.parent.parent.R:Token.parent.punc\")))"
        " (utt.relation.items u 'Segment))))")
    paths = {}
    for uid, text in jobs:
        paths[uid] = tmp / f"{uid}.wav"
        lines.append(f"(voxc_synth {_scheme_str(uid)} {_scheme_str(text)} {_scheme_str(str(paths[uid]))})")
    script = tmp / f"{voice}_{style}.scm"
    script.write_text("\n".join(lines) + "\n")
    proc = subprocess.run(["festival", "--batch", str(script)], capture_output=True, text=True)
    segs: dict[str, list] = {}
    cur = None
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["UTT"]:
            cur = parts[1]
            segs[cur] = []
        elif parts[:1] == ["SEG"] and cur is not None and len(parts) >= 3:
            segs[cur].append((parts[1], float(parts[2]), parts[3] if len(parts) > 3 else "0"))
    out = {}
    for uid, _ in jobs:
        if uid in segs and paths[uid].exists():
            if hts and f0 != 1.0:
                shifted = paths[uid].with_suffix(".p.wav")
                cents = 1200.0 * math.log2(f0)
                # -D: no random dither, so regeneration is bit-exact
                subprocess.run(["sox", "-D", str(paths[uid]), str(shifted), "pitch", f"{cents:.1f}"], check=True)
                out[uid] = (shifted, segs[uid])
            else:
                out[uid] = (paths[uid], segs[uid])
    if len(out) < len(jobs):
        print(f"warning: festival {voice}/{style}: {len(jobs) - len(out)} of {len(jobs)} failed: "
              f"{proc.stderr.strip()[-300:]}", file=sys.stderr)
    return out


def _espeak(voice: str, style: str, text: str, path: Path) -> Path | None:
    dur, f0 = STYLES[style]
    wpm = round(ESPEAK_BASE_WPM / dur)
    pitch = ESPEAK_PITCH[style]
    r = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(path), text],
                       capture_output=True, text=True)
    return path if r.returncode == 0 and path.exists() else None


def _load_16k(path: Path, n_target: int | None = None) -> np.ndarray:
    """Read a wav, mix to mono, resample to 16 kHz, peak-normalise to 0.9, quantise to the
    int16 grid (so the committed int16 waves reproduce the stored mels exactly)."""
    import soundfile as sf
    from scipy.signal import resample_poly

    w, sr = sf.read(str(path), dtype="float64", always_2d=True)
    w = w.mean(axis=1)
    if n_target is not None:  # sox pitch may change the length by a sample
        w = np.pad(w, (0, max(0, n_target - len(w))))[:n_target]
    if sr != audio.SAMPLE_RATE:
        g = math.gcd(sr, audio.SAMPLE_RATE)
        w = resample_poly(w, audio.SAMPLE_RATE // g, sr // g)
    peak = np.abs(w).max()
    if peak > 0:
        w = w * (0.9 / peak)
    return (np.round(w * 32767.0) / 32767.0).astype(np.float32)


def _align(segs, n_frames: int) -> tuple[list[int], np.ndarray]:
    """Festival segments → (phoneme ids, per-phone durations in frames summing to n_frames)."""
    syms, ends = [], []
    for i, (name, end, punc) in enumerate(segs):
        sym = FESTIVAL_PHONE_MAP.get(name, name)
        if name == "pau" and i > 0:
            p = next((textmod.PUNCT_MAP[c] for c in punc if c in textmod.PUNCT_MAP), None)
            sym = p or "sil"
        if sym not in textmod.SYMBOL_TO_ID:
            sym = "<unk>"
        syms.append(sym)
        ends.append(end)
    end_frames = np.maximum.accumulate(np.clip(np.round(np.array(ends) * FRAME_RATE), 0, n_frames)).astype(np.int64)
    end_frames[-1] = n_frames  # the last phone absorbs rounding and trailing samples
    durs = np.diff(np.concatenate([[0], end_frames]))
    return textmod.phones_to_ids(syms), durs


def _phone_means(values: np.ndarray, durs: np.ndarray, voiced_only: bool) -> np.ndarray:
    out = np.zeros(len(durs), np.float32)
    start = 0
    for i, d in enumerate(durs):
        seg = values[start:start + d]
        if voiced_only:
            seg = seg[seg > 0]
        out[i] = seg.mean() if len(seg) else 0.0
        start += d
    return out


def _features(wave: np.ndarray, segs=None) -> dict | None:
    n_frames = len(wave) // audio.HOP
    sec = n_frames / FRAME_RATE
    if not (MIN_SEC <= sec <= MAX_SEC):
        return None
    wave = wave[: n_frames * audio.HOP]
    mel = audio.log_mel(wave)
    f0, energy = audio.pitch_energy(wave)
    rec = dict(wave=wave, mel=mel, frame_pitch=f0, frame_energy=energy)
    if segs:
        ids, durs = _align(segs, n_frames)
        rec.update(phoneme_ids=np.asarray(ids, np.int64), durations=durs,
                   pitch=_phone_means(f0, durs, True), energy=_phone_means(energy, durs, False))
    else:
        rec.update(phoneme_ids=np.zeros(0, np.int64), durations=np.zeros(0, np.int64),
                   pitch=np.zeros(0, np.float32), energy=np.zeros(0, np.float32))
    return rec


# ---------------------------------------------------------------- corpus assembly
def _plan(n_festival: int, n_espeak: int, seed: int) -> list[dict]:
    """Utterance plan: every Festival sentence in all three styles with one voice (round
    robin), each espeak sentence once, speakers and styles rotating. Split by sentence."""
    fest = [s for s, (e, _) in SPEAKERS.items() if e == "festival"]
    espk = [s for s, (e, _) in SPEAKERS.items() if e == "espeak" and s not in HELD_OUT_SPEAKERS]
    n_held = n_espeak // 2
    texts = sentences(n_festival + n_espeak * len(espk) + n_held * len(HELD_OUT_SPEAKERS), seed)
    rng = random.Random(seed + 1)

    def split_of(k: int, n: int, order: list[int]) -> str:
        pos = order.index(k) / n
        edge = 0.0
        for name, frac in SPLIT_FRACTIONS.items():
            edge += frac
            if pos < edge:
                return name
        return "train"

    plan = []
    order = list(range(n_festival))
    rng.shuffle(order)
    per_split = Counter()
    for k in range(n_festival):
        split = split_of(k, n_festival, order)
        voice = fest[per_split[split] % len(fest)]  # round robin within each split
        per_split[split] += 1
        for style in STYLES:
            plan.append(dict(text=texts[k], speaker=voice, style=style, split=split))
    t = n_festival
    styles = list(STYLES)
    for si, spk in enumerate(espk):
        order = list(range(n_espeak))
        rng.shuffle(order)
        for k in range(n_espeak):
            plan.append(dict(text=texts[t], speaker=spk, style=styles[(k + si) % 3],
                             split=split_of(k, n_espeak, order)))
            t += 1
    for si, spk in enumerate(HELD_OUT_SPEAKERS):
        for k in range(n_held):
            plan.append(dict(text=texts[t], speaker=spk, style=styles[(k + si) % 3], split="parity"))
            t += 1
    for i, p in enumerate(plan):
        p["uid"] = f"u{i:05d}_{p['speaker']}_{p['style']}"
    return plan


def synthesize(plan: list[dict], tmp: Path, log=print) -> list[dict]:
    """Render and featurise the plan; returns records (plan entries + features), plan order."""
    groups = defaultdict(list)
    for p in plan:
        if SPEAKERS[p["speaker"]][0] == "festival":
            groups[(SPEAKERS[p["speaker"]][1], p["style"])].append(p)
    waves = {}
    for (voice, style), items in groups.items():
        t0 = time.time()
        res = _festival_batch(voice, style, [(p["uid"], p["text"]) for p in items], tmp)
        for uid, (path, segs) in res.items():
            n_orig = None
            if path.name.endswith(".p.wav"):
                import soundfile as sf
                n_orig = sf.info(str(path.with_name(path.name.replace(".p.wav", ".wav")))).frames
            waves[uid] = (_load_16k(path, n_orig), segs)
        log(f"  festival {voice:32s} {style:9s} {len(res):4d} utts {time.time() - t0:6.1f}s")
    t0 = time.time()
    n_es = 0
    for p in plan:
        engine, voice = SPEAKERS[p["speaker"]]
        if engine == "espeak":
            path = _espeak(voice, p["style"], p["text"], tmp / f"{p['uid']}.wav")
            if path is not None:
                waves[p["uid"]] = (_load_16k(path), None)
                n_es += 1
    log(f"  espeak-ng {n_es} utts {time.time() - t0:6.1f}s")
    t0 = time.time()
    records, dropped = [], Counter()
    for p in plan:
        if p["uid"] not in waves:
            dropped["synthesis failed"] += 1
            continue
        wave, segs = waves.pop(p["uid"])
        feats = _features(wave, segs)
        if feats is None:
            dropped[f"outside {MIN_SEC}-{MAX_SEC}s"] += 1
            continue
        records.append({**p, **feats})
    log(f"  features {len(records)} utts {time.time() - t0:6.1f}s; dropped: {dict(dropped) or 'none'}")
    return records


def _pack(records: list[dict], with_waves: bool = True, int16_waves: bool = False) -> dict:
    """Concatenate per-utterance arrays + offsets (the .npz layout sets.py and training read)."""
    def cat(key, axis=-1):
        arrs = [r[key] for r in records]
        offs = np.concatenate([[0], np.cumsum([a.shape[axis] for a in arrs])]).astype(np.int64)
        return (np.concatenate(arrs, axis=axis) if arrs else np.zeros(0)), offs

    spk_ids = {s: i for i, s in enumerate(SPEAKERS)}
    sty_ids = {s: i for i, s in enumerate(STYLES)}
    mels, mel_off = cat("mel")
    d = dict(mels=mels.astype(np.float32) if records else np.zeros((audio.N_MELS, 0), np.float32), mel_offsets=mel_off)
    for key, dtype in (("phoneme_ids", np.int64), ("durations", np.int64), ("pitch", np.float32), ("energy", np.float32)):
        arr, off = cat(key)
        d[key] = arr.astype(dtype)
    d["phone_offsets"] = off
    for key in ("frame_pitch", "frame_energy"):
        d[key] = cat(key)[0].astype(np.float32)
    if with_waves:
        waves, d["wave_offsets"] = cat("wave")
        d["waves"] = np.round(waves * 32767).astype(np.int16) if int16_waves else waves.astype(np.float32)
    d["speaker_id"] = np.array([spk_ids[r["speaker"]] for r in records], np.int64)
    d["style_id"] = np.array([sty_ids[r["style"]] for r in records], np.int64)
    d["text"] = np.array([r["text"] for r in records], dtype=str)
    d["utt_id"] = np.array([r["uid"] for r in records], dtype=str)
    d["speakers"] = np.array(list(SPEAKERS), dtype=str)
    d["styles"] = np.array(list(STYLES), dtype=str)
    return d


def style_stats(records: list[dict]) -> dict:
    """Per engine/style and speaker/style: speaking rate (words per second of audio, and
    aligned phones per second for Festival) and the mean of per-utterance voiced F0."""
    acc = defaultdict(lambda: dict(phones=0, words=0, sec=0.0, f0=[], n=0))
    for r in records:
        engine = SPEAKERS[r["speaker"]][0]
        for key in (f"{engine}/{r['style']}", f"{r['speaker']}/{r['style']}"):
            a = acc[key]
            a["n"] += 1
            a["sec"] += r["mel"].shape[1] / FRAME_RATE
            a["words"] += sum(w not in textmod.PUNCTUATION for w in textmod.normalize(r["text"]))
            a["phones"] += int(np.sum(r["phoneme_ids"] != textmod.SIL_ID) - np.isin(
                r["phoneme_ids"], [textmod.SYMBOL_TO_ID[p] for p in textmod.PUNCTUATION]).sum())
            v = r["frame_pitch"][r["frame_pitch"] > 0]
            if len(v):
                a["f0"].append(float(v.mean()))
    return {k: dict(utts=a["n"], mean_sec=round(a["sec"] / a["n"], 3),
                    words_per_sec=round(a["words"] / a["sec"], 2),
                    phones_per_sec=round(a["phones"] / a["sec"], 2) if a["phones"] else None,
                    mean_f0_hz=round(float(np.mean(a["f0"])), 1) if a["f0"] else None)
            for k, a in sorted(acc.items())}


def _metadata(records: list[dict], seed: int, stats: dict, seconds: float, command: str) -> dict:
    by = lambda key: {s: dict(Counter(r[key] for r in records if r["split"] == s)) for s in SPLITS}  # noqa: E731
    secs = np.array([r["mel"].shape[1] / FRAME_RATE for r in records])
    pdur = np.concatenate([r["durations"] for r in records]) if records else np.zeros(0)
    hist_u, edges_u = np.histogram(secs, bins=np.arange(0, MAX_SEC + 1, 1.0))
    hist_p, edges_p = np.histogram(pdur, bins=[0, 1, 2, 4, 8, 16, 32, 64, 10**6])
    return dict(
        generator_version=GENERATOR_VERSION, seed=seed, command=command,
        sample_rate=audio.SAMPLE_RATE, hop=audio.HOP, n_mels=audio.N_MELS, frame_rate=FRAME_RATE,
        symbols=textmod.SYMBOLS,
        speakers=[dict(id=i, name=s, engine=e, voice=v, held_out=s in HELD_OUT_SPEAKERS,
                       aligned=e == "festival") for i, (s, (e, v)) in enumerate(SPEAKERS.items())],
        styles=[dict(id=i, name=s, duration_factor=d, f0_factor=f) for i, (s, (d, f)) in enumerate(STYLES.items())],
        counts=dict(total=len(records), per_split={s: sum(r["split"] == s for r in records) for s in SPLITS},
                    per_split_speaker=by("speaker"), per_split_style=by("style")),
        utterance_seconds_histogram=dict(edges=edges_u.tolist(), counts=hist_u.tolist()),
        phone_duration_frames_histogram=dict(edges=edges_p.tolist(), counts=hist_p.tolist()),
        total_hours=round(float(secs.sum()) / 3600, 3), style_stats=stats,
        generation_seconds=round(seconds, 1))


def _compact(records: list[dict], seed: int, max_parity: int = 48, max_parity_sec: float = 4.5) -> dict:
    """The committed subsets: all of the calibration split; a parity subset that covers every
    (speaker, style) of the parity split with short utterances (waves kept); reference clips
    of 1.5 / 2.25 / 3 s for every speaker x style, cut from non-train utterances where one is
    long enough (else from a train one)."""
    rng = random.Random(seed + 2)
    calib = [r for r in records if r["split"] == "calibration"]
    par_pool = [r for r in records if r["split"] == "parity" and r["mel"].shape[1] / FRAME_RATE <= max_parity_sec]
    rng.shuffle(par_pool)
    parity, seen = [], set()
    for r in par_pool:  # first one per (speaker, style), then fill
        if (r["speaker"], r["style"]) not in seen:
            seen.add((r["speaker"], r["style"]))
            parity.append(r)
    parity += [r for r in par_pool if r not in parity][: max(0, max_parity - len(parity))]
    parity.sort(key=lambda r: r["uid"])
    refs = []
    for spk in SPEAKERS:
        for sty in STYLES:
            cands = [r for r in records if r["speaker"] == spk and r["style"] == sty]
            for bucket in (1.5, 2.25, 3.0):
                n = int(round(bucket * FRAME_RATE))
                ok = [r for r in cands if r["mel"].shape[1] >= n]
                ok = [r for r in ok if r["split"] != "train"] or ok  # train only if nothing else is long enough
                if not ok:
                    continue
                r = ok[rng.randrange(len(ok))]
                start = rng.randrange(r["mel"].shape[1] - n + 1)
                refs.append(dict(uid=f"ref_{spk}_{sty}_{bucket:g}s", text=r["text"], speaker=spk, style=sty,
                                 split="refs", mel=r["mel"][:, start:start + n],
                                 frame_pitch=r["frame_pitch"][start:start + n],
                                 frame_energy=r["frame_energy"][start:start + n],
                                 phoneme_ids=np.zeros(0, np.int64), durations=np.zeros(0, np.int64),
                                 pitch=np.zeros(0, np.float32), energy=np.zeros(0, np.float32)))
    return {"calibration": _pack(calib, with_waves=False),
            "parity": _pack(parity, with_waves=True, int16_waves=True),
            "refs": _pack(refs, with_waves=False)}


def _save_npz(path: Path, arrays: dict) -> None:
    """np.savez_compressed with fixed zip timestamps, so identical content → identical sha256."""
    import io
    import zipfile

    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def write_compact(records: list[dict], out_dir: Path, seed: int, command: str) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, arrays in _compact(records, seed).items():
        path = out_dir / f"{name}.npz"
        _save_npz(path, arrays)
        files[f"{name}.npz"] = dict(set=name, sha256=sha256_file(path), bytes=path.stat().st_size,
                                    utterances=int(len(arrays["text"])))
    manifest = dict(generator_version=GENERATOR_VERSION, seed=seed, command=command,
                    tools="festival festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k espeak-ng sox",
                    symbols=textmod.SYMBOLS, speakers=list(SPEAKERS), styles=list(STYLES),
                    held_out_speakers=list(HELD_OUT_SPEAKERS), files=files)
    write_atomic(out_dir / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    return manifest


def check_tools() -> None:
    missing = [t for t in ("festival", "espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)}; install with: apt-get install festival "
                 "festvox-us-slt-hts festvox-kallpc16k festvox-kdlpc16k espeak-ng sox")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="artifacts/corpus", help="full corpus directory (gitignored)")
    ap.add_argument("--compact-out", default="calibration/data", help="committed compact sets ('' to skip)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--festival-sentences", type=int, default=300, help="each is rendered in 3 styles")
    ap.add_argument("--espeak-per-speaker", type=int, default=48, help="held-out speakers get half")
    args = ap.parse_args(argv)
    check_tools()
    compact = args.compact_out or "''"
    command = (f"python -m calibration.corpus --out {args.out} --compact-out {compact} "
               f"--seed {args.seed} --festival-sentences {args.festival_sentences} "
               f"--espeak-per-speaker {args.espeak_per_speaker}")
    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plan = _plan(args.festival_sentences, args.espeak_per_speaker, args.seed)
    print(f"corpus: {len(plan)} planned utterances, seed {args.seed}")
    with tempfile.TemporaryDirectory(prefix="voxc_corpus_") as tmp:
        records = synthesize(plan, Path(tmp))
    stats = style_stats(records)
    for split in SPLITS:
        with atomic_path(out / f"{split}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **_pack([r for r in records if r["split"] == split]))
    meta = _metadata(records, args.seed, stats, time.time() - t0, command)
    write_atomic(out / "metadata.json", json.dumps(meta, indent=1) + "\n")
    print("counts per split:", meta["counts"]["per_split"])
    print(f"{'group':28s} {'utts':>5s} {'sec':>6s} {'words/s':>8s} {'phones/s':>8s} {'F0 Hz':>7s}")
    for k, s in stats.items():
        print(f"{k:28s} {s['utts']:5d} {s['mean_sec']:6.2f} {s['words_per_sec']:8.2f} "
              f"{s['phones_per_sec'] or 0:8.2f} {s['mean_f0_hz'] or 0:7.1f}")
    if args.compact_out:
        manifest = write_compact(records, Path(args.compact_out), args.seed, command)
        total = sum(f["bytes"] for f in manifest["files"].values())
        print(f"compact sets in {args.compact_out}: {total / 1e6:.1f} MB "
              + ", ".join(f"{f['set']}={f['utterances']}" for f in manifest["files"].values()))
    print(f"done in {time.time() - t0:.0f}s; {meta['total_hours']} h of audio in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
