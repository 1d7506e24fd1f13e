"""Times, dates and date-times as people say them, in English (``en``) and Mandarin (``zh``).

Pure functions: the reference time (the call's local date and time in the callee's zone) is passed in;
nothing here reads a clock. Text is already normalised by :func:`voicebot.dialog.intents.normalize`.

* ``time`` -> ``"<day> HH:MM"``, ``"<day>"`` or ``"HH:MM"`` (day: today, tomorrow, day_after_tomorrow,
  monday..sunday, next_week, or an ISO date) -- the call-back label, kept for existing flows.
* ``date`` and ``datetime`` are in :mod:`voicebot.dialog.slots_date`.

How a spoken clock time is resolved (documented in docs/flows.md):

* periods without a clock time are default hours: morning 09:00, noon 12:00, afternoon 15:00,
  evening / tonight / 晚上 19:00, midnight 00:00 ("in the evening" is 19:00, not a range);
* an hour without am/pm or a period follows business hours: 1-7 is pm, 8-11 is am, 12 is noon
  ("at three" is 15:00, "at nine" is 09:00); 0 and 13-23 are taken as said;
* "fifteen hundred" / "1500 hours" is 15:00; "half past two" 14:30; "quarter to five" 16:45.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from voicebot.dialog.intents import is_negated
from voicebot.dialog.slots_number import EN_ORDINALS, ZH_NUM, en_number_at, zh_number_value

PERIOD_TIMES = {"morning": (9, 0), "noon": (12, 0), "afternoon": (15, 0),
                "evening": (19, 0), "midnight": (0, 0)}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

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
_EN_CLOCK_CUES = frozenset({"at", "around", "about", "by", "after", "before", "until", "till", "from", "say", "between"})
_EN_RELATIVE_RE = re.compile(
    r"\bin (?:(?P<n>\d+)|(?P<half>half an?|a half)|an?) (?:(?P<and1>and a half) )?"
    r"(?P<unit>hours?|hrs?|minutes?|mins?)(?P<and2> and a half)?\b"
)

_ZH_NUM_RE = f"[{ZH_NUM}\\d]{{1,3}}"
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


def first_unnegated(pattern: re.Pattern[str], text: str,
                     language: str) -> re.Match[str] | None:
    for found in pattern.finditer(text):
        if not is_negated(text, found.start(), language):
            return found
    return None


# Words a recogniser hears for a spoken hour ("monday at to pm"), read as the hour only between a clock cue
# and an am/pm or o'clock marker: "at to pm" is 2 pm, "talk to pm" is nothing.
_EN_HOUR_HOMOPHONES = {"to": "2", "too": "2", "for": "4", "fore": "4", "won": "1", "tin": "10", "tan": "10", "ate": "8"}
_EN_HOUR_MARKERS = frozenset({"pm", "am", "p", "a", "o'clock", "oclock", "in"})
_EN_MILITARY_RE = re.compile(r"(?<![\w'])(?P<h>[01]?\d|2[0-3])(?P<m>[0-5]\d)(?P<hours> hours)?(?![\w'])")


def _en_homophones(tokens: list[str]) -> list[str]:
    """Hour homophones after "at"/"around" and before am/pm, o'clock or "in the ..." replaced by digits."""
    out = list(tokens)
    for i in range(1, len(tokens) - 1):
        if tokens[i] in _EN_HOUR_HOMOPHONES and tokens[i - 1] in ("at", "around", "about", "by") \
                and tokens[i + 1] in _EN_HOUR_MARKERS and (tokens[i + 1] != "a" or tokens[i + 2:i + 3] == ["m"]):
            out[i] = _EN_HOUR_HOMOPHONES[tokens[i]]
    return out


def en_digitize(norm: str) -> str:
    """Replace spelled numbers by digits ("three thirty" -> "3 30", fifth -> 5th, "fifteen hundred" -> 1500)."""
    tokens = _en_homophones(norm.split())
    out: list[str] = []
    i = 0
    while i < len(tokens):
        parsed = en_number_at(tokens, i) if tokens[i] != "a" else None
        if parsed is None:
            ordinal = EN_ORDINALS.get(tokens[i])
            out.append(tokens[i] if ordinal is None else f"{ordinal}th")
            i += 1
            continue
        value, i = parsed
        if value in (20, 30) and i < len(tokens) and EN_ORDINALS.get(tokens[i], 10) < 10:
            value, i = value + EN_ORDINALS[tokens[i]], i + 1
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
    found = first_unnegated(pattern, text, language)
    if found is None:
        return None
    return next(name for name, value in found.groupdict().items() if value)


def _en_military(text: str) -> tuple[int, int] | None:
    """ "fifteen hundred" (digitized to 1500), "1530 hours": 24-hour clock times of three or four digits."""
    for found in _EN_MILITARY_RE.finditer(text):
        if found.group("m") == "00" or found.group("hours"):
            return int(found.group("h")), int(found.group("m"))
    return None


def _en_clock(text: str, period: str | None, has_context: bool) -> tuple[int, int] | None:
    military = _en_military(text)
    if military is not None:
        return military
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
    text = en_digitize(norm)
    relative = _EN_RELATIVE_RE.search(text)
    if relative is not None:
        return _relative(now, _en_relative_minutes(relative))
    said = text
    day_match = first_unnegated(_EN_DAY_RE, text, "en")
    day = None if day_match is None else _en_day(day_match, now)
    if day_match is not None:  # the date's numbers are not a clock time
        start, end = day_match.span()
        text = text[:start] + " " * (end - start) + text[end:]
    return _compose(day, en_clock_in(text, day_match is not None, said))


def en_clock_in(text: str, has_context: bool, said: str = "") -> tuple[int, int] | None:
    """(hour, minute) said in digitized English ``text``; a period alone gives its default hour.

    ``has_context``: a date was said, so a bare number ("monday at 2") is a clock time. ``said``: the whole
    utterance before the date was blanked out of ``text`` ("tonight" is a date and a period); default ``text``.
    """
    period = _period(_EN_PERIOD_RE, said or text, "en")
    clock = _en_clock(text, period, has_context or period is not None)
    if clock is None and period is not None:
        clock = PERIOD_TIMES[period]
    return clock


def zh_clock_in(text: str) -> tuple[int, int] | None:
    """(hour, minute) said in Chinese ``text``; a period alone gives its default hour."""
    period = _period(_ZH_PERIOD_RE, text, "zh")
    clock = _zh_clock(text, period)
    if clock is None and period is not None:
        clock = PERIOD_TIMES[period]
    return clock


def _zh_day(text: str, now: datetime | None) -> str | None:
    found = first_unnegated(_ZH_DAY_RE, text, "zh")
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
        month, mday = zh_number_value(found.group("month")), found.group("mday")
        return _iso_date(now, month, zh_number_value(mday))
    if now is None:
        return None
    return _iso_date(now, now.month, zh_number_value(found.group("mday2")), roll_year=False)


def _zh_clock(text: str, period: str | None) -> tuple[int, int] | None:
    for found in _ZH_CLOCK_RE.finditer(text):
        if found.group("dh"):
            hour, minute = int(found.group("dh")), int(found.group("dm"))
        else:
            before = text[found.start() - 1] if found.start() else ""
            if found.group("h") == "一" and before in _ZH_NOT_CLOCK_BEFORE:
                continue
            hour = zh_number_value(found.group("h"))
            minute = (30 if found.group("half") else 15 if found.group("q1")
                      else 45 if found.group("q3")
                      else zh_number_value(found.group("m")) if found.group("m") else 0)
        hour24 = _to_24h(hour, period, None)
        if hour24 is not None and minute < 60 and not is_negated(text, found.start(), "zh"):
            return hour24, minute
    return None


def _zh_relative_minutes(found: re.Match[str]) -> int | None:
    if not (found.group("pre") or found.group("post")):
        return None
    amount = 0.5 if found.group("half") else float(zh_number_value(found.group("n")))
    if found.group("nhalf"):
        amount += 0.5
    return round(amount * (1 if found.group("unit") == "分钟" else 60))


def _zh_time(norm: str, language: str, now: datetime | None) -> str | None:
    for relative in _ZH_RELATIVE_RE.finditer(norm):
        minutes = _zh_relative_minutes(relative)
        if minutes is not None:
            return _relative(now, minutes)
    return _compose(_zh_day(norm, now), zh_clock_in(norm))


def time_slot(norm: str, language: str, now: datetime | None) -> str | None:
    """The call-back label for normalised ``norm`` ("tomorrow 15:00"); ``now`` resolves relative times."""
    return (_zh_time if language == "zh" else _en_time)(norm, language, now)


