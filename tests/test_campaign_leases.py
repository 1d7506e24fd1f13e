"""Several engines on one campaign (PostgreSQL; SQLite too for the first test): real processes, each with its own
connection, the real scheduler.

Each worker runs the runner's loop (claim, scheduler, apply, end the call as
``completed``) on the wall clock and logs every claim it got to its own file
(lead, claimed at, lease until). Two workers at once never hold the same lead;
a worker killed with SIGKILL while it holds leases (some leads only claimed,
some in a call) has them taken back by the other only after they expired; in
the end every lead is done, and the only lead dialed twice is one the dead
worker had in a call (its attempt closed as ``worker_lost``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.campaign_support import PgServer, pg_location, pg_server
from voicebot.campaign.claims import LOST
from voicebot.campaign.model import Pacing
from voicebot.campaign.scheduler import Capacity, Dial, Ended, Offered, Scheduler
from voicebot.campaign.store import AttemptEnd, Campaign, CampaignStore, NewLead

__all__ = ["pg_server"]

CAMPAIGN = "multi"
LEADS = 240
FORK = multiprocessing.get_context("fork")  # each child opens its own connection after the fork


def seed(url: str) -> None:
    store = CampaignStore(url)
    now = time.time() - 1
    store.create_campaign(Campaign(CAMPAIGN, window={"all": ["00:00-23:59:59"]}, min_gap_s=0, daily_cap=100,
                                   pacing=Pacing(max_cps=10_000, max_dial_level=1), status="running"), now)
    store.add_leads(CAMPAIGN, [NewLead(f"+1212555{i:04d}", "UTC") for i in range(LEADS)], now)
    store.close()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    gen = pg_location(pg_server.require())
    url = next(gen)
    seed(url)
    yield url
    gen.close()


@pytest.fixture(params=["postgres", "sqlite"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path, pg_server: PgServer) -> Iterator[str]:
    """The PostgreSQL of the issue, and an SQLite file shared by the processes (claims serialized by BEGIN IMMEDIATE)."""
    if request.param == "sqlite":
        url = str(tmp_path / "shared.db")
        seed(url)
        yield url
        return
    gen = pg_location(pg_server.require())
    url = next(gen)
    seed(url)
    yield url
    gen.close()


def run_worker(url: str, owner: str, log_path: str, lease_s: float, deadline: float, start: Any = None) -> None:
    """The runner's loop until the campaign has nothing left to dial (or ``deadline``); ``start``: a barrier to
    begin together with the other workers. Each round pauses 10 ms (the calls' time), so the work overlaps."""
    store = CampaignStore(url)
    scheduler = Scheduler(store.campaign(CAMPAIGN).policy())
    if start is not None:
        start.wait(60)
    with open(log_path, "a", buffering=1) as log:
        while time.time() < deadline:
            now = time.time()
            store.renew(owner, now, lease_s)
            leads = store.claim_due(CAMPAIGN, owner, now, limit=7, lease_s=lease_s)
            for lead in leads:
                log.write(json.dumps([lead.lead_id, now, now + lease_s]) + "\n")
            scheduler.handle(Capacity(now, free_bots=20), now)
            commands = scheduler.handle(Offered(now, tuple(leads)), now)
            applied = store.apply(commands, now, owner=owner, lease_s=lease_s)
            for dial in (c for c in commands if isinstance(c, Dial)):
                end = time.time()
                with store.transaction():
                    if dial.lead_id in applied.dials:
                        store.end_attempt(applied.dials[dial.lead_id], AttemptEnd("completed"), end)
                    outcome = "completed" if dial.lead_id in applied.dials else "network_error"
                    store.apply(scheduler.handle(Ended(end, dial.lead_id, outcome), end), end, owner=owner)
            time.sleep(0.01)
            if not leads and not scheduler.hopper:
                counts = store.counts(CAMPAIGN)
                if not counts.get("pending") and not counts.get("in_call"):
                    break
                time.sleep(0.05)
    store.close()


def run_victim(url: str, owner: str, log_path: str, lease_s: float, ready: Any) -> None:
    """Claim ten leads, dial five of them, say so, then hang (until SIGKILL)."""
    store = CampaignStore(url)
    now = time.time()
    leads = store.claim_due(CAMPAIGN, owner, now, limit=10, lease_s=lease_s)
    with open(log_path, "a", buffering=1) as log:
        for lead in leads:
            log.write(json.dumps([lead.lead_id, now, now + lease_s]) + "\n")
    store.apply([Dial(lead.lead_id, lead.number, 1) for lead in leads[:5]], now, owner=owner, lease_s=lease_s)
    ready.set()
    time.sleep(600)


def claims_of(path: Path) -> list[tuple[str, float, float]]:
    return [(str(a), float(b), float(c)) for a, b, c in map(json.loads, path.read_text().splitlines())]


def final_state(url: str) -> tuple[dict[str, int], dict[str, list[dict[str, Any]]]]:
    store = CampaignStore(url)
    counts = store.counts(CAMPAIGN)
    per_lead: dict[str, list[dict[str, Any]]] = {}
    for attempt in store.attempts(CAMPAIGN):
        per_lead.setdefault(str(attempt["lead_id"]), []).append(attempt)
    store.close()
    return counts, per_lead


def test_two_engines_claiming_at_once_never_share_a_lead(any_url: str, tmp_path: Path) -> None:
    pg_url = any_url
    deadline = time.time() + 120
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    start = FORK.Barrier(2)
    workers = [FORK.Process(target=run_worker, args=(pg_url, name, str(log), 30.0, deadline, start))
               for name, log in zip(("a", "b"), logs, strict=True)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=150)
        assert w.exitcode == 0
    a, b = ({lead for lead, _, _ in claims_of(log)} for log in logs)
    assert a and b, "both engines got work"
    assert a.isdisjoint(b)
    assert sum(len(claims_of(log)) for log in logs) == LEADS  # each lead claimed once: no lease lost, none retaken
    counts, per_lead = final_state(pg_url)
    assert counts == {"done": LEADS}
    assert len(per_lead) == LEADS and all(len(v) == 1 and v[0]["disposition"] == "completed" for v in per_lead.values())


def test_a_killed_engines_leases_are_recovered_after_expiry(pg_url: str, tmp_path: Path) -> None:
    victim_log, survivor_log = tmp_path / "victim.log", tmp_path / "survivor.log"
    ready = FORK.Event()
    victim = FORK.Process(target=run_victim, args=(pg_url, "victim", str(victim_log), 3.0, ready))
    victim.start()
    assert ready.wait(60)
    survivor = FORK.Process(target=run_worker, args=(pg_url, "survivor", str(survivor_log), 30.0, time.time() + 120))
    survivor.start()
    time.sleep(0.3)  # the survivor is claiming (it takes every other lead meanwhile)
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(timeout=30)
    assert victim.exitcode == -signal.SIGKILL
    survivor.join(timeout=150)
    assert survivor.exitcode == 0

    held = {lead: until for lead, _, until in claims_of(victim_log)}
    assert len(held) == 10
    taken = {lead: at for lead, at, _ in claims_of(survivor_log)}
    assert set(held) <= set(taken), "every lead the dead engine held was recovered"
    assert all(taken[lead] >= held[lead] for lead in held), "none was taken while the dead engine's lease lived"
    assert len(claims_of(survivor_log)) == len(taken), "the survivor claimed no lead twice"

    counts, per_lead = final_state(pg_url)
    assert counts == {"done": LEADS}, "no lead lost"
    twice = {lead for lead, attempts in per_lead.items() if len(attempts) > 1}
    in_call = {lead for lead, attempts in per_lead.items() if attempts[0]["owner"] == "victim"}
    assert len(in_call) == 5 and twice == in_call  # only the calls the dead engine had in progress were redialed
    for lead in in_call:
        first, second = per_lead[lead]
        assert first["disposition"] == LOST and second["disposition"] == "completed" and second["owner"] == "survivor"
        assert second["started_at"] >= held[lead]
    assert all(len(v) == 1 and v[0]["disposition"] == "completed" for k, v in per_lead.items() if k not in in_call)
