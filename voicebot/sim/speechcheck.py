"""What the caller hears of the bot: every prompt a simulated call played, heard by Whisper over the phone line.

``voicebot simulate --check-speech`` renders each prompt the call asked for again (from the same prompt cache:
the audio is what the call played), sends it through the telephone channel the engine's callers hear (8 kHz
G.711 µ-law, 300-3400 Hz: :func:`~voicebot.audio.telephone.telephone_channel`), and decodes it with the
accurate pass's Whisper model (base by default) without hints, so nothing tells it what to expect. Errors are
counted in characters for Mandarin (CER: Chinese has no spaces; Whisper's traditional characters are made
simplified, its digits spelled in Chinese) and in words otherwise (WER, both sides in spoken form).

The figure says whether the bot's voice is intelligible on a phone; it is the bot's own voice, so it says
nothing about how well the engine hears callers (bench/hearing_eval.py does that, on other voices).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from voicebot.asr.spoken import spoken_form
from voicebot.asr.whisper import WhisperRecogniser, simplified
from voicebot.audio.telephone import PHONE_RATE, telephone_channel
from voicebot.dialog import events as ev
from voicebot.player import Chunk

Speak = Callable[[ev.Play, dict[str, str]], Chunk]  # a prompt and its values -> the audio the call played
_NOT_SAID = re.compile(r"[^\u4e00-\u9fff0-9a-z]")


def units(text: str, language: str) -> list[str]:
    """What errors are counted in: Chinese characters (zh; digits spelled in Chinese), else spoken-form words."""
    if language == "zh":
        import cn2an  # with misaki[zh]

        return list(_NOT_SAID.sub("", cn2an.transform(simplified(text), "an2cn").lower()))
    return spoken_form(text).split()


def edits(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance (substitutions, insertions and deletions of units)."""
    row = list(range(len(hypothesis) + 1))
    for i, unit in enumerate(reference, 1):
        prev, row[0] = row[0], i
        for j, other in enumerate(hypothesis, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (unit != other))
    return row[len(hypothesis)]


def errors(reference: str, heard: str, language: str) -> tuple[int, int]:
    """(unit errors, reference units) of ``heard`` against ``reference``."""
    ref, hyp = units(reference, language), units(heard, language)
    return edits(ref, hyp), len(ref)


def hear_prompts(spoken: Sequence[tuple[ev.Play, dict[str, str]]], speak: Speak, rate: int, language: str,
                 recogniser: WhisperRecogniser) -> dict[str, Any]:
    """Each distinct prompt of ``spoken`` (audio at ``rate`` Hz from ``speak``) heard over the phone line: the
    report ``timeline.json`` keeps as ``speech`` (per prompt: text, heard, errors, units; totals and the rate)."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for play, values in spoken:
        if not play.text.strip() or play.text in seen:
            continue
        seen.add(play.text)
        audio = np.asarray(speak(play, values), dtype=np.int16)
        heard = recogniser.transcribe(telephone_channel(audio, rate, "PCMU"), PHONE_RATE, (), language, prompt=False)
        wrong, total = errors(play.text, heard.text, language)
        rows.append({"node": play.node, "text": play.text, "heard": heard.text, "errors": wrong, "units": total})
    wrong, total = sum(r["errors"] for r in rows), sum(r["units"] for r in rows)
    return {"model": recogniser.name, "channel": "8 kHz PCMU", "unit": "characters" if language == "zh" else "words",
            "errors": wrong, "units": total, "error_rate": round(wrong / total, 4) if total else None, "prompts": rows}


def speech_lines(report: dict[str, Any]) -> list[str]:
    """The report for transcript.txt: the total, then each prompt that was misheard."""
    if not report.get("units"):
        return []
    name = "CER" if report["unit"] == "characters" else "WER"
    lines = [f"bot speech heard by {report['model']} over {report['channel']}: {name} "
             f"{100 * report['error_rate']:.1f} % ({report['errors']}/{report['units']} {report['unit']}, "
             f"{len(report['prompts'])} prompts)"]
    lines += [f"    {row['errors']:>3}/{row['units']:<3} {row['text']}  ->  {row['heard']}"
              for row in report["prompts"] if row["errors"]]
    return lines
