"""The report's, status's and export's queries on SQLite and a real PostgreSQL, against hand-counted seeds
(tests/campaign_seed.py), and the engines' runtime snapshots."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import campaign_seed as seeds
from tests.campaign_support import PgServer, campaign_db, open_db, pg_server
from voicebot.campaign.schema import MIGRATIONS
from voicebot.campaign.stats import Fact, stages, tally
from voicebot.campaign.store import Campaign, CampaignStore

__all__ = ["PgServer", "campaign_db", "pg_server"]  # fixtures used by name


@pytest.fixture
def store(campaign_db: str) -> Iterator[CampaignStore]:
    opened: list[CampaignStore] = []
    s = open_db(campaign_db, opened)
    s.create_campaign(Campaign("c1", name="Spring", status="running", amd_policy="leave_message",
                               amd_message="Please call back.", settings={"time_zone": {"region": "US", "column": "tz"}}),
                      seeds.T0)
    seeds.seed(s, "c1")
    yield s
    for each in opened:
        each.close()


def test_the_report_figures_match_the_hand_counts(store: CampaignStore) -> None:
    total, days = tally(store.report_facts("c1"))
    assert dict(total.funnel) == seeds.FUNNEL_ALL
    assert dict(total.dispositions) == seeds.DISPOSITIONS
    assert dict(total.grades) == seeds.GRADES and dict(total.tags) == seeds.TAGS
    assert {h: (total.dialed_by_hour[h], total.connected_by_hour[h]) for h in total.dialed_by_hour} == seeds.BY_HOUR
    assert {day: f.funnel["dialed"] for day, f in days.items()} == seeds.DAYS
    assert dict(days["2026-12-08"].funnel) == seeds.FUNNEL_DAY2


def test_a_day_is_each_leads_local_date(store: CampaignStore) -> None:
    """Shanghai's dial at 16:00 UTC on 12-07 is on 12-08 there; New York's at 15:00 UTC is on 12-07."""
    day2 = store.report_facts("c1", "2026-12-08")
    assert sorted(f.tz for f in day2) == sorted([seeds.SH, seeds.NY, seeds.NY])
    total, days = tally(day2)
    assert dict(total.funnel) == seeds.FUNNEL_DAY2 and list(days) == ["2026-12-08"]
    assert len(store.report_facts("c1", "2026-12-07")) == 7 and store.report_facts("c1", "2026-12-09") == []


def test_progress_counts_leads_in_flight_and_the_recent_rate(store: CampaignStore) -> None:
    progress = store.progress("c1", seeds.NOW)
    assert dict(progress.leads) == {"done": 8, "in_call": 1, "pending": 1}
    assert (progress.in_flight, progress.ended, progress.answered) == (1, 9, 7)
    assert (progress.recent_dials, progress.recent_ended, progress.recent_answered) == (1, 0, 0)
    assert progress.eta_s() == pytest.approx(600.0)  # one pending lead at one dial per 600 s


def test_export_rows_carry_each_leads_last_attempt(store: CampaignStore) -> None:
    rows = {r["number"]: r for r in store.export_rows("c1")}
    first = rows["+12125550101"]
    assert (first["attempts"], first["last_disposition"], first["last_grade"], first["last_tags"]) == \
        (2, "completed", "A", ["interested", "vip"])
    assert first["last_attempt_at"] == pytest.approx(seeds.T0 + 86400) and first["variables"] == {"name": "Lead 0"}
    never = rows["+12125550107"]
    assert (never["attempts"], never["last_disposition"], never["last_tags"], never["status"]) == (0, None, [], "pending")
    assert len(rows) == len(seeds.LEADS)


def test_runtime_snapshots_one_row_per_engine_and_stale_ones_hidden(store: CampaignStore) -> None:
    store.put_runtime("c1", "engine-a", {"dial_budget": 3, "answer_rate": 0.4}, seeds.NOW - 40)
    store.put_runtime("c1", "engine-a", {"dial_budget": 5, "answer_rate": 0.5, "free_bots": 2}, seeds.NOW - 5)
    store.put_runtime("c1", "engine-b", {"dial_budget": 1}, seeds.NOW - 45)  # stopped reporting
    store.put_runtime("c2", "engine-a", {"dial_budget": 9}, seeds.NOW)  # another campaign
    rows = store.runtime("c1", seeds.NOW)
    assert rows == [{"owner": "engine-a", "updated_at": pytest.approx(seeds.NOW - 5),
                     "snapshot": {"dial_budget": 5, "answer_rate": 0.5, "free_bots": 2}}]
    assert [r["owner"] for r in store.runtime("c1", seeds.NOW, max_age_s=60)] == ["engine-a", "engine-b"]


def test_the_definitions_extra_fields_round_trip(store: CampaignStore) -> None:
    campaign = store.campaign("c1")
    assert (campaign.amd_policy, campaign.amd_message) == ("leave_message", "Please call back.")
    assert campaign.settings == {"time_zone": {"region": "US", "column": "tz"}}
    assert store.db.schema_version() == len(MIGRATIONS)


def test_stages_follow_the_funnel_rules() -> None:
    def fact(answered: bool, disposition: str, grade: str = "", handoff: str = "") -> Fact:
        return Fact(seeds.T0, seeds.NY, answered, disposition, grade, (), handoff)

    assert stages(fact(False, "busy")) == ["dialed"]
    assert stages(fact(True, "machine")) == ["dialed", "connected"]
    assert stages(fact(True, "")) == ["dialed", "connected"]  # answered, still in the call
    assert stages(fact(True, "completed", "C")) == ["dialed", "connected", "human"]
    assert stages(fact(True, "completed", "B")) == ["dialed", "connected", "human", "intent"]
    assert stages(fact(True, "transferred", "", "caller_gone"))[-1] == "passed_to_agent"
    assert stages(fact(True, "transferred", "", "connected"))[-1] == "agent_answered"


def test_a_v1_database_migrates_to_v2_keeping_its_campaigns(campaign_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database an older engine wrote (schema v1) gains v2's columns and table; its campaigns read as before."""
    with monkeypatch.context() as patch:
        patch.setattr("voicebot.campaign.db.MIGRATIONS", MIGRATIONS[:1])
        old = CampaignStore(campaign_db)
        with old.transaction() as tx:
            tx.execute("INSERT INTO campaign (id, window_spec, max_attempts, min_gap_s, daily_cap, created_at) "
                       "VALUES ('old', ?, 5, 600, 3, 0)", ('{"weekly": {"all": ["08:00-21:00"]}, "holidays": []}',))
        assert old.db.schema_version() == 1
        old.close()
    with CampaignStore(campaign_db) as store:
        campaign = store.campaign("old")
        assert (campaign.amd_policy, campaign.amd_message, dict(campaign.settings)) == ("hangup", "", {})
        store.put_runtime("old", "e", {"ringing": 1}, 10.0)
        assert store.runtime("old", 10.0)[0]["snapshot"] == {"ringing": 1} and store.db.schema_version() == 2
