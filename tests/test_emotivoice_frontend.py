"""EmotiVoice front end (models/emotivoice/frontend.py) against EmotiVoice's own g2p_cn_en outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxc.core.errors import VoxcError
from voxc.models.emotivoice import frontend as F

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "emotivoice"
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"no EmotiVoice fixtures at {FIXTURES}")


def _lines() -> list[dict]:
    path = FIXTURES / "frontend_zh.jsonl"
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


def test_all_fixture_lines_present():
    assert len(_lines()) == 18


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


@pytest.mark.parametrize("text", ["", "   ", "，。！", "..."])
def test_empty_text(text):
    with pytest.raises(VoxcError, match="empty"):
        F.g2p(text)
