"""One call's handoff on FreeSWITCH: the executor of the call's :class:`~voicebot.handoff.machine.HandoffMachine`.

The machine (in the call's :class:`~voicebot.callcore.CallCore`, on the session thread) decides; this edge
carries out its commands over ESL and feeds back what FreeSWITCH reports, as events stamped on the call's clock
(docs/freeswitch.md; captures ``check6*`` and ``check8_*`` in tests/fixtures/esl):

1. ``ReserveAgent``: the :class:`~voicebot.handoff.agents.AgentPool` holds an agent (``AgentReserved``, or
   ``NoAgentFree``); ``OriginateAgent`` rings them with the socket app back to the engine
   (``{origination_uuid=A,vb_role=agent,vb_call=C}ENDPOINT &socket('...')``, quoted), so the agent's leg gets its
   own outbound socket and events. A failed originate is ``LegFailed`` with FreeSWITCH's cause.
2. The agent answers: their leg connects to the engine (``AgentAnswered``); ``PlayWhisper`` plays the spoken
   summary rendered meanwhile (``RenderWhisper``, in a native thread), then ``Eavesdrop`` lets them listen to the
   live call (``AgentListening`` on eavesdrop's CHANNEL_EXECUTE).
3. ``SendTalkKey`` (talk mode) sends eavesdrop's own talk key (``uuid_recv_dtmf A 2``): the DTMF comes back
   ~20 ms later (``AgentKey``) and the bot's frames turn silent that instant (``StopBotAudio`` mutes the session's
   outbox). ``Bridge`` is ``uuid_bridge C A`` (~61 ms to CHANNEL_BRIDGE: ``CallerBridged``). A takeover is the
   agent's own key press (``AgentKey``). A failed command is ``TransferFailed``.
4. The agent hangs up after a bridge: the caller is parked again (``park_after_bridge``: ``CallerParked``) and
   ``RearmCaller`` re-arms unicast once. From ``Bridge`` until then the stall watch stands down (:attr:`owns_rearm`).
5. The caller hangs up: the machine hangs up the agent's leg and frees the agent; :meth:`CallHandoff.finish`
   (after the session thread stopped) carries out what is left and closes the machine if the session could not.

Never eavesdrop on an L16 caller with unicast (it leaves the caller stuck forever): the machine bridges such calls.
Commands run in this call's handoff greenlet (or greenlets it spawns for what waits: ringing, the whisper);
the session thread reaches it through a :class:`~voicebot.esl.hub.HubInbox`.
"""

from __future__ import annotations

import contextlib
import time
import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.event

from voicebot.config import HandoffConfig
from voicebot.esl.connection import EslFailure, InboundConnection, OutboundCall
from voicebot.esl.hub import HubInbox
from voicebot.esl.protocol import EslEvent
from voicebot.esl.socketapp import originate_socket_app
from voicebot.handoff.agents import AgentPool
from voicebot.handoff.machine import HandoffError, HandoffMachine
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
    HandoffSettings,
    HangUpAgent,
    KeepCallerAfterBridge,
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
    TransferFailed,
    WhisperDone,
)
from voicebot.logs import get_logger
from voicebot.notify.screenpop import ScreenPop as ScreenPopClient

__all__ = ["CallHandoff", "HandoffContext", "HandoffFigures"]

WHISPER_WAIT_S = 3.0  # how long an answered agent waits for the whisper's synthesis
FINISH_WAIT_S = 3.0  # how long finish() lets the handoff greenlet end its current command


@dataclass
class HandoffContext:
    """What every call's handoff shares: agents, ESL, settings, where agent legs connect."""

    pool: AgentPool
    inbound: InboundConnection
    config: HandoffConfig
    socket_address: str  # host:port of the engine's outbound server
    screenpop: ScreenPopClient | None = None
    legs: dict[str, CallHandoff] = field(default_factory=dict)  # agent leg uuid -> its call's handoff
    whisper: Callable[[Mapping[str, object], Path], Path] | None = None  # (snapshot, path) -> WAV, in a thread
    on_closed: Callable[[CallHandoff], None] | None = None  # e.g. a benchmark collecting figures

    def settings(self) -> HandoffSettings:
        """The machine's settings from the ``handoff:`` section."""
        c = self.config
        return HandoffSettings(mode=c.mode, takeover_digit=c.takeover_digit, max_attempts=c.max_attempts,
                               ring_timeout_s=c.ring_timeout_s)

    def attach_agent_leg(self, call: OutboundCall, uuid: str) -> None:
        """An agent's leg connected to the outbound server: hand it to its call (or hang it up)."""
        owner = self.legs.get(uuid)
        if owner is None:
            with contextlib.suppress(EslFailure):
                call.hangup("NORMAL_CLEARING", timeout=2.0)
            return
        owner.run_agent_leg(call, uuid)


class CallHandoff:
    """One call's handoff executor (see the module docstring). Create it and run :meth:`run` in the call's greenlet.

    ``post`` hands an event to the machine through the session thread; None feeds the machine here, directly.
    """

    def __init__(self, ctx: HandoffContext, caller: OutboundCall, *, call_id: str, caller_codec: str,
                 clock: Callable[[], float], post: Callable[[HandoffEvent], None] | None,
                 mute: Callable[[bool], None], rearm: Callable[[], None], prefer: str = "") -> None:
        self.ctx, self.caller, self.call_id = ctx, caller, call_id
        self.clock, self.mute, self.rearm = clock, mute, rearm
        self.machine = HandoffMachine(ctx.settings(), prefer=prefer, eavesdrop_ok=caller_codec.upper() in ("PCMU", "PCMA"),
                                      new_leg=lambda: str(uuidlib.uuid4()))
        self._post = post
        self.figures = self.machine.figures
        self.inbox: HubInbox[HandoffCommand] = HubInbox()
        self.agent_calls: dict[str, OutboundCall] = {}  # answered agent legs
        self._whispers: dict[str, gevent.event.AsyncResult] = {}
        self._spawned: list[gevent.Greenlet] = []
        self._held: set[str] = set()  # agents reserved and not released (what a stuck session leaves behind)
        self._holds_stream = False
        self._closing = False
        self._runner: object = None  # the greenlet in run()
        self.recorded = False
        self.log = get_logger("esl.handoff").bind(call=call_id)

    @property
    def owns_rearm(self) -> bool:
        """True from a Bridge until the caller's stream is re-armed after it: the stall watch stands down meanwhile,
        so exactly one owner re-arms (two at once and FreeSWITCH parks the caller twice and keeps the first
        stream: docs/freeswitch.md)."""
        return self._holds_stream

    # ------------------------------------------------------------ in and out

    def command(self, command: HandoffCommand) -> None:
        """One of the machine's commands (from the session's thread; never blocks). Muting happens at once."""
        if isinstance(command, StopBotAudio | ResumeBot):
            self.mute(isinstance(command, StopBotAudio))
            return
        self.inbox.put(command)

    def feed(self, event: HandoffEvent) -> None:
        """Hand one event to the machine: through the session thread, or here once it has stopped."""
        if self._post is not None:
            self._post(event)
            return
        try:
            commands = self.machine.handle(event, event.at)
        except HandoffError as err:
            self.log.warning("handoff.late_event", error=str(err))
            return
        for command in commands:  # the session is gone: carry them out now
            if isinstance(command, StopBotAudio | ResumeBot):
                self.mute(isinstance(command, StopBotAudio))
            else:
                self._execute(command)

    def run(self) -> None:
        """Carry out commands until :meth:`finish`."""
        self._runner = gevent.getcurrent()
        while not self._closing:
            command = self.inbox.get()
            if command is not None:
                self._execute(command)

    def on_caller_event(self, event: EslEvent) -> None:
        """The caller's CHANNEL_BRIDGE (bridged to the agent) and CHANNEL_PARK (back after the agent left)."""
        if event.name == "CHANNEL_BRIDGE":
            self.feed(CallerBridged(self.clock()))
        elif event.name == "CHANNEL_PARK":
            self.feed(CallerParked(self.clock()))

    def _execute(self, command: HandoffCommand) -> None:
        handler = _HANDLERS.get(type(command))
        if handler is not None:
            handler(self, command)

    # ------------------------------------------------------------ the agent

    def _reserve(self, command: ReserveAgent) -> None:
        if self.recorded:
            return  # asked for as the call ended: the machine is closed and holds nobody
        if command.group not in self.ctx.pool.directory.groups:
            self.log.error("handoff.unknown_group", group=command.group)
            self.feed(NoAgentFree(self.clock(), "no_group"))
            return
        agent = self.ctx.pool.reserve(command.group, self.call_id, time.monotonic(), prefer=command.prefer)
        if agent is None:
            self.feed(NoAgentFree(self.clock()))
            return
        self._held.add(agent.id)
        self.feed(AgentReserved(self.clock(), agent.id, agent.name, agent.endpoint))

    def _retry_at(self, command: RetryReserveAt) -> None:
        delay = max(0.0, command.at - self.clock())
        self._spawned.append(gevent.spawn_later(delay, lambda: self.feed(ReserveDue(self.clock()))))

    def _originate(self, command: OriginateAgent) -> None:
        self.ctx.legs[command.leg] = self
        self._spawned.append(gevent.spawn(self._ring, command))
        self.log.info("handoff.ringing", agent=command.agent_id)

    def _ring(self, command: OriginateAgent) -> None:
        """Ring the agent; the leg comes back to the engine's socket when they answer."""
        variables = f"vb_role=agent,vb_call={self.call_id},vb_agent={command.agent_id},originate_timeout=" \
                    f"{int(command.ring_timeout_s)},origination_caller_id_name=voicebot"
        try:
            self.ctx.inbound.originate(f"{{{variables}}}{command.endpoint}", originate_socket_app(self.ctx.socket_address),
                                       uuid=command.leg, timeout=command.ring_timeout_s + 5)
        except EslFailure as err:
            self.ctx.legs.pop(command.leg, None)
            self.log.warning("handoff.agent_failed", agent=command.agent_id, reason=_cause(str(err)))
            self.feed(LegFailed(self.clock(), command.leg, _cause(str(err))))

    def _mark(self, command: MarkAgent) -> None:
        mark = self.ctx.pool.listening if command.state == "listening" else self.ctx.pool.talking
        mark(command.agent_id, self.call_id, time.monotonic())
        self.log.info(f"handoff.{command.state}", agent=command.agent_id)

    def _release(self, command: ReleaseAgent) -> None:
        self._held.discard(command.agent_id)
        self.ctx.pool.release(command.agent_id, self.call_id, time.monotonic(), wrap_up=command.wrap_up)

    def _hang_up_agent(self, command: HangUpAgent) -> None:
        self.ctx.legs.pop(command.leg, None)
        with contextlib.suppress(EslFailure):
            self.ctx.inbound.api(f"uuid_kill {command.leg} NORMAL_CLEARING", timeout=2.0)

    # ------------------------------------------------------------ the agent's leg (its own greenlet)

    def run_agent_leg(self, call: OutboundCall, leg: str) -> None:
        """The agent answered: tell the machine, then follow the leg until it hangs up."""
        self.agent_calls[leg] = call
        self.feed(AgentAnswered(self.clock(), leg))
        try:  # the engine already subscribed the leg to its events
            for event in call.events():
                if event.name == "CHANNEL_EXECUTE" and event.get("Application") == "eavesdrop":
                    self.feed(AgentListening(self.clock(), leg))
                elif event.name == "DTMF":
                    self.feed(AgentKey(self.clock(), leg, event.get("DTMF-Digit") or ""))
                elif event.name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
                    break
        except EslFailure as err:
            self.log.warning("handoff.agent_leg_error", error=str(err))
        finally:
            self.agent_calls.pop(leg, None)
            self.ctx.legs.pop(leg, None)
            self.feed(AgentHungUp(self.clock(), leg))

    def _render_whisper(self, command: RenderWhisper) -> None:
        result = self._whispers[command.leg] = gevent.event.AsyncResult()
        self._spawned.append(gevent.spawn(self._synthesize_whisper, result, command))

    def _synthesize_whisper(self, result: gevent.event.AsyncResult, command: RenderWhisper) -> None:
        """Synthesize the whisper in a native thread; the result is its path (or None)."""
        render = self.ctx.whisper
        if render is None or not self.ctx.config.whisper:
            result.set(None)
            return
        path = self.ctx.config.whisper_dir / f"{self.call_id}-{command.leg}.wav"
        try:
            result.set(gevent.get_hub().threadpool.apply(render, (dict(command.snapshot), path)))
        except Exception as err:  # no whisper is better than no agent
            self.log.warning("handoff.whisper_failed", error=repr(err))
            result.set(None)

    def _play_whisper(self, command: PlayWhisper) -> None:
        self._spawned.append(gevent.spawn(self._whisper_to_agent, command.leg))

    def _whisper_to_agent(self, leg: str) -> None:
        result = self._whispers.pop(leg, None)
        path = result.get(timeout=WHISPER_WAIT_S) if result is not None and result.wait(WHISPER_WAIT_S) else None
        call = self.agent_calls.get(leg)
        try:
            if path is not None and call is not None:
                call.execute("playback", str(path), timeout=60.0)
        except EslFailure as err:
            self.log.warning("handoff.whisper_not_played", error=str(err))
        finally:
            self.feed(WhisperDone(self.clock(), leg))

    def _eavesdrop(self, command: Eavesdrop) -> None:
        call = self.agent_calls.get(command.leg)
        if call is None:
            return  # the leg is gone: its hang-up tells the machine
        try:
            call.execute_nowait("eavesdrop", self.call_id)
        except EslFailure as err:
            self.log.warning("handoff.eavesdrop_failed", error=str(err))

    # ------------------------------------------------------------ the caller

    def _keep_caller(self, command: KeepCallerAfterBridge) -> None:
        with contextlib.suppress(EslFailure):  # the caller comes back to park when the agent leaves
            self.caller.api(f"uuid_setvar {self.call_id} park_after_bridge true")

    def _talk_key(self, command: SendTalkKey) -> None:
        self._transfer(command.leg, f"uuid_recv_dtmf {command.leg} {command.digit}")

    def _bridge(self, command: Bridge) -> None:
        self._holds_stream = True
        self._transfer(command.leg, f"uuid_bridge {self.call_id} {command.leg}")

    def _transfer(self, leg: str, api: str) -> None:
        try:
            self.caller.api(api)
        except EslFailure as err:
            self.log.warning("handoff.transfer_failed", error=str(err))
            self.feed(TransferFailed(self.clock(), leg, str(err)))

    def _break_whisper(self, command: BreakWhisper) -> None:
        with contextlib.suppress(EslFailure):
            self.caller.api(f"uuid_break {command.leg} all")

    def _rearm_caller(self, command: RearmCaller) -> None:
        """The caller is back in a fresh park: re-arm once; if that fails, the stall watch takes over."""
        try:
            self.rearm()
        except Exception as err:
            self.log.warning("handoff.rearm_failed", error=repr(err))
        finally:
            self._holds_stream = False

    def _release_stall_watch(self, command: ReleaseStallWatch) -> None:
        self._holds_stream = False

    def _pop(self, command: ScreenPop) -> None:
        if self.ctx.screenpop is None:
            return
        agent = {"id": command.agent_id, "name": command.name, "endpoint": command.endpoint}
        self.ctx.screenpop.send(command.event, self.call_id, {"agent": agent, "group": command.group, **command.snapshot})

    def _record(self, command: RecordOutcome) -> None:
        self.figures, self.recorded = command.figures, True
        self.log.info("handoff.closed", outcome=command.figures.outcome)

    # ------------------------------------------------------------ the end

    def finish(self, cause: str, *, session_stopped: bool) -> None:
        """The call is over and the session thread is done (``session_stopped``: it ended or is frozen, so the machine
        may be fed here): carry out what is left, close the machine if the session did not, free what it held."""
        self._closing = True
        self.inbox.close()  # wakes run(); what is queued stays to be drained here
        if isinstance(self._runner, gevent.Greenlet):
            self._runner.join(FINISH_WAIT_S)  # its current command ends first
        self._post = None if session_stopped else (lambda event: None)  # a stuck session keeps the machine
        self._drain()
        if not self.machine.done and session_stopped:
            self.feed(CallEnded(self.clock(), cause))
        self._free_leftovers()
        gevent.killall(self._spawned, timeout=1)
        if self.ctx.on_closed is not None:
            self.ctx.on_closed(self)

    def _drain(self) -> None:
        deadline = time.monotonic() + FINISH_WAIT_S
        while (command := self.inbox.get(0)) is not None and time.monotonic() < deadline:
            self._execute(command)

    def _free_leftovers(self) -> None:
        """What the machine could not free: agents reserved as the call ended; everything when the session is stuck."""
        mine = [leg for leg, owner in self.ctx.legs.items() if owner is self]
        if not self.recorded:
            self.log.error("handoff.closed_without_the_machine", legs=len(mine), agents=len(self._held))
            for leg in mine:
                self._hang_up_agent(HangUpAgent(leg))
        elif self._held:
            self.log.warning("handoff.agents_freed_at_the_end", agents=len(self._held))
        for agent_id in list(self._held):
            self._release(ReleaseAgent(agent_id, wrap_up=False))
        for leg in mine:
            self.ctx.legs.pop(leg, None)

    def monotonic(self, t: float | None) -> float | None:
        """A time on the call's clock (as in :class:`HandoffFigures`) as ``time.monotonic()``."""
        return None if t is None else time.monotonic() - self.clock() + t


_HANDLERS: dict[type, Callable[[CallHandoff, Any], None]] = {
    KeepCallerAfterBridge: CallHandoff._keep_caller,
    ReserveAgent: CallHandoff._reserve,
    RetryReserveAt: CallHandoff._retry_at,
    OriginateAgent: CallHandoff._originate,
    RenderWhisper: CallHandoff._render_whisper,
    PlayWhisper: CallHandoff._play_whisper,
    BreakWhisper: CallHandoff._break_whisper,
    Eavesdrop: CallHandoff._eavesdrop,
    SendTalkKey: CallHandoff._talk_key,
    Bridge: CallHandoff._bridge,
    HangUpAgent: CallHandoff._hang_up_agent,
    MarkAgent: CallHandoff._mark,
    ReleaseAgent: CallHandoff._release,
    ScreenPop: CallHandoff._pop,
    RearmCaller: CallHandoff._rearm_caller,
    ReleaseStallWatch: CallHandoff._release_stall_watch,
    RecordOutcome: CallHandoff._record,
}  # TellDialog is the session's; StopBotAudio and ResumeBot mute at once (CallHandoff.command)


def _cause(error: str) -> str:
    """``-ERR USER_BUSY`` → ``USER_BUSY``."""
    for word in error.replace(":", " ").split():
        if word.isupper() and "_" in word:
            return word
    return "originate_failed"
