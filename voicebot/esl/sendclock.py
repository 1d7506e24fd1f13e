"""Pacing every stream's outgoing frames from one greenlet, and how late they left.

:class:`SendClock`: one greenlet per gevent hub wakes when the earliest stream's
slot is due and fires every stream due within :data:`SendClock.COALESCE_S`;
streams started without an explicit first slot share one 20 ms grid, so with N
calls there is one timer and one wake per tick instead of N.
:data:`SEND_LATENESS` counts, over the process, how late each frame left
against its slot (read by ``bench/capacity.py``). Used by
:mod:`voicebot.esl.unicast` (rule 4 there).
"""

from __future__ import annotations

import time
import weakref
from typing import Any, Protocol

import gevent
import gevent.event


class Paced(Protocol):
    """A stream on the clock: its next slot, sending that slot, and when it is over."""

    t0: float | None  # the first slot (monotonic s); None: the clock puts it on its grid
    done: gevent.event.Event
    error: BaseException | None

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
        """Send the slot that is due."""
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


class SendClock:
    """Paces every stream of one gevent hub from a single greenlet (rule 4).

    One timer and one wake per tick for all calls, instead of one sleeping
    greenlet per call: with 50 calls that is 50 wakes a second instead of 2,500.
    Streams started without ``start_at`` share one 20 ms grid, so their slots
    fall due together; slots due within :data:`COALESCE_S` of each other go out
    in the same wake. A stream whose ``next_frame`` raises is stopped (the
    error is raised in its own ``send_loop``); the others go on.
    """

    COALESCE_S = 0.0005

    def __init__(self) -> None:
        self._senders: list[Paced] = []
        self._grid0: float | None = None
        self._added = gevent.event.Event()
        self._greenlet: gevent.Greenlet | None = None

    @classmethod
    def of_hub(cls) -> SendClock:
        """The clock of the current thread's gevent hub."""
        hub = gevent.get_hub()
        clock = _CLOCKS.get(hub)
        if clock is None:
            clock = _CLOCKS[hub] = cls()
        return clock

    @property
    def streams(self) -> int:
        """Streams being paced now."""
        return len(self._senders)

    def run(self, sender: Paced) -> None:
        """Pace ``sender`` until its stream closes (or this greenlet is killed); raise what its ``next_frame`` raised."""
        if sender.t0 is None:
            now, period = time.monotonic(), sender.period
            if self._grid0 is None:
                self._grid0 = now
            sender.t0 = self._grid0 + -(-(now - self._grid0) // period) * period  # the grid's next tick
        self._senders.append(sender)
        self._added.set()
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._loop)
        try:
            sender.done.wait()
        finally:
            if sender in self._senders:
                self._senders.remove(sender)
        if sender.error is not None:
            raise sender.error

    def _loop(self) -> None:
        hub = gevent.get_hub()
        while self._senders:
            self._added.clear()
            hub.loop.update_now()
            left = min(s.target for s in self._senders) - time.monotonic()
            if left > 0 and self._added.wait(left):
                continue  # a stream joined: its first slot may come sooner
            self._fire_due()

    def _fire_due(self) -> None:
        horizon = time.monotonic() + self.COALESCE_S
        for sender in list(self._senders):
            if sender.closed:
                self._retire(sender)
            elif sender.target <= horizon:
                try:
                    sender.fire()
                except Exception as err:  # this stream's source failed: stop it, not the others
                    sender.error = err
                    self._retire(sender)

    def _retire(self, sender: Paced) -> None:
        if sender in self._senders:
            self._senders.remove(sender)
        sender.done.set()


_CLOCKS: weakref.WeakKeyDictionary[Any, SendClock] = weakref.WeakKeyDictionary()
