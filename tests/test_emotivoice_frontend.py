"""EmotiVoice front end (models/emotivoice/frontend.py) against EmotiVoice's own g2p_cn_en outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from voxc.core.errors import VoxcError
from voxc.models.emotivoice import frontend as F
from voxc.models.emotivoice import numbers

FIXTURES = Path(os.environ.get("VOXC_SHARED") or Path(__file__).resolve().parents[2] / "shared") / "fixtures" / "emotivoice"
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"no EmotiVoice fixtures at {FIXTURES}")


def _lines(name: str = "frontend_zh.jsonl") -> list[dict]:
    path = FIXTURES / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []


@pytest.fixture(scope="module")
def table() -> F.TokenTable:
    return F.TokenTable(FIXTURES / "tokenlist")


@pytest.mark.parametrize("case", _lines(), ids=lambda c: c["text"])
def test_fixture_line(case, table):
    phonemes = F.g2p(case["text"])
    assert " ".join(phonemes) == case["phonemes"]
    assert table.ids(phonemes) == case["ids"]
    assert F.text_to_ids(case["text"], table) == case["ids"]


@pytest.mark.parametrize("case", _lines("frontend_numbers_zh.jsonl"), ids=lambda c: c["text"])
def test_number_fixture_line_reads_as_emotivoice_bundled_cn2an(case, table):
    """EmotiVoice's own g2p_cn_en with its bundled cn2an/ (not pip cn2an, which drops the 零 of 305000)."""
    phonemes = F.g2p(case["text"])
    assert " ".join(phonemes) == case["phonemes"]
    assert table.ids(phonemes) == case["ids"]


def test_all_fixture_lines_present():
    assert len(_lines()) == 18
    assert len(_lines("frontend_numbers_zh.jsonl")) == 23


def test_english_stress_and_word_pauses(table):
    seq = F.g2p("Hello world, again")
    assert seq == ["<sos/eos>", "[HH]", "[AH0]", "[L]", "[OW1]", "engsp1", "[W]", "[ER1]", "[L]", "[D]",
                   "engsp4", "[AH0]", "[G]", "[EH1]", "[N]", "<sos/eos>"]
    oov = F.g2p("Zorblat")  # not in cmudict: letter-to-sound, stress on the first vowel
    assert oov[0] == oov[-1] == "<sos/eos>" and "[AO1]" in oov and all(t.startswith("[") for t in oov[1:-1])
    table.ids(seq + oov)  # every English token is in EmotiVoice's tokenlist


def test_mixed_language_switches(table):
    seq = F.g2p("Hello，世界你好 world")
    i = seq.index("eng_cn_sp")
    assert seq[i - 1] == "[OW1]" and seq[i + 1:i + 3] == ["sh", "iii4"]
    # Chinese -> English: the Chinese word's own sp1 stays, EmotiVoice adds no cn_eng_sp after a pause
    j = seq.index("[W]")
    assert seq[j - 2:j] == ["ao3", "sp1"] and "cn_eng_sp" not in seq
    table.ids(seq)


def test_numbers_read_in_chinese_only_with_chinese():
    assert F.g2p("3个") == ["<sos/eos>", "s", "an1", "sp0", "g", "e4", "<sos/eos>"]
    assert F.g2p("3 cats")[1:4] == ["[TH]", "[R]", "[IY1]"]
    assert F.g2p("第1.2.3节").count("ian3") == 2  # cn2an refuses 1.2.3: digit by digit, 点 for dots


def test_unknown_token_names_token_and_path(table):
    with pytest.raises(VoxcError, match=r"'zzz9'.*tokenlist"):
        table.ids(["<sos/eos>", "zzz9"])
    with pytest.raises(VoxcError, match="tokenlist"):
        F.TokenTable(FIXTURES / "no-such-tokenlist")
    with pytest.raises(VoxcError, match="not UTF-8"):
        F.TokenTable(FIXTURES / "g_00000001")


@pytest.mark.parametrize("text", ["", "   ", "，。！", "..."])
def test_empty_text(text):
    with pytest.raises(VoxcError, match="empty"):
        F.g2p(text)


# ---- numbers: cases derived by hand from the rules of EmotiVoice's bundled cn2an (an2cn, mode "low") ----

@pytest.mark.parametrize("digits, reading", [
    ("0", "零"), ("7", "七"), ("10", "十"), ("15", "十五"), ("110", "一百一十"), ("1008", "一千零八"),
    ("1050", "一千零五十"), ("20030", "二万零三十"), ("100010", "十万零一十"),          # 零 in gaps below 万
    ("305000", "三十万零五千"), ("101000", "十万零一千"), ("201500", "二十万零一千五百"),  # pip cn2an drops these 零
    ("3005000", "三百万零五千"), ("4000500", "四百万零五百"),
    ("100000000", "一亿"), ("100000001", "一亿零一"), ("1000010000", "十亿零一万"),       # 零 across 亿
    ("13800138000", "一百三十八亿零一十三万八千"),                                         # a phone number
    ("2024", "二千零二十四"), ("1998", "一千九百九十八"),                                   # years, as numbers
    ("007", "七"),                                                                       # leading zeros dropped
    ("3.14", "三点一四"), ("0.05", "零点零五"), ("12.05", "十二点零五"), ("36.0", "三十六点零"),
    ("12.", "十二"),                                                                     # a trailing dot
])
def test_number_readings_follow_emotivoice_cn2an(digits, reading):
    assert numbers.read(digits) == reading
    assert not numbers.refused_by_emotivoice(digits)


def test_numbers_emotivoice_cannot_read_are_read_as_a_listener_expects():
    assert numbers.refused_by_emotivoice("\uff11\uff12\uff13") and numbers.read("\uff11\uff12\uff13") == "一百二十三"
    assert F.g2p("\uff11\uff12\uff13个") == F.g2p("123个")              # full-width digits
    assert numbers.refused_by_emotivoice("1.2.3") and numbers.read("1.2.3") == "一点二点三"
    assert numbers.read("12345678901234567") == "一二三四五六七八九零一二三四五六七"   # over 16 digits


def test_negative_numbers_and_percent_read_as_emotivoice():
    """EmotiVoice's digit runs never take the sign; '-' and '%' reach its English path, which drops them."""
    assert F.g2p("气温-5度") == F.g2p("气温5度")
    seq = F.g2p("增长了5%。")
    assert seq == F.g2p("增长了5。") and not any(t.startswith("[") or t in ("cn_eng_sp", "eng_cn_sp") for t in seq)
    assert F.g2p("a & b，你好")[:4] == ["<sos/eos>", "[AH0]", "engsp1", "[B]"]      # & dropped, not "and"
    assert len(F.g2p("a & b")) > len(F.g2p("a b"))                               # English-only text says "and"


# ---- the voice's English lexicon ------------------------------------------------------------------

def test_lexicon_comes_before_cmudict_and_letter_to_sound_is_signalled(table):
    import warnings
    from voxc.models.text import LetterToSound
    lexicon = {"hello": "HH EH0 L OW1", "zorblat": "Z AO1 R B L AE2 T"}
    assert F.g2p("Hello", lexicon)[1:-1] == ["[HH]", "[EH0]", "[L]", "[OW1]"]       # CMUdict says [AH0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LetterToSound)
        assert F.g2p("zorblat world", lexicon)[1:8] == ["[Z]", "[AO1]", "[R]", "[B]", "[L]", "[AE2]", "[T]"]
        assert not caught                                              # both words in a lexicon
        F.g2p("zorblat world")
    assert [w.message.word for w in caught] == ["zorblat"]
    table.ids(F.g2p("zorblat world", lexicon))


def test_lexicon_file_is_read_as_emotivoice_reads_it(tmp_path):
    from voxc.models.emotivoice.lexicon import read_lexicon
    path = tmp_path / "librispeech-lexicon.txt"
    path.write_text("HELLO HH EH0 L OW1\nHello HH AH1 L OW0\nWORLD W ER1 L D\nZORBLAT Z AO1 R B L AE2 T\n")
    lex = read_lexicon(path, F.TokenTable(FIXTURES / "tokenlist").tokens)
    assert lex["words"] == 3 and lex["source"] == "librispeech-lexicon.txt" and len(lex["sha256"]) == 64
    # the first entry of a word wins; entries equal to CMUdict's are left out (CMUdict reads them the same)
    assert lex["entries"] == {"hello": "HH EH0 L OW1", "zorblat": "Z AO1 R B L AE2 T"}


@pytest.mark.parametrize("content, message", [
    (b"HELLO\n", "has a word but no phones"),
    (b"HELLO HH QQ9 L OW1\n", r"uses phone\(s\) QQ9"),
    (b"\xff\xfe HELLO\n", "not UTF-8"),
    (b"\n\n", "holds no entries"),
])
def test_bad_lexicon_files_are_refused_in_one_line(tmp_path, content, message):
    from voxc.models.emotivoice.lexicon import read_lexicon
    path = tmp_path / "lexicon.txt"
    path.write_bytes(content)
    with pytest.raises(VoxcError, match=message) as e:
        read_lexicon(path, F.TokenTable(FIXTURES / "tokenlist").tokens)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
