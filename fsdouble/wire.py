"""The FreeSWITCH test double's plumbing: a timer thread, ESL connections, and API replies that wait.

Plain OS threads and blocking sockets (not gevent): the double keeps its own pace whatever the test process
runs. The double wraps what it schedules so that it runs under its lock (``DoubleCore._later``).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class Timer:
    """A scheduled call; ``cancel()`` before it runs and it never does."""

    __slots__ = ("cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run."""
        self.cancelled = True


class Scheduler:
    """One thread running timed callbacks in time order (ties in the order scheduled)."""

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._on_error = on_error
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="fsdouble-timers", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        """Run ``fn`` in ``delay`` s."""
        timer = Timer(time.monotonic() + max(0.0, delay), fn)
        with self._cond:
            heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
            self._cond.notify()
        return timer

    def cancel_all(self) -> None:
        """Drop every pending callback."""
        with self._cond:
            for _, _, timer in self._heap:
                timer.cancel()
            self._heap.clear()

    def stop(self) -> None:
        """Cancel everything and end the thread."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self.cancel_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)

    def _next_due(self) -> Timer | None:
        with self._cond:
            while not self._stopped:
                if self._heap and self._heap[0][0] <= time.monotonic():
                    return heapq.heappop(self._heap)[2]
                wait = self._heap[0][0] - time.monotonic() if self._heap else None
                self._cond.wait(wait)
            return None

    def _run(self) -> None:
        while (timer := self._next_due()) is not None:
            if timer.cancelled:
                continue
            try:
                timer.fn()
            except Exception as err:  # a bug in the double must not kill its clock
                self._on_error(err)


@dataclass(frozen=True, slots=True)
class Command:
    """One command as the double received it: first line, headers (names as sent), body."""

    line: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def get(self, name: str, default: str = "") -> str:
        """Header ``name`` (any case)."""
        folded = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == folded), default)


class CommandReader:
    """Splits a client's byte stream into commands: a block ended by a blank line, then a body if any."""

    def __init__(self, limit: int = 1 << 20) -> None:
        self._buf = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[Command]:
        """Commands completed by ``data``; ValueError if a command grows past the limit."""
        self._buf += data
        out: list[Command] = []
        while (command := self._next()) is not None:
            out.append(command)
        if len(self._buf) > self._limit:
            raise ValueError(f"command over {self._limit} bytes")
        return out

    def _next(self) -> Command | None:
        end = self._buf.find(b"\n\n")
        if end < 0:
            return None
        lines = bytes(self._buf[:end]).decode("utf-8", "replace").replace("\r", "").split("\n")
        headers = dict(_split_header(line) for line in lines[1:] if ":" in line)
        length = int(headers.get("Content-Length", "0") or 0) if headers.get("Content-Length", "0").isdigit() else 0
        if len(self._buf) < end + 2 + length:
            return None
        body = bytes(self._buf[end + 2: end + 2 + length])
        del self._buf[: end + 2 + length]
        return Command(lines[0].strip(), headers, body)


def _split_header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip(), value.strip()


CLOSE = object()


class Conn:
    """One ESL connection: a reader thread feeding the double, a writer thread draining a queue."""

    _ids = itertools.count(1)

    def __init__(self, sock: socket.socket, handle: Callable[[Conn, Command], None],
                 gone: Callable[[Conn], None], *, session: str = "", authed: bool = False) -> None:
        self.id = next(self._ids)
        self.sock = sock
        self.session = session  # the channel an outbound socket controls
        self.authed = authed
        self.events: set[str] = set()
        self.fmt = "plain"
        self.myevents = False
        self.linger: int | None = None  # None: no linger; -1: until we close; N: N s
        self.filters: list[tuple[str, str]] = []
        self.resume = False
        self.closed = False
        self.socket_mode = "async"  # an outbound socket's mode: "async" or "static" (the socket app's data said no async)
        self.control = "full"  # "full", or "single-channel": only a few commands (fsdouble.args.NON_FULL_COMMANDS)
        self._handle, self._gone = handle, gone
        self._out: queue.Queue[object] = queue.Queue()
        self._reader = CommandReader()
        self._threads = [threading.Thread(target=self._read_loop, name=f"fsdouble-esl-r{self.id}", daemon=True),
                         threading.Thread(target=self._write_loop, name=f"fsdouble-esl-w{self.id}", daemon=True)]

    def start(self) -> None:
        """Start serving."""
        for thread in self._threads:
            thread.start()

    def send(self, data: bytes) -> None:
        """Queue bytes for the peer."""
        if not self.closed:
            self._out.put(data)

    def close_after_flush(self) -> None:
        """Close once everything queued is sent (FreeSWITCH's orderly close)."""
        if not self.closed:
            self.closed = True
            self._out.put(CLOSE)

    def abort(self) -> None:
        """Close now, dropping whatever is queued (the process died, or the socket was cut)."""
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        self._out.put(CLOSE)

    def end_writer(self) -> None:
        """End the writer thread once it has sent what is queued (the peer is gone)."""
        self._out.put(CLOSE)

    def join(self) -> None:
        """Wait for both threads (after a close)."""
        for thread in self._threads:
            if thread is not threading.current_thread() and thread.ident is not None:
                thread.join(timeout=2)

    def _write_loop(self) -> None:
        while (item := self._out.get()) is not CLOSE:
            try:
                self.sock.sendall(item)  # type: ignore[arg-type]
            except OSError:
                break
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.closed = True

    def _read_loop(self) -> None:
        try:
            while data := self.sock.recv(65536):
                for command in self._reader.feed(data):
                    self._handle(self, command)
        except (OSError, ValueError):
            pass
        self._gone(self)


class Outcome:
    """An API reply that waits for the call: an originate answered only when the engine answers its B leg."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.body = ""
        self._waiters: list[Callable[[str], None]] = []

    def resolve(self, body: str) -> None:
        """The reply is ``body`` (first call wins); waiters run now, in the caller's thread."""
        if self.done.is_set():
            return
        self.body = body
        self.done.set()
        for waiter in self._waiters:
            waiter(body)

    def on_done(self, waiter: Callable[[str], None]) -> None:
        """Run ``waiter(body)`` once resolved (at once if it is)."""
        if self.done.is_set():
            waiter(self.body)
        else:
            self._waiters.append(waiter)


@dataclass(slots=True)
class ApiResult:
    """An API reply: ``body`` after ``delay`` s, then ``then()`` (e.g. the originated call's events).

    With ``outcome`` the body is the outcome's, whenever it resolves (the connection waits, as FreeSWITCH's does).
    """

    body: str
    delay: float = 0.0
    then: Callable[[], None] | None = None
    outcome: Outcome | None = None



Delayed = tuple[float | Outcome, Callable[[], None]] | None
