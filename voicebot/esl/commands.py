"""ESL command plumbing shared by the inbound connection and the outbound calls.

Errors, the per-command time budget, one-shot event waiters, and :class:`EslWire`:
one ESL socket with commands sent in order, replies matched in order and a reader
greenlet. The rules it keeps are listed in :mod:`voicebot.esl.connection`.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.socket

from voicebot.esl.protocol import EslEvent, EslMessage, EslParser, EslProtocolError, parse_event
from voicebot.logs import get_logger

_REPLY_TYPES = ("command/reply", "api/response")
ERROR_PREFIXES = ("-ERR", "-USAGE")


def esl_log() -> Any:
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


def verb(data: bytes) -> str:
    """A command's verb for logs and errors: ``api originate``, ``sendmsg``, ``auth`` (no arguments: rule 8)."""
    words = data.split(b"\n", 1)[0].decode("utf-8", "replace").split()
    keep = 2 if words[:1] in (["api"], ["bgapi"]) else 1
    return " ".join(words[:keep])


def token(value: str, what: str) -> str:
    """``value`` if it is one word with no newline (a uuid, a cause, digits); ValueError otherwise."""
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{what} must be one word, got {value!r}")
    return value


def api_text(what: str, reply: EslMessage) -> str:
    """An api/response body as text; EslError if FreeSWITCH said -ERR or -USAGE."""
    text = reply.body.decode("utf-8", "replace")
    if text.startswith(ERROR_PREFIXES):
        raise EslError(what, text)
    return text


def expect_ok(what: str, reply: EslMessage) -> str:
    """A command/reply's text; EslError unless it starts with +OK."""
    if not reply.ok:
        raise EslError(what, reply.reply_text or reply.body.decode("utf-8", "replace"))
    return reply.reply_text


def without_excerpt(err: EslProtocolError) -> str:
    """The error's message without the offending bytes (they go under ``pii``: they could be anything)."""
    text, suffix = str(err), f": {err.seen!r}"
    return text[: -len(suffix)] if err.seen and text.endswith(suffix) else text


class Deadline:
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


class Waiters:
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

    def __init__(self, waiters: Waiters, predicate: Callable[[EslEvent], bool], what: str = "event") -> None:
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
class Pending:
    result: Any
    sent_at: float = 0.0


class EslWire:
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
        self._pending: deque[Pending] = deque()
        self._lock = gevent.lock.Semaphore()
        self._reader = gevent.spawn(self._read_loop)

    def command(self, data: bytes, timeout: float, precheck: Callable[[], None] | None = None) -> EslMessage:
        """Send one command and return its reply (rule 1); ``precheck`` runs under the send lock."""
        pending = Pending(gevent.event.AsyncResult())
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
            raise EslTimeout(f"{self.label}: no reply to {verb(data)!r} within {timeout:g} s") from None
        finally:
            timer.close()

    def _send(self, data: bytes, pending: Pending, precheck: Callable[[], None] | None) -> None:
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
                self.close(f"send of {verb(data)!r} failed ({type(err).__name__})")
                if isinstance(err, OSError):
                    raise self._down(f"{self.label}: {self.close_reason}") from err
                raise

    def _timed_out(self, pending: Pending, data: bytes, timeout: float) -> None:
        esl_log().warning("esl.command_timeout", conn=self.label, command=verb(data), timeout_s=timeout)
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
            reason = f"protocol error: {without_excerpt(err)}"
            esl_log().error("esl.protocol_error", conn=self.label, error=without_excerpt(err),
                         pii={"seen": repr(err.seen)})
        except OSError as err:
            reason = f"socket error: {err}"
        except Exception as err:  # a bug in a hook ends this connection, nothing else
            reason = f"internal error: {err!r}"
            esl_log().exception("esl.reader_error", conn=self.label)
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

