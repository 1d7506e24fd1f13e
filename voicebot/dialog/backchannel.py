"""Backchannels, fillers and trailing words: what listeners say without taking the turn, and how a turn trails off.

"uh-huh", "mm-hmm", "right", 嗯, 对对: said over the bot's prompt, these must not
interrupt it. They count as zero words for the barge-in policy's ``min_words``,
and so do words the recogniser marks as unrecognised (``[unk]``); a partial
transcript needs key words (:func:`key_words`: function words do not count). A partial
transcript ending in a filler or conjunction ("and", "but", "um", 然后) means the
caller has not finished: the end of turn waits longer (:func:`ends_open`).
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
# Function words: they carry no request of their own, so a partial of them does not confirm an interruption
# ("in the" is a recogniser's guess at "mm-hmm"). Negations, question words, "yes"/"no", "stop", "wait" are not here.
FUNCTION_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset({
        "a", "an", "the", "in", "on", "at", "to", "of", "for", "with", "by", "from", "up", "and", "or", "but", "so",
        "i", "me", "my", "him", "his", "her", "them", "it", "its", "we", "us", "our", "they", "he", "she", "you",
        "your", "i'm", "it's", "that's", "is", "am", "are", "was", "were", "be", "been", "this", "that", "these",
        "those", "there", "then", "than", "would", "will", "can", "could", "do", "did", "does", "have", "had", "has",
    }),
    "zh": frozenset({"的", "了", "吗", "呢", "吧", "呀", "啦", "嘛", "我", "你", "他", "她", "它", "这", "那"}),
}
# Words after which a caller is not done: conjunctions, fillers, articles, prepositions, "my number is", "wait, ...".
TRAILING: dict[str, frozenset[str]] = {
    "en": frozenset({
        "and", "but", "or", "so", "because", "cause", "um", "umm", "uh", "er", "erm", "the", "a", "an", "to", "of",
        "for", "with", "if", "my", "your", "our", "is", "was", "i'm", "i", "like", "at", "about", "wait", "well",
        "actually",
    }),
    "zh": frozenset({"然后", "但是", "可是", "而且", "还有", "因为", "所以", "就是", "那个", "这个", "嗯", "呃", "额",
                     "的话", "和", "跟"}),
}
# One word that interrupts a prompt on its own, though it may name no intent of the flow.
INTERRUPTIONS: dict[str, frozenset[str]] = {
    "en": frozenset({"no", "nope", "yes", "stop", "wait", "hold", "hello", "hey", "sorry", "pardon", "what", "excuse",
                     "hang", "nah", "never", "who", "why", "how", "agent", "operator", "human", "person"}),
    "zh": frozenset({"不", "停", "等", "喂", "啥", "谁", "什", "么", "没", "别", "人"}),
}
UNKNOWN = re.compile(r"\[[^\]]*\]|<[^>]*>")  # "[unk]", "<unk>": a word the recogniser could not make out
_EN_TOKEN = re.compile(r"[a-z]+(?:[-'][a-z]+)*")


def content_words(text: str, language: str) -> list[str]:
    """Words of ``text`` that are not backchannels, fillers or unrecognised. Chinese: one entry per character outside them."""
    channel = BACKCHANNELS.get(language, frozenset())
    text = UNKNOWN.sub(" ", text)
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


def key_words(text: str, language: str) -> list[str]:
    """:func:`content_words` without function words: what a partial must hold to stop the bot ("in the" does not)."""
    function = FUNCTION_WORDS.get(language, frozenset())
    return [w for w in content_words(text, language) if w not in function]


def interrupts(words: list[str], language: str) -> bool:
    """True when one of ``words`` (key words, see :func:`key_words`) interrupts a prompt on its own."""
    return any(w in INTERRUPTIONS.get(language, frozenset()) for w in words)


def word_count(text: str, language: str) -> int:
    """All recognised words of ``text`` (backchannels included, ``[unk]`` not); Chinese counts two characters a word."""
    text = UNKNOWN.sub(" ", text)
    if language == "zh":
        return (sum(ch.isalnum() for ch in text) + 1) // 2
    return len(_EN_TOKEN.findall(text.lower()))


def ends_open(text: str, language: str) -> bool:
    """True when ``text`` ends in a filler or conjunction: the speaker is probably not done."""
    trailing = TRAILING.get(language, frozenset())
    text = UNKNOWN.sub(" ", text).strip().lower()
    if language == "zh":
        chars = "".join(ch for ch in text if ch.isalnum())
        return any(chars.endswith(word) for word in trailing)
    words = _EN_TOKEN.findall(text)
    return bool(words) and words[-1] in trailing


def _zh_content(text: str, channel: frozenset[str]) -> list[str]:
    chars = "".join(ch for ch in text if ch.isalnum())
    for phrase in sorted(channel, key=len, reverse=True):
        chars = chars.replace(phrase, "")
    return list(chars)
