"""Backchannels: what listeners say to show they are listening, not to take the turn.

"uh-huh", "mm-hmm", "right", 嗯, 对对: said over the bot's prompt, these must not
interrupt it. They count as zero words for the barge-in policy's ``min_words``.
"""

from __future__ import annotations

import re

BACKCHANNELS: dict[str, frozenset[str]] = {
    "en": frozenset({
        "uh-huh", "uh huh", "uhhuh", "mm-hmm", "mm hmm", "mhm", "mmhmm", "hmm", "mm", "um", "umm", "uh", "ah", "oh",
        "ok", "okay", "yeah", "yep", "right", "i see", "sure", "alright", "all right", "got it", "cool",
    }),
    "zh": frozenset({
        "嗯", "嗯嗯", "嗯哼", "哦", "噢", "喔", "啊", "呃", "额",
        "对", "对对", "对对对", "好", "好好", "是", "是是", "行", "明白",
    }),
}
_EN_TOKEN = re.compile(r"[a-z]+(?:[-'][a-z]+)*")


def content_words(text: str, language: str) -> list[str]:
    """Words of ``text`` that are not backchannels or fillers. Chinese: one entry per character outside them."""
    channel = BACKCHANNELS.get(language, frozenset())
    if language == "zh":
        return _zh_content(text, channel)
    words = _EN_TOKEN.findall(text.lower())
    out, i = [], 0
    while i < len(words):
        if i + 1 < len(words) and f"{words[i]} {words[i + 1]}" in channel:
            i += 2
        elif words[i] in channel:
            i += 1
        else:
            out.append(words[i])
            i += 1
    return out


def _zh_content(text: str, channel: frozenset[str]) -> list[str]:
    chars = "".join(ch for ch in text if ch.isalnum())
    for phrase in sorted(channel, key=len, reverse=True):
        chars = chars.replace(phrase, "")
    return list(chars)
