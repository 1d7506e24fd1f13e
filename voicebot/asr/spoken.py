"""Whisper's written English back to the spoken form the rest of the engine hears from the first pass.

Whisper writes "Mr. Dashwood", "10 meters", "3:30 p.m.", "the 15th", "$5"; pocketsphinx and Vosk say "mister
dashwood", "ten meters", "three thirty p m", "the fifteenth", "five dollars". Intents, slots and word error rates
compare words, so :func:`spoken_form` turns the first into the second: lower case, numbers as words, common
abbreviations spelled out, punctuation dropped (apostrophes inside words kept). Text in other scripts (Chinese)
passes through with only its ASCII parts changed.
"""

from __future__ import annotations

import re

ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
                 "twelve": "twelfth"}
ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "st": "saint", "&": "and", "%": "percent",
                 "ok": "okay"}
_TOKEN = re.compile(r"\d{1,2}:\d{2}|\$?\d[\d,]*(?:\.\d+)?(?:st|nd|rd|th|s)?%?|[A-Za-z]+(?:'[A-Za-z]+)*\.?|&|%|[^\sA-Za-z\d]+")
_AMPM = re.compile(r"(?<=\d)\s?([ap])\.?\s?m\b\.?|\b([ap])\.m\.", re.IGNORECASE)  # "3pm", "3 PM", "a.m."


def number_words(n: int) -> str:
    """``n`` (0..999 999 999) in words: 15 → "fifteen", 1200 → "one thousand two hundred"."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_words(n % 100))
    for size, name in ((1_000_000, "million"), (1000, "thousand")):
        if n >= size:
            rest = n % size
            return number_words(n // size) + " " + name + ("" if rest == 0 else " " + number_words(rest))
    raise ValueError(n)


def ordinal_words(n: int) -> str:
    """15 → "fifteenth", 22 → "twenty second"."""
    words = number_words(n).split()
    last = words[-1]
    if last in ORDINAL_WORDS:
        words[-1] = ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _number(token: str) -> str:
    dollars, percent = token.startswith("$"), token.endswith("%")
    core = token.strip("$%").replace(",", "")
    suffix = re.search(r"(st|nd|rd|th|s)$", core)
    digits = core[: suffix.start()] if suffix else core
    whole, _, fraction = digits.partition(".")
    if not whole.isdigit() or int(whole) >= 1_000_000_000:
        return " ".join(ONES[int(d)] for d in digits if d.isdigit())
    value = int(whole)
    if suffix and suffix.group(1) in ("st", "nd", "rd", "th"):
        return ordinal_words(value)
    if len(whole) == 4 and 1100 <= value <= 2099 and value % 100 != 0 and not (dollars or percent or fraction):
        said = number_words(value // 100) + " " + (number_words(value % 100) if value % 100 >= 10 else "oh " + ONES[value % 10])
    else:
        said = number_words(value)
    if fraction:
        said += " point " + " ".join(ONES[int(d)] for d in fraction)
    if suffix and suffix.group(1) == "s":  # the 1990s, 20s
        said = said[:-1] + "ies" if said.endswith("y") else said + "s"
    return said + (" dollars" if dollars else "") + (" percent" if percent else "")


def _time(token: str) -> str:
    hours, minutes = (int(part) for part in token.split(":"))
    if minutes == 0:
        return number_words(hours) + " o'clock"
    return number_words(hours) + " " + (number_words(minutes) if minutes >= 10 else "oh " + ONES[minutes])


def spoken_form(text: str) -> str:
    """``text`` as words said aloud, lower case, without punctuation (see the module docstring)."""
    text = _AMPM.sub(lambda m: f" {(m.group(1) or m.group(2)).lower()} m ", text)
    words: list[str] = []
    for token in _TOKEN.findall(text):
        if ":" in token and token.replace(":", "").isdigit():
            words.append(_time(token))
        elif (token[0].isascii() and token[0].isdigit()) or (token[0] == "$" and len(token) > 1):
            words.append(_number(token))
        elif token[0].isascii() and token[0].isalpha():
            bare = token.rstrip(".").lower()
            words.append(ABBREVIATIONS.get(bare, bare))
        elif token in ABBREVIATIONS:
            words.append(ABBREVIATIONS[token])
        elif not token.isascii():
            words.append(re.sub(r"[\s\u3000-\u303f\uff00-\uff0f\uff1a-\uff20.,!?;:\"'()-]+", " ", token))
    return re.sub(r"\s+", " ", " ".join(words)).strip()
