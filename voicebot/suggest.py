"""Spelling hints for people's mistakes in configuration: ``did you mean 'x'?``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"did you mean 'x'?"`` for the closest choice (case-insensitive first), or ``""``."""
    options = [c for c in choices if c != word]
    folded = [c for c in options if c.lower() == word.lower()]
    close = folded or difflib.get_close_matches(word, options, n=1)
    return f"did you mean '{close[0]}'?" if close else ""
