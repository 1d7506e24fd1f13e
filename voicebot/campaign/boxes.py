"""Which FreeSWITCH box places the next dial: the one with the most free sessions. Sans-I/O.

Each box's ``HEARTBEAT`` event (every 20 s by default, ``event-heartbeat-interval`` in switch.conf.xml) carries
``Session-Count`` and ``Max-Sessions`` (capture ``dial_outcomes`` in tests/fixtures/esl). Rules:

1. A box whose ESL connection is down is never picked.
2. Free sessions = ``Max-Sessions - Session-Count - dials placed since that heartbeat`` (a heartbeat is up to
   20 s old; the dials this engine placed since then count against it).
3. A box without counts (no HEARTBEAT yet, and ``api status`` unanswered: :meth:`Boxes.status` reads that reply
   the same way) counts as ``unknown_free`` free sessions; so does one whose counts are older than ``stale_s``.
4. The most free sessions wins; ties go to the box listed first. None when no box is up or none has a free session.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_STATUS_NOW = re.compile(r"^(\d+) session\(s\) - peak", re.M)
_STATUS_MAX = re.compile(r"^(\d+) session\(s\) max", re.M)

STALE_S = 65.0  # three missed heartbeats at FreeSWITCH's default 20 s interval
UNKNOWN_FREE = 1  # free sessions assumed for a box whose load is unknown: one dial at a time until it answers


@dataclass
class BoxState:
    """What the engine knows of one box. Times are monotonic seconds."""

    name: str
    up: bool = False
    session_count: int | None = None
    max_sessions: int | None = None
    heard_at: float | None = None
    placed_since: int = 0

    def free(self, now: float, *, stale_s: float = STALE_S, unknown_free: int = UNKNOWN_FREE) -> int:
        """Rules 2 and 3."""
        if self.session_count is None or self.max_sessions is None or self.heard_at is None \
                or now - self.heard_at > stale_s:
            return unknown_free - self.placed_since
        return self.max_sessions - self.session_count - self.placed_since


@dataclass
class Boxes:
    """The boxes in the order the config lists them."""

    names: tuple[str, ...]
    stale_s: float = STALE_S
    unknown_free: int = UNKNOWN_FREE
    states: dict[str, BoxState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("at least one FreeSWITCH box is needed to dial")
        for name in self.names:
            self.states.setdefault(name, BoxState(name))

    def heartbeat(self, name: str, headers: Mapping[str, str], now: float) -> None:
        """A HEARTBEAT from box ``name``; headers without usable counts are ignored."""
        try:
            count, most = int(headers["Session-Count"]), int(headers["Max-Sessions"])
        except (KeyError, ValueError):
            return
        state = self.states[name]
        state.session_count, state.max_sessions, state.heard_at, state.placed_since = count, most, now, 0

    def status(self, name: str, text: str, now: float) -> bool:
        """An ``api status`` reply from box ``name`` (``N session(s) - peak ...``, ``M session(s) max``), read as
        a heartbeat: how the engine learns a box's load before its first HEARTBEAT. False if unreadable."""
        count, most = _STATUS_NOW.search(text), _STATUS_MAX.search(text)
        if count is None or most is None:
            return False
        self.heartbeat(name, {"Session-Count": count[1], "Max-Sessions": most[1]}, now)
        return True

    def needs_status(self, name: str, now: float) -> bool:
        """Box ``name`` is up but its counts are missing or stale (ask it with ``api status``)."""
        state = self.states[name]
        return state.up and (state.heard_at is None or now - state.heard_at > self.stale_s)

    def connection(self, name: str, up: bool) -> None:
        """Box ``name``'s connection came up or went down (rule 1)."""
        self.states[name].up = up

    def placed(self, name: str) -> None:
        """A dial went out through ``name`` (rule 2)."""
        self.states[name].placed_since += 1

    def pick(self, now: float) -> str | None:
        """Rule 4."""
        best: tuple[int, str] | None = None
        for name in self.names:
            state = self.states[name]
            if not state.up:
                continue
            free = state.free(now, stale_s=self.stale_s, unknown_free=self.unknown_free)
            if free > 0 and (best is None or free > best[0]):
                best = (free, name)
        return best[1] if best else None

    def free_sessions(self, now: float) -> int:
        """Free sessions over every box that is up (for pacing)."""
        return sum(max(0, s.free(now, stale_s=self.stale_s, unknown_free=self.unknown_free))
                   for s in self.states.values() if s.up)
