"""Campaigns inside ``voicebot serve``: the runner's loop logic, with no gevent, threads or sockets.

The engine's edge (voicebot.esl.campaigns) owns the greenlets and the dialers; it calls this runner from one
worker at a time (the store has one connection) and carries out what it returns.

Rules:

1. :meth:`CampaignRunner.poll` (every ``poll_s``) reads every campaign's status from the store: a ``running``
   campaign gets a :class:`Scheduler`; ``paused`` stops its dials (calls in progress finish) and gives its
   undialed leads back; ``stopped`` does the same and forgets the campaign once its last call ended. So a status
   change made by ``voicebot campaign pause|resume|stop`` takes effect within one poll.
2. Leads are claimed with this engine's lease (``owner``, ``lease_s``) up to ``claim_limit`` waiting in the
   hopper; the scheduler gets them with the free capacity (bots, and agents of the campaign's group) and its
   commands go to the store, which refuses any lead this owner no longer holds (another engine took it over).
   Leases are renewed every ``lease_s / 3``. A Dial the store accepted becomes a :class:`DialOrder` carrying the
   attempt's origination UUID, the caller ID and the lead's variables and zone.
3. :meth:`CampaignRunner.ended` writes, **in one transaction**: the attempt's end (disposition, grade, tags,
   handoff outcome, link to the call record), the scheduler's booking (retry, callback, finish, blocklist) and
   the outbox messages (node and hang-up SMS and webhooks of the call, the ``campaign_attempt`` webhook). A
   refusal (disposition ``do_not_call``, or the flow's ``do_not_call``/``blocklist`` tag) blocklists the number
   in that same commit: no later claim returns it. The attempt's ``amd`` is the record's ``amd.verdict``.
4. An answered call's campaign outcome comes from its record (:func:`call_outcome`): a catalogue disposition is
   kept; a call cut short (``unfinished``, ``not_answered``, ``media_lost``) is ``dropped``; any other flow
   disposition (the flow's own ending) is ``completed``. ``callback`` takes its time from the slot
   ``callback_at`` (``YYYY-MM-DD HH:MM`` in the lead's zone, the datetime slot's form), else from a ``time``
   slot ``callback_time`` (``tomorrow 15:00``) read from the call's end; neither: the catalogue's delay.
5. A snapshot per campaign goes to ``publish(campaign_id, snapshot)`` after each poll (the store's runtime
   table, /health).
6. Each lead this engine claims into a hopper goes once to ``prepare(LeadToPrepare)``, with its flow, zone and
   variables, before it can be dialed: the hook for per-lead pre-rendering of the flow's fill-in (the customer's
   name, the amount) while the lead waits. ``prepare`` must only hand the work on (it runs inside the poll);
   a hook that raises is logged by the edge's loop and never stops the dials.

Times are epoch seconds.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from voicebot.campaign.amdgate import AmdCall, AmdPolicy, parse_policy
from voicebot.campaign.model import CATALOGUE
from voicebot.campaign.scheduler import (
    Answered,
    Capacity,
    Command,
    Dial,
    Ended,
    Offered,
    Paused,
    Resumed,
    Scheduler,
    Tick,
    WakeAt,
)
from voicebot.campaign.store import AttemptEnd, CampaignStore, CampaignStoreError
from voicebot.campaign.windows import zone
from voicebot.notify.outbox import Message, enqueue
from voicebot.notify.outbox import migrate as migrate_outbox
from voicebot.records.model import CallRecord, parse_iso

CALLBACK_SLOT = "callback_at"  # the flow's datetime slot with the time the caller asked to be called back
CALLBACK_TIME_SLOT = "callback_time"  # or a time slot (the example flows' call-back label)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
BLOCK_TAGS = frozenset({"do_not_call", "blocklist"})  # a flow tag that blocklists the number (rule 3)
CUT_SHORT = frozenset({"", "unfinished", "not_answered", "media_lost"})  # record dispositions that mean "dropped"
ATTEMPT_NOTIFICATION = "campaign_attempt"  # the notification every ended attempt sends (webhook), if configured

Publish = Callable[[str, dict[str, Any]], None]  # (campaign id, snapshot)


@dataclass(frozen=True)
class LeadToPrepare:
    """A lead now waiting in this engine's hopper (rule 6): what a pre-renderer needs to make its fill-in."""

    campaign_id: str
    lead_id: str
    flow_path: str
    tz: str
    variables: Mapping[str, str]


Prepare = Callable[[LeadToPrepare], None]
MessagesFor = Callable[["CallEnd", "AttemptInfo"], list[Message]]  # the outbox messages of an ended attempt


@dataclass(frozen=True)
class RunnerSettings:
    """``owner``: this engine's lease owner (unique per process); ``lease_s``: lease length; ``poll_s``: how often
    statuses are read and leads claimed; ``claim_limit``: leads waiting in one campaign's hopper at most."""

    owner: str
    lease_s: float = 60.0
    poll_s: float = 2.0
    claim_limit: int = 50


@dataclass(frozen=True)
class DialOrder:
    """A dial the store accepted: place it with origination UUID ``uuid``."""

    campaign_id: str
    dial: Dial
    uuid: str
    region: str
    tz: str
    variables: Mapping[str, str]
    caller_id: str
    flow_path: str


@dataclass(frozen=True)
class AttemptInfo:
    """What the runner knows of a dial in flight (for messages and outcomes)."""

    campaign_id: str
    lead_id: str
    number: str
    tz: str
    variables: Mapping[str, str]
    caller_id: str


@dataclass(frozen=True)
class CallEnd:
    """How a dial ended, as the edge learned it: the scheduler's :class:`Ended` and, for an answered call, its
    record."""

    uuid: str
    ended: Ended
    box: str = ""
    sip_cause: str = ""
    early_media: str = ""
    amd: str = ""
    record: CallRecord | None = None


@dataclass(frozen=True)
class Outcome:
    """A call's campaign outcome (rule 4)."""

    disposition: str
    callback_at: float | None = None
    handed_off: bool = False


def call_outcome(record: CallRecord, tz: str) -> Outcome:
    """Rule 4: the campaign disposition of an answered call from its record; ``tz`` is the lead's zone."""
    name = record.disposition
    if BLOCK_TAGS & set(record.tags):
        name = "do_not_call"
    elif name in CUT_SHORT:
        name = "dropped"
    elif name not in CATALOGUE:
        name = "completed"
    handed = bool(record.handoff.get("agent_id"))
    if name != "callback":
        return Outcome(name, None, handed)
    said = record.slots.get(CALLBACK_SLOT) or record.slots.get(CALLBACK_TIME_SLOT, "")
    after = parse_iso(record.ended_at).timestamp() if record.ended_at else None
    return Outcome(name, callback_time(said, tz, after), handed)


def callback_time(said: str, tz: str, after: float | None = None) -> float | None:
    """The callback moment (epoch s) from a ``datetime`` slot (``YYYY-MM-DD HH:MM``) or, given the call's end
    ``after``, a ``time`` slot (``[DAY ]HH:MM``: today, tomorrow, day_after_tomorrow, a weekday, next_week or an
    ISO date; a bare time already past is tomorrow's), in zone ``tz``; None when it says no moment."""
    text = said.strip()
    with contextlib.suppress(ValueError):
        return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=zone(tz)).timestamp()
    day, _, clock = text.rpartition(" ")
    if after is None or not re.fullmatch(r"\d{2}:\d{2}", clock):
        return None
    local = datetime.fromtimestamp(after, zone(tz))
    base = _said_day(day, local.date())
    if base is None:
        return None
    moment = datetime.combine(base, datetime.strptime(clock, "%H:%M").time(), zone(tz))
    if not day and moment.timestamp() <= after:
        moment = datetime.combine(base + timedelta(days=1), moment.time(), zone(tz))
    return moment.timestamp()


def _said_day(day: str, today: date) -> date | None:
    """The date a ``time`` slot's day word names, from ``today``."""
    offsets = {"": 0, "today": 0, "tomorrow": 1, "day_after_tomorrow": 2, "next_week": 7}
    if day in offsets:
        return today + timedelta(days=offsets[day])
    if day in WEEKDAYS:
        return today + timedelta(days=(WEEKDAYS.index(day) - today.weekday()) % 7 or 7)
    try:
        return date.fromisoformat(day)
    except ValueError:
        return None


@dataclass
class _Run:
    """One campaign this engine works on."""

    scheduler: Scheduler
    status: str
    flow_path: str
    caller_id_pool: str
    agent_group: str
    amd: AmdCall | None = None  # the campaign's answering-machine policy (None: off)
    wake_at: float | None = None
    dialed: int = 0
    ended: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class CampaignRunner:
    """Every campaign of one engine (rules in the module docstring). Not thread-safe: one caller at a time,
    except :meth:`renew`, which may run beside the others when the store has a lock."""

    def __init__(self, store: CampaignStore, settings: RunnerSettings, *, messages: MessagesFor | None = None,
                 publish: Publish | None = None, prepare: Prepare | None = None) -> None:
        self.store, self.settings = store, settings
        self.prepare = prepare
        self.messages = messages or (lambda end, info: [])
        self.publish = publish or self._put_runtime  # `voicebot campaign status` reads it back
        self.runs: dict[str, _Run] = {}
        self.attempts: dict[str, AttemptInfo] = {}  # origination UUID -> the dial in flight
        self._renewed_at: float | None = None
        with store.transaction() as tx:  # the outbox shares the campaign database (rule 3)
            migrate_outbox(tx.connection)

    # ------------------------------------------------------------ polling (rules 1, 2, 5)

    def poll(self, now: float, free_bots: int, free_agents: Callable[[str], int] = lambda group: 0) -> list[DialOrder]:
        """Statuses, leases, claims and the scheduler's decisions; the dials to place now."""
        self._follow_statuses(now)
        self.renew(now)
        orders: list[DialOrder] = []
        for campaign_id, run in list(self.runs.items()):
            if run.status == "running":
                leads = self._claim(campaign_id, run, now)
                if leads and self.prepare is not None:
                    self._prepare(campaign_id, run, leads)
                if leads:
                    orders += self._apply(campaign_id, run.scheduler.handle(Offered(now, tuple(leads)), now), now)
                bots = max(0, free_bots - sum(self._ringing(r) for c, r in self.runs.items() if c != campaign_id))
                capacity = Capacity(now, bots, free_agents(run.agent_group) if run.agent_group else 0)
                orders += self._apply(campaign_id, run.scheduler.handle(capacity, now), now)
            elif run.status == "stopped" and not run.scheduler.flights:
                del self.runs[campaign_id]
        for campaign_id in self.runs:
            self.publish(campaign_id, self.snapshot(campaign_id, now))
        return orders

    def talking(self) -> int:
        """Answered dials of every campaign whose end is not written yet (they hold a bot, or just did)."""
        return sum(len(r.scheduler.flights) - self._ringing(r) for r in self.runs.values())

    def renew_due(self, now: float) -> bool:
        """A third of the lease has passed since the last renewal (rule 2)."""
        return self._renewed_at is None or now - self._renewed_at >= self.settings.lease_s / 3

    def renew(self, now: float) -> None:
        """Renew this owner's leases when due (every poll, and in between when the edge's loop is busy)."""
        if self.renew_due(now):
            self.store.renew(self.settings.owner, now, self.settings.lease_s)
            self._renewed_at = now

    def next_wake(self) -> float | None:
        """The earliest WakeAt a scheduler asked for (pacing), or None."""
        times = [r.wake_at for r in self.runs.values() if r.wake_at is not None]
        return min(times) if times else None

    def tick(self, now: float) -> list[DialOrder]:
        """Time passed (a WakeAt came due): decide again without claiming."""
        orders: list[DialOrder] = []
        for campaign_id, run in self.runs.items():
            if run.wake_at is not None and run.wake_at <= now:
                run.wake_at = None
                orders += self._apply(campaign_id, run.scheduler.handle(Tick(now), now), now)
        return orders

    def _follow_statuses(self, now: float) -> None:
        with self.store.transaction() as tx:
            rows = tx.rows("SELECT id, status, flow_path, caller_id_pool, agent_group FROM campaign")
        for campaign_id, status, flow_path, pool, group in rows:
            run = self.runs.get(campaign_id)
            if run is None:
                if status == "running":
                    campaign = self.store.campaign(campaign_id)
                    self.runs[campaign_id] = _Run(Scheduler(campaign.policy()), status, flow_path, pool, group,
                                                  amd_call(campaign.amd_policy, campaign.amd_message))
                continue
            if status != run.status:
                self._status_changed(campaign_id, run, status, now)

    def amd(self, campaign_id: str) -> AmdCall | None:
        """The campaign's answering-machine settings for its dials (None: off, or a campaign this engine does not run)."""
        run = self.runs.get(campaign_id)
        return run.amd if run is not None else None

    def _status_changed(self, campaign_id: str, run: _Run, status: str, now: float) -> None:
        run.status = status
        if status == "running":
            run.scheduler.handle(Resumed(now), now)
            return
        run.scheduler.handle(Paused(now), now)
        run.scheduler.hopper.clear()
        with self.store.transaction() as tx:  # give the undialed leads back (other engines may take them)
            tx.execute("UPDATE lead SET lease_owner = NULL, lease_until = NULL WHERE campaign_id = ? "
                       "AND lease_owner = ? AND status = 'pending'", (campaign_id, self.settings.owner))

    def _claim(self, campaign_id: str, run: _Run, now: float) -> list[Any]:
        room = self.settings.claim_limit - len(run.scheduler.hopper)
        if room <= 0:
            return []
        return self.store.claim_due(campaign_id, self.settings.owner, now, room, self.settings.lease_s)

    def _prepare(self, campaign_id: str, run: _Run, leads: Sequence[Any]) -> None:
        """Rule 6: each newly claimed lead to the pre-render hook."""
        assert self.prepare is not None
        details = self._lead_details([lead.lead_id for lead in leads])
        for lead in leads:
            _, tz, variables = details[lead.lead_id]
            self.prepare(LeadToPrepare(campaign_id, lead.lead_id, run.flow_path, tz, variables))

    @staticmethod
    def _ringing(run: _Run) -> int:
        return sum(1 for f in run.scheduler.flights.values() if not f.answered)

    # ------------------------------------------------------------ commands -> store -> dials (rule 2)

    def _apply(self, campaign_id: str, commands: list[Command], now: float) -> list[DialOrder]:
        run = self.runs[campaign_id]
        for command in commands:
            if isinstance(command, WakeAt):
                run.wake_at = command.at if run.wake_at is None else min(run.wake_at, command.at)
        writes = [c for c in commands if not isinstance(c, WakeAt)]
        if not writes:
            return []
        applied = self.store.apply(writes, now, owner=self.settings.owner, lease_s=self.settings.lease_s)
        for lead_id in applied.lost:  # taken over by another engine: never ours to dial or book
            run.scheduler.flights.pop(lead_id, None)
        dials = [c for c in writes if isinstance(c, Dial) and c.lead_id in applied.dials]
        return self._orders(campaign_id, run, dials, applied.dials, now)

    def _orders(self, campaign_id: str, run: _Run, dials: Sequence[Dial], uuids: Mapping[str, str],
                now: float) -> list[DialOrder]:
        if not dials:
            return []
        details = self._lead_details([d.lead_id for d in dials])
        orders: list[DialOrder] = []
        for dial in dials:
            region, tz, variables = details[dial.lead_id]
            caller_id = (self.store.pick_caller_id(run.caller_id_pool, region, now) or "") if run.caller_id_pool else ""
            uuid = uuids[dial.lead_id]
            self.attempts[uuid] = AttemptInfo(campaign_id, dial.lead_id, dial.number, tz, variables, caller_id)
            run.dialed += 1
            orders.append(DialOrder(campaign_id, dial, uuid, region, tz, variables, caller_id, run.flow_path))
        return orders

    def _lead_details(self, lead_ids: Sequence[str]) -> dict[str, tuple[str, str, dict[str, str]]]:
        marks = ", ".join("?" for _ in lead_ids)
        with self.store.transaction() as tx:
            rows = tx.rows(f"SELECT id, region, tz, variables FROM lead WHERE id IN ({marks})",
                           [int(i) for i in lead_ids])
        return {str(r[0]): (str(r[1] or ""), str(r[2]), {str(k): str(v) for k, v in json.loads(r[3]).items()})
                for r in rows}

    # ------------------------------------------------------------ what comes back (rules 3, 4)

    def answered(self, uuid: str, now: float) -> list[DialOrder]:
        """The dial ``uuid`` was answered."""
        info = self.attempts.get(uuid)
        run = self.runs.get(info.campaign_id) if info else None
        if info is None or run is None or info.lead_id not in run.scheduler.flights:
            return []
        self.store.record_answer(uuid, now)
        scheduler = run.scheduler  # the answered call takes a bot now: no dial on the capacity read before it
        commands = scheduler.handle(Capacity(now, max(0, scheduler.free_bots - 1), scheduler.free_agents), now)
        return self._apply(info.campaign_id, commands + scheduler.handle(Answered(now, info.lead_id), now), now)

    def ended(self, end: CallEnd, now: float) -> list[DialOrder]:
        """Rule 3: the attempt's end, the booking and the messages in one transaction; then any new dials.
        :class:`CampaignStoreError` leaves everything as it was (call again with the same ``end``)."""
        info = self.attempts.get(end.uuid)
        run = self.runs.get(info.campaign_id) if info else None
        if info is None or run is None or info.lead_id not in run.scheduler.flights:
            self.attempts.pop(end.uuid, None)
            return []
        flight = run.scheduler.flights[info.lead_id]
        commands = run.scheduler.handle(end.ended, now)
        try:
            with self.store.transaction() as tx:
                self.store.end_attempt(end.uuid, _attempt_end(end, info), now)
                orders = self._apply(info.campaign_id, commands, now)
                enqueue(tx.connection, self.messages(end, info))
        except BaseException:
            run.scheduler.flights[info.lead_id] = flight  # not written: the end can be applied again
            raise
        del self.attempts[end.uuid]
        run.ended += 1
        run.outcomes[end.ended.disposition] = run.outcomes.get(end.ended.disposition, 0) + 1
        return orders

    def forget(self, uuid: str, now: float) -> None:
        """Give up on dial ``uuid`` (its end cannot be written): it leaves the scheduler and its lead's lease ends
        now, so the next claim (any engine's) closes the attempt ``worker_lost`` and dials the lead again."""
        info = self.attempts.pop(uuid, None)
        run = self.runs.get(info.campaign_id) if info else None
        if info is None or run is None:
            return
        run.scheduler.flights.pop(info.lead_id, None)
        with self.store.transaction() as tx:  # an expired lease is never renewed
            tx.execute("UPDATE lead SET lease_until = ? WHERE id = ? AND lease_owner = ?",
                       (now - 1.0, int(info.lead_id), self.settings.owner))

    # ------------------------------------------------------------ the runtime snapshot (rule 5)

    def snapshot(self, campaign_id: str, now: float) -> dict[str, Any]:
        """Progress, in flight, pacing and answer rate of ``campaign_id`` as this engine sees it."""
        run = self.runs[campaign_id]
        scheduler = run.scheduler
        return {"owner": self.settings.owner, "at": now, "status": run.status, "hopper": len(scheduler.hopper),
                "ringing": self._ringing(run), "talking": len(scheduler.flights) - self._ringing(run),
                "answer_rate": round(scheduler.answer_rate, 4), "handoff_rate": round(scheduler.handoff_rate, 4),
                "free_bots": scheduler.free_bots, "dial_budget": scheduler.dial_budget(now), "dialed": run.dialed,
                "ended": run.ended, "outcomes": dict(run.outcomes)}

    def _put_runtime(self, campaign_id: str, snapshot: dict[str, Any]) -> None:
        """The default publish: the snapshot into the store's runtime table (a write that fails is skipped: the
        next poll writes a fresh one)."""
        with contextlib.suppress(CampaignStoreError):
            self.store.put_runtime(campaign_id, self.settings.owner, snapshot, float(snapshot["at"]))

    def release(self) -> None:
        """A clean stop: give back every undialed lead this owner holds."""
        with contextlib.suppress(CampaignStoreError):  # else the leases expire by themselves
            self.store.release(self.settings.owner)


def _attempt_end(end: CallEnd, info: AttemptInfo) -> AttemptEnd:
    record = end.record
    return AttemptEnd(end.ended.disposition, end.box, info.caller_id, end.sip_cause, end.early_media, _amd_verdict(end),
                      record.level if record else "", record.tags if record else (), _handoff_outcome(record),
                      record.call_id if record else "")


def _amd_verdict(end: CallEnd) -> str:
    """The attempt's machine-detection verdict: the edge's, else the call record's ``amd.verdict`` (human, machine,
    notsure; empty without detection or when the callee hung up before a verdict)."""
    if end.amd or end.record is None:
        return end.amd
    return str(end.record.amd.get("verdict") or "")


def _handoff_outcome(record: CallRecord | None) -> str:
    """The handoff's outcome from the record: its ``outcome`` if set, ``answered`` when an agent took it."""
    if record is None or not record.handoff:
        return ""
    return str(record.handoff.get("outcome") or ("answered" if record.handoff.get("agent_id") else ""))


def amd_call(policy: str, message: str) -> AmdCall | None:
    """A campaign's stored policy as the dialer's :class:`AmdCall` (None for ``off``; an unknown word is ``off`` too,
    as the campaign file was checked when it was created)."""
    try:
        parsed = parse_policy(policy or "off")
    except ValueError:
        return None
    return None if parsed is AmdPolicy.OFF else AmdCall(parsed, message)
