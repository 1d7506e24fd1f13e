"""Slot extractors: capture values (yes/no, a callback time, numbers, digits)
from what a caller said, in English (``en``) or Mandarin (``zh``).

Sans-I/O and stateless.  Text is normalised with
:func:`voicebot.dialog.intents.normalize` first (thousands separators such as
``1,200`` are joined beforehand).

* ``yes_no`` -> ``"yes"`` / ``"no"`` / None.  The earliest non-negated phrase
  wins; a longer phrase beats one inside it ("no problem" is yes).  A negated
  yes-word is ignored in English ("not sure") and means no in Chinese (不好).
* ``time`` -> ``"<day> HH:MM"``, ``"<day>"`` or ``"HH:MM"``; day is today,
  tomorrow, day_after_tomorrow, monday..sunday, next_week, or an ISO date when
  ``now`` is given and an absolute date was said.  Relative times ("in two
  hours", 半小时后) need ``now`` and give ``"today HH:MM"`` (``"tomorrow
  HH:MM"`` past midnight).  Periods: morning 09:00, noon 12:00, afternoon
  15:00, evening/tonight 19:00.  A bare hour 1-7 means pm, 8-11 am.
* ``number`` -> the first number said, as a digit string.
* ``digits`` -> every digit spelled out, concatenated ("oh"/幺 included).
* ``text`` -> the normalised text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime, timedelta

from voicebot.dialog.intents import find_keyword, is_negated, normalize

SLOT_TYPES = ("yes_no", "time", "number", "digits", "text")

PERIOD_TIMES = {"morning": (9, 0), "noon": (12, 0), "afternoon": (15, 0),
                "evening": (19, 0), "midnight": (0, 0)}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# --------------------------------------------------------------------------- yes/no

_EN_YES = ("yes", "yeah", "yep", "yup", "ya", "sure", "correct", "that's right", "right",
           "of course", "ok", "okay", "alright", "absolutely", "definitely", "certainly",
           "no problem", "why not")
_EN_NO = ("no", "nope", "nah", "not really", "no thanks", "no thank you", "not at all",
          "not interested", "of course not", "not correct", "not right", "wrong",
          "incorrect", "never")
# Phrases that look like an answer but are not one ("not really sure").
_EN_NEUTRAL = ("not sure", "not really sure", "no idea", "don't know", "not yet",
               "no problem at all")
_ZH_YES = ("是", "是的", "对", "对的", "好", "好的", "可以", "行", "嗯嗯", "没问题", "没错",
           "当然", "需要", "要的", "没有问题")
_ZH_NO = ("不是", "不对", "不要", "不用", "不行", "不可以", "不需要", "不好", "没有", "不了",
          "算了")
_ZH_NEUTRAL = ("不知道", "不清楚", "不确定", "不一定", "说不好", "不好说", "看情况")
# Words that contain a yes/no character without answering anything.
_ZH_YES_NO_NOISE = ("你好", "您好", "不好意思", "对不起", "对面", "好像", "还是", "但是", "可是",
                    "要是", "只是", "于是", "是否", "总是", "是谁", "是不是", "银行", "行业",
                    "进行", "要不要", "需不需要", "好不好", "行不行", "可不可以", "对不对")

# --------------------------------------------------------------------------- numbers

_EN_UNITS = {w: i for i, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))}
_EN_TEENS = {w: i + 10 for i, w in enumerate(("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                                              "seventeen", "eighteen", "nineteen"))}
_EN_TENS = {w: (i + 2) * 10 for i, w in enumerate(("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
                                                   "ninety"))}
_EN_SCALES = {"thousand": 1000, "million": 10**6, "billion": 10**9}
_EN_ORDINALS = {w: i + 1 for i, w in enumerate((
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth",
    "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth", "nineteenth"))}
_EN_ORDINALS |= {"twentieth": 20, "thirtieth": 30}
# which token kinds may follow which inside one spelled number
_EN_FOLLOWS = {
    "": {"unit", "teen", "tens", "digits", "hundred"},
    "unit": {"hundred", "scale"},
    "teen": {"hundred", "scale"},
    "digits": {"hundred", "scale"},
    "tens": {"unit", "scale"},
    "hundred": {"unit", "teen", "tens", "scale"},
    "scale": {"unit", "teen", "tens", "digits"},
}

_ZH_DIGITS = {"零": 0, "〇": 0, "一": 1, "幺": 1, "二": 2, "两": 2, "三": 3, "四": 4,
              "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ZH_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10**4, "亿": 10**8}
_ZH_NUM = "零〇一二两三四五六七八九十"
_ZH_NUMBER_RE = re.compile(f"[{_ZH_NUM}\\d][{_ZH_NUM}百千万亿\\d]*")
# Words with a numeral character that do not say a number.
_ZH_NUMBER_NOISE = ("一下", "一些", "一直", "一定", "一样", "一起", "一般", "一会", "一点儿",
                    "唯一", "统一", "万一", "一边", "一旦", "一切", "一遍", "有点")
_ZH_DIGIT_CHARS = {**_ZH_DIGITS, **{str(i): i for i in range(10)}}

# --------------------------------------------------------------------------- time

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_MONTH_ALT = "|".join([*_MONTHS, *(m[:3] for m in _MONTHS if m != "may"), "sept"])
_EN_DAY_RE = re.compile(
    r"\b(?:(?P<dat>(?:the )?day after tomorrow)|(?P<tomorrow>tomorrow|tomorow|tmrw)"
    r"|(?P<today>today|tonight|this (?:morning|afternoon|evening))"
    r"|(?:next |this |on )?(?P<weekday>" + "|".join(WEEKDAYS) + r")s?"
    r"|(?P<next_week>next week)"
    rf"|(?P<month>{_MONTH_ALT})(?: the)? (?P<mday>\d{{1,2}})(?:st|nd|rd|th)?"
    rf"|(?:the )?(?P<mday2>\d{{1,2}})(?:st|nd|rd|th)? of (?P<month2>{_MONTH_ALT}))\b"
)
_EN_PERIOD_RE = re.compile(
    r"(?<!good )\b(?:(?P<morning>morning)|(?P<noon>noon|midday|lunchtime|lunch time|lunch)"
    r"|(?P<afternoon>afternoon)|(?P<evening>evening|tonight|night)|(?P<midnight>midnight))\b"
)
_EN_CLOCK_RE = re.compile(
    r"(?<![\w'])(?:(?P<rel>half past|(?:a )?quarter past|(?:a )?quarter to) )?"
    r"(?P<h>\d{1,2})(?:[ :](?P<m>[0-5]\d)|(?: oh (?P<m1>\d)))?"
    r"(?: ?(?P<ampm>[ap]) ?m|(?: ?(?P<oclock>o'?clock|o clock)))?(?![\w'])"
)
_EN_CLOCK_CUES = frozenset({"at", "around", "about", "by", "after", "before", "until", "till", "from", "say"})
_EN_RELATIVE_RE = re.compile(
    r"\bin (?:(?P<n>\d+)|(?P<half>half an?|a half)|an?) (?:(?P<and1>and a half) )?"
    r"(?P<unit>hours?|hrs?|minutes?|mins?)(?P<and2> and a half)?\b"
)

_ZH_NUM_RE = f"[{_ZH_NUM}\\d]{{1,3}}"
_ZH_DAY_RE = re.compile(
    r"(?P<big>大后天)|(?P<dat>后天)|(?P<tomorrow>明天|明日|明早|明晚|明儿)"
    r"|(?P<today>今天|今日|今晚|今早|今儿)"
    r"|下?个?(?:周|星期|礼拜)(?P<wd>[一二三四五六日天1-7])"
    r"|(?P<next_week>下个?(?:周|星期|礼拜)|下一周)"
    rf"|(?P<month>{_ZH_NUM_RE})月(?P<mday>{_ZH_NUM_RE})[日号]"
    rf"|(?P<mday2>{_ZH_NUM_RE})[日号](?!码)"
)
_ZH_WEEKDAY_CHARS = "一二三四五六日"
_ZH_PERIOD_RE = re.compile(
    r"(?P<morning>早上|早晨|上午|清晨|凌晨|今早|明早)|(?P<noon>中午)"
    r"|(?P<afternoon>下午|午后)|(?P<evening>晚上|傍晚|今晚|明晚|夜里|晚间)"
)
_ZH_CLOCK_RE = re.compile(
    rf"(?P<h>{_ZH_NUM_RE})(?:点钟|点|时(?![候间]))"
    rf"(?:(?P<half>半)|(?P<q1>一刻)|(?P<q3>三刻)|(?P<m>{_ZH_NUM_RE})分?)?"
    r"|(?<!\d)(?P<dh>\d{1,2})[ :](?P<dm>[0-5]\d)(?!\d)"
)
_ZH_NOT_CLOCK_BEFORE = frozenset("晚早快慢多好大小等差")
_ZH_RELATIVE_RE = re.compile(
    rf"(?P<pre>过)?(?:(?P<n>{_ZH_NUM_RE})个?(?P<nhalf>半)?|(?P<half>半)个?)"
    r"(?P<unit>小时|钟头|分钟)(?P<post>以后|之后|后)?"
)


def extract_slot(slot_type: str, text: str, language: str,
                 now: datetime | None = None) -> str | None:
    """Extract a ``slot_type`` value from an utterance, or None if absent."""
    extractor = _EXTRACTORS.get(slot_type)
    if extractor is None:
        raise ValueError(f"unknown slot type {slot_type!r}; expected one of {SLOT_TYPES}")
    prepared = re.sub(r"(?<=\d)[,，](?=\d{3}(?!\d))", "", unicodedata.normalize("NFKC", text))
    norm = normalize(prepared, language)
    if not norm:
        return None
    return extractor(norm, language, now)


# --------------------------------------------------------------------------- yes/no


def _yes_no(norm: str, language: str, now: datetime | None) -> str | None:
    """Earliest yes/no answer; longer phrases win over phrases inside them."""
    if language == "zh":
        norm = _blank(norm, _ZH_YES_NO_NOISE)
    zh = language == "zh"
    groups = (("yes", _ZH_YES if zh else _EN_YES), ("no", _ZH_NO if zh else _EN_NO),
              ("", _ZH_NEUTRAL if zh else _EN_NEUTRAL))
    hits: list[tuple[int, int, str]] = []
    for value, phrases in groups:
        for phrase in phrases:
            for start, end in find_keyword(norm, phrase, language):
                negated = value == "yes" and is_negated(norm, start, language)
                if not negated:
                    hits.append((start, end, value))
                elif language == "zh":
                    hits.append((start, end, "no"))
    hits = [h for h in hits if not any(
        o[0] <= h[0] and h[1] <= o[1] and o[1] - o[0] > h[1] - h[0] for o in hits)]
    if not hits:
        return None
    return min(hits, key=lambda h: (h[0], h[0] - h[1]))[2] or None


def _blank(text: str, words: tuple[str, ...]) -> str:
    """Replace ``words`` by spaces (keeps other offsets meaningful)."""
    for word in words:
        text = text.replace(word, " " * len(word))
    return text


# --------------------------------------------------------------------------- numbers


def _en_token_kind(token: str) -> tuple[str, int]:
    if token.isdigit() and token.isascii():
        return "digits", int(token)
    for kind, table in (("unit", _EN_UNITS), ("teen", _EN_TEENS), ("tens", _EN_TENS),
                        ("scale", _EN_SCALES)):
        if token in table:
            return kind, table[token]
    return ("hundred", 100) if token == "hundred" else ("", 0)


def _en_number_at(tokens: list[str], i: int) -> tuple[int, int] | None:
    """Parse a spelled/digit number starting at ``tokens[i]``: (value, next index)."""
    total = current = 0
    last, j = "", i
    if tokens[i] == "a" and i + 1 < len(tokens) and tokens[i + 1] in ("hundred", *_EN_SCALES):
        last, current, j = "unit", 1, i + 1
    while j < len(tokens):
        kind, value = _en_token_kind(tokens[j])
        if (kind == "" and tokens[j] == "and" and last in ("hundred", "scale")
                and j + 1 < len(tokens) and _en_token_kind(tokens[j + 1])[0] in _EN_FOLLOWS["scale"]):
            j += 1
            continue
        if kind not in _EN_FOLLOWS.get(last, set()) or (kind == "unit" and last == "tens"
                                                          and value == 0):
            break
        if kind == "hundred":
            if current >= 100:
                break
            current = (current or 1) * 100
        elif kind == "scale":
            total, current = total + (current or 1) * value, 0
        else:
            current += value
        last, j = kind, j + 1
    return None if last == "" else (total + current, j)


def _en_tokens(norm: str) -> list[str]:
    """Words and digit runs ("3pm" -> "3", "pm"; "$50" -> "50")."""
    return re.findall(r"\d+|[^\W\d_]+(?:'[^\W\d_]+)*", norm)


def _en_number(norm: str, language: str, now: datetime | None) -> str | None:
    tokens = _en_tokens(norm)
    for i in range(len(tokens)):
        parsed = _en_number_at(tokens, i)
        if parsed is not None:
            return str(parsed[0])
    return None


def _zh_number_value(numeral: str) -> int:
    """Value of a Chinese/Arabic numeral string such as 一千二百八十, 3万, 两百."""
    tokens = re.findall(r"\d+|.", numeral)
    if all(t.isdigit() or t in _ZH_DIGITS for t in tokens):
        return int("".join(t if t.isdigit() else str(_ZH_DIGITS[t]) for t in tokens))
    total = section = last_unit = 0
    digit: int | None = None
    for token in tokens:
        if token in _ZH_UNITS:
            unit = _ZH_UNITS[token]
            if unit >= 10**4:
                total, section = total + (section + (digit or 0)) * unit, 0
            else:
                section += (1 if digit is None else digit) * unit
            digit, last_unit = None, unit
        elif token in "零〇":
            digit, last_unit = None, 0
        else:
            digit = int(token) if token.isdigit() else _ZH_DIGITS[token]
    if digit is not None and last_unit >= 100:
        digit *= last_unit // 10  # colloquial 一千五 = 1500, 两万三 = 23000
    return total + section + (digit or 0)


def _zh_number(norm: str, language: str, now: datetime | None) -> str | None:
    found = _ZH_NUMBER_RE.search(_blank(norm, _ZH_NUMBER_NOISE))
    return None if found is None else str(_zh_number_value(found.group(0)))


def _number(norm: str, language: str, now: datetime | None) -> str | None:
    return (_zh_number if language == "zh" else _en_number)(norm, language, now)


# --------------------------------------------------------------------------- digits


def _en_digit_piece(tokens: list[str], i: int) -> tuple[str, int]:
    """Digits said by ``tokens[i]`` (and a following unit after a tens word)."""
    token = tokens[i]
    if token.isdigit() and token.isascii():
        return token, i + 1
    if token in ("oh", "o"):
        near = [tokens[k] for k in (i - 1, i + 1) if 0 <= k < len(tokens)]
        digit_near = any(_en_token_kind(t)[0] in ("unit", "digits") or t in ("oh", "o")
                         for t in near)
        return ("0" if digit_near else ""), i + 1
    kind, value = _en_token_kind(token)
    if kind == "tens" and i + 1 < len(tokens) and tokens[i + 1] in _EN_UNITS:
        unit = _EN_UNITS[tokens[i + 1]]
        if unit:
            return str(value + unit), i + 2
    return (str(value) if kind in ("unit", "teen", "tens") else ""), i + 1


def _en_digits(norm: str) -> str:
    tokens = _en_tokens(norm)
    out: list[str] = []
    repeat, i = 1, 0
    while i < len(tokens):
        if tokens[i] in ("double", "triple"):
            repeat, i = (2 if tokens[i] == "double" else 3), i + 1
            continue
        piece, i = _en_digit_piece(tokens, i)
        out.append(piece * repeat if len(piece) == 1 else piece)
        repeat = 1
    return "".join(out)


def _digits(norm: str, language: str, now: datetime | None) -> str | None:
    if language == "zh":
        cleaned = _blank(norm, _ZH_NUMBER_NOISE)
        found = "".join(str(_ZH_DIGIT_CHARS[c]) for c in cleaned if c in _ZH_DIGIT_CHARS)
    else:
        found = _en_digits(norm)
    return found or None


# --------------------------------------------------------------------------- time


def _to_24h(hour: int, period: str | None, ampm: str | None) -> int | None:
    """24-hour value of a spoken hour given a period and/or am/pm marker."""
    if ampm is not None:
        return None if not 1 <= hour <= 12 else hour % 12 + (12 if ampm == "p" else 0)
    if hour > 23:
        return None
    if hour > 12 or hour == 0:
        return hour
    if period in ("afternoon", "evening"):
        return hour % 12 + 12
    if period == "noon":
        return hour + 12 if hour <= 5 else hour
    if period in ("morning", "midnight"):
        return hour % 12 if period == "midnight" else hour
    return hour + 12 if hour <= 7 else hour


def _compose(day: str | None, clock: tuple[int, int] | None) -> str | None:
    time_part = None if clock is None else f"{clock[0]:02d}:{clock[1]:02d}"
    parts = [p for p in (day, time_part) if p]
    return " ".join(parts) or None


def _relative(now: datetime | None, minutes: int) -> str | None:
    """``"today HH:MM"`` (or the day it falls on) ``minutes`` after ``now``."""
    if now is None or minutes <= 0:
        return None
    target = now + timedelta(minutes=minutes)
    offset = (target.date() - now.date()).days
    day = {0: "today", 1: "tomorrow", 2: "day_after_tomorrow"}.get(offset, target.date().isoformat())
    return f"{day} {target.hour:02d}:{target.minute:02d}"


def _iso_date(now: datetime | None, month: int, mday: int, *, roll_year: bool = True) -> str | None:
    """ISO date for month/day on or after ``now`` (next year/month if passed)."""
    if now is None:
        return None
    try:
        when = date(now.year, month, mday)
        if when < now.date():
            when = date(now.year + 1, month, mday) if roll_year else _next_month(now, mday)
    except ValueError:
        return None
    return when.isoformat()


def _next_month(now: datetime, mday: int) -> date:
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return date(year, month, mday)


def _first_unnegated(pattern: re.Pattern[str], text: str,
                     language: str) -> re.Match[str] | None:
    for found in pattern.finditer(text):
        if not is_negated(text, found.start(), language):
            return found
    return None


def _en_digitize(norm: str) -> str:
    """Replace spelled numbers by digits ("three thirty" -> "3 30", fifth -> 5th)."""
    tokens = norm.split()
    out: list[str] = []
    i = 0
    while i < len(tokens):
        parsed = _en_number_at(tokens, i) if tokens[i] != "a" else None
        if parsed is None:
            ordinal = _EN_ORDINALS.get(tokens[i])
            out.append(tokens[i] if ordinal is None else f"{ordinal}th")
            i += 1
            continue
        value, i = parsed
        if value in (20, 30) and i < len(tokens) and _EN_ORDINALS.get(tokens[i], 10) < 10:
            value, i = value + _EN_ORDINALS[tokens[i]], i + 1
            out.append(f"{value}th")
        else:
            out.append(str(value))
    return " ".join(out)


def _en_relative_minutes(found: re.Match[str]) -> int:
    hours = found.group("unit").startswith("h")
    amount = float(found.group("n")) if found.group("n") else 0.5 if found.group("half") else 1.0
    if found.group("and1") or found.group("and2"):
        amount += 0.5
    return round(amount * (60 if hours else 1))


def _en_day(found: re.Match[str], now: datetime | None) -> str | None:
    for name in ("dat", "tomorrow", "today", "weekday", "next_week"):
        if found.group(name):
            value = found.group(name)
            return {"dat": "day_after_tomorrow", "weekday": value}.get(name, name)
    month = found.group("month") or found.group("month2")
    mday = int(found.group("mday") or found.group("mday2"))
    return _iso_date(now, _month_number(month), mday)


def _month_number(name: str) -> int:
    return next(i + 1 for i, month in enumerate(_MONTHS) if month.startswith(name[:3]))


def _period(pattern: re.Pattern[str], text: str, language: str) -> str | None:
    found = _first_unnegated(pattern, text, language)
    if found is None:
        return None
    return next(name for name, value in found.groupdict().items() if value)


def _en_clock(text: str, period: str | None, has_context: bool) -> tuple[int, int] | None:
    for found in _EN_CLOCK_RE.finditer(text):
        groups = found.groupdict()
        before = text[: found.start()].split()[-1:]
        cued = bool(before) and before[0] in _EN_CLOCK_CUES
        explicit = any(groups[k] for k in ("rel", "m", "m1", "ampm", "oclock"))
        if not (explicit or cued or has_context) or is_negated(text, found.start(), "en"):
            continue
        hour, minute = int(groups["h"]), int(groups["m"] or groups["m1"] or 0)
        rel = groups["rel"] or ""
        if rel.endswith("quarter to"):
            hour, minute = (hour - 1) or 12, 45
        elif rel:
            minute = 30 if rel == "half past" else 15
        hour24 = _to_24h(hour, period, groups["ampm"])
        if hour24 is not None and (not rel or 1 <= hour <= 12):
            return hour24, minute
    return None


def _en_time(norm: str, language: str, now: datetime | None) -> str | None:
    text = _en_digitize(norm)
    relative = _EN_RELATIVE_RE.search(text)
    if relative is not None:
        return _relative(now, _en_relative_minutes(relative))
    period = _period(_EN_PERIOD_RE, text, "en")
    day_match = _first_unnegated(_EN_DAY_RE, text, "en")
    day = None if day_match is None else _en_day(day_match, now)
    if day_match is not None:  # the date's numbers are not a clock time
        start, end = day_match.span()
        text = text[:start] + " " * (end - start) + text[end:]
    clock = _en_clock(text, period, day_match is not None or period is not None)
    if clock is None and period is not None:
        clock = PERIOD_TIMES[period]
    return _compose(day, clock)


def _zh_day(text: str, now: datetime | None) -> str | None:
    found = _first_unnegated(_ZH_DAY_RE, text, "zh")
    if found is None:
        return None
    for name in ("dat", "tomorrow", "today", "next_week"):
        if found.group(name):
            return "day_after_tomorrow" if name == "dat" else name
    if found.group("wd"):
        wd = found.group("wd")
        index = int(wd) - 1 if wd.isdigit() else _ZH_WEEKDAY_CHARS.find(wd.replace("天", "日"))
        return WEEKDAYS[index]
    if found.group("big"):
        return None if now is None else (now.date() + timedelta(days=3)).isoformat()
    if found.group("month"):
        month, mday = _zh_number_value(found.group("month")), found.group("mday")
        return _iso_date(now, month, _zh_number_value(mday))
    if now is None:
        return None
    return _iso_date(now, now.month, _zh_number_value(found.group("mday2")), roll_year=False)


def _zh_clock(text: str, period: str | None) -> tuple[int, int] | None:
    for found in _ZH_CLOCK_RE.finditer(text):
        if found.group("dh"):
            hour, minute = int(found.group("dh")), int(found.group("dm"))
        else:
            before = text[found.start() - 1] if found.start() else ""
            if found.group("h") == "一" and before in _ZH_NOT_CLOCK_BEFORE:
                continue
            hour = _zh_number_value(found.group("h"))
            minute = (30 if found.group("half") else 15 if found.group("q1")
                      else 45 if found.group("q3")
                      else _zh_number_value(found.group("m")) if found.group("m") else 0)
        hour24 = _to_24h(hour, period, None)
        if hour24 is not None and minute < 60 and not is_negated(text, found.start(), "zh"):
            return hour24, minute
    return None


def _zh_relative_minutes(found: re.Match[str]) -> int | None:
    if not (found.group("pre") or found.group("post")):
        return None
    amount = 0.5 if found.group("half") else float(_zh_number_value(found.group("n")))
    if found.group("nhalf"):
        amount += 0.5
    return round(amount * (1 if found.group("unit") == "分钟" else 60))


def _zh_time(norm: str, language: str, now: datetime | None) -> str | None:
    for relative in _ZH_RELATIVE_RE.finditer(norm):
        minutes = _zh_relative_minutes(relative)
        if minutes is not None:
            return _relative(now, minutes)
    day = _zh_day(norm, now)
    period = _period(_ZH_PERIOD_RE, norm, "zh")
    clock = _zh_clock(norm, period)
    if clock is None and period is not None:
        clock = PERIOD_TIMES[period]
    return _compose(day, clock)


def _time(norm: str, language: str, now: datetime | None) -> str | None:
    return (_zh_time if language == "zh" else _en_time)(norm, language, now)


def _text(norm: str, language: str, now: datetime | None) -> str | None:
    return norm or None


_EXTRACTORS: dict[str, Callable[[str, str, datetime | None], str | None]] = {
    "yes_no": _yes_no,
    "time": _time,
    "number": _number,
    "digits": _digits,
    "text": _text,
}
