"""PyYAML syntax errors in plain words, at the line and column where the fix belongs.

PyYAML says ``expected <block end>, but found '<block mapping start>'``; people need "bad indentation",
"tabs are not allowed", "this quote is never closed" (at the line where the quote opens, not where PyYAML
gave up), "'say hi' has no ':'". :func:`explain` turns a :class:`yaml.MarkedYAMLError` into a position, a
message and a hint; anything it doesn't recognise keeps PyYAML's words with its token names spelled out.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import yaml

__all__ = ["Explained", "explain"]

Pos = tuple[int, int]
Explained = tuple[Pos, str, str]  # where (1-based line, column), message, hint

_TOKENS = {
    "'<block end>'": "the end of an indented block",
    "<block end>": "the end of an indented block",
    "'<block mapping start>'": "a new key",
    "'<block sequence start>'": "a '-' list item",
    "'<scalar>'": "a value",
    "'<document start>'": "the start of the document",
    "'?'": "a key",
}
# a line whose value (after `key: ` or `- `) starts with a quote
_QUOTED_VALUE = re.compile(r"^(\s*(?:-\s+)*(?:[^\s#'\"-][^#'\"]*?:\s+)?)([\"'])")


def explain(exc: yaml.MarkedYAMLError, text: str) -> Explained:
    """``exc`` (from composing ``text``) as a position, a plain message and a hint."""
    lines = text.splitlines() or [""]
    mark = exc.problem_mark or exc.context_mark
    at = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    opened = (exc.context_mark.line + 1, exc.context_mark.column + 1) if exc.context_mark is not None else at
    problem, context = exc.problem or "", exc.context or ""
    for rule in _RULES:
        found = rule(problem, context, at, opened, lines)
        if found is not None:
            return found
    return _plain_words(problem, context, at, opened, lines)


def _line(lines: list[str], number: int) -> str:
    """Line ``number`` (1-based), or "" past the end."""
    return lines[number - 1] if 0 < number <= len(lines) else ""


def _indent(line: str) -> int:
    """How many spaces ``line`` starts with."""
    return len(line) - len(line.lstrip(" "))


def _line_above(lines: list[str], number: int) -> int:
    """The number of the closest line above ``number`` with content (not blank, not a comment); 0 if none."""
    for above in range(number - 1, 0, -1):
        stripped = _line(lines, above).strip()
        if stripped and not stripped.startswith("#"):
            return above
    return 0


def _tab(problem: str, context: str, at: Pos, opened: Pos, lines: list[str]) -> Explained | None:
    """A tab where YAML wants spaces."""
    if "'\\t'" not in problem:
        return None
    before = _line(lines, at[0])[: at[1] - 1]
    if not before.strip(" \t"):
        return at, "a tab is used for indentation here; tabs are not allowed in YAML", "indent with spaces only"
    return at, "a tab separates items here; tabs are not allowed in YAML", "use spaces instead of the tab"


def _unclosed_quote(problem: str, context: str, at: Pos, opened: Pos, lines: list[str]) -> Explained | None:
    """A quote that never closes (PyYAML reports the end of the file) or closes lines later (another error)."""
    if "quoted scalar" in context and "end of stream" in problem:
        quote = _line(lines, opened[0])[opened[1] - 1: opened[1]] or '"'
        return opened, f"this quote ({quote}) is never closed", f"end the value with {quote} on this line"
    if "quoted scalar" in context or "'\\t'" in problem:
        return None
    number = 1
    while number < at[0]:
        match = _QUOTED_VALUE.match(_line(lines, number))
        if match and not _closes(_line(lines, number)[match.end():], match.group(2)):
            quote = match.group(2)
            closing = _closing_line(lines, number, quote)
            if closing >= at[0]:  # the quoted text runs into the error: the quote is the cause
                hint = f"YAML read on to line {at[0]} looking for the closing {quote}: end the value with {quote} on this line"
                return (number, match.end()), f"this quote ({quote}) is not closed on its line", hint
            number = closing  # a text over several lines, closed before the error: look on after it
        number += 1
    return None


def _closing_line(lines: list[str], opened: int, quote: str) -> int:
    """The line after ``opened`` where a quoted text that is not closed on ``opened`` closes (past the end: never)."""
    for number in range(opened + 1, len(lines) + 1):
        if _closes(_line(lines, number), quote):
            return number
    return len(lines) + 1


def _closes(rest: str, quote: str) -> bool:
    """Whether ``rest`` (the text after an opening quote) holds its closing quote."""
    if quote == "'":
        return "'" in rest.replace("''", "")
    return re.search(r'(?<!\\)(?:\\\\)*"', rest) is not None


def _escape(problem: str, context: str, at: Pos, opened: Pos, lines: list[str]) -> Explained | None:
    """A backslash escape that double quotes don't know."""
    match = re.match(r"found unknown escape character '(.*)'", problem)
    if match is None:
        return None
    hint = "write \\\\ for a backslash, or put the value in single quotes"
    return (at[0], max(at[1] - 1, 1)), f"unknown escape '\\{match.group(1)}' in a double-quoted value", hint


def _missing_colon(problem: str, context: str, at: Pos, opened: Pos, lines: list[str]) -> Explained | None:
    """A key without its ':' (PyYAML: "could not find expected ':'")."""
    if "could not find expected ':'" not in problem:
        return None
    return _no_colon_on(lines, opened[0])


def _no_colon_on(lines: list[str], number: int) -> Explained:
    """Line ``number`` lacks the ':' after its key."""
    line = _line(lines, number)
    words = line.strip().split(None, 1)
    example = f"{words[0]}: {words[1]}" if len(words) > 1 else f"{words[0] if words else 'key'}:"
    return (number, _indent(line) + 1), f"'{line.strip()}' has no ':'", f"a key needs a ':' after it: write '{example}'"


def _colon_in_value(problem: str, context: str, at: Pos, opened: Pos, lines: list[str]) -> Explained | None:
    """"mapping values are not allowed here": a ': ' inside a value, a line indented too far, or a missing ':' above."""
    if "mapping values are not allowed" not in problem:
        return None
    line = _line(lines, at[0])
    head = line[: at[1] - 1]
    key = re.match(r"\s*(?:-\s+)?([^\s:#][^:#]*):\s+(\S.*)$", line)
    if key is not None and key.end(1) < len(head):
        hint = f"put the whole value in quotes: {key.group(1)}: \"{key.group(2).strip()}\""
        return at, "this value contains ': ', which YAML reads as the start of another key", hint
    above = _line_above(lines, at[0])
    if above and ":" not in _line(lines, above):
        return _no_colon_on(lines, above)
    if above and _indent(line) > _indent(_line(lines, above)):
        hint = f"indent it like line {above} ({_indent(_line(lines, above))} spaces)"
        return (at[0], _indent(line) + 1), "bad indentation: this line is indented more than the line above it", hint
    return None


def _block_end(problem: str, context: str, at: Pos, opened: Pos, lines: list[str]) -> Explained | None:
    """A line that lines up with no block above it."""
    if not problem.startswith("expected <block end>"):
        return None
    above = _line_above(lines, at[0])
    here, there = _line(lines, at[0]), _line(lines, above)
    if above and _indent(here) == _indent(there) and there.lstrip().startswith("-") and not here.lstrip().startswith("-"):
        hint = "a block is either a list ('-' items) or a mapping (keys): indent the key, or make it a '-' item"
        return (at[0], _indent(here) + 1), "a key follows a list at the same indentation", hint
    hint = ""
    if above:
        hint = (f"line {above} is indented {_indent(_line(lines, above))} spaces, this one {_indent(_line(lines, at[0]))}: "
                "the keys of one mapping (or the '-' items of one list) must line up exactly")
    return (at[0], _indent(_line(lines, at[0])) + 1), "bad indentation: this line does not line up with the lines above it", hint


def _unclosed_bracket(problem: str, context: str, at: Pos, opened: Pos, lines: list[str]) -> Explained | None:
    """A '[' or '{' list/mapping that isn't closed on its line (or lacks a ',')."""
    match = re.match(r"expected ',' or '([\]}])'", problem)
    if match is None:
        return None
    close = match.group(1)
    if at[0] > opened[0]:
        hint = f"end it with '{close}' on this line; YAML read on to line {at[0]} looking for it"
        return opened, f"the '{'[' if close == ']' else '{'}' opened here is not closed", hint
    return at, f"expected ',' or '{close}' here", "separate the items with ', '"


def _other_scanner_errors(problem: str, context: str, at: Pos, opened: Pos, lines: list[str]) -> Explained | None:
    """Undefined aliases, characters that can't start a value, a first line indented, block scalar headers."""
    alias = re.match(r"found undefined alias '(.*)'", problem)
    if alias:
        name = alias.group(1)
        return at, f"'*{name}' is an alias, but no anchor '&{name}' is defined", "to write text starting with '*', quote it"
    char = re.match(r"found character '(.)' that cannot start any token", problem)
    if char:
        return at, f"a value can't start with '{char.group(1)}'", "put the value in quotes"
    if "expected '<document start>'" in problem:
        hint = "start every top-level key at column 1 (line 1 is indented)"
        return at, "bad indentation: this line does not line up with the first line", hint
    if "block scalar" in context:
        hint = "after '|' or '>' only '-', '+' or a digit may follow; start the text on the next line"
        return at, "bad block text header", hint
    return None


def _plain_words(problem: str, context: str, at: Pos, opened: Pos, lines: list[str]) -> Explained:
    """PyYAML's own message, its token names spelled out, with a pointer to where the construct started."""
    message = problem or context
    for token, words in _TOKENS.items():
        message = message.replace(token, words)
    hint = ""
    if context.startswith("while ") and problem and opened != at:
        what = re.sub(r"^while \w+ (a |an )?", "", context)
        hint = f"look at the {what} that starts at line {opened[0]}, column {opened[1]}"
    return at, " ".join(message.split()), hint


_RULES: tuple[Callable[[str, str, Pos, Pos, list[str]], Explained | None], ...] = (
    _tab,
    _unclosed_quote,
    _escape,
    _missing_colon,
    _colon_in_value,
    _unclosed_bracket,
    _block_end,
    _other_scanner_errors,
)
