"""CallSession with the real turn-taking, interruption policy and dialog machine; VAD, ASR and voice are test doubles."""

from __future__ import annotations

from collections.abc import Callable

from tests.call_fakes import Drive, ScriptedAsr, make_session
from tests.dialog_fixtures import screening_flow
from voicebot.asr.base import AsrResult
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


class LaterAsr(ScriptedAsr):
    """A recogniser whose finals come later, when the test says (the pooled recogniser's ``finish_later``)."""

    finish_timeout_s = 60.0

    def __init__(self, words: dict[float, str]) -> None:
        super().__init__(words)
        self.waiting: list[Callable[[AsrResult], None]] = []
        self.given_up = 0

    def finish_later(self, deliver: Callable[[AsrResult], None]) -> None:
        self.waiting.append(deliver)

    def give_up(self) -> bool:
        self.given_up += 1
        return bool(self.waiting) and self.waiting.pop(0) is not None


def test_the_call_goes_on_while_a_final_is_on_its_way_and_the_caller_frames_wait_behind_it() -> None:
    """Issue 13, defect 2's kin: the session thread waited up to 10 s for the pool's final, sending nothing and
    hearing nothing meanwhile. Now the bot's frames keep coming, the caller's frames are held, and once the final
    is in they are fed in order (the core sees what it saw when the call waited)."""
    asr = LaterAsr({1.6: "yes"})
    session = make_session(screening_flow(), asr, prompt_s=1.0)
    posted: list[Callable[[], None]] = []
    session.post = posted.append
    drive = Drive(session, speech=[(1.5, 2.3), (3.0, 3.4)])
    drive.until(4.0)
    assert len(asr.waiting) == 1 and asr.finals == [], "the turn's final was asked for without waiting"
    assert len(drive.bot) == 200, "every 20 ms slot was served while the final was on its way"
    assert drive.times("final") == [] and len(drive.times("speech_start")) == 1, "the caller's frames wait"

    asr.waiting.pop(0)(AsrResult("yes", final=True, confidence=0.9))  # the worker's reader thread
    assert drive.times("final") == [], "the final is handled on the call's thread, not the reader's"
    for run in posted:
        run()
    assert drive.times("final") and session.machine.node is not None and session.machine.node.id == "pitch"
    starts = drive.times("speech_start")
    assert len(starts) == 2 and 3.0 <= starts[1] < 3.1, "the held frames were fed, in order, after the final"


def test_a_final_later_than_the_streams_patience_is_given_up_and_the_turn_has_no_words() -> None:
    asr = LaterAsr({1.6: "yes"})
    asr.finish_timeout_s = 0.0
    session = make_session(screening_flow(), asr, prompt_s=1.0)
    session.post = lambda run: None  # the final never comes
    drive = Drive(session, speech=[(1.5, 2.3)])
    drive.until(3.5)
    assert asr.given_up == 1 and asr.waiting == []
    finals = session.timeline.of("final")
    assert finals and finals[0]["text"] == "" and session.machine.node is not None and session.machine.node.id == "greet"
