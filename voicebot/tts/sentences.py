"""Text split into sentences for synthesis: one Piper run per sentence, long clauses cut at commas."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt

from voicebot.tts.normalize import normalize_text

LONG_CLAUSE_WORDS = 20  # en: sentences longer than this are split at commas
LONG_CLAUSE_CHARS = 30  # zh: the same, in characters, at ，

_EN_ABBREVIATIONS = re.compile(r"\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|vs|etc|e\.g|i\.e|No)\.$", re.IGNORECASE)

Int16Array = npt.NDArray[np.int16]


def split_sentences(text: str, language: str = "en") -> list[str]:
    """Sentences of ``text``: en at . ! ? ; (zh at 。！？；) and line breaks; long ones split at commas."""
    zh = language.lower().startswith(("zh", "cmn", "yue"))
    pieces: list[str] = []
    for line in text.splitlines():
        pattern = r"(?<=[。！？；!?;])" if zh else r"(?<=[.!?;])\s+"
        sentences = _rejoin_abbreviations([s for s in re.split(pattern, line) if s.strip()], zh)
        for sentence in sentences:
            pieces.extend(_split_long(sentence.strip(), zh))
    return pieces


def _rejoin_abbreviations(parts: list[str], zh: bool) -> list[str]:
    """Undo splits after "Mr." and friends (text that skipped normalization)."""
    if zh:
        return parts
    out: list[str] = []
    for part in parts:
        if out and _EN_ABBREVIATIONS.search(out[-1]):
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out


def _size(text: str, zh: bool) -> int:
    return len(re.sub(r"\s", "", text)) if zh else len(text.split())


def _split_long(sentence: str, zh: bool) -> list[str]:
    """A long sentence as clauses cut at commas, merged back while they stay short."""
    limit = LONG_CLAUSE_CHARS if zh else LONG_CLAUSE_WORDS
    if _size(sentence, zh) <= limit:
        return [sentence]
    clauses = re.split(r"(?<=[，,、])" if zh else r"(?<=,)\s+", sentence)
    out: list[str] = []
    for clause in (c.strip() for c in clauses if c.strip()):
        joined = f"{out[-1]}{'' if zh else ' '}{clause}" if out else clause
        if out and _size(joined, zh) <= limit:
            out[-1] = joined
        else:
            out.append(clause)
    return out


def sentence_audio(text: str, language: str, synthesize_sentence: Callable[[str], Int16Array], *,
                   normalize: bool = True) -> Iterator[Int16Array]:
    """A voice's ``synthesize``: ``text`` (numbers spelled out first when ``normalize``) cut into sentences, each
    said by ``synthesize_sentence``; empty takes are skipped."""
    said = normalize_text(text, language) if normalize else text
    for sentence in split_sentences(said, language):
        audio = synthesize_sentence(sentence)
        if len(audio):
            yield audio
