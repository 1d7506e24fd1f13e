"""What the pocketsphinx decoder may hear: the hint language model's text, the vocabulary behind it, and
pronunciations for hint words the bundled dictionary lacks (see :mod:`voicebot.asr.pocketsphinx_asr`)."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from pocketsphinx.lm import ArpaBoLM

from voicebot.asr.base import UNK, ModelError, Word
from voicebot.dialog.backchannel import BACKCHANNELS

HINT_REPEAT = 3  # each hint phrase counts this many times in the hint LM

_COMMON_WORDS_TEXT = """a about after again all also am an and any are as ask at back be because been but by bye call can
could day did do does done don't down each even first for free from get give go going good got great had has have he
hello help her here hi him his hold how i i'm if in interested into is it it's just know last later let like little
long look ma'am made make man many may maybe me mean minute money more most much must my need never new no not now
number of off oh okay on one only or other our out over people person phone please put really right said same say
second see she should sir so some something sorry speak still such sure take talk tell than thank thanks that that's
the their them then there these they thing think this those through time to today tomorrow too two up us very wait
want was way we week well were what when where which who why will with work would yeah year yes you your"""
COMMON_WORDS = tuple(_COMMON_WORDS_TEXT.split())  # frequent words: what speech outside the hints decodes to

BACKGROUND = """hello|hi|yes|no|okay|sure|i don't know|who is this|who are you|what do you want|i'm busy|i'm driving
can you call me back|call me back tomorrow|i didn't hear you|can you repeat that|sorry what did you say|what|hold on
wait a minute|one second|i need to think about it|let me think|how much does it cost|how did you get my number
take me off your list|i want to talk to a person|can i speak to someone|that's fine|that's right|that's not right
thank you|thanks|goodbye|bye|i already have one|i'm not sure|maybe later|not right now|please"""
# When callers say when to call back (and what off-script speech can decode to instead of a hint).
TIMES = """tomorrow|today|tonight|this evening|in the morning|in the afternoon|in the evening|next week|this week
monday|tuesday|wednesday|thursday|friday|saturday|sunday|the weekend|any time after six|around noon|half past
one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirty|fifteen|o'clock|in an hour|next month
later today"""  # days and hours without "on"/"at": with them "stop calling me" came out as "stop on me"
FILLER_REPEAT = 3  # each backchannel/filler counts this many times in the hint LM, so "mm hmm" is not heard as a hint

# Pronunciations the bundled dictionary lacks or gets wrong (CMU phones); they replace its own at load.
# Other hint words missing from the dictionary are spelled as compounds of its words (:func:`spell`).
EXTRA_PRONUNCIATIONS: dict[str, tuple[str, ...]] = {
    "whatsapp": ("W AA T S AE P", "W AH T S AE P"),  # the dictionary's only entry ends in AA P ("whats-op")
    "wechat": ("W IY CH AE T",),
    "mhm": ("M HH M", "AH M HH AH M", "M HH AH M", "M M"),  # "mm-hmm": the decoder heard "in the" without these
    "mm": ("M", "AH M", "M M"),
    "hmm": ("HH M", "HH AH M", "M HH M"),
}
SPELL_MAX_PARTS = 3  # a compound is spelled from at most this many dictionary words


def _words(text: str) -> list[str]:
    """Lower-case words of ``text``: letters, digits and apostrophes."""
    return re.findall(r"[a-z0-9']+", text.lower())


def load_pronunciations(path: Path) -> dict[str, list[str]]:
    """word -> its pronunciations (phone strings), from a CMU-style dictionary."""
    prons: dict[str, list[str]] = {}
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                word, *phones = line.split() or [""]
                if phones:
                    prons.setdefault(word.split("(")[0], []).append(" ".join(phones))
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"cannot read pronunciation dictionary {path}: {e}") from e
    if not prons:
        raise ModelError(f"pronunciation dictionary {path} is empty; expected lines like 'hello HH AH L OW'")
    return prons


def spell(word: str, prons: Mapping[str, list[str]]) -> list[str]:
    """Pronunciations of ``word`` as a compound of dictionary words ("whatsapp" = whats + app), or [] when it is none.

    Among splits into the fewest parts (each of two letters or more, at most :data:`SPELL_MAX_PARTS`) the one
    with the most phones wins; each part contributes its first two pronunciations.
    """
    for parts in range(2, SPELL_MAX_PARTS + 1):
        splits = [s for s in _splits(word, parts) if all(piece in prons for piece in s)]
        if splits:
            best = max(splits, key=lambda s: sum(len(prons[piece][0].split()) for piece in s))
            found = [""]
            for piece in best:
                found = [f"{so_far} {phones}".strip() for so_far in found for phones in prons[piece][:2]]
            return found[:4]
    return []


def _splits(word: str, parts: int) -> list[tuple[str, ...]]:
    """Every way to cut ``word`` into ``parts`` pieces of two letters or more."""
    if parts == 1:
        return [(word,)] if len(word) >= 2 else []
    return [(word[:i], *rest) for i in range(2, len(word) - 1) for rest in _splits(word[i:], parts - 1)]


def sure_text(words: Sequence[Word], hints: Sequence[str], floor: float) -> str:
    """The words, each below ``floor`` posterior as [unk]; a hint phrase of two words or more found among them is
    judged as one, by its mean posterior ("please stop calling me": "stop" 0.03 beside "calling" 0.99 is kept)."""
    texts = [w.text for w in words]
    sure = [w.confidence >= floor for w in words]
    for phrase in {h for h in hints if " " in h}:
        parts = phrase.split()
        for i in range(len(texts) - len(parts) + 1):
            span = words[i:i + len(parts)]
            if texts[i:i + len(parts)] == parts and sum(w.confidence for w in span) / len(span) >= floor:
                sure[i:i + len(parts)] = [True] * len(parts)
    return " ".join(t if ok else UNK for t, ok in zip(texts, sure, strict=True))


def filler_lines() -> list[str]:
    """The language's backchannels and fillers as hint-LM lines ("uh-huh" -> "uh huh"), each FILLER_REPEAT times."""
    fillers = sorted({" ".join(_words(b)) for b in BACKCHANNELS["en"]})
    return [f for f in fillers if f for _ in range(FILLER_REPEAT)]


def hint_lm_text(phrases: Sequence[str]) -> str:
    """ARPA text of the hint LM: ``phrases`` x HINT_REPEAT, fillers, BACKGROUND, TIMES, COMMON_WORDS as unigrams."""
    lines = [p for p in phrases for _ in range(HINT_REPEAT)] + filler_lines()
    lines += (BACKGROUND + "|" + TIMES).replace("\n", "|").split("|")
    lm = ArpaBoLM(text="\n".join(lines), add_start=True, case="lower")
    for word in COMMON_WORDS:
        lm.grams_1.setdefault(word, 1)
    lm.compute()
    out = io.StringIO()
    lm.write(out)
    return out.getvalue()
