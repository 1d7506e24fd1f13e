"""HandoffMachine, sans-I/O: each mode step by step, illegal events, and invariants over random event orders."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicebot.dialog import events as ev
from voicebot.handoff.machine import TRANSITIONS, HandoffError, HandoffMachine, State
from voicebot.handoff.protocol import (
    AgentAnswered,
    AgentHungUp,
    AgentKey,
    AgentListening,
    AgentReserved,
    BreakWhisper,
    Bridge,
    CallEnded,
    CallerBridged,
    CallerParked,
    Eavesdrop,
    HandoffCommand,
    HandoffEvent,
    HandoffRequested,
    HandoffSettings,
    HangUpAgent,
    KeepCallerAfterBridge,
    LegFailed,
    MarkAgent,
    NoAgentFree,
    OriginateAgent,
    RearmCaller,
    RecordOutcome,
    ReleaseAgent,
    ReleaseStallWatch,
    RenderWhisper,
    ReserveAgent,
    ReserveDue,
    ResumeBot,
    RetryReserveAt,
    ScreenPop,
    SendTalkKey,
    StopBotAudio,
    TellDialog,
    TransferFailed,
    TransferRequested,
    WhisperDone,
)

LEG = "agent-leg-1"
SAM = AgentReserved(0.1, "sam", "Sam", "user/1001")


class Driver:
    """Feeds events at their own time; keeps every command."""

    def __init__(self, mode: str = "talk", eavesdrop_ok: bool = True, max_attempts: int = 3) -> None:
        self.machine = HandoffMachine(HandoffSettings(mode=mode, max_attempts=max_attempts), eavesdrop_ok=eavesdrop_ok)
        self.commands: list[HandoffCommand] = []

    def __call__(self, event: HandoffEvent) -> list[HandoffCommand]:
        out = self.machine.handle(event, event.at)
        self.commands += out
        return out

    def ready(self, listen: bool = True) -> None:
        """Prepare → reserved → answered → whisper done (→ listening)."""
        self(HandoffRequested(0.0, "sales", {"level": "A"}))
        self(SAM)
        self(AgentAnswered(0.5, LEG))
        self(WhisperDone(1.0, LEG))
        if listen:
            self(AgentListening(1.1, LEG))


def state_of(d: Driver) -> State:
    return d.machine.state


def names(commands: list[HandoffCommand]) -> list[str]:
    return [type(c).__name__ if not isinstance(c, TellDialog) else type(c.event).__name__ for c in commands]


def test_talk_mode_step_by_step() -> None:
    d = Driver("talk")
    assert names(d(HandoffRequested(0.0, "sales", {"level": "A"}))) == ["KeepCallerAfterBridge", "ReserveAgent"]
    out = d(SAM)
    assert out[1:] == [RenderWhisper(LEG, {"level": "A"}), OriginateAgent(LEG, "sam", "user/1001", 20.0)]
    assert out[0] == ScreenPop("prepare", "sam", "Sam", "user/1001", "sales", {"level": "A"})
    assert names(d(AgentAnswered(0.5, LEG))) == ["AgentReady", "PlayWhisper"]
    assert d(WhisperDone(1.0, LEG)) == [Eavesdrop(LEG)]
    assert d(AgentListening(1.1, LEG)) == [MarkAgent("sam", "listening")]
    assert d(TransferRequested(2.0)) == [SendTalkKey(LEG, "2")]
    assert state_of(d) is State.TRANSFERRING
    assert names(d(AgentKey(2.03, LEG, "2"))) == ["StopBotAudio", "MarkAgent", "ScreenPop"]
    assert state_of(d) is State.CONNECTED and not d.machine.owns_rearm
    assert names(d(AgentHungUp(9.0, LEG))) == ["ReleaseAgent", "ResumeBot", "AgentLeft"]
    assert state_of(d) is State.IDLE
    [record] = d(CallEnded(12.0, "caller_hangup"))
    assert isinstance(record, RecordOutcome)
    figures = record.figures.to_dict()
    assert (figures["mode"], figures["outcome"], figures["handoff_ms"]) == ("talk", "connected", 30.0)
    assert figures["listening_at"] < figures["transfer_at"] < figures["connected_at"] < figures["agent_left_at"]


def test_bridge_mode_rearms_once_whichever_comes_first() -> None:
    for park_first in (True, False):
        d = Driver("bridge")
        d.ready()
        assert d(TransferRequested(2.0)) == [Bridge(LEG)]
        assert d.machine.owns_rearm, "from the Bridge on, the stall watch stands down"
        assert names(d(CallerBridged(2.06))) == ["MarkAgent", "ScreenPop"]
        if park_first:
            assert d(CallerParked(5.0)) == []
            out = d(AgentHungUp(5.01, LEG))
        else:
            assert names(d(AgentHungUp(5.0, LEG))) == ["ReleaseAgent"]
            assert state_of(d) is State.LEFT_BRIDGE and d.machine.owns_rearm
            out = d(CallerParked(5.01))
        assert names(out)[-2:] == ["RearmCaller", "AgentLeft"] and not d.machine.owns_rearm
        assert d.commands.count(RearmCaller()) == 1 and StopBotAudio() not in d.commands
        assert d(CallerParked(6.0)) == [], "a later park is not the bridge's"


def test_takeover_by_the_agents_key_and_other_keys_do_nothing() -> None:
    d = Driver("talk")
    d.ready()
    assert d(AgentKey(3.0, LEG, "5")) == []
    assert names(d(AgentKey(3.1, LEG, "2"))) == ["AgentTookOver", "StopBotAudio", "MarkAgent", "ScreenPop"]
    assert d.machine.figures.mode == "takeover" and d.machine.figures.transfer_at == 3.1
    out = d(CallEnded(8.0))
    assert out[:2] == [HangUpAgent(LEG), ReleaseAgent("sam", wrap_up=True)] and isinstance(out[2], RecordOutcome)


def test_a_transfer_before_listening_bridges_and_cuts_the_whisper() -> None:
    d = Driver("talk")
    d(HandoffRequested(0.0, "sales"))
    d(SAM)
    d(AgentAnswered(0.5, LEG))
    assert d(TransferRequested(0.7)) == [BreakWhisper(LEG), Bridge(LEG)]
    assert d(WhisperDone(0.8, LEG)) == [], "the whisper cut short comes back: nothing more to do"
    d(CallerBridged(0.8))
    assert d.machine.figures.mode == "bridge"


def test_l16_callers_get_no_eavesdrop_and_are_bridged() -> None:
    d = Driver("talk", eavesdrop_ok=False)
    d.ready(listen=False)
    assert Eavesdrop(LEG) not in d.commands
    assert d(TransferRequested(2.0)) == [Bridge(LEG)]


def test_busy_agents_are_skipped_then_the_dialog_hears_failure() -> None:
    d = Driver("bridge", max_attempts=2)
    d(HandoffRequested(0.0, "sales"))
    d(SAM)
    out = d(LegFailed(0.4, LEG, "USER_BUSY"))
    assert out == [ReleaseAgent("sam", wrap_up=False), ReserveAgent("sales", "")], "not ready yet: the dialog hears nothing"
    d(AgentReserved(0.5, "ana", "Ana", "user/1002"))
    d(AgentAnswered(0.9, "agent-leg-2"))
    assert names(d(AgentHungUp(1.5, "agent-leg-2"))) == ["ReleaseAgent", "AgentFailed", "AgentFailed"]
    assert state_of(d) is State.IDLE and d.machine.figures.outcome == "agent_failed"
    assert d.machine.figures.attempts == [{"agent": "sam", "result": "USER_BUSY"},
                                          {"agent": "ana", "result": "agent_hangup"}]
    assert d(AgentAnswered(2.0, LEG)) == [HangUpAgent(LEG)], "a failed leg answering late is hung up"


def test_nobody_free_asks_again_and_an_unknown_group_gives_up() -> None:
    d = Driver()
    d(HandoffRequested(0.0, "sales"))
    assert d(NoAgentFree(0.0)) == [RetryReserveAt(0.2)] and state_of(d) is State.WANTED
    assert d(ReserveDue(0.2)) == [ReserveAgent("sales", "")]
    d(NoAgentFree(0.2))
    [record] = d(CallEnded(1.0))
    assert isinstance(record, RecordOutcome) and record.figures.outcome == "no_agent"
    d = Driver()
    d(HandoffRequested(0.0, "nosuch"))
    out = d(NoAgentFree(0.0, "no_group"))
    assert isinstance(out[0], TellDialog) and out[0].event == ev.AgentFailed(0.0, "no_group")


def test_the_caller_hanging_up_while_the_agent_rings_frees_both() -> None:
    d = Driver()
    d(HandoffRequested(0.0, "sales"))
    d(SAM)
    out = d(CallEnded(0.3, "caller_hangup"))
    assert out[:2] == [HangUpAgent(LEG), ReleaseAgent("sam", wrap_up=False)]
    assert isinstance(out[2], RecordOutcome) and out[2].figures.outcome == "caller_gone"
    assert d(AgentAnswered(0.4, LEG)) == [HangUpAgent(LEG)], "answered after the end: hung up"


def test_a_reservation_answered_after_the_end_is_released() -> None:
    d = Driver()
    d(HandoffRequested(0.0, "sales"))
    d(CallEnded(0.1))
    assert d(SAM) == [ReleaseAgent("sam", wrap_up=False)]


def test_a_failed_transfer_hangs_up_and_tries_the_next_agent() -> None:
    d = Driver("bridge")
    d.ready()
    d(TransferRequested(2.0))
    out = d(TransferFailed(2.1, LEG, "timeout"))
    assert out[:3] == [HangUpAgent(LEG), ReleaseAgent("sam", wrap_up=False), ReleaseStallWatch()]
    assert not d.machine.owns_rearm and state_of(d) is State.RESERVING


@pytest.mark.parametrize(("event", "message"), [
    (AgentAnswered(1.0, "nosuch"), "never originated"),
    (SAM, "without a ReserveAgent"),
    (CallerParked(0.0), None),  # legal and ignored while idle
    (AgentHungUp(1.0, "nosuch"), "never originated"),
])
def test_illegal_events_raise_a_clear_error_and_change_nothing(event: HandoffEvent, message: str | None) -> None:
    d = Driver()
    if message is None:
        assert d(event) == []
        return
    with pytest.raises(HandoffError, match=message):
        d(event)
    assert state_of(d) is State.IDLE and d.commands == []


def test_after_the_end_the_machine_refuses_what_it_cannot_take() -> None:
    d = Driver()
    d(CallEnded(0.0))
    for event in (CallEnded(0.1), HandoffRequested(0.1, "sales"), TransferRequested(0.1)):
        with pytest.raises(HandoffError, match="closed"):
            d(event)
    d = Driver()
    d.ready()
    with pytest.raises(HandoffError, match="AgentAnswered is not expected in state listening"):
        d(AgentAnswered(2.0, LEG))


def test_the_table_names_a_handler_that_exists_for_every_pair() -> None:
    handlers = {name for table in TRANSITIONS.values() for name in table.values()} - {"ignore"}
    assert all(callable(getattr(HandoffMachine, "_" + name, None)) for name in handlers), handlers
    assert set(TRANSITIONS) == set(State)


# ------------------------------------------------------------------ random event orders

LEGS = ["agent-leg-1", "agent-leg-2", "agent-leg-3"]
EVENT_MAKERS: list[Callable[[float, str], HandoffEvent]] = [
    lambda t, leg: HandoffRequested(t, "sales"),
    lambda t, leg: TransferRequested(t),
    lambda t, leg: AgentReserved(t, "sam" if leg.endswith("1") else "ana", "A", "user/1"),
    lambda t, leg: NoAgentFree(t),
    lambda t, leg: ReserveDue(t),
    lambda t, leg: AgentAnswered(t, leg),
    lambda t, leg: LegFailed(t, leg, "NO_ANSWER"),
    lambda t, leg: WhisperDone(t, leg),
    lambda t, leg: AgentListening(t, leg),
    lambda t, leg: AgentKey(t, leg, "2"),
    lambda t, leg: AgentHungUp(t, leg),
    lambda t, leg: CallerBridged(t),
    lambda t, leg: TransferFailed(t, leg, "timeout"),
    lambda t, leg: CallerParked(t),
]
NATURAL: dict[State, Callable[[float, str, HandoffMachine], HandoffEvent]] = {  # the usual next event in each state
    State.IDLE: lambda t, leg, m: HandoffRequested(t, "sales"),
    State.WANTED: lambda t, leg, m: ReserveDue(t),
    State.RESERVING: lambda t, leg, m: AgentReserved(t, "sam", "Sam", "user/1001"),
    State.RINGING: lambda t, leg, m: AgentAnswered(t, leg),
    State.ANSWERED: lambda t, leg, m: WhisperDone(t, leg) if leg in m._whispers else AgentListening(t, leg),
    State.LISTENING: lambda t, leg, m: TransferRequested(t),
    State.TRANSFERRING: lambda t, leg, m: AgentKey(t, leg, "2") if m.via == "talk" else CallerBridged(t),
    State.CONNECTED: lambda t, leg, m: AgentHungUp(t, leg) if t * 10 % 2 else CallerParked(t),
    State.LEFT_BRIDGE: lambda t, leg, m: CallerParked(t),
    State.DONE: lambda t, leg, m: CallEnded(t),
}
# (which, leg): which < 0 is the usual next event; leg "" is the current leg
steps = st.lists(st.tuples(st.one_of(st.just(-1), st.integers(-1, len(EVENT_MAKERS) - 1)),
                           st.sampled_from(["", "", *LEGS])), max_size=60)


def run_random(mode: str, sequence: list[tuple[int, str]]) -> tuple[Driver, list[HandoffEvent], set[str]]:
    """Feed the sequence (illegal events raise and are skipped), then end the call; the events that were taken and
    the legs that were bridged to the caller."""
    d = Driver(mode)
    taken: list[HandoffEvent] = []
    bridged: set[str] = set()
    for i, (which, leg) in enumerate(sequence):
        leg = leg or d.machine.leg or LEGS[0]
        t = round(i * 0.1, 1)
        event = NATURAL[d.machine.state](t, leg, d.machine) if which < 0 else EVENT_MAKERS[which](t, leg)
        state, count = d.machine.state, len(d.commands)
        try:
            d(event)
        except HandoffError:
            assert d.machine.state is state and len(d.commands) == count, "an illegal event changes nothing"
            continue
        taken.append(event)
        if state_of(d) is State.CONNECTED and d.machine.figures.mode == "bridge":
            bridged.add(d.machine.leg)
    d(CallEnded(len(sequence) * 0.1 + 1, "caller_hangup"))
    return d, taken, bridged


def check_bot_audio(commands: list[HandoffCommand]) -> None:
    """Silenced from StopBotAudio until ResumeBot; ResumeBot only after AgentLeft's release; none after the end."""
    muted = False
    for i, command in enumerate(commands):
        if isinstance(command, StopBotAudio):
            assert not muted
            muted = True
        elif isinstance(command, ResumeBot):
            assert muted, "resumed without having been silenced"
            after = commands[i + 1]
            assert isinstance(after, TellDialog) and isinstance(after.event, ev.AgentLeft)
            muted = False
    end = next(i for i, c in enumerate(commands) if isinstance(c, RecordOutcome))
    assert not any(isinstance(c, ResumeBot | TellDialog) for c in commands[end:])


def check_legs(commands: list[HandoffCommand], taken: list[HandoffEvent], connected: set[str]) -> None:
    """Every leg originated is bridged to the caller, hung up by the machine, or ended by itself."""
    started = {c.leg for c in commands if isinstance(c, OriginateAgent)}
    hung_up = {c.leg for c in commands if isinstance(c, HangUpAgent)}
    ended = {e.leg for e in taken if isinstance(e, LegFailed | AgentHungUp)}
    assert started <= hung_up | ended | connected, started - hung_up - ended - connected


def check_agents(commands: list[HandoffCommand], taken: list[HandoffEvent]) -> None:
    """Every reservation the machine got is released exactly once."""
    reserved = [e.agent_id for e in taken if isinstance(e, AgentReserved)]
    released = [c.agent_id for c in commands if isinstance(c, ReleaseAgent)]
    assert sorted(reserved) == sorted(released)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mode=st.sampled_from(["talk", "bridge"]), sequence=steps)
def test_invariants_hold_over_random_event_orders(mode: str, sequence: list[tuple[int, str]]) -> None:
    d, taken, bridged = run_random(mode, sequence)
    commands = d.commands
    assert sum(isinstance(c, RecordOutcome) for c in commands) == 1 and isinstance(commands[-1], RecordOutcome)
    check_bot_audio(commands)
    check_legs(commands, taken, bridged)
    check_agents(commands, taken)
    assert commands.count(KeepCallerAfterBridge()) <= 1
    assert sum(isinstance(c, RearmCaller) for c in commands) <= sum(isinstance(c, Bridge) for c in commands)
    assert not d.machine.owns_rearm or any(isinstance(c, Bridge) for c in commands)
    assert d.machine.done and not d.machine.owns_rearm
