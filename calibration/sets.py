"""Reader for the committed compact sets in calibration/data/ (no Festival needed).

corpus.py writes them; INT8 calibration and the parity sweeps read them here:

* ``load_set("calibration")`` — the calibration split: aligned Festival utterances (phoneme
  ids, durations, per-phone pitch/energy, mel) plus unaligned espeak-ng ones (mel only);
* ``load_set("parity")`` — held-out utterances, including the held-out speakers, with their
  16 kHz waves;
* ``load_set("refs")`` — 1.5 / 2.25 / 3 s reference mel clips for the speaker and style
  encoders, for every speaker x style.

Every file is checked against the sha256 in ``manifest.json`` before it is read;
``set_hash(name)`` is that sha256, usable as a cache key for calibration results.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxc.core.hashing import sha256_file
from voxc.core.errors import VoxcError

DATA_DIR = Path(__file__).resolve().parent / "data"
SET_NAMES = ("calibration", "parity", "refs")


class CorruptSetError(VoxcError):
    pass


@dataclass
class Utterance:
    text: str
    phoneme_ids: np.ndarray  # int64 [phones]; empty when not aligned (espeak-ng, refs)
    durations: np.ndarray  # int64 [phones], mel frames, sums to mel.shape[1] when aligned
    mel: np.ndarray  # float32 [80, frames], models.audio.log_mel of ``wave``
    pitch: np.ndarray  # float32 [phones], mean voiced F0 in Hz (0 if none voiced)
    energy: np.ndarray  # float32 [phones], mean frame energy
    speaker: str
    style: str
    wave: np.ndarray | None = None  # float32 [frames * 256] at 16 kHz (parity set only)
    speaker_id: int = 0
    style_id: int = 0
    utt_id: str = ""
    frame_pitch: np.ndarray | None = None  # float32 [frames]
    frame_energy: np.ndarray | None = None  # float32 [frames]

    @property
    def aligned(self) -> bool:
        return self.durations.size > 0

    @property
    def frames(self) -> int:
        return int(self.mel.shape[1])


def _corrupt(name: str, detail: str) -> CorruptSetError:
    return CorruptSetError(f"calibration set '{name}' is corrupt: {detail}; reinstall voxc (the sets ship with it) or, in a checkout, regenerate them with `make corpus`")


def manifest(data_dir: Path | str = DATA_DIR) -> dict:
    path = Path(data_dir) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise _corrupt("manifest", f"cannot read {path} ({e.__class__.__name__})") from None


def _entry(name: str, data_dir: Path) -> tuple[str, dict]:
    if name not in SET_NAMES:
        raise ValueError(f"unknown calibration set {name!r}; expected one of {', '.join(SET_NAMES)}")
    for fname, info in manifest(data_dir)["files"].items():
        if info.get("set") == name:
            return fname, info
    raise _corrupt(name, "not listed in manifest.json")


def set_hash(name: str, data_dir: Path | str = DATA_DIR) -> str:
    """Content hash (sha256 of the set's file, from the manifest)."""
    return _entry(name, Path(data_dir))[1]["sha256"]


def verify(name: str, data_dir: Path | str = DATA_DIR) -> Path:
    """Check the set's file against the manifest; returns its path or raises CorruptSetError."""
    data_dir = Path(data_dir)
    fname, info = _entry(name, data_dir)
    path = data_dir / fname
    if not path.is_file():
        raise _corrupt(name, f"missing file {fname}")
    if sha256_file(path) != info["sha256"]:
        raise _corrupt(name, f"sha256 mismatch for {fname}")
    return path


@functools.lru_cache(maxsize=8)
def _parse(path: str, sha256: str) -> tuple[Utterance, ...]:  # cached by verified content
    with np.load(path, allow_pickle=False) as d:
        d = {k: d[k] for k in d.files}
    speakers, styles = [str(s) for s in d["speakers"]], [str(s) for s in d["styles"]]
    mo, po = d["mel_offsets"], d["phone_offsets"]
    out = []
    for i in range(len(d["text"])):
        wave = None
        if "waves" in d:
            w = d["waves"][d["wave_offsets"][i]:d["wave_offsets"][i + 1]]
            wave = (w.astype(np.float32) / 32767.0) if w.dtype == np.int16 else w.astype(np.float32)
        spk, sty = int(d["speaker_id"][i]), int(d["style_id"][i])
        out.append(Utterance(
            text=str(d["text"][i]),
            phoneme_ids=d["phoneme_ids"][po[i]:po[i + 1]].astype(np.int64),
            durations=d["durations"][po[i]:po[i + 1]].astype(np.int64),
            mel=np.ascontiguousarray(d["mels"][:, mo[i]:mo[i + 1]], dtype=np.float32),
            pitch=d["pitch"][po[i]:po[i + 1]].astype(np.float32),
            energy=d["energy"][po[i]:po[i + 1]].astype(np.float32),
            speaker=speakers[spk], style=styles[sty], wave=wave, speaker_id=spk, style_id=sty,
            utt_id=str(d["utt_id"][i]),
            frame_pitch=d["frame_pitch"][mo[i]:mo[i + 1]].astype(np.float32),
            frame_energy=d["frame_energy"][mo[i]:mo[i + 1]].astype(np.float32)))
    return tuple(out)


def load_set(name: str, data_dir: Path | str = DATA_DIR) -> list[Utterance]:
    """Verified records of a committed set ("calibration", "parity" or "refs").

    Arrays are shared with a cache: copy before modifying them in place."""
    path = verify(name, data_dir)  # re-checked on every call
    return list(_parse(str(path), set_hash(name, data_dir)))
