"""Pacing every stream's outgoing frames from one native OS thread, and how late they left.

:class:`SendClock`: one native thread per process (not a greenlet) wakes when
the earliest stream's slot is due and fires every stream due within
:data:`SendClock.COALESCE_S`; streams started without an explicit first slot
share one 20 ms grid, so with N calls there is one wake per tick instead of N.
:data:`SEND_LATENESS` counts, over the process, how late each frame left
against its slot (read by ``bench/capacity.py``). Used by
:mod:`voicebot.esl.unicast` (rule 4 there).

Why a native thread and not a greenlet on the hub. gevent stays confined to
the engine's edges (sockets and the send clock), but the clock needs none of
the hub: it sleeps on a native lock's timed wait, takes each frame from the
call's session thread (a lock-free deque, :meth:`SessionThread.next_bot_frame
<voicebot.esl.driver.SessionThread.next_bot_frame>`) and sends it on its own
duplicate of the stream's UDP socket (a plain ``_socket``, non-blocking: a
full buffer drops the frame). As a greenlet it could fire only when the hub
came back to its loop, and ``bench/max_gap.py`` showed every call's audio
stopping at the same instant with 0 underrun slots whenever the hub was busy:
its stack in ESL event parsing (esl/protocol.py, commands.py ``_read_loop``)
or in ``sendto`` itself, as a 16 kHz call started. A native thread is
scheduled by the OS and gets the GIL within the switch interval (1 ms, set in
``Engine.start``), whatever the hub is doing: with 20 calls, the greenlet clock
against this thread, pairs back to back on a shared box, the thread left fewer
long gaps and skipped slots in 5 of the 6 pairs run at normal priority (bench/README.md, max_gap.py).

What crosses back to the hub goes through :class:`HubSignal` (gevent's async
watcher, whose ``send`` is thread-safe): a stream's end (closed, or its
``next_frame`` raised) wakes the greenlet in :meth:`SendClock.run`. The clock
thread never touches another gevent object. Each stream's firing holds a
native lock, so when its greenlet is killed (a hang-up) ``next_frame`` is
never called again once :meth:`SendClock.run` has returned.
"""

from __future__ import annotations

import _thread
import contextlib
import sys
import threading
import time
from typing import Any, Protocol

import gevent
import gevent.event

from voicebot.logs import get_logger
from voicebot.native import native_lock


class Paced(Protocol):
    """A stream on the clock: its next slot, sending that slot, and when it is over."""

    t0: float | None  # the first slot (monotonic s); None: the clock puts it on its grid

    @property
    def target(self) -> float:
        """When the next slot is due (monotonic s)."""
        ...

    @property
    def period(self) -> float:
        """Seconds between slots."""
        ...

    @property
    def closed(self) -> bool:
        """True once the stream is gone (the clock drops it)."""
        ...

    def fire(self) -> None:
        """Send the slot that is due (on the clock's thread: must not block, nor touch gevent objects)."""
        ...

    def release(self) -> None:
        """The clock is done with this stream (e.g. close its sending socket); called once, on any thread."""
        ...


class SendLateness:
    """How late frames left against their media clock, over every stream of the process (0.5 ms bins to 1 s).

    One ``add`` per frame sent (cheap: an index and an increment), ``skip`` for
    slots missed by more than a frame. :data:`SEND_LATENESS` is the process's
    instance, read by ``bench/capacity.py`` and resettable between runs.
    """

    BIN_S = 0.0005
    BINS = 2000

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        self.counts = [0] * (self.BINS + 1)
        self.n = 0
        self.skipped = 0
        self.max_s = 0.0

    def add(self, late_s: float) -> None:
        """One frame sent ``late_s`` s after its slot."""
        self.counts[min(self.BINS, max(0, int(late_s / self.BIN_S)))] += 1
        self.n += 1
        if late_s > self.max_s:
            self.max_s = late_s

    def skip(self, slots: int) -> None:
        """``slots`` frames were never sent (the sender fell more than a frame behind)."""
        self.skipped += slots

    def percentile_ms(self, q: float) -> float | None:
        """The upper edge (ms) of the bin holding the ``q``-th percentile; None before any frame."""
        if not self.n:
            return None
        rank, seen = q / 100 * self.n, 0
        for i, count in enumerate(self.counts):
            seen += count
            if seen >= rank and count:
                return round((i + 1) * self.BIN_S * 1000, 1)
        return round(self.max_s * 1000, 1)

    def summary(self) -> dict[str, float | int | None]:
        """n, p50, p95, p99, max (ms) and skipped slots."""
        return {"n": self.n, "p50": self.percentile_ms(50), "p95": self.percentile_ms(95), "p99": self.percentile_ms(99),
                "max": round(self.max_s * 1000, 1), "skipped": self.skipped}


SEND_LATENESS = SendLateness()


class HubSignal:
    """A flag that any thread may set and that greenlets of one hub wait on (gevent's async watcher: thread-safe).

    Make it on the hub whose greenlets wait; :meth:`set` from any thread; :meth:`close` on that hub once no thread
    will set it any more.
    """

    def __init__(self) -> None:
        self._event = gevent.event.Event()
        self._watcher = gevent.get_hub().loop.async_()
        self._watcher.start(self._event.set)

    def set(self) -> None:
        """Wake the waiters (from any thread; never blocks)."""
        self._watcher.send()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait (a greenlet) until :meth:`set` has been seen on the hub, at most ``timeout`` s; True once it has."""
        return bool(self._event.wait(timeout))

    def close(self) -> None:
        """Stop the watcher (on its hub)."""
        self._watcher.stop()
        self._watcher.close()


class _Entry:
    """One stream on the clock, with what its greenlet waits on; ``lock`` is held while it fires or ends."""

    def __init__(self, sender: Paced) -> None:
        self.sender = sender
        self.lock = native_lock()
        self.signal = HubSignal()
        self.error: BaseException | None = None
        self.finished = False  # the clock no longer paces it (it ended, or its greenlet left run())


THREAD_NAME = "voicebot-sendclock"  # the clock's thread, as profiles name it


class SendClock:
    """Paces every stream of the process from one native thread (rule 4 of voicebot.esl.unicast).

    One wake per tick for all calls, instead of one sleeping greenlet per call.
    Streams started without ``t0`` share one 20 ms grid, so their slots fall
    due together; slots due within :data:`COALESCE_S` of each other go out in
    the same wake. A stream whose ``fire`` raises is stopped (the error is
    raised in its own :meth:`run`); the others go on. The thread starts with
    the first stream and then waits, idle, for the next.
    """

    COALESCE_S = 0.0005

    def __init__(self) -> None:
        self._entries: list[_Entry] = []
        self._lock = native_lock()  # guards _entries, _grid0 and _started
        self._wake = native_lock()  # released to wake the thread (a stream joined)
        self._wake.acquire()
        self._grid0: float | None = None
        self._started = False

    @classmethod
    def process(cls) -> SendClock:
        """The process's clock."""
        return _CLOCK

    @property
    def streams(self) -> int:
        """Streams being paced now."""
        return len(self._entries)

    def run(self, sender: Paced) -> None:
        """Pace ``sender`` until its stream closes (or this greenlet is killed); raise what its ``fire`` raised."""
        entry = _Entry(sender)
        try:
            with self._lock:
                if sender.t0 is None:
                    sender.t0 = self._grid_tick(sender.period)
                self._entries.append(entry)
                start = not self._started
                self._started = True
            if start:
                _start_native_thread(self._loop)
            self._poke()
            entry.signal.wait()
        finally:
            self._leave(entry)
        if entry.error is not None:
            raise entry.error

    def _grid_tick(self, period: float) -> float:
        """The shared grid's next tick (monotonic s); the grid starts with the first stream (under ``_lock``)."""
        now = time.monotonic()
        if self._grid0 is None:
            self._grid0 = now
        return self._grid0 + -(-(now - self._grid0) // period) * period

    def _leave(self, entry: _Entry) -> None:
        """(Hub) the greenlet leaves run(): stop pacing the stream if the clock has not, without blocking the hub."""
        while not entry.lock.acquire(False):  # held only while the stream fires: microseconds
            gevent.sleep(0.001)
        ended_here = not entry.finished
        entry.finished = True
        entry.lock.release()
        if ended_here:
            self._remove(entry)
            entry.sender.release()
        entry.signal.close()

    def _poke(self) -> None:
        with contextlib.suppress(RuntimeError):  # already released: the thread will wake anyway
            self._wake.release()

    def _remove(self, entry: _Entry) -> None:
        with self._lock:
            if entry in self._entries:
                self._entries.remove(entry)

    # ------------------------------------------------------------ the clock's thread

    def _loop(self) -> None:
        threading.current_thread().name = THREAD_NAME  # a dummy Thread for this native one: named in profiles
        while True:
            try:
                self._tick()
            except Exception as err:  # never reached by a stream's own failure (see _fire_due); the clock goes on
                get_logger("sendclock").error("sendclock.failed", error=repr(err))
                self._sleep(0.02)

    def _tick(self) -> None:
        """Wait for the earliest slot (or a new stream), then fire what is due."""
        with self._lock:
            entries = list(self._entries)
        if not entries:
            self._sleep(None)  # idle until a stream joins
            return
        left = min(e.sender.target for e in entries) - time.monotonic()
        if left > 0:
            self._sleep(left)  # woken early: a stream joined (its slot may come sooner)
            return
        self._fire_due(entries)

    def _sleep(self, timeout: float | None) -> None:
        """Wait ``timeout`` s (None: for ever) or until a stream joins; the GIL is released meanwhile."""
        self._wake.acquire(True, -1 if timeout is None else timeout)

    def _fire_due(self, entries: list[_Entry]) -> None:
        horizon = time.monotonic() + self.COALESCE_S
        for entry in entries:
            with entry.lock:
                if entry.finished:
                    continue
                if entry.sender.closed:
                    self._finish(entry)
                elif entry.sender.target <= horizon:
                    try:
                        entry.sender.fire()
                    except Exception as err:  # this stream's source failed: stop it, not the others
                        entry.error = err
                        self._finish(entry)

    def _finish(self, entry: _Entry) -> None:
        """(Clock thread, under ``entry.lock``) stop pacing the stream and wake its greenlet."""
        entry.finished = True
        self._remove(entry)
        try:
            entry.sender.release()
        finally:
            entry.signal.set()


def _start_native_thread(run: Any) -> None:
    """Start ``run`` in a native OS thread, even under gevent monkey-patching; returns at once (it does not wait,
    as ``threading.Thread.start`` does, for the thread to be scheduled)."""
    monkey = sys.modules.get("gevent.monkey")
    start = monkey.get_original("_thread", "start_new_thread") if monkey is not None else _thread.start_new_thread
    start(run, ())


_CLOCK = SendClock()
