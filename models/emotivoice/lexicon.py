"""The voice's English lexicon: EmotiVoice's `lexicon/librispeech-lexicon.txt`, imported with the voice.

EmotiVoice reads an English word from this file first (`read_lexicon`: one `WORD PH PH ...` a line,
the word lower-cased, the first entry of a word kept) and asks g2p_en only for words it lacks. The
importer (checkpoint.py) reads the user's file here into the preset as `cfg["lexicon"]`: its source
name, sha256 and word count, and the entries whose pronunciation differs from CMUdict's first one (the
front end looks in the lexicon, then CMUdict: entries equal to CMUdict's change nothing and are left
out, which keeps the preset, and so the manifest that records it, small). The front end
(frontend.py) looks words up in `entries`.
"""
from __future__ import annotations

from pathlib import Path

from voxc.core.errors import VoxcError

HINT = "pass EmotiVoice's lexicon/librispeech-lexicon.txt (one 'WORD PH PH ...' a line)"
FILTERED = {",", " ", "'"}        # symbols EmotiVoice drops from a lexicon pronunciation


def parse(text: str, path: Path) -> dict[str, list[str]]:
    """word (lower case) -> phones, the first entry of each word, as EmotiVoice's read_lexicon."""
    out: dict[str, list[str]] = {}
    for i, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise VoxcError(f"{path} line {i}: {line.strip()[:40]!r} has a word but no phones; {HINT}")
        out.setdefault(fields[0].lower(), [p for p in fields[1:] if p not in FILTERED])
    if not out:
        raise VoxcError(f"{path} holds no entries; {HINT}")
    return out


def read_lexicon(path: Path, tokens: list[str] | None = None) -> dict:
    """The preset's record of a lexicon file: source, sha256, words, entries (those CMUdict lacks or reads
    otherwise, phones space-separated). With `tokens`, every phone must be one of the voice's tokens."""
    from voxc.core.hashing import sha256_bytes
    from voxc.models import text as en
    try:
        raw = Path(path).read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        raise VoxcError(f"cannot read {path} ({exc.strerror or exc}); {HINT}") from None
    except UnicodeDecodeError as exc:
        raise VoxcError(f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                        f"{HINT}") from None
    words = parse(text, Path(path))
    if tokens is not None:
        known = set(tokens)
        for w, phones in words.items():
            bad = [p for p in phones if f"[{p}]" not in known]
            if bad:
                raise VoxcError(f"{path}: {w!r} uses phone(s) {', '.join(bad[:3])} that the voice's tokenlist "
                                f"lacks (as [{bad[0]}]); {HINT}")
    cmu = en._cmu()
    entries = {w: " ".join(p) for w, p in sorted(words.items()) if not (w in cmu and list(cmu[w][0]) == p)}
    return {"source": Path(path).name, "sha256": sha256_bytes(raw), "words": len(words),
            "entries": entries}
