"""The dialog machine, event by event, on a fake clock."""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

import pytest

from tests.dialog_fixtures import PROTECTED, REPEAT_ON_BARGE, screening_flow
from voicebot.dialog import events as ev
from voicebot.dialog.flow import BargeIn, BargeInMode, Flow, HandoffSettings
from voicebot.dialog.machine import DialogMachine, Phase, render_template

C = TypeVar("C")


class Call:
    """Feeds events to a machine and keeps every command it returned."""

    def __init__(self, flow: Flow | None = None, **variables: str) -> None:
        self.m = DialogMachine(flow or screening_flow())
        self.now = 0.0
        self.commands: list[ev.Command] = []
        self.last: list[ev.Command] = []
        self.send(ev.CallStarted(0.0, variables))

    def send(self, event: ev.Event) -> list[ev.Command]:
        self.now = max(self.now, event.at)
        self.last = self.m.handle(event, self.now)
        self.commands += self.last
        return self.last

    def of(self, kind: type[C], commands: list[ev.Command] | None = None) -> list[C]:
        return [c for c in (self.last if commands is None else commands) if isinstance(c, kind)]

    def play(self) -> ev.Play:
        plays = self.of(ev.Play)
        assert plays, f"expected a Play in {self.last}"
        return plays[-1]

    def finish_prompt(self, at: float) -> None:
        play = [c for c in self.commands if isinstance(c, ev.Play)][-1]
        self.send(ev.PromptStarted(play.at, play.play_id))
        self.send(ev.PromptFinished(at, play.play_id, False, int((at - play.at) * 1000)))

    def answer(self, at: float, text: str) -> list[ev.Command]:
        first = self.send(ev.SpeechStarted(at))
        self.send(ev.Transcript(at + 1.0, text, final=True))
        self.last = first + self.last
        return self.last

    def fire(self, kind: str, at: float) -> list[ev.Command]:
        timer = next(t for t in self.m.live_timers if t.startswith(kind))
        return self.send(ev.TimerFired(at, timer))


def test_call_start_plays_greeting_with_variables_and_listens() -> None:
    call = Call(name="Alice")
    assert call.play().text == "Hi, is this Alice?"
    assert call.play().template == "Hi, is this {{name}}?"
    listen = call.of(ev.Listen)[0]
    assert (listen.node, listen.no_input_ms, listen.end_silence_ms) == ("greet", 5000, 600)
    assert "yes" in listen.hints and "robot" in listen.hints
    assert [t.fire_at for t in call.of(ev.ArmTimer)] == [120.0]  # max duration only: no-input waits for the prompt
    assert call.m.outcome.path == ["greet"]


def test_default_variable_fills_template() -> None:
    assert Call().play().text == "Hi, is this there?"


def test_no_input_timer_starts_when_prompt_finishes() -> None:
    call = Call()
    call.finish_prompt(2.0)
    assert [(t.timer_id.split("#")[0], t.fire_at) for t in call.of(ev.ArmTimer)] == [("no_input", 7.0)]


def test_intent_routes_and_node_effects() -> None:
    call = Call()
    call.finish_prompt(2.0)
    out = call.answer(3.0, "yes speaking")
    assert call.m.outcome.path == ["greet", "pitch"]
    assert [c.tag for c in call.of(ev.SetTag, out)] == ["confirmed"]
    assert [c.level for c in call.of(ev.SetLevel, out)] == ["C"]
    assert call.m.outcome.turns[-1].intent == "yes"
    assert call.of(ev.CancelTimer, out), "the no-input timer must be cancelled when the caller speaks"


def test_no_input_reprompts_then_gives_up() -> None:
    call = Call()
    call.finish_prompt(2.0)
    call.fire("no_input", 7.0)
    assert call.play().text == "Hello, are you there?"
    call.finish_prompt(9.0)
    out = call.fire("no_input", 14.0)
    assert call.m.outcome.path == ["greet", "bye_no_answer"]
    call.finish_prompt(15.0)
    assert call.of(ev.HangUp) == [ev.HangUp(15.0, "no_answer")]
    assert call.m.ended and call.m.live_timers == set()
    assert out  # giving up produced the goodbye prompt


def test_no_match_reprompt_uses_reprompt_text() -> None:
    call = Call(name="Bo")
    call.finish_prompt(2.0)
    call.answer(3.0, "the weather is nice")
    assert call.play().text == "Sorry, is this Bo?"
    assert call.m.outcome.turns[-1].intent == ""


def test_barge_in_needs_min_speech_then_stops_prompt() -> None:
    call = Call(screening_flow(greet_barge_in=BargeIn(BargeInMode.ON, min_speech_ms=200, min_words=1)))
    play = call.play()
    call.send(ev.PromptStarted(0.05, play.play_id))
    call.send(ev.SpeechStarted(1.0))
    assert not call.of(ev.StopPlayback)
    call.send(ev.Transcript(1.1, "no", final=False))
    assert not call.of(ev.StopPlayback), "100 ms of speech is under the 200 ms minimum"
    out = call.fire("barge_in", 1.2)
    assert call.of(ev.StopPlayback, out) == [ev.StopPlayback(1.2, play.play_id)]
    call.send(ev.PromptFinished(1.2, play.play_id, True, 1150))
    call.send(ev.Transcript(1.8, "no", final=True))
    assert call.m.outcome.path == ["greet", "wrong_person"]
    assert call.m.outcome.turns[-1].barge_in
    assert call.m.outcome.prompts[0].interrupted and call.m.outcome.prompts[0].heard_ms == 1150


def test_noise_without_words_does_not_barge_in() -> None:
    call = Call()
    play = call.play()
    call.send(ev.PromptStarted(0.0, play.play_id))
    call.send(ev.SpeechStarted(1.0))
    assert not call.of(ev.StopPlayback, call.fire("barge_in", 1.2)), "no words recognised: a cough, not a barge-in"


def test_protected_prompt_ignores_early_speech_and_allows_late() -> None:
    call = Call(screening_flow(greet_barge_in=PROTECTED))
    play = call.play()
    call.send(ev.PromptStarted(0.0, play.play_id))
    call.send(ev.SpeechStarted(0.5))
    call.send(ev.Transcript(0.8, "no", final=False))
    call.fire("barge_in", 0.7)
    assert not [c for c in call.commands if isinstance(c, ev.StopPlayback)]
    call.send(ev.Transcript(1.2, "no", final=True))
    assert call.m.outcome.turns[-1].ignored and call.m.outcome.path == ["greet"]
    call.send(ev.SpeechStarted(2.5))
    out = call.send(ev.Transcript(2.8, "no thanks", final=False))
    assert call.of(ev.StopPlayback, out), "after 2000 ms the prompt is no longer protected"


def test_barge_in_off_plays_to_the_end() -> None:
    call = Call(screening_flow(greet_barge_in=BargeIn(BargeInMode.OFF)))
    play = call.play()
    call.send(ev.PromptStarted(0.0, play.play_id))
    call.send(ev.SpeechStarted(0.5))
    call.send(ev.Transcript(1.0, "no no no", final=False))
    assert "barge_in" not in " ".join(call.m.live_timers)
    call.send(ev.Transcript(1.5, "no no no", final=True))
    assert not [c for c in call.commands if isinstance(c, ev.StopPlayback)]
    assert call.m.phase is Phase.LISTENING and call.m.outcome.path == ["greet"]


def test_barge_in_with_repeat_action_says_prompt_again() -> None:
    call = Call(screening_flow(greet_barge_in=REPEAT_ON_BARGE))
    first = call.play()
    call.send(ev.PromptStarted(0.0, first.play_id))
    call.send(ev.SpeechStarted(0.5))
    assert call.of(ev.StopPlayback)
    call.send(ev.Transcript(1.0, "what", final=True))
    assert call.play().text == first.text and call.play().play_id != first.play_id
    assert call.m.outcome.path == ["greet"]


def test_false_barge_in_with_empty_transcript_repeats_prompt() -> None:
    call = Call(screening_flow(greet_barge_in=BargeIn(BargeInMode.ON, min_speech_ms=0, min_words=0)))
    first = call.play()
    call.send(ev.PromptStarted(0.0, first.play_id))
    call.send(ev.SpeechStarted(0.5))
    assert call.of(ev.StopPlayback), "min_words=0: speech alone interrupts"
    call.send(ev.Transcript(1.0, "", final=True))
    assert call.play().text == first.text and call.play().play_id != first.play_id


@pytest.mark.parametrize("backchannel", ["uh-huh", "mm hmm", "yeah okay", "right right"])
def test_backchannels_do_not_interrupt(backchannel: str) -> None:
    call = Call()
    play = call.play()
    call.send(ev.PromptStarted(0.0, play.play_id))
    call.send(ev.SpeechStarted(0.5))
    call.send(ev.Transcript(0.9, backchannel, final=False))
    call.fire("barge_in", 1.0)
    call.send(ev.Transcript(1.2, backchannel, final=True))
    assert not [c for c in call.commands if isinstance(c, ev.StopPlayback)]
    assert call.m.outcome.turns[-1].ignored


def test_global_intent_then_return_to_the_question() -> None:
    call = Call()
    call.finish_prompt(2.0)
    call.answer(3.0, "are you a robot")
    assert call.m.outcome.path == ["greet", "robot"]
    call.finish_prompt(6.0)
    assert call.m.outcome.path == ["greet", "robot", "greet"]
    assert call.play().text == "Hi, is this there?"


def test_say_that_again_repeats_without_moving() -> None:
    call = Call()
    call.finish_prompt(2.0)
    call.answer(3.0, "can you say that again")
    assert call.play().text == "Hi, is this there?"
    assert call.m.outcome.path == ["greet"]


def test_stop_calling_tags_blocklist() -> None:
    call = Call()
    call.finish_prompt(2.0)
    call.answer(3.0, "stop calling me")
    call.finish_prompt(5.0)
    assert call.m.outcome.tags == ["blocklist"] and call.m.outcome.disposition == "blocklist"


def test_dtmf_interrupts_prompt_and_routes() -> None:
    call = Call()
    play = call.play()
    out = call.send(ev.Dtmf(0.5, "2"))
    assert call.of(ev.StopPlayback, out) == [ev.StopPlayback(0.5, play.play_id)]
    assert call.m.outcome.path == ["greet", "wrong_person"]


def test_unknown_dtmf_counts_as_no_match() -> None:
    call = Call()
    call.finish_prompt(2.0)
    call.send(ev.Dtmf(3.0, "9"))
    assert call.play().text.startswith("Sorry")


def _to_hot(call: Call) -> None:
    call.finish_prompt(2.0)
    call.answer(3.0, "yes")
    call.finish_prompt(6.0)
    call.answer(7.0, "yes sure")
    assert call.m.outcome.path[-1] == "hot"


def test_transfer_to_ready_agent_after_prompt() -> None:
    call = Call()
    _to_hot(call)
    assert call.of(ev.PrepareHandoff) == [ev.PrepareHandoff(8.0, "sales")]
    assert [n.name for n in call.of(ev.Notify)] == ["sms_invite"]
    call.send(ev.AgentReady(8.5, "a1"))
    call.finish_prompt(10.0)
    assert call.of(ev.TransferCall) == [ev.TransferCall(10.0, "sales", "a1")]
    call.send(ev.HungUp(60.0))
    assert call.m.outcome.disposition == "transferred" and call.m.outcome.agent_id == "a1"
    assert call.m.outcome.level == "A" and call.m.outcome.tags == ["confirmed", "interested"]


def test_transfer_holds_until_agent_ready() -> None:
    call = Call()
    _to_hot(call)
    call.finish_prompt(10.0)
    assert call.play().text == "Please hold." and call.m.phase is Phase.HOLDING
    hold = call.play()
    out = call.send(ev.AgentReady(11.0, "a2"))
    assert call.of(ev.StopPlayback, out) == [ev.StopPlayback(11.0, hold.play_id)]
    assert call.of(ev.TransferCall, out)[0].agent_id == "a2"
    assert call.send(ev.Transcript(12.0, "hello?", final=True)) == [], "no bot action once bridged"


def test_transfer_timeout_goes_to_callback_and_captures_time() -> None:
    call = Call()
    _to_hot(call)
    call.finish_prompt(10.0)
    call.fire("transfer", 20.0)
    assert call.m.outcome.path[-1] == "callback"
    call.finish_prompt(22.0)
    out = call.answer(23.0, "tomorrow at 3 pm")
    assert call.of(ev.SetSlot, out) == [ev.SetSlot(24.0, "callback_time", "tomorrow 15:00")]
    assert call.play().text == "We will call you tomorrow 15:00."


def test_agent_failed_while_holding_goes_to_fallback() -> None:
    call = Call()
    _to_hot(call)
    call.finish_prompt(10.0)
    call.send(ev.AgentFailed(12.0, "rejected"))
    assert call.m.outcome.path[-1] == "callback"


def test_agent_leaving_after_bridge_returns_to_the_flows_node() -> None:
    call = Call(screening_flow(after_agent="callback"))
    _to_hot(call)
    call.send(ev.AgentReady(8.5, "a1"))
    call.finish_prompt(10.0)
    assert call.m.phase is Phase.BRIDGED
    out = call.send(ev.AgentLeft(40.0, "a1"))
    assert call.play().text == "When can we call you back?" and call.m.outcome.path[-1] == "callback"
    assert not call.of(ev.HangUp, out) and call.m.phase is Phase.LISTENING
    call.send(ev.AgentReady(41.0, "a9"))  # a later agent is not taken for the old transfer
    assert call.of(ev.TransferCall) == []


def test_agent_leaving_without_after_agent_ends_the_call() -> None:
    call = Call()
    _to_hot(call)
    call.send(ev.AgentReady(8.5, "a1"))
    call.finish_prompt(10.0)
    out = call.send(ev.AgentLeft(40.0, "a1"))
    assert call.of(ev.HangUp, out) == [ev.HangUp(40.0, "transferred")]
    assert call.m.outcome.disposition == "transferred"


def test_agent_left_is_ignored_unless_bridged() -> None:
    call = Call()
    assert call.send(ev.AgentLeft(1.0, "a1")) == [] and call.m.phase is Phase.LISTENING


def test_takeover_silences_the_bot_mid_prompt_and_stops_listening() -> None:
    call = Call()
    greeting = call.play()
    out = call.send(ev.AgentTookOver(1.5, "a7"))
    assert call.of(ev.StopPlayback, out) == [ev.StopPlayback(1.5, greeting.play_id)]
    assert call.m.phase is Phase.BRIDGED and call.m.outcome.agent_id == "a7"
    assert call.send(ev.Transcript(2.0, "yes", final=True)) == []
    assert call.m.live_timers == {t for t in call.m.live_timers if t.startswith("max_duration")}
    call.send(ev.HungUp(30.0))
    assert call.m.outcome.disposition == "transferred"


def test_level_a_prepares_the_flows_group() -> None:
    flow = screening_flow()
    flow = replace(flow, handoff=HandoffSettings(group="sales", prepare_at_level="B"))
    call = Call(flow)
    call.finish_prompt(2.0)
    out = call.answer(3.0, "yes")  # pitch: level C, not enough
    assert call.of(ev.PrepareHandoff, out) == []
    call.finish_prompt(6.0)
    out = call.answer(7.0, "yes sure")  # hot: level A
    assert call.of(ev.PrepareHandoff, out) == [ev.PrepareHandoff(8.0, "sales")], "prepared once, by level and node"


def test_caller_hangs_up_mid_prompt() -> None:
    call = Call()
    out = call.send(ev.HungUp(1.0))
    assert call.m.outcome.disposition == "caller_hangup"
    assert not call.of(ev.HangUp, out), "the caller is gone: no hang-up command"
    assert call.of(ev.StopPlayback, out) and call.m.live_timers == set()
    assert [n.payload["disposition"] for n in call.of(ev.Notify, out)] == ["caller_hangup"]
    assert call.send(ev.SpeechStarted(2.0)) == []


def test_hangup_during_goodbye_keeps_the_decided_disposition() -> None:
    call = Call()
    call.finish_prompt(2.0)
    call.answer(3.0, "no")
    call.send(ev.HungUp(4.5))
    assert call.m.outcome.disposition == "wrong_person"


def test_max_turns_goes_to_limit_node() -> None:
    call = Call(screening_flow(max_turns=2, on_limit="bye_limit"))
    for i in range(3):
        call.finish_prompt(10.0 * i + 2)
        call.answer(10.0 * i + 3, "are you a robot")
        call.finish_prompt(10.0 * i + 6)
    assert call.m.outcome.path == ["greet", "robot", "greet", "robot", "greet", "bye_limit"]


def test_max_duration_hangs_up_without_limit_node() -> None:
    call = Call()
    call.finish_prompt(2.0)
    out = call.fire("max_duration", 120.0)
    assert call.of(ev.HangUp, out) == [ev.HangUp(120.0, "max_duration")]


def test_stale_timer_is_ignored() -> None:
    call = Call()
    assert call.send(ev.TimerFired(3.0, "no_input#999")) == []


def test_render_template_spaces_and_unknown() -> None:
    assert render_template("Hi {{ name }}, {{missing}}!", {"name": "Li"}) == "Hi Li, !"


@pytest.mark.parametrize("event", [ev.SpeechStarted(1.0), ev.Dtmf(1.0, "1"), ev.Transcript(1.0, "yes", True)])
def test_events_before_call_start_are_ignored(event: ev.Event) -> None:
    machine = DialogMachine(screening_flow())
    assert machine.handle(event, 1.0) == [] and machine.outcome.path == []
