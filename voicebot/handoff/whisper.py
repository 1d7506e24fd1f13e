"""The whisper: a short spoken summary an agent hears before listening in on a call.

It says who the lead is, the intent level, the tags and what the caller said
last, so the agent takes over with context. The text holds personal data (it
is meant for the agent's ear): it goes to the WAV file, never to logs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from voicebot.audio.wav import write_wav

MAX_SAID = 2  # caller turns quoted
MAX_WORDS = 24  # words quoted per turn

# render(template, values, rate) -> chunks of int16 audio (PromptCache.render_dynamic)
DynamicRenderer = Callable[[str, Mapping[str, str], int], Iterator[np.ndarray]]


def whisper_text(snapshot: Mapping[str, object], language: str = "en") -> str:
    """The summary for ``snapshot`` (``Outcome.summary()`` plus ``variables``)."""
    level = str(snapshot.get("level") or "")
    tags = [str(t).replace("_", " ") for t in _seq(snapshot.get("tags"))]
    said = [_clip(str(t)) for t in _seq(snapshot.get("transcript")) if str(t).strip()][-MAX_SAID:]
    variables = snapshot.get("variables")
    name = str(variables.get("customer_name", "")) if isinstance(variables, Mapping) else ""
    if language == "zh":
        parts = [f"客户{name}" if name else "新客户", f"意向等级{level}" if level else "",
                 "标签：" + "，".join(tags) if tags else "", "客户说：" + "；".join(said) if said else ""]
        return "。".join(p for p in parts if p) + "。"
    parts = [f"Lead: {name}" if name else "New lead", f"level {level}" if level else "",
             "tags: " + ", ".join(tags) if tags else "", "they said: " + "; ".join(said) if said else ""]
    return ". ".join(p for p in parts if p) + "."


def write_whisper(render: DynamicRenderer, text: str, path: Path, rate: int = 8000) -> Path:
    """Synthesize ``text`` at ``rate`` Hz into the WAV ``path`` (folders created); returns ``path``."""
    chunks = [np.asarray(c, dtype=np.int16) for c in render("{{whisper}}", {"whisper": text}, rate)]
    audio = np.concatenate(chunks) if chunks else np.zeros(rate // 10, np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, audio, rate)
    return path


def _seq(value: object) -> Sequence[object]:
    return value if isinstance(value, list | tuple) else ()


def _clip(text: str) -> str:
    words = text.split()
    return " ".join(words[:MAX_WORDS]) + (" …" if len(words) > MAX_WORDS else "")
