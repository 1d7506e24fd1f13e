"""The interruption policy on a fake clock: prompt and caller facts in, decisions out."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from voicebot.dialog.flow import BargeIn, BargeInMode
from voicebot.dialog.interruption import (
    TRANSITIONS,
    Confirm,
    Interruption,
    Pause,
    PolicyError,
    Prompt,
    Resume,
    final_confirms,
    partial_confirms,
)


def heard(policy: BargeIn | None = None, at: float = 0.0, score: float = 0.0) -> Interruption:
    """A policy whose prompt (under ``policy``, default BargeIn()) is heard from ``at``."""
    it = Interruption("en", score=lambda text: score)
    it.play(policy or BargeIn())
    it.prompt_started(at)
    return it


def test_speech_over_the_prompt_pauses_it_after_min_speech_once_per_turn() -> None:
    it = heard(BargeIn(BargeInMode.ON, min_speech_ms=100))
    assert it.speech_started(1.0) == []  # held: the dialog does not hear of it yet
    assert it.voiced(0.08, 1.08) == []
    assert it.voiced(0.10, 1.10) == [Pause(1.10)] and it.prompt is Prompt.PAUSED
    assert it.voiced(0.12, 1.12) == []


def test_barge_in_off_never_pauses_and_tells_the_onset_at_once() -> None:
    it = heard(BargeIn(BargeInMode.OFF))
    assert it.speech_started(1.0) == [Confirm(1.0)]
    assert it.voiced(1.0, 2.0) == []


def test_no_pause_without_a_prompt_heard() -> None:
    it = Interruption()
    assert it.speech_started(1.0) == [Confirm(1.0)] and it.voiced(1.0, 2.0) == []
    it.play(BargeIn())
    assert it.speech_started(3.0) == [] and it.voiced(1.0, 4.0) == [], "queued, not yet heard: nothing to pause"


def test_protected_window_then_pause() -> None:
    it = heard(BargeIn(BargeInMode.PROTECTED, protect_ms=1000, min_speech_ms=100))
    it.speech_started(0.5)
    assert [d for i in range(1, 30) for d in it.voiced(i * 0.02, 0.5 + i * 0.02)] == [Pause(1.0)]


def test_a_pause_and_resume_never_restart_the_protected_window() -> None:
    """Defect 8: a cough pauses at 4.58 s and the prompt resumes; speech at 5.5 s pauses it again at once."""
    it = heard(BargeIn(BargeInMode.PROTECTED, protect_ms=4000, min_speech_ms=80))
    it.speech_started(4.5)
    assert it.voiced(0.08, 4.58) == [Pause(4.58)]
    assert it.final("") == [] and it.turn_over(5.3) == [Resume(5.3)]
    assert it.prompt_since == 0.0 and it.prompt is Prompt.HEARD
    it.speech_started(5.5)
    assert it.voiced(0.08, 5.58) == [Pause(5.58)]


def test_the_next_turn_can_pause_again() -> None:
    it = heard(BargeIn(BargeInMode.ON, min_speech_ms=60))
    it.speech_started(0.0)
    assert it.voiced(0.06, 0.06) == [Pause(0.06)]
    it.final("uh-huh")
    assert it.turn_over(0.8) == [Resume(0.8)]
    it.speech_started(1.0)
    assert it.voiced(0.06, 1.06) == [Pause(1.06)]


def test_a_partial_confirms_with_min_words_key_words() -> None:
    it = heard()  # min_words 2
    it.speech_started(1.0)
    assert it.partial("in the") == ([], False)  # "mm-hmm" misheard: function words
    assert it.partial("uh huh yeah") == ([], False)  # backchannels
    assert it.partial("[unk] number") == ([], False)  # one key word
    assert it.partial("stop calling") == ([Confirm(1.0)], True)  # the held onset is told
    assert it.partial("stop calling me") == ([], True)


def test_min_words_has_one_meaning_key_words() -> None:
    one, three = BargeIn(min_words=1), BargeIn(min_words=3)
    assert partial_confirms(one, "number", "en") and not partial_confirms(one, "uh-huh the", "en")
    assert not partial_confirms(three, "wrong number", "en") and partial_confirms(three, "wrong number again", "en")
    assert partial_confirms(BargeIn(min_words=0), "", "en")
    assert partial_confirms(BargeIn(), "不需要", "zh") and not partial_confirms(BargeIn(), "嗯嗯，对对", "zh")


def test_a_final_over_a_prompt_confirms_if_it_is_a_request() -> None:
    cases = {"number": False, "uh-huh": False, "mhm okay": False, "[unk] not": False, "no": True, "stop": True,
             "wait": True, "wrong number": True, "in the [unk] at": True}
    for text, confirms in cases.items():
        it = heard()
        it.speech_started(1.0)
        assert it.final(text) == ([Confirm(1.0)] if confirms else []), text
        assert it.held is None  # either way the turn is no longer held
        assert final_confirms(BargeIn(), text, "en") is confirms
    whatsapp = heard(score=0.9)
    whatsapp.speech_started(1.0)
    assert whatsapp.final("whatsapp") == [Confirm(1.0)]  # one word that names an intent


def test_a_prompt_that_ends_tells_the_held_onset() -> None:
    it = heard()
    it.speech_started(1.0)
    assert it.prompt_ended(1.2) == [Confirm(1.0)]
    assert it.partial("in") == ([], True)


def test_no_hold_without_a_prompt_or_when_speech_alone_interrupts() -> None:
    it = Interruption()
    assert it.speech_started(1.0) == [Confirm(1.0)]
    it = heard(BargeIn(BargeInMode.ON, min_speech_ms=0, min_words=0))
    assert it.speech_started(2.0) == [Confirm(2.0)]
    assert it.partial("in") == ([], True)


def test_a_stopped_prompt_does_not_resume() -> None:
    it = heard()
    it.speech_started(1.0)
    it.voiced(0.1, 1.1)
    it.partial("stop calling")
    it.prompt_ended(1.3)  # the dialog stopped it
    assert it.turn_over(1.8) == [] and it.prompt is Prompt.NONE


@pytest.mark.parametrize("state", list(Prompt))
def test_events_the_table_does_not_allow_raise(state: Prompt) -> None:
    it = Interruption()
    it.prompt = state
    moves: dict[str, Callable[[], object]] = {"started": lambda: it.prompt_started(1.0), "resume": lambda: it._move("resume"),
             "play": lambda: it.play(BargeIn()), "ended": lambda: it.prompt_ended(1.0)}
    for event, move in moves.items():
        it.prompt = state
        if (state, event) in TRANSITIONS:
            move()
            assert it.prompt is TRANSITIONS[(state, event)]
        else:
            with pytest.raises(PolicyError, match=event):
                move()
