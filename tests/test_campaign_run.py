"""Campaigns inside the engine, end to end through the FreeSWITCH double: a 200-lead campaign with mixed outcomes
runs to completion across an engine restart; every lead ends right, the refused number is never dialed again,
the callback is booked at the time the callee said, and every SMS reaches the local gateway exactly once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

import gevent
import numpy as np
import pytest

from fsdouble.double import FreeSwitchDouble, Silence
from tests.engine_support import PASSWORD, campaign_engine, engine_config, steady_speech
from tests.notify_support import SECRET, Gateway
from voicebot.campaign.model import Pacing, RetryRule
from voicebot.campaign.runner import DialOrder, call_outcome, callback_time
from voicebot.campaign.scheduler import Dial
from voicebot.campaign.store import Campaign, CampaignStore, LeadRow, NewLead
from voicebot.config import CampaignsConfig, EngineConfig
from voicebot.engine import Engine
from voicebot.esl import campaigns as campaigns_edge
from voicebot.esl.dialer import CallOutcome
from voicebot.notify.outbox import Outbox
from voicebot.notify.sender import Endpoint, SenderConfig
from voicebot.notify.settings import NotificationsConfig, SmsTemplate
from voicebot.records.model import CallRecord
from voicebot.records.store import open_store

FLOW = Path(__file__).parent / "flows" / "campaign" / "campaign.yaml"
TZ = "America/New_York"
TRUNK = "sofia/gateway/trunk/"
# lead kinds: how many, the number prefix, and what the double does
KINDS = {"talk": 40, "busy": 40, "no_answer": 40, "invalid": 40, "stop": 4, "callback": 1, "spare": 35}
PREFIX = {"talk": "+1212555", "stop": "+1212556", "callback": "+1212557", "busy": "+1646555", "no_answer": "+1646556",
          "invalid": "+1646557", "spare": "+1212558"}


# ------------------------------------------------------------------ sans-I/O: the outcome of a call from its record


def test_the_campaign_outcome_comes_from_the_record() -> None:
    tagged = CallRecord("c1", disposition="goodbye", tags=("blocklist",))
    assert call_outcome(tagged, TZ).disposition == "do_not_call"
    assert call_outcome(CallRecord("c2", disposition="unfinished"), TZ).disposition == "dropped"
    assert call_outcome(CallRecord("c3", disposition="sms_only"), TZ).disposition == "completed"
    assert call_outcome(CallRecord("c4", disposition="busy"), TZ).disposition == "busy"
    back = call_outcome(CallRecord("c5", disposition="callback", slots={"callback_at": "2026-12-08 15:00"}), TZ)
    assert back.callback_at == datetime(2026, 12, 8, 15, 0, tzinfo=ZoneInfo(TZ)).timestamp()
    assert callback_time("tomorrow", TZ) is None
    ended = datetime(2026, 12, 9, 16, 30, tzinfo=ZoneInfo(TZ))  # a Wednesday, 4:30 pm in New York
    at = ended.timestamp()
    assert callback_time("tomorrow 10:00", TZ, at) == datetime(2026, 12, 10, 10, 0, tzinfo=ZoneInfo(TZ)).timestamp()
    assert callback_time("15:00", TZ, at) == datetime(2026, 12, 10, 15, 0, tzinfo=ZoneInfo(TZ)).timestamp()  # past
    assert callback_time("18:00", TZ, at) == datetime(2026, 12, 9, 18, 0, tzinfo=ZoneInfo(TZ)).timestamp()
    assert callback_time("monday 09:00", TZ, at) == datetime(2026, 12, 14, 9, 0, tzinfo=ZoneInfo(TZ)).timestamp()
    assert callback_time("tomorrow", TZ, at) is None and callback_time("someday 10:00", TZ, at) is None
    labelled = CallRecord("c7", disposition="callback", slots={"callback_time": "tomorrow 10:00"},
                          ended_at="2026-12-09T21:30:00.000Z")
    assert call_outcome(labelled, TZ).callback_at == callback_time("tomorrow 10:00", TZ, at)
    handed = CallRecord("c6", disposition="transferred", handoff={"agent_id": "sam"})
    assert call_outcome(handed, TZ).handed_off


# ------------------------------------------------------------------ end to end


class SaysLater:
    """The callee: silent until ``start()``, then ``samples`` every ``period_s`` (fsdouble's CallerAudio protocol)."""

    def __init__(self, samples: np.ndarray, rate: int, period_s: float = 4.0) -> None:
        self.samples, self.rate, self.period_s = samples.astype(np.int16), rate, period_s
        self.begin: float | None = None
        self.armed = False

    def start(self) -> None:
        self.armed = True

    def frame_for(self, t: float, rate: int, samples: int) -> bytes:
        if not self.armed:
            return bytes(2 * samples)
        if self.begin is None:
            self.begin = t + 1.5  # after "When?"
        start = int(((t - self.begin) % self.period_s) * rate) if t >= self.begin else -1
        if start < 0 or start >= len(self.samples):
            return bytes(2 * samples)
        return self.samples[start:start + samples].tobytes().ljust(2 * samples, b"\0")


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = Gateway()
    yield gw
    gw.close()


def _notifications(url: str) -> NotificationsConfig:
    return NotificationsConfig(
        sms_gateway=Endpoint(url, SECRET), retry=SenderConfig(backoff_s=0.05, max_backoff_s=0.2, lease_s=5, poll_s=0.2),
        sms={"sms_invite": SmsTemplate("{{phone}}", "Hi {{customer_name}}: https://x.test/{{call_id}}"),
             "call_outcome": SmsTemplate("{{phone}}", "Call {{disposition}}")})


def _leads(store: CampaignStore, now: float) -> dict[str, str]:
    """Add the campaign's leads, kind by kind (ids in that order); lead id -> kind."""
    order: list[str] = []
    for kind, count in KINDS.items():
        numbers = [PREFIX[kind] + f"{i:04d}" for i in range(count)]
        store.add_leads("camp", [NewLead(n, TZ, "US", 1, {"customer_name": f"C{i}", "phone": n})
                                 for i, n in enumerate(numbers)], now)
        order += [kind] * count
    return {row.id: kind for row, kind in zip(store.leads("camp"), order, strict=True)}


def _campaign(store: CampaignStore, now: float, campaign_id: str = "camp", status: str = "running") -> None:
    quick = RetryRule(delay_s=0.3, max_retries=1)
    store.create_campaign(Campaign(
        campaign_id, "e2e", str(FLOW), {"all": ["00:00-23:59"]}, retries={"busy": quick, "no_answer": quick,
                                                                      "dropped": RetryRule(0.3, 2),
                                                                      "network_error": RetryRule(0.3, 2)},
        max_attempts=4, min_gap_s=0.2, daily_cap=5, pacing=Pacing(max_cps=40, max_dial_level=1.0), status=status,
        amd_policy="off"),  # the callees answer by DTMF: no machine detection
        now)


def _second_campaign(store: CampaignStore, kinds: dict[str, str], now: float) -> str:
    """A later campaign with a refused number and a fresh one; returns the refused number."""
    refused = next(store.lead(i).number for i, kind in kinds.items() if kind == "stop")
    _campaign(store, now, "again", status="paused")
    fresh = PREFIX["spare"] + "9999"
    store.add_leads("again", [NewLead(refused, TZ, "US", 1, {"phone": refused}), NewLead(fresh, TZ, "US", 1, {"phone": fresh})],
                    now)
    store.set_status("again", "running")
    return refused


class Callee:
    """Plays the callees: presses keys on answered calls as each lead's kind says; speaks for the callback."""

    def __init__(self, fs: FreeSwitchDouble, kinds: dict[str, str], speech: np.ndarray) -> None:
        self.fs, self.kinds, self.speech = fs, kinds, speech
        self.done: set[str] = set()
        self.stop = False

    def run(self) -> None:
        beat = 0.0
        while not self.stop:
            if time.monotonic() - beat >= 1.0:  # HEARTBEATs tell the dialer the box's free sessions (20 s in production)
                self.fs.heartbeat()
                beat = time.monotonic()
            for ch in self.fs.channels():
                if ch.uuid in self.done or not ch.unicast_active:
                    continue
                self.done.add(ch.uuid)
                kind = self.kinds.get(ch.variables.get("vb_lead_id", ""), "")
                if kind == "callback":
                    voice = SaysLater(self.speech, 8000)
                    self.fs.set_agent_audio(ch.uuid, voice)
                    self.fs.press(ch.uuid, "3")
                    voice.start()
                else:
                    self.fs.press(ch.uuid, "2" if kind == "stop" else "1")
            gevent.sleep(0.05)


def _engine(fs: FreeSwitchDouble, tmp: Path, db: str, url: str, owner: str) -> Engine:
    config = engine_config(fs.inbound_port, tmp, (42600, 42799), default_flow=FLOW, max_calls=20,
                           shutdown_deadline_s=8, records_db=str(tmp / "calls.sqlite"))
    return campaign_engine(config, CampaignsConfig(db=db, owner=owner, lease_s=8.0, poll_s=0.2), _notifications(url))


def _leads_now(store: CampaignStore, campaign_id: str = "camp") -> list[LeadRow]:
    """The leads, read in gevent's threadpool: the engine's hub never waits on this test's database lock."""
    rows: list[LeadRow] = gevent.get_hub().threadpool.spawn(store.leads, campaign_id).get()
    return rows


def _settled(store: CampaignStore, campaign_id: str = "camp") -> bool:
    now = time.time()
    return all(r.status != "in_call" and (r.status != "pending" or r.next_at > now + 3600)
               for r in _leads_now(store, campaign_id))


def _originated(fs: FreeSwitchDouble) -> list[tuple[str, str]]:
    """(origination UUID, number) of every originate the double received."""
    out = []
    for command in fs.commands:
        if command.startswith("bgapi originate") and TRUNK in command:
            uuid = command.split("origination_uuid=", 1)[1].split(",", 1)[0]
            out.append((uuid, command.split(TRUNK, 1)[1].split(" ", 1)[0]))
    return out


def test_a_200_lead_campaign_runs_to_completion_across_a_restart(tmp_path: Path, gateway: Gateway) -> None:
    now = time.time()
    db = str(tmp_path / "campaigns.sqlite")
    store = CampaignStore(db)
    _campaign(store, now)
    kinds = _leads(store, now)
    assert len(kinds) == 200
    with FreeSwitchDouble(password=PASSWORD) as fs:
        for kind, result in (("talk", "answer"), ("stop", "answer"), ("callback", "answer"), ("spare", "answer"),
                             ("busy", "USER_BUSY"), ("no_answer", "NO_ANSWER"), ("invalid", "UNALLOCATED_NUMBER")):
            fs.set_endpoint(f"{TRUNK}{PREFIX[kind]}*", ring_s=0.05, result=result, agent_audio=Silence())
        rows, refused = _run_with_a_restart(fs, tmp_path, store, kinds, gateway.url, now)
        fs.assert_no_crash()
        originated = _originated(fs)
    _check_callback(store, kinds, tmp_path)
    _check_leads(store, kinds, originated)
    again = {r.number: r for r in store.leads("again")}
    assert again[refused].status == "blocked" and again[PREFIX["spare"] + "9999"].status == "done"
    _check_messages(store, rows, gateway)
    store.close()


def _run_with_a_restart(fs: FreeSwitchDouble, tmp: Path, store: CampaignStore, kinds: dict[str, str], url: str,
                        now: float) -> tuple[list[Any], str]:
    """Engine a runs the campaign until 60 leads are done, stops; engine b runs the rest and a later campaign
    with a refused number. Returns the outbox rows once all are delivered, and that number."""
    db = str(tmp / "campaigns.sqlite")
    first = _engine(fs, tmp, db, url, "engine-a")
    speech = steady_speech(next(iter(first.pipelines.values())).cache, "call me tomorrow at three")
    callee = Callee(fs, kinds, speech)
    player = gevent.spawn(callee.run)
    deadline = time.monotonic() + 240
    try:
        while len([r for r in _leads_now(store) if r.status != "pending"]) < 60:
            assert time.monotonic() < deadline, "the first engine made progress"
            gevent.sleep(0.2)
        first.shutdown()  # mid-campaign: calls in flight finish, undialed leads go back
        second = _engine(fs, tmp, db, url, "engine-b")
        try:
            while not _settled(store):
                assert time.monotonic() < deadline, f"the campaign ends: {Counter(r.status for r in _leads_now(store))}"
                gevent.sleep(0.2)
            refused = _second_campaign(store, kinds, now)
            while not _settled(store, "again"):
                assert time.monotonic() < deadline, "the second campaign ends"
                gevent.sleep(0.2)
            return _delivered(db, deadline), refused
        finally:
            second.shutdown()
    finally:
        callee.stop = True
        player.join(2)


def _delivered(db: str, deadline: float) -> list[Any]:
    outbox = Outbox(db)
    try:
        while outbox.pending():
            assert time.monotonic() < deadline, "every message is delivered"
            gevent.sleep(0.1)
        return outbox.rows(10_000)
    finally:
        outbox.close()


def _check_leads(store: CampaignStore, kinds: dict[str, str], originated: list[tuple[str, str]]) -> None:
    leads = {r.id: r for r in store.leads("camp")}
    expect = {"talk": ("done", "completed"), "spare": ("done", "completed"), "busy": ("exhausted", ""),
              "no_answer": ("exhausted", ""), "invalid": ("done", "invalid_number"), "stop": ("blocked", "do_not_call"),
              }
    wrong = {i: (kinds[i], r.status, r.finish_reason) for i, r in leads.items() if kinds[i] in expect
             and (r.status != expect[kinds[i]][0] or expect[kinds[i]][1] not in r.finish_reason)}
    assert not wrong
    tried: dict[int, list[str]] = {}
    for a in store.attempts("camp"):
        if a["disposition"] != "worker_lost":  # a dial cut by the restart is recovered, then dialed again
            tried.setdefault(a["lead_id"], []).append(a["disposition"])
    odd = {i: tried[int(i)] for i in leads if kinds[i] in ("busy", "no_answer") and tried[int(i)] != [kinds[i]] * 2}
    assert not odd, "busy and no answer: one retry each"
    uuids = Counter(u for u, _ in originated)
    assert max(uuids.values()) == 1, "no attempt originated twice"
    dialed = Counter(n for _, n in originated)
    assert all(dialed[PREFIX["stop"] + f"{i:04d}"] == 1 for i in range(KINDS["stop"])), "refused: never again"
    attempts = store.attempts("camp") + store.attempts("again")
    assert set(uuids) <= {a["uuid"] for a in attempts}  # every originate is an attempt
    unplaced = [a for a in attempts if a["uuid"] not in uuids]
    assert all(a["disposition"] in ("network_error", "worker_lost") for a in unplaced), unplaced
    assert all(a["ended_at"] is not None for a in attempts)


def _check_callback(store: CampaignStore, kinds: dict[str, str], tmp: Path) -> None:
    """The callee said "call me tomorrow at three": the lead is booked then, in its own zone."""
    [lead_id] = [i for i, kind in kinds.items() if kind == "callback"]
    callback = store.lead(lead_id)
    tried = [a for a in store.attempts("camp") if a["lead_id"] == int(lead_id)]
    attempt = tried[-1]
    records = open_store(str(tmp / "calls.sqlite"))
    record = records.get(attempt["uuid"])
    heard = (tried, record.slots, [line.text for line in record.transcript]) if record else tried
    said = datetime.now(ZoneInfo(TZ)).date() + timedelta(days=1)
    assert callback.status == "pending" and callback.retries == {"callback": 1}, heard
    assert callback.next_at == datetime(said.year, said.month, said.day, 15, 0, tzinfo=ZoneInfo(TZ)).timestamp(), heard


def _check_messages(store: CampaignStore, rows: list[Any], gateway: Gateway) -> None:
    sms = [r for r in rows if r.message.kind == "sms"]
    assert sms and all(r.delivered_at is not None for r in sms)
    keys = Counter(gateway.keys())
    extra = [p.body for p in gateway.posts if p.headers.get("Idempotency-Key") not in {r.message.id for r in sms}]
    assert set(keys) == {r.message.id for r in sms} and max(keys.values()) == 1, extra
    assert all(p.signed for p in gateway.posts)
    by_call = Counter((r.message.payload["call_id"], r.message.payload["notification"]) for r in sms)
    completed = [a for a in store.attempts("camp") if a["disposition"] == "completed"]
    assert len(completed) == KINDS["talk"] + KINDS["spare"]
    for attempt in completed:  # the node SMS and the hang-up SMS of each completed call, once each
        assert by_call[(attempt["uuid"], "sms_invite")] == 1 and by_call[(attempt["uuid"], "call_outcome")] == 1
    refused = [a for a in store.attempts("camp") if a["disposition"] == "do_not_call"]
    assert len(refused) == KINDS["stop"] and all(by_call[(a["uuid"], "call_outcome")] == 1 for a in refused)


def test_a_campaign_database_away_at_start_is_opened_later_and_never_stops_the_engine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(campaigns_edge, "RETRY_OPEN_S", 0.05)
    config = EngineConfig(max_calls=2)
    stand_in = SimpleNamespace(inbound=SimpleNamespace(up=False), config=config, campaigns=None)
    location = tmp_path / "not-yet" / "campaigns.sqlite"  # its folder is missing: SQLite cannot open it
    opening = campaigns_edge.start_campaigns(cast(Any, stand_in), CampaignsConfig(db=str(location), poll_s=0.05))
    gevent.sleep(0.3)
    assert stand_in.campaigns is None and not opening.dead  # still trying, the hub still runs
    location.parent.mkdir()
    opening.join(5)
    assert isinstance(stand_in.campaigns, campaigns_edge.CampaignService)
    stand_in.campaigns.close(0.1)


def test_a_dial_the_engine_turned_away_ends_dropped_without_waiting_for_a_record(tmp_path: Path) -> None:
    """Regression: an answered dial the engine had no bot for (busy action) left no record, and the dialer waited
    30 s for one before it ended the attempt."""
    config = CampaignsConfig(db=str(tmp_path / "c.sqlite"))
    records = open_store(str(tmp_path / "calls.sqlite"))
    stand_in = SimpleNamespace(inbound=SimpleNamespace(up=False), config=EngineConfig(), store=records)
    service = campaigns_edge.CampaignService(cast(Any, stand_in), config, campaigns_edge.open_store(config))
    order = DialOrder("c", Dial("1", "+12125550101", 1), "u-1", "US", TZ, {}, "", "")
    service.flights["u-1"] = campaigns_edge.Flight(order)
    assert service.outcome("u-1") is None  # no record yet: wait for it
    service.turned_away("u-1")
    assert service.outcome("u-1") == CallOutcome("dropped")
    service.store.close()
    records.close()
