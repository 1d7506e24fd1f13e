"""Turn-taking strategies on a fake clock: frames in, turn events out."""

from __future__ import annotations

import math
import random
from dataclasses import replace

from voicebot.asr.turns import (
    EchoGate,
    Endpointer,
    SpeechEnd,
    SpeechStart,
    TurnEvent,
    TurnSettings,
    TurnTaker,
)
from voicebot.dialog.backchannel import content_words, ends_open, interrupts, key_words, word_count

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
    taker.listen(end_silence_ms=700, max_speech_ms=400)
    events = feed(taker, "x" * 40)
    assert events[1][1] == SpeechEnd(0.4, "max_speech")


def early_taker(score: float) -> TurnTaker:
    """Node end silence 400 ms, early end 200 ms; every partial scores ``score``."""
    taker = TurnTaker(TurnSettings(early_end_silence_ms=200), intent_score=lambda text: score)
    taker.listen(400, 15000)
    return taker


def end_of(taker: TurnTaker, text: str, partial_at: float = 0.08) -> tuple[int, SpeechEnd]:
    """Speak 5 frames, get ``text`` as a partial at ``partial_at``, then stay silent: (frame index, SpeechEnd)."""
    feed(taker, "xxxxx")
    taker.partial(text, partial_at, "en")
    ends = [(i, e) for i, e in feed(taker, "." * 60, start=0.1) if isinstance(e, SpeechEnd)]
    assert len(ends) == 1
    return ends[0]


def test_early_end_when_a_two_word_partial_names_an_intent() -> None:
    assert end_of(early_taker(0.85), "no thanks") == (9, SpeechEnd(0.1, "early"))  # 10 silent frames = 200 ms


def test_one_word_partial_waits_for_the_node_end_silence() -> None:
    """ "no, ..." is often just the start of "no, you have the wrong number": one word does not end early."""
    assert end_of(early_taker(1.0), "no") == (19, SpeechEnd(0.1, "silence"))  # the node's 400 ms


def test_one_word_partial_ends_early_once_stable() -> None:
    taker = TurnTaker(TurnSettings(early_end_silence_ms=200, early_end_stable_ms=300), intent_score=lambda text: 1.0)
    taker.listen(700, 15000)
    assert end_of(taker, "speaking", partial_at=0.02) == (10, SpeechEnd(0.1, "early"))  # stable 300 ms at 0.32 s


def test_long_partial_ends_early_at_a_lower_score() -> None:
    assert end_of(early_taker(0.72), "i'm busy right now") == (9, SpeechEnd(0.1, "early"))
    assert end_of(early_taker(0.72), "busy now") == (19, SpeechEnd(0.1, "silence"))  # two words need 0.8


def test_weak_partial_keeps_the_node_end_silence() -> None:
    assert end_of(early_taker(0.3), "the weather today") == (19, SpeechEnd(0.1, "silence"))


def test_trailing_conjunction_or_filler_holds_the_turn() -> None:
    for text in ("i want to talk about", "yes but", "no um"):
        assert end_of(early_taker(0.9), text) == (34, SpeechEnd(0.1, "held"))  # 400 + 300 ms


def test_early_end_state_is_reset_for_the_next_turn() -> None:
    taker = early_taker(0.9)
    end_of(taker, "no thanks")
    feed(taker, "xxxxx", start=2.0)
    ends = [(i, e) for i, e in feed(taker, "." * 30, start=2.1) if isinstance(e, SpeechEnd)]
    assert ends == [(19, SpeechEnd(2.1, "silence"))]  # no partial in this turn: the node's end silence


def test_echo_of_the_bot_is_not_caller_speech() -> None:
    taker = TurnTaker()
    for i in range(50):
        taker.bot_frame(-12.0, i * F)  # the bot talks loudly
    echo = feed(taker, "x" * 30, start=0.1, level=-30.0)  # its echo comes back 18 dB down
    assert echo == [] and taker.echo_rejected == 30


def test_caller_louder_than_echo_passes() -> None:
    taker = TurnTaker()
    for i in range(50):
        taker.bot_frame(-12.0, i * F)
    events = feed(taker, "x" * 30, start=0.1, level=-15.0)
    assert isinstance(events[0][1], SpeechStart)


def test_echo_gate_forgets_old_bot_audio() -> None:
    gate = EchoGate(return_loss_db=12, window_ms=250)
    gate.bot_frame(-10.0, 0.0)
    assert not gate.passes(-30.0, 0.1)
    assert gate.passes(-30.0, 0.5)


def bot_levels(n: int, seed: int = 1) -> list[float]:
    """A talking bot's frame levels (dBFS): syllables, softer sounds and gaps."""
    rng = random.Random(seed)
    return [rng.choice((-14.0, -20.0, -26.0, -35.0, -120.0)) for _ in range(n)]


def talk_with_echo(taker: TurnTaker, levels: list[float], delay: int, loss_db: float, start: int = 0) -> None:
    """Tick by tick as the driver does: the caller frame (the bot's echo only), then the bot's frame."""
    for i in range(start, len(levels)):
        echo = levels[i - delay] - loss_db if i >= delay else -120.0
        taker.caller_frame(1.0 if echo > -60 else 0.0, echo, i * F, F)
        taker.bot_frame(levels[i], i * F)


def test_echo_gate_learns_the_echo_delay_and_gain() -> None:
    taker = TurnTaker()
    talk_with_echo(taker, bot_levels(100), delay=3, loss_db=15.0)  # 60 ms later, 15 dB down
    assert taker.echo.delay_ms == 60
    assert abs(10 * math.log10(taker.echo.gain) + 15.0) < 0.1
    assert not taker.endpointer.in_speech and taker.echo_rejected > 0  # the echo never became a turn


def test_a_quiet_caller_passes_once_the_gate_has_learned_the_line_has_no_echo() -> None:
    """The bot talks at up to -14 dBFS; a caller at -38 dBFS is 24 dB softer, under the 12 dB fallback rule."""
    taker = TurnTaker()
    taker.listen(400, 15000)
    levels = bot_levels(60)
    talk_with_echo(taker, levels[:3], delay=100, loss_db=0.0)  # 60 ms of bot: nothing learned yet
    early = [e for _, e in feed(taker, "xxx", start=3 * F, level=-38.0)]
    assert early == [] and taker.echo_rejected == 3  # the fallback rule: bot level - 12 dB
    taker = TurnTaker()
    taker.listen(400, 15000)
    talk_with_echo(taker, levels[:40], delay=100, loss_db=0.0)  # 800 ms of bot, a silent line
    assert taker.echo.gain == 0.0
    for i in range(8):
        taker.bot_frame(levels[40 + i], (40 + i) * F)
    events = [e for _, e in feed(taker, "x" * 8, start=40 * F, level=-38.0)]
    assert events[:1] == [SpeechStart(0.8)] and taker.echo_rejected == 0 and taker.voiced_for(0.96) > 0.15


def test_speech_over_the_learned_echo_passes_and_echo_frames_are_marked() -> None:
    taker = TurnTaker()
    taker.listen(400, 15000)
    levels = [-14.0 if i % 3 else -30.0 for i in range(80)]
    talk_with_echo(taker, levels, delay=2, loss_db=15.0)
    assert taker.echo_only(79 * F) and not taker.endpointer.in_speech
    for i in range(80, 90):
        taker.bot_frame(-14.0, i * F)
    events = [e for _, e in feed(taker, "x" * 10, start=80 * F, level=-16.0)]  # the caller, 15 dB over the echo
    assert isinstance(events[0], SpeechStart) and not taker.echo_only(85 * F)


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
    assert content_words("[unk] yeah <unk>", "en") == []  # words the recogniser could not make out count as none


def test_key_words_interruptions_and_trailing_words() -> None:
    assert key_words("in the [unk] at", "en") == [] and content_words("in the [unk] at", "en") == ["in", "the", "at"]
    assert key_words("i'm not interested", "en") == ["not", "interested"]
    assert key_words("嗯，我不需要了", "zh") == ["不", "需", "要"]
    assert interrupts(["stop"], "en") and not interrupts(["number"], "en") and interrupts(["等"], "zh")
    assert ends_open("i want to talk about", "en") and ends_open("yes but", "en") and ends_open("我想问一下然后", "zh")
    assert not ends_open("can you repeat that", "en") and not ends_open("", "en")
    assert word_count("okay go ahead [unk]", "en") == 3 and word_count("不需要", "zh") == 2
