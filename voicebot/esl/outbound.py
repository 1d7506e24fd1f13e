"""Outbound ESL: FreeSWITCH's ``socket ... async full`` calls and the server they land on (rules 1-3, 6, 7
of :mod:`voicebot.esl.connection`)."""

from __future__ import annotations

import contextlib
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.pool
import gevent.queue
import gevent.server
import gevent.socket

from voicebot.esl.commands import (
    CallGone,
    Deadline,
    EslError,
    EslFailure,
    EslTimeout,
    EslWire,
    EventWaiter,
    UnicastBeforeAnswer,
    Waiters,
    api_text,
    esl_log,
    expect_ok,
    token,
    verb,
)
from voicebot.esl.protocol import (
    ChannelMedia,
    EslEvent,
    EslMessage,
    channel_media,
    format_command,
    format_execute,
    format_hangup,
    format_unicast,
    parse_event,
)
from voicebot.esl.stall import MEDIA_APPS

CALL_EVENTS = (
    "PLAYBACK_START", "PLAYBACK_STOP", "DTMF", "CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
)


# ---------------------------------------------------------------- outbound: one call


@dataclass(frozen=True, slots=True)
class ChannelData:
    """The outbound socket's ``connect`` reply: the channel's headers, URL-decoded.

    ``caller`` is personal data: log it only under ``pii``. ``media`` is None when
    the headers name no usable codec.
    """

    uuid: str
    callee: str
    answered: bool
    media: ChannelMedia | None
    caller: str = field(repr=False)
    headers: Mapping[str, str] = field(repr=False)


def _channel_data(headers: Mapping[str, str]) -> ChannelData:
    def first(*names: str) -> str:
        return next((headers[n] for n in names if headers.get(n)), "")

    try:
        media: ChannelMedia | None = channel_media(headers)
    except ValueError:
        media = None
    return ChannelData(uuid=first("Unique-ID", "Channel-Unique-ID", "variable_uuid"),
                       callee=first("Caller-Destination-Number", "Channel-Destination-Number"),
                       answered=first("Answer-State") == "answered", media=media,
                       caller=first("Caller-Caller-ID-Number", "Channel-Caller-ID-Number"), headers=dict(headers))


_GONE = object()


class OutboundCall:
    """One call on FreeSWITCH's outbound socket (``socket ... async full``). Every command has a timeout.

    State from events about this channel: ``answered``, ``hung_up``, ``parked``,
    ``bridged``, ``media`` (refreshed from codec headers), ``last_media_app``
    (for a stall's diagnosis); :attr:`can_unicast` (rule 7) and
    :attr:`unicast_expected` (for the stall watch). ``closed`` once the
    socket is gone (hang-up, protocol error, or :meth:`close`).
    """

    def __init__(self, sock: Any, *, command_timeout_s: float = 5.0, peer: str = "", max_events: int = 1000) -> None:
        self.command_timeout_s = command_timeout_s
        self.uuid = ""
        self.data: ChannelData | None = None
        self.media: ChannelMedia | None = None
        self.answered = self.hung_up = self.parked = self.bridged = self.lingering = False
        self.dropped_events = 0
        self.last_media_app: tuple[str, float] | None = None  # (application, monotonic s): it tears unicast down
        self._answering: set[str] = set()  # Application-UUIDs of our `answer` apps not complete yet
        self._waiters = Waiters()
        self._events: Any = gevent.queue.Queue(max_events)
        self._wire = EslWire(sock, label=f"outbound {peer}".strip(), on_event=self._on_event,
                           on_notice=self._on_notice, down=CallGone, on_close=self._on_close)

    # ------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        """True once the socket is closed."""
        return self._wire.closed

    @property
    def close_reason(self) -> str:
        """Why the socket closed ("" while open)."""
        return self._wire.close_reason

    @property
    def can_unicast(self) -> bool:
        """Rule 7: answered, no answer of ours still running, not hung up, socket open."""
        return bool(self.uuid) and self.answered and not self._answering and not self.hung_up and not self.closed

    @property
    def unicast_expected(self) -> bool:
        """True when a unicast stream should be flowing (answered, not bridged, not hung up): the ``live``
        of :func:`~voicebot.esl.unicast.watch_stall`. While bridged unicast stops by design, and a re-arm
        (a transfer) would break the bridge."""
        return self.can_unicast and not self.bridged

    def wait_closed(self, timeout: float) -> bool:
        """Wait until the socket closes; False after ``timeout`` s."""
        return bool(self._wire.closed_event.wait(timeout))

    def close(self, reason: str = "closed by the engine") -> None:
        """Close the socket (FreeSWITCH then hangs the call up unless it was told to ``resume``)."""
        self._wire.close(reason)

    # ------------------------------------------------------------ incoming

    def _on_event(self, event: EslEvent) -> None:
        if self.uuid and event.unique_id == self.uuid:
            self._track(event)
        self._waiters.offer(event)
        self._enqueue(event)

    def _track(self, event: EslEvent) -> None:
        """Update the call's state before anyone waiting hears of the event."""
        name, answer_state = event.name, event.get("Answer-State")
        if name == "CHANNEL_ANSWER" or answer_state == "answered":
            self.answered = True
        if name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE") or answer_state == "hangup":
            self.hung_up = True
        if name == "CHANNEL_EXECUTE_COMPLETE":
            self._answering.discard(event.get("Application-UUID") or "")
        if name == "CHANNEL_EXECUTE" and (event.get("Application") or "").lower() in MEDIA_APPS:
            self.last_media_app = ((event.get("Application") or "").lower(), time.monotonic())
        if name in ("CHANNEL_PARK", "CHANNEL_UNPARK"):
            self.parked = name == "CHANNEL_PARK"
        bridging = name == "CHANNEL_EXECUTE" and event.get("Application") in ("bridge", "uuid_bridge")
        if name == "CHANNEL_BRIDGE" or bridging:  # CHANNEL_BRIDGE comes on the A leg only
            self.bridged = True
        elif name in ("CHANNEL_UNBRIDGE", "CHANNEL_PARK"):  # back in park after the bridge (park_after_bridge)
            self.bridged = False
        if event.get("Channel-Read-Codec-Name"):
            with contextlib.suppress(ValueError):
                self.media = channel_media(event.headers)

    def _enqueue(self, item: object) -> None:
        while True:
            try:
                self._events.put_nowait(item)
                return
            except gevent.queue.Full:  # nobody reads: keep the newest
                with contextlib.suppress(gevent.queue.Empty):
                    self._events.get_nowait()
                self.dropped_events += 1

    def _on_notice(self, message: EslMessage) -> None:
        if message.content_type == "text/disconnect-notice":
            self.lingering = self.lingering or (message.get("Content-Disposition") == "linger")
            self.hung_up = True
        elif message.content_type == "text/rude-rejection":
            self._wire.close("rejected by FreeSWITCH")

    def _on_close(self, reason: str) -> None:
        self._waiters.fail(lambda: CallGone(f"call {self.uuid or '-'}: {reason}"))
        self._enqueue(_GONE)
        esl_log().info("esl.call_closed", call=self.uuid or "-", reason=reason)

    def events(self) -> Iterator[EslEvent]:
        """Events in arrival order (DTMF, PLAYBACK_*, CHANNEL_*); ends when the socket closes.

        Under plain ``linger`` the socket stays open after the hang-up until we
        close it: stop at CHANNEL_HANGUP (or _COMPLETE) rather than wait for the end.
        """
        while True:
            item = self._events.get()
            if item is _GONE:
                self._events.put_nowait(_GONE)  # later readers see the end too
                return
            yield item

    def next_event(self, timeout: float) -> EslEvent:
        """The next event; EslTimeout after ``timeout`` s, CallGone once closed and drained."""
        try:
            item = self._events.get(timeout=timeout)
        except gevent.queue.Empty:
            raise EslTimeout(f"call {self.uuid}: no event within {timeout:g} s") from None
        if item is _GONE:
            self._events.put_nowait(_GONE)
            raise CallGone(f"call {self.uuid}: {self.close_reason}")
        event: EslEvent = item
        return event

    def expect_event(self, predicate: Callable[[EslEvent], bool], what: str = "event") -> EventWaiter:
        """Start waiting for an event now; send the command that causes it, then ``.get(timeout)``."""
        if self.closed:
            raise CallGone(f"call {self.uuid or '-'}: {self.close_reason}")
        return EventWaiter(self._waiters, predicate, what)

    # ------------------------------------------------------------ commands

    def _timeout(self, timeout: float | None) -> float:
        return self.command_timeout_s if timeout is None else timeout

    def _command(self, data: bytes, timeout: float | None, precheck: Callable[[], None] | None = None) -> EslMessage:
        return self._wire.command(data, self._timeout(timeout), precheck)

    def _ok(self, line: str, timeout: float | None = None) -> str:
        data = format_command(line)
        return expect_ok(verb(data), self._command(data, timeout))

    def connect(self, timeout: float | None = None) -> ChannelData:
        """``connect``: the channel's data (uuid, callee, caller as PII, media, answered)."""
        reply = self._command(b"connect\n\n", timeout)
        if not reply.is_channel_data:
            self._wire.close("connect reply without channel data")
            raise EslError("connect", reply.reply_text or "no channel data")
        data = _channel_data(parse_event(reply).headers)
        self.data, self.uuid, self.media = data, data.uuid, data.media
        self.answered = self.answered or data.answered
        self._wire.label = f"call {data.uuid}"
        return data

    def subscribe(self, *extra: str, fmt: str = "plain", timeout: float | None = None) -> None:
        """``myevents <fmt>`` plus ``event <fmt> PLAYBACK_* DTMF CHANNEL_* ...`` (myevents lacks PLAYBACK_*)."""
        if fmt not in ("plain", "json"):
            raise ValueError(f"fmt must be 'plain' or 'json', not {fmt!r}")
        deadline = Deadline(self._timeout(timeout), "subscribe")
        self._ok(f"myevents {fmt}", deadline.left())
        names = " ".join(dict.fromkeys(token(e, "event name") for e in (*CALL_EVENTS, *extra)))
        self._ok(f"event {fmt} {names}", deadline.left())

    def linger(self, seconds: int | None = None, timeout: float | None = None) -> None:
        """``linger`` (until we close) or ``linger N`` (N s after hang-up): events after the hang-up still come."""
        self._ok("linger" if seconds is None else f"linger {int(seconds)}", timeout)

    def api(self, command: str, timeout: float | None = None) -> str:
        """``api <command>`` on this socket; EslError on -ERR."""
        data = format_command(f"api {command}")
        return api_text(verb(data), self._command(data, timeout))

    def execute_nowait(self, app: str, arg: str | None = None, *, event_lock: bool = False,
                       timeout: float | None = None, app_uuid: str | None = None) -> str:
        """``sendmsg execute``; returns its Application-UUID once FreeSWITCH said +OK."""
        app_uuid = app_uuid or str(uuidlib.uuid4())
        if app.lower() == "answer":
            self._answering.add(app_uuid)  # before sending: rule 7 holds from the first byte
        data = format_execute(None, token(app, "app"), arg, event_uuid=app_uuid, event_lock=event_lock)
        try:
            expect_ok(f"execute {app}", self._command(data, timeout))
        except EslError:
            self._answering.discard(app_uuid)  # refused: it will never run (on a timeout it might: keep it)
            raise
        return app_uuid

    def execute(self, app: str, arg: str | None = None, *, event_lock: bool = False,
                timeout: float | None = None) -> EslEvent:
        """``sendmsg execute`` and wait for its CHANNEL_EXECUTE_COMPLETE (matched by Application-UUID)."""
        deadline = Deadline(self._timeout(timeout), f"execute {app}")
        app_uuid = str(uuidlib.uuid4())
        with self.expect_event(lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE"
                               and e.get("Application-UUID") == app_uuid, f"EXECUTE_COMPLETE of {app}") as done:
            self.execute_nowait(app, arg, event_lock=event_lock, timeout=deadline.left(), app_uuid=app_uuid)
            return done.get(deadline.left())

    def answer(self, timeout: float | None = None) -> None:
        """Answer; returns only once CHANNEL_ANSWER and the answer's EXECUTE_COMPLETE have both arrived."""
        if not self.uuid:
            raise RuntimeError("answer() before connect(): the channel is not known yet")
        if self.answered and not self._answering:
            return
        deadline = Deadline(self._timeout(timeout), "answer")
        mine = self.uuid
        with self.expect_event(lambda e: e.unique_id == mine and e.name in ("CHANNEL_ANSWER", "CHANNEL_HANGUP"),
                               "CHANNEL_ANSWER") as answered:
            self.execute("answer", timeout=deadline.left())
            if not self.answered and answered.get(deadline.left()).name == "CHANNEL_HANGUP":
                raise CallGone(f"call {self.uuid}: hung up before the answer")
        if self.hung_up:
            raise CallGone(f"call {self.uuid}: hung up during the answer")

    def _unicast_guard(self) -> None:
        if self.hung_up or self.closed:
            raise CallGone(f"call {self.uuid or '-'}: hung up")
        if not self.can_unicast:
            esl_log().error("esl.unicast_refused", call=self.uuid or "-", answered=self.answered,
                         answer_running=bool(self._answering))
            raise UnicastBeforeAnswer(f"call {self.uuid or '-'}: unicast before the answer completed would crash "
                                      "FreeSWITCH; call answer() first (docs/freeswitch.md)")

    def unicast(self, local_ip: str, local_port: int, remote_ip: str, remote_port: int, *, native: bool = False,
                timeout: float | None = None) -> None:
        """``sendmsg unicast``: FreeSWITCH binds ``local_*`` and streams to ``remote_*`` (ours).

        Raises :class:`UnicastBeforeAnswer` unless :attr:`can_unicast` (rule 7).
        """
        data = format_unicast(None, local_ip=local_ip, local_port=local_port, remote_ip=remote_ip,
                              remote_port=remote_port, native=native)
        expect_ok("unicast", self._command(data, timeout, precheck=self._unicast_guard))

    def uuid_transfer_park(self, timeout: float | None = None) -> EslEvent:
        """``uuid_transfer <uuid> park inline`` and wait for CHANNEL_PARK: a fresh park where unicast works."""
        deadline = Deadline(self._timeout(timeout), "uuid_transfer park")
        mine = self.uuid
        with self.expect_event(lambda e: e.name == "CHANNEL_PARK" and e.unique_id == mine, "CHANNEL_PARK") as park:
            self.api(f"uuid_transfer {token(mine, 'uuid')} park inline", deadline.left())
            return park.get(deadline.left())

    def rearm_unicast(self, local_ip: str, local_port: int, remote_ip: str, remote_port: int, *,
                      native: bool = False, timeout: float | None = None) -> None:
        """Re-arm a stalled unicast: transfer to a fresh park, wait for CHANNEL_PARK, unicast again."""
        if self.bridged:
            raise RuntimeError(f"call {self.uuid}: bridged; uuid_transfer would break the bridge (re-arm once it ends)")
        deadline = Deadline(self._timeout(timeout), "re-arm unicast")
        self.uuid_transfer_park(deadline.left())
        self.unicast(local_ip, local_port, remote_ip, remote_port, native=native, timeout=deadline.left())

    def uuid_break(self, *, all_: bool = False, timeout: float | None = None) -> str:
        """``uuid_break <uuid> [all]`` on this call."""
        return self.api(f"uuid_break {token(self.uuid, 'uuid')}" + (" all" if all_ else ""), timeout)

    def hangup(self, cause: str = "NORMAL_CLEARING", timeout: float | None = None) -> None:
        """``sendmsg hangup`` with ``hangup-cause`` (nothing if already hung up or closed)."""
        if self.closed or self.hung_up:
            return
        expect_ok("hangup", self._command(format_hangup(None, token(cause, "cause")), timeout))

    def hangup_quietly(self, cause: str = "NORMAL_TEMPORARY_FAILURE") -> None:
        """Best-effort hang-up (1 s at most), for error paths."""
        with contextlib.suppress(EslFailure):
            self.hangup(cause, timeout=min(1.0, self.command_timeout_s))


# ---------------------------------------------------------------- outbound: the server


class OutboundServer:
    """FreeSWITCH's outbound sockets land here: one greenlet per call runs ``handler(call)`` (rule 6).

    ``port`` 0 picks a free one (see :attr:`port`). Over ``max_connections``
    live calls, a new connection is closed at once (FreeSWITCH then goes on with
    its dialplan, or hangs up) and logged ``esl.outbound_rejected``.
    """

    def __init__(self, host: str, port: int, handler: Callable[[OutboundCall], None], *,
                 max_connections: int | None = None, command_timeout_s: float = 5.0) -> None:
        self._handler = handler
        self._max = max_connections
        self._timeout = command_timeout_s
        self._calls: set[OutboundCall] = set()
        self._pool = gevent.pool.Pool()
        self._server = gevent.server.StreamServer((host, port), self._serve, spawn=self._pool)
        self.handled = self.rejected = self.failed = 0

    def start(self) -> None:
        """Bind and start accepting (returns at once)."""
        self._server.start()
        esl_log().info("esl.outbound_listening", address=f"{self._server.server_host}:{self.port}")

    def stop(self, timeout: float = 2.0) -> None:
        """Stop accepting; give running handlers ``timeout`` s, then end them and close their calls."""
        self._server.stop(timeout=timeout)
        for call in list(self._calls):
            call.close("server stopped")

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_port)

    @property
    def active_calls(self) -> int:
        """Calls whose handler is running."""
        return len(self._calls)

    def _serve(self, sock: Any, address: Any) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(gevent.socket.IPPROTO_TCP, gevent.socket.TCP_NODELAY, 1)
        if self._max is not None and len(self._calls) >= self._max:
            self.rejected += 1
            esl_log().warning("esl.outbound_rejected", active=len(self._calls), max_connections=self._max)
            with contextlib.suppress(OSError):
                sock.close()
            return
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        call = OutboundCall(sock, command_timeout_s=self._timeout, peer=peer)
        self._calls.add(call)
        self.handled += 1
        try:
            self._run(call)
        finally:
            self._calls.discard(call)
            call.close("handler finished")

    def _run(self, call: OutboundCall) -> None:
        try:
            self._handler(call)
        except CallGone as err:
            esl_log().info("esl.call_gone", call=call.uuid or "-", reason=str(err))
        except Exception as err:  # one call's bug ends that call only
            self.failed += 1
            esl_log().exception("esl.handler_error", call=call.uuid or "-", error=repr(err))
            call.hangup_quietly()
