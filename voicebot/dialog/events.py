"""The closed sets of events the dialog machine takes and commands it returns.

Every event carries ``at``: the monotonic time in seconds at which it arose
(the frame that started speech, the moment a prompt began playing...), so the
call's latency figures can be computed from the events themselves. Commands
carry the ``at`` of the event that caused them.

Events come from the edges (media, ASR, FreeSWITCH, timers); commands go back
to them. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from voicebot.dialog.flow import BargeIn

# ----------------------------------------------------------------- events


@dataclass(frozen=True)
class CallStarted:
    """The call is answered and media flows. ``variables`` fill the flow's variables.

    ``local_time``: the wall-clock time at answer in the callee's time zone (aware), the reference for
    ``date``/``datetime`` slots and relative times; None: those slots capture nothing.
    """

    at: float
    variables: Mapping[str, str] = field(default_factory=dict)
    caller: str = ""
    callee: str = ""
    local_time: datetime | None = None


@dataclass(frozen=True)
class PromptStarted:
    """The first audio of a :class:`Play` reached the caller."""

    at: float
    play_id: int


@dataclass(frozen=True)
class PromptFinished:
    """A :class:`Play` ended; ``interrupted`` when stopped early, ``heard_ms`` of it were sent."""

    at: float
    play_id: int
    interrupted: bool = False
    heard_ms: int = 0


@dataclass(frozen=True)
class SpeechStarted:
    """Voice activity detection saw the caller start speaking."""

    at: float


@dataclass(frozen=True)
class Transcript:
    """A partial or final recognition of the caller's current utterance."""

    at: float
    text: str
    final: bool
    confidence: float = 1.0


@dataclass(frozen=True)
class Dtmf:
    """The caller pressed a key (0-9, *, #)."""

    at: float
    digit: str


@dataclass(frozen=True)
class TimerFired:
    """A timer armed by :class:`ArmTimer` expired."""

    at: float
    timer_id: str


@dataclass(frozen=True)
class AgentReady:
    """An agent of the prepared group is on a leg, ready to take the call."""

    at: float
    agent_id: str


@dataclass(frozen=True)
class AgentFailed:
    """No agent could be had, or the agent's leg failed (before or after the bridge)."""

    at: float
    reason: str


@dataclass(frozen=True)
class AgentTookOver:
    """A listening agent took the call (pressed the takeover key): the bot falls silent."""

    at: float
    agent_id: str


@dataclass(frozen=True)
class AgentLeft:
    """The agent who had the caller hung up; the caller is still on the line."""

    at: float
    agent_id: str


@dataclass(frozen=True)
class HungUp:
    """The call is over from the outside (caller hung up, channel gone)."""

    at: float
    cause: str = "caller_hangup"


Event: TypeAlias = (
    CallStarted
    | PromptStarted
    | PromptFinished
    | SpeechStarted
    | Transcript
    | Dtmf
    | TimerFired
    | AgentReady
    | AgentFailed
    | AgentTookOver
    | AgentLeft
    | HungUp
)

# --------------------------------------------------------------- commands


@dataclass(frozen=True)
class Play:
    """Say ``text`` (or play recording ``prompt``); ``template`` is the text before variables were filled."""

    at: float
    play_id: int
    node: str
    text: str
    prompt: str = ""
    template: str = ""


@dataclass(frozen=True)
class StopPlayback:
    """Stop a :class:`Play` at once (barge-in, hand-off)."""

    at: float
    play_id: int


@dataclass(frozen=True)
class Listen:
    """Start listening for one caller turn with these limits (ms), ASR hints and the node's barge-in policy."""

    at: float
    node: str
    no_input_ms: int
    max_speech_ms: int
    end_silence_ms: int
    hints: tuple[str, ...] = ()
    barge_in: BargeIn = field(default_factory=BargeIn)


@dataclass(frozen=True)
class ArmTimer:
    """Send :class:`TimerFired` with ``timer_id`` at monotonic time ``fire_at`` (s)."""

    at: float
    timer_id: str
    fire_at: float


@dataclass(frozen=True)
class CancelTimer:
    """Forget a timer armed earlier; no event will come for it."""

    at: float
    timer_id: str


@dataclass(frozen=True)
class SetTag:
    """Tag the call (e.g. ``interested``, ``blocklist``)."""

    at: float
    tag: str


@dataclass(frozen=True)
class SetLevel:
    """Grade the lead: A (hot) .. D."""

    at: float
    level: str


@dataclass(frozen=True)
class SetSlot:
    """A value captured from what the caller said."""

    at: float
    name: str
    value: str


@dataclass(frozen=True)
class Notify:
    """Emit a named notification (SMS, webhook) with the call's data so far."""

    at: float
    name: str
    payload: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class PrepareHandoff:
    """Reserve an agent of ``group`` and bring them onto a listening leg."""

    at: float
    group: str


@dataclass(frozen=True)
class TransferCall:
    """Put the caller through to the ready agent ``agent_id`` of ``group``."""

    at: float
    group: str
    agent_id: str


@dataclass(frozen=True)
class HangUp:
    """End the call with ``disposition``."""

    at: float
    disposition: str


@dataclass(frozen=True)
class Confirmation:
    """(Report) An unsure hearing of ``intent`` at ``node`` is being confirmed: ``state`` asked, confirmed or denied."""

    at: float
    node: str
    intent: str
    state: str


Command: TypeAlias = (
    Play
    | StopPlayback
    | Listen
    | ArmTimer
    | CancelTimer
    | SetTag
    | SetLevel
    | SetSlot
    | Notify
    | PrepareHandoff
    | TransferCall
    | HangUp
    | Confirmation
)
