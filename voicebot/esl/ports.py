"""Unicast port pairs: one ``(local, remote)`` UDP pair per call from a configured range (rule 1 of
:mod:`voicebot.esl.unicast`, which re-exports these names)."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PortPair:
    """One call's UDP ports: ``local`` FreeSWITCH binds (``local-port``), ``remote`` we bind (``remote-port``)."""

    local: int
    remote: int


class PortsExhausted(RuntimeError):
    """Every port pair of the range is in use: raise the range or refuse the call."""


class PortPool:
    """Port pairs ``(p, p+1)`` for p = low, low+2, ... within [low, high]; thread- and greenlet-safe (rule 1)."""

    def __init__(self, low: int, high: int) -> None:
        if not 1 <= low < high <= 65535:
            raise ValueError(f"port range {low}-{high} must hold at least two ports within 1-65535")
        self.low, self.high = low, high
        self._free: deque[PortPair] = deque(PortPair(p, p + 1) for p in range(low, high, 2) if p + 1 <= high)
        self._in_use: set[PortPair] = set()
        self._lock = threading.Lock()  # never held across a yield
        self.capacity = len(self._free)

    def allocate(self) -> PortPair:
        """The least recently used free pair; PortsExhausted when none is free."""
        with self._lock:
            if not self._free:
                raise PortsExhausted(f"all {self.capacity} unicast port pairs in {self.low}-{self.high} are in use")
            pair = self._free.popleft()
            self._in_use.add(pair)
            return pair

    def release(self, pair: PortPair) -> None:
        """Give ``pair`` back (to the end of the line). Releasing twice does nothing."""
        with self._lock:
            if pair in self._in_use:
                self._in_use.remove(pair)
                self._free.append(pair)

    @property
    def free(self) -> int:
        """Pairs free now."""
        with self._lock:
            return len(self._free)

    @property
    def in_use(self) -> int:
        """Pairs allocated now."""
        with self._lock:
            return len(self._in_use)
