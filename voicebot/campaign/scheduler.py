"""The campaign scheduler, sans-I/O: which lead to dial now, how fast, and when to try again.

``Scheduler.handle(event, now) -> commands``. No clock reads, no database, no
sockets: the runner feeds it leads the store says are due (:class:`Offered`),
the engine's free capacity (:class:`Capacity`) and how each dial ended
(:class:`Answered`, :class:`Ended`); it returns :class:`Dial`, :class:`Book`,
:class:`Finish`, :class:`Defer`, :class:`BlockNumber` and :class:`WakeAt`.

Rules (the whole contract, in the order the code applies them):

1. A lead is dialed only when all hold at ``now``: the campaign runs; the lead
   and its number are not already in a call; the number is not blocklisted;
   the lead has had fewer than ``max_attempts`` attempts and its number fewer
   than ``daily_cap`` today; ``min_gap_s`` has passed since the number's last
   attempt; ``now`` is inside the calling window in the lead's own time zone.
2. A lead that fails only a time rule (window, gap, daily cap) is deferred to
   the first moment it could pass (:class:`Defer`); one that can never be dialed
   again is finished (:class:`Finish`). Higher ``priority`` first, then the
   longest-waiting.
3. Pacing (power dialing, the bot is the agent for first contact). With ``a``
   the running answer rate (EWMA, never below ``min_answer_rate``), ``B`` free
   bots, ``R`` lines ringing, ``T`` answered calls in progress, ``G`` free agents
   and ``h`` the running share of answered calls handed to an agent, new dials
   ``n`` this instant are the smallest of::

       floor(min(B / a, B * max_dial_level) - R)          bots for every expected answer
       floor((G - (T + R * a) * h) / (a * h))            an agent for every expected hot lead (with an agent group)
       floor(tokens)                                     at most max_cps dials per second (token bucket)

4. An ended attempt books the lead by its disposition: a refusal blocks the
   number and finishes the lead; a final disposition finishes it; otherwise it
   is retried after the campaign's delay for that disposition (or the time the
   caller asked for, for ``callback``), moved into the next open window, unless
   that disposition's retries or the lead's attempts are used up.
5. Illegal events raise :class:`SchedulerError`: an answer or an end for a lead
   not in a call.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeAlias

from voicebot.campaign.model import CampaignPolicy, disposition
from voicebot.campaign.windows import zone

# ----------------------------------------------------------------- the lead as the scheduler sees it


@dataclass(frozen=True)
class Lead:
    """A lead due for a call. ``attempts_today`` counts the number's attempts in its local day, across campaigns;
    ``retries`` how many times each disposition happened to it so far."""

    lead_id: str
    number: str
    tz: str
    priority: int = 0
    attempts: int = 0
    attempts_today: int = 0
    last_attempt_at: float | None = None
    retries: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------- events


@dataclass(frozen=True)
class Offered:
    """Leads the store says are due (the hopper refill); leads already in a call are ignored."""

    at: float
    leads: tuple[Lead, ...]


@dataclass(frozen=True)
class Capacity:
    """The engine's free bots (calls it can still take) and free agents of the campaign's group."""

    at: float
    free_bots: int
    free_agents: int = 0


@dataclass(frozen=True)
class Answered:
    """A dialed lead answered (the bot is on the call)."""

    at: float
    lead_id: str


@dataclass(frozen=True)
class Ended:
    """A dial ended with ``disposition``; ``callback_at`` the time the caller asked for; ``handed_off`` to an agent."""

    at: float
    lead_id: str
    disposition: str
    callback_at: float | None = None
    handed_off: bool = False


@dataclass(frozen=True)
class Blocked:
    """``number`` went on the blocklist (from any call, an import or an operator)."""

    at: float
    number: str


@dataclass(frozen=True)
class Paused:
    at: float


@dataclass(frozen=True)
class Resumed:
    at: float


@dataclass(frozen=True)
class Tick:
    """Time passed; decide again."""

    at: float


Event: TypeAlias = Offered | Capacity | Answered | Ended | Blocked | Paused | Resumed | Tick

# ----------------------------------------------------------------- commands


@dataclass(frozen=True)
class Dial:
    """Call ``number`` for ``lead_id``; this is its attempt number ``attempt`` (1 = first)."""

    lead_id: str
    number: str
    attempt: int


@dataclass(frozen=True)
class Book:
    """Retry ``lead_id`` at ``next_at`` (epoch s) after a ``disposition`` outcome."""

    lead_id: str
    next_at: float
    disposition: str


@dataclass(frozen=True)
class Finish:
    """``lead_id`` is done: ``status`` is ``done``, ``blocked`` or ``exhausted``; ``reason`` says why."""

    lead_id: str
    status: str
    reason: str


@dataclass(frozen=True)
class Defer:
    """``lead_id`` is due but may not be dialed before ``until`` (epoch s; None: not within two weeks)."""

    lead_id: str
    until: float | None
    reason: str


@dataclass(frozen=True)
class BlockNumber:
    """Put ``number`` on the blocklist (the caller refused further calls)."""

    number: str
    reason: str


@dataclass(frozen=True)
class WakeAt:
    """Nothing more can happen before ``at`` unless an event arrives: tick then."""

    at: float


Command: TypeAlias = Dial | Book | Finish | Defer | BlockNumber | WakeAt


class SchedulerError(Exception):
    """An event that cannot happen in the scheduler's state (a bug in the runner)."""


# ----------------------------------------------------------------- the machine


@dataclass
class _Flight:
    lead: Lead
    answered: bool = False


class Scheduler:
    """One campaign's dialing decisions (rules in the module docstring)."""

    def __init__(self, policy: CampaignPolicy, *, running: bool = True) -> None:
        self.policy = policy
        self.running = running
        self.hopper: dict[str, Lead] = {}
        self._offered_at: dict[str, float] = {}  # when each hopper lead's counters were read from the store
        self._dials: dict[str, list[float]] = {}  # number -> this scheduler's dials in the last two days
        self._dial_log: deque[tuple[float, str]] = deque()  # (time, number) of those dials, oldest first
        self.flights: dict[str, _Flight] = {}
        self.blocked: set[str] = set()
        self.free_bots = 0
        self.free_agents = 0
        self.answer_rate = 1.0  # start as if every call answers: never overdial before the first outcomes
        self.handoff_rate = policy.pacing.handoff_rate
        self._tokens = max(1.0, policy.pacing.max_cps)  # a full bucket: at most max_cps dials in any second
        self._tokens_at: float | None = None

    @property
    def in_flight_numbers(self) -> set[str]:
        """Numbers in a call now."""
        return {f.lead.number for f in self.flights.values()}

    def handle(self, event: Event, now: float) -> list[Command]:
        """Take one event at ``now`` (epoch s) and return what to do."""
        self._refill(now)
        self._forget(now)
        out: list[Command] = []
        match event:
            case Offered(leads=leads):
                fresh = {lead.lead_id: lead for lead in leads if lead.lead_id not in self.flights}
                self.hopper.update(fresh)
                self._offered_at.update(dict.fromkeys(fresh, now))
            case Capacity(free_bots=bots, free_agents=agents):
                self.free_bots, self.free_agents = max(0, bots), max(0, agents)
            case Answered(lead_id=lead_id):
                self._flight(lead_id).answered = True
            case Ended():
                out += self._ended(event, now)
            case Blocked(number=number):
                self.blocked.add(number)
            case Paused():
                self.running = False
            case Resumed():
                self.running = True
            case Tick():
                pass
        return out + self._decide(now)

    # ------------------------------------------------------------ outcomes (rule 4)

    def _flight(self, lead_id: str) -> _Flight:
        flight = self.flights.get(lead_id)
        if flight is None:
            raise SchedulerError(f"lead {lead_id} is not in a call")
        return flight

    def _ended(self, event: Ended, now: float) -> list[Command]:
        flight = self._flight(event.lead_id)
        del self.flights[event.lead_id]
        entry = disposition(event.disposition)
        self._learn(entry.human or flight.answered, event.handed_off if entry.human else None)
        lead = flight.lead
        if entry.block:
            self.blocked.add(lead.number)
            return [BlockNumber(lead.number, event.disposition), Finish(lead.lead_id, "blocked", event.disposition)]
        if entry.final:
            return [Finish(lead.lead_id, "done", event.disposition)]
        delay = self.policy.retry_after(event.disposition, lead.retries.get(event.disposition, 0))
        if delay is None:
            return [Finish(lead.lead_id, "exhausted", f"{event.disposition} retries used up")]
        if lead.attempts + 1 >= self.policy.max_attempts:
            return [Finish(lead.lead_id, "exhausted", f"{self.policy.max_attempts} attempts")]
        wanted = event.callback_at if event.disposition == "callback" and event.callback_at else now + delay
        earliest = max(wanted, now + self.policy.min_gap_s)
        opens = self.policy.window.next_open(earliest, lead.tz, horizon_days=60)
        return [Book(lead.lead_id, opens if opens is not None else earliest, event.disposition)]

    def _learn(self, answered: bool, handed_off: bool | None) -> None:
        alpha = self.policy.pacing.answer_rate_alpha
        self.answer_rate += alpha * (float(answered) - self.answer_rate)
        if handed_off is not None:
            self.handoff_rate += alpha * (float(handed_off) - self.handoff_rate)

    # ------------------------------------------------------------ choosing and pacing (rules 1-3)

    def _decide(self, now: float) -> list[Command]:
        out: list[Command] = []
        if not self.running:
            return out
        ready: list[Lead] = []
        for lead in sorted(self.hopper.values(), key=lambda x: (-x.priority, x.last_attempt_at or 0.0, x.lead_id)):
            verdict = self._verdict(lead, now)
            if verdict is None:
                ready.append(lead)
            else:
                del self.hopper[lead.lead_id]
                self._offered_at.pop(lead.lead_id, None)
                out.append(verdict)
        busy = self.in_flight_numbers
        for lead in ready[: self.dial_budget(now)]:
            if lead.number in busy:  # the same number twice in the hopper: the other one waits
                continue
            busy.add(lead.number)
            del self.hopper[lead.lead_id]
            self._offered_at.pop(lead.lead_id, None)
            self._dials.setdefault(lead.number, []).append(now)
            self._dial_log.append((now, lead.number))
            self.flights[lead.lead_id] = _Flight(lead)
            self._tokens -= 1.0
            out.append(Dial(lead.lead_id, lead.number, lead.attempts + 1))
        if self.hopper and self._tokens < 1.0:
            out.append(WakeAt(now + (1.0 - self._tokens) / self.policy.pacing.max_cps))
        return out

    def _verdict(self, lead: Lead, now: float) -> Finish | Defer | None:
        """None when the lead may be dialed now; else why not (rules 1 and 2)."""
        policy = self.policy
        lead = self._counted(lead, now)
        if lead.number in self.blocked:
            return Finish(lead.lead_id, "blocked", "number on the blocklist")
        if lead.attempts >= policy.max_attempts:
            return Finish(lead.lead_id, "exhausted", f"{policy.max_attempts} attempts")
        waits: list[tuple[float | None, str]] = []
        if lead.last_attempt_at is not None and now < lead.last_attempt_at + policy.min_gap_s:
            waits.append((lead.last_attempt_at + policy.min_gap_s, "min_gap"))
        if lead.attempts_today >= policy.daily_cap:
            waits.append((_next_local_day(now, lead.tz), "daily_cap"))
        if not policy.window.is_open(now, lead.tz):
            waits.append((policy.window.next_open(now, lead.tz), "window"))
        if not waits:
            return None
        if any(until is None for until, _ in waits):
            return Defer(lead.lead_id, None, "window")
        until, reason = max(waits, key=lambda w: w[0] or 0.0)
        assert until is not None
        opens = policy.window.next_open(until, lead.tz)
        return Defer(lead.lead_id, opens, reason)

    def _counted(self, lead: Lead, now: float) -> Lead:
        """The lead with this scheduler's own dials of its number since the store counted them (rule 1)."""
        since = self._offered_at.get(lead.lead_id, now)
        recent = [t for t in self._dials.get(lead.number, ()) if t >= since]
        if not recent:
            return lead
        z = zone(lead.tz)
        today = datetime.fromtimestamp(now, z).date()
        extra_today = sum(1 for t in recent if datetime.fromtimestamp(t, z).date() == today)
        return replace(lead, attempts_today=lead.attempts_today + extra_today,
                       last_attempt_at=max(recent[-1], lead.last_attempt_at or 0.0))

    def dial_budget(self, now: float) -> int:
        """How many new dials pacing allows at ``now`` (rule 3)."""
        pacing = self.policy.pacing
        a = max(pacing.min_answer_rate, min(1.0, self.answer_rate))
        ringing = sum(1 for f in self.flights.values() if not f.answered)
        talking = len(self.flights) - ringing
        lines = min(self.free_bots / a, self.free_bots * pacing.max_dial_level)
        budget = math.floor(lines - ringing + 1e-9)
        if self.policy.agent_group:
            h = max(0.01, min(1.0, self.handoff_rate))
            budget = min(budget, math.floor((self.free_agents - (talking + ringing * a) * h) / (a * h) + 1e-9))
        return max(0, min(budget, math.floor(self._tokens + 1e-9)))

    def _forget(self, now: float) -> None:
        """Drop dial times older than two days (no rule looks further back); the cost is the dials dropped."""
        cutoff = now - 2 * 86400
        while self._dial_log and self._dial_log[0][0] < cutoff:
            _, number = self._dial_log.popleft()
            times = self._dials.get(number)
            if times is None:
                continue
            while times and times[0] < cutoff:
                times.pop(0)
            if not times:
                del self._dials[number]

    def _refill(self, now: float) -> None:
        cps = self.policy.pacing.max_cps
        if self._tokens_at is not None and now > self._tokens_at:
            self._tokens = min(max(1.0, cps), self._tokens + (now - self._tokens_at) * cps)
        self._tokens_at = now if self._tokens_at is None else max(self._tokens_at, now)


def _next_local_day(at: float, tz: str) -> float:
    """Midnight starting the day after ``at`` in ``tz`` (epoch s)."""
    z = zone(tz)
    local = datetime.fromtimestamp(at, z)
    return datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), z).timestamp()


def with_attempt(lead: Lead, at: float, same_day: bool = True) -> Lead:
    """``lead`` as it is after an attempt at ``at`` (for stores and tests that keep their own view)."""
    return replace(lead, attempts=lead.attempts + 1, last_attempt_at=at,
                   attempts_today=(lead.attempts_today + 1) if same_day else 1)
