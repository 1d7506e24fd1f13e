"""The inbound ESL connection: supervised, reconnecting, with isolated event subscribers (rules 1, 2, 4, 5
of :mod:`voicebot.esl.connection`)."""

from __future__ import annotations

import contextlib
import random
import time
import uuid as uuidlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import gevent.queue
import gevent.socket

from voicebot.esl.commands import (
    ERROR_PREFIXES,
    Deadline,
    EslDown,
    EslError,
    EslFailure,
    EslTimeout,
    EslWire,
    EventWaiter,
    Waiters,
    api_text,
    esl_log,
    expect_ok,
    token,
    verb,
)
from voicebot.esl.protocol import EslEvent, EslMessage, format_command, format_unicast

DEFAULT_EVENTS = (
    "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE",
    "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_PROGRESS_MEDIA", "PLAYBACK_START", "PLAYBACK_STOP", "DTMF", "BACKGROUND_JOB",
    "CHANNEL_PROGRESS", "HEARTBEAT",  # the campaign dialer: ringing, and each box's free sessions
)
# Added to `myevents` on an outbound socket: it lacks PLAYBACK_* (capture check3 in tests/fixtures/esl); the rest is explicit.
_REQUIRED_EVENTS = ("BACKGROUND_JOB", "CHANNEL_PARK")  # bgapi results and uuid_transfer_park need them
_MAX_JOBS = 10_000
# Reconnect backoff (s): calls FreeSWITCH sends while the engine waits to reconnect are lost, so the wait stays
# short; a refused loopback connect costs well under a millisecond. The engine passes no other values.
BACKOFF_INITIAL_S = 0.25
BACKOFF_MAX_S = 1.5


def backoff_delay(attempt: int, *, initial_s: float = BACKOFF_INITIAL_S, max_s: float = BACKOFF_MAX_S,
                  rand: Callable[[], float] = random.random) -> float:
    """Seconds before reconnect attempt ``attempt`` (1, 2, ...): initial·2^(n-1) capped at ``max_s``, jittered
    into [d/2, d] (defaults: 0.25 s doubling to 1.5 s, so never more than 1.5 s)."""
    delay = min(max_s, initial_s * float(1 << min(max(attempt - 1, 0), 30)))
    return delay / 2 + rand() * delay / 2



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
                esl_log().warning("esl.subscriber_behind", callback=_name(self.callback), dropped=self.dropped)

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            try:
                self.callback(event)
            except Exception:
                esl_log().exception("esl.subscriber_error", callback=_name(self.callback), event_name=event.name)

    def close(self) -> None:
        """Stop delivering; the greenlet ends."""
        self.closed = True
        self._greenlet.kill(block=False)


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", repr(fn))


def unreachable_hint(err: BaseException) -> str:
    """What to check when a connection attempt failed with ``err`` (no secret, no PII)."""
    text = str(err)
    if isinstance(err, EslError) and text.startswith("auth refused"):
        return "check freeswitch.password: it must match the password in FreeSWITCH's event_socket.conf.xml"
    if isinstance(err, EslError) and "ACL" in text:
        return "FreeSWITCH refused the engine's address: check apply-inbound-acl in event_socket.conf.xml"
    return ("check freeswitch.host/port in the engine config, that FreeSWITCH runs, and listen-ip/listen-port "
            "in its event_socket.conf.xml (mod_event_socket)")


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """Health of the inbound connection. Times are monotonic seconds."""

    connected: bool
    since: float | None  # when it came up (connected) or went down (not connected); None: never tried
    reconnects: int  # times it came back after being up
    attempts: int  # failed attempts since it was last up (or since the start)
    last_error: str
    address: str
    attempts_total: int = 0  # every connection attempt since the start, failed or not
    connects: int = 0  # attempts that succeeded (connected, authenticated, subscribed)
    hint: str = ""  # what to check, while the last attempt failed


class InboundConnection:
    """One inbound ESL connection to FreeSWITCH, kept up by a supervisor greenlet (rules 1, 2, 4, 5).

    ``events``: what to subscribe to (BACKGROUND_JOB and CHANNEL_PARK are always
    added); ``command_timeout_s``: the default timeout of every command.
    """

    def __init__(self, host: str, port: int, password: str, *, events: Sequence[str] = DEFAULT_EVENTS,
                 command_timeout_s: float = 5.0, connect_timeout_s: float = 3.0,
                 backoff_initial_s: float = BACKOFF_INITIAL_S, backoff_max_s: float = BACKOFF_MAX_S,
                 event_format: str = "plain", subscriber_queue: int = 10_000) -> None:
        if event_format not in ("plain", "json"):
            raise ValueError(f"event_format must be 'plain' or 'json', not {event_format!r}")
        if not password or "\n" in password or "\r" in password:
            raise ValueError("the ESL password must be non-empty and on one line")  # never echo it
        self.host, self.port, self._password = host, port, password
        self.events = tuple(dict.fromkeys(token(e, "event name") for e in (*events, *_REQUIRED_EVENTS)))
        self.command_timeout_s, self.connect_timeout_s = command_timeout_s, connect_timeout_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.event_format = event_format
        self._subscriber_queue = subscriber_queue
        self._wire: EslWire | None = None
        self._supervisor: Any = None
        self._stopping = False
        self._subscribers: list[Subscription] = []
        self._waiters = Waiters()
        self._jobs: OrderedDict[str, Any] = OrderedDict()
        self._up = gevent.event.Event()
        self._since: float | None = None
        self._reconnects = self._attempts = self._attempts_total = self._connects = 0
        self._ever_up = False
        self._last_error = self._hint = ""

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
        """Health for a status endpoint: connected, since, reconnects, attempts (failed since up, and in all),
        successful connects, last error, and a hint while down."""
        return ConnectionState(self.up, self._since, self._reconnects, self._attempts, self._last_error,
                               f"{self.host}:{self.port}", self._attempts_total, self._connects,
                               "" if self.up else self._hint)

    # ------------------------------------------------------------ supervisor

    def _supervise(self) -> None:
        while not self._stopping:
            self._attempts_total += 1
            try:
                wire = self._open()
            except Exception as err:  # refused, timed out, rejected, not ESL...: the supervisor never dies
                self._failed(err)
                gevent.sleep(backoff_delay(self._attempts, initial_s=self.backoff_initial_s,
                                           max_s=self.backoff_max_s))
                continue
            self._came_up(wire)
            wire.closed_event.wait()
            self._went_down(wire.close_reason)
            if not self._stopping:
                gevent.sleep(backoff_delay(1, initial_s=self.backoff_initial_s, max_s=self.backoff_max_s))

    def _open(self) -> EslWire:
        sock = gevent.socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        sock.settimeout(None)
        with contextlib.suppress(OSError):
            sock.setsockopt(gevent.socket.IPPROTO_TCP, gevent.socket.TCP_NODELAY, 1)
        greeting = gevent.event.AsyncResult()
        wire = EslWire(sock, label=f"inbound {self.host}:{self.port}", on_event=self._on_event,
                       on_notice=lambda m: self._on_notice(m, greeting), down=EslDown,
                       on_close=lambda reason: greeting.ready() or greeting.set_exception(EslDown(reason)))
        try:
            self._handshake(wire, greeting)
        except BaseException:
            wire.close("handshake failed")
            raise
        return wire

    def _handshake(self, wire: EslWire, greeting: Any) -> None:
        try:
            greeting.get(timeout=self.command_timeout_s)
        except gevent.Timeout:
            raise EslTimeout(f"no auth/request within {self.command_timeout_s:g} s of connecting") from None
        reply = wire.command(format_command(f"auth {self._password}"), self.command_timeout_s)
        if reply.reply_text.strip() != "+OK accepted":
            raise EslError("auth refused (check the ESL password)", reply.reply_text)
        names = " ".join(self.events)
        expect_ok("event", wire.command(format_command(f"event {self.event_format} {names}"), self.command_timeout_s))

    def _came_up(self, wire: EslWire) -> None:
        if self._ever_up:
            self._reconnects += 1
        self._ever_up, self._attempts, self._wire = True, 0, wire
        self._connects += 1
        self._hint = ""
        self._since = time.monotonic()
        self._up.set()
        esl_log().info("esl.inbound_up", address=f"{self.host}:{self.port}", reconnects=self._reconnects)

    def _failed(self, err: Exception) -> None:
        """A failed attempt: counted; the first of an outage is a warning with a hint (again only if the hint
        changes: refused, then a wrong password), the rest are info."""
        error, hint = f"{type(err).__name__}: {err}", unreachable_hint(err)
        self._attempts += 1
        self._last_error = error
        if self._since is None:
            self._since = time.monotonic()
        address = f"{self.host}:{self.port}"
        if hint != self._hint:
            self._hint = hint
            esl_log().warning("esl.inbound_unreachable", address=address, attempt=self._attempts, error=error,
                              hint=hint)
        else:
            esl_log().info("esl.inbound_down", address=address, attempt=self._attempts, error=error)

    def _went_down(self, reason: str) -> None:
        self._up.clear()
        self._wire = None
        self._last_error = reason
        self._since = time.monotonic()
        self._attempts = 0
        self._hint = ""  # a new outage: its first failed attempt says what to check again
        self._waiters.fail(lambda: EslDown(f"inbound connection lost: {reason}"))
        for result in self._jobs.values():  # failed in place: job_result() still finds them
            if not result.ready():
                result.set_exception(EslDown(f"inbound connection lost before the job finished: {reason}"))
        if not self._stopping:
            esl_log().warning("esl.inbound_down", address=f"{self.host}:{self.port}", error=reason)

    def _on_notice(self, message: EslMessage, greeting: Any) -> None:
        kind = message.content_type
        if kind == "auth/request":
            greeting.set(True)
        elif kind == "text/rude-rejection":
            greeting.set_exception(EslError("rejected by FreeSWITCH (ACL)", message.body.decode("utf-8", "replace")))
        elif kind == "text/disconnect-notice":
            esl_log().info("esl.disconnect_notice", address=f"{self.host}:{self.port}")

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
        return api_text(verb(data), self._command(data, timeout))

    def bgapi(self, command: str, timeout: float | None = None) -> str:
        """``bgapi <command>``: the Job-UUID at once; the result comes with :meth:`job_result`."""
        job = str(uuidlib.uuid4())
        self._jobs[job] = gevent.event.AsyncResult()  # before sending: the job may finish before the reply
        while len(self._jobs) > _MAX_JOBS:
            self._jobs.popitem(last=False)
        data = format_command(f"bgapi {command}", {"Job-UUID": job})
        try:
            expect_ok(verb(data), self._command(data, timeout))
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
        if text.startswith(ERROR_PREFIXES):
            raise EslError(f"job {job}", text)
        return text

    def bgapi_result(self, command: str, timeout: float | None = None) -> str:
        """``bgapi`` and wait for its result, all within ``timeout`` s."""
        deadline = Deadline(self.command_timeout_s if timeout is None else timeout, "bgapi")
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
        uuid = token(uuid or str(uuidlib.uuid4()), "uuid")
        self.bgapi_result(f"originate {_with_var(dial_string, 'origination_uuid', uuid)} {app}", timeout)
        return uuid

    def uuid_transfer_park(self, uuid: str, timeout: float | None = None) -> EslEvent:
        """``uuid_transfer <uuid> park inline`` and wait for its CHANNEL_PARK (how unicast is re-armed)."""
        uuid = token(uuid, "uuid")
        deadline = Deadline(self.command_timeout_s if timeout is None else timeout, "uuid_transfer park")
        with self.expect_event(lambda e: e.name == "CHANNEL_PARK" and e.unique_id == uuid, "CHANNEL_PARK") as park:
            self.api(f"uuid_transfer {uuid} park inline", deadline.left())
            return park.get(deadline.left())

    def unicast(self, uuid: str, local_ip: str, local_port: int, remote_ip: str, remote_port: int, *,
                native: bool = False, timeout: float | None = None) -> None:
        """``sendmsg <uuid>`` unicast on any channel (e.g. the far leg of a test call). The caller must know the
        channel is answered and parked: unicast before the answer crashes FreeSWITCH (docs/freeswitch.md)."""
        data = format_unicast(token(uuid, "uuid"), local_ip=local_ip, local_port=local_port, remote_ip=remote_ip,
                              remote_port=remote_port, native=native)
        expect_ok("unicast", self._command(data, timeout))

    def uuid_bridge(self, a: str, b: str, timeout: float | None = None) -> str:
        """``uuid_bridge <a> <b>`` (CHANNEL_BRIDGE follows ~61 ms later)."""
        return self.api(f"uuid_bridge {token(a, 'uuid')} {token(b, 'uuid')}", timeout)

    def uuid_kill(self, uuid: str, cause: str = "NORMAL_CLEARING", timeout: float | None = None) -> str:
        """``uuid_kill <uuid> <cause>``."""
        return self.api(f"uuid_kill {token(uuid, 'uuid')} {token(cause, 'cause')}", timeout)

    def uuid_break(self, uuid: str, *, all_: bool = False, timeout: float | None = None) -> str:
        """``uuid_break <uuid> [all]``: stop the playback (PLAYBACK_STOP, Playback-Status: break)."""
        return self.api(f"uuid_break {token(uuid, 'uuid')}" + (" all" if all_ else ""), timeout)

    def uuid_recv_dtmf(self, uuid: str, digits: str, timeout: float | None = None) -> str:
        """``uuid_recv_dtmf <uuid> <digits>``: as if the channel's far end pressed them."""
        return self.api(f"uuid_recv_dtmf {token(uuid, 'uuid')} {token(digits, 'digits')}", timeout)


def _with_var(dial_string: str, name: str, value: str) -> str:
    """Add ``name=value`` to a dial string's ``{...}`` block (making one if needed)."""
    dial_string = dial_string.strip()
    if dial_string.startswith("{"):
        return "{" + f"{name}={value}," + dial_string[1:]
    return "{" + f"{name}={value}" + "}" + dial_string
