"""The campaign store on SQLite and a real PostgreSQL: migrations, leases, the scheduler's commands, the blocklist,
per-number caps across campaigns, the caller-ID pool, one transaction for an attempt's end and its side effects."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.campaign_support import PgServer, campaign_db, open_db, pg_location, pg_server
from voicebot.campaign.claims import LOST
from voicebot.campaign.db import CampaignStoreError
from voicebot.campaign.model import RetryRule
from voicebot.campaign.scheduler import (
    Answered,
    BlockNumber,
    Book,
    Capacity,
    Defer,
    Dial,
    Ended,
    Finish,
    Offered,
    Scheduler,
    WakeAt,
)
from voicebot.campaign.schema import MIGRATIONS
from voicebot.campaign.store import AttemptEnd, Campaign, CampaignStore, NewLead

__all__ = ["campaign_db", "pg_server"]  # fixtures used by name

NY = "America/New_York"
# Monday 2026-12-07 15:00 UTC = 10:00 in New York (inside 08:00-21:00)
T0 = datetime(2026, 12, 7, 15, 0, tzinfo=ZoneInfo("UTC")).timestamp()
NUMBERS = [f"+1212555{i:04d}" for i in range(10)]


@pytest.fixture
def store(campaign_db: str) -> Iterator[CampaignStore]:
    opened: list[CampaignStore] = []
    s = open_db(campaign_db, opened)
    yield s
    for each in opened:
        each.close()


def campaign(cid: str = "c1", **changes: object) -> Campaign:
    base = Campaign(cid, name="Spring offer", flow_path="flows/offer.yaml", window={"all": ["08:00-21:00"]},
                    retries={"busy": RetryRule(600, 2)}, max_attempts=4, min_gap_s=300, daily_cap=3, status="running")
    return replace(base, **changes)  # type: ignore[arg-type]


def seeded(store: CampaignStore, cid: str = "c1", numbers: list[str] = NUMBERS, **changes: object) -> None:
    store.create_campaign(campaign(cid, **changes), T0)
    store.add_leads(cid, [NewLead(n, NY, "US", priority=i % 3, variables={"name": f"n{i}"}) for i, n in enumerate(numbers)],
                    T0)


# ------------------------------------------------------------------ schema


def test_migrations_are_recorded_and_run_once(campaign_db: str) -> None:
    first = CampaignStore(campaign_db)
    seeded(first)
    assert first.db.schema_version() == len(MIGRATIONS)
    first.close()
    again = CampaignStore(campaign_db)  # opening again migrates nothing and keeps the data
    assert again.db.schema_version() == len(MIGRATIONS) and again.counts("c1") == {"pending": len(NUMBERS)}
    with again.transaction() as tx:
        tx.execute("UPDATE schema_versions SET version = ? WHERE component = 'campaign'", (len(MIGRATIONS) + 1,))
    again.close()
    with pytest.raises(CampaignStoreError, match="newer than this engine"):
        CampaignStore(campaign_db)


def test_campaign_round_trip_and_bad_input(store: CampaignStore) -> None:
    c = campaign(holidays=("2026-12-25",), total_cap=9, caller_id_pool="ny", agent_group="sales")
    store.create_campaign(c, T0)
    assert store.campaign("c1") == c
    assert store.campaign("c1").policy().window.is_open(T0, NY)
    with pytest.raises(CampaignStoreError, match="exists already"):
        store.create_campaign(c, T0)
    with pytest.raises(CampaignStoreError, match="no campaign"):
        store.campaign("nope")
    with pytest.raises(CampaignStoreError, match="status"):
        store.set_status("c1", "flying")
    store.set_status("c1", "paused")
    assert store.campaign("c1").status == "paused"


# ------------------------------------------------------------------ claims and leases


def test_claim_leases_and_an_expired_lease_returns_the_lead(store: CampaignStore) -> None:
    seeded(store)
    first = store.claim_due("c1", "engine-a", T0, limit=4, lease_s=30)
    assert len(first) == 4 and [lead.priority for lead in first] == sorted((lead.priority for lead in first), reverse=True)
    rest = store.claim_due("c1", "engine-b", T0 + 1, limit=50, lease_s=30)
    assert {lead.lead_id for lead in first}.isdisjoint(lead.lead_id for lead in rest) and len(rest) == len(NUMBERS) - 4
    assert store.claim_due("c1", "engine-b", T0 + 29, limit=50) == []  # every lease still live
    again = store.claim_due("c1", "engine-b", T0 + 31, limit=50)  # engine-a's leases (and b's own) expired
    assert {lead.lead_id for lead in first} <= {lead.lead_id for lead in again}
    assert all(row.lease_owner == "engine-b" for row in store.leads("c1"))


def test_a_paused_or_stopped_campaign_has_nothing_due(store: CampaignStore) -> None:
    seeded(store)
    store.set_status("c1", "paused")
    assert store.claim_due("c1", "a", T0, limit=50) == []
    store.set_status("c1", "stopped")
    assert store.claim_due("c1", "a", T0, limit=50) == []
    store.set_status("c1", "running")
    assert len(store.claim_due("c1", "a", T0, limit=50)) == len(NUMBERS)
    with pytest.raises(CampaignStoreError, match="no campaign"):
        store.claim_due("nope", "a", T0)


def test_leads_not_due_yet_are_not_claimed(store: CampaignStore) -> None:
    seeded(store)
    lead = store.claim_due("c1", "a", T0, limit=1)[0]
    store.apply([Book(lead.lead_id, T0 + 3600, "busy")], T0, owner="a")
    assert lead.lead_id not in {x.lead_id for x in store.claim_due("c1", "b", T0 + 10, limit=50)}
    assert lead.lead_id in {x.lead_id for x in store.claim_due("c1", "c", T0 + 3600, limit=50)}


def test_dial_creates_the_attempt_and_counts_the_number(store: CampaignStore) -> None:
    seeded(store)
    lead = store.claim_due("c1", "a", T0, limit=1)[0]
    applied = store.apply([Dial(lead.lead_id, lead.number, 1), WakeAt(T0 + 5)], T0, owner="a", lease_s=120)
    attempt_uuid = applied.dials[lead.lead_id]
    (row,) = store.attempts("c1")
    assert row["uuid"] == attempt_uuid and row["attempt_no"] == 1 and row["ended_at"] is None and row["owner"] == "a"
    stored = store.lead(lead.lead_id)
    assert stored.status == "in_call" and stored.attempts == 1 and stored.lease_until == T0 + 120
    store.record_answer(attempt_uuid, T0 + 8)
    assert store.end_attempt(attempt_uuid, AttemptEnd("busy", sip_cause="USER_BUSY", tags=("x",)), T0 + 9)
    assert not store.end_attempt(attempt_uuid, AttemptEnd("completed"), T0 + 10)  # idempotent by UUID
    assert store.attempts("c1")[0]["disposition"] == "busy" and store.attempts("c1")[0]["answered_at"] == T0 + 8
    store.apply([Book(lead.lead_id, T0 + 900, "busy")], T0 + 9, owner="a")
    stored = store.lead(lead.lead_id)
    assert (stored.status, stored.next_at, stored.retries, stored.lease_owner) == ("pending", T0 + 900, {"busy": 1}, None)
    again = next(x for x in store.claim_due("c1", "b", T0 + 900, limit=50) if x.lead_id == lead.lead_id)
    assert (again.attempts, again.attempts_today, again.last_attempt_at, again.retries) == (1, 1, T0, {"busy": 1})


def test_finish_defer_and_block_commands(store: CampaignStore) -> None:
    seeded(store)
    a, b, c = store.claim_due("c1", "a", T0, limit=3)
    store.apply([Finish(a.lead_id, "done", "completed"), Defer(b.lead_id, T0 + 7200, "window"),
                 Defer(c.lead_id, None, "window"), BlockNumber(NUMBERS[9], "do_not_call")], T0, owner="a")
    assert (store.lead(a.lead_id).status, store.lead(a.lead_id).finish_reason) == ("done", "completed")
    assert store.lead(b.lead_id).next_at == T0 + 7200 and store.lead(b.lead_id).lease_owner is None
    assert store.lead(c.lead_id).next_at == T0 + 86400
    assert store.blocked([NUMBERS[9]], "c1", T0) == {NUMBERS[9]}
    assert [r.status for r in store.leads("c1") if r.number == NUMBERS[9]] == ["blocked"]


def test_an_owner_whose_lease_was_taken_over_can_no_longer_write(store: CampaignStore) -> None:
    seeded(store, numbers=NUMBERS[:1])
    (lead,) = store.claim_due("c1", "slow", T0, limit=1, lease_s=10)
    assert store.claim_due("c1", "fast", T0 + 11, limit=1)  # slow's lease expired: fast holds it now
    late = store.apply([Dial(lead.lead_id, lead.number, 1), Finish(lead.lead_id, "done", "x")], T0 + 12, owner="slow")
    assert late.dials == {} and late.lost == [lead.lead_id, lead.lead_id]
    assert store.attempts("c1") == [] and store.lead(lead.lead_id).status == "pending"


def test_a_lead_left_in_a_call_by_a_dead_engine_comes_back(store: CampaignStore) -> None:
    seeded(store, numbers=NUMBERS[:1])
    (lead,) = store.claim_due("c1", "dead", T0, limit=1)
    store.apply([Dial(lead.lead_id, lead.number, 1)], T0, owner="dead", lease_s=60)
    assert store.claim_due("c1", "alive", T0 + 59, limit=1) == []
    (back,) = store.claim_due("c1", "alive", T0 + 61, limit=1)
    assert back.lead_id == lead.lead_id and back.attempts == 1 and back.last_attempt_at == T0
    (orphan,) = store.attempts("c1")
    assert orphan["disposition"] == LOST and orphan["ended_at"] == T0 + 61


def test_renew_keeps_a_long_call_leased(store: CampaignStore) -> None:
    seeded(store, numbers=NUMBERS[:1])
    (lead,) = store.claim_due("c1", "a", T0, limit=1)
    store.apply([Dial(lead.lead_id, lead.number, 1)], T0, owner="a", lease_s=60)
    assert store.renew("a", T0 + 50, lease_s=60) == 1
    assert store.claim_due("c1", "b", T0 + 100, limit=1) == [] and store.lead(lead.lead_id).status == "in_call"
    assert store.release("a") == 0  # in a call: kept


def test_the_same_number_is_never_in_two_calls_at_once(store: CampaignStore) -> None:
    seeded(store, "c1", NUMBERS[:1])
    seeded(store, "c2", NUMBERS[:1])
    (one,) = store.claim_due("c1", "a", T0, limit=1)
    (two,) = store.claim_due("c2", "b", T0, limit=1)
    assert store.apply([Dial(one.lead_id, one.number, 1)], T0, owner="a").dials
    assert store.apply([Dial(two.lead_id, two.number, 1)], T0, owner="b").lost == [two.lead_id]
    assert store.lead(two.lead_id).status == "pending" and len(store.attempts("c2")) == 0


# ------------------------------------------------------------------ compliance


def test_stop_calling_me_blocks_the_number_in_every_campaign_at_once(store: CampaignStore) -> None:
    seeded(store, "c1", NUMBERS[:3])
    seeded(store, "c2", NUMBERS[:3])
    s = Scheduler(store.campaign("c1").policy())
    s.handle(Capacity(T0, free_bots=10), T0)
    commands = s.handle(Offered(T0, tuple(store.claim_due("c1", "a", T0, limit=1))), T0)
    (dial,) = [c for c in commands if isinstance(c, Dial)]
    store.apply(commands, T0, owner="a")
    s.handle(Answered(T0 + 5, dial.lead_id), T0 + 5)
    store.apply(s.handle(Ended(T0 + 30, dial.lead_id, "do_not_call"), T0 + 30), T0 + 30, owner="a")
    assert store.lead(dial.lead_id).status == "blocked"
    later = T0 + 86400
    assert dial.number not in {x.number for x in store.claim_due("c2", "b", later, limit=50)}
    assert dial.number not in {x.number for x in store.claim_due("c1", "b", later, limit=50)}
    assert [r.status for r in store.leads("c2") if r.number == dial.number] == ["blocked"]


def test_a_number_blocked_while_its_lead_is_claimed_is_never_returned_again(store: CampaignStore) -> None:
    seeded(store, numbers=NUMBERS[:2])
    leads = store.claim_due("c1", "a", T0, limit=2, lease_s=10)
    with store.transaction() as tx:  # an entry written behind the store's back (another engine's older code, SQL)
        tx.execute("INSERT INTO blocklist (number, scope, reason, added_at) VALUES (?, 'c1', 'operator', ?)",
                   (leads[0].number, T0))
    store.apply([Defer(x.lead_id, T0 + 20, "window") for x in leads], T0, owner="a")
    assert [x.number for x in store.claim_due("c1", "a", T0 + 20, limit=50)] == [leads[1].number]
    assert store.lead(leads[0].lead_id).status == "blocked"


def test_a_blocklist_entry_that_expired_no_longer_blocks(store: CampaignStore) -> None:
    seeded(store, numbers=NUMBERS[:1])
    store.block(NUMBERS[:1], T0, scope="c2", reason="other campaign")  # another campaign's scope: not ours
    assert store.blocked(NUMBERS[:1], "c1", T0) == set() and store.blocked(NUMBERS[:1], "c2", T0) == set(NUMBERS[:1])
    store.block(NUMBERS[:1], T0, reason="for a day", expires_at=T0 + 86400)
    assert store.blocked(NUMBERS[:1], "c1", T0 + 100) and not store.blocked(NUMBERS[:1], "c1", T0 + 86401)


def test_daily_and_total_caps_count_across_campaigns(store: CampaignStore) -> None:
    shared = NUMBERS[0]
    seeded(store, "c1", [shared], daily_cap=1)
    seeded(store, "c2", [shared], daily_cap=1, total_cap=2)
    (one,) = store.claim_due("c1", "a", T0, limit=1)
    attempt_uuid = store.apply([Dial(one.lead_id, shared, 1)], T0, owner="a").dials[one.lead_id]
    store.end_attempt(attempt_uuid, AttemptEnd("no_answer"), T0 + 30)
    store.apply([Book(one.lead_id, T0 + 7200, "no_answer")], T0 + 30, owner="a")
    (two,) = store.claim_due("c2", "b", T0 + 3600, limit=1)
    assert (two.attempts, two.attempts_today, two.last_attempt_at) == (0, 1, T0)  # c1's dial counts for c2
    s = Scheduler(store.campaign("c2").policy())
    s.handle(Capacity(T0 + 3600, free_bots=5), T0 + 3600)
    (defer,) = s.handle(Offered(T0 + 3600, (two,)), T0 + 3600)
    assert isinstance(defer, Defer) and defer.reason == "daily_cap"
    store.apply([defer], T0 + 3600, owner="b")
    assert defer.until is not None
    (back,) = store.claim_due("c2", "b", defer.until, limit=1)  # the next local day: today's count starts over
    assert back.attempts_today == 0
    store.apply([Dial(back.lead_id, shared, 1)], defer.until, owner="b")
    store.apply([Book(back.lead_id, defer.until + 7200, "no_answer")], defer.until, owner="b")
    assert store.claim_due("c2", "b", defer.until + 7200, limit=1) == []  # two attempts to the number: total cap
    assert (store.lead(back.lead_id).status, store.lead(back.lead_id).finish_reason) == (
        "exhausted", "2 attempts to the number across campaigns")


# ------------------------------------------------------------------ one transaction, caller IDs


def test_an_attempts_end_and_its_side_effects_commit_together_or_not_at_all(store: CampaignStore) -> None:
    seeded(store, numbers=NUMBERS[:1])
    (lead,) = store.claim_due("c1", "a", T0, limit=1)
    attempt_uuid = store.apply([Dial(lead.lead_id, lead.number, 1)], T0, owner="a").dials[lead.lead_id]
    with store.transaction() as tx:
        tx.execute("CREATE TABLE side_effects (attempt TEXT NOT NULL, kind TEXT NOT NULL)")

    def end_call(fail: bool) -> None:
        with store.transaction() as tx:
            store.end_attempt(attempt_uuid, AttemptEnd("completed", grade="A"), T0 + 60)
            store.apply([Finish(lead.lead_id, "done", "completed")], T0 + 60, owner="a")
            mark = "?" if tx.backend == "sqlite" else "%s"  # the driver's own connection, as outbox.enqueue uses it
            tx.connection.execute(f"INSERT INTO side_effects (attempt, kind) VALUES ({mark}, {mark})",
                                  (attempt_uuid, "hangup_sms"))
            if fail:
                raise RuntimeError("the outbox could not write")

    with pytest.raises(RuntimeError):
        end_call(fail=True)
    assert store.attempts("c1")[0]["ended_at"] is None and store.lead(lead.lead_id).status == "in_call"
    with store.transaction() as tx:
        assert tx.rows("SELECT kind FROM side_effects") == []
    end_call(fail=False)
    assert store.attempts("c1")[0]["disposition"] == "completed" and store.lead(lead.lead_id).status == "done"
    with store.transaction() as tx:
        assert tx.rows("SELECT kind FROM side_effects") == [("hangup_sms",)]


def test_caller_id_of_the_callees_region_first_then_healthy_and_least_used(store: CampaignStore) -> None:
    store.add_caller_ids("ny", {"+12125559000": "US", "+12125559001": "US", "+442079460001": "GB"})
    assert store.pick_caller_id("ny", "GB", T0) == "+442079460001"
    picks = [store.pick_caller_id("ny", "US", T0, daily_limit=2) for _ in range(4)]
    assert picks[:2] == ["+12125559000", "+12125559001"]  # least used first
    assert sorted(map(str, picks)) == sorted(map(str, picks[:2] * 2))
    assert store.pick_caller_id("ny", "US", T0, daily_limit=2) == "+442079460001"  # US numbers used up today
    for _ in range(40):  # the GB number is almost never answered (flagged as spam): it cools down for an hour
        store.caller_id_outcome("+442079460001", answered=False, now=T0)
    assert store.pick_caller_id("ny", "GB", T0) in ("+12125559000", "+12125559001")
    assert store.pick_caller_id("ny", "GB", T0 + 3601) == "+442079460001"
    assert store.pick_caller_id("ny", "US", T0 + 86400, daily_limit=2) == "+12125559000"  # a new day: counts reset
    assert store.pick_caller_id("other", "US", T0) is None


def test_a_file_that_is_no_database_is_refused_in_plain_words(tmp_path: Path) -> None:
    bad = tmp_path / "not.db"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(CampaignStoreError, match=r"not\.db: file is not a database"):
        CampaignStore(str(bad))
    with pytest.raises(CampaignStoreError, match="unknown campaign database"):
        CampaignStore("mysql://x/y")


def test_a_dropped_postgres_connection_is_one_plain_error_then_reconnected(pg_server: PgServer) -> None:
    import psycopg

    locations = pg_location(pg_server.require())
    store = CampaignStore(next(locations))
    try:
        seeded(store, numbers=NUMBERS[:2])
        with psycopg.connect(store.db.location, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (store.db.conn.info.backend_pid,))
        with pytest.raises(CampaignStoreError, match=r"campaign database .*terminat"):
            store.counts("c1")
        assert store.counts("c1") == {"pending": 2}  # the next call reconnected
        assert len(store.claim_due("c1", "a", T0, limit=5)) == 2
    finally:
        store.close()
        locations.close()


def test_threads_share_a_store_only_under_a_lock(campaign_db: str) -> None:
    bare = CampaignStore(campaign_db)
    seeded(bare)
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with bare.transaction():
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(10)
    with pytest.raises(CampaignStoreError, match="another thread or greenlet"):  # never a share of its transaction
        bare.counts("c1")
    release.set()
    holder.join(10)
    assert bare.counts("c1") == {"pending": len(NUMBERS)}
    bare.close()

    shared = CampaignStore(campaign_db, lock=threading.RLock())
    got: list[str] = []

    def claim(owner: str) -> None:
        for _ in range(5):
            got.extend(lead.lead_id for lead in shared.claim_due("c1", owner, T0, limit=1))

    threads = [threading.Thread(target=claim, args=(f"t{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == len(NUMBERS) == len(set(got))
    shared.close()
