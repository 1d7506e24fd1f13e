"""The campaign runner's loop logic on a real SQLite store, without gevent or FreeSWITCH: claims and dials,
statuses followed within a poll, the end of an attempt written in one transaction with its messages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from voicebot.campaign.model import Pacing
from voicebot.campaign.runner import AttemptInfo, CallEnd, CampaignRunner, RunnerSettings
from voicebot.campaign.scheduler import Ended
from voicebot.campaign.store import Campaign, CampaignStore, NewLead
from voicebot.esl.driver import local_now
from voicebot.notify.outbox import Message, Outbox
from voicebot.records.model import CallRecord

T0 = datetime(2026, 12, 9, 17, 0, tzinfo=UTC).timestamp()  # a Wednesday, noon in New York
TZ = "America/New_York"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CampaignStore]:
    db = CampaignStore(str(tmp_path / "c.sqlite"))
    yield db
    db.close()


def _campaign(store: CampaignStore, campaign_id: str, numbers: list[str], status: str = "running") -> None:
    store.create_campaign(Campaign(campaign_id, window={"all": ["08:00-21:00"]}, min_gap_s=1, status=status,
                                   pacing=Pacing(max_cps=100, max_dial_level=1.0)), T0 - 10)
    store.add_leads(campaign_id, [NewLead(n, TZ, "US", 0, {"name": f"N{n[-2:]}"}) for n in numbers], T0 - 10)


def _message(end: CallEnd, info: AttemptInfo) -> list[Message]:
    return [Message(f"m-{end.uuid}", "sms", "sms", info.number, {"to": info.number, "text": end.ended.disposition}, T0)]


def test_poll_dials_due_leads_with_their_attempt_uuids(store: CampaignStore) -> None:
    _campaign(store, "c", ["+12125550101", "+12125550102", "+12125550103"])
    runner = CampaignRunner(store, RunnerSettings("engine-a/1", lease_s=30))
    orders = runner.poll(T0, free_bots=2)
    assert len(orders) == 2  # two free bots, one line each
    attempts = {a["uuid"]: a for a in store.attempts("c")}
    for order in orders:
        assert attempts[order.uuid]["lead_id"] == int(order.dial.lead_id) and order.tz == TZ
        assert order.variables == {"name": f"N{order.dial.number[-2:]}"} and order.region == "US"
    assert {r.lease_owner for r in store.leads("c")} == {"engine-a/1"}  # the third waits in this engine's hopper


def test_an_answered_call_takes_a_bot_before_the_next_decision(store: CampaignStore) -> None:
    """Regression: after an answer the scheduler decided on the bots counted before it, and dialed a second line
    for one bot (the engine then turned the call away as busy)."""
    _campaign(store, "c", ["+12125550101", "+12125550102"])
    runner = CampaignRunner(store, RunnerSettings("engine-a/1"))
    [first] = runner.poll(T0, free_bots=1)
    assert runner.answered(first.uuid, T0 + 1) == []  # the one bot is on the call: no second dial
    assert runner.talking() == 1


def test_pause_resume_and_stop_take_effect_within_a_poll(store: CampaignStore) -> None:
    _campaign(store, "c", [f"+1212555{i:04d}" for i in range(6)])
    runner = CampaignRunner(store, RunnerSettings("engine-a/1", claim_limit=10))
    [first] = runner.poll(T0, free_bots=1)
    store.set_status("c", "paused")
    assert runner.poll(T0 + 1, free_bots=5) == []  # paused: no dial, the undialed leads go back to the pool
    assert [r.lease_owner for r in store.leads("c") if r.status == "pending"] == [None] * 5
    runner.ended(CallEnd(first.uuid, Ended(T0 + 2, first.dial.lead_id, "completed")), T0 + 2)  # calls finish
    store.set_status("c", "running")
    assert len(runner.poll(T0 + 3, free_bots=2)) == 2
    store.set_status("c", "stopped")
    assert runner.poll(T0 + 4, free_bots=5) == [] and "c" in runner.runs  # two calls still in flight
    for uuid, info in list(runner.attempts.items()):
        runner.ended(CallEnd(uuid, Ended(T0 + 5, info.lead_id, "busy")), T0 + 5)
    runner.poll(T0 + 6, free_bots=5)
    assert "c" not in runner.runs  # stopped and its last call ended: forgotten


def test_the_end_the_booking_and_the_messages_commit_together_or_not_at_all(store: CampaignStore, tmp_path: Path) -> None:
    _campaign(store, "c", ["+12125550101"])
    failing = {"now": True}

    def messages(end: CallEnd, info: AttemptInfo) -> list[Message]:
        if failing["now"]:
            raise RuntimeError("the outbox write failed")
        return _message(end, info)

    runner = CampaignRunner(store, RunnerSettings("engine-a/1"), messages=messages)
    [order] = runner.poll(T0, free_bots=1)
    end = CallEnd(order.uuid, Ended(T0 + 5, order.dial.lead_id, "busy"), box="fs1")
    with pytest.raises(RuntimeError):
        runner.ended(end, T0 + 5)
    outbox = Outbox(str(tmp_path / "c.sqlite"))
    try:
        assert outbox.rows() == [] and store.attempts("c")[0]["ended_at"] is None
        assert store.lead(order.dial.lead_id).status == "in_call"  # nothing half written
        failing["now"] = False
        runner.ended(end, T0 + 5)  # the same end again: now it all goes in
        [row] = outbox.rows()
    finally:
        outbox.close()
    assert row.message.id == f"m-{order.uuid}" and row.message.payload["text"] == "busy"
    lead = store.lead(order.dial.lead_id)
    assert store.attempts("c")[0]["disposition"] == "busy" and lead.status == "pending" and lead.retries == {"busy": 1}
    assert runner.attempts == {}


def test_a_refusal_blocklists_the_number_in_every_campaign_at_once(store: CampaignStore) -> None:
    _campaign(store, "c", ["+12125550101"])
    runner = CampaignRunner(store, RunnerSettings("engine-a/1"))
    [order] = runner.poll(T0, free_bots=1)
    record = CallRecord(order.uuid, disposition="blocklist", tags=("blocklist",), level="D")
    runner.ended(CallEnd(order.uuid, Ended(T0 + 3, order.dial.lead_id, "do_not_call"), record=record), T0 + 3)
    lead = store.lead(order.dial.lead_id)
    assert (lead.status, lead.finish_reason) == ("blocked", "do_not_call")
    _campaign(store, "later", ["+12125550101", "+12125550102"])
    dialed = {o.dial.number for o in runner.poll(T0 + 10, free_bots=5)}
    assert dialed == {"+12125550102"}  # the refused number is never dialed again
    assert [r.status for r in store.leads("later")] == ["blocked", "in_call"]


def test_a_lead_taken_over_by_another_engine_is_not_dialed_or_booked(store: CampaignStore) -> None:
    _campaign(store, "c", ["+12125550101", "+12125550102"])
    slow = CampaignRunner(store, RunnerSettings("engine-a/1", lease_s=5, claim_limit=2))
    [order] = slow.poll(T0, free_bots=1)  # the second lead waits in engine a's hopper, leased for 5 s
    other = CampaignRunner(store, RunnerSettings("engine-b/1", lease_s=5))
    taken = other.poll(T0 + 6, free_bots=5)  # engine a stalled past its leases: b recovers both
    assert sorted(o.dial.lead_id for o in taken) == sorted(r.id for r in store.leads("c"))
    assert slow.ended(CallEnd(order.uuid, Ended(T0 + 7, order.dial.lead_id, "busy")), T0 + 7) == []
    assert slow.poll(T0 + 7, free_bots=5) == []  # nothing of b's is dialed by a
    lost = [a for a in store.attempts("c") if a["owner"] == "engine-a/1"]
    assert [a["disposition"] for a in lost] == ["worker_lost"]


def test_a_campaign_call_gets_the_leads_zone_as_its_local_time() -> None:
    assert local_now(TZ).utcoffset() == datetime.now(UTC).astimezone(local_now(TZ).tzinfo).utcoffset()
    assert str(local_now(TZ).tzinfo) == TZ
    assert local_now("").tzinfo is not None and local_now("Not/AZone").tzinfo is not None


def test_a_dial_given_up_on_is_recovered_by_the_next_claim(store: CampaignStore) -> None:
    _campaign(store, "c", ["+12125550101"])
    runner = CampaignRunner(store, RunnerSettings("engine-a/1", lease_s=3))
    [order] = runner.poll(T0, free_bots=1)
    runner.forget(order.uuid, T0 + 1)  # its end could not be written (a bug, not the database)
    assert runner.talking() == 0 and not runner.runs["c"].scheduler.flights
    runner.renew(T0 + 1.5)  # due, but the expired lease is not renewed: it cannot be kept alive forever
    [again] = runner.poll(T0 + 2, free_bots=1)
    assert again.dial.lead_id == order.dial.lead_id and again.dial.attempt == 2
    assert [a["disposition"] for a in store.attempts("c")] == ["worker_lost", ""]


@pytest.mark.parametrize(("policy", "message", "expected"), [
    ("hang_up", "", {"vb_amd": "hang_up"}),
    ("hangup", "", {"vb_amd": "hang_up"}),  # schema v1's spelling
    ("leave_message", "Call us back", {"vb_amd": "leave_message", "vb_amd_message": "Call us back"}),
    ("off", "", None),
])
def test_a_campaigns_answering_machine_policy_reaches_its_dials(store: CampaignStore, policy: str, message: str,
                                                               expected: dict[str, str] | None) -> None:
    store.create_campaign(Campaign("c", window={"all": ["08:00-21:00"]}, status="running", amd_policy=policy,
                                   amd_message=message), T0 - 10)
    runner = CampaignRunner(store, RunnerSettings("engine-a/1"))
    runner.poll(T0, free_bots=1)
    amd = runner.amd("c")
    assert (amd.channel_vars() if amd is not None else None) == expected
    assert runner.amd("not-running") is None


def test_each_poll_publishes_the_engines_pacing_for_campaign_status(store: CampaignStore) -> None:
    _campaign(store, "c", ["+12125550101", "+12125550102", "+12125550103"])
    runner = CampaignRunner(store, RunnerSettings("engine-a/1"))
    runner.poll(T0, free_bots=2)
    [row] = store.runtime("c", T0 + 1)
    assert row["owner"] == "engine-a/1"
    assert (row["snapshot"]["ringing"], row["snapshot"]["free_bots"]) == (2, runner.runs["c"].scheduler.free_bots)
    assert store.runtime("c", T0 + 60) == []  # a silent engine's pacing is not shown as current


def test_each_claimed_lead_goes_once_to_the_pre_render_hook_before_its_dial(store: CampaignStore) -> None:
    """The hook the voice issue's per-lead pre-rendering plugs into: a lead's flow, zone and variables reach it
    when the lead enters this engine's hopper (before any dial for it), and only once however many polls follow."""
    from voicebot.campaign.runner import LeadToPrepare

    _campaign(store, "c", ["+12125550101", "+12125550102", "+12125550103"])
    prepared: list[LeadToPrepare] = []
    runner = CampaignRunner(store, RunnerSettings("engine-a/1"), prepare=prepared.append)
    orders = runner.poll(T0, free_bots=1)
    assert sorted(p.variables["name"] for p in prepared) == ["N01", "N02", "N03"]  # all three wait in the hopper
    assert {p.campaign_id for p in prepared} == {"c"} and {p.tz for p in prepared} == {TZ}
    assert orders[0].dial.lead_id in {p.lead_id for p in prepared}
    runner.poll(T0 + 5, free_bots=1)
    assert len(prepared) == 3  # a lead already in the hopper is not prepared again
