"""English text normalisation: written forms → the words a person would say.

Place in the flow: text → ``models/text.py normalize`` (which calls ``expand_at`` here at each
token start) → normalised words → ``models/text.py text_to_ids`` → phones. Number words come
from ``num2words`` (American style: no "and" inside numbers); this module holds only the
tokenisation rules no library provides. ``expand_at(text, i)`` returns ``(tokens, end)`` when a
rule matches at ``i``, else None. Tokens are lower-case words, ``.`` or ``,``; ``^x`` is the
letter x spelled. Rules, first match wins:

* URLs (``https://…``, ``www.…``, ``name.com/…``) and e-mail addresses: letter runs as words,
  ``. / : @ - _`` read as dot, slash, colon, at, dash, underscore; the scheme and vowel-less
  runs (``www``, ``js``) spelled, runs of 2-3 letters spelled unless a dictionary word (``uk``);
  digits one by one; dotted names likewise (``node.js`` → node dot js);
* phone numbers (``555-123-4567``, ``(555) 123-4567``, ``+1 555-123-4567``): digit by digit in groups;
* dates: ``2024-01-05``, ``12/25/2023`` (month first unless the first part is over 12),
  ``Jan. 5, 2024`` / ``January 5th`` / ``March 2024``, ``5 January 2024`` (the fifth of …);
* times: ``10:30`` (ten thirty), ``14:05`` (fourteen oh five), ``10:00`` (ten o'clock),
  ``10:30 am`` / ``7 p.m.`` (a m, p m spelled), ``6:30-7:00`` (six thirty to seven o'clock);
* currency ``$ £ € ¥`` with cents/pence (``$12.50`` → twelve dollars and fifty cents) or a
  scale (``$3.5 million``, ``$2bn``, ``€5m``, ``$10k`` → … million/billion/thousand dollars);
* decades (``1990s`` → nineteen nineties, ``'90s`` → nineties), ordinals (``21st``), fractions
  (``1/2`` → one half, ``2 3/4``, ``24/7``), ranges (``5-10`` → five to ten), negatives (``-5`` → minus);
* numbers: a 4-digit number 1100–2099 after a year cue (``in since by from …``) is read as a
  year (nineteen ninety nine); ``1,000`` groups; ``3.14`` → three point one four; a number with
  a leading zero digit by digit; a scale suffix (``2.5bn`` ``10k``) and a unit after a number
  (``5 kg`` → five kilograms, ``1 km`` → one kilometer, ``-5°C`` → minus five degrees celsius);
  ``#5`` → number five;
* abbreviations: titles before a name (``Dr. Mr. Mrs. Ms. Prof. St.`` → doctor, mister, missus,
  miz, professor, saint; ``Dr.``/``St.`` after a capitalised word and not before one → drive,
  street), before a number ``No. Ch. Fig. Vol. Sec. p. pp.`` (``No. 5`` → number five),
  ``e.g. i.e. vs. etc. approx. Jr. Sr. Inc. Ltd. Mt. Ave.``, initials (``U.S.`` → u s, spelled);
  upper-case acronyms (``TTS``) are left to models/text.py. An abbreviation's period never
  becomes a ``.`` token, except after ``etc. a.m. p.m. U.S.`` and the like at the end of the text
  or before a capitalised word, where it also ends the sentence.
"""

from __future__ import annotations

import functools
import re

_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december"]
_MONTH_RE = (r"(?P<mon>Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
             r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
             "€": ("euro", "euros", "cent", "cents"), "¥": ("yen", "yen", None, None)}
_SCALE = {"thousand": "thousand", "k": "thousand", "million": "million", "m": "million", "mn": "million",
          "billion": "billion", "bn": "billion", "b": "billion", "trillion": "trillion", "tn": "trillion"}
_UNITS = {  # written unit → (singular, plural); only read after a number
    "km": ("kilometer", "kilometers"), "m": ("meter", "meters"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "mi": ("mile", "miles"), "ft": ("foot", "feet"),
    "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"), "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"), "oz": ("ounce", "ounces"),
    "l": ("liter", "liters"), "ml": ("milliliter", "milliliters"),
    "km/h": ("kilometer per hour", "kilometers per hour"), "kph": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"), "ms": ("millisecond", "milliseconds"),
    "min": ("minute", "minutes"), "hr": ("hour", "hours"), "hrs": ("hour", "hours"),
    "kb": ("kilobyte", "kilobytes"), "mb": ("megabyte", "megabytes"), "gb": ("gigabyte", "gigabytes"),
    "tb": ("terabyte", "terabytes"), "hz": ("hertz", "hertz"), "khz": ("kilohertz", "kilohertz"),
    "mhz": ("megahertz", "megahertz"), "ghz": ("gigahertz", "gigahertz"), "kw": ("kilowatt", "kilowatts"),
    "kwh": ("kilowatt hour", "kilowatt hours"),
    "°c": ("degree celsius", "degrees celsius"), "°f": ("degree fahrenheit", "degrees fahrenheit"),
    "°": ("degree", "degrees"),
}
_UNIT_FORMS = list(_UNITS) + ["Km", "KM", "Kg", "KG", "L", "mL", "KB", "MB", "GB", "TB", "Hz", "kHz", "MHz", "GHz",
                              "kW", "kWh", "°C", "°F"]  # case matters: "5G" is not five grams
_UNIT_RE = re.compile(r"\s?(?P<unit>" + "|".join(sorted(map(re.escape, _UNIT_FORMS), key=len, reverse=True))
                      + r")(?![A-Za-z0-9])")
_SCALE_RE = re.compile(r"\s?(?P<scale>thousand|million|billion|trillion|k|mn|bn|tn)(?![A-Za-z])", re.IGNORECASE)
_TITLES = {"dr": "doctor", "mr": "mister", "mrs": "missus", "ms": "miz", "prof": "professor"}
_ABBREVS = {  # period-final abbreviations; True: the period may also end the sentence
    "e.g.": (["for", "example"], False), "i.e.": (["that", "is"], False), "vs.": (["versus"], False),
    "approx.": (["approximately"], False), "etc.": (["et", "cetera"], True), "jr.": (["junior"], True),
    "sr.": (["senior"], True), "inc.": (["incorporated"], True), "ltd.": (["limited"], True),
    "mt.": (["mount"], False), "ave.": (["avenue"], True), "a.m.": (["^a", "^m"], True),
    "p.m.": (["^p", "^m"], True),
}
_BEFORE_NUMBER = {"no": "number", "ch": "chapter", "fig": "figure", "vol": "volume", "sec": "section",
                  "p": "page", "pp": "pages"}
_YEAR_CUES = {"in", "since", "by", "from", "until", "till", "before", "after", "during", "of", "circa",
              "around", "year", "early", "late", "mid", "spring", "summer", "autumn", "fall", "winter",
              "the", "to", "through", "between", "and", "or", "born", "died"}
_URL_SPLIT = re.compile(r"[A-Za-z]+|\d|[./:@\-_?=&#~+%]")
_URL_SYMBOLS = {".": "dot", "/": "slash", ":": "colon", "@": "at", "-": "dash", "_": "underscore",
                "?": "question mark", "=": "equals", "&": "and", "#": "hash", "~": "tilde", "+": "plus",
                "%": "percent"}


@functools.lru_cache(maxsize=4096)
def _n2w(n: int, to: str = "cardinal") -> str:
    from num2words import num2words  # ~35 ms import: only on the first number

    words = num2words(n, lang="en", to=to)
    return re.sub(r"\band\b|,", " ", words).replace("-", " ")


def cardinal(n: int) -> list[str]:
    """``1203`` → one thousand two hundred three; 10**15 and above digit by digit."""
    if abs(n) >= 10**15:
        return (["minus"] if n < 0 else []) + [_DIGITS[int(d)] for d in str(abs(n))]
    return _n2w(n).split()


def ordinal(n: int) -> list[str]:
    return _n2w(n, "ordinal").split() if n < 10**15 else cardinal(n)


def year(n: int) -> list[str]:
    return _n2w(n, "year").split()


def digits(s: str) -> list[str]:
    return [_DIGITS[int(c)] for c in s if c.isdigit()]


def _decimal(whole: str, frac: str | None) -> list[str]:
    """``"1,000"``, ``"3"`` + ``"14"`` → words (thousands commas dropped, fraction digit by digit)."""
    whole = whole.replace(",", "")
    words = digits(whole) if len(whole) > 1 and whole[0] == "0" else cardinal(int(whole))
    return words + (["point"] + digits(frac) if frac else [])


def _plural(words: list[str]) -> list[str]:
    last = words[-1]
    last = last[:-1] + "ies" if last.endswith("y") else last + ("es" if last.endswith("x") else "s")
    return words[:-1] + [last]


_DASH_RE = re.compile(r"\s?[-\u2013]\s?(?=\d)")
_NAME_NEXT_RE = re.compile(r"\s+[A-Z]")
_END_RE = re.compile(r"\s*$|\s+[\"'(]?[A-Z]")
_PREV_RE = re.compile(r"([A-Za-z0-9]+)[^A-Za-z0-9]{0,8}$")


def _sentence_end(text: str, end: int) -> list[str]:
    """``.`` when the abbreviation's period also ends a sentence (end of text, or a capital next)."""
    return ["."] if _END_RE.match(text, end) else []


def _prev_word(text: str, i: int) -> str:
    m = _PREV_RE.search(text, max(0, i - 40), i)
    return m.group(1) if m else ""


# ---- rule handlers: (match, text) → tokens ------------------------------------------------

def _url(m, text):
    out = []
    s = m.group(0)
    scheme = re.match(r"(https?)://", s)
    if scheme:
        out += ["^" + c for c in scheme.group(1)] + ["colon", "slash", "slash"]
        s = s[scheme.end():]
    for part in _URL_SPLIT.findall(s):
        if part.isdigit():
            out.append(_DIGITS[int(part)])
        elif part.isalpha():
            part = part.lower()
            if not re.search("[aeiouy]", part):  # www, js: spelled
                out += ["^" + c for c in part]
            else:  # uk, io: a word if the dictionary has it, else spelled (see models/text.py)
                out.append("^" + part if len(part) <= 3 else part)
        else:
            out += _URL_SYMBOLS[part].split()
    return out


def _phone(m, text):
    out = []
    for group in re.findall(r"\d+", m.group(0)):
        out += digits(group) + [","]
    return (["plus"] if m.group(0).startswith("+") else []) + out[:-1]


def _date_parts(month: int, day: int | None, yr: str | None, day_first: bool = False) -> list[str]:
    y = []
    if yr:
        y = year(int(yr)) if len(yr) == 4 else (["oh"] if yr[0] == "0" else []) + cardinal(int(yr))
    if day is None:
        return [_MONTHS[month - 1]] + y
    if day_first:
        return ["the"] + ordinal(day) + ["of", _MONTHS[month - 1]] + y
    return [_MONTHS[month - 1]] + ordinal(day) + ([","] + y if y else [])


def _month_index(name: str) -> int:
    return next(i for i, mo in enumerate(_MONTHS) if mo.startswith(name.lower()[:3])) + 1


def _iso_date(m, text):
    y, mo, d = (int(x) for x in m.groups())
    return _date_parts(mo, d, m.group(1)) if 1 <= mo <= 12 and 1 <= d <= 31 else None


def _slash_date(m, text):
    a, b, yr = m.groups()
    a, b = int(a), int(b)
    if 1 <= a <= 12 and 1 <= b <= 31:
        return _date_parts(a, b, yr)
    if 1 <= b <= 12 and 1 <= a <= 31:
        return _date_parts(b, a, yr, day_first=True)
    return None


def _month_date(m, text):
    day, yr = m.group("day"), m.group("year")
    if day and not 1 <= int(day) <= 31:
        return None
    return _date_parts(_month_index(m.group("mon")), int(day) if day else None, yr)


def _day_month(m, text):
    out = _date_parts(_month_index(m.group("mon")), int(m.group("day")), m.group("year"), day_first=True)
    return out[1:] if _prev_word(text, m.start()).lower() == "the" else out


def _ampm(letter: str | None) -> list[str]:
    return ["^" + letter.lower(), "^m"] if letter else []


def _time(m, text):
    h, mins, ap = int(m.group("h")), m.group("min"), m.group("ap")
    if h > 24 or (mins and int(mins) > 59) or (mins is None and (ap is None or not 1 <= h <= 12)):
        return None
    out = cardinal(h)
    if mins and mins != "00":
        out += (["oh"] + digits(mins[1]) if mins[0] == "0" else cardinal(int(mins)))
    elif mins and not ap:
        out.append("o'clock")
    out += _ampm(ap)
    if ap and m.group(0).endswith("."):
        out += _sentence_end(text, m.end())
    dash = _DASH_RE.match(text, m.end())  # 6:30-7:00 p.m.
    return (out + ["to"], dash.end()) if dash and mins else out


def _currency(m, text):
    sing, plur, sub1, subn = _CURRENCY[m.group("cur")]
    whole, frac, scale = m.group("whole"), m.group("frac"), m.group("scale")
    amount = int(whole.replace(",", ""))
    if scale:
        return _decimal(whole, frac) + [_SCALE[scale.lower()], plur]
    if frac and sub1 and len(frac) == 2:
        cents = int(frac)
        out = cardinal(amount) + [sing if amount == 1 else plur] if amount else []
        if cents:
            out += (["and"] if out else []) + cardinal(cents) + [sub1 if cents == 1 else subn]
        return out or ["zero", plur]
    return _decimal(whole, frac) + [sing if amount == 1 and not frac else plur]


def _decade(m, text):
    if m.group("short"):
        return _plural(cardinal(int(m.group("short"))))
    return _plural(year(int(m.group("long"))))


def _ordinal(m, text):
    return ordinal(int(m.group(1).replace(",", "")))


def _fraction(m, text):
    whole, num, den = m.group("whole"), int(m.group("num")), int(m.group("den"))
    if den == 0:
        return None
    if (num, den) == (24, 7):
        return ["twenty", "four", "seven"]
    if den == 2:
        d = ["half"] if num == 1 else ["halves"]
    elif den == 4:
        d = ["quarter"] if num == 1 else ["quarters"]
    else:
        d = ordinal(den) if num == 1 else _plural(ordinal(den))
    out = cardinal(num) + d
    return cardinal(int(whole)) + ["and"] + out if whole else out


def _range(m, text):
    a, b = m.group("a"), m.group("b")
    as_years = all(len(x) == 4 and 1100 <= int(x) <= 2099 for x in (a, b))
    read = (lambda x: year(int(x))) if as_years else (lambda x: _decimal(x, None))
    unit, end = _units(text, m.end())
    return read(a) + ["to"] + read(b) + unit, end


def _units(text: str, end: int, one: bool = False) -> tuple[list[str], int]:
    u = _UNIT_RE.match(text, end)
    if not u:
        return [], end
    sing, plur = _UNITS[u.group("unit").lower()]
    return (sing if one else plur).split(), u.end()


def _number(m, text):
    whole, frac = m.group("whole"), m.group("frac")
    neg = m.group("neg") is not None
    plain = whole.replace(",", "")
    if (not frac and not neg and "," not in whole and len(plain) == 4 and 1100 <= int(plain) <= 2099
            and _prev_word(text, m.start()).lower() in _YEAR_CUES):
        words = year(int(plain))
    else:
        words = (["minus"] if neg else []) + _decimal(whole, frac)
    end = m.end()
    s = _SCALE_RE.match(text, end)
    if s:
        words.append(_SCALE[s.group("scale").lower()])
        end = s.end()
    unit, end = _units(text, end, one=words == ["one"])
    return words + unit, end


def _title(m, text):
    return [_TITLES[m.group(1).lower()]]


def _title_or_place(m, text):
    """``St.``/``Dr.``: saint/doctor before a name; street/drive after a name (``Main St.``)."""
    title, place = {"St": ("saint", "street"), "Dr": ("doctor", "drive")}[m.group(1)]
    prev = _prev_word(text, m.start())
    if _NAME_NEXT_RE.match(text, m.end()) or not (prev[:1].isupper() or prev[:1].isdigit()):
        return [title]
    return [place] + _sentence_end(text, m.end())


def _abbrev(m, text):
    key = m.group(0).lower()
    words, may_end = _ABBREVS[key if key.endswith(".") else key + "."]
    return words + (_sentence_end(text, m.end()) if may_end and key.endswith(".") else [])


def _initials(m, text):
    """``U.S.`` → ^u ^s (its last period ends the sentence only before a capital or the end)."""
    return ["^" + c.lower() for c in m.group(0) if c.isalpha()] + _sentence_end(text, m.end())


_B = r"(?<![A-Za-z0-9])"  # no letter or digit before
_E = r"(?![A-Za-z0-9])"   # … or after
_RULES = [(re.compile(p, re.IGNORECASE if ci else 0), f) for p, ci, f in [
    (_B + r"(?:https?://|www\.)[^\s\"'<>]*[^\s\"'<>.,;:!?)]", True, _url),
    (_B + r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}" + _E, False, _url),
    (_B + r"[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|dev|io|ai|edu|gov|co|uk|app|info)"
     r"(?:/[^\s\"'<>]*[^\s\"'<>.,;:!?)])?" + _E, False, _url),
    (_B + r"(?:\+\d{1,3}[\s-])?(?:\(\d{3}\)\s?|\d{3}[-.])\d{3}[-.]\d{4}" + _E, False, _phone),
    (_B + r"(\d{4})-(\d{2})-(\d{2})" + _E, False, _iso_date),
    (_B + r"(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})" + _E, False, _slash_date),
    (_B + _MONTH_RE + r"\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(?P<year>\d{4}))?" + _E, False, _month_date),
    (_B + _MONTH_RE + r"\s+(?P<day>)(?P<year>\d{4})" + _E, False, _month_date),
    (_B + r"(?P<day>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH_RE + r"(?:,?\s+(?P<year>\d{4}))?" + _E,
     False, _day_month),
    (_B + r"(?P<h>\d{1,2})(?::(?P<min>\d{2}))?(?:\s?(?P<ap>[ap])\.?m\b\.?)?" + _E, True, _time),
    (_B + r"(?P<cur>[$£€¥])\s?(?P<whole>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?"
     r"(?:\s?(?P<scale>thousand|million|billion|trillion|k|m|mn|bn|b|tn))?" + _E, True, _currency),
    (r"(?:" + _B + r"(?P<long>\d{3}0)|(?:['\u2019]|" + _B + r")(?P<short>[1-9]0))s" + _E, False, _decade),
    (_B + r"(\d{1,3}(?:,\d{3})+|\d+)(?:st|nd|rd|th)" + _E, True, _ordinal),
    (_B + r"(?:(?P<whole>\d+)\s+)?(?P<num>\d+)[/\u2044](?P<den>\d+)" + _E, False, _fraction),
    (_B + r"(?P<a>\d+)\s?[-\u2013]\s?(?P<b>\d+)(?![\d.,]?\d|[-/])", False, _range),
    (r"(?:(?<![A-Za-z0-9])(?P<neg>-))?" + _B + r"(?P<whole>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.(?P<frac>\d+))?",
     False, _number),
    (r"#(?=\d)", False, lambda m, t: ["number"]),
    (_B + r"(St|Dr)(?:\.(?=\s|$)|(?=\s+[A-Z]))", False, _title_or_place),
    (_B + r"(Mr|Mrs|Ms|Prof)(?:\.|(?=\s+[A-Z]))", False, _title),
    (_B + r"(No|Ch|Fig|Vol|Sec|Pp?)\.(?=\s*\d)", True, lambda m, t: [_BEFORE_NUMBER[m.group(1).lower()]]),
    (_B + r"(?:e\.g|i\.e|a\.m|p\.m)\.|" + _B + r"(?:approx|jr|sr|inc|ltd|mt|ave)\.|" + _B + r"(?:vs|etc)\.?" + _E,
     True, _abbrev),
    (_B + r"(?:[A-Z]\.){2,}", False, _initials),
    (_B + r"[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]+)+" + _E, False, _url),  # node.js, file.txt
]]
_STARTS = set("0123456789$£€¥#'\u2019(+-")


def expand_at(text: str, i: int) -> tuple[list[str], int] | None:
    """The tokens for a written form starting at ``text[i]`` and where it ends, or None."""
    c = text[i]
    if not (c in _STARTS or c.isascii() and c.isalpha()):
        return None
    for pattern, handler in _RULES:
        m = pattern.match(text, i)
        if m:
            out = handler(m, text)
            if out is not None:
                return out if isinstance(out, tuple) else (out, m.end())
    return None
