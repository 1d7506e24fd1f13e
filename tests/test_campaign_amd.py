"""Answering-machine detection: app_amd's rules one by one on a fake clock, the phrases, the beep, and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.campaign_signals import add_noise, babble, frames, silence, tone
from voicebot.campaign.amd import (
    AmdReason,
    AmdSettings,
    AmdStatus,
    AmdVerdict,
    AnsweringMachineDetector,
    is_human_reply,
    is_voicemail,
)
from voicebot.campaign.tones import BeepDetector

T0 = 1000.0  # the answer, on the fake clock (s)
VOICE, QUIET = 2000.0, 20.0  # mean |sample| of a voiced and a silent frame


def run(pattern: list[tuple[str, float]], amd: AnsweringMachineDetector | None = None,
        vad: bool = False) -> tuple[AnsweringMachineDetector, AmdVerdict | None]:
    """Feed ``pattern`` ("v" voice / "s" silence, ms) as 20 ms frames from the answer; stop at the first verdict."""
    amd = amd or AnsweringMachineDetector(T0)
    t = T0
    for kind, ms in pattern:
        for _ in range(int(ms // 20)):
            t += 0.02
            level = VOICE if kind == "v" else QUIET
            verdict = amd.frame(t, level, (1.0 if kind == "v" else 0.0) if vad else None)
            if verdict is not None:
                return amd, verdict
    return amd, amd.verdict


def ms_after_answer(verdict: AmdVerdict) -> float:
    return round(1000 * (verdict.at - T0))


# ----------------------------------------------------------------- app_amd's rules, each reason

def test_initial_silence_is_a_machine_at_2500_ms() -> None:
    _, verdict = run([("s", 4000)])
    assert verdict is not None and (verdict.status, verdict.reason) == (AmdStatus.MACHINE, AmdReason.INITIALSILENCE)
    assert ms_after_answer(verdict) == 2500 and verdict.detail == "INITIALSILENCE-2500-2500"


def test_a_short_hello_then_silence_is_human_800_ms_after_the_word() -> None:
    _, verdict = run([("s", 300), ("v", 400), ("s", 2000)])
    assert verdict is not None and (verdict.status, verdict.reason) == (AmdStatus.HUMAN, AmdReason.HUMAN)
    assert ms_after_answer(verdict) == 300 + 400 + 800


def test_a_long_greeting_is_a_machine_at_1500_ms_of_voice() -> None:
    _, verdict = run([("s", 200), ("v", 700), ("s", 40), ("v", 1200)])  # the 40 ms dip does not end the word
    assert verdict is not None and (verdict.status, verdict.reason) == (AmdStatus.MACHINE, AmdReason.LONGGREETING)
    assert ms_after_answer(verdict) == 200 + 700 + 40 + 800


def test_more_than_two_words_is_a_machine() -> None:
    _, verdict = run([("s", 200), ("v", 200), ("s", 100), ("v", 200), ("s", 100), ("v", 200)])
    assert verdict is not None and (verdict.status, verdict.reason) == (AmdStatus.MACHINE, AmdReason.MAXWORDS)
    assert verdict.detail == "MAXWORDS-3-2" and ms_after_answer(verdict) == 200 + 200 + 100 + 200 + 100 + 100


def test_two_words_then_silence_is_still_human() -> None:
    _, verdict = run([("s", 200), ("v", 200), ("s", 100), ("v", 200), ("s", 1000)])
    assert verdict is not None and verdict.reason == AmdReason.HUMAN


def test_a_blip_shorter_than_a_word_neither_counts_nor_ends_the_initial_silence() -> None:
    amd, verdict = run([("s", 1000), ("v", 80), ("s", 2600)])
    assert amd.words == 0
    assert verdict is not None and verdict.reason == AmdReason.INITIALSILENCE
    assert ms_after_answer(verdict) == 1000 + 80 + 2500  # the silence counts again from the blip


def test_one_word_longer_than_the_maximum_word_length() -> None:
    amd = AnsweringMachineDetector(T0, AmdSettings(max_word_ms=600, greeting_ms=5000))
    _, verdict = run([("s", 200), ("v", 1000)], amd)
    assert verdict is not None and (verdict.status, verdict.reason) == (AmdStatus.MACHINE, AmdReason.MAXWORDLENGTH)
    assert ms_after_answer(verdict) == 800


def test_undecided_audio_is_notsure_toolong_at_the_total_analysis_time() -> None:
    amd = AnsweringMachineDetector(T0, AmdSettings(greeting_ms=9000, max_words=50, after_greeting_silence_ms=3000))
    _, verdict = run([("s", 100), ("v", 1000), ("s", 2000), ("v", 3000)], amd)
    assert verdict is not None and (verdict.status, verdict.reason) == (AmdStatus.NOTSURE, AmdReason.TOOLONG)
    assert ms_after_answer(verdict) == 5000


def test_no_frames_at_all_is_notsure_noaudiodata_by_the_clock() -> None:
    amd = AnsweringMachineDetector(T0)
    assert amd.tick(T0 + 4.9) is None and amd.hold_bot
    verdict = amd.tick(T0 + 5.0)
    assert verdict is not None and (verdict.status, verdict.reason) == (AmdStatus.NOTSURE, AmdReason.NOAUDIODATA)
    assert not amd.hold_bot


def test_stalled_frames_still_end_at_the_total_analysis_time() -> None:
    amd = AnsweringMachineDetector(T0)
    assert amd.frame(T0 + 0.02, QUIET) is None
    verdict = amd.frame(T0 + 6.0, VOICE)  # the next frame comes late: the clock decides
    assert verdict is not None and verdict.reason == AmdReason.TOOLONG and verdict.at == T0 + 6.0


def test_the_vad_gates_loud_noise() -> None:
    """Departure 1: a loud frame the VAD calls noise is silence (energy alone would count words)."""
    amd = AnsweringMachineDetector(T0)
    t = T0
    verdict = None
    for _ in range(150):
        t += 0.02
        verdict = verdict or amd.frame(t, VOICE, voice=0.0)
    assert verdict is not None and verdict.reason == AmdReason.INITIALSILENCE


def test_the_verdict_is_given_once_and_the_bot_waits_for_it() -> None:
    amd, verdict = run([("s", 300), ("v", 400)])
    assert verdict is None and amd.hold_bot
    _, verdict = run([("s", 900)], amd)
    assert verdict is not None and not amd.hold_bot
    assert amd.frame(T0 + 9.0, VOICE) is None and amd.verdict is verdict


# ----------------------------------------------------------------- phrases

@pytest.mark.parametrize("text", [
    "Hi, you've reached Dana. I can't take your call right now, please leave a message after the tone.",
    "The person you are calling is not available. At the tone, please record your message.",
    "Welcome to the voicemail of", "this mailbox is full", "请在提示音后留言", "您拨打的用户暂时无法接听",
    "您 好 , 您 拨打 的 用户 已 转入 语音信箱"])
def test_voicemail_phrases(text: str) -> None:
    assert is_voicemail(text)


@pytest.mark.parametrize("text", ["hello?", "yes?", "hello, who is this?", "喂?", "你好", "yeah speaking", "who's calling"])
def test_what_people_say_is_not_voicemail(text: str) -> None:
    assert not is_voicemail(text)


def test_human_replies() -> None:
    assert is_human_reply("hello, who is this?") and is_human_reply("喂,哪位?")
    assert not is_human_reply("hello") and not is_human_reply("Dana speaking, please leave a message")


def test_a_voicemail_phrase_is_a_machine_at_once() -> None:
    amd, _ = run([("s", 300), ("v", 600)])
    verdict = amd.transcript(T0 + 0.95, "please leave a message", final=False)
    assert verdict is not None and (verdict.status, verdict.reason) == (AmdStatus.MACHINE, AmdReason.PHRASE)
    assert verdict.at == T0 + 0.95 and not verdict.revised


def test_a_voicemail_phrase_after_a_human_verdict_revises_it() -> None:
    amd, verdict = run([("s", 300), ("v", 500), ("s", 900)])
    assert verdict is not None and verdict.status == AmdStatus.HUMAN
    revised = amd.transcript(T0 + 3.0, "hi this is Dana, leave a message after the beep")
    assert revised is not None and revised.revised and amd.verdict == revised and revised.status == AmdStatus.MACHINE


def test_phrases_off_means_timing_only() -> None:
    amd = AnsweringMachineDetector(T0, AmdSettings(use_phrases=False))
    assert amd.transcript(T0 + 1, "leave a message") is None and amd.verdict is None


def test_confirm_machine_holds_a_timing_machine_until_the_words() -> None:
    amd = AnsweringMachineDetector(T0, AmdSettings(confirm_machine=True))
    _, verdict = run([("s", 200), ("v", 2000)], amd)
    assert verdict is None and amd.pending is not None and amd.pending.reason == AmdReason.LONGGREETING and amd.hold_bot
    human = amd.transcript(T0 + 2.6, "hello this is john, who's calling?")
    assert human is not None and (human.status, human.reason) == (AmdStatus.HUMAN, AmdReason.HUMANPHRASE)


def test_confirm_machine_keeps_the_machine_when_the_words_say_nothing_human() -> None:
    amd = AnsweringMachineDetector(T0, AmdSettings(confirm_machine=True))
    run([("s", 200), ("v", 2000)], amd)
    verdict = amd.transcript(T0 + 2.6, "hello there thanks for calling")
    assert verdict is not None and (verdict.status, verdict.reason) == (AmdStatus.MACHINE, AmdReason.LONGGREETING)


def test_confirm_machine_gives_the_held_machine_at_the_timeout() -> None:
    amd = AnsweringMachineDetector(T0, AmdSettings(confirm_machine=True))
    run([("s", 200), ("v", 2000)], amd)
    verdict = amd.tick(T0 + 5.0)
    assert verdict is not None and verdict.reason == AmdReason.LONGGREETING and verdict.at == T0 + 5.0


def test_confirm_machine_never_holds_initial_silence() -> None:
    _, verdict = run([("s", 2600)], AnsweringMachineDetector(T0, AmdSettings(confirm_machine=True)))
    assert verdict is not None and verdict.reason == AmdReason.INITIALSILENCE


# ----------------------------------------------------------------- the beep

def beep_at(x: np.ndarray) -> float | None:
    detector = BeepDetector()
    for i, frame in enumerate(frames(x)):
        if detector.feed(frame, (i + 1) * 0.02):
            return detector.beep_at
    return None


@pytest.mark.parametrize("freq", [440.0, 1000.0, 1412.5, 1987.0])
@pytest.mark.parametrize("snr", [None, 20.0, 10.0])
def test_a_beep_after_a_greeting_is_found(freq: float, snr: float | None) -> None:
    x = np.concatenate((babble(2000, seed=4), silence(300), tone([freq], 400), silence(500)))
    x = x if snr is None else add_noise(x, snr)
    at = beep_at(x)
    assert at is not None and 2.3 + 0.15 <= at <= 2.3 + 0.25


@pytest.mark.parametrize("signal", [babble(3000, seed=5), tone([1000.0], 100), tone([300.0], 500), tone([2500.0], 500),
                                    tone([425.0, 1200.0], 500), silence(1000)])
def test_no_beep_in_speech_short_or_out_of_band_tones(signal: np.ndarray) -> None:
    assert beep_at(np.concatenate((signal, silence(200)))) is None


# ----------------------------------------------------------------- properties

segments = st.lists(st.tuples(st.sampled_from(["v", "s"]), st.integers(1, 60).map(lambda n: 20.0 * n)), max_size=30)


@settings(max_examples=300, deadline=None)
@given(segments, st.booleans())
def test_a_verdict_always_comes_by_the_total_analysis_time(pattern: list[tuple[str, float]], vad: bool) -> None:
    _, verdict = run([*pattern, ("s", 6000)], vad=vad)
    assert verdict is not None and verdict.at <= T0 + 5.0 + 1e-9


@settings(max_examples=300, deadline=None)
@given(segments, st.sampled_from([AmdSettings(), AmdSettings(max_words=3, min_word_ms=120),
                                  AmdSettings(after_greeting_silence_ms=300, greeting_ms=900)]))
def test_no_verdict_before_the_least_evidence(pattern: list[tuple[str, float]], cfg: AmdSettings) -> None:
    amd, verdict = run([*pattern, ("s", 6000)], AnsweringMachineDetector(T0, cfg))
    assert verdict is not None
    after = 1000 * (verdict.at - T0)
    assert after >= cfg.earliest_verdict_ms() - 1e-6
    least = {AmdReason.INITIALSILENCE: cfg.initial_silence_ms, AmdReason.LONGGREETING: cfg.greeting_ms,
             AmdReason.HUMAN: cfg.min_word_ms + cfg.after_greeting_silence_ms,
             AmdReason.MAXWORDS: (cfg.max_words + 1) * (cfg.min_word_ms + cfg.between_words_silence_ms) - 1,
             AmdReason.TOOLONG: cfg.total_analysis_ms}[verdict.reason]
    assert after >= least - 1e-6
    if verdict.reason == AmdReason.HUMAN:
        assert amd.words >= 1 or amd.voice_ms >= cfg.min_word_ms


def test_the_silence_threshold_follows_the_noise_floor() -> None:
    """Departure 3: on a line whose hiss reads 600 (over app_amd's 256), a hello at 2000 is still a short word."""
    def hello_on(noise: float, cfg: AmdSettings) -> AmdVerdict | None:
        amd, t = AnsweringMachineDetector(T0, cfg), T0
        for level, ms in ((noise, 400), (VOICE, 400), (noise, 2000)):
            for _ in range(ms // 20):
                t += 0.02
                if (verdict := amd.frame(t, level)) is not None:
                    return verdict
        return amd.verdict

    ours = hello_on(600.0, AmdSettings())
    assert ours is not None and ours.reason == AmdReason.HUMAN and ms_after_answer(ours) == 400 + 400 + 800
    app_amd = hello_on(600.0, AmdSettings(noise_floor_ratio=0.0))  # the hiss is one long word
    assert app_amd is not None and app_amd.reason == AmdReason.LONGGREETING


@pytest.mark.parametrize("bad", [{"greeting_ms": 0.0}, {"total_analysis_ms": -5.0}, {"max_words": -1},
                                 {"vad_threshold": 1.5}, {"noise_floor_ratio": -1.0}])
def test_bad_settings_are_refused_with_the_name(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        AmdSettings(**bad)  # type: ignore[arg-type]


def test_a_frame_without_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="positive number of milliseconds"):
        AnsweringMachineDetector(T0).frame(T0 + 0.02, VOICE, ms=0.0)


def test_a_burst_of_hiss_at_the_answer_is_not_a_greeting() -> None:
    """The first frames only measure the line: webrtcvad calls hiss speech until it adapts (about 100 ms), and
    counting that as a word made the quiet hiss after it read HUMAN 0.9 s after the answer, before anyone spoke."""
    amd, t, verdict = AnsweringMachineDetector(T0), T0, None
    for i in range(200):
        t += 0.02
        verdict = verdict or amd.frame(t, 700.0, voice=1.0 if i < 5 else 0.0)
    assert verdict is not None and verdict.reason == AmdReason.INITIALSILENCE and ms_after_answer(verdict) == 2500
