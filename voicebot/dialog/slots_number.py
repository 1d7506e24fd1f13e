"""Numbers and digit strings as people say them, in English (``en``) and Mandarin (``zh``).

Pure functions over text already normalised by :func:`voicebot.dialog.intents.normalize`.

* ``number`` -> the first number said, as a digit string: "fifteen hundred" 1500, "two thousand five
  hundred" 2500, "a hundred and five" 105, 两千五 2500, 一千二百八十 1280.
* ``digits`` -> every digit spelled out, concatenated: "one two three four" 1234, "double five" 55,
  "triple oh" 000, "oh" is zero next to other digits, 一二三四 1234, 幺 is one.
"""

from __future__ import annotations

import re

# --------------------------------------------------------------------------- numbers

_EN_UNITS = {w: i for i, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))}
_EN_TEENS = {w: i + 10 for i, w in enumerate(("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                                              "seventeen", "eighteen", "nineteen"))}
_EN_TENS = {w: (i + 2) * 10 for i, w in enumerate(("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
                                                   "ninety"))}
_EN_SCALES = {"thousand": 1000, "million": 10**6, "billion": 10**9}
EN_ORDINALS = {w: i + 1 for i, w in enumerate((
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth",
    "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth", "nineteenth"))}
EN_ORDINALS |= {"twentieth": 20, "thirtieth": 30}
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
ZH_NUM = "零〇一二两三四五六七八九十"
_ZH_NUMBER_RE = re.compile(f"[{ZH_NUM}\\d][{ZH_NUM}百千万亿\\d]*")
# Words with a numeral character that do not say a number.
_ZH_NUMBER_NOISE = ("一下", "一些", "一直", "一定", "一样", "一起", "一般", "一会", "一点儿",
                    "唯一", "统一", "万一", "一边", "一旦", "一切", "一遍", "有点")
_ZH_DIGIT_CHARS = {**_ZH_DIGITS, **{str(i): i for i in range(10)}}



def blank(text: str, words: tuple[str, ...]) -> str:
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


def en_number_at(tokens: list[str], i: int) -> tuple[int, int] | None:
    """Parse a spelled/digit number starting at ``tokens[i]``: (value, next index)."""
    total = current = 0
    last, j = "", i
    if tokens[i] == "half" and tokens[i + 1:i + 2] in (["a"], ["an"]) and i + 2 < len(tokens):
        kind, value = _en_token_kind(tokens[i + 2])
        if kind in ("hundred", "scale"):
            return value // 2, i + 3  # "half a million"
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


def _en_number(norm: str) -> str | None:
    tokens = _en_tokens(norm)
    for i in range(len(tokens)):
        parsed = en_number_at(tokens, i)
        if parsed is not None:
            return str(parsed[0])
    return None


def zh_number_value(numeral: str) -> int:
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


def _zh_number(norm: str) -> str | None:
    found = _ZH_NUMBER_RE.search(blank(norm, _ZH_NUMBER_NOISE))
    return None if found is None else str(zh_number_value(found.group(0)))


def number_slot(norm: str, language: str) -> str | None:
    """The first number said, as a digit string, or None."""
    return _zh_number(norm) if language == "zh" else _en_number(norm)


# --------------------------------------------------------------------------- digits


def _en_digit_piece(tokens: list[str], i: int) -> tuple[str, int]:
    """Digits said by ``tokens[i]`` (and a following unit after a tens word)."""
    token = tokens[i]
    if token.isdigit() and token.isascii():
        return token, i + 1
    if token in ("oh", "o"):
        near = [tokens[k] for k in (i - 1, i + 1) if 0 <= k < len(tokens)]
        digit_near = any(_en_token_kind(t)[0] in ("unit", "digits") or t in ("oh", "o", "double", "triple")
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


def digits_slot(norm: str, language: str) -> str | None:
    """Every digit said, concatenated, or None."""
    if language == "zh":
        cleaned = blank(norm, _ZH_NUMBER_NOISE)
        found = "".join(str(_ZH_DIGIT_CHARS[c]) for c in cleaned if c in _ZH_DIGIT_CHARS)
    else:
        found = _en_digits(norm)
    return found or None


