"""One call's handoff to a human agent on FreeSWITCH: reserve, ring, whisper, listen, transfer, take over.

How it goes (docs/freeswitch.md; captures ``check6*`` and ``check8_*`` in tests/fixtures/esl):

1. ``PrepareHandoff`` (a node marked ``prepare``, the level reaching the flow's
   ``prepare_at_level``, or a transfer node): an agent of the group is reserved
   in the :class:`~voicebot.handoff.agents.AgentPool`, a screen-pop is posted,
   and the agent's leg is originated with the socket app back to the engine
   (``{origination_uuid=A,vb_role=agent,vb_call=C}ENDPOINT &socket('...')``, quoted), so
   the agent's leg gets its own outbound socket and events.
2. When the agent answers, their leg connects to the engine: the session hears
   ``AgentReady``, the agent hears the whisper (a spoken summary), then listens
   to the live call through ``eavesdrop CALLER`` (caller and bot mixed).
3. ``TransferCall``: in **talk** mode the engine sends eavesdrop's own talk key
   (``uuid_recv_dtmf A 2``); the DTMF event comes back ~20 ms later and the bot's
   frames turn to silence that instant, so the caller hears the agent with no
   gap (the bot keeps streaming silence and transcribing for the record). In
   **bridge** mode (or when the agent is not listening yet) it is ``uuid_bridge
   C A``: ~61 ms to CHANNEL_BRIDGE, ~89 ms to the agent's first audio, a 40-80 ms
   gap; the bot's media is freed.
4. Takeover: a listening agent presses the takeover key themselves; same as 3
   in talk mode, and the session hears ``AgentTookOver``.
5. The agent hangs up after the bridge: the caller is parked again
   (``park_after_bridge=true``), unicast is re-armed, the session hears
   ``AgentLeft`` and the flow decides (back to the bot, or hang up). Before the
   bridge: the next agent is tried, then ``AgentFailed``.
6. The caller hangs up at any point: the agent's leg is killed and the
   reservation released.

Never eavesdrop on an L16 caller with unicast (it leaves the caller stuck
forever): such calls fall back to the bridge. Everything here runs in the
call's greenlets; the session (a native thread) reaches it through a
:class:`~voicebot.esl.hub.HubInbox`.
"""

from __future__ import annotations

import contextlib
import time
import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.event

from voicebot.config import HandoffConfig
from voicebot.dialog import events as ev
from voicebot.esl.connection import EslFailure, InboundConnection, OutboundCall
from voicebot.esl.hub import HubInbox
from voicebot.esl.protocol import EslEvent
from voicebot.esl.socketapp import originate_socket_app
from voicebot.handoff.agents import Agent, AgentPool
from voicebot.logs import get_logger
from voicebot.notify.screenpop import ScreenPop

RETRY_RESERVE_S = 0.2  # while an agent is wanted and none is free, look again this often (s)
WHISPER_WAIT_S = 3.0  # how long an answered agent waits for the whisper's synthesis


@dataclass
class HandoffFigures:
    """What the call record keeps of the handoff. Times: s on the call's clock (since answer)."""

    group: str = ""
    agent_id: str = ""
    agent_name: str = ""
    mode: str = ""  # talk | bridge | takeover: how the caller reached the agent
    outcome: str = ""  # connected | no_agent | agent_failed | caller_gone | agent_left
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


@dataclass
class HandoffContext:
    """What every call's handoff shares: agents, ESL, settings, where agent legs connect."""

    pool: AgentPool
    inbound: InboundConnection
    config: HandoffConfig
    socket_address: str  # host:port of the engine's outbound server
    screenpop: ScreenPop | None = None
    legs: dict[str, CallHandoff] = field(default_factory=dict)  # agent leg uuid -> its call's handoff
    whisper: Callable[[Mapping[str, object], Path], Path] | None = None  # (snapshot, path) -> WAV, in a thread
    on_closed: Callable[[CallHandoff], None] | None = None  # e.g. a benchmark collecting figures

    def attach_agent_leg(self, call: OutboundCall, uuid: str) -> None:
        """An agent's leg connected to the outbound server: hand it to its call (or hang it up)."""
        owner = self.legs.get(uuid)
        if owner is None:
            with contextlib.suppress(EslFailure):
                call.hangup("NORMAL_CLEARING", timeout=2.0)
            return
        owner.run_agent_leg(call)


class CallHandoff:
    """One call's handoff (see the module docstring). Create and run it in the call's greenlet."""

    def __init__(self, ctx: HandoffContext, caller: OutboundCall, *, call_id: str, caller_codec: str,
                 clock: Callable[[], float], post: Callable[[ev.Event], None], mute: Callable[[bool], None],
                 rearm: Callable[[], None], prefer: str = "") -> None:
        self.ctx, self.caller, self.call_id = ctx, caller, call_id
        self.clock, self.post, self.mute, self.rearm = clock, post, mute, rearm
        self.prefer = prefer
        self.eavesdrop_ok = caller_codec.upper() in ("PCMU", "PCMA")
        self.figures = HandoffFigures()
        self.inbox: HubInbox[tuple[ev.Command, dict[str, object]]] = HubInbox()
        self.agent: Agent | None = None
        self.agent_uuid = ""
        self.agent_call: OutboundCall | None = None
        self.state = "idle"  # idle | wanted | ringing | answered | listening | transferring | connected | done
        self.snapshot: dict[str, object] = {}
        self._whisper: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self._tried: set[str] = set()
        self._attempts = 0  # agents rung for the current handoff (max_attempts)
        self._whispering = False
        self._parked_in_bridge = False  # the caller's CHANNEL_PARK came before the agent's hang-up
        self.log = get_logger("esl.handoff").bind(call=call_id)

    @property
    def owns_rearm(self) -> bool:
        """True from the bridge to the agent until the caller's stream is re-armed after it: the stall watch
        stands down meanwhile, so exactly one owner re-arms (two at once and FreeSWITCH parks the caller twice
        and keeps the first stream: docs/freeswitch.md)."""
        return self.figures.mode == "bridge" and self.state in ("connected", "left_bridge")

    # ------------------------------------------------------------ from the session's thread

    def command(self, command: ev.Command, snapshot: dict[str, object]) -> None:
        """A PrepareHandoff or TransferCall from the dialog (any thread; never blocks)."""
        self.inbox.put((command, snapshot))

    # ------------------------------------------------------------ the call's handoff greenlet

    def run(self) -> None:
        """Handle commands until :meth:`close`; look for a free agent while one is wanted."""
        while self.state != "done":
            item = self.inbox.get(RETRY_RESERVE_S)
            if item is not None:
                command, self.snapshot = item
                if isinstance(command, ev.PrepareHandoff):
                    self._prepare(command.group)
                elif isinstance(command, ev.TransferCall):
                    self._transfer()
            elif self.state == "wanted":
                self._try_reserve()

    def _prepare(self, group: str) -> None:
        if self.state not in ("idle", "wanted"):
            return  # an agent is already on the way
        if self.figures.prepare_at is None:
            self.figures.prepare_at, self.figures.group = self.clock(), group
            with contextlib.suppress(EslFailure):  # the caller comes back to park when the agent leaves
                self.caller.api(f"uuid_setvar {self.call_id} park_after_bridge true")
        self.figures.group = group
        self.state = "wanted"
        self._try_reserve()

    def _try_reserve(self) -> None:
        if self.figures.group not in self.ctx.pool.directory.groups:
            self.log.error("handoff.unknown_group", group=self.figures.group)
            self._give_up("no_group")
            return
        if self._attempts >= self.ctx.config.max_attempts:
            self._give_up("agent_failed")
            return
        prefer = self.prefer if self.prefer not in self._tried else ""
        agent = self.ctx.pool.reserve(self.figures.group, self.call_id, time.monotonic(), prefer=prefer)
        if agent is None:
            return  # nobody free: the hold prompt plays; try again shortly
        self.agent, self.state, self.agent_uuid = agent, "ringing", str(uuidlib.uuid4())
        self._tried.add(agent.id)
        self._attempts += 1
        self.figures.reserved_at, self.figures.agent_id, self.figures.agent_name = self.clock(), agent.id, agent.name
        self.ctx.legs[self.agent_uuid] = self
        self._pop("prepare")
        self._whisper = gevent.event.AsyncResult()
        gevent.spawn(self._render_whisper, self._whisper)
        gevent.spawn(self._originate, agent, self.agent_uuid)
        self.log.info("handoff.ringing", agent=agent.id, group=self.figures.group)

    def _originate(self, agent: Agent, leg: str) -> None:
        """Ring the agent; the leg comes back to the engine's socket when they answer."""
        variables = f"vb_role=agent,vb_call={self.call_id},vb_agent={agent.id},originate_timeout=" \
                    f"{int(self.ctx.config.ring_timeout_s)},origination_caller_id_name=voicebot"
        try:
            self.ctx.inbound.originate(f"{{{variables}}}{agent.endpoint}", originate_socket_app(self.ctx.socket_address),
                                       uuid=leg, timeout=self.ctx.config.ring_timeout_s + 5)
        except EslFailure as err:
            if self.agent_uuid == leg and self.state == "ringing":
                self._leg_failed(_cause(str(err)))

    def _leg_failed(self, reason: str) -> None:
        """The agent's leg never came up or went away before the bridge: next agent, or give up."""
        agent, was_ready = self.agent, self.state in ("answered", "listening", "transferring")
        if agent is not None:
            self.ctx.pool.release(agent.id, self.call_id, time.monotonic(), wrap_up=False)
            self.figures.attempts.append({"agent": agent.id, "result": reason})
        self.ctx.legs.pop(self.agent_uuid, None)
        self.agent, self.agent_call, self.agent_uuid = None, None, ""
        self.log.warning("handoff.agent_failed", agent=agent.id if agent else "", reason=reason)
        if was_ready:  # the dialog was told the agent was ready: tell it they are gone, then find another
            self.post(ev.AgentFailed(self.clock(), reason))
        self.state = "wanted"
        self._try_reserve()

    def _give_up(self, outcome: str) -> None:
        self.state, self.figures.outcome = "idle", outcome
        self.post(ev.AgentFailed(self.clock(), outcome))

    # ------------------------------------------------------------ the agent's leg (its own greenlet)

    def run_agent_leg(self, call: OutboundCall) -> None:
        """The agent answered: ready, whisper, listen; then follow the leg until it hangs up."""
        if self.state != "ringing" or self.agent is None:
            with contextlib.suppress(EslFailure):
                call.hangup("NORMAL_CLEARING", timeout=2.0)
            return
        self.agent_call, self.state = call, "answered"
        self.figures.agent_answered_at = self.clock()
        try:  # the engine already subscribed the leg to its events
            self.post(ev.AgentReady(self.clock(), self.agent.id))
            self._whisper_then_listen(call)
            self._follow_agent_leg(call)
        except EslFailure as err:
            self.log.warning("handoff.agent_leg_error", error=str(err))
        finally:
            self._agent_leg_ended()

    def _whisper_then_listen(self, call: OutboundCall) -> None:
        self._whisper.wait(WHISPER_WAIT_S)
        path = self._whisper.value if self._whisper.ready() else None
        if path is not None and self.state == "answered":
            self._whispering = True
            try:
                call.execute("playback", str(path), timeout=60.0)
            except EslFailure as err:
                self.log.warning("handoff.whisper_not_played", error=str(err))
            finally:
                self._whispering = False
        if self.state != "answered":
            return  # a transfer came first: it bridges
        if not self.eavesdrop_ok:  # L16 + eavesdrop + unicast leaves the caller stuck (docs/freeswitch.md)
            self.log.warning("handoff.no_eavesdrop_on_l16")
            return
        call.execute_nowait("eavesdrop", self.call_id)

    def _follow_agent_leg(self, call: OutboundCall) -> None:
        for event in call.events():
            if event.name == "CHANNEL_EXECUTE" and event.get("Application") == "eavesdrop":
                self._listening()
            elif event.name == "DTMF":
                self._on_agent_key(event.get("DTMF-Digit") or "")
            elif event.name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
                return

    def _listening(self) -> None:
        if self.state == "answered" and self.agent is not None:
            self.state = "listening"
            self.figures.listening_at = self.clock()
            self.ctx.pool.listening(self.agent.id, self.call_id, time.monotonic())
            self.log.info("handoff.listening", agent=self.agent.id)

    def _on_agent_key(self, digit: str) -> None:
        """Eavesdrop's talk key: our own transfer coming back, or the agent taking the call."""
        if digit != self.ctx.config.takeover_digit or self.agent is None:
            return
        if self.state == "transferring":
            self._connected("talk")
        elif self.state == "listening":
            self.figures.transfer_at = self.clock()
            self.post(ev.AgentTookOver(self.clock(), self.agent.id))
            self._connected("takeover")

    def _agent_leg_ended(self) -> None:
        if self.state == "connected":
            self._agent_left()
        elif self.state in ("answered", "listening", "transferring"):
            self._leg_failed("agent_hangup")

    # ------------------------------------------------------------ transfer

    def _transfer(self) -> None:
        """Put the caller through to the ready agent: talk mode when they listen, else a bridge."""
        if self.agent is None or self.state not in ("answered", "listening"):
            return
        self.figures.transfer_at = self.clock()
        talk = self.state == "listening" and self.ctx.config.mode == "talk"
        self.state = "transferring"
        try:
            if talk:
                self.caller.api(f"uuid_recv_dtmf {self.agent_uuid} {self.ctx.config.takeover_digit}")
            else:
                if self._whispering:  # the caller comes first: cut the whisper short
                    self.caller.api(f"uuid_break {self.agent_uuid} all")
                self.caller.api(f"uuid_bridge {self.call_id} {self.agent_uuid}")
        except EslFailure as err:
            self.log.warning("handoff.transfer_failed", error=str(err))
            self._hang_up_agent()
            self._leg_failed("transfer_failed")

    def on_caller_event(self, event: EslEvent) -> None:
        """The caller's CHANNEL_BRIDGE (bridged to the agent) and CHANNEL_PARK (back after the agent left)."""
        if event.name == "CHANNEL_BRIDGE" and self.state == "transferring":
            self._connected("bridge")
        elif event.name == "CHANNEL_PARK" and self.state == "left_bridge":
            self._rearm_after_bridge()
        elif event.name == "CHANNEL_PARK" and self.owns_rearm:
            self._parked_in_bridge = True  # the agent's hang-up (its own socket) comes after: re-arm then

    def _rearm_after_bridge(self) -> None:
        """The caller is back in a fresh park: re-arm once; if that fails, the stall watch takes over."""
        self._parked_in_bridge = False
        try:
            self.rearm()
        except Exception as err:
            self.log.warning("handoff.rearm_failed", error=repr(err))
        self._back_to_bot()

    def _connected(self, mode: str) -> None:
        assert self.agent is not None
        self.state, self.figures.mode, self.figures.outcome = "connected", mode, "connected"
        self.figures.connected_at = self.clock()
        if mode != "bridge":
            self.mute(True)  # the caller hears the agent through eavesdrop: the bot's frames go silent now
        self.ctx.pool.talking(self.agent.id, self.call_id, time.monotonic())
        self._pop("bridge")
        self.log.info("handoff.connected", agent=self.agent.id, mode=mode, handoff_ms=self.figures.handoff_ms)

    def _agent_left(self) -> None:
        assert self.agent is not None
        self.figures.agent_left_at = self.clock()
        self.ctx.pool.release(self.agent.id, self.call_id, time.monotonic(), wrap_up=True)
        self.log.info("handoff.agent_left", agent=self.agent.id)
        if self.figures.mode == "bridge" and self._parked_in_bridge:
            self._rearm_after_bridge()
            return
        if self.figures.mode == "bridge":
            self.state = "left_bridge"  # the caller's CHANNEL_PARK follows (park_after_bridge)
            return
        self._back_to_bot()

    def _back_to_bot(self) -> None:
        agent_id = self.agent.id if self.agent else ""
        self.ctx.legs.pop(self.agent_uuid, None)
        self.agent, self.agent_call, self.agent_uuid, self.state = None, None, "", "idle"
        self._tried.clear()
        self._attempts = 0
        self.mute(False)
        self.post(ev.AgentLeft(self.clock(), agent_id))

    # ------------------------------------------------------------ the end

    def close(self, cause: str) -> None:
        """The call is over: free the agent (kill a leg still ringing or listening) and stop."""
        if self.state == "wanted" and self.agent is None:
            self.figures.outcome = self.figures.outcome or "no_agent"
        elif self.state in ("ringing", "answered", "listening", "transferring"):
            self.figures.outcome = self.figures.outcome or "caller_gone"
            self._hang_up_agent()
        elif self.state == "connected" and self.figures.mode != "bridge":
            self._hang_up_agent()  # eavesdrop talk: the agent's leg is bridged to nothing; FreeSWITCH ends a bridge itself
        if self.agent is not None:
            self.ctx.pool.release(self.agent.id, self.call_id, time.monotonic(), wrap_up=self.state == "connected")
        self.ctx.legs.pop(self.agent_uuid, None)
        self.state = "done"
        self.inbox.close()
        self.log.info("handoff.closed", cause=cause, outcome=self.figures.outcome)
        if self.ctx.on_closed is not None:
            self.ctx.on_closed(self)

    def monotonic(self, t: float | None) -> float | None:
        """A time on the call's clock (as in :class:`HandoffFigures`) as ``time.monotonic()``."""
        return None if t is None else time.monotonic() - self.clock() + t

    def _hang_up_agent(self) -> None:
        if self.agent_uuid:
            with contextlib.suppress(EslFailure):
                self.ctx.inbound.api(f"uuid_kill {self.agent_uuid} NORMAL_CLEARING", timeout=2.0)

    # ------------------------------------------------------------ side jobs

    def _render_whisper(self, result: gevent.event.AsyncResult) -> None:
        """Synthesize the whisper in a native thread; the result is its path (or None)."""
        render = self.ctx.whisper
        if render is None or not self.ctx.config.whisper:
            result.set(None)
            return
        path = self.ctx.config.whisper_dir / f"{self.call_id}-{self.agent_uuid}.wav"
        try:
            result.set(gevent.get_hub().threadpool.apply(render, (dict(self.snapshot), path)))
        except Exception as err:  # no whisper is better than no agent
            self.log.warning("handoff.whisper_failed", error=repr(err))
            result.set(None)

    def _pop(self, event: str) -> None:
        if self.ctx.screenpop is None or self.agent is None:
            return
        agent = {"id": self.agent.id, "name": self.agent.name, "endpoint": self.agent.endpoint}
        payload = {"agent": agent, "group": self.figures.group, **self.snapshot}
        self.ctx.screenpop.send(event, self.call_id, payload)


def _cause(error: str) -> str:
    """``-ERR USER_BUSY`` → ``USER_BUSY``."""
    for word in error.replace(":", " ").split():
        if word.isupper() and "_" in word:
            return word
    return "originate_failed"
