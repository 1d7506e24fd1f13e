"""Answering machines in a campaign run by the engine, end to end through the FreeSWITCH double: a ``hang_up``
campaign whose callees are voicemail greetings (each retried once by the campaign's rule, then exhausted) and
people who say "hello?" (greeted, they press 1), and a ``leave_message`` campaign with one voicemail (the message
after the beep; the catalogue's 3 h retry). Real audio: espeak-ng clips through a telephone channel
(bench/amd_bench.py), the engine's own VAD and recogniser deciding."""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import numpy as np
import pytest

from fsdouble.audio import ArrayAudio
from fsdouble.double import FreeSwitchDouble
from tests.engine_support import PASSWORD, campaign_engine, engine_config
from tests.notify_support import SECRET, Gateway
from voicebot.campaign.model import CATALOGUE, Pacing, RetryRule
from voicebot.campaign.store import Campaign, CampaignStore, NewLead
from voicebot.config import CampaignsConfig
from voicebot.engine import Engine
from voicebot.notify.outbox import Outbox
from voicebot.notify.sender import Endpoint, SenderConfig
from voicebot.notify.settings import NotificationsConfig, SmsTemplate
from voicebot.records.model import CallRecord
from voicebot.records.store import open_store

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import amd_bench  # noqa: E402

FLOW = Path(__file__).parent / "flows" / "campaign" / "campaign.yaml"
TZ = "America/New_York"
TRUNK = "sofia/gateway/trunk/"
POLICY = "hang_up"  # the "amd" campaign's policy: with "off" its machines are greeted and this test fails
HUMAN_CLIP, MACHINE_CLIP = "human-en-0-en-us", "machine-en-0-en-us"  # "hello?"; "Hi, you've reached Dana..." + beep
MESSAGE = "Hello {{customer_name}}, this is Sam. Please call us back."
# lead kinds: the campaign, the number prefix, how many
KINDS = {"machine": ("amd", "+1212555", 2), "human": ("amd", "+1212556", 2), "message": ("msg", "+1212557", 1)}
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is installed by scripts/setup.sh")


def clip(clip_id: str) -> tuple[np.ndarray, amd_bench.Speech]:
    """The clip through the clean telephone channel at 8 kHz (0 s = the answer), and where its speech lies."""
    found = next(c for c in amd_bench.build_set(quick=False) if c.clip_id == clip_id)
    speech = amd_bench.speech_of(found)
    return amd_bench.channel(speech, found, None), speech


@pytest.fixture
def gateways() -> Iterator[tuple[Gateway, Gateway]]:
    """The SMS gateway and the webhook receiver."""
    sms, hook = Gateway(), Gateway()
    yield sms, hook
    sms.close()
    hook.close()


def _notifications(sms_url: str, hook_url: str) -> NotificationsConfig:
    return NotificationsConfig(
        sms_gateway=Endpoint(sms_url, SECRET), webhooks={"crm": Endpoint(hook_url, SECRET)},
        retry=SenderConfig(backoff_s=0.05, max_backoff_s=0.2, lease_s=5, poll_s=0.2),
        sms={"sms_invite": SmsTemplate("{{phone}}", "Hi {{customer_name}}: https://x.test/{{call_id}}"),
             "call_outcome": SmsTemplate("{{phone}}", "Call {{disposition}}")},
        webhook={"campaign_attempt": ("crm",)})


def _campaigns(store: CampaignStore, now: float) -> dict[str, str]:
    """Both campaigns and their leads; lead id -> kind."""
    common: dict[str, Any] = dict(flow_path=str(FLOW), window={"all": ["00:00-23:59"]}, max_attempts=4, min_gap_s=0.2,
                                  daily_cap=5, pacing=Pacing(max_cps=40, max_dial_level=1.0), status="running")
    store.create_campaign(Campaign("amd", "amd e2e", retries={"machine": RetryRule(delay_s=0.3, max_retries=1)},
                                   amd_policy=POLICY, **common), now)
    store.create_campaign(Campaign("msg", "message e2e", amd_policy="leave_message", amd_message=MESSAGE, **common), now)
    kinds: dict[str, str] = {}
    for kind, (campaign_id, prefix, count) in KINDS.items():
        numbers = [prefix + f"{i:04d}" for i in range(count)]
        before = {r.id for r in store.leads(campaign_id)}
        store.add_leads(campaign_id, [NewLead(n, TZ, "US", 1, {"customer_name": "Ann", "phone": n}) for n in numbers], now)
        kinds.update({r.id: kind for r in store.leads(campaign_id) if r.id not in before})
    return kinds


def _engine(fs: FreeSwitchDouble, tmp: Path, notifications: NotificationsConfig) -> Engine:
    config = engine_config(fs.inbound_port, tmp, (43700, 43799), default_flow=FLOW, max_calls=8, shutdown_deadline_s=8,
                           records_db=str(tmp / "calls.sqlite"))
    return campaign_engine(config, CampaignsConfig(db=str(tmp / "campaigns.sqlite"), owner="engine-a", lease_s=8.0,
                                                   poll_s=0.2), notifications)


class People:
    """The human callees: each presses 1 once the bot's greeting reaches them; HEARTBEATs for the dialer."""

    def __init__(self, fs: FreeSwitchDouble, kinds: dict[str, str]) -> None:
        self.fs, self.kinds = fs, kinds
        self.seen: set[str] = set()
        self.stop = False

    def run(self) -> None:
        beat = 0.0
        while not self.stop:
            if time.monotonic() - beat >= 1.0:
                self.fs.heartbeat()
                beat = time.monotonic()
            for ch in self.fs.channels():
                if ch.uuid in self.seen or not ch.unicast_active:
                    continue
                if self.kinds.get(ch.variables.get("vb_lead_id", "")) == "human":
                    if self.fs.first_heard(ch.uuid, "engine", min_dbfs=-40) is None:
                        continue  # not greeted yet
                    self.fs.press(ch.uuid, "1")
                self.seen.add(ch.uuid)
            gevent.sleep(0.05)


def _settled(store: CampaignStore) -> bool:
    """Every lead of both campaigns has ended or waits more than an hour."""
    now = time.time()
    rows = [r for c in ("amd", "msg") for r in gevent.get_hub().threadpool.spawn(store.leads, c).get()]
    return all(r.status != "in_call" and (r.status != "pending" or r.next_at > now + 3600) for r in rows)


def _run(fs: FreeSwitchDouble, tmp: Path, store: CampaignStore, kinds: dict[str, str], notifications: NotificationsConfig
         ) -> list[Any]:
    """Run both campaigns to their end; the outbox rows once all are delivered."""
    engine = _engine(fs, tmp, notifications)
    people = People(fs, kinds)
    player = gevent.spawn(people.run)
    deadline = time.monotonic() + 120
    try:
        while not _settled(store):
            assert time.monotonic() < deadline, f"the campaigns end: {Counter(r.status for r in store.leads('amd'))}"
            gevent.sleep(0.2)
        outbox = Outbox(str(tmp / "campaigns.sqlite"))
        try:
            while outbox.pending():
                assert time.monotonic() < deadline, "every message is delivered"
                gevent.sleep(0.1)
            return outbox.rows(1000)
        finally:
            outbox.close()
    finally:
        people.stop = True
        player.join(2)
        engine.shutdown()


def test_a_campaign_hangs_up_on_machines_retries_them_and_greets_people(
        tmp_path: Path, gateways: tuple[Gateway, Gateway]) -> None:
    machine_pcm, _ = clip(MACHINE_CLIP)
    human_pcm, _ = clip(HUMAN_CLIP)
    _, voicemail = clip(MACHINE_CLIP)
    now = time.time()
    store = CampaignStore(str(tmp_path / "campaigns.sqlite"))
    kinds = _campaigns(store, now)
    sms, hook = gateways
    with FreeSwitchDouble(password=PASSWORD) as fs:
        for kind, (_, prefix, _) in KINDS.items():
            audio = human_pcm if kind == "human" else machine_pcm
            fs.set_endpoint(f"{TRUNK}{prefix}*", ring_s=0.05, agent_audio=ArrayAudio(audio, 8000))
        rows = _run(fs, tmp_path, store, kinds, _notifications(sms.url, hook.url))
        fs.assert_no_crash()
        heard = {a["uuid"]: fs.first_heard(a["uuid"], "engine", min_dbfs=-40)
                 for c in ("amd", "msg") for a in store.attempts(c)}
    records = open_store(str(tmp_path / "calls.sqlite"))
    attempts = {c: store.attempts(c) for c in ("amd", "msg")}
    calls = {a["uuid"]: records.get(a["uuid"]) for c in attempts for a in attempts[c]}
    _check_machines(store, kinds, attempts["amd"], calls, heard)
    _check_people(store, kinds, attempts["amd"], calls)
    _check_message(store, attempts["msg"], calls, heard, voicemail)
    _check_notifications(rows, attempts, kinds, sms, hook)
    store.close()
    records.close()


def _of(kinds: dict[str, str], kind: str, attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in attempts if kinds[str(a["lead_id"])] == kind]


def _check_machines(store: CampaignStore, kinds: dict[str, str], attempts: list[dict[str, Any]],
                    calls: dict[str, CallRecord | None], heard: dict[str, float | None]) -> None:
    """Each voicemail: hung up on before the bot said a word, twice (the campaign's one retry), then exhausted."""
    machines = _of(kinds, "machine", attempts)
    seen = {a["uuid"]: (a["disposition"], a["amd"], (calls[a["uuid"]] or CallRecord("")).amd) for a in machines}
    assert all(d == "machine" and amd == "machine" for d, amd, _ in seen.values()), seen
    assert all(record["verdict"] == "machine" and record["action"] == "hang_up" for _, _, record in seen.values()), seen
    assert all(heard[u] is None for u in seen), "a machine never hears the bot"
    per_lead = Counter(a["lead_id"] for a in machines)
    assert sorted(per_lead.values()) == [2, 2], per_lead  # the first dial and the campaign's one retry
    for lead_id in per_lead:
        lead = store.lead(str(lead_id))
        assert (lead.status, lead.retries) == ("exhausted", {"machine": 1}), lead


def _check_people(store: CampaignStore, kinds: dict[str, str], attempts: list[dict[str, Any]],
                  calls: dict[str, CallRecord | None]) -> None:
    """Each person: greeted after "hello?", pressed 1, done in one attempt."""
    people = _of(kinds, "human", attempts)
    assert len(people) == 2 and len({a["lead_id"] for a in people}) == 2
    for attempt in people:
        record = calls[attempt["uuid"]]
        assert record is not None
        assert (attempt["disposition"], attempt["amd"]) == ("completed", "human"), (attempt, record.amd)
        assert record.amd["verdict"] == "human" and record.amd["action"] == "flow", record.amd
        assert record.disposition != "machine" and record.path[:2] == ("greet", "texted"), record.path
        assert store.lead(str(attempt["lead_id"])).status == "done"


def _check_message(store: CampaignStore, attempts: list[dict[str, Any]], calls: dict[str, CallRecord | None],
                   heard: dict[str, float | None], voicemail: amd_bench.Speech) -> None:
    """leave_message: the message after the beep, disposition machine, the catalogue's retry (3 h) booked."""
    [attempt] = attempts
    record = calls[attempt["uuid"]]
    assert record is not None
    assert (attempt["disposition"], attempt["amd"]) == ("machine", "machine"), (attempt, record.amd)
    amd = record.amd
    assert amd["verdict"] == "machine" and amd["action"] == "message" and amd["message_left"] is True, amd
    assert amd["message_trigger"] == "beep", amd
    spoke = heard[attempt["uuid"]]
    assert voicemail.beep_at is not None and spoke is not None and spoke >= voicemail.beep_at, (spoke, voicemail.beep_at)
    lead = store.lead(str(attempt["lead_id"]))
    assert (lead.status, lead.retries) == ("pending", {"machine": 1}), lead
    retry_s = CATALOGUE["machine"].retry_s
    assert abs(lead.next_at - (attempt["ended_at"] + retry_s)) < 5, (lead.next_at - attempt["ended_at"], retry_s)


def _check_notifications(rows: list[Any], attempts: dict[str, list[dict[str, Any]]], kinds: dict[str, str],
                         sms: Gateway, hook: Gateway) -> None:
    """Every attempt: one campaign_attempt webhook; a person's attempt one hang-up SMS with its disposition and
    the node SMS the flow reached; a machine's no SMS at all (not on any retry, not after a message was left)."""
    every = attempts["amd"] + attempts["msg"]
    sent = Counter((r.message.payload["call_id"], r.message.payload["notification"]) for r in rows)
    texts = {r.message.payload["call_id"]: r.message.payload["text"] for r in rows
             if r.message.kind == "sms" and r.message.payload["notification"] == "call_outcome"}
    for attempt in every:
        uuid, person = attempt["uuid"], kinds[str(attempt["lead_id"])] == "human"
        if person:
            assert sent[(uuid, "call_outcome")] == 1 and texts[uuid] == f"Call {attempt['disposition']}", attempt
        else:
            assert attempt["disposition"] == "machine" and sent[(uuid, "call_outcome")] == 0, attempt
        assert sent[(uuid, "sms_invite")] == (1 if person else 0), attempt
        assert sent[(uuid, "campaign_attempt")] == 1, attempt
    assert all(r.delivered_at is not None for r in rows)
    for gateway, kind in ((sms, "sms"), (hook, "webhook")):
        keys = Counter(gateway.keys())
        assert set(keys) == {r.message.id for r in rows if r.message.kind == kind} and max(keys.values()) == 1
        assert all(p.signed for p in gateway.posts)
