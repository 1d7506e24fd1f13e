"""Calling windows, evaluated in each lead's own time zone (never the server's, never UTC).

A window is a set of local time ranges per weekday (several ranges make breaks:
``09:00-12:00`` and ``13:30-20:00``), minus holidays (local dates). The US rule
(no calls before 8 am or after 9 pm, callee's time) is :data:`US_DEFAULT`.
Time zones come from the IANA database through :mod:`zoneinfo` (the ``tzdata``
package where the system has none); a lead's zone comes from its number
(:mod:`voicebot.campaign.numbers`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Range = tuple[time, time]


class WindowError(ValueError):
    """A calling window that cannot be right (a range that ends before it starts, an unknown weekday or zone)."""


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (cached); :class:`WindowError` when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise WindowError(f"unknown time zone {name!r}") from err


@dataclass(frozen=True)
class CallingWindow:
    """Local calling hours per weekday (0 = Monday), minus ``holidays``. A range is [start, end)."""

    weekly: Mapping[int, tuple[Range, ...]]
    holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for day, ranges in self.weekly.items():
            if day not in range(7):
                raise WindowError(f"weekday {day} is not 0 (Monday) to 6 (Sunday)")
            for start, end in ranges:
                if not start < end:
                    raise WindowError(f"{WEEKDAYS[day]}: range {start:%H:%M}-{end:%H:%M} ends before it starts")

    @classmethod
    def parse(cls, spec: Mapping[str, Iterable[str]], holidays: Iterable[str] = ()) -> CallingWindow:
        """From ``{"mon-fri": ["08:00-21:00"], "sat": ["10:00-18:00"]}`` and ISO dates; days not named: closed."""
        weekly: dict[int, tuple[Range, ...]] = {}
        for days, ranges in spec.items():
            parsed = tuple(_parse_range(text) for text in ranges)
            for day in _parse_days(days):
                weekly[day] = tuple(sorted(weekly.get(day, ()) + parsed))
        try:
            dates = frozenset(date.fromisoformat(d) for d in holidays)
        except ValueError as err:
            raise WindowError(f"holiday: {err}") from err
        return cls(weekly, dates)

    def is_open(self, at: float, tz: str) -> bool:
        """True when epoch second ``at`` falls inside the window in zone ``tz``."""
        local = datetime.fromtimestamp(at, zone(tz))
        if local.date() in self.holidays:
            return False
        now = local.time().replace(tzinfo=None)
        return any(start <= now < end for start, end in self.weekly.get(local.weekday(), ()))

    def next_open(self, at: float, tz: str, horizon_days: int = 14) -> float | None:
        """The first epoch second at or after ``at`` when the window is open in ``tz``; None within the horizon."""
        if self.is_open(at, tz):
            return at
        z = zone(tz)
        local = datetime.fromtimestamp(at, z)
        for offset in range(horizon_days + 1):
            day = local.date() + timedelta(days=offset)
            if day in self.holidays:
                continue
            for start, _ in self.weekly.get(day.weekday(), ()):
                opens = datetime.combine(day, start, z).timestamp()
                if opens >= at and self.is_open(opens, tz):
                    return opens
        return None

    def closes_at(self, at: float, tz: str) -> float | None:
        """When the open range holding ``at`` ends (epoch s); None when the window is closed at ``at``."""
        if not self.is_open(at, tz):
            return None
        local = datetime.fromtimestamp(at, zone(tz))
        now = local.time().replace(tzinfo=None)
        for start, end in self.weekly[local.weekday()]:
            if start <= now < end:
                return datetime.combine(local.date(), end, zone(tz)).timestamp()
        return None  # pragma: no cover - is_open said a range holds it


def _parse_range(text: str) -> Range:
    try:
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError as err:
        raise WindowError(f"calling hours {text!r}: expected HH:MM-HH:MM") from err
    if not start < end:
        raise WindowError(f"calling hours {text!r} end before they start")
    return start, end


def _parse_days(text: str) -> list[int]:
    names = text.lower().strip()
    if names in ("all", "daily", "*"):
        return list(range(7))
    out: list[int] = []
    for part in names.split(","):
        first, _, last = part.strip().partition("-")
        try:
            a = WEEKDAYS.index(first[:3])
            b = WEEKDAYS.index(last[:3]) if last else a
        except ValueError as err:
            raise WindowError(f"weekdays {text!r}: use mon, tue, wed, thu, fri, sat, sun, ranges like mon-fri, or all") from err
        out += list(range(a, b + 1)) if a <= b else [*range(a, 7), *range(0, b + 1)]
    return out


US_DEFAULT = CallingWindow.parse({"all": ["08:00-21:00"]})
