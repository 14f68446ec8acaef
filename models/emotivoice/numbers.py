"""Arabic numerals -> Chinese numerals, read exactly as EmotiVoice reads them (the front end's first step).

EmotiVoice does not use the pip ``cn2an`` package: it imports the ``cn2an/`` folder it ships, a modified
copy of an older cn2an (Ailln/cn2an, MIT licence; EmotiVoice itself is Apache-2.0). Its ``An2Cn().an2cn(s)``
in mode "low" is what a user's text goes through, and it differs from pip cn2an 0.5.24: a zero between
a non-zero digit and a ten-thousands boundary is spoken (305000 -> 三十万零五千, pip: 三十万五千), and only
ASCII digits are accepted. This module is a port of that function's behaviour for the inputs the front
end gives it (a match of ``\\d[\\d.]*``), checked against EmotiVoice's own outputs
(tests/test_emotivoice_numbers.py). docs/emotivoice.md says why it is ported rather than imported.

Where EmotiVoice's copy raises (and EmotiVoice stops with a traceback), ``read`` gives the reading a
listener expects instead, and says so in ``refused_by_emotivoice``: non-ASCII decimal digits
(full-width ``０１２``) are read as the ASCII digits they stand for; two or more dots (``1.2.3``) and
integer parts over 16 digits are read digit by digit. numpy-free, stdlib only.
"""
from __future__ import annotations

import unicodedata

DIGITS = "零一二三四五六七八九"
# unit of each integer position, counted from the right (EmotiVoice's UNIT_LOW_ORDER_AN2CN)
UNITS = ("", "十", "百", "千", "万", "十", "百", "千", "亿", "十", "百", "千", "万", "十", "百", "千")
MAX_DECIMALS = 16


def _integer(digits: str) -> str:
    """An2Cn.__integer_convert, mode "low" (leading zeros dropped, 零 rules, 一十 -> 十)."""
    digits = str(int(digits))
    n = len(digits)
    out = ""
    for i, d in enumerate(digits):
        place = n - i - 1
        if d != "0":
            out += DIGITS[int(d)] + UNITS[place]
        else:
            if place % 4 == 0:
                out += DIGITS[0] + UNITS[place]
            if i > 0 and out[-1] != "零":
                out += DIGITS[0]
    out = out.replace("零零", "零").replace("零万", "万").replace("零亿", "亿").replace("亿万", "亿").strip("零")
    if out[:2] == "一十":
        out = out[1:]
    return out or "零"


def _decimal(digits: str) -> str:
    digits = digits[:MAX_DECIMALS]           # EmotiVoice warns and keeps the first 16
    return ("点" if digits else "") + "".join(DIGITS[int(d)] for d in digits)


def _ascii(s: str) -> str:
    return "".join(c if c == "." else str(unicodedata.digit(c)) for c in s)


def refused_by_emotivoice(s: str) -> bool:
    """Whether EmotiVoice's bundled an2cn raises on this digit run (so EmotiVoice itself cannot speak it)."""
    if any(c not in "0123456789." for c in s):
        return True
    parts = s.split(".")
    return len(parts) > 2 or len(str(int(parts[0]))) > len(UNITS)


def read(s: str) -> str:
    """A run of digits and dots (``\\d[\\d.]*``) -> its Chinese reading, EmotiVoice's where it has one."""
    s = _ascii(s)
    parts = s.split(".")
    if len(parts) > 2 or len(str(int(parts[0]))) > len(UNITS):
        return "".join("点" if c == "." else DIGITS[int(c)] for c in s)
    return _integer(parts[0]) + (_decimal(parts[1]) if len(parts) == 2 else "")
