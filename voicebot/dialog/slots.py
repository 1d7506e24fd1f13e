"""Slot extractors: capture values (yes/no, a callback time, a date, a date-time, numbers, digits)
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
* ``date`` -> an ISO date, today or later (``now``, the call's local time, is needed):
  :mod:`voicebot.dialog.slots_date` has the rules.
* ``datetime`` -> ``"YYYY-MM-DD HH:MM"``, a date and a clock time together, not before today.
* ``number`` -> the first number said, as a digit string (:mod:`voicebot.dialog.slots_number`).
* ``digits`` -> every digit spelled out, concatenated ("oh"/幺 included, "double five" 55).
* ``text`` -> the normalised text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import datetime

from voicebot.dialog.intents import find_keyword, is_negated, normalize
from voicebot.dialog.slots_date import parse_date, parse_datetime
from voicebot.dialog.slots_number import blank, digits_slot, number_slot
from voicebot.dialog.slots_time import time_slot

SLOT_TYPES = ("yes_no", "time", "date", "datetime", "number", "digits", "text")

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

def extract_slot(slot_type: str, text: str, language: str,
                 now: datetime | None = None) -> str | None:
    """Extract a ``slot_type`` value from an utterance, or None if absent."""
    extractor = _EXTRACTORS.get(slot_type)
    if extractor is None:
        raise ValueError(f"unknown slot type {slot_type!r}; expected one of {SLOT_TYPES}")
    prepared = re.sub(r"(?<=\d)[,，](?=\d{3}(?!\d))", "", unicodedata.normalize("NFKC", text))
    prepared = re.sub(r"(?<=\d)/(?=\d)", " slash ", prepared)  # 12/15: normalising drops the slash
    norm = normalize(prepared, language)
    if not norm:
        return None
    return extractor(norm, language, now)


# --------------------------------------------------------------------------- yes/no


def _yes_no(norm: str, language: str, now: datetime | None) -> str | None:
    """Earliest yes/no answer; longer phrases win over phrases inside them."""
    if language == "zh":
        norm = blank(norm, _ZH_YES_NO_NOISE)
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


def _date(norm: str, language: str, now: datetime | None) -> str | None:
    """ISO date (2026-12-15), today or later; needs the call's local time ``now``."""
    said = None if now is None else parse_date(norm, language, now)
    return None if said is None else said.isoformat()


def _datetime(norm: str, language: str, now: datetime | None) -> str | None:
    """``YYYY-MM-DD HH:MM`` in the callee's zone, not before today; needs the call's local time ``now``."""
    said = None if now is None else parse_datetime(norm, language, now)
    return None if said is None else said.strftime("%Y-%m-%d %H:%M")


def _text(norm: str, language: str, now: datetime | None) -> str | None:
    return norm or None


_EXTRACTORS: dict[str, Callable[[str, str, datetime | None], str | None]] = {
    "yes_no": _yes_no,
    "time": time_slot,
    "date": _date,
    "datetime": _datetime,
    "number": lambda norm, language, now: number_slot(norm, language),
    "digits": lambda norm, language, now: digits_slot(norm, language),
    "text": _text,
}
