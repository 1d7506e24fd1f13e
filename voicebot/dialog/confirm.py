"""Confirming an unsure hearing of an intent that ends or harms the call (sans-I/O helpers of the dialog machine).

A flow marks such intents with ``confirm: "<prompt>"`` (wrong person, not interested, stop calling...). When the
machine matches one of them on an *unsure* hearing (:func:`unsure_hearing`) it says the prompt and listens; the
answer is classed by :func:`confirmed`: only a yes confirms, and a no, anything else or a mix of yes and no denies
(the call goes on: a wrongly kept call costs one question, a wrongly ended one costs the lead).
"""

from __future__ import annotations

from voicebot.asr.base import UNK
from voicebot.dialog.flow import Flow
from voicebot.dialog.intents import IntentMatcher, IntentSpec

YES, NO = "yes", "no"  # the answer classes; the flow's own intents of these names add their phrases

# built-in answers to "did you say ...?", beside the flow's own ``yes``/``no`` intents
_YES_WORDS = {
    "en": ("yes", "yeah", "yep", "yup", "correct", "right", "that's right", "exactly", "i did", "sure", "that's it"),
    "zh": ("是", "是的", "对", "对的", "对啊", "没错", "嗯", "是啊"),
}
_NO_WORDS = {
    "en": ("no", "nope", "wrong", "i didn't", "never said", "that's not what i said"),
    "zh": ("不是", "不对", "没有", "错了", "没说"),
}


def unsure_hearing(flow: Flow, score: float, confidence: float, text: str) -> bool:
    """Whether a match of ``score`` (0..1) on words ``text`` heard with ``confidence`` (0..1) is unsure.

    Unsure: the score or the recogniser's confidence is below the flow's ``confirm_below`` (default 0.9: a keyword
    that covers the whole utterance scores 1.0, a regex 0.9, an example at most 0.85, a keyword among other words
    0.6-0.9), or the words hold one the recogniser could not make out (``[unk]``).
    """
    return score < flow.confirm_below or confidence < flow.confirm_below or UNK in text


def answer_matcher(flow: Flow) -> IntentMatcher:
    """The matcher of answers to a confirmation: built-in yes/no words plus the flow's ``yes``/``no`` intents."""
    specs = []
    for name, words in ((YES, _YES_WORDS), (NO, _NO_WORDS)):
        own = flow.intents.get(name)
        keywords = tuple(dict.fromkeys(words[flow.language] + (own.keywords if own else ())))
        specs.append(IntentSpec(name, keywords, own.regex if own else (), own.examples if own else ()))
    return IntentMatcher(specs, flow.language)


def answer_class(matcher: IntentMatcher, text: str, min_score: float) -> str:
    """``yes``, ``no`` or "" (neither) for an answer; a yes that also says no is ``no``."""
    classes = {m.intent for m in matcher.match(text) if m.score >= min_score}
    if NO in classes:
        return NO
    return YES if YES in classes else ""
