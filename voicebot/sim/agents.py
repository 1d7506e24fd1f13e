"""The simulated agent: the executor of the call's handoff machine in ``voicebot simulate``.

The simulator runs the same :class:`~voicebot.handoff.machine.HandoffMachine` as FreeSWITCH (inside the call's
:class:`~voicebot.callcore.CallCore`); this executor answers its commands the way FreeSWITCH and a human agent
would, on the call's virtual clock: an agent is always free, their phone answers ``ready_ms`` after it rings (or
never: it fails with ``NO_ANSWER`` after ``ring_s``), eavesdrop and the talk key come back after one frame, a
bridge after ``bridge_s``, and the caller hangs up ``talk_s`` after being put through.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voicebot.call import CallSession
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

FRAME_S = 0.02  # eavesdrop and the talk key's DTMF come back one frame later (FreeSWITCH: ~20 ms)


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
        now = session.core.now
        match command:
            case ReserveAgent():
                session.schedule(now, AgentReserved(now, self.agent_id, "Agent", f"sim/{self.agent_id}"))
            case RetryReserveAt(at=at):
                session.schedule(at, ReserveDue(at))
            case OriginateAgent(leg=leg) if self.ready_ms is None:
                session.schedule(now + self.ring_s, LegFailed(now + self.ring_s, leg, "NO_ANSWER"))
            case OriginateAgent(leg=leg):
                at = now + (self.ready_ms or 0) / 1000
                session.schedule(at, AgentAnswered(at, leg))
            case PlayWhisper(leg=leg):
                session.schedule(now, WhisperDone(now, leg))
            case Eavesdrop(leg=leg):
                session.schedule(now + FRAME_S, AgentListening(now + FRAME_S, leg))
            case SendTalkKey(leg=leg, digit=digit):
                session.schedule(now + FRAME_S, AgentKey(now + FRAME_S, leg, digit))
                self._caller_leaves(session, now + FRAME_S)
            case Bridge():
                session.schedule(now + self.bridge_s, CallerBridged(now + self.bridge_s))
                self._caller_leaves(session, now + self.bridge_s)
            case RecordOutcome(figures=figures):
                self.figures = figures
            case _:
                pass  # screen-pops, the pool, media: nothing to simulate

    def _caller_leaves(self, session: CallSession, connected_at: float) -> None:
        at = connected_at + self.talk_s
        session.schedule(at, ev.HungUp(at, "agent_call_ended"))

