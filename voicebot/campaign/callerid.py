"""Caller ID for outbound dials: a pure picker over the operator's own numbers. No I/O.

Rules:

1. Only numbers in the pool are ever used (numbers the operator holds: no spoofing).
2. A number is usable at ``now`` when it has dialed fewer than its ``daily_cap`` times in the current UTC day
   and its cool-down (``cool_until``, epoch s) has passed.
3. The callee's region (ISO 3166 code, e.g. ``US``, ``CN``) wins: a usable number of that region when the pool
   has one, else any usable number. Among equals, the least used today, then the longest idle, then the number.
4. None when no number is usable (the dial waits; it never goes out with a number the operator does not hold).

The campaign store keeps the same fields in its caller-ID pool table; a store-backed source only has to offer
:class:`CallerIdSource`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

DAY_S = 86400.0


@dataclass(frozen=True)
class CallerId:
    """One of the operator's numbers. ``used_today`` counts dials in the UTC day ``day`` (days since the epoch)."""

    number: str
    region: str
    daily_cap: int = 200
    used_today: int = 0
    day: int = 0
    cool_until: float = 0.0
    last_used_at: float = 0.0

    def usable(self, now: float) -> bool:
        """Rule 2."""
        return self.today(now) < self.daily_cap and now >= self.cool_until

    def today(self, now: float) -> int:
        """Dials so far in the UTC day of ``now``."""
        return self.used_today if self.day == int(now // DAY_S) else 0


class CallerIdSource(Protocol):
    """What the dialer needs from a caller-ID pool (the in-memory :class:`CallerIdPool`, or the store's table)."""

    def pick(self, region: str, now: float) -> str | None:
        """The number to show for a callee in ``region`` (rule 3); None when none is usable (rule 4)."""
        ...

    def used(self, number: str, now: float) -> None:
        """``number`` placed a dial at ``now``."""
        ...


class CallerIdPool:
    """The pool in memory (rules in the module docstring). ``cool_down_s``: rest after a number is flagged."""

    def __init__(self, numbers: list[CallerId], *, cool_down_s: float = 3600.0) -> None:
        if not numbers:
            raise ValueError("a caller-ID pool needs at least one of the operator's numbers")
        self.numbers = {n.number: n for n in numbers}
        self.cool_down_s = cool_down_s

    def pick(self, region: str, now: float) -> str | None:
        usable = [n for n in self.numbers.values() if n.usable(now)]
        local = [n for n in usable if n.region.upper() == region.upper()]
        best = sorted(local or usable, key=lambda n: (n.today(now), n.last_used_at, n.number))
        return best[0].number if best else None

    def used(self, number: str, now: float) -> None:
        entry = self.numbers.get(number)
        if entry is None:
            raise KeyError("not a number of this pool")
        self.numbers[number] = replace(entry, used_today=entry.today(now) + 1, day=int(now // DAY_S), last_used_at=now)

    def cool(self, number: str, now: float) -> None:
        """Rest ``number`` for ``cool_down_s`` (e.g. its answer rate fell: carriers may be flagging it)."""
        entry = self.numbers[number]
        self.numbers[number] = replace(entry, cool_until=now + self.cool_down_s)
