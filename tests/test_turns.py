"""Turn-taking strategies on a fake clock: frames in, turn events out."""

from __future__ import annotations

from dataclasses import replace

from voicebot.asr.turns import (
    EchoGate,
    Endpointer,
    PauseBot,
    SpeechEnd,
    SpeechStart,
    TurnEvent,
    TurnSettings,
    TurnTaker,
)
from voicebot.dialog.backchannel import content_words
from voicebot.dialog.flow import BargeIn, BargeInMode

F = 0.02  # 20 ms frames


def feed(taker: TurnTaker, pattern: str, start: float = 0.0, level: float = -20.0) -> list[tuple[int, TurnEvent]]:
    """Feed one frame per character: 'x' voiced, '.' silent. Returns (frame index, event)."""
    out = []
    for i, ch in enumerate(pattern):
        for event in taker.caller_frame(1.0 if ch == "x" else 0.0, level if ch == "x" else -70.0, start + i * F, F):
            out.append((i, replace(event, at=round(event.at, 6))))
    return out


def test_speech_start_is_back_dated_to_first_voiced_frame() -> None:
    events = feed(TurnTaker(), "..xxxxx")
    assert events[0] == (4, SpeechStart(0.04))  # declared after 3 frames (60 ms), dated at frame 2


def test_short_click_is_not_speech() -> None:
    assert feed(TurnTaker(), "..xx..x..x.") == []


def test_end_of_turn_after_end_silence_dated_at_last_voiced_frame() -> None:
    taker = TurnTaker(TurnSettings(end_silence_ms=200))
    events = feed(taker, "xxxxxx" + "." * 12)
    assert events[-1] == (15, SpeechEnd(0.12, "silence"))  # 10 silent frames = 200 ms after the last voiced one


def test_pause_inside_speech_shorter_than_end_silence_keeps_the_turn() -> None:
    taker = TurnTaker(TurnSettings(end_silence_ms=200))
    events = feed(taker, "xxxx" + "." * 8 + "xxxx" + "." * 10)
    assert [type(e) for _, e in events] == [SpeechStart, SpeechEnd]


def test_max_speech_cuts_an_endless_turn() -> None:
    taker = TurnTaker()
    taker.listen(end_silence_ms=700, max_speech_ms=400, barge_in=BargeIn())
    events = feed(taker, "x" * 40)
    assert events[1][1] == SpeechEnd(0.4, "max_speech")


def test_early_end_when_partial_matches_an_intent() -> None:
    taker = TurnTaker(TurnSettings(end_silence_ms=700, early_end_silence_ms=200),
                      intent_score=lambda text: 0.95 if "yes" in text else 0.2)
    feed(taker, "xxxxx")
    taker.partial("yes")
    events = feed(taker, "." * 12, start=0.1)
    assert events[0] == (9, SpeechEnd(0.1, "early"))


def test_no_early_end_for_a_weak_partial() -> None:
    taker = TurnTaker(TurnSettings(end_silence_ms=700, early_end_silence_ms=200), intent_score=lambda text: 0.3)
    feed(taker, "xxxxx")
    taker.partial("the weather")
    assert feed(taker, "." * 20, start=0.1) == []


def test_barge_in_pauses_bot_after_min_speech() -> None:
    taker = TurnTaker()
    taker.listen(700, 15000, BargeIn(BargeInMode.ON, min_speech_ms=100))
    taker.bot_started(0.0)
    events = feed(taker, "...xxxxxxx", start=1.0)
    assert (7, PauseBot(1.16)) in events  # 5 voiced frames = 100 ms after onset at frame 3


def test_barge_in_off_never_pauses() -> None:
    taker = TurnTaker()
    taker.listen(700, 15000, BargeIn(BargeInMode.OFF))
    taker.bot_started(0.0)
    assert not [e for _, e in feed(taker, "x" * 50) if isinstance(e, PauseBot)]


def test_protected_window_then_pause() -> None:
    taker = TurnTaker()
    taker.listen(700, 15000, BargeIn(BargeInMode.PROTECTED, protect_ms=1000, min_speech_ms=100))
    taker.bot_started(0.0)
    events = feed(taker, "x" * 60, start=0.5)
    pauses = [e for _, e in events if isinstance(e, PauseBot)]
    assert pauses == [PauseBot(1.0)]  # speech since 0.5 s, paused at the end of the protected second


def test_no_pause_when_bot_silent() -> None:
    taker = TurnTaker()
    assert not [e for _, e in feed(taker, "x" * 20) if isinstance(e, PauseBot)]


def test_next_turn_can_pause_again() -> None:
    taker = TurnTaker(TurnSettings(end_silence_ms=100))
    taker.listen(100, 15000, BargeIn(BargeInMode.ON, min_speech_ms=60))
    taker.bot_started(0.0)
    events = feed(taker, "xxxxx" + "." * 8 + "xxxxx")
    assert len([e for _, e in events if isinstance(e, PauseBot)]) == 2


def test_echo_of_the_bot_is_not_caller_speech() -> None:
    taker = TurnTaker()
    taker.bot_started(0.0)
    for i in range(50):
        taker.bot_frame(-12.0, i * F)  # the bot talks loudly
    echo = feed(taker, "x" * 30, start=0.1, level=-30.0)  # its echo comes back 18 dB down
    assert echo == [] and taker.echo_rejected == 30


def test_caller_louder_than_echo_passes() -> None:
    taker = TurnTaker()
    taker.bot_started(0.0)
    for i in range(50):
        taker.bot_frame(-12.0, i * F)
    events = feed(taker, "x" * 30, start=0.1, level=-15.0)
    assert isinstance(events[0][1], SpeechStart)


def test_echo_gate_forgets_old_bot_audio() -> None:
    gate = EchoGate(return_loss_db=12, window_ms=250)
    gate.bot_frame(-10.0, 0.0)
    assert not gate.passes(-30.0, 0.1)
    assert gate.passes(-30.0, 0.5)


def test_quiet_line_noise_is_not_speech() -> None:
    assert feed(TurnTaker(), "x" * 30, level=-60.0) == []


def test_endpointer_voiced_for() -> None:
    ep = Endpointer(TurnSettings())
    for i in range(5):
        ep.frame(True, i * F, F)
    assert abs(ep.voiced_for(0.1) - 0.1) < 1e-9


def test_content_words_drop_backchannels() -> None:
    assert content_words("uh-huh yeah", "en") == []
    assert content_words("mm hmm, wait a second", "en") == ["wait", "a", "second"]
    assert content_words("嗯嗯，对对", "zh") == []
    assert content_words("嗯，不需要", "zh") == ["不", "需", "要"]
