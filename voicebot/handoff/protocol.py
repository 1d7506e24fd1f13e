"""The words of the handoff machine (:mod:`voicebot.handoff.machine`): its events, its commands, its figures.

Events carry ``at``: seconds on the call's clock (since answer). A ``leg`` is the agent leg's id, chosen by the
machine when it originates it. Commands name what to do, never how: the FreeSWITCH edge
(:mod:`voicebot.esl.handoff`) and the simulator (:mod:`voicebot.sim.agents`) carry them out and answer with events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from voicebot.dialog import events as ev

MODES = ("talk", "bridge")  # how a TransferRequested reaches a listening agent (takeover is the agent's own key)

# ------------------------------------------------------------------ settings and figures


@dataclass(frozen=True)
class HandoffSettings:
    """One call's handoff settings (the ``handoff:`` section): mode, the takeover key, attempts, ring time (s)."""

    mode: str = "talk"
    takeover_digit: str = "2"
    max_attempts: int = 3  # agents rung per handoff before AgentFailed
    ring_timeout_s: float = 20.0
    retry_s: float = 0.2  # while an agent is wanted and none is free, ask again this often (s)


@dataclass
class HandoffFigures:
    """What the call record keeps of the handoff. Times: s on the call's clock (since answer)."""

    group: str = ""
    agent_id: str = ""
    agent_name: str = ""
    mode: str = ""  # talk | bridge | takeover: how the caller reached the agent
    outcome: str = ""  # connected | no_agent | no_group | agent_failed | caller_gone
    prepare_at: float | None = None
    reserved_at: float | None = None
    agent_answered_at: float | None = None
    listening_at: float | None = None
    transfer_at: float | None = None  # the decision: TransferCall, or the agent's takeover key
    connected_at: float | None = None  # DTMF confirm (talk) or CHANNEL_BRIDGE (bridge)
    agent_left_at: float | None = None
    attempts: list[dict[str, str]] = field(default_factory=list)

    @property
    def handoff_ms(self) -> float | None:
        """Decision → the caller is with the agent, in ms (the engine's side of it)."""
        if self.transfer_at is None or self.connected_at is None:
            return None
        return round((self.connected_at - self.transfer_at) * 1000, 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the record (empty when no handoff was ever asked for)."""
        if self.prepare_at is None and self.transfer_at is None:
            return {}
        return {**asdict(self), "handoff_ms": self.handoff_ms}


# ------------------------------------------------------------------ events in


@dataclass(frozen=True)
class HandoffRequested:
    """The dialog's PrepareHandoff: an agent of ``group`` is wanted. ``snapshot``: the call so far (screen-pop)."""

    at: float
    group: str
    snapshot: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class TransferRequested:
    """The dialog's TransferCall: put the caller through to the ready agent."""

    at: float
    snapshot: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentReserved:
    """Answer to :class:`ReserveAgent`: this agent is held for the call."""

    at: float
    agent_id: str
    name: str
    endpoint: str


@dataclass(frozen=True)
class NoAgentFree:
    """Answer to :class:`ReserveAgent`: nobody free (``busy``), or the group does not exist (``no_group``)."""

    at: float
    reason: str = "busy"


@dataclass(frozen=True)
class ReserveDue:
    """The time a :class:`RetryReserveAt` asked for has come."""

    at: float


@dataclass(frozen=True)
class AgentAnswered:
    """The agent picked up: their leg is connected to the engine."""

    at: float
    leg: str


@dataclass(frozen=True)
class LegFailed:
    """The agent leg never came up: busy, no answer, ring timeout (``reason``: FreeSWITCH's cause)."""

    at: float
    leg: str
    reason: str


@dataclass(frozen=True)
class WhisperDone:
    """Answer to :class:`PlayWhisper`: the whisper was played (or there was none, or it failed)."""

    at: float
    leg: str


@dataclass(frozen=True)
class AgentListening:
    """The agent's leg listens to the call (eavesdrop started)."""

    at: float
    leg: str


@dataclass(frozen=True)
class AgentKey:
    """The agent's leg heard a key (the takeover key, or our own talk key coming back)."""

    at: float
    leg: str
    digit: str


@dataclass(frozen=True)
class AgentHungUp:
    """The agent's leg is gone (after it answered)."""

    at: float
    leg: str


@dataclass(frozen=True)
class CallerBridged:
    """The caller's channel is bridged (CHANNEL_BRIDGE): a :class:`Bridge` is done."""

    at: float


@dataclass(frozen=True)
class TransferFailed:
    """The :class:`Bridge` or :class:`SendTalkKey` command for ``leg`` failed (``reason``)."""

    at: float
    leg: str
    reason: str


@dataclass(frozen=True)
class CallerParked:
    """The caller's channel parked (CHANNEL_PARK): after a bridge, the agent has left it."""

    at: float


@dataclass(frozen=True)
class CallEnded:
    """The call is over (``cause``): free everything and record the outcome."""

    at: float
    cause: str = "ended"


LegEvent = AgentAnswered | LegFailed | WhisperDone | AgentListening | AgentKey | AgentHungUp | TransferFailed
HandoffEvent = (HandoffRequested | TransferRequested | AgentReserved | NoAgentFree | ReserveDue | LegEvent
                | CallerBridged | CallerParked | CallEnded)
HANDOFF_EVENTS = (HandoffRequested, TransferRequested, AgentReserved, NoAgentFree, ReserveDue, AgentAnswered, LegFailed,
                  WhisperDone, AgentListening, AgentKey, AgentHungUp, CallerBridged, TransferFailed, CallerParked,
                  CallEnded)

# ---------------------------------------------------------------- commands out


@dataclass(frozen=True)
class KeepCallerAfterBridge:
    """Have the caller come back to park when a bridge ends (``park_after_bridge``)."""


@dataclass(frozen=True)
class ReserveAgent:
    """Hold an agent of ``group`` (``prefer`` first when free); answer :class:`AgentReserved` or :class:`NoAgentFree`."""

    group: str
    prefer: str = ""


@dataclass(frozen=True)
class RetryReserveAt:
    """Answer :class:`ReserveDue` at ``at`` (s, the call's clock)."""

    at: float


@dataclass(frozen=True)
class OriginateAgent:
    """Ring the agent on a new leg ``leg``; it comes back as :class:`AgentAnswered` or :class:`LegFailed`."""

    leg: str
    agent_id: str
    endpoint: str
    ring_timeout_s: float


@dataclass(frozen=True)
class RenderWhisper:
    """Start synthesizing the whisper for ``leg`` from ``snapshot`` (it is played by :class:`PlayWhisper`)."""

    leg: str
    snapshot: Mapping[str, object]


@dataclass(frozen=True)
class PlayWhisper:
    """Play the whisper to the agent on ``leg``; answer :class:`WhisperDone`."""

    leg: str


@dataclass(frozen=True)
class BreakWhisper:
    """Cut the whisper on ``leg`` short (the caller is coming)."""

    leg: str


@dataclass(frozen=True)
class Eavesdrop:
    """Let the agent on ``leg`` listen to the call; it comes back as :class:`AgentListening`."""

    leg: str


@dataclass(frozen=True)
class SendTalkKey:
    """Talk mode: press eavesdrop's talk key on ``leg`` for the agent; it comes back as :class:`AgentKey`."""

    leg: str
    digit: str


@dataclass(frozen=True)
class Bridge:
    """Bridge the caller to ``leg``; comes back as :class:`CallerBridged`. Until :class:`RearmCaller` or
    :class:`ReleaseStallWatch`, the caller's media stream is the handoff's: the stall watch stands down."""

    leg: str


@dataclass(frozen=True)
class HangUpAgent:
    """End the agent leg ``leg``."""

    leg: str


@dataclass(frozen=True)
class MarkAgent:
    """The agent's live state in the pool: ``listening`` or ``talking``."""

    agent_id: str
    state: str


@dataclass(frozen=True)
class ReleaseAgent:
    """Give the agent back to the pool (``wrap_up``: after a talk)."""

    agent_id: str
    wrap_up: bool


@dataclass(frozen=True)
class ScreenPop:
    """Post the screen-pop ``event`` (``prepare`` | ``bridge``) for the agent to the CRM."""

    event: str
    agent_id: str
    name: str
    endpoint: str
    group: str
    snapshot: Mapping[str, object]


@dataclass(frozen=True)
class StopBotAudio:
    """The caller hears the agent now: the bot's frames go silent from this frame on."""


@dataclass(frozen=True)
class ResumeBot:
    """The agent has left: the bot's frames may be heard again."""


@dataclass(frozen=True)
class RearmCaller:
    """The caller is back in park after a bridge: re-arm its media stream once (then the stall watch is back on)."""


@dataclass(frozen=True)
class ReleaseStallWatch:
    """A bridge did not happen or ended without a re-arm: the stall watch owns the caller's stream again."""


@dataclass(frozen=True)
class TellDialog:
    """Hand ``event`` (AgentReady, AgentFailed, AgentTookOver, AgentLeft) to the dialog machine."""

    event: ev.Event


@dataclass(frozen=True)
class RecordOutcome:
    """The handoff is over: these figures go into the call record (exactly once per call)."""

    figures: HandoffFigures


HandoffCommand = (KeepCallerAfterBridge | ReserveAgent | RetryReserveAt | OriginateAgent | RenderWhisper | PlayWhisper
                  | BreakWhisper | Eavesdrop | SendTalkKey | Bridge | HangUpAgent | MarkAgent | ReleaseAgent | ScreenPop
                  | StopBotAudio | ResumeBot | RearmCaller | ReleaseStallWatch | TellDialog | RecordOutcome)
HANDOFF_COMMANDS = (KeepCallerAfterBridge, ReserveAgent, RetryReserveAt, OriginateAgent, RenderWhisper, PlayWhisper,
                    BreakWhisper, Eavesdrop, SendTalkKey, Bridge, HangUpAgent, MarkAgent, ReleaseAgent, ScreenPop,
                    StopBotAudio, ResumeBot, RearmCaller, ReleaseStallWatch, TellDialog, RecordOutcome)
