"""The dialer: scheduler :class:`Dial` commands out through FreeSWITCH boxes, :class:`Answered` / :class:`Ended`
back (the I/O edge, gevent; the decisions live in voicebot.campaign.dialing, .boxes and .callerid).

    dialer = Dialer([DialBox("fs1", engine.inbound, "sofia/gateway/trunk/{number}")], campaign_id="c1",
                    socket_address="127.0.0.1:8084", caller_ids=pool, leads=lookup, outcomes=record_outcomes(store),
                    report=lambda event: runner.feed(event))
    dialer.start()
    dialer.dial(Dial("lead-1", "+15551230001", 1))     # returns the attempt's origination UUID

Rules (with those of voicebot.campaign.dialing):

1. A dial goes out as ``bgapi originate`` on the box with the most free sessions that is up (voicebot.campaign.boxes),
   with a caller ID from the pool, the callee's region first (voicebot.campaign.callerid).
2. Idempotent: a dial whose attempt UUID this dialer already placed places nothing; one FreeSWITCH already has
   (``uuid_exists``: an engine restarted mid-call) is followed, not placed again.
3. A dial that cannot go out (no box up, no usable caller ID, a variable FreeSWITCH cannot carry, the bgapi
   refused) ends at once as ``network_error`` (retried by policy): the scheduler never waits for a call that
   does not exist.
4. After an answered call hangs up, its outcome comes from the engine's record of that call (``outcomes``).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import gevent

from voicebot.campaign.amdgate import AmdCall
from voicebot.campaign.boxes import Boxes
from voicebot.campaign.callerid import CallerIdSource
from voicebot.campaign.dialing import (
    MARGIN_S,
    RING_S,
    DialTracker,
    HangupClassifier,
    Originate,
    Report,
    attempt_uuid,
    classify_hangup,
)
from voicebot.campaign.scheduler import Dial, Ended
from voicebot.esl.commands import EslFailure
from voicebot.esl.protocol import EslEvent
from voicebot.logs import get_logger
from voicebot.records.store import RecordStore

DIAL_EVENTS = ("BACKGROUND_JOB", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER", "CHANNEL_HANGUP",
               "CHANNEL_HANGUP_COMPLETE", "HEARTBEAT")  # the inbound connection must subscribe to these
TICK_S = 0.2  # how often deadlines and pending outcomes are checked (s)


class BoxConnection(Protocol):
    """What the dialer uses of an inbound ESL connection (voicebot.esl.inbound.InboundConnection)."""

    @property
    def up(self) -> bool: ...

    def api(self, command: str, timeout: float | None = None) -> str: ...

    def bgapi(self, command: str, timeout: float | None = None) -> str: ...

    def uuid_kill(self, uuid: str, cause: str = "NORMAL_CLEARING", timeout: float | None = None) -> str: ...

    def on_event(self, callback: Callable[[EslEvent], None], names: Sequence[str] | None = None) -> object: ...


@dataclass(frozen=True)
class DialBox:
    """A FreeSWITCH box: its name, its inbound connection, and its dial string (``{number}`` is the callee)."""

    name: str
    connection: BoxConnection
    endpoint: str = "sofia/gateway/trunk/{number}"


@dataclass(frozen=True)
class DialTarget:
    """What the dialer needs of a lead beyond the Dial: its region (ISO code), the flow's variables, its zone
    (IANA name) and the campaign's flow file (both optional)."""

    region: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)
    tz: str = ""
    flow: str = ""


@dataclass(frozen=True)
class CallOutcome:
    """How an answered call ended (the engine's record)."""

    disposition: str
    callback_at: float | None = None
    handed_off: bool = False


LeadDetails = Callable[[str], DialTarget]  # lead_id → DialTarget (the campaign store's lead row)
CallOutcomes = Callable[[str], CallOutcome | None]  # call uuid → its outcome, None while its record is not saved


def record_outcomes(store: RecordStore) -> CallOutcomes:
    """Outcomes from the engine's record store (read in gevent's threadpool: never on the hub)."""
    def outcome(uuid: str) -> CallOutcome | None:
        record = gevent.get_hub().threadpool.spawn(store.get, uuid).get()
        if record is None or not record.disposition:
            return None
        return CallOutcome(record.disposition, None, bool(record.handoff.get("agent_id")))
    return outcome


class Dialer:
    """Places a campaign's dials and reports how each went (rules in the module docstring).

    ``attempt_key(campaign_id, lead_id, attempt) -> uuid``: the attempt's origination UUID (default
    :func:`~voicebot.campaign.dialing.attempt_uuid`; a store that creates attempt rows passes its own lookup).
    ``ring_s``: originate_timeout (s); ``margin_s``: extra wait before a silent dial is ended (s).
    ``amd``: the campaign's answering-machine policy, carried by every dial (None: off).
    """

    def __init__(self, boxes: Sequence[DialBox], *, campaign_id: str, socket_address: str,
                 caller_ids: CallerIdSource, leads: LeadDetails, outcomes: CallOutcomes,
                 report: Callable[[Report], None], classify: HangupClassifier = classify_hangup,
                 ring_s: float = RING_S, margin_s: float = MARGIN_S, clock: Callable[[], float] = time.time,
                 attempt_key: Callable[[str, str, int], str] = attempt_uuid, amd: AmdCall | None = None) -> None:
        self.boxes = {b.name: b for b in boxes}
        self.health = Boxes(tuple(self.boxes))
        self.campaign_id, self.socket_address = campaign_id, socket_address
        self.caller_ids, self.leads, self.outcomes, self.report = caller_ids, leads, outcomes, report
        self.tracker = DialTracker(classify, margin_s=margin_s)
        self.ring_s, self.clock, self.attempt_key = ring_s, clock, attempt_key
        self.amd_vars = amd.channel_vars() if amd is not None else {}
        self.log = get_logger("campaign.dialer")
        self._subscriptions: list[object] = []
        self._ticker: gevent.Greenlet | None = None

    def start(self) -> None:
        """Subscribe to every box's events and start the deadline ticker."""
        for box in self.boxes.values():
            self._subscriptions.append(box.connection.on_event(functools.partial(self._on_event, box.name), DIAL_EVENTS))
        self._ticker = gevent.spawn(self._tick_forever)

    def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.kill()
            self._ticker = None
        for sub in self._subscriptions:
            close = getattr(sub, "close", None)
            if callable(close):
                close()
        self._subscriptions.clear()

    # ------------------------------------------------------------ dialing

    def dial(self, dial: Dial) -> str:
        """Place ``dial`` (rules 1-3); returns its attempt UUID."""
        uuid = self.attempt_key(self.campaign_id, dial.lead_id, dial.attempt)
        if self.tracker.known(uuid):
            self.log.info("dialer.duplicate_dial", attempt=uuid)
            return uuid
        now = self.clock()
        found = self._already_up(uuid)
        if found is not None:
            box_name, answered = found
            self.tracker.start(dial, uuid, box_name, self.ring_s, now)
            self.log.warning("dialer.adopted", attempt=uuid, box=box_name, answered=answered)
            if answered:
                self._send(self.tracker.channel_event("CHANNEL_ANSWER", uuid, {}, now))
            return uuid
        self._refresh_boxes(time.monotonic())
        name = self.health.pick(time.monotonic())
        target = self.leads(dial.lead_id)
        caller_id = self.caller_ids.pick(target.region, now)
        if name is None or caller_id is None:
            self._fail(dial, uuid, name or "", "no FreeSWITCH box up with a free session" if name is None
                       else "no usable caller ID in the pool")
            return uuid
        box = self.boxes[name]
        try:
            command = Originate(uuid, box.endpoint.format(number=dial.number), caller_id, self.socket_address,
                                self.campaign_id, dial.lead_id, dial.attempt, self.ring_s, target.variables,
                                self.amd_vars, target.tz, target.flow).command()
            attempt = self.tracker.start(dial, uuid, name, self.ring_s, now)
            attempt.job = box.connection.bgapi(command)
        except (ValueError, EslFailure) as err:
            self.tracker.active.pop(uuid, None)
            self._fail(dial, uuid, name, f"{type(err).__name__}: {err}")
            return uuid
        self.tracker.bind_job(attempt.job, uuid)
        self.health.placed(name)
        self.caller_ids.used(caller_id, now)
        self.log.info("dialer.dialed", attempt=uuid, box=name, lead=dial.lead_id, pii={"number": dial.number})
        return uuid

    def _refresh_boxes(self, now: float) -> None:
        """Which boxes are up; a box up without fresh counts is asked ``api status`` (boxes rule 3)."""
        for name, box in self.boxes.items():
            self.health.connection(name, box.connection.up)
            if self.health.needs_status(name, now):
                with contextlib.suppress(EslFailure):
                    self.health.status(name, box.connection.api("status", 2.0), now)

    def _already_up(self, uuid: str) -> tuple[str, bool] | None:
        """(box, answered) where FreeSWITCH already has channel ``uuid`` (rule 2), else None."""
        for name, box in self.boxes.items():
            if not box.connection.up:
                continue
            with contextlib.suppress(EslFailure):
                if box.connection.api(f"uuid_exists {uuid}", 2.0).strip() == "true":
                    dump = box.connection.api(f"uuid_dump {uuid}", 2.0)
                    return name, "\nAnswer-State: answered\n" in f"\n{dump}"
        return None

    def _fail(self, dial: Dial, uuid: str, box: str, why: str) -> None:
        """Rule 3: the dial ends now as network_error."""
        self.log.warning("dialer.not_placed", attempt=uuid, box=box, reason=why)
        attempt = self.tracker.start(dial, uuid, box, 0.0, self.clock())
        attempt.cause = "NOT_PLACED"
        self._send(self.tracker.end_now(uuid, "network_error", self.clock()))

    # ------------------------------------------------------------ what comes back

    def _on_event(self, box: str, event: EslEvent) -> None:
        now = self.clock()
        if event.name == "HEARTBEAT":
            self.health.heartbeat(box, event.headers, time.monotonic())
            return
        if event.name == "BACKGROUND_JOB":
            reports, stray = self.tracker.job_result(event.get("Job-UUID") or "", event.body_text, now)
            if stray is not None:  # FreeSWITCH placed a second call for a duplicate origination_uuid: end it
                self.log.error("dialer.stray_call", box=box, call=stray)
                with contextlib.suppress(EslFailure):
                    self.boxes[box].connection.uuid_kill(stray, "NORMAL_CLEARING", 2.0)
            self._send(reports)
            return
        self._send(self.tracker.channel_event(event.name, event.unique_id or "", event.headers, now))

    def _tick_forever(self) -> None:
        while True:
            gevent.sleep(TICK_S)
            try:
                self.poll()
            except Exception as err:  # one bad outcome read must not stop every later deadline
                self.log.error("dialer.tick_failed", error=repr(err))

    def poll(self) -> None:
        """Settle answered calls whose records are saved, then end what ran past its deadline."""
        for attempt in self.tracker.awaiting_outcome():
            outcome = self.outcomes(attempt.uuid)
            if outcome is not None:
                self._send(self.tracker.settle(attempt.uuid, outcome.disposition, self.clock(), outcome.callback_at,
                                               outcome.handed_off))
        for report in self.tracker.tick(self.clock()):
            if isinstance(report, Ended):
                self.log.warning("dialer.timed_out", lead=report.lead_id, disposition=report.disposition)
            self._send([report])

    def _send(self, reports: list[Report]) -> None:
        for report in reports:
            try:
                self.report(report)
            except Exception as err:
                self.log.error("dialer.report_failed", lead=report.lead_id, error=repr(err))
