"""Long text -> segments the graphs can take: sentences, then clauses, then runs of words.

The runtime (voxc/runtime.py), `voxc synth` and the server split text here before synthesis, so
memory is bounded by the longest segment, never by the text, and nothing is ever truncated: a
segment the caller's `fits(text)` rejects (its phonemes or frames exceed the graphs' maximum) is
split at clause punctuation, then between words, then -- one over-long word or a run of Chinese
characters -- between characters. Each segment records the pause that follows it (a sentence end
pauses longer than a clause; a forced split in mid-clause does not pause), which
core/audio.join_segments turns into silence with short fades. Text only: no numpy, no torch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from voxc.core.errors import VoxcError

SENTENCE_PAUSE_S = 0.30
CLAUSE_PAUSE_S = 0.15
# words whose trailing period does not end a sentence ("Dr. Smith", "e.g. this"; also initials and
# dotted initialisms: "J. Smith", "5 p.m. today")
ABBREVIATIONS = frozenset("""mr mrs ms dr prof st jr sr vs etc e.g i.e no nos mt ft inc ltd co corp dept est approx
                          fig gen gov sgt capt col lt rev jan feb mar apr jun jul aug sep sept oct nov dec""".split())
_SENTENCE_END = re.compile(r"([.!?\u2026]+)([\"'\u201d\u2019)\]]*)(\s+|$)|([\u3002\uff01\uff1f]+)([\u201d\u2019\uff09]*)\s*"
                           r"|\n\s*\n")
_CLAUSE_END = re.compile(r"[,;:\u2014\uff0c\u3001\uff1b\uff1a]+\s*")
_SPEAKABLE = re.compile(r"\w")


@dataclass(frozen=True)
class Segment:
    text: str
    pause_after: float          # seconds of silence after this segment (0 for the last)


def _abbreviation_before(text: str, end: int) -> bool:
    """Whether the period at text[end] closes an abbreviation or an initial (J. R. Smith)."""
    word = re.search(r"([A-Za-z.]+)$", text[:end])
    if word is None:
        return False
    w = word.group(1).lower().rstrip(".")
    return w in ABBREVIATIONS or (len(w) == 1 and w.isalpha()) or re.fullmatch(r"(?:[a-z]\.)+[a-z]", w) is not None


def sentences(text: str) -> list[str]:
    """Sentences in reading order, each with its closing punctuation; abbreviations do not end one."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        if m.group(1) == "." and _abbreviation_before(text, m.start()) and m.end() < len(text):
            continue
        piece = text[start:m.end()].strip()
        if piece:
            out.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def _clauses(sentence: str) -> list[str]:
    out, start = [], 0
    for m in _CLAUSE_END.finditer(sentence):
        piece = sentence[start:m.end()].strip()
        if piece:
            out.append(piece)
        start = m.end()
    if sentence[start:].strip():
        out.append(sentence[start:].strip())
    return out


def _pack(units: list[str], joiner: str, fits: Callable[[str], bool]) -> list[str]:
    """Greedy runs of units that fit; a unit that fits alone never shares a run that does not."""
    runs, current = [], []
    for u in units:
        if current and not fits(joiner.join(current + [u])):
            runs.append(joiner.join(current))
            current = []
        current.append(u)
    if current:
        runs.append(joiner.join(current))
    return runs


def _fit(text: str, fits: Callable[[str], bool], level: int = 0) -> list[tuple[str, float]]:
    """(text, pause) pieces of one sentence, each fitting; level: 0 clauses, 1 words, 2 characters."""
    if fits(text):
        return [(text, 0.0)]
    if level == 0:
        parts, pause, joiner = _clauses(text), CLAUSE_PAUSE_S, " "
    elif level == 1:
        parts, pause, joiner = text.split(), 0.0, " "
    else:
        parts, pause, joiner = list(text), 0.0, ""
    if level == 2 and len(parts) <= 1:
        raise VoxcError(f"'{text[:40]}' cannot be made short enough for this voice to say in one piece; "
                        "shorten it or add spaces or punctuation")
    if len(parts) <= 1:
        return _fit(text, fits, level + 1)
    out = []
    for run in _pack(parts, joiner, fits):
        pieces = _fit(run, fits, level + 1) if not fits(run) else [(run, 0.0)]
        pieces[-1] = (pieces[-1][0], pause)
        out += pieces
    out[-1] = (out[-1][0], 0.0)
    return out


def split(text: str, fits: Callable[[str], bool] = lambda t: True) -> list[Segment]:
    """The segments of `text` in order, each accepted by `fits`; pieces with nothing speakable
    (only punctuation or symbols) are dropped. Raises when nothing is left to speak."""
    out: list[Segment] = []
    for s in sentences(text):
        if not _SPEAKABLE.search(s):
            continue
        pieces = [(t, p) for t, p in _fit(s, fits) if _SPEAKABLE.search(t)]
        out += [Segment(t, p) for t, p in pieces[:-1]] + [Segment(pieces[-1][0], SENTENCE_PAUSE_S)] if pieces else []
    if not out:
        raise VoxcError("the text has nothing to speak (no letters or digits); give words to say")
    out[-1] = Segment(out[-1].text, 0.0)
    return out


def quick_start(segments: list[Segment]) -> list[Segment]:
    """For streaming: the first segment cut at its first clause boundary (when both sides keep at
    least two words), so the first audio waits for a clause, not a whole sentence."""
    if not segments:
        return segments
    parts = _clauses(segments[0].text)
    if len(parts) < 2 or len(parts[0].split()) < 2 or sum(len(p.split()) for p in parts[1:]) < 2:
        return segments
    return [Segment(parts[0], CLAUSE_PAUSE_S), Segment(" ".join(parts[1:]), segments[0].pause_after)] + segments[1:]
