"""HandoffMachine: one call's handoff to a human agent, sans-I/O. Events with time stamps in, commands out.

Rules (the whole contract):

1. :meth:`HandoffMachine.handle` takes one event (:mod:`voicebot.handoff.protocol`) and ``now`` and returns the
   commands it causes. Nothing here reads a clock, touches a socket, a thread or the agent pool: the executor
   (FreeSWITCH: :mod:`voicebot.esl.handoff`; the simulator: :mod:`voicebot.sim.agents`) carries the commands out
   and answers with events, in the order it sees them.
2. What an event does depends on the state, and :data:`TRANSITIONS` says it all: an event the table does not list
   for the current state is illegal and raises :class:`HandoffError` (the machine is left as it was). ``IGNORE``
   marks the races that are legal and change nothing (a CHANNEL_PARK while no bridge is up, a second prepare).
3. Leg events carry the leg's id. A leg the machine never originated is illegal. A leg it gave up on (failed,
   hung up, replaced) is stale: its late answer is hung up, anything else from it is dropped.
4. An agent is wanted from the first :class:`HandoffRequested`: reserve, ring (up to ``max_attempts`` agents),
   whisper, listen. While none is free it asks again every ``retry_s``. The dialog hears ``AgentReady`` when the
   agent answers, ``AgentFailed`` when they are lost before the caller reaches them or nobody can be had.
5. :class:`TransferRequested` reaches a ready agent: in ``talk`` mode, when they listen, by eavesdrop's talk key
   (no gap; the bot's frames go silent: :class:`StopBotAudio`); otherwise by a bridge. A listening agent may take
   the call with the takeover key (mode ``takeover``). Before the agent is ready, the dialog holds.
6. From a :class:`Bridge` until :class:`RearmCaller` (or :class:`ReleaseStallWatch`) the caller's stream is the
   handoff's: after the agent leaves a bridge the caller parks again and is re-armed exactly once, whichever of the
   agent's hang-up and the caller's park comes first.
7. The bot is never heard while an agent has the caller: :class:`ResumeBot` comes only when the agent has left,
   and never after :class:`CallEnded`.
8. :class:`CallEnded` frees everything: a leg not talking to the caller is hung up, the reserved agent is
   released, and :class:`RecordOutcome` goes out, exactly once per call. Every agent leg originated is bridged to
   the caller or hung up (by the machine, or it ended by itself). A reservation answered after the end is
   released at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from voicebot.dialog import events as ev
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
    HandoffFigures,
    HandoffRequested,
    HandoffSettings,
    HangUpAgent,
    KeepCallerAfterBridge,
    LegEvent,
    LegFailed,
    MarkAgent,
    NoAgentFree,
    OriginateAgent,
    PlayWhisper,
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

LEG_EVENTS = (AgentAnswered, LegFailed, WhisperDone, AgentListening, AgentKey, AgentHungUp, TransferFailed)


class HandoffError(RuntimeError):
    """An event the handoff machine cannot take in its state (an executor's mistake, never a caller's)."""


class State(StrEnum):
    """Where the call's handoff stands."""

    IDLE = "idle"  # no agent wanted (yet, or again after one left, or after giving up)
    WANTED = "wanted"  # an agent is wanted, none is free: ask again shortly
    RESERVING = "reserving"  # asked the pool for an agent
    RINGING = "ringing"  # the agent's leg is originated
    ANSWERED = "answered"  # the agent picked up (whisper)
    LISTENING = "listening"  # the agent listens to the call
    TRANSFERRING = "transferring"  # talk key sent, or bridge asked for
    CONNECTED = "connected"  # the caller is with the agent
    LEFT_BRIDGE = "left_bridge"  # the agent left a bridge; the caller's park is awaited to re-arm
    DONE = "done"  # the call is over; the outcome is recorded


IGNORE = "ignore"
S = State
_ALWAYS: dict[type, str] = {CallEnded: "close"}
_CALLER_QUIET: dict[type, str] = {CallerBridged: IGNORE, CallerParked: IGNORE, ReserveDue: IGNORE}
_AGENT_ON_THE_WAY: dict[type, str] = {HandoffRequested: IGNORE, TransferRequested: IGNORE, **_CALLER_QUIET, **_ALWAYS}

# state -> {event type -> handler}; a pair not listed is illegal (rule 2). Handlers say the next state.
TRANSITIONS: dict[State, dict[type, str]] = {
    S.IDLE: {HandoffRequested: "want", TransferRequested: IGNORE, **_CALLER_QUIET, **_ALWAYS},
    S.WANTED: {HandoffRequested: "want", TransferRequested: IGNORE, **_CALLER_QUIET, ReserveDue: "reserve", **_ALWAYS},
    S.RESERVING: {HandoffRequested: "regroup", TransferRequested: IGNORE, **_CALLER_QUIET, AgentReserved: "ring",
                  NoAgentFree: "no_agent_free", **_ALWAYS},
    S.RINGING: {**_AGENT_ON_THE_WAY, AgentAnswered: "answered", LegFailed: "leg_failed"},
    S.ANSWERED: {**_AGENT_ON_THE_WAY, TransferRequested: "transfer", WhisperDone: "whispered",
                 AgentListening: "listening", AgentKey: IGNORE, AgentHungUp: "leg_failed", LegFailed: IGNORE},
    S.LISTENING: {**_AGENT_ON_THE_WAY, TransferRequested: "transfer", AgentListening: IGNORE, AgentKey: "agent_key",
                  AgentHungUp: "leg_failed", LegFailed: IGNORE},
    S.TRANSFERRING: {**_AGENT_ON_THE_WAY, WhisperDone: IGNORE, AgentListening: IGNORE, AgentKey: "agent_key",
                     CallerBridged: "bridged", TransferFailed: "transfer_failed", AgentHungUp: "leg_failed",
                     LegFailed: IGNORE},
    S.CONNECTED: {**_AGENT_ON_THE_WAY, WhisperDone: IGNORE, AgentListening: IGNORE, AgentKey: IGNORE,
                  TransferFailed: IGNORE, LegFailed: IGNORE, CallerParked: "parked", AgentHungUp: "agent_left"},
    S.LEFT_BRIDGE: {**_AGENT_ON_THE_WAY, WhisperDone: IGNORE, AgentKey: IGNORE, TransferFailed: IGNORE,
                    LegFailed: IGNORE, CallerParked: "back_from_bridge"},
    S.DONE: {},  # only late answers (rule 8) and stale legs (rule 3) are taken after the end
}


@dataclass(frozen=True)
class _Agent:
    id: str
    name: str
    endpoint: str


class HandoffMachine:
    """One call's handoff (see the module docstring). ``prefer``: the agent to ring first when free;
    ``eavesdrop_ok``: the caller's codec allows eavesdrop (not L16 on unicast); ``new_leg``: leg ids."""

    def __init__(self, settings: HandoffSettings | None = None, *, prefer: str = "", eavesdrop_ok: bool = True,
                 new_leg: Callable[[], str] | None = None) -> None:
        self.settings = settings or HandoffSettings()
        self.prefer, self.eavesdrop_ok = prefer, eavesdrop_ok
        counter = itertools.count(1)
        self._new_leg = new_leg or (lambda: f"agent-leg-{next(counter)}")
        self.state = State.IDLE
        self.figures = HandoffFigures()
        self.snapshot: dict[str, object] = {}
        self.agent: _Agent | None = None
        self.leg = ""  # the current agent leg ("" when none)
        self.legs: set[str] = set()  # every leg originated
        self.via = ""  # talk | bridge: how the current transfer goes
        self._reserving = 0  # ReserveAgent commands not answered yet
        self._whispers: set[str] = set()  # legs with a PlayWhisper not answered yet
        self._tried: set[str] = set()
        self._attempts = 0
        self._holds_stream = False  # a Bridge was sent and no RearmCaller/ReleaseStallWatch yet (rule 6)
        self._caller_parked = False  # the caller parked before the agent's hang-up was seen
        self._muted = False
        self._out: list[HandoffCommand] = []

    @property
    def done(self) -> bool:
        """True once :class:`CallEnded` was handled."""
        return self.state is State.DONE

    @property
    def owns_rearm(self) -> bool:
        """True while the caller's media stream is the handoff's to re-arm (rule 6): the stall watch stands down."""
        return self._holds_stream

    def handle(self, event: HandoffEvent, now: float) -> list[HandoffCommand]:
        """Apply ``event`` (at ``now``, s on the call's clock); return the commands it causes, in order."""
        handler = self._handler_for(event)  # raises before anything changes
        if isinstance(event, WhisperDone):
            self._whispers.discard(event.leg)
        if handler != IGNORE:
            getattr(self, "_" + handler)(event, now)
        out, self._out = self._out, []
        return out

    def _handler_for(self, event: HandoffEvent) -> str:
        """The handler name for ``event`` now (rules 2, 3 and 8), or HandoffError."""
        name = type(event).__name__
        if isinstance(event, LEG_EVENTS):
            if event.leg not in self.legs:
                raise HandoffError(f"{name} for leg {event.leg!r}, which this handoff never originated")
            if event.leg != self.leg:
                return "stale_leg"
        if isinstance(event, WhisperDone) and event.leg not in self._whispers:
            raise HandoffError(f"WhisperDone for leg {event.leg!r} without a PlayWhisper")
        if isinstance(event, AgentReserved | NoAgentFree):
            if self._reserving == 0:
                raise HandoffError(f"{name} without a ReserveAgent")
            if self.state is State.DONE:
                return "late_reservation"
        handler = TRANSITIONS[self.state].get(type(event))
        if handler is None:
            raise HandoffError(f"{name} is not expected in state {self.state.value}"
                               + (" (the handoff is closed)" if self.state is State.DONE else ""))
        return handler

    # ------------------------------------------------------------- wanting an agent

    def _want(self, event: HandoffRequested, now: float) -> None:
        if self.state is State.IDLE:  # a new request (the first, or after giving up): a fresh set of attempts
            self._tried.clear()
            self._attempts = 0
        self.snapshot = dict(event.snapshot)
        if self.figures.prepare_at is None:
            self.figures.prepare_at = now
            self._out.append(KeepCallerAfterBridge())
        self.figures.group = event.group
        self._reserve(event, now)

    def _regroup(self, event: HandoffRequested, now: float) -> None:
        self.snapshot, self.figures.group = dict(event.snapshot), event.group  # the next reservation asks for it

    def _reserve(self, event: object, now: float) -> None:
        if self._attempts >= self.settings.max_attempts:
            self._give_up("agent_failed", now)
            return
        prefer = self.prefer if self.prefer not in self._tried else ""
        self._reserving += 1
        self.state = State.RESERVING
        self._out.append(ReserveAgent(self.figures.group, prefer))

    def _no_agent_free(self, event: NoAgentFree, now: float) -> None:
        self._reserving -= 1
        if event.reason == "no_group":
            self._give_up("no_group", now)
            return
        self.state = State.WANTED
        self._out.append(RetryReserveAt(now + self.settings.retry_s))

    def _late_reservation(self, event: AgentReserved | NoAgentFree, now: float) -> None:
        self._reserving -= 1
        if isinstance(event, AgentReserved):
            self._out.append(ReleaseAgent(event.agent_id, wrap_up=False))

    def _give_up(self, outcome: str, now: float) -> None:
        self.state, self.figures.outcome = State.IDLE, outcome
        self._out.append(TellDialog(ev.AgentFailed(now, outcome)))

    def _ring(self, event: AgentReserved, now: float) -> None:
        self._reserving -= 1
        agent = self.agent = _Agent(event.agent_id, event.name, event.endpoint)
        self.leg = self._new_leg()
        self.legs.add(self.leg)
        self._tried.add(agent.id)
        self._attempts += 1
        self.state = State.RINGING
        self.figures.reserved_at, self.figures.agent_id, self.figures.agent_name = now, agent.id, agent.name
        self._out += [self._pop("prepare"), RenderWhisper(self.leg, dict(self.snapshot)),
                      OriginateAgent(self.leg, agent.id, agent.endpoint, self.settings.ring_timeout_s)]

    def _pop(self, kind: str) -> ScreenPop:
        assert self.agent is not None
        return ScreenPop(kind, self.agent.id, self.agent.name, self.agent.endpoint, self.figures.group,
                         dict(self.snapshot))

    # ------------------------------------------------------------- the agent's leg

    def _answered(self, event: AgentAnswered, now: float) -> None:
        assert self.agent is not None
        self.state, self.figures.agent_answered_at = State.ANSWERED, now
        self._whispers.add(self.leg)
        self._out += [TellDialog(ev.AgentReady(now, self.agent.id)), PlayWhisper(self.leg)]

    def _whispered(self, event: WhisperDone, now: float) -> None:
        if self.eavesdrop_ok:  # L16 + eavesdrop + unicast leaves the caller stuck: such calls are bridged
            self._out.append(Eavesdrop(self.leg))

    def _listening(self, event: AgentListening, now: float) -> None:
        assert self.agent is not None
        self.state, self.figures.listening_at = State.LISTENING, now
        self._out.append(MarkAgent(self.agent.id, "listening"))

    def _stale_leg(self, event: LegEvent, now: float) -> None:
        self._whispers.discard(event.leg)
        if isinstance(event, AgentAnswered):
            self._out.append(HangUpAgent(event.leg))

    def _leg_failed(self, event: LegFailed | AgentHungUp | TransferFailed, now: float) -> None:
        """The agent leg is lost before the caller reached the agent: tell the dialog if it was ready; next agent."""
        assert self.agent is not None
        reason = event.reason if isinstance(event, LegFailed) else "agent_hangup"
        was_ready = self.state in (State.ANSWERED, State.LISTENING, State.TRANSFERRING)
        self._out.append(ReleaseAgent(self.agent.id, wrap_up=False))
        if self._holds_stream:
            self._holds_stream = False
            self._out.append(ReleaseStallWatch())
        self.figures.attempts.append({"agent": self.agent.id, "result": reason})
        self._whispers.discard(self.leg)
        self.agent, self.leg, self.via = None, "", ""
        if was_ready:
            self._out.append(TellDialog(ev.AgentFailed(now, reason)))
        self._reserve(event, now)

    # ------------------------------------------------------------- the transfer

    def _transfer(self, event: TransferRequested, now: float) -> None:
        self.snapshot = dict(event.snapshot) or self.snapshot
        self.figures.transfer_at = now
        talk = self.state is State.LISTENING and self.settings.mode == "talk"
        self.state, self.via = State.TRANSFERRING, "talk" if talk else "bridge"
        if talk:
            self._out.append(SendTalkKey(self.leg, self.settings.takeover_digit))
            return
        if self.leg in self._whispers:  # the caller comes first: cut the whisper short
            self._out.append(BreakWhisper(self.leg))
        self._holds_stream = True
        self._out.append(Bridge(self.leg))

    def _transfer_failed(self, event: TransferFailed, now: float) -> None:
        self._out.append(HangUpAgent(self.leg))
        self._leg_failed(LegFailed(event.at, event.leg, "transfer_failed"), now)

    def _agent_key(self, event: AgentKey, now: float) -> None:
        """Eavesdrop's talk key: our own transfer coming back, or the listening agent taking the call."""
        if event.digit != self.settings.takeover_digit:
            return
        if self.state is State.TRANSFERRING and self.via == "talk":
            self._connected("talk", now)
        elif self.state is State.LISTENING:
            assert self.agent is not None
            self.figures.transfer_at = now
            self._out.append(TellDialog(ev.AgentTookOver(now, self.agent.id)))
            self._connected("takeover", now)

    def _bridged(self, event: CallerBridged, now: float) -> None:
        if self.via == "bridge":
            self._connected("bridge", now)

    def _connected(self, mode: str, now: float) -> None:
        assert self.agent is not None
        self.state, self.figures.mode, self.figures.outcome = State.CONNECTED, mode, "connected"
        self.figures.connected_at = now
        if mode != "bridge":  # the caller hears the agent through eavesdrop: the bot's frames go silent now
            self._muted = True
            self._out.append(StopBotAudio())
        self._out += [MarkAgent(self.agent.id, "talking"), self._pop("bridge")]

    # ------------------------------------------------------------- the agent leaves

    def _parked(self, event: CallerParked, now: float) -> None:
        if self.figures.mode == "bridge":
            self._caller_parked = True  # the agent's hang-up (its own socket) comes after: re-arm then

    def _agent_left(self, event: AgentHungUp, now: float) -> None:
        assert self.agent is not None
        self.figures.agent_left_at = now
        self._out.append(ReleaseAgent(self.agent.id, wrap_up=True))
        if self.figures.mode != "bridge":
            self._back_to_bot(now)
        elif self._caller_parked:
            self._back_from_bridge(event, now)
        else:
            self.state = State.LEFT_BRIDGE  # the caller's CHANNEL_PARK follows (park_after_bridge)

    def _back_from_bridge(self, event: object, now: float) -> None:
        self._caller_parked, self._holds_stream = False, False
        self._out.append(RearmCaller())
        self._back_to_bot(now)

    def _back_to_bot(self, now: float) -> None:
        agent_id = self.agent.id if self.agent else ""
        self.agent, self.leg, self.via, self.state = None, "", "", State.IDLE
        self._tried.clear()
        self._attempts = 0
        if self._muted:
            self._muted = False
            self._out.append(ResumeBot())
        self._out.append(TellDialog(ev.AgentLeft(now, agent_id)))

    # ------------------------------------------------------------- the end

    def _close(self, event: CallEnded, now: float) -> None:
        state, agent = self.state, self.agent
        if state in (State.WANTED, State.RESERVING):
            self.figures.outcome = self.figures.outcome or "no_agent"
        elif state in (State.RINGING, State.ANSWERED, State.LISTENING, State.TRANSFERRING):
            self.figures.outcome = self.figures.outcome or "caller_gone"
            self._out.append(HangUpAgent(self.leg))
        elif state is State.CONNECTED and self.figures.mode != "bridge":
            self._out.append(HangUpAgent(self.leg))  # eavesdrop talk: the agent's leg is bridged to nothing
        if agent is not None and state is not State.LEFT_BRIDGE:
            self._out.append(ReleaseAgent(agent.id, wrap_up=state is State.CONNECTED))
        self.agent, self.leg, self.state = None, "", State.DONE
        self._whispers.clear()
        self._holds_stream = False  # the call is over: nobody re-arms
        self._out.append(RecordOutcome(self.figures))
