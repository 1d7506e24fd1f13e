"""Property tests: random event sequences never break the dialog machine's rules."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.dialog_fixtures import PROTECTED, REPEAT_ON_BARGE, screening_flow
from voicebot.dialog import events as ev
from voicebot.dialog.flow import BargeIn, BargeInMode
from voicebot.dialog.intents import IntentMatcher
from voicebot.dialog.machine import DialogMachine, build_matcher

FLOWS = [
    screening_flow(),
    screening_flow(greet_barge_in=PROTECTED, max_turns=3, on_limit="bye_limit"),
    screening_flow(greet_barge_in=REPEAT_ON_BARGE, max_turns=2),
    screening_flow(greet_barge_in=BargeIn(BargeInMode.OFF)),
    screening_flow(after_agent="callback"),
]
MATCHERS: list[IntentMatcher] = [build_matcher(f) for f in FLOWS]
PHRASES = ["yes", "no", "yes sure", "not interested", "are you a robot", "stop calling", "say that again",
           "tomorrow at 3 pm", "", "hmm", "no no", "speaking"]

# An action is (kind, argument); the driver turns it into an event valid *or not* for the moment.
actions = st.lists(
    st.one_of(
        st.tuples(st.just("speech"), st.none()),
        st.tuples(st.just("partial"), st.sampled_from(PHRASES)),
        st.tuples(st.just("final"), st.sampled_from(PHRASES)),
        st.tuples(st.just("dtmf"), st.sampled_from(list("0123456789*#"))),
        st.tuples(st.just("fire"), st.integers(0, 5)),
        st.tuples(st.just("fire_stale"), st.none()),
        st.tuples(st.just("prompt_started"), st.none()),
        st.tuples(st.just("prompt_finished"), st.booleans()),
        st.tuples(st.just("agent_ready"), st.none()),
        st.tuples(st.just("agent_failed"), st.none()),
        st.tuples(st.just("agent_took_over"), st.none()),
        st.tuples(st.just("agent_left"), st.none()),
        st.tuples(st.just("hangup"), st.none()),
        st.tuples(st.just("call_started"), st.none()),
    ),
    max_size=60,
)


class Tracker:
    """Runs the machine and checks every returned command against the rules."""

    def __init__(self, flow_index: int) -> None:
        self.m = DialogMachine(FLOWS[flow_index], matcher=MATCHERS[flow_index])
        self.now = 0.0
        self.armed: set[str] = set()
        self.plays: list[int] = []
        self.finished = False  # a TransferCall or HangUp was issued
        self.hangups = 0
        self.dispositions: list[str] = []

    def send(self, event: ev.Event) -> None:
        was_ended = self.m.ended
        if isinstance(event, ev.TimerFired):
            self.armed.discard(event.timer_id)
        for command in self.m.handle(event, self.now):
            self.check(command)
        if isinstance(event, ev.AgentTookOver) and not self.m.ended:
            self.finished = True  # the agent has the caller: the bot must not play
        if isinstance(event, ev.AgentLeft) and not self.m.ended and self.m.phase.value != "bridged":
            self.finished = False  # back to the bot (the flow's after_agent)
        if self.m.ended and not was_ended:
            self.dispositions.append(self.m.outcome.disposition)
        if was_ended:
            assert self.dispositions == [self.m.outcome.disposition], "disposition changed after the end"

    def check(self, command: ev.Command) -> None:
        if isinstance(command, ev.Play):
            assert not self.finished, f"played after a transfer or hang-up: {command}"
            self.plays.append(command.play_id)
        elif isinstance(command, ev.ArmTimer):
            assert command.fire_at >= self.now
            self.armed.add(command.timer_id)
        elif isinstance(command, ev.CancelTimer):
            self.armed.discard(command.timer_id)
        elif isinstance(command, (ev.TransferCall, ev.HangUp)):
            self.finished = True
            self.hangups += isinstance(command, ev.HangUp)

    def event_for(self, kind: str, arg: object) -> ev.Event:
        t, plays = self.now, self.plays
        timers = sorted(self.m.live_timers)
        match kind:
            case "speech":
                return ev.SpeechStarted(t)
            case "partial" | "final":
                return ev.Transcript(t, str(arg), final=kind == "final")
            case "dtmf":
                return ev.Dtmf(t, str(arg))
            case "fire" if timers:
                return ev.TimerFired(t, timers[int(str(arg)) % len(timers)])
            case "prompt_started" if plays:
                return ev.PromptStarted(t, plays[-1])
            case "prompt_finished" if plays:
                return ev.PromptFinished(t, plays[-1], bool(arg), 100)
            case "agent_ready":
                return ev.AgentReady(t, "a1")
            case "agent_failed":
                return ev.AgentFailed(t, "gone")
            case "agent_took_over":
                return ev.AgentTookOver(t, "a1")
            case "agent_left":
                return ev.AgentLeft(t, "a1")
            case "hangup":
                return ev.HungUp(t)
            case "call_started":
                return ev.CallStarted(t, {"name": "X"})
        return ev.TimerFired(t, "stale#0")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow_index=st.integers(0, len(FLOWS) - 1), steps=actions, gaps=st.lists(st.floats(0, 8), min_size=60, max_size=60))
def test_random_event_sequences_keep_the_rules(flow_index: int, steps: list[tuple[str, object]], gaps: list[float]) -> None:
    tracker = Tracker(flow_index)
    tracker.send(ev.CallStarted(0.0, {"name": "Ann"}))
    for (kind, arg), gap in zip(steps, gaps, strict=False):
        tracker.now += gap
        tracker.send(tracker.event_for(kind, arg))
    tracker.now += 1
    tracker.send(ev.HungUp(tracker.now))

    assert tracker.m.ended
    assert tracker.dispositions == [tracker.m.outcome.disposition] and tracker.m.outcome.disposition
    assert tracker.hangups <= 1
    assert tracker.armed == set(), f"timers left armed: {tracker.armed}"
    assert tracker.m.live_timers == set()
