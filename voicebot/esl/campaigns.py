"""Campaigns inside ``voicebot serve``, the gevent edge: one loop greenlet drives the
:class:`~voicebot.campaign.runner.CampaignRunner` and a :class:`~voicebot.esl.dialer.Dialer` per campaign.

    service = CampaignService(engine, engine.config.campaigns)    # the engine does this when `campaigns:` is set
    service.start()
    ...
    service.stop_dialing(); service.close(timeout_s)               # at shutdown

Rules:

1. Every database call of the runner runs in gevent's threadpool, never on the hub (the store's connection
   is shared under a native lock); dials and ESL events stay on the hub. Leases are renewed by their own
   greenlet every ``lease_s / 6``.
2. No lead is claimed while every box's ESL connection is down (at start, or FreeSWITCH away): the dials
   would only fail. The loop wakes for each dialer report (answer, end), each ``poll_s`` and each pacing wake-up. A report the
   database could not take is kept and tried again (an attempt's end is never dropped while the engine runs).
3. An answered call's outcome comes from its call record (``voicebot.campaign.runner.call_outcome``); the record
   travels with the end so the runner writes grade, tags, handoff and messages from it.
4. The notifications of campaign calls are written by the runner in the attempt's transaction (the engine's
   notifier writes node messages during the call into the same outbox; ids make both one message).
5. ``stop_dialing`` stops claims and new dials; ``close`` waits (up to its timeout) for the dials in flight to
   end and be written, then gives the undialed leads back.
"""

from __future__ import annotations

import collections
import os
import socket
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import gevent
import gevent.event

from voicebot.campaign.dialing import MARGIN_S, RING_S
from voicebot.campaign.runner import (
    ATTEMPT_NOTIFICATION,
    AttemptInfo,
    CallEnd,
    CampaignRunner,
    DialOrder,
    LeadToPrepare,
    Publish,
    RunnerSettings,
    call_outcome,
)
from voicebot.campaign.scheduler import Answered, Ended
from voicebot.campaign.store import CampaignStore, CampaignStoreError
from voicebot.config import CampaignsConfig, EngineConfig
from voicebot.dialog.flow import Flow
from voicebot.dialog.loader import load_flow
from voicebot.esl.connection import InboundConnection
from voicebot.esl.dialer import DIAL_EVENTS, CallOutcome, DialBox, Dialer, DialTarget
from voicebot.logs import get_logger
from voicebot.notify.notifier import HANGUP, NODE, CallInfo, build_messages
from voicebot.notify.outbox import Message
from voicebot.records.model import CallRecord
from voicebot.records.store import redact_url
from voicebot.tts.prerender import LeadFillIn, Prerenderer, Target

if TYPE_CHECKING:
    from voicebot.engine import Engine

_T = TypeVar("_T")
RETRY_S = 1.0  # after the database refused a report, try again this much later (s)
RETRY_OPEN_S = 10.0  # while the campaign database cannot be opened at start, try again this often (s)


def lease_owner(name: str) -> str:
    """This process's lease owner: ``name`` (or host-pid) and a per-start suffix, so a restarted engine never
    renews the leases of its dead predecessor (they expire and are recovered)."""
    base = name or f"{socket.gethostname()}-{os.getpid()}"
    return f"{base}/{uuidlib.uuid4().hex[:8]}"


@dataclass
class Flight:
    """A dial in flight: the runner's order and, once saved, its call's record."""
    order: DialOrder
    record: CallRecord | None = None


class _OrderCallerId:
    """The caller ID the runner picked for the dial being placed (the store counted it already)."""

    def __init__(self) -> None:
        self.current = ""

    def pick(self, region: str, now: float) -> str | None:
        return self.current

    def used(self, number: str, now: float) -> None:
        """Counted by the store when picked."""


class CampaignService:
    """The campaign loop of one engine (rules in the module docstring)."""

    def __init__(self, engine: Engine, config: CampaignsConfig, store: CampaignStore, *, publish: Publish | None = None,
                 ring_s: float = RING_S, margin_s: float = MARGIN_S, clock: Callable[[], float] = time.time) -> None:
        """``store``: from :func:`open_store` (shared by the loop's and the renewer's threads under its lock)."""
        self.engine, self.config, self.clock = engine, config, clock
        self.ring_s, self.margin_s = ring_s, margin_s
        self.log = get_logger("campaign.service")
        self.store = store
        self.settings = RunnerSettings(lease_owner(config.owner), config.lease_s, config.poll_s)
        self.prerender = Prerenderer(lambda path: prerender_targets(engine, path))  # issue 16's fill-in, ahead
        self.runner = CampaignRunner(self.store, self.settings, messages=self._messages, publish=publish,
                                     prepare=self._prepare)
        self.boxes, self._own = self._boxes()
        self.dialers: dict[str, Dialer] = {}
        self.flights: dict[str, Flight] = {}  # origination UUID -> the dial in flight
        self._by_lead: dict[tuple[str, str], str] = {}  # (campaign, lead) -> UUID in flight
        self._reports: collections.deque[tuple[str, Answered | Ended]] = collections.deque()
        self._wake = gevent.event.Event()
        self._caller_id = _OrderCallerId()
        self._dialing = True
        self._loop: gevent.Greenlet | None = None
        self._turned_away: set[str] = set()  # answered dials the engine had no bot for (busy action): no record

    def _boxes(self) -> tuple[list[DialBox], list[InboundConnection]]:
        """The configured boxes with their own inbound connections, or the engine's own FreeSWITCH."""
        if not self.config.boxes:
            return [DialBox("freeswitch", self.engine.inbound, "sofia/gateway/trunk/{number}")], []
        own = [InboundConnection(b.host, b.port, b.password, events=DIAL_EVENTS,
                                 command_timeout_s=self.engine.config.command_timeout_s) for b in self.config.boxes]
        return [DialBox(b.name, conn, b.dial) for b, conn in zip(self.config.boxes, own, strict=True)], own

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for conn in self._own:
            conn.start()
        self._loop = gevent.spawn(self._run)
        self._renewer = gevent.spawn(self._renew_forever)
        self.log.info("campaigns.started", owner=self.settings.owner, boxes=[b.name for b in self.boxes])

    def stop_dialing(self) -> None:
        """No more claims or dials (calls in flight go on)."""
        self._dialing = False
        self._wake.set()

    def close(self, timeout_s: float) -> None:
        """Rule 5."""
        self.stop_dialing()
        deadline = time.monotonic() + timeout_s
        while (self.flights or self._reports) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if self._loop is not None:
            self._loop.kill()
            self._renewer.kill()
        for dialer in self.dialers.values():
            dialer.stop()
        if self.flights:
            self.log.warning("campaigns.unsettled", dials=len(self.flights))  # their leases expire: recovered
        gevent.get_hub().threadpool.spawn(self.runner.release).get()
        self.prerender.close()
        for conn in self._own:
            conn.stop()
        self.store.close()

    # ------------------------------------------------------------ the loop (rules 1, 2)

    def _run(self) -> None:
        next_poll = 0.0
        while True:
            try:
                next_poll = self._step(next_poll)
            except Exception as err:  # a bug in one step must not end every campaign of this engine
                self.log.error("campaigns.step_failed", error=repr(err)[:300])
                gevent.sleep(RETRY_S)

    def _step(self, next_poll: float) -> float:
        """One pass of the loop: poll when due, settle reports, pacing wake-ups, then wait; the next poll time."""
        now = self.clock()
        if self._dialing and now >= next_poll and any(b.connection.up for b in self.boxes):
            self._poll(now)
            next_poll = now + self.config.poll_s
        self._drain_reports()
        wake = self.runner.next_wake()
        if self._dialing and wake is not None and wake <= self.clock():
            self._place(self._off_hub(self.runner.tick, self.clock()) or [])
            wake = self.runner.next_wake()
        waits = [next_poll - self.clock()] + ([wake - self.clock()] if wake is not None else [])
        self._wake.wait(max(0.01, min(waits)))
        self._wake.clear()
        return next_poll

    def _renew_forever(self) -> None:
        """Leases are renewed on their own timer: a loop slowed by a burst of dials or a slow database never lets
        this engine's leads (in calls) expire and be taken back as lost."""
        while True:
            gevent.sleep(self.config.lease_s / 6)
            if self.runner.renew_due(self.clock()):
                self._off_hub(self.runner.renew, self.clock())

    def _poll(self, now: float) -> None:
        # answered dials count as busy bots from the answer (the engine counts them once connected) to their end
        busy = max(self.engine.metrics.active_calls, self.runner.talking())
        free_bots = max(0, self.engine.config.max_calls - busy)
        self._place(self._off_hub(self.runner.poll, now, free_bots, self._free_agents) or [])

    def _drain_reports(self) -> None:
        while self._reports:
            uuid, report = self._reports[0]
            try:
                orders = self._settle(uuid, report)
            except Exception as err:  # not the database: trying again would fail again; the lease recovers the lead
                self.log.error("campaigns.report_failed", attempt=uuid, error=repr(err)[:300])
                self._reports.popleft()
                self._off_hub(self.runner.forget, uuid, self.clock())
                self.flights.pop(uuid, None)
                continue
            if orders is None:  # the database did not take it: keep it, try again soon
                gevent.sleep(RETRY_S)
                return
            self._reports.popleft()
            if self._dialing:
                self._place(orders)

    def _settle(self, uuid: str, report: Answered | Ended) -> list[DialOrder] | None:
        if isinstance(report, Answered):
            return self._off_hub(self.runner.answered, uuid, report.at)
        flight = self.flights.get(uuid)
        end = self._call_end(uuid, report, flight)
        orders = self._off_hub(self.runner.ended, end, report.at)
        if orders is not None and flight is not None:
            del self.flights[uuid]
            self._by_lead.pop((flight.order.campaign_id, flight.order.dial.lead_id), None)
        if orders is not None and self.engine.notifier is not None:
            self.engine.notifier.sender.wake()  # the attempt's messages are committed: post them now
        return orders

    def _call_end(self, uuid: str, report: Ended, flight: Flight | None) -> CallEnd:
        dialer = self.dialers.get(flight.order.campaign_id) if flight else None
        attempt = dialer.tracker.finished.get(uuid) if dialer else None
        if attempt is None:
            return CallEnd(uuid, report, record=flight.record if flight else None)
        return CallEnd(uuid, report, attempt.box, attempt.cause, "yes" if attempt.early_media else "",
                       record=flight.record if flight else None)

    def _off_hub(self, fn: Callable[..., _T], *args: Any) -> _T | None:
        """Rule 1; None when the database failed (logged)."""
        try:
            result: _T = gevent.get_hub().threadpool.spawn(fn, *args).get()
            return result
        except CampaignStoreError as err:
            self.log.error("campaigns.db_failed", step=getattr(fn, "__name__", "?"), error=str(err)[:300])
            return None

    def _free_agents(self, group: str) -> int:
        members = set(self.engine.config.agents.groups[group].agents) if group in self.engine.config.agents.groups else set()
        return sum(1 for a in self.engine.agents.snapshot(time.monotonic()) if a["id"] in members and a["state"] == "available")

    # ------------------------------------------------------------ dials and what comes back (rule 3)

    def _place(self, orders: list[DialOrder]) -> None:
        for order in orders:
            key = (order.campaign_id, order.dial.lead_id)
            self.flights[order.uuid] = Flight(order)
            self._by_lead[key] = order.uuid
            self._caller_id.current = order.caller_id
            self._dialer(order.campaign_id).dial(order.dial)

    def _dialer(self, campaign_id: str) -> Dialer:
        dialer = self.dialers.get(campaign_id)
        if dialer is None:
            engine = self.engine
            dialer = Dialer(self.boxes, campaign_id=campaign_id,
                            socket_address=f"{engine.config.outbound_host}:{engine.server.port}",
                            caller_ids=self._caller_id, leads=lambda lead_id: self._target(campaign_id, lead_id),
                            outcomes=self.outcome, report=lambda r: self._report(campaign_id, r), clock=self.clock,
                            attempt_key=lambda c, lead_id, n: self._by_lead[(c, lead_id)], ring_s=self.ring_s,
                            margin_s=self.margin_s, amd=self.runner.amd(campaign_id))
            dialer.start()
            self.dialers[campaign_id] = dialer
        return dialer

    def _target(self, campaign_id: str, lead_id: str) -> DialTarget:
        order = self.flights[self._by_lead[(campaign_id, lead_id)]].order
        return DialTarget(order.region, dict(order.variables), order.tz, order.flow_path)

    def _report(self, campaign_id: str, report: Answered | Ended) -> None:
        uuid = self._by_lead.get((campaign_id, report.lead_id))
        if uuid is None:
            self.log.warning("campaigns.stray_report", campaign=campaign_id, lead=report.lead_id)
            return
        self._reports.append((uuid, report))
        self._wake.set()

    def turned_away(self, uuid: str) -> None:
        """The engine answered dial ``uuid`` with its busy action: it ends ``dropped`` without waiting for a record."""
        if uuid in self.flights:
            self._turned_away.add(uuid)

    def outcome(self, uuid: str) -> CallOutcome | None:
        """The answered call's outcome from its record (None until the record is saved)."""
        if uuid in self._turned_away:
            self._turned_away.discard(uuid)
            return CallOutcome("dropped")
        flight = self.flights.get(uuid)
        record = gevent.get_hub().threadpool.spawn(self.engine.store.get, uuid).get()
        if flight is None or record is None or not record.disposition:
            return None
        flight.record = record
        outcome = call_outcome(record, flight.order.tz)
        return CallOutcome(outcome.disposition, outcome.callback_at, outcome.handed_off)

    # ------------------------------------------------------------ messages (rule 4)

    def _prepare(self, lead: LeadToPrepare) -> None:
        """The runner's hook for a lead just claimed into the hopper: its fill-in is pre-rendered (never blocks)."""
        self.prerender.submit(LeadFillIn(lead.campaign_id, lead.lead_id, lead.flow_path, dict(lead.variables)))

    def _messages(self, end: CallEnd, info: AttemptInfo) -> list[Message]:
        """The outbox messages of an ended attempt: the call's node and hang-up notifications, and the
        ``campaign_attempt`` notification. An answering machine gets no hang-up notification (the flow's
        ``on_hangup`` SMS would reach a voicemail on every retry); its ``campaign_attempt`` still goes out."""
        notifier = self.engine.notifier
        if notifier is None:
            return []
        config, now, record = notifier.config, self.clock(), end.record
        attempt = {"attempt_id": end.uuid, "campaign_id": info.campaign_id, "lead_id": info.lead_id,
                   "disposition": end.ended.disposition, "callback_at": end.ended.callback_at, "box": end.box}
        out = build_messages(config, CallInfo(end.uuid, info.caller_id, info.number, ""), ATTEMPT_NOTIFICATION,
                             HANGUP, variables=info.variables, outcome=attempt, now=now)
        if record is None:
            return out
        flow = next((f for f in self.engine.flows.values() if f.id == record.flow_id), None)
        call = CallInfo(record.call_id, record.caller, record.callee, record.flow_id)
        outcome = {k: v for k, v in record.to_dict().items() if k not in ("transcript", "latency", "recording_path")}
        outcome["campaign"] = attempt
        node_names = [n for node in record.path if flow and node in flow.nodes for n in flow.nodes[node].notify]
        for name in dict.fromkeys(node_names):
            out += build_messages(config, call, name, NODE, variables=record.variables, slots=record.slots,
                                  outcome=outcome, now=now)
        extra = {"disposition": end.ended.disposition, "hangup_cause": record.hangup_cause,
                 "duration_s": f"{record.duration_s:g}"}
        if end.ended.disposition == "machine":
            return out  # the flow's hang-up notifications are for a person: none to a voicemail, on no retry
        for name in dict.fromkeys(flow.hangup_notify if flow else ()):
            out += build_messages(config, call, name, HANGUP, variables=record.variables, slots=record.slots,
                                  outcome=outcome, extra=extra, now=now)
        return out


def open_store(config: CampaignsConfig) -> CampaignStore:
    """The campaign store with the lock the service's threads share (blocking I/O: call it off the hub)."""
    return CampaignStore(config.db, lock=threading.RLock())


def start_campaigns(engine: Engine, config: CampaignsConfig, publish: Publish | None = None) -> gevent.Greenlet:
    """Open the campaign database in gevent's threadpool (again every ``RETRY_OPEN_S`` while it cannot be
    opened: a database that is away never stops the engine), then set ``engine.campaigns`` and start it."""
    log = get_logger("campaign.service")

    def opening() -> None:
        while True:
            try:
                store = gevent.get_hub().threadpool.spawn(open_store, config).get()
                break
            except CampaignStoreError as err:
                log.error("campaigns.db_unavailable", error=str(err)[:300], retry_s=RETRY_OPEN_S)
                gevent.sleep(RETRY_OPEN_S)
        engine.campaigns = CampaignService(engine, config, store, publish=publish)
        engine.campaigns.start()

    return gevent.spawn(opening)


def outbox_location(config: EngineConfig) -> str:
    """Where the engine's notifier keeps its outbox: with campaigns, the campaign database (the runner writes an
    attempt's messages in the attempt's transaction); ValueError when ``notifications.db`` names another one."""
    campaigns, db = config.campaigns, config.notifications.db
    if campaigns is None:
        return db or config.records_db
    if db and db != campaigns.db:
        raise ValueError(f"notifications.db ({redact_url(db)}) must be the campaign database ({redact_url(campaigns.db)}) "
                         "or unset when campaigns run: an attempt and its messages are written in one transaction")
    return campaigns.db


def prerender_targets(engine: Engine, flow_path: str) -> list[Target]:
    """The prompt caches a campaign call of the flow at ``flow_path`` will use (every loaded rate, the configured
    voice); none while no such flow is loaded (its first call loads it, later leads are pre-rendered)."""
    flow = next((f for f in list(engine.flows.values()) if str(f.source) == flow_path), None)
    if flow is None:
        return []
    return [Target(flow, pipeline.cache, rate) for (flow_id, rate, voice), pipeline in list(engine.pipelines.items())
            if flow_id == flow.id and not voice]


def campaign_flow(engine: Engine, headers: Mapping[str, str]) -> Flow | None:
    """The flow a campaign dial names (``vb_flow``): one the engine loaded, else loaded now; None when the call
    names none or it cannot be loaded (the engine then answers with its flow for the destination)."""
    path = headers.get("variable_vb_flow", "")
    if not path:
        return None
    key = f"campaign:{path}"
    if key not in engine.flows:
        loaded = next((f for f in engine.flows.values() if str(f.source) == path), None)
        try:
            engine.flows[key] = loaded or load_flow(Path(path))
        except Exception as err:  # a bad flow file must not take the call down: the default flow answers
            get_logger("campaign.service").error("campaigns.flow_failed", error=str(err)[:300])
            return None
    return engine.flows[key]
