"""Reading the training corpus (artifacts/corpus/*.npz, written by calibration/corpus.py).

A split is one npz of concatenated arrays with offsets; ``Split`` slices them per utterance
without copying. Festival utterances carry phone alignments (durations sum to the mel length);
espeak-ng utterances have waveform + mel only (empty phone spans).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxc.core.errors import VoxcError

from voxc.models.voxc.flow import STYLES  # noqa: F401  (corpus style ids 0, 1, 2)

DEFAULT_CORPUS = Path("artifacts/corpus")


@dataclass
class Split:
    name: str
    arrays: dict

    @classmethod
    def load(cls, corpus: str | Path, name: str) -> "Split":
        path = Path(corpus) / f"{name}.npz"
        if not path.is_file():
            raise VoxcError(f"corpus split {path} not found; build it with `python -m voxc.calibration.corpus --out DIR` (`make corpus` in a checkout) or pass --corpus DIR")
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        return cls(name, arrays)

    def __len__(self) -> int:
        return len(self.arrays["speaker_id"])

    @property
    def speakers(self) -> list[str]:
        return [str(s) for s in self.arrays["speakers"]]

    @property
    def styles(self) -> list[str]:
        return [str(s) for s in self.arrays["styles"]]

    def _span(self, key: str, i: int) -> slice:
        off = self.arrays[key]
        return slice(int(off[i]), int(off[i + 1]))

    def mel(self, i: int) -> np.ndarray:
        return self.arrays["mels"][:, self._span("mel_offsets", i)]

    def wave(self, i: int) -> np.ndarray:
        return self.arrays["waves"][self._span("wave_offsets", i)]

    def frames(self, i: int) -> int:
        off = self.arrays["mel_offsets"]
        return int(off[i + 1] - off[i])

    def phones(self, i: int) -> dict:
        s = self._span("phone_offsets", i)
        return {k: self.arrays[k][s] for k in ("phoneme_ids", "durations", "pitch", "energy")}

    def aligned(self, i: int) -> bool:
        off = self.arrays["phone_offsets"]
        return bool(off[i + 1] > off[i])

    def speaker_id(self, i: int) -> int:
        return int(self.arrays["speaker_id"][i])

    def style_id(self, i: int) -> int:
        return int(self.arrays["style_id"][i])

    def text(self, i: int) -> str:
        return str(self.arrays["text"][i])
