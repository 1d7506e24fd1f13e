"""The interruption policy: the one place that decides what caller speech over the bot's prompt does. Sans-I/O.

Rules (the whole contract; times are the events' own time stamps in s, ``now`` is injected):

1. **Interruptible.** A prompt can be interrupted only when its node listens and its barge-in ``mode`` is ``on``,
   or ``protected`` and ``protect_ms`` have passed since the prompt's first audio was sent. The protected window is
   measured from that real start: a pause and resume never shortens or restarts it. ``off``: never.
2. **Pause.** Caller speech that has lasted ``min_speech_ms`` over an interruptible prompt that is being heard
   pauses it at once (at most once per caller turn), so the caller is heard; nothing is decided yet.
3. **min_words** has one meaning: how many *key words* the caller's words must hold to be an interruption. Key
   words carry meaning: backchannels ("uh-huh", "right", 嗯), fillers, function words ("the", "in") and words the
   recogniser could not make out do not count; Chinese counts characters. ``0``: speech alone is an interruption.
4. **Confirm.** Over a prompt (queued, heard or paused) with ``min_words`` >= 1 the turn's onset is *held*: the
   dialog hears of the speech (and may stop the prompt) only once a partial holds ``min_words`` key words, or once
   the final is a request: ``min_words`` key words, more than ``min_words`` words that are not backchannels (a
   longer sentence the recogniser made out only as small words), or one key word that names one of the flow's
   intents (score >= :data:`CONFIRM_INTENT_SCORE`) or interrupts on its own ("no", "stop", "wait"). Without a
   prompt, or with ``min_words`` 0, the onset is told at once. Partials of a held turn are not forwarded.
5. **Decline and resume.** A turn over the prompt that ends unconfirmed (a backchannel, a cough, noise) is
   declined: the dialog ignores it and a prompt this policy paused resumes where it stopped.
6. **Prompt over.** When the prompt ends while an onset is held, the onset is told then: the caller's turn is
   an answer, no longer an interruption.

The prompt's state follows :data:`TRANSITIONS`; an event the table does not allow raises :class:`PolicyError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from voicebot.dialog.backchannel import content_words, interrupts, key_words
from voicebot.dialog.flow import BargeIn, BargeInMode

CONFIRM_INTENT_SCORE = 0.6  # one key word over a prompt confirms an interruption when it names an intent this well


class PolicyError(RuntimeError):
    """An event the interruption policy's transition table does not allow (a driver bug)."""


class Prompt(StrEnum):
    """The bot's prompt as the policy sees it."""

    NONE = "none"  # nothing to say
    QUEUED = "queued"  # a Play was issued; its first audio is not out yet
    HEARD = "heard"  # its audio is being sent
    PAUSED = "paused"  # this policy paused it (caller speech)


# (state, event) -> next state. Events: play, started, pause, resume, ended.
TRANSITIONS: dict[tuple[Prompt, str], Prompt] = {
    (Prompt.NONE, "play"): Prompt.QUEUED,
    (Prompt.QUEUED, "play"): Prompt.QUEUED,  # a new prompt replaces one not yet heard
    (Prompt.QUEUED, "started"): Prompt.HEARD,
    (Prompt.HEARD, "pause"): Prompt.PAUSED,
    (Prompt.PAUSED, "resume"): Prompt.HEARD,
    (Prompt.NONE, "ended"): Prompt.NONE,  # a stop of a prompt already over
    (Prompt.QUEUED, "ended"): Prompt.NONE,
    (Prompt.HEARD, "ended"): Prompt.NONE,
    (Prompt.PAUSED, "ended"): Prompt.NONE,
}


# ------------------------------------------------------------------ decisions


@dataclass(frozen=True)
class Pause:
    """Stop sending the prompt's audio now (keep its place)."""

    at: float


@dataclass(frozen=True)
class Resume:
    """Send the paused prompt's audio again from where it stopped."""

    at: float


@dataclass(frozen=True)
class Confirm:
    """Tell the dialog that the caller started speaking at ``onset`` (it may now stop the prompt)."""

    onset: float


Decision = Pause | Resume | Confirm


# ---------------------------------------------------------------- the rules


def interruptible(policy: BargeIn, prompt_started: float | None, now: float) -> bool:
    """Rule 1: may caller speech interrupt a prompt first heard at ``prompt_started`` (None: not yet) at ``now``?"""
    if policy.mode is BargeInMode.OFF:
        return False
    if policy.mode is BargeInMode.PROTECTED:
        return prompt_started is not None and now - prompt_started >= policy.protect_ms / 1000 - 1e-9
    return True


def partial_confirms(policy: BargeIn, text: str, language: str) -> bool:
    """Rule 4: does a partial transcript over the prompt make the caller's speech an interruption?"""
    return len(key_words(text, language)) >= policy.min_words


def final_confirms(policy: BargeIn, text: str, language: str, score: Callable[[str], float] | None = None) -> bool:
    """Rule 4: is a final transcript over the prompt a request (``score``: the best intent score of a text)?"""
    if policy.min_words <= 0:
        return True
    words = key_words(text, language)
    if len(words) >= policy.min_words or len(content_words(text, language)) > policy.min_words:
        return True
    names_intent = bool(words and score is not None and score(text) >= CONFIRM_INTENT_SCORE)
    return names_intent or interrupts(words, language)


# ----------------------------------------------------------------- the policy


class Interruption:
    """One call's interruption policy: prompt and caller-turn facts in, :data:`Decision` values out."""

    def __init__(self, language: str = "en", score: Callable[[str], float] | None = None) -> None:
        self.language = language
        self.score = score
        self.policy = BargeIn(BargeInMode.OFF)
        self.prompt = Prompt.NONE
        self.prompt_since: float | None = None  # the current prompt's first audio (never moved by a pause)
        self.held: float | None = None  # onset of a caller turn the dialog has not been told of
        self._paused_this_turn = False

    # ------------------------------------------------------------ the prompt

    def play(self, policy: BargeIn) -> None:
        """A prompt was issued under ``policy`` (OFF for nodes that do not listen)."""
        self._move("play")
        self.policy, self.prompt_since = policy, None

    def listen(self, policy: BargeIn) -> None:
        """The node listens under ``policy`` (from the dialog's Listen)."""
        self.policy = policy

    def prompt_started(self, at: float) -> None:
        """The prompt's first audio was sent at ``at``: its protected window starts now."""
        self._move("started")
        self.prompt_since = at

    def prompt_ended(self, at: float) -> list[Decision]:
        """The prompt finished or was stopped at ``at``; a held onset is told now (rule 6)."""
        self._move("ended")
        self.prompt_since = None
        return [Confirm(onset)] if (onset := self._release()) is not None else []

    @property
    def prompt_on(self) -> bool:
        """A prompt is queued, heard or paused."""
        return self.prompt is not Prompt.NONE

    # ------------------------------------------------------------ the caller

    def speech_started(self, at: float) -> list[Decision]:
        """A caller turn started at ``at``: told at once, or held until its words confirm it (rule 4)."""
        self._paused_this_turn = False
        if self.prompt_on and self.policy.mode is not BargeInMode.OFF and self.policy.min_words > 0:
            self.held = at
            return []
        self.held = None
        return [Confirm(at)]

    def voiced(self, voiced_for_s: float, now: float) -> list[Decision]:
        """The caller's current turn has lasted ``voiced_for_s`` at ``now`` (0: silent): pause the prompt? (rule 2)."""
        if self.prompt is not Prompt.HEARD or self._paused_this_turn or voiced_for_s <= 0:
            return []
        if not interruptible(self.policy, self.prompt_since, now):
            return []
        if voiced_for_s < self.policy.min_speech_ms / 1000 - 1e-9:
            return []
        self._move("pause")
        self._paused_this_turn = True
        return [Pause(now)]

    def partial(self, text: str) -> tuple[list[Decision], bool]:
        """A partial of the current turn: (decisions, whether the dialog should get this partial)."""
        if self.held is None:
            return [], True
        if self.prompt_on and not partial_confirms(self.policy, text, self.language):
            return [], False
        return [Confirm(self._release_held())], True

    def final(self, text: str) -> list[Decision]:
        """The turn's final transcript, before the dialog gets it: confirm a held onset if it is a request."""
        onset = self._release()
        if onset is None or not final_confirms(self.policy, text, self.language, self.score):
            return []
        return [Confirm(onset)]

    def turn_over(self, at: float) -> list[Decision]:
        """The dialog has acted on the final: a prompt still paused was not taken from the caller, so resume it."""
        self._paused_this_turn = False
        if self.prompt is not Prompt.PAUSED:
            return []
        self._move("resume")
        return [Resume(at)]

    # ------------------------------------------------------------- internals

    def _move(self, event: str) -> None:
        state = TRANSITIONS.get((self.prompt, event))
        if state is None:
            raise PolicyError(f"interruption policy: {event!r} is not allowed while the prompt is {self.prompt.value}")
        self.prompt = state

    def _release(self) -> float | None:
        onset, self.held = self.held, None
        return onset

    def _release_held(self) -> float:
        onset = self._release()
        assert onset is not None
        return onset
