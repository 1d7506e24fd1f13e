"""ESL over gevent: the inbound connection (supervised, reconnecting) and the outbound socket server.

Rules
1. Every command has a timeout (``command_timeout_s``, or the call's ``timeout``):
   :class:`EslTimeout` after it, :class:`EslDown` at once when there is no
   connection, :class:`EslError` with FreeSWITCH's ``-ERR`` text when it refuses.
   Nothing here waits without a bound.
2. Replies are matched to commands in the order sent (FreeSWITCH serves one
   connection in order). A command that times out keeps its place, so its late
   reply is dropped instead of answering the next command. If the oldest
   command times out and nothing at all arrived meanwhile, the peer is taken
   for dead and that connection is closed.
3. Bytes that are not ESL (:class:`EslProtocolError`) close that one connection
   (``esl.protocol_error``): the inbound connection reconnects; an outbound call
   ends (FreeSWITCH hangs a call up when its socket closes). Nothing reaches
   other calls or the server.
4. The inbound connection is supervised: connect, auth, subscribe, read; on any
   failure, reconnect after :func:`backoff_delay` (0.5 s doubling to 10 s,
   jitter). While FreeSWITCH is down the engine runs on, logs
   ``esl.inbound_down`` and says so in :meth:`InboundConnection.state`.
5. Events: each ``on_event`` subscriber has its own queue and greenlet, so it sees
   events in order and a slow one delays nobody else (a greenlet per event would
   lose the order). Waiters (``expect_event``) are registered before the command
   that causes the event, so a fast event is never missed.
6. The outbound server accepts at once (gevent StreamServer: the listening socket
   is watched by the event loop, no polling) and runs each call's handler in its
   own greenlet; an exception is logged with the call's uuid and the call is hung up.
7. ``unicast`` is refused (:class:`UnicastBeforeAnswer`, nothing is sent) unless
   the channel is answered: CHANNEL_ANSWER seen (or the connect data says
   answered) and no ``answer`` of ours still running (its EXECUTE_COMPLETE not
   seen yet). Unicast before answer crashes FreeSWITCH (docs/freeswitch.md).
   The check runs after the send lock is taken, right before the bytes go out.
8. Logs name commands by their verb (``api originate``), never their arguments:
   dial strings carry phone numbers.

greenswitch is not used (docs/decisions.md, entry 1: unbounded ``send()``, a reader that dies on
non-UTF-8 bytes, a 100 ms accept poll, serialized handlers, phone numbers in its logs).
So both ends use :mod:`voicebot.esl.protocol` (bounded, byte-exact against the
captures) over gevent sockets, with FreeSWITCH's own command names.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid as uuidlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.pool
import gevent.queue
import gevent.server
import gevent.socket

from voicebot.esl.protocol import (
    ChannelMedia,
    EslEvent,
    EslMessage,
    EslParser,
    EslProtocolError,
    channel_media,
    format_command,
    format_execute,
    format_hangup,
    format_unicast,
    parse_event,
)
from voicebot.logs import get_logger

DEFAULT_EVENTS = (
    "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE",
    "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_PROGRESS_MEDIA", "PLAYBACK_START", "PLAYBACK_STOP", "DTMF", "BACKGROUND_JOB",
)
# Added to `myevents` on an outbound socket: it lacks PLAYBACK_* (capture check3 in tests/fixtures/esl); the rest is explicit.
CALL_EVENTS = (
    "PLAYBACK_START", "PLAYBACK_STOP", "DTMF", "CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
)
_REQUIRED_EVENTS = ("BACKGROUND_JOB", "CHANNEL_PARK")  # bgapi results and uuid_transfer_park need them
_REPLY_TYPES = ("command/reply", "api/response")
_ERROR_PREFIXES = ("-ERR", "-USAGE")
_MAX_JOBS = 10_000


def _log() -> Any:
    """The ESL logger (looked up per use, so a later ``logs.configure`` applies)."""
    return get_logger("esl")


# ---------------------------------------------------------------- errors


class EslFailure(Exception):
    """Base of everything a command here can raise about FreeSWITCH."""


class EslError(EslFailure):
    """FreeSWITCH refused a command; ``reply`` holds its text (``-ERR ...``)."""

    def __init__(self, what: str, reply: str) -> None:
        super().__init__(f"{what}: {reply.strip()}")
        self.reply = reply


class EslTimeout(EslFailure, TimeoutError):
    """No reply (or event) within the timeout."""


class EslDown(EslFailure, ConnectionError):
    """No connection to FreeSWITCH (never connected, dropped, or stopped)."""


class CallGone(EslDown):
    """The outbound call's socket is closed or the channel hung up."""


class UnicastBeforeAnswer(RuntimeError):
    """The engine asked for unicast on a channel not answered yet; refused, nothing sent (rule 7)."""


# ---------------------------------------------------------------- small helpers


def backoff_delay(attempt: int, *, initial_s: float = 0.5, max_s: float = 10.0,
                  rand: Callable[[], float] = random.random) -> float:
    """Seconds before reconnect attempt ``attempt`` (1, 2, ...): initial·2^(n-1) capped, jittered into [d/2, d]."""
    delay = min(max_s, initial_s * float(1 << min(max(attempt - 1, 0), 30)))
    return delay / 2 + rand() * delay / 2


def _verb(data: bytes) -> str:
    """A command's verb for logs and errors: ``api originate``, ``sendmsg``, ``auth`` (no arguments: rule 8)."""
    words = data.split(b"\n", 1)[0].decode("utf-8", "replace").split()
    keep = 2 if words[:1] in (["api"], ["bgapi"]) else 1
    return " ".join(words[:keep])


def _token(value: str, what: str) -> str:
    """``value`` if it is one word with no newline (a uuid, a cause, digits); ValueError otherwise."""
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{what} must be one word, got {value!r}")
    return value


def _api_text(what: str, reply: EslMessage) -> str:
    """An api/response body as text; EslError if FreeSWITCH said -ERR or -USAGE."""
    text = reply.body.decode("utf-8", "replace")
    if text.startswith(_ERROR_PREFIXES):
        raise EslError(what, text)
    return text


def _expect_ok(what: str, reply: EslMessage) -> str:
    """A command/reply's text; EslError unless it starts with +OK."""
    if not reply.ok:
        raise EslError(what, reply.reply_text or reply.body.decode("utf-8", "replace"))
    return reply.reply_text


def _without_excerpt(err: EslProtocolError) -> str:
    """The error's message without the offending bytes (they go under ``pii``: they could be anything)."""
    text, suffix = str(err), f": {err.seen!r}"
    return text[: -len(suffix)] if err.seen and text.endswith(suffix) else text


class _Deadline:
    """One time budget shared by the steps of a command (seconds)."""

    def __init__(self, seconds: float, what: str) -> None:
        self.at = time.monotonic() + seconds
        self.what = what

    def left(self) -> float:
        """Seconds left; EslTimeout when none are."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise EslTimeout(f"{self.what}: timed out")
        return left


# ---------------------------------------------------------------- event waiters


class _Waiters:
    """One-shot event waiters, offered every event by the reader greenlet."""

    def __init__(self) -> None:
        self._items: list[tuple[Callable[[EslEvent], bool], Any]] = []

    def add(self, predicate: Callable[[EslEvent], bool]) -> Any:
        result = gevent.event.AsyncResult()
        self._items.append((predicate, result))
        return result

    def discard(self, result: Any) -> None:
        self._items = [item for item in self._items if item[1] is not result]

    def offer(self, event: EslEvent) -> None:
        done = []
        for predicate, result in self._items:
            try:
                matched = predicate(event)
            except Exception as err:  # a bad predicate fails its own waiter only
                result.set_exception(err)
                done.append(result)
                continue
            if matched:
                result.set(event)
                done.append(result)
        if done:
            self._items = [item for item in self._items if item[1] not in done]

    def fail(self, make_error: Callable[[], Exception]) -> None:
        items, self._items = self._items, []
        for _, result in items:
            result.set_exception(make_error())


class EventWaiter:
    """An event awaited: registered at creation, so the command that causes it can be sent after."""

    def __init__(self, waiters: _Waiters, predicate: Callable[[EslEvent], bool], what: str = "event") -> None:
        self._waiters = waiters
        self._result = waiters.add(predicate)
        self.what = what

    def get(self, timeout: float) -> EslEvent:
        """The matching event; EslTimeout after ``timeout`` s, EslDown/CallGone if the connection closes."""
        try:
            event: EslEvent = self._result.get(timeout=max(timeout, 0.0))
            return event
        except gevent.Timeout:
            raise EslTimeout(f"no {self.what} within {timeout:g} s") from None
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Stop waiting."""
        self._waiters.discard(self._result)

    def __enter__(self) -> EventWaiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


# ---------------------------------------------------------------- one ESL socket


@dataclass(slots=True)
class _Pending:
    result: Any
    sent_at: float = 0.0


class _Wire:
    """One ESL socket: commands in order, replies matched in order, a reader greenlet (rules 1-3)."""

    def __init__(self, sock: Any, *, label: str, on_event: Callable[[EslEvent], None],
                 on_notice: Callable[[EslMessage], None], down: Callable[[str], EslDown],
                 on_close: Callable[[str], None] | None = None) -> None:
        self.label = label
        self.closed = False
        self.close_reason = ""
        self.last_rx = time.monotonic()
        self.closed_event = gevent.event.Event()
        self._sock = sock
        self._on_event, self._on_notice, self._down, self._on_close = on_event, on_notice, down, on_close
        self._parser = EslParser()
        self._pending: deque[_Pending] = deque()
        self._lock = gevent.lock.Semaphore()
        self._reader = gevent.spawn(self._read_loop)

    def command(self, data: bytes, timeout: float, precheck: Callable[[], None] | None = None) -> EslMessage:
        """Send one command and return its reply (rule 1); ``precheck`` runs under the send lock."""
        pending = _Pending(gevent.event.AsyncResult())
        timer = gevent.Timeout(timeout)
        timer.start()
        try:
            self._send(data, pending, precheck)
            reply: EslMessage = pending.result.get()
            return reply
        except gevent.Timeout as err:
            if err is not timer:
                raise
            self._timed_out(pending, data, timeout)
            raise EslTimeout(f"{self.label}: no reply to {_verb(data)!r} within {timeout:g} s") from None
        finally:
            timer.close()

    def _send(self, data: bytes, pending: _Pending, precheck: Callable[[], None] | None) -> None:
        with self._lock:
            if self.closed:
                raise self._down(f"{self.label}: {self.close_reason}")
            if precheck is not None:
                precheck()
            pending.sent_at = time.monotonic()
            self._pending.append(pending)
            try:
                self._sock.sendall(data)
            except BaseException as err:  # cut mid-command (error or timeout): the stream cannot be trusted
                self.close(f"send of {_verb(data)!r} failed ({type(err).__name__})")
                if isinstance(err, OSError):
                    raise self._down(f"{self.label}: {self.close_reason}") from err
                raise

    def _timed_out(self, pending: _Pending, data: bytes, timeout: float) -> None:
        _log().warning("esl.command_timeout", conn=self.label, command=_verb(data), timeout_s=timeout)
        head = self._pending[0] if self._pending else None
        if not self.closed and head is pending and self.last_rx < pending.sent_at:
            self.close(f"no reply and nothing else for {timeout:g} s: FreeSWITCH is not responding")

    def _read_loop(self) -> None:
        reason = "closed by FreeSWITCH"
        try:
            while not self.closed:
                data = self._sock.recv(65536)
                if not data:
                    self._parser.feed_eof()
                    break
                self.last_rx = time.monotonic()
                for message in self._feed(data):
                    self._dispatch(message)
        except EslProtocolError as err:
            reason = f"protocol error: {_without_excerpt(err)}"
            _log().error("esl.protocol_error", conn=self.label, error=_without_excerpt(err),
                         pii={"seen": repr(err.seen)})
        except OSError as err:
            reason = f"socket error: {err}"
        except Exception as err:  # a bug in a hook ends this connection, nothing else
            reason = f"internal error: {err!r}"
            _log().exception("esl.reader_error", conn=self.label)
        self.close(reason)

    def _feed(self, data: bytes) -> list[EslMessage]:
        try:
            return self._parser.feed(data)
        except EslProtocolError as err:
            for message in getattr(err, "messages", ()):  # what was whole before the garbage still counts
                self._dispatch(message)
            raise

    def _dispatch(self, message: EslMessage) -> None:
        if message.content_type in _REPLY_TYPES:
            if not self._pending:
                raise EslProtocolError(f"a {message.content_type} that answers no command")
            pending = self._pending.popleft()
            if not pending.result.ready():  # a timed-out command's late reply is dropped here (rule 2)
                pending.result.set(message)
        elif message.is_event:
            self._on_event(parse_event(message))
        else:
            self._on_notice(message)

    def close(self, reason: str = "closed by the engine") -> None:
        """Close the socket; pending commands fail with the connection's EslDown. Idempotent."""
        if self.closed:
            return
        self.closed, self.close_reason = True, reason
        while self._pending:
            pending = self._pending.popleft()
            if not pending.result.ready():
                pending.result.set_exception(self._down(f"{self.label}: {reason}"))
        with contextlib.suppress(OSError):
            self._sock.shutdown(gevent.socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
        self.closed_event.set()
        if self._on_close is not None:
            self._on_close(reason)


# ---------------------------------------------------------------- inbound: subscribers and health


class Subscription:
    """One ``on_event`` callback with its own queue and greenlet: in order, isolated (rule 5)."""

    def __init__(self, callback: Callable[[EslEvent], None], names: frozenset[str] | None, maxsize: int) -> None:
        self.callback = callback
        self.names = names
        self.dropped = 0  # events lost because the callback fell ``maxsize`` behind
        self.closed = False
        self._queue: Any = gevent.queue.Queue(maxsize)
        self._greenlet = gevent.spawn(self._run)

    def deliver(self, event: EslEvent) -> None:
        """Queue ``event`` (never blocks: a full queue drops it and counts)."""
        if self.closed or (self.names is not None and event.name not in self.names):
            return
        try:
            self._queue.put_nowait(event)
        except gevent.queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                _log().warning("esl.subscriber_behind", callback=_name(self.callback), dropped=self.dropped)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            try:
                self.callback(event)
            except Exception:
                _log().exception("esl.subscriber_error", callback=_name(self.callback), event_name=event.name)

    def close(self) -> None:
        """Stop delivering; the greenlet ends."""
        self.closed = True
        self._greenlet.kill(block=False)


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", repr(fn))


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """Health of the inbound connection. Times are monotonic seconds."""

    connected: bool
    since: float | None  # when it came up (connected) or went down (not connected); None: never tried
    reconnects: int  # times it came back after being up
    attempts: int  # failed attempts since it was last up
    last_error: str
    address: str


class InboundConnection:
    """One inbound ESL connection to FreeSWITCH, kept up by a supervisor greenlet (rules 1, 2, 4, 5).

    ``events``: what to subscribe to (BACKGROUND_JOB and CHANNEL_PARK are always
    added); ``command_timeout_s``: the default timeout of every command.
    """

    def __init__(self, host: str, port: int, password: str, *, events: Sequence[str] = DEFAULT_EVENTS,
                 command_timeout_s: float = 5.0, connect_timeout_s: float = 3.0, backoff_initial_s: float = 0.5,
                 backoff_max_s: float = 10.0, event_format: str = "plain", subscriber_queue: int = 10_000) -> None:
        if event_format not in ("plain", "json"):
            raise ValueError(f"event_format must be 'plain' or 'json', not {event_format!r}")
        if not password or "\n" in password or "\r" in password:
            raise ValueError("the ESL password must be non-empty and on one line")  # never echo it
        self.host, self.port, self._password = host, port, password
        self.events = tuple(dict.fromkeys(_token(e, "event name") for e in (*events, *_REQUIRED_EVENTS)))
        self.command_timeout_s, self.connect_timeout_s = command_timeout_s, connect_timeout_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.event_format = event_format
        self._subscriber_queue = subscriber_queue
        self._wire: _Wire | None = None
        self._supervisor: Any = None
        self._stopping = False
        self._subscribers: list[Subscription] = []
        self._waiters = _Waiters()
        self._jobs: OrderedDict[str, Any] = OrderedDict()
        self._up = gevent.event.Event()
        self._since: float | None = None
        self._reconnects = self._attempts = 0
        self._ever_up = False
        self._last_error = ""

    # ------------------------------------------------------------ lifecycle and health

    def start(self) -> None:
        """Start the supervisor (returns at once; see :meth:`wait_up`)."""
        if self._supervisor is None:
            self._stopping = False
            self._supervisor = gevent.spawn(self._supervise)

    def stop(self) -> None:
        """Say ``exit``, close, stop reconnecting, end subscriber greenlets."""
        self._stopping = True
        wire = self._wire
        if wire is not None and not wire.closed:
            with contextlib.suppress(EslFailure):  # a polite goodbye, briefly: the switch may be mute
                wire.command(b"exit\n\n", min(0.25, self.command_timeout_s))
            wire.close("stopped by the engine")
        if self._supervisor is not None:
            self._supervisor.kill()
            self._supervisor = None
        for sub in self._subscribers:
            sub.close()
        self._subscribers.clear()

    @property
    def up(self) -> bool:
        """True while connected, authenticated and subscribed."""
        return self._wire is not None and not self._wire.closed and self._up.is_set()

    def wait_up(self, timeout: float) -> bool:
        """Wait until connected; False after ``timeout`` s."""
        return bool(self._up.wait(timeout)) and self.up

    def state(self) -> ConnectionState:
        """Health for a status endpoint: connected, since, reconnects, attempts, last error."""
        return ConnectionState(self.up, self._since, self._reconnects, self._attempts, self._last_error,
                               f"{self.host}:{self.port}")

    # ------------------------------------------------------------ supervisor

    def _supervise(self) -> None:
        while not self._stopping:
            try:
                wire = self._open()
            except Exception as err:  # refused, timed out, rejected, not ESL...: the supervisor never dies
                self._failed(f"{type(err).__name__}: {err}")
                gevent.sleep(backoff_delay(self._attempts, initial_s=self.backoff_initial_s,
                                           max_s=self.backoff_max_s))
                continue
            self._came_up(wire)
            wire.closed_event.wait()
            self._went_down(wire.close_reason)
            if not self._stopping:
                gevent.sleep(backoff_delay(1, initial_s=self.backoff_initial_s, max_s=self.backoff_max_s))

    def _open(self) -> _Wire:
        sock = gevent.socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        sock.settimeout(None)
        with contextlib.suppress(OSError):
            sock.setsockopt(gevent.socket.IPPROTO_TCP, gevent.socket.TCP_NODELAY, 1)
        greeting = gevent.event.AsyncResult()
        wire = _Wire(sock, label=f"inbound {self.host}:{self.port}", on_event=self._on_event,
                     on_notice=lambda m: self._on_notice(m, greeting), down=EslDown,
                     on_close=lambda reason: greeting.ready() or greeting.set_exception(EslDown(reason)))
        try:
            self._handshake(wire, greeting)
        except BaseException:
            wire.close("handshake failed")
            raise
        return wire

    def _handshake(self, wire: _Wire, greeting: Any) -> None:
        try:
            greeting.get(timeout=self.command_timeout_s)
        except gevent.Timeout:
            raise EslTimeout(f"no auth/request within {self.command_timeout_s:g} s of connecting") from None
        reply = wire.command(format_command(f"auth {self._password}"), self.command_timeout_s)
        if reply.reply_text.strip() != "+OK accepted":
            raise EslError("auth refused (check the ESL password)", reply.reply_text)
        names = " ".join(self.events)
        _expect_ok("event", wire.command(format_command(f"event {self.event_format} {names}"), self.command_timeout_s))

    def _came_up(self, wire: _Wire) -> None:
        if self._ever_up:
            self._reconnects += 1
        self._ever_up, self._attempts, self._wire = True, 0, wire
        self._since = time.monotonic()
        self._up.set()
        _log().info("esl.inbound_up", address=f"{self.host}:{self.port}", reconnects=self._reconnects)

    def _failed(self, error: str) -> None:
        self._attempts += 1
        self._last_error = error
        if self._since is None:
            self._since = time.monotonic()
        level = "warning" if self._attempts == 1 else "info"
        getattr(_log(), level)("esl.inbound_down", address=f"{self.host}:{self.port}", attempt=self._attempts,
                               error=error)

    def _went_down(self, reason: str) -> None:
        self._up.clear()
        self._wire = None
        self._last_error = reason
        self._since = time.monotonic()
        self._attempts = 0
        self._waiters.fail(lambda: EslDown(f"inbound connection lost: {reason}"))
        for result in self._jobs.values():  # failed in place: job_result() still finds them
            if not result.ready():
                result.set_exception(EslDown(f"inbound connection lost before the job finished: {reason}"))
        if not self._stopping:
            _log().warning("esl.inbound_down", address=f"{self.host}:{self.port}", error=reason)

    def _on_notice(self, message: EslMessage, greeting: Any) -> None:
        kind = message.content_type
        if kind == "auth/request":
            greeting.set(True)
        elif kind == "text/rude-rejection":
            greeting.set_exception(EslError("rejected by FreeSWITCH (ACL)", message.body.decode("utf-8", "replace")))
        elif kind == "text/disconnect-notice":
            _log().info("esl.disconnect_notice", address=f"{self.host}:{self.port}")

    def _on_event(self, event: EslEvent) -> None:
        if event.name == "BACKGROUND_JOB":
            result = self._jobs.get(event.get("Job-UUID") or "")
            if result is not None and not result.ready():
                result.set(event.body_text)
        self._waiters.offer(event)
        for sub in self._subscribers:
            sub.deliver(event)
        if any(sub.closed for sub in self._subscribers):
            self._subscribers = [sub for sub in self._subscribers if not sub.closed]

    # ------------------------------------------------------------ commands

    def _command(self, data: bytes, timeout: float | None) -> EslMessage:
        wire = self._wire
        if wire is None or wire.closed or not self._up.is_set():
            raise EslDown(f"not connected to FreeSWITCH at {self.host}:{self.port}"
                          + (f" ({self._last_error})" if self._last_error else ""))
        return wire.command(data, self.command_timeout_s if timeout is None else timeout)

    def api(self, command: str, timeout: float | None = None) -> str:
        """``api <command>``: the response text; EslError on -ERR, EslTimeout, EslDown (never hangs)."""
        data = format_command(f"api {command}")
        return _api_text(_verb(data), self._command(data, timeout))

    def bgapi(self, command: str, timeout: float | None = None) -> str:
        """``bgapi <command>``: the Job-UUID at once; the result comes with :meth:`job_result`."""
        job = str(uuidlib.uuid4())
        self._jobs[job] = gevent.event.AsyncResult()  # before sending: the job may finish before the reply
        while len(self._jobs) > _MAX_JOBS:
            self._jobs.popitem(last=False)
        data = format_command(f"bgapi {command}", {"Job-UUID": job})
        try:
            _expect_ok(_verb(data), self._command(data, timeout))
        except EslFailure:
            self._jobs.pop(job, None)
            raise
        return job

    def job_result(self, job: str, timeout: float | None = None) -> str:
        """The BACKGROUND_JOB body of ``job``; EslError if it starts with -ERR, EslTimeout, EslDown."""
        result = self._jobs.get(job)
        if result is None:
            raise KeyError(f"unknown or already collected job {job}")
        wait = self.command_timeout_s if timeout is None else timeout
        try:
            text: str = result.get(timeout=wait)
        except gevent.Timeout:
            raise EslTimeout(f"job {job}: no BACKGROUND_JOB within {wait:g} s") from None
        finally:
            if result.ready():
                self._jobs.pop(job, None)
        if text.startswith(_ERROR_PREFIXES):
            raise EslError(f"job {job}", text)
        return text

    def bgapi_result(self, command: str, timeout: float | None = None) -> str:
        """``bgapi`` and wait for its result, all within ``timeout`` s."""
        deadline = _Deadline(self.command_timeout_s if timeout is None else timeout, "bgapi")
        job = self.bgapi(command, deadline.left())
        try:
            return self.job_result(job, deadline.left())
        finally:
            self._jobs.pop(job, None)

    # ------------------------------------------------------------ events

    def on_event(self, callback: Callable[[EslEvent], None], names: Sequence[str] | None = None) -> Subscription:
        """Call ``callback(event)`` for every event (or those in ``names``), in its own greenlet (rule 5)."""
        sub = Subscription(callback, frozenset(names) if names is not None else None, self._subscriber_queue)
        self._subscribers.append(sub)
        return sub

    def expect_event(self, predicate: Callable[[EslEvent], bool], what: str = "event") -> EventWaiter:
        """Start waiting for an event now; send the command that causes it, then ``.get(timeout)``."""
        return EventWaiter(self._waiters, predicate, what)

    def wait_event(self, predicate: Callable[[EslEvent], bool], timeout: float) -> EslEvent:
        """The next event matching ``predicate``; EslTimeout after ``timeout`` s."""
        return self.expect_event(predicate).get(timeout)

    # ------------------------------------------------------------ FreeSWITCH commands by name

    def originate(self, dial_string: str, app: str, *, uuid: str | None = None, timeout: float = 30.0) -> str:
        """``originate {origination_uuid=U}<dial_string> <app>`` via bgapi (an api originate would hold
        every later command on this connection until it returns). Returns U; EslError with the cause."""
        uuid = _token(uuid or str(uuidlib.uuid4()), "uuid")
        self.bgapi_result(f"originate {_with_var(dial_string, 'origination_uuid', uuid)} {app}", timeout)
        return uuid

    def uuid_transfer_park(self, uuid: str, timeout: float | None = None) -> EslEvent:
        """``uuid_transfer <uuid> park inline`` and wait for its CHANNEL_PARK (how unicast is re-armed)."""
        uuid = _token(uuid, "uuid")
        deadline = _Deadline(self.command_timeout_s if timeout is None else timeout, "uuid_transfer park")
        with self.expect_event(lambda e: e.name == "CHANNEL_PARK" and e.unique_id == uuid, "CHANNEL_PARK") as park:
            self.api(f"uuid_transfer {uuid} park inline", deadline.left())
            return park.get(deadline.left())

    def unicast(self, uuid: str, local_ip: str, local_port: int, remote_ip: str, remote_port: int, *,
                native: bool = False, timeout: float | None = None) -> None:
        """``sendmsg <uuid>`` unicast on any channel (e.g. the far leg of a test call). The caller must know the
        channel is answered and parked: unicast before the answer crashes FreeSWITCH (docs/freeswitch.md)."""
        data = format_unicast(_token(uuid, "uuid"), local_ip=local_ip, local_port=local_port, remote_ip=remote_ip,
                              remote_port=remote_port, native=native)
        _expect_ok("unicast", self._command(data, timeout))

    def uuid_bridge(self, a: str, b: str, timeout: float | None = None) -> str:
        """``uuid_bridge <a> <b>`` (CHANNEL_BRIDGE follows ~61 ms later)."""
        return self.api(f"uuid_bridge {_token(a, 'uuid')} {_token(b, 'uuid')}", timeout)

    def uuid_kill(self, uuid: str, cause: str = "NORMAL_CLEARING", timeout: float | None = None) -> str:
        """``uuid_kill <uuid> <cause>``."""
        return self.api(f"uuid_kill {_token(uuid, 'uuid')} {_token(cause, 'cause')}", timeout)

    def uuid_break(self, uuid: str, *, all_: bool = False, timeout: float | None = None) -> str:
        """``uuid_break <uuid> [all]``: stop the playback (PLAYBACK_STOP, Playback-Status: break)."""
        return self.api(f"uuid_break {_token(uuid, 'uuid')}" + (" all" if all_ else ""), timeout)

    def uuid_recv_dtmf(self, uuid: str, digits: str, timeout: float | None = None) -> str:
        """``uuid_recv_dtmf <uuid> <digits>``: as if the channel's far end pressed them."""
        return self.api(f"uuid_recv_dtmf {_token(uuid, 'uuid')} {_token(digits, 'digits')}", timeout)


def _with_var(dial_string: str, name: str, value: str) -> str:
    """Add ``name=value`` to a dial string's ``{...}`` block (making one if needed)."""
    dial_string = dial_string.strip()
    if dial_string.startswith("{"):
        return "{" + f"{name}={value}," + dial_string[1:]
    return "{" + f"{name}={value}" + "}" + dial_string


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
    ``bridged``, ``media`` (refreshed from codec headers); :attr:`can_unicast`
    (rule 7) and :attr:`unicast_expected` (for the stall watch). ``closed`` once the
    socket is gone (hang-up, protocol error, or :meth:`close`).
    """

    def __init__(self, sock: Any, *, command_timeout_s: float = 5.0, peer: str = "", max_events: int = 1000) -> None:
        self.command_timeout_s = command_timeout_s
        self.uuid = ""
        self.data: ChannelData | None = None
        self.media: ChannelMedia | None = None
        self.answered = self.hung_up = self.parked = self.bridged = self.lingering = False
        self.dropped_events = 0
        self._answering: set[str] = set()  # Application-UUIDs of our `answer` apps not complete yet
        self._waiters = _Waiters()
        self._events: Any = gevent.queue.Queue(max_events)
        self._wire = _Wire(sock, label=f"outbound {peer}".strip(), on_event=self._on_event,
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
        _log().info("esl.call_closed", call=self.uuid or "-", reason=reason)

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
        return _expect_ok(_verb(data), self._command(data, timeout))

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
        deadline = _Deadline(self._timeout(timeout), "subscribe")
        self._ok(f"myevents {fmt}", deadline.left())
        names = " ".join(dict.fromkeys(_token(e, "event name") for e in (*CALL_EVENTS, *extra)))
        self._ok(f"event {fmt} {names}", deadline.left())

    def linger(self, seconds: int | None = None, timeout: float | None = None) -> None:
        """``linger`` (until we close) or ``linger N`` (N s after hang-up): events after the hang-up still come."""
        self._ok("linger" if seconds is None else f"linger {int(seconds)}", timeout)

    def api(self, command: str, timeout: float | None = None) -> str:
        """``api <command>`` on this socket; EslError on -ERR."""
        data = format_command(f"api {command}")
        return _api_text(_verb(data), self._command(data, timeout))

    def execute_nowait(self, app: str, arg: str | None = None, *, event_lock: bool = False,
                       timeout: float | None = None, app_uuid: str | None = None) -> str:
        """``sendmsg execute``; returns its Application-UUID once FreeSWITCH said +OK."""
        app_uuid = app_uuid or str(uuidlib.uuid4())
        if app.lower() == "answer":
            self._answering.add(app_uuid)  # before sending: rule 7 holds from the first byte
        data = format_execute(None, _token(app, "app"), arg, event_uuid=app_uuid, event_lock=event_lock)
        try:
            _expect_ok(f"execute {app}", self._command(data, timeout))
        except EslError:
            self._answering.discard(app_uuid)  # refused: it will never run (on a timeout it might: keep it)
            raise
        return app_uuid

    def execute(self, app: str, arg: str | None = None, *, event_lock: bool = False,
                timeout: float | None = None) -> EslEvent:
        """``sendmsg execute`` and wait for its CHANNEL_EXECUTE_COMPLETE (matched by Application-UUID)."""
        deadline = _Deadline(self._timeout(timeout), f"execute {app}")
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
        deadline = _Deadline(self._timeout(timeout), "answer")
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
            _log().error("esl.unicast_refused", call=self.uuid or "-", answered=self.answered,
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
        _expect_ok("unicast", self._command(data, timeout, precheck=self._unicast_guard))

    def uuid_transfer_park(self, timeout: float | None = None) -> EslEvent:
        """``uuid_transfer <uuid> park inline`` and wait for CHANNEL_PARK: a fresh park where unicast works."""
        deadline = _Deadline(self._timeout(timeout), "uuid_transfer park")
        mine = self.uuid
        with self.expect_event(lambda e: e.name == "CHANNEL_PARK" and e.unique_id == mine, "CHANNEL_PARK") as park:
            self.api(f"uuid_transfer {_token(mine, 'uuid')} park inline", deadline.left())
            return park.get(deadline.left())

    def rearm_unicast(self, local_ip: str, local_port: int, remote_ip: str, remote_port: int, *,
                      native: bool = False, timeout: float | None = None) -> None:
        """Re-arm a stalled unicast: transfer to a fresh park, wait for CHANNEL_PARK, unicast again."""
        if self.bridged:
            raise RuntimeError(f"call {self.uuid}: bridged; uuid_transfer would break the bridge (re-arm once it ends)")
        deadline = _Deadline(self._timeout(timeout), "re-arm unicast")
        self.uuid_transfer_park(deadline.left())
        self.unicast(local_ip, local_port, remote_ip, remote_port, native=native, timeout=deadline.left())

    def uuid_break(self, *, all_: bool = False, timeout: float | None = None) -> str:
        """``uuid_break <uuid> [all]`` on this call."""
        return self.api(f"uuid_break {_token(self.uuid, 'uuid')}" + (" all" if all_ else ""), timeout)

    def hangup(self, cause: str = "NORMAL_CLEARING", timeout: float | None = None) -> None:
        """``sendmsg hangup`` with ``hangup-cause`` (nothing if already hung up or closed)."""
        if self.closed or self.hung_up:
            return
        _expect_ok("hangup", self._command(format_hangup(None, _token(cause, "cause")), timeout))

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
        _log().info("esl.outbound_listening", address=f"{self._server.server_host}:{self.port}")

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
            _log().warning("esl.outbound_rejected", active=len(self._calls), max_connections=self._max)
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
            _log().info("esl.call_gone", call=call.uuid or "-", reason=str(err))
        except Exception as err:  # one call's bug ends that call only
            self.failed += 1
            _log().exception("esl.handler_error", call=call.uuid or "-", error=repr(err))
            call.hangup_quietly()
