"""Dates and date-times for scheduling, as people say them, in English (``en``) and Mandarin (``zh``).

Pure functions: ``ref`` is the call's local date and time in the callee's time zone (an aware datetime);
nothing here reads a clock. Text is already normalised by :func:`voicebot.dialog.intents.normalize`.

Why a small grammar and not a library: ``dateparser`` 1.5.0 and ``parsedatetime`` 2.6 (PyPI) were tried on
the phrases below with a reference of Monday 2026-12-07 10:00. Neither reads a single Mandarin phrase (明天下午三点,
下周一上午十点, 两点半, 15号, 12月15日 all give nothing). Both miss "the fifteenth at two pm", "half past two",
"quarter to five", "two thirty" and "fifteen hundred". ``parsedatetime`` drops the time of "monday at two pm"
(10:00) and "tomorrow at three pm" (09:00) and reads "friday at ten in the morning" as 06:00; ``dateparser``
reads "at three" as 7 March 2027. Neither resolves a bare hour by business hours. A grammar of a few rules,
documented and property-tested, is smaller than either library and gets them right.

Resolution rules (the answer is always today or later, for scheduling):

* today, tomorrow, the day after tomorrow (今天, 明天, 后天, 大后天); "in 3 days" (3天后); "a week from today";
* a weekday alone or with "this"/"coming"/"on" (周五, 这周五, 本周五): its next occurrence, today included;
  "next <weekday>" and 下周X: that weekday in the following Monday-to-Sunday week (said on a Sunday,
  "next Monday" is tomorrow); "<weekday> next week" likewise;
* "the 15th" / 15号: the 15th of this month, or of the next month that has one when it has passed;
* "December 12th", "the 12th of December", 12月15日: this year, or next year when it has passed;
* numeric dates "12/15": month/day in both locales (US order, and Chinese writes 月/日); when the first
  number cannot be a month ("15/12") it is day/month. A year ("12/15/2027") is taken as said.

A date-time is a date and a clock time (:mod:`voicebot.dialog.slots_time` for how clock times resolve).
Without a date the time is today's, or tomorrow's once it has passed; a weekday whose time has passed today
means the same weekday next week.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from voicebot.dialog.slots_number import ZH_NUM, zh_number_value
from voicebot.dialog.slots_time import (
    WEEKDAYS,
    en_clock_in,
    en_digitize,
    first_unnegated,
    zh_clock_in,
)

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
_MONTH_ALT = "|".join([*MONTHS, *(m[:3] for m in MONTHS if m != "may"), "sept"])
_WEEKDAY_ALT = "|".join(WEEKDAYS)
_EN_DATE_RE = re.compile(
    r"\b(?:(?P<dat>(?:the )?day after tomorrow)|(?P<tomorrow>tomorrow|tomorow|tmrw)"
    r"|(?P<today>today|tonight|this (?:morning|afternoon|evening))"
    r"|in (?P<in_days>\d{1,2}) days?"
    r"|(?P<week>(?:a|1) week from (?:today|now)|in (?:a|1) week)"
    rf"|(?P<wd_rel>next|this|coming|on)? ?(?P<wd>{_WEEKDAY_ALT})s?(?P<wd_next> next week)?"
    rf"|(?P<month>{_MONTH_ALT})(?: the)? (?P<mday>\d{{1,2}})(?:st|nd|rd|th)?"
    rf"|(?:the )?(?P<mday2>\d{{1,2}})(?:st|nd|rd|th)? of (?P<month2>{_MONTH_ALT})"
    r"|(?P<num_a>\d{1,2}) slash (?P<num_b>\d{1,2})(?: slash (?P<num_y>\d{2}|\d{4}))?"
    r"|(?:on )?the (?P<mday3>\d{1,2})(?:st|nd|rd|th)|on the (?P<mday4>\d{1,2}))(?!\w)"
)
_ZH_N = f"[{ZH_NUM}\\d]{{1,3}}"
_ZH_DATE_RE = re.compile(
    r"(?P<big>大后天)|(?P<dat>后天)|(?P<tomorrow>明天|明日|明早|明晚|明儿)"
    r"|(?P<today>今天|今日|今晚|今早|今儿)"
    rf"|(?P<in_days>{_ZH_N})天(?:以后|之后|后)"
    r"|(?P<wd_rel>下|这|本)?个?(?:周|星期|礼拜)(?P<wd>[一二三四五六日天1-7])"
    rf"|(?P<month>{_ZH_N})月(?P<mday>{_ZH_N})[日号]?"
    rf"|(?P<mday3>{_ZH_N})[日号](?!码)"
    r"|(?P<num_a>\d{1,2}) ?slash ?(?P<num_b>\d{1,2})"
)
_ZH_WEEKDAY_CHARS = "一二三四五六日"


@dataclass(frozen=True)
class SaidDate:
    """A date found in an utterance: the day, whether it came from a weekday, and where it was said."""

    day: date
    weekday: bool
    span: tuple[int, int]


def _month_number(name: str) -> int:
    return next(i + 1 for i, month in enumerate(MONTHS) if month.startswith(name[:3]))


def _month_day(today: date, month: int, mday: int, year: int | None = None) -> date | None:
    """``month``/``mday`` this year or the next year that has it, never before ``today``."""
    if not 1 <= month <= 12 or not 1 <= mday <= 31:
        return None
    if year is not None:
        try:
            return date(year, month, mday)
        except ValueError:
            return None
    for candidate_year in range(today.year, today.year + 9):  # 29 February: within 8 years
        try:
            day = date(candidate_year, month, mday)
        except ValueError:
            continue
        if day >= today:
            return day
    return None


def _day_of_month(today: date, mday: int) -> date | None:
    """The ``mday``-th of this month, or of the next month that has it once passed."""
    if not 1 <= mday <= 31:
        return None
    year, month = today.year, today.month
    for _ in range(13):
        try:
            day = date(year, month, mday)
            if day >= today:
                return day
        except ValueError:
            pass
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return None


def _weekday(today: date, index: int, rel: str) -> date:
    """Weekday ``index`` (0 = Monday): next occurrence (today included), or in next week for ``next``."""
    if rel == "next":
        return today + timedelta(days=7 - today.weekday() + index)
    return today + timedelta(days=(index - today.weekday()) % 7)


def _numeric(today: date, first: int, second: int, year: str | None) -> date | None:
    """``first/second``: month/day, or day/month when ``first`` cannot be a month."""
    month, mday = (first, second) if first <= 12 else (second, first)
    full_year = None if year is None else int(year) + (2000 if len(year) == 2 else 0)
    return _month_day(today, month, mday, full_year)


def _en_found(found: re.Match[str], today: date) -> date | None:
    g = found.groupdict()
    offsets = {"today": 0, "tomorrow": 1, "dat": 2}
    for name, offset in offsets.items():
        if g[name]:
            return today + timedelta(days=offset)
    if g["in_days"]:
        return today + timedelta(days=int(g["in_days"]))
    if g["week"]:
        return today + timedelta(days=7)
    if g["wd"]:
        rel = "next" if g["wd_rel"] == "next" or g["wd_next"] else ""
        return _weekday(today, WEEKDAYS.index(g["wd"]), rel)
    if g["month"] or g["month2"]:
        return _month_day(today, _month_number(g["month"] or g["month2"]), int(g["mday"] or g["mday2"]))
    if g["num_a"]:
        return _numeric(today, int(g["num_a"]), int(g["num_b"]), g["num_y"])
    return _day_of_month(today, int(g["mday3"] or g["mday4"]))


def _zh_found(found: re.Match[str], today: date) -> date | None:
    g = found.groupdict()
    offsets = {"today": 0, "tomorrow": 1, "dat": 2, "big": 3}
    for name, offset in offsets.items():
        if g[name]:
            return today + timedelta(days=offset)
    if g["in_days"]:
        return today + timedelta(days=zh_number_value(g["in_days"]))
    if g["wd"]:
        wd = g["wd"].replace("天", "日")
        index = int(wd) - 1 if wd.isdigit() else _ZH_WEEKDAY_CHARS.index(wd)
        return _weekday(today, index, "next" if g["wd_rel"] == "下" else "")
    if g["month"]:
        return _month_day(today, zh_number_value(g["month"]), zh_number_value(g["mday"]))
    if g["num_a"]:
        return _numeric(today, int(g["num_a"]), int(g["num_b"]), None)
    return _day_of_month(today, zh_number_value(g["mday3"]))


def _said(text: str, language: str, ref: datetime) -> tuple[re.Match[str] | None, SaidDate | None]:
    """The first date match in prepared ``text`` and its resolved date (None when it cannot be today or later)."""
    zh = language == "zh"
    found = first_unnegated(_ZH_DATE_RE if zh else _EN_DATE_RE, text, language)
    if found is None:
        return None, None
    day = (_zh_found if zh else _en_found)(found, ref.date())
    if day is None or day < ref.date():
        return found, None
    return found, SaidDate(day, bool(found.group("wd")), found.span())


def find_date(norm: str, language: str, ref: datetime) -> SaidDate | None:
    """The first date said in normalised ``norm``, resolved against ``ref`` (today or later), or None."""
    return _said(norm if language == "zh" else en_digitize(norm), language, ref)[1]


def parse_date(norm: str, language: str, ref: datetime) -> date | None:
    """The date said in normalised ``norm`` (today or later relative to ``ref``), or None."""
    said = find_date(norm, language, ref)
    return None if said is None else said.day


def parse_datetime(norm: str, language: str, ref: datetime) -> datetime | None:
    """The date and clock time said in ``norm``, in ``ref``'s zone and never on a day before ``ref``'s, or None.

    A clock time is needed ("tomorrow" alone is None); a period alone gives its default hour.
    """
    zh = language == "zh"
    text = said_text = norm if zh else en_digitize(norm)
    found, said = _said(text, language, ref)
    if found is not None:
        start, end = found.span()
        text = text[:start] + " " * (end - start) + text[end:]  # the date's numbers are not a clock time
    clock = zh_clock_in(text) if zh else en_clock_in(text, found is not None, said_text)
    if clock is None or (found is not None and said is None):
        return None
    when = datetime.combine(said.day if said else ref.date(), time(*clock), tzinfo=ref.tzinfo)
    if when < ref and (said is None or said.weekday):  # passed today: tomorrow, or the weekday next week
        when += timedelta(days=1 if said is None else 7)
    return when
