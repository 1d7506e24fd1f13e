"""Failed captures: re-asked with the node's own prompt, then its no-match branch, never spoken empty.

Also the reference time for date slots (CallStarted.local_time plus the time since answer) and the validation
of prompts that say a slot that may be empty on the way to them.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from voicebot.dialog import events as ev
from voicebot.dialog.checks_slots import slot_states
from voicebot.dialog.flow import Flow
from voicebot.dialog.loader import load_flow, validate_file
from voicebot.dialog.machine import DialogMachine

ROOT = Path(__file__).resolve().parent.parent
APPOINTMENT = ROOT / "examples" / "flows" / "appointment_reminder_en.yaml"
LOCAL = datetime(2026, 12, 7, 16, 0, tzinfo=ZoneInfo("Europe/London"))  # a Monday afternoon

FLOW_WITH_DATE = """
flow: {id: dates, version: "1", language: en, start: ask}
nodes:
  ask:
    say: "Which day suits you?"
    capture: {day: date}
    next: confirm
    no_match: {retries: 1, reprompt: "Sorry, which day? For example, next Monday.", then: sorry}
  confirm:
    say: "So that's {{day}}."
    hangup: booked
  sorry:
    say: "We'll call you back to find a day."
    hangup: callback
"""


class Caller:
    """Drives a machine through answers, each after the prompt before it has finished."""

    def __init__(self, flow: Flow, local_time: datetime | None = None) -> None:
        self.m = DialogMachine(flow)
        self.now = 0.0
        self.said: list[str] = []
        self._take(self.m.handle(ev.CallStarted(0.0, {}, local_time=local_time), 0.0))

    def _take(self, commands: list[ev.Command]) -> None:
        for command in commands:
            if isinstance(command, ev.Play):
                self.said.append(command.text)
                self.now += 1.0
                self.m.handle(ev.PromptStarted(command.at, command.play_id), self.now)
                self._take(self.m.handle(ev.PromptFinished(self.now, command.play_id, False, 1000), self.now))

    def say(self, text: str) -> None:
        self.now += 1.0
        self.m.handle(ev.SpeechStarted(self.now), self.now)
        self.now += 1.0
        self._take(self.m.handle(ev.Transcript(self.now, text, final=True), self.now))


def date_flow(tmp_path: Path) -> Flow:
    path = tmp_path / "dates.yaml"
    path.write_text(FLOW_WITH_DATE, encoding="utf-8")
    return load_flow(path)


def test_a_failed_capture_is_re_asked_then_taken(tmp_path: Path) -> None:
    call = Caller(date_flow(tmp_path), LOCAL)
    call.say("hmm whenever really")
    assert call.said[-1] == "Sorry, which day? For example, next Monday."
    assert "day" not in call.m.outcome.slots
    call.say("next monday")
    assert call.said[-1] == "So that's 2026-12-14."
    assert call.m.outcome.disposition == "booked"


def test_a_capture_failing_every_time_goes_to_no_match_then_and_nothing_empty_is_said(tmp_path: Path) -> None:
    call = Caller(date_flow(tmp_path), LOCAL)
    call.say("hmm whenever really")
    call.say("I can't say")
    assert call.said[-1] == "We'll call you back to find a day."
    assert not any(text.startswith("So that's") for text in call.said)
    assert call.m.outcome.disposition == "callback"


def test_without_a_reference_time_a_date_captures_nothing(tmp_path: Path) -> None:
    call = Caller(date_flow(tmp_path), None)
    call.say("tomorrow")
    assert call.said[-1].startswith("Sorry, which day?")


def test_the_reference_moves_on_with_the_call(tmp_path: Path) -> None:
    late = datetime(2026, 12, 7, 23, 59, 57, tzinfo=ZoneInfo("Europe/London"))  # "today" is tomorrow by the answer
    call = Caller(date_flow(tmp_path), late)
    call.say("today")
    assert call.said[-1] == "So that's 2026-12-08."


def test_appointment_reschedule_with_garbled_time_is_re_asked() -> None:
    call = Caller(load_flow(APPOINTMENT), LOCAL)
    for text in ("yes", "I need to reschedule", "whenever suits the doctor"):
        call.say(text)
    assert call.said[-1].startswith("Sorry, I didn't catch a day and time.")
    call.say("friday at ten in the morning")
    assert call.said[-1].startswith("Thanks, I've noted friday 10:00.")


def test_slot_states_follow_every_path() -> None:
    flow = load_flow(APPOINTMENT)
    states = slot_states(flow)
    assert "preferred_time" in states["confirm_new_time"][0]  # only reached through the capture's next
    assert "preferred_time" not in states["goodbye_callback"][0]


def test_validation_reports_slots_that_may_be_empty(tmp_path: Path) -> None:
    path = tmp_path / "maybe.yaml"
    maybe = FLOW_WITH_DATE.replace("then: sorry}", "then: confirm}\n    no_input: {retries: 0, then: sorry}")
    path.write_text(maybe, encoding="utf-8")
    problems = validate_file(path)
    assert [(p.severity, p.line, p.column, p.path) for p in problems] == [("warning", 11, 10, "nodes.confirm.say")]
    assert "slot 'day' may be empty" in problems[0].message
    path.write_text(FLOW_WITH_DATE.replace("next: confirm", "next: sorry").replace("then: sorry", "then: confirm"),
                    encoding="utf-8")
    problems = validate_file(path)
    assert [(p.severity, p.path) for p in problems] == [("error", "nodes.confirm.say")]
    assert "always empty" in problems[0].message
