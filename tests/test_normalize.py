"""Text normalization for TTS: table-driven cases in English and Mandarin, plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.tts.normalize import en_cardinal, en_ordinal, en_year, language_family, normalize_text, zh_cardinal

EN_CASES = [
    # integers and decimals
    ("1,280", "one thousand two hundred eighty"),
    ("3.5", "three point five"),
    ("0.25", "zero point two five"),
    ("1,000,000", "one million"),
    ("2005", "two thousand five"),
    ("-5 degrees", "minus five degrees"),
    ("pages 5-10", "pages five to ten"),
    ("version 3.5.6", "version three point five point six"),
    ("order 12345678", "order one two three, four five six, seven eight"),
    ("code 0042", "code zero zero four two"),
    # currency
    ("$1,280", "one thousand two hundred eighty dollars"),
    ("$12.50", "twelve dollars and fifty cents"),
    ("$1", "one dollar"),
    ("$0.50", "fifty cents"),
    ("$1.01", "one dollar and one cent"),
    ("$1.5 million", "one point five million dollars"),
    ("€5", "five euros"),
    ("£5", "five pounds"),
    ("¥1,280", "one thousand two hundred eighty yen"),
    ("1280元", "one thousand two hundred eighty yuan"),
    # percentages and ordinals
    ("4.1%", "four point one percent"),
    ("50% off", "fifty percent off"),
    ("1st", "first"),
    ("22nd", "twenty-second"),
    ("11th", "eleventh"),
    ("103rd", "one hundred third"),
    # dates and years
    ("2026-11-23", "November twenty-third, twenty twenty-six"),
    ("11/23/2026", "November twenty-third, twenty twenty-six"),
    ("November 23, 2026", "November twenty-third, twenty twenty-six"),
    ("23 November 2026", "the twenty-third of November, twenty twenty-six"),
    ("Nov. 5th", "November fifth"),
    ("in 2026", "in twenty twenty-six"),
    ("the 1990s", "the nineteen nineties"),
    # times: AM/PM as espeak says them; 24-hour times said the US way
    ("3:30 pm", "three thirty PM"),
    ("3:30pm", "three thirty PM"),
    ("Meet at 3 p.m. Then go.", "Meet at three PM. Then go."),
    ("15:00", "three PM"),
    ("15:30", "three thirty PM"),
    ("09:05", "nine oh five AM"),
    ("00:30", "twelve thirty AM"),
    ("3:00", "three o'clock"),
    ("call me at 2:30", "call me at two thirty"),
    # phone numbers
    ("+1 415-555-0100", "plus one, four one five, five five five, zero one zero zero"),
    ("555-0100", "five five five, zero one zero zero"),
    ("(415) 555-0100", "four one five, five five five, zero one zero zero"),
    # abbreviations and symbols
    ("Mr. Smith & Dr. Jones", "Mister Smith and Doctor Jones"),
    ("Mrs. Lee", "Missus Lee"),
    ("St. Louis", "Saint Louis"),
    ("123 Main St.", "one hundred twenty-three Main Street."),
    ("I live on Sunset Blvd. now", "I live on Sunset Boulevard now"),
    ("e.g. apples, etc.", "for example apples, et cetera."),
    ("No. 7", "number seven"),
    ("#3", "number three"),
    ("It's 72°F", "It's seventy-two degrees Fahrenheit"),
    ("rock & roll", "rock and roll"),
    ("  spaced   out  ", "spaced out"),
]

ZH_CASES = [
    ("¥1,280", "一千二百八十元"),
    ("1280元", "一千二百八十元"),
    ("¥12.50", "十二元五角"),
    ("¥0.05", "五分"),
    ("$5", "五美元"),
    ("1,280", "一千二百八十"),
    ("10", "十"),
    ("15", "十五"),
    ("110", "一百一十"),
    ("1005", "一千零五"),
    ("10010", "一万零一十"),
    ("150000", "十五万"),
    ("2026-11-23", "二零二六年十一月二十三日"),
    ("2026年11月23日", "二零二六年十一月二十三日"),
    ("15:30", "十五点三十分"),
    ("15:00", "十五点"),
    ("2:05", "两点零五分"),
    ("4.1%", "百分之四点一"),
    ("13800138000", "幺三八零零幺三八零零零"),
    ("3.5", "三点五"),
    ("-5", "负五"),
    ("2个", "两个"),
    ("2人", "两人"),
    ("12个", "十二个"),
    ("第2个", "第二个"),
    ("2月", "二月"),
    ("3-5个", "三到五个"),
    ("您的余额是¥1,280。", "您的余额是一千二百八十元。"),
    ("１２３", "一百二十三"),
]


@pytest.mark.parametrize(("text", "said"), EN_CASES)
def test_english(text: str, said: str) -> None:
    assert normalize_text(text, "en") == said


@pytest.mark.parametrize(("text", "said"), ZH_CASES)
def test_mandarin(text: str, said: str) -> None:
    assert normalize_text(text, "zh") == said


def test_language_codes() -> None:
    assert normalize_text("5", "en_US") == "five"
    assert normalize_text("5", "zh-CN") == "五"
    assert normalize_text("5", "cmn") == "五"
    assert normalize_text("  5  apples ", "de") == "5 apples"  # other languages: whitespace only
    assert [language_family(x) for x in ("en-us", "zh_CN", "yue", "fr_FR")] == ["en", "zh", "zh", "fr"]


def test_newlines_survive() -> None:
    """Paragraph breaks are sentence boundaries for the stream; normalization keeps them."""
    assert normalize_text("Hi  there \n  5 more", "en") == "Hi there\nfive more"


@pytest.mark.parametrize(("n", "words"), [
    (0, "zero"), (19, "nineteen"), (40, "forty"), (101, "one hundred one"), (2_000_001, "two million one"),
    (999_999, "nine hundred ninety-nine thousand nine hundred ninety-nine")])
def test_en_cardinal(n: int, words: str) -> None:
    assert en_cardinal(n) == words


def test_en_ordinal_and_year() -> None:
    assert [en_ordinal(n) for n in (2, 3, 5, 8, 9, 12, 20, 21, 100)] == [
        "second", "third", "fifth", "eighth", "ninth", "twelfth", "twentieth", "twenty-first", "one hundredth"]
    assert [en_year(y) for y in (1999, 1905, 1900, 2000, 2010, 2026)] == [
        "nineteen ninety-nine", "nineteen oh five", "nineteen hundred", "two thousand", "twenty ten", "twenty twenty-six"]


def test_zh_cardinal_large() -> None:
    assert zh_cardinal(100_000_000) == "一亿"
    assert zh_cardinal(100_010_000) == "一亿零一万"
    assert zh_cardinal(20_000_005) == "二千万零五"


_ASCII = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=60)
_NUMBERY = st.lists(st.sampled_from(["1", "2", "0", "12", "2026", "1,280", "3.5", ".", ",", "-", ":", "/", "%", "$", "+",
                                     " ", "st", "pm", "a.m.", "Mr.", "Dr.", "St.", "No.", "#", "&", "(", ")", "Nov", "x",
                                     "in ", "s", "\n", "etc."]), max_size=14).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(_ASCII, _NUMBERY), language=st.sampled_from(["en", "zh"]))
def test_idempotent_on_ascii(text: str, language: str) -> None:
    once = normalize_text(text, language)
    assert normalize_text(once, language) == once


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80), language=st.sampled_from(["en", "zh", "fr"]))
def test_never_raises(text: str, language: str) -> None:
    assert isinstance(normalize_text(text, language), str)


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(_ASCII, _NUMBERY), language=st.sampled_from(["en", "zh"]))
def test_no_digits_left(text: str, language: str) -> None:
    assert not any("0" <= c <= "9" for c in normalize_text(text, language))
