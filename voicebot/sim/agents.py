"""The simulated agent: the executor of the call's handoff machine in ``voicebot simulate``.

The simulator runs the same :class:`~voicebot.handoff.machine.HandoffMachine` as FreeSWITCH (inside the call's
:class:`~voicebot.callcore.CallCore`); this executor answers its commands the way FreeSWITCH and a human agent
would, on the call's virtual clock: an agent is always free, their phone answers ``ready_ms`` after it rings (or
never: it fails with ``NO_ANSWER`` after ``ring_s``), eavesdrop and the talk key come back after one frame, a
bridge after ``bridge_s``, and the caller hangs up ``talk_s`` after being put through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from voicebot.dialog import events as ev
from voicebot.handoff.protocol import (
    AgentAnswered,
    AgentKey,
    AgentListening,
    AgentReserved,
    Bridge,
    CallerBridged,
    Eavesdrop,
    HandoffCommand,
    HandoffEvent,
    HandoffFigures,
    LegFailed,
    OriginateAgent,
    PlayWhisper,
    RecordOutcome,
    ReserveAgent,
    ReserveDue,
    RetryReserveAt,
    SendTalkKey,
    WhisperDone,
)

if TYPE_CHECKING:
    from voicebot.call import CallSession

FRAME_S = 0.02  # eavesdrop and the talk key's DTMF come back one frame later (FreeSWITCH: ~20 ms)

Schedule = Callable[[float, ev.Event | HandoffEvent], None]  # deliver an event at its time (s)


@dataclass
class SimAgents:
    """Simulated agents (see the module docstring). ``ready_ms``: ring → answer (None: nobody answers)."""

    ready_ms: int | None = 1500
    agent_id: str = "agent-1"
    talk_s: float = 1.0  # the caller talks to the agent this long, then hangs up
    ring_s: float = 1.0  # an unanswered phone fails after this
    bridge_s: float = 0.06  # uuid_bridge → CHANNEL_BRIDGE
    figures: HandoffFigures = field(default_factory=HandoffFigures)  # the handoff's outcome, once the call is over

    def __call__(self, command: HandoffCommand, session: CallSession) -> None:
        """The audio simulator's hook (:class:`~voicebot.call.CallSession`): answers go to the call's core."""
        self.answer(command, session.core.now, session.schedule)

    def answer(self, command: HandoffCommand, now: float, schedule: Schedule) -> None:
        """Carry out ``command`` issued at ``now`` (s): ``schedule(at, event)`` delivers each answer at its time."""
        match command:
            case ReserveAgent():
                schedule(now, AgentReserved(now, self.agent_id, "Agent", f"sim/{self.agent_id}"))
            case RetryReserveAt(at=at):
                schedule(at, ReserveDue(at))
            case OriginateAgent(leg=leg) if self.ready_ms is None:
                schedule(now + self.ring_s, LegFailed(now + self.ring_s, leg, "NO_ANSWER"))
            case OriginateAgent(leg=leg):
                at = now + (self.ready_ms or 0) / 1000
                schedule(at, AgentAnswered(at, leg))
            case PlayWhisper(leg=leg):
                schedule(now, WhisperDone(now, leg))
            case Eavesdrop(leg=leg):
                schedule(now + FRAME_S, AgentListening(now + FRAME_S, leg))
            case SendTalkKey(leg=leg, digit=digit):
                schedule(now + FRAME_S, AgentKey(now + FRAME_S, leg, digit))
                self._caller_leaves(schedule, now + FRAME_S)
            case Bridge():
                schedule(now + self.bridge_s, CallerBridged(now + self.bridge_s))
                self._caller_leaves(schedule, now + self.bridge_s)
            case RecordOutcome(figures=figures):
                self.figures = figures
            case _:
                pass  # screen-pops, the pool, media: nothing to simulate

    def _caller_leaves(self, schedule: Schedule, connected_at: float) -> None:
        at = connected_at + self.talk_s
        schedule(at, ev.HungUp(at, "agent_call_ended"))

