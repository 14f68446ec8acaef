"""Speaking long text through any pipeline: which segments fit, and each segment's values.

The runtime over artifacts (voxc/runtime.py) and `voxc synth` over PyTorch (voice/synth.py) both
speak through here: `segments` splits text (models/segment.py) so every piece's front-end values
fit the graphs' maximum lengths; `pieces` runs one segment up to the frame count and, when the
predicted frames overflow the frames range, splits it between words and tries again, then runs the
rest of the pipeline. Nothing is truncated. numpy only.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from voxc.core.errors import VoxcError
from voxc.models import segment
from voxc.models.spec import preset_dim


def fits(pipeline, cfg: dict, lengths, text: str) -> bool:
    """Whether a text's front-end values (lengths: (value, dim) pairs) fit their dims' maximum."""
    try:
        run = pipeline.run({"text": text}, [v for v, _ in lengths])
    except VoxcError:
        return True                 # unspeakable text is refused later with its own message
    return all(np.asarray(run.values[v]).shape[-1] <= preset_dim(cfg, d).max for v, d in lengths)


def segments(pipeline, cfg: dict, lengths, text: str) -> list[segment.Segment]:
    if not isinstance(text, str) or not text.strip():
        raise VoxcError("the text is empty; give something to say")
    return segment.split(text, lambda t: fits(pipeline, cfg, lengths, t))


def pieces(pipeline, cfg: dict, text: str, upto: Callable[[str, list], dict], want: list) -> Iterator:
    """Runs (pipeline.Run) producing `want` for one segment; `upto(text, want)` gives the values up to
    the frame count (the caller adds its inputs and caches). Split between words while frames overflow."""
    limit = preset_dim(cfg, "frames").max if "frames" in cfg["dims"] else None
    values = upto(text, ["frames"] if limit else want)
    if limit and "frames" in values and int(values["frames"]) > limit:
        words = text.split()
        if len(words) >= 2:                 # between words; one long word (a digit string): between characters
            half = len(words) // 2
            parts = (" ".join(words[:half]), " ".join(words[half:]))
        elif len(text.strip()) >= 2:
            word = text.strip()
            parts = (word[: len(word) // 2], word[len(word) // 2:])
        else:
            raise VoxcError(f"'{text[:40]}' is too long for this voice to say in one piece; "
                            "shorten it or add spaces or punctuation")
        for part in parts:
            yield from pieces(pipeline, cfg, part, upto, want)
        return
    yield pipeline.run(values, want)
