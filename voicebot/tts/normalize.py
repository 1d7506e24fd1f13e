"""Text normalization for speech: numbers, money, dates, times, phone numbers,
abbreviations and symbols written out the way people say them.

:func:`normalize_text` is pure and table-driven: an ordered list of
``(regex, handler)`` rules per language, most specific first, then a fallback
that reads any digits left. Every rule's output has no digits, so the result
is stable under a second pass (idempotent).

English choices (what Piper's espeak front end says well):

- integers as words without "and": ``1,280`` -> "one thousand two hundred
  eighty"; decimals digit by digit after "point"; runs of 8+ digits, or with a
  leading zero, digit by digit in groups ("zero one two three");
- years as years in dates and after in/since/until/by/from/year: ``2026`` ->
  "twenty twenty-six", ``2005`` -> "two thousand five";
- times: ``3:30 pm`` -> "three thirty PM" (espeak says "PM" as one unit,
  while "p m" gets read as the article "a"); a 24-hour time is said as
  callers in the US say it, 12-hour with AM/PM: ``15:00`` -> "three PM",
  ``09:05`` -> "nine oh five AM"; ``3:00`` with no AM/PM -> "three o'clock";
- phone numbers digit by digit, groups joined by commas (a short pause).

Chinese: 1 reads 幺 in phone numbers, 2 reads 两 before a measure word,
years digit by digit (二零二六年), money as 元/角/分.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Handler = Callable[[re.Match[str]], str]
Rule = tuple[re.Pattern[str], Handler]

NUM = r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)"  # an integer, maybe with thousands separators
MAX_CARDINAL_DIGITS = 15  # longer numbers are read digit by digit


def normalize_text(text: str, language: str) -> str:
    """``text`` with numbers and symbols spelled out for ``language`` ("en", "zh"; "en_US", "zh-CN", "cmn" accepted).

    Other languages only get their whitespace tidied.
    """
    family = language_family(language)
    text = _tidy(text)
    if family == "en":
        text = _apply(EN_RULES, text)
    elif family == "zh":
        text = _apply(ZH_RULES, text.translate(_FULLWIDTH))
    return _tidy(text)


def language_family(language: str) -> str:
    """"en" for en/en_US/en-us, "zh" for zh/zh_CN/cmn/yue, else the lower-cased first part."""
    family = language.lower().replace("-", "_").split("_")[0]
    return "zh" if family in ("zh", "cmn", "yue") else family


def _apply(rules: list[Rule], text: str) -> str:
    for pattern, handler in rules:
        text = pattern.sub(handler, text)
    return text


def _tidy(text: str) -> str:
    text = re.sub(r"[^\S\n]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r" ([,.;:!?])", r"\1", text)
    return text.strip()


def _int(digits: str) -> int | None:
    """The integer in ``digits`` (commas allowed), or None when too long to read as a number."""
    plain = digits.replace(",", "")
    return int(plain) if len(plain) <= MAX_CARDINAL_DIGITS else None


# =========================================================================== English words

_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


def en_cardinal(n: int) -> str:
    """``n`` in words: 1280 -> "one thousand two hundred eighty", 23 -> "twenty-three"."""
    if n < 0:
        return "minus " + en_cardinal(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, rest = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[rest]}" if rest else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {en_cardinal(rest)}" if rest else "")
    for value, name in _SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return f"{en_cardinal(high)} {name}" + (f" {en_cardinal(rest)}" if rest else "")
    raise AssertionError("unreachable")


def en_ordinal(n: int) -> str:
    """``n`` as an ordinal: 1 -> "first", 22 -> "twenty-second", 100 -> "one hundredth"."""
    words = en_cardinal(n)
    match = re.match(r"(.*?)([a-z]+)$", words)
    assert match is not None
    head, last = match.groups()
    if last in _ORDINAL_WORDS:
        return head + _ORDINAL_WORDS[last]
    return head + (last[:-1] + "ieth" if last.endswith("y") else last + "th")


def en_year(n: int) -> str:
    """A year as said: 2026 -> "twenty twenty-six", 2005 -> "two thousand five", 1905 -> "nineteen oh five"."""
    if not 1000 <= n <= 9999 or n % 1000 == 0 or 2000 <= n <= 2009:
        return en_cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{en_cardinal(high)} hundred"
    return f"{en_cardinal(high)} {'oh ' + _ONES[low] if low < 10 else en_cardinal(low)}"


def en_digits(digits: str) -> str:
    """Digit by digit: "0100" -> "zero one zero zero" (non-digits dropped)."""
    return " ".join(_ONES[int(c)] for c in digits if "0" <= c <= "9")


def en_digit_groups(digits: str) -> str:
    """A long digit string in groups of 3 (the last 2 to 4), joined with commas."""
    groups = [digits[i:i + 3] for i in range(0, len(digits), 3)]
    if len(groups) > 1 and len(groups[-1]) == 1:
        groups[-2:] = [groups[-2] + groups[-1]]
    return ", ".join(en_digits(group) for group in groups)


def en_number(integer: str, fraction: str | None = None) -> str:
    """An integer (commas allowed) and optional fraction digits: "3", "5" -> "three point five"."""
    value = _int(integer)
    plain = integer.replace(",", "")
    if value is None or (len(plain) >= 8 and "," not in integer) or (len(plain) > 1 and plain[0] == "0"):
        words = en_digit_groups(plain)
    else:
        words = en_cardinal(value)
    return f"{words} point {en_digits(fraction)}" if fraction else words


# =========================================================================== English rules

_CURRENCIES = {  # symbol: (unit, units, minor unit, minor units)
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "", ""),
    "元": ("yuan", "yuan", "", ""),
}
_SCALE_WORDS = {"k": "thousand", "thousand": "thousand", "m": "million", "million": "million", "mn": "million",
                "b": "billion", "bn": "billion", "billion": "billion", "trillion": "trillion"}


def _en_money(unit: tuple[str, str, str, str], integer: str, fraction: str | None, scale: str | None) -> str:
    one, many, minor_one, minor_many = unit
    if scale:
        return f"{en_number(integer, fraction)} {_SCALE_WORDS[scale.lower()]} {many}"
    value = _int(integer)
    if value is None or (fraction and (len(fraction) > 2 or not minor_one)):
        return f"{en_number(integer, fraction)} {many}"
    cents = int(fraction.ljust(2, "0")) if fraction else 0
    main = f"{en_cardinal(value)} {one if value == 1 else many}"
    if not cents:
        return main
    minor = f"{en_cardinal(cents)} {minor_one if cents == 1 else minor_many}"
    return minor if value == 0 else f"{main} and {minor}"


def _en_currency(m: re.Match[str]) -> str:
    return _en_money(_CURRENCIES[m["sym"]], m["int"], m["frac"], m["scale"] or m["abbr"])


def _en_currency_after(m: re.Match[str]) -> str:
    return _en_money(_CURRENCIES["元"], m["int"], m["frac"], None)


def _en_phone(m: re.Match[str]) -> str:
    groups = [en_digits(g) for g in re.findall(r"[0-9]+", m[0])]
    return ("plus " if m[0].startswith("+") else "") + ", ".join(groups)


def _en_date(year: int | None, month: int, day: int, day_first: bool = False) -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    said = f"the {en_ordinal(day)} of {MONTHS[month - 1]}" if day_first else f"{MONTHS[month - 1]} {en_ordinal(day)}"
    return said if year is None else f"{said}, {en_year(year)}"


def _en_iso_date(m: re.Match[str]) -> str:
    return _en_date(int(m[1]), int(m[2]), int(m[3])) or m[0]


def _en_us_date(m: re.Match[str]) -> str:
    year = int(m[3]) + (2000 if len(m[3]) == 2 else 0)
    return _en_date(year, int(m[1]), int(m[2])) or m[0]


def _month_number(name: str) -> int:
    return next(i for i, month in enumerate(MONTHS, 1) if month.lower().startswith(name[:3].lower()))


def _en_month_day(m: re.Match[str]) -> str:
    year = int(m["year"]) if m["year"] else None
    return _en_date(year, _month_number(m["month"]), int(m["day"])) or m[0]


def _en_month_year(m: re.Match[str]) -> str:
    return f"{MONTHS[_month_number(m['month']) - 1]} {en_year(int(m[2]))}"


def _en_day_month(m: re.Match[str]) -> str:
    year = int(m["year"]) if m["year"] else None
    return _en_date(year, _month_number(m["month"]), int(m["day"]), day_first=True) or m[0]


def _en_time(m: re.Match[str]) -> str:
    hour, minute = int(m["h"]), int(m["min"] or 0)
    if hour > 23 or minute > 59:
        return m[0]
    suffix = (m["ap"].upper() + "M") if m["ap"] else None
    if suffix is None and m["min"] is not None and (hour > 12 or hour == 0 or m["h"].startswith("0")):
        suffix = "AM" if hour < 12 else "PM"
    hour12 = (hour % 12 or 12) if (suffix or hour > 12) else hour
    if minute == 0:
        said = f"{en_cardinal(hour12)} " + (suffix or "o'clock")
    else:
        said = f"{en_cardinal(hour12)} {'oh ' + _ONES[minute] if minute < 10 else en_cardinal(minute)}"
        said += f" {suffix}" if suffix else ""
    if m["sec"] and int(m["sec"]):
        said += f" and {en_cardinal(int(m['sec']))} seconds"
    return said + _kept_period(m)


def _kept_period(m: re.Match[str]) -> str:
    """"." when the match swallowed a period that also ends the sentence."""
    if not m[0].endswith("."):
        return ""
    rest = m.string[m.end():]
    return "." if not rest.strip() or re.match(r"\s+[A-Z]", rest) else ""


def _en_percent(m: re.Match[str]) -> str:
    sign = "minus " if m["neg"] else ""
    return f"{sign}{en_number(m['int'], m['frac'])} percent"


def _en_ordinal(m: re.Match[str]) -> str:
    value = _int(m[1])
    return en_ordinal(value) if value is not None else en_digit_groups(m[1])


def _en_year_after_word(m: re.Match[str]) -> str:
    return f"{m[1]} {en_year(int(m[2]))}"


def _en_range(m: re.Match[str]) -> str:
    return f"{en_number(m[1])} to {en_number(m[2])}"


def _en_number(m: re.Match[str]) -> str:
    sign = "minus " if m["neg"] else ""
    return f"{sign}{en_number(m['int'], m['frac'])}"


def _en_decade(m: re.Match[str]) -> str:
    value = int(m[1])
    words = en_year(value) if value >= 1000 else en_cardinal(value)
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _en_dotted(m: re.Match[str]) -> str:
    return " point ".join(en_number(part) for part in m[0].split("."))


def _en_digits_left(m: re.Match[str]) -> str:
    return f" {en_number(m[0])} "


_TITLES = {"mr": "Mister", "mrs": "Missus", "ms": "Miz", "dr": "Doctor", "st": "Saint", "prof": "Professor",
           "gen": "General", "capt": "Captain", "sgt": "Sergeant", "rev": "Reverend", "hon": "Honorable"}
_ABBREVIATIONS = {"st": "Street", "dr": "Drive", "ave": "Avenue", "blvd": "Boulevard", "rd": "Road", "ln": "Lane",
                  "apt": "Apartment", "ste": "Suite", "jr": "Junior", "sr": "Senior", "inc": "Incorporated",
                  "ltd": "Limited", "corp": "Corporation", "co": "Company", "dept": "Department", "mt": "Mount",
                  "ft": "Fort", "vs": "versus", "etc": "et cetera", "approx": "approximately", "min": "minutes",
                  "hr": "hour", "hrs": "hours", "sec": "seconds", "e.g": "for example", "i.e": "that is"}


def _en_abbreviation(m: re.Match[str]) -> str:
    key = m[1].lower()
    rest = m.string[m.end():]
    before_name = re.match(r" ?[A-Z]", rest) is not None
    if key in _TITLES and (before_name or key not in _ABBREVIATIONS):
        return _TITLES[key] if before_name or rest.strip() else _TITLES[key] + "."
    word = _ABBREVIATIONS[key]
    return word + "." if not rest.strip() or re.match(r"\s+[A-Z]", rest) else word


_MONTH_RE = (r"(?P<month>(?:January|February|March|April|May|June|July|August|September|October|November|December"
             r"|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\b\.?)")
_ABBR_RE = "|".join(re.escape(k) for k in sorted({*_TITLES, *_ABBREVIATIONS}, key=len, reverse=True))

EN_RULES: list[Rule] = [
    (re.compile(r"\bNo\.\s?(?=[0-9])|#(?=[0-9])"), lambda m: "number "),
    (re.compile(r"(?<![\w+])\+[0-9]{1,3}(?:[ .-]?\(?[0-9]{1,4}\)?){2,5}(?![\w])"), _en_phone),
    (re.compile(r"(?<![\w.-])(?:1[ .-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])?[2-9][0-9]{2}[.-][0-9]{4}"
                r"(?![\w]|[.-][0-9])"), _en_phone),
    (re.compile(r"(?<![\w.-])([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?![\w-]|\.[0-9])"), _en_iso_date),
    (re.compile(r"(?<![\w./])([0-9]{1,2})/([0-9]{1,2})/([0-9]{4}|[0-9]{2})(?![\w/]|\.[0-9])"), _en_us_date),
    (re.compile(_MONTH_RE + r" (?P<day>[0-9]{1,2})(?:st|nd|rd|th)?\b(?:,? (?P<year>[0-9]{4})\b)?(?![.,:][0-9])"),
     _en_month_day),
    (re.compile(r"\b(?P<day>[0-9]{1,2})(?:st|nd|rd|th)? (?:of )?" + _MONTH_RE + r"(?:,? (?P<year>[0-9]{4})\b)?(?![.,:][0-9])"),
     _en_day_month),
    (re.compile(r"(?<![\w:.])(?P<h>[0-9]{1,2}):(?P<min>[0-9]{2})(?::(?P<sec>[0-9]{2}))?"
                r"(?: ?(?P<ap>[AaPp])\.? ?[Mm]\b\.?)?(?![\w:]|\.[0-9])"), _en_time),
    (re.compile(r"(?<![\w:.])(?P<h>[0-9]{1,2})(?P<min>)(?P<sec>) ?(?P<ap>[AaPp])\.? ?[Mm]\b\.?"), _en_time),
    (re.compile(r"(?P<sym>[$€£¥]) ?(?P<int>" + NUM + r")(?:\.(?P<frac>[0-9]+))?"
                r"(?: ?(?P<scale>thousand|million|billion|trillion)\b|(?P<abbr>[kKmMbB]n?)\b)?"), _en_currency),
    (re.compile(r"(?<![\w.])(?P<int>" + NUM + r")(?:\.(?P<frac>[0-9]+))? ?元"), _en_currency_after),
    (re.compile(r"(?<![\w.])(?P<neg>-)?(?P<int>" + NUM + r")(?:\.(?P<frac>[0-9]+))? ?%"), _en_percent),
    (re.compile(r"\b([0-9]+)(?:st|nd|rd|th|ST|ND|RD|TH)\b"), _en_ordinal),
    (re.compile(r"(?<![\w.])'?([1-9][0-9]{0,2}0)s\b"), _en_decade),
    (re.compile(r"(?<![\w.])[0-9]+(?:\.[0-9]+){2,}(?![\w]|\.[0-9])"), _en_dotted),
    (re.compile(_MONTH_RE + r",? ([0-9]{4})\b(?![.,:][0-9])"), _en_month_year),
    (re.compile(r"\b(in|since|until|by|from|year|before|after|circa|In|Since|Until|By|From|Year|Before|After)"
                r" (1[1-9][0-9]{2}|20[0-9]{2})\b(?![.,:][0-9])"), _en_year_after_word),
    (re.compile(r"(?<![\w.,-])([1-9][0-9]{0,3}|0)[-–]([1-9][0-9]{0,3}|0)(?![\w.,-])"), _en_range),
    (re.compile(r"(?<![\w.])(?P<neg>(?<![^\s(])-)?(?P<int>" + NUM + r")(?:\.(?P<frac>[0-9]+))?(?![\w])"), _en_number),
    (re.compile(r"[0-9]+"), _en_digits_left),
    (re.compile(r"(?<![\w.])(" + _ABBR_RE + r")\.(?!\w)", re.IGNORECASE), _en_abbreviation),
    (re.compile(r" ?& ?"), lambda m: " and "),
    (re.compile(r" ?%"), lambda m: " percent"),
    (re.compile(r" ?° ?([CF])\b"), lambda m: " degrees " + ("Celsius" if m[1] == "C" else "Fahrenheit")),
    (re.compile(r" ?°"), lambda m: " degrees"),
    (re.compile(r" ?@ ?"), lambda m: " at "),
    (re.compile(r"(?<= )=(?= )"), lambda m: "equals"),
]


# =========================================================================== Chinese

_ZH_DIGITS = "零一二三四五六七八九"
_ZH_SECTIONS = ("", "万", "亿", "万亿")
_FULLWIDTH = str.maketrans("０１２３４５６７８９％：", "0123456789%:")
_MEASURE_WORDS = ("个|位|张|次|天|件|本|条|只|家|种|块|份|瓶|杯|台|辆|间|名|小时|分钟|周|星期|年|岁|点|遍|层|斤|公斤|"
                  "米|公里|倍|口|双|对|把|支|盒|碗|套|项|笔|颗|片|节|首|部|场|所|晚|人")


def _zh_section(n: int) -> str:
    """1..9999 with internal zeros: 1005 -> 一千零五, 110 -> 一百一十."""
    out, zero = "", False
    for place, unit in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // place % 10
        if digit == 0:
            zero = bool(out)
            continue
        out += ("零" if zero else "") + _ZH_DIGITS[digit] + unit
        zero = False
    return out


def zh_cardinal(n: int) -> str:
    """``n`` in Chinese: 10 -> 十, 15 -> 十五, 1280 -> 一千二百八十, 10010 -> 一万零一十."""
    if n < 0:
        return "负" + zh_cardinal(-n)
    if n == 0:
        return "零"
    sections = []
    while n:
        n, section = divmod(n, 10000)
        sections.append(section)
    out, gap = "", False
    for index in range(len(sections) - 1, -1, -1):
        section = sections[index]
        if section == 0:
            gap = bool(out)
            continue
        if out and (gap or section < 1000):
            out += "零"
        out += _zh_section(section) + _ZH_SECTIONS[index]
        gap = False
    return out[1:] if out.startswith("一十") else out


def zh_digits(digits: str, yao: bool = False) -> str:
    """Digit by digit: "2026" -> 二零二六; with ``yao`` 1 reads 幺 (phone numbers)."""
    return "".join("幺" if yao and c == "1" else _ZH_DIGITS[int(c)] for c in digits if "0" <= c <= "9")


def zh_number(integer: str, fraction: str | None = None) -> str:
    """An integer (commas allowed) and optional fraction: "3", "5" -> 三点五; 7+ digit runs digit by digit with 幺."""
    value = _int(integer)
    plain = integer.replace(",", "")
    if value is None or (len(plain) >= 7 and "," not in integer) or (len(plain) > 1 and plain[0] == "0"):
        words = zh_digits(plain, yao=True)
    else:
        words = zh_cardinal(value)
    return f"{words}点{zh_digits(fraction)}" if fraction else words


def _zh_date(m: re.Match[str]) -> str:
    month, day = int(m["month"]), int(m["day"])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return m[0]
    return f"{zh_digits(m['year'])}年{zh_cardinal(month)}月{zh_cardinal(day)}{m['unit'] or '日'}"


def _zh_time(m: re.Match[str]) -> str:
    hour, minute = int(m[1]), int(m[2])
    if hour > 24 or minute > 59:
        return m[0]
    said = ("两" if hour == 2 else zh_cardinal(hour)) + "点"
    if minute:
        said += ("零" + _ZH_DIGITS[minute] if minute < 10 else zh_cardinal(minute)) + "分"
    return said


_ZH_CURRENCY = {"¥": "元", "￥": "元", "$": "美元", "€": "欧元", "£": "英镑"}


def _zh_money(integer: str, fraction: str | None, unit: str) -> str:
    value = _int(integer)
    if unit != "元" or value is None or (fraction and len(fraction) > 2):
        return zh_number(integer, fraction.rstrip("0") if fraction else None) + unit
    jiao, fen = (int(c) for c in (fraction or "").ljust(2, "0"))
    said = zh_cardinal(value) + "元" if value or not (jiao or fen) else ""
    if jiao:
        said += _ZH_DIGITS[jiao] + "角"
    if fen:
        said += ("零" if said and not jiao else "") + _ZH_DIGITS[fen] + "分"
    return said


def _zh_phone(m: re.Match[str]) -> str:
    return ("加" if m[0].startswith("+") else "") + zh_digits(m[0], yao=True)


def _zh_number(m: re.Match[str]) -> str:
    return ("负" if m["neg"] else "") + zh_number(m["int"], m["frac"])


ZH_RULES: list[Rule] = [
    (re.compile(r"(?<![0-9.])(?P<year>[0-9]{4})[-/.](?P<month>[0-9]{1,2})[-/.](?P<day>[0-9]{1,2})(?P<unit>[日号])?(?![0-9])"),
     _zh_date),
    (re.compile(r"(?<![0-9])([0-9]{4})年"), lambda m: zh_digits(m[1]) + "年"),
    (re.compile(r"(?<![0-9:])([0-9]{1,2}):([0-9]{2})(?![0-9:])"), _zh_time),
    (re.compile(r"(?P<sym>[¥￥$€£]) ?(?P<int>" + NUM + r")(?:\.(?P<frac>[0-9]+))?"),
     lambda m: _zh_money(m["int"], m["frac"], _ZH_CURRENCY[m["sym"]])),
    (re.compile(r"(?<![0-9.])(?P<int>" + NUM + r")(?:\.(?P<frac>[0-9]{1,2}))? ?(?P<unit>元|块)"),
     lambda m: _zh_money(m["int"], m["frac"], "元") if m["unit"] == "元" else zh_number(m["int"], m["frac"]) + "块"),
    (re.compile(r"(?<![0-9.])(?P<neg>-)?(?P<int>" + NUM + r")(?:\.(?P<frac>[0-9]+))? ?%"),
     lambda m: "百分之" + _zh_number(m)),
    (re.compile(r"(?<![0-9A-Za-z])\+[0-9]{1,3}[ -]?[0-9][0-9 -]{5,}[0-9]|(?<![0-9])[0-9]{3,4}-[0-9]{3,4}-?[0-9]{4}(?![0-9])"),
     _zh_phone),
    (re.compile(r"(?<![0-9.,第])2(?= ?(?:" + _MEASURE_WORDS + "))"), lambda m: "两"),
    (re.compile(r"(?<![0-9.])([0-9]+) ?[-~～] ?([0-9]+)(?![0-9.])"), lambda m: f"{zh_number(m[1])}到{zh_number(m[2])}"),
    (re.compile(r"(?<![0-9.])(?P<neg>(?<![0-9A-Za-z])-)?(?P<int>" + NUM + r")(?:\.(?P<frac>[0-9]+))?"), _zh_number),
    (re.compile(r"[0-9]+"), lambda m: zh_number(m[0])),
    (re.compile(r" ?& ?"), lambda m: "和"),
    (re.compile(r"%"), lambda m: "百分号"),
]
