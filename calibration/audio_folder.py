"""A user's own audio folder as the calibration and parity data (`voxc build --data DIR`).

Every .wav / .flac file under DIR (recursively) is read, mixed to mono, resampled to the family's mel
front end rate (core/mel.py, declared by the family as data) and turned into that front end's log-mel;
items carry their waveform and no phone alignment (`aligned` is False), so every gate that does not
need durations uses them. Files are ordered by content hash; every fourth (the first, fifth, ...) is
held out for parity, the rest calibrate (a folder of one file uses it for both). The set's hash is
the sha256 over the files' content hashes and the mel settings, so it keys every stage that reads it.

The folder reaches build workers through the VOXC_DATA environment variable (set by the build, as
VOXC_FAMILIES is); models/family.Family.items reads it.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from voxc.calibration.sets import Utterance
from voxc.core.errors import VoxcError
from voxc.core.hashing import canonical, sha256_bytes, sha256_file
from voxc.core.mel import MelFrontEnd, resample

ENV = "VOXC_DATA"
SUFFIXES = (".wav", ".flac")
HELD_OUT_EVERY = 4
MIN_SECONDS = 0.25


def active() -> Path | None:
    """The audio folder this build uses instead of the committed sets (None: the committed sets)."""
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None


def files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise VoxcError(f"--data {folder}: not a folder; pass a folder of .wav or .flac files")
    found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not found:
        raise VoxcError(f"--data {folder}: no .wav or .flac file in it; add the audio to calibrate and check with")
    return found


def _hashes(folder: Path) -> list[tuple[str, Path]]:
    return sorted((sha256_file(p), p) for p in files(folder))


def folder_hash(folder: Path, mel: MelFrontEnd) -> str:
    """Content hash of the folder's audio (not its paths) and the mel settings that read it."""
    return sha256_bytes(canonical({"mel": mel.to_json(), "files": [d for d, _ in _hashes(folder)]}))


def _read(path: Path, rate: int) -> np.ndarray:
    import soundfile as sf
    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 -- any unreadable file is one clear refusal
        raise VoxcError(f"--data: cannot read {path} as audio ({str(exc).strip()[:120] or type(exc).__name__}); "
                        "remove it or convert it to .wav/.flac") from None
    wave = wave.mean(axis=1)
    if sr != rate:
        wave = resample(wave, sr, rate)
    if wave.size < MIN_SECONDS * rate or not np.isfinite(wave).all():
        raise VoxcError(f"--data: {path} is shorter than {MIN_SECONDS} s or not finite; remove it")
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _items(folder: str, mel: MelFrontEnd, digest: str) -> tuple[tuple[Utterance, ...], tuple[Utterance, ...]]:
    entries = _hashes(Path(folder))
    empty_i, empty_f = np.zeros(0, np.int64), np.zeros(0, np.float32)
    items = []
    for sha, path in entries:
        wave = _read(path, mel.sample_rate)
        frames = wave.size // mel.hop
        wave = wave[: frames * mel.hop]
        items.append(Utterance(text="", phoneme_ids=empty_i, durations=empty_i, mel=mel.log_mel(wave),
                               pitch=empty_f, energy=empty_f, speaker="user", style="", wave=wave,
                               utt_id=f"{path.stem}-{sha[:8]}"))
    parity = tuple(u for i, u in enumerate(items) if i % HELD_OUT_EVERY == 0)
    calibration = tuple(u for i, u in enumerate(items) if i % HELD_OUT_EVERY != 0) or parity
    return calibration, parity


def load(folder: Path, mel: MelFrontEnd, set_name: str) -> list[Utterance]:
    """The folder's items of one set: "parity" (held out) or "calibration" (any other set name)."""
    calibration, parity = _items(str(Path(folder).resolve()), mel, folder_hash(folder, mel))
    return list(parity if set_name == "parity" else calibration)
