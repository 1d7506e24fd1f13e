"""Tests for YAML syntax errors in plain words (voicebot.yamlerrors), beyond the bad-flow fixtures."""

from __future__ import annotations

import pytest

from voicebot.yamldoc import read_yaml

CASES = [
    ("a:\n  - x\n  y: 2\n", "3:3", "a key follows a list at the same indentation"),
    ("  a: 1\nb: 2\n", "2:1", "bad indentation: this line does not line up with the first line"),
    ("nodes:\n  greet\n    say: hi\n", "2:3", "'greet' has no ':'"),
    ("a: 1\nb\nc: 2\n", "2:1", "'b' has no ':'"),
    ("a: *foo\n", "1:4", "'*foo' is an alias, but no anchor '&foo' is defined"),
    ("a: @x\n", "1:4", "a value can't start with '@'"),
    ('a: "\\q"\n', "1:5", "unknown escape '\\q' in a double-quoted value"),
    ("a: [1, 2\nb: 3\n", "1:4", "the '[' opened here is not closed"),
    ("a: {x: 1\nb: 3\n", "1:4", "the '{' opened here is not closed"),
    ("a:\n  b: 1\n\tc: 2\n", "3:1", "a tab is used for indentation here; tabs are not allowed in YAML"),
    ("a: 'it''s\n  fine'\nb: [1\nc: 2\n", "3:4", "the '[' opened here is not closed"),
    ('a: "one\n  two"\nb:\n  c: 1\n d: 2\n', "5:2", "bad indentation: this line does not line up with the lines above it"),
]


@pytest.mark.parametrize(("text", "where", "message"), CASES)
def test_syntax_errors_in_plain_words_where_the_fix_belongs(text: str, where: str, message: str) -> None:
    [problem] = read_yaml(text, "f.yaml").problems
    assert (f"{problem.line}:{problem.column}", problem.message) == (where, "invalid YAML: " + message)
    assert "<" not in problem.message and "<" not in problem.hint  # no PyYAML token names


def test_a_text_over_several_lines_closed_in_time_is_not_blamed() -> None:
    text = 'nodes:\n  greet:\n    say: "Hello there,\n      how are you?"\n    next: x\n  other:\n    say: hi\n   hangup: done\n'
    [problem] = read_yaml(text, "f.yaml").problems
    assert problem.line == 8
    assert problem.message == "invalid YAML: bad indentation: this line does not line up with the lines above it"
