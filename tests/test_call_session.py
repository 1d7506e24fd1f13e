"""CallSession with the real turn-taking, interruption policy and dialog machine; VAD, ASR and voice are test doubles."""

from __future__ import annotations

from tests.call_fakes import Drive, ScriptedAsr, make_session
from tests.dialog_fixtures import screening_flow
from voicebot.dialog.flow import BargeIn, BargeInMode

PROTECT_4S = BargeIn(BargeInMode.PROTECTED, protect_ms=4000, min_speech_ms=80, min_words=2)


def test_a_false_barge_in_does_not_restart_the_protected_window() -> None:
    """Defect 8: a cough at 4.5 s pauses and resumes the prompt; real speech at 5.5 s must pause it at once."""
    asr = ScriptedAsr({5.7: "stop calling"})
    drive = Drive(make_session(screening_flow(greet_barge_in=PROTECT_4S), asr), speech=[(4.5, 4.7), (5.5, 6.5)])
    drive.until(7.0)
    assert asr.finals[0] == "", "the cough is recognised as nothing"
    pauses, resumes = drive.times("pause"), drive.times("resume")
    assert len(pauses) >= 1 and 4.5 < pauses[0] < 4.7, pauses
    assert resumes and resumes[0] < 5.5, "the cough's pause ended before the real speech"
    assert len(pauses) == 2 and 5.5 < pauses[1] <= 5.5 + 0.08 + 0.03, (pauses, "real speech 4 s after the start pauses")
    assert drive.times("stop") and drive.times("stop")[0] >= pauses[1]


def test_speech_inside_the_protected_window_does_not_pause() -> None:
    asr = ScriptedAsr({1.3: "stop calling"})
    drive = Drive(make_session(screening_flow(greet_barge_in=PROTECT_4S), asr), speech=[(1.0, 2.0)])
    drive.until(3.5)
    assert drive.times("pause") == [] and drive.times("stop") == []
    assert all(drive.bot[: round(3.5 / 0.02)]), "the protected prompt was heard without a hole"


def test_min_words_means_key_words_in_the_session_and_the_machine_alike() -> None:
    """Defect 9: min_words 1 stops on one key word; min_words 3 ignores function words ("me"), as the docs say."""
    one = BargeIn(BargeInMode.ON, min_speech_ms=80, min_words=1)
    drive = Drive(make_session(screening_flow(greet_barge_in=one), ScriptedAsr({1.3: "number"})), speech=[(1.0, 2.0)])
    drive.until(1.5)
    assert drive.times("stop") == [1.32], "one key word in a partial confirms with min_words 1"
    three = BargeIn(BargeInMode.ON, min_speech_ms=80, min_words=3)
    asr = ScriptedAsr({1.3: "stop calling me", 1.6: "stop calling me now"})
    drive = Drive(make_session(screening_flow(greet_barge_in=three), asr), speech=[(1.0, 2.0)])
    drive.until(1.8)
    assert drive.times("stop") == [1.62], "two key words and a function word are not three key words"
