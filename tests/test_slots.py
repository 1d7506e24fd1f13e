"""Table-driven tests for voicebot.dialog.slots.extract_slot."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.dialog.slots import SLOT_TYPES, extract_slot

NOW = datetime(2024, 3, 10, 14, 20)  # a Sunday afternoon

YES_NO = [
    ("en", "yes", "yes"),
    ("en", "Yeah!", "yes"),
    ("en", "yep", "yes"),
    ("en", "sure", "yes"),
    ("en", "that's correct", "yes"),
    ("en", "that’s right", "yes"),
    ("en", "of course", "yes"),
    ("en", "ok", "yes"),
    ("en", "yeah no problem", "yes"),
    ("en", "no", "no"),
    ("en", "nope", "no"),
    ("en", "not really", "no"),
    ("en", "no thanks", "no"),
    ("en", "of course not", "no"),
    ("en", "that's not correct", "no"),
    ("en", "no i'm not", "no"),
    ("en", "not sure", None),
    ("en", "i'm not really sure", None),
    ("en", "i don't know", None),
    ("en", "yesterday", None),
    ("en", "hello who is this", None),
    ("zh", "是", "yes"),
    ("zh", "是的", "yes"),
    ("zh", "对", "yes"),
    ("zh", "对的对的", "yes"),
    ("zh", "好", "yes"),
    ("zh", "好的", "yes"),
    ("zh", "可以", "yes"),
    ("zh", "行", "yes"),
    ("zh", "嗯嗯", "yes"),
    ("zh", "没问题", "yes"),
    ("zh", "不是", "no"),
    ("zh", "不对", "no"),
    ("zh", "不要", "no"),
    ("zh", "不用了", "no"),
    ("zh", "不行", "no"),
    ("zh", "不可以", "no"),
    ("zh", "不需要，谢谢", "no"),
    ("zh", "不好", "no"),
    ("zh", "不太好", "no"),
    ("zh", "你好", None),
    ("zh", "不好意思", None),
    ("zh", "我不知道", None),
    ("zh", "银行", None),
]


@pytest.mark.parametrize(("language", "text", "expected"), YES_NO)
def test_yes_no(language: str, text: str, expected: str | None) -> None:
    assert extract_slot("yes_no", text, language) == expected


TIME = [
    # English, no clock
    ("en", "tomorrow at 3 pm", "tomorrow 15:00"),
    ("en", "call me monday morning", "monday 09:00"),
    ("en", "tomorrow at three", "tomorrow 15:00"),
    ("en", "tomorrow", "tomorrow"),
    ("en", "the day after tomorrow", "day_after_tomorrow"),
    ("en", "not tomorrow but the day after tomorrow", "day_after_tomorrow"),
    ("en", "tonight", "today 19:00"),
    ("en", "tonight at 8", "today 20:00"),
    ("en", "this afternoon", "today 15:00"),
    ("en", "friday at noon", "friday 12:00"),
    ("en", "wednesday evening", "wednesday 19:00"),
    ("en", "next week", "next_week"),
    ("en", "next tuesday", "tuesday"),
    ("en", "half past three", "15:30"),
    ("en", "half past three in the afternoon", "15:30"),
    ("en", "half past nine", "09:30"),
    ("en", "quarter to four", "15:45"),
    ("en", "3:30 pm", "15:30"),
    ("en", "10:15 a.m.", "10:15"),
    ("en", "at 11", "11:00"),
    ("en", "at two", "14:00"),
    ("en", "at seven in the evening", "19:00"),
    ("en", "at 9 at night", "21:00"),
    ("en", "at 8 in the morning", "08:00"),
    ("en", "three o'clock", "15:00"),
    ("en", "three thirty", "15:30"),
    ("en", "good morning call me tomorrow at 3", "tomorrow 15:00"),
    ("en", "no call me at five", "17:00"),
    ("en", "in an hour", None),  # relative times need `now`
    ("en", "i am 45", None),
    ("en", "whenever", None),
    ("en", "march 5th at 3pm", "15:00"),  # absolute dates need `now`
    # Chinese
    ("zh", "明天下午三点", "tomorrow 15:00"),
    ("zh", "后天上午十点半", "day_after_tomorrow 10:30"),
    ("zh", "今天晚上八点", "today 20:00"),
    ("zh", "今晚", "today 19:00"),
    ("zh", "周一", "monday"),
    ("zh", "星期一", "monday"),
    ("zh", "礼拜一", "monday"),
    ("zh", "星期天下午", "sunday 15:00"),
    ("zh", "下周", "next_week"),
    ("zh", "下周三上午", "wednesday 09:00"),
    ("zh", "两点", "14:00"),
    ("zh", "十点", "10:00"),
    ("zh", "十二点", "12:00"),
    ("zh", "中午", "12:00"),
    ("zh", "中午一点", "13:00"),
    ("zh", "明天三点一刻", "tomorrow 15:15"),
    ("zh", "明天下午两点十分", "tomorrow 14:10"),
    ("zh", "明天 15:30", "tomorrow 15:30"),
    ("zh", "明天", "tomorrow"),
    ("zh", "晚一点再打", None),
    ("zh", "半小时后", None),
    ("zh", "我不知道", None),
]


@pytest.mark.parametrize(("language", "text", "expected"), TIME)
def test_time(language: str, text: str, expected: str | None) -> None:
    assert extract_slot("time", text, language) == expected


TIME_WITH_NOW = [
    ("en", "in an hour", "today 15:20"),
    ("en", "in two hours", "today 16:20"),
    ("en", "in half an hour", "today 14:50"),
    ("en", "in an hour and a half", "today 15:50"),
    ("en", "call me back in 20 minutes", "today 14:40"),
    ("en", "in ten hours", "tomorrow 00:20"),
    ("en", "march 15th at 10 am", "2024-03-15 10:00"),
    ("en", "the fifth of april", "2024-04-05"),
    ("en", "march 1st", "2025-03-01"),
    ("en", "tomorrow at 3 pm", "tomorrow 15:00"),
    ("zh", "半小时后", "today 14:50"),
    ("zh", "一个小时以后", "today 15:20"),
    ("zh", "两个小时之后", "today 16:20"),
    ("zh", "过一个半小时", "today 15:50"),
    ("zh", "十分钟后", "today 14:30"),
    ("zh", "三月十五号下午", "2024-03-15 15:00"),
    ("zh", "20号上午", "2024-03-20 09:00"),
    ("zh", "5号", "2024-04-05"),
    ("zh", "明天下午三点", "tomorrow 15:00"),
]


@pytest.mark.parametrize(("language", "text", "expected"), TIME_WITH_NOW)
def test_time_with_now(language: str, text: str, expected: str) -> None:
    assert extract_slot("time", text, language, now=NOW) == expected


NUMBER = [
    ("en", "twelve hundred", "1200"),
    ("en", "one thousand two hundred eighty", "1280"),
    ("en", "forty two", "42"),
    ("en", "forty-two", "42"),
    ("en", "3", "3"),
    ("en", "about 1,200 dollars", "1200"),
    ("en", "a hundred and five", "105"),
    ("en", "two million three hundred thousand", "2300000"),
    ("en", "zero", "0"),
    ("en", "i'd say fifteen or twenty", "15"),
    ("en", "one two three", "1"),
    ("en", "$50 a month", "50"),
    ("en", "no idea", None),
    ("en", "", None),
    ("zh", "一千二百八十", "1280"),
    ("zh", "两百", "200"),
    ("zh", "十五", "15"),
    ("zh", "三万", "30000"),
    ("zh", "一百零五", "105"),
    ("zh", "一千五", "1500"),
    ("zh", "两万三千", "23000"),
    ("zh", "大概3万吧", "30000"),
    ("zh", "我要25个", "25"),
    ("zh", "我考虑一下", None),
    ("zh", "不知道", None),
]


@pytest.mark.parametrize(("language", "text", "expected"), NUMBER)
def test_number(language: str, text: str, expected: str | None) -> None:
    assert extract_slot("number", text, language) == expected


DIGITS = [
    ("en", "one two three four", "1234"),
    ("en", "my number is five five five oh one two three", "5550123"),
    ("en", "double five 1234", "551234"),
    ("en", "555-1234", "5551234"),
    ("en", "oh well", None),
    ("en", "twenty one twelve", "2112"),
    ("en", "nothing", None),
    ("zh", "一二三四", "1234"),
    ("zh", "幺三八零", "1380"),
    ("zh", "我的号码是一三八 1234", "1381234"),
    ("zh", "两零两四", "2024"),
    ("zh", "没有", None),
]


@pytest.mark.parametrize(("language", "text", "expected"), DIGITS)
def test_digits(language: str, text: str, expected: str | None) -> None:
    assert extract_slot("digits", text, language) == expected


TEXT = [
    ("en", "  Call me, MAYBE! ", "call me maybe"),
    ("en", "...", None),
    ("zh", "我 在 忙。", "我在忙"),
    ("zh", "", None),
]


@pytest.mark.parametrize(("language", "text", "expected"), TEXT)
def test_text(language: str, text: str, expected: str | None) -> None:
    assert extract_slot("text", text, language) == expected


def test_unknown_slot_type_lists_types() -> None:
    with pytest.raises(ValueError, match=r"yes_no.*time.*date.*datetime.*number.*digits.*text"):
        extract_slot("when", "tomorrow", "en")


def test_unknown_language_rejected() -> None:
    with pytest.raises(ValueError, match="fr"):
        extract_slot("text", "bonjour", "fr")


TIME_ALPHABET = st.sampled_from(list("一二两三十百千万点半号月周下午明天 0123456789"))


@settings(max_examples=200, deadline=None)
@given(
    slot_type=st.sampled_from(SLOT_TYPES),
    text=st.text(max_size=40) | st.text(alphabet=TIME_ALPHABET, max_size=20),
    language=st.sampled_from(["en", "zh"]),
)
def test_extract_never_raises(slot_type: str, text: str, language: str) -> None:
    value = extract_slot(slot_type, text, language, now=NOW)
    assert value is None or (isinstance(value, str) and value)
