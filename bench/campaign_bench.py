"""Campaigns: the scheduler's cost per decision, and the store's cost per claim with many leads, SQLite and PostgreSQL.

Run: .venv/bin/python bench/campaign_bench.py [--leads N] [--claims K] [--backends sqlite,postgres] [--pg-url URL]
     [--json PATH]

- ``scheduler``: one :class:`Scheduler` takes hopper refills of 50 leads (mixed zones, half of them inside
  their calling window, some over the daily cap) with enough free bots to dial every allowed one; each lead
  gets a decision (Dial, Defer or Finish), each dial an answer and an end (Book or Finish). Figure: µs per
  decision (refill + answer + end, divided by the leads decided).
- ``store``: ``--leads`` leads (default 1,000,000) in one campaign, generated with ``executemany`` (SQLite) or
  ``COPY`` (PostgreSQL), 90 % due now, priorities 0-4. Then ``--claims`` rounds of the runner's loop:
  ``claim_due(limit=50)`` (timed alone: ``claim_ms``), the scheduler's decisions, ``apply`` (each Dial writes
  an attempt), and the call ends (``end_attempt`` + ``apply`` in one transaction: ``cycle_ms`` is the whole
  round). PostgreSQL is a throwaway server from scripts/postgres-test.sh unless ``--pg-url`` names one.

Times are wall clock on this machine; the JSON records the load average it ran under.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.campaign.model import CampaignPolicy, Pacing, RetryRule  # noqa: E402
from voicebot.campaign.scheduler import Answered, Capacity, Dial, Ended, Lead, Offered, Scheduler  # noqa: E402
from voicebot.campaign.store import AttemptEnd, Campaign, CampaignStore  # noqa: E402
from voicebot.campaign.windows import US_DEFAULT  # noqa: E402

T0 = datetime(2026, 12, 7, 15, 0, tzinfo=ZoneInfo("UTC")).timestamp()  # Monday 10:00 in New York
ZONES = ("America/New_York", "America/Los_Angeles", "Asia/Shanghai", "Europe/London")
BATCH = 50
OUTCOMES = ("completed", "busy", "no_answer", "not_interested", "machine")


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"n": len(values), "mean": statistics.fmean(values), "p50": pick(0.5), "p95": pick(0.95), "max": ordered[-1]}


def bench_scheduler(leads: int) -> dict[str, Any]:
    """µs per decision of the scheduler alone (no store)."""
    policy = CampaignPolicy("bench", US_DEFAULT, retries={"busy": RetryRule(600, 2)}, max_attempts=5, min_gap_s=300,
                            daily_cap=3, pacing=Pacing(max_cps=1e9, max_dial_level=3))
    s = Scheduler(policy)
    now, decided, dials = T0, 0, 0
    started = time.perf_counter()
    for start in range(0, leads, BATCH):
        batch = tuple(Lead(str(i), f"+1212{i:07d}", ZONES[i % 4], i % 5, attempts_today=3 if i % 17 == 0 else 0)
                      for i in range(start, min(leads, start + BATCH)))
        s.handle(Capacity(now, free_bots=BATCH), now)
        commands = s.handle(Offered(now, batch), now)
        decided += len(batch)
        for dial in (c for c in commands if isinstance(c, Dial)):
            dials += 1
            s.handle(Answered(now, dial.lead_id), now)
            s.handle(Ended(now, dial.lead_id, OUTCOMES[int(dial.lead_id) % len(OUTCOMES)]), now)
        now += 1.0
    elapsed = time.perf_counter() - started
    return {"leads": decided, "dials": dials, "us_per_decision": elapsed / decided * 1e6, "seconds": elapsed}


# ------------------------------------------------------------------ the store


def fill(store: CampaignStore, leads: int) -> float:
    """Create the campaign and ``leads`` leads; seconds taken."""
    store.create_campaign(Campaign("bench", window={"all": ["00:00-23:59:59"]}, min_gap_s=0, daily_cap=10,
                                   pacing=Pacing(max_cps=1e9), status="running"), T0)
    started = time.perf_counter()
    rows = ((f"+1212{i:07d}", "US", ZONES[i % 4], i % 5, T0 - 60 if i % 10 else T0 + 86400) for i in range(leads))
    with store.transaction() as tx:
        if tx.backend == "postgresql":
            with tx.connection.cursor() as cur, cur.copy(
                    "COPY lead (campaign_id, number, region, tz, priority, next_at) FROM STDIN") as copy:
                for number, region, tz, priority, next_at in rows:
                    copy.write_row(("bench", number, region, tz, priority, next_at))
        else:
            tx.executemany("INSERT INTO lead (campaign_id, number, region, tz, priority, next_at) "
                           "VALUES ('bench', ?, ?, ?, ?, ?)", list(rows))
    if store.backend == "postgresql":
        with store.transaction() as tx:
            tx.execute("ANALYZE lead")
    return time.perf_counter() - started


def bench_store(location: str, leads: int, claims: int) -> dict[str, Any]:
    store = CampaignStore(location)
    fill_s = fill(store, leads)
    scheduler = Scheduler(store.campaign("bench").policy())
    claim_ms: list[float] = []
    cycle_ms: list[float] = []
    now = T0
    for round_no in range(claims):
        now += 1.0
        started = time.perf_counter()
        batch = store.claim_due("bench", "bench-engine", now, limit=BATCH, lease_s=60)
        claimed = time.perf_counter()
        scheduler.handle(Capacity(now, free_bots=BATCH), now)
        commands = scheduler.handle(Offered(now, tuple(batch)), now)
        applied = store.apply(commands, now, owner="bench-engine")
        for dial in (c for c in commands if isinstance(c, Dial)):
            outcome = OUTCOMES[(int(dial.lead_id) + round_no) % len(OUTCOMES)]
            with store.transaction():
                store.end_attempt(applied.dials[dial.lead_id], AttemptEnd(outcome), now)
                store.apply(scheduler.handle(Ended(now, dial.lead_id, outcome), now), now, owner="bench-engine")
        claim_ms.append((claimed - started) * 1e3)
        cycle_ms.append((time.perf_counter() - started) * 1e3)
    counts = store.counts("bench")
    store.close()
    return {"leads": leads, "fill_s": fill_s, "claims": claims, "claim_ms": percentiles(claim_ms),
            "cycle_ms": percentiles(cycle_ms), "per_decision_ms": statistics.fmean(cycle_ms) / BATCH, "counts": counts}


@contextmanager
def postgres(url: str) -> Iterator[str]:
    """``url``, or a throwaway server from scripts/postgres-test.sh for the run."""
    if url:
        yield url
        return
    directory = tempfile.mkdtemp(prefix="voicebot-pg-bench-")
    script = str(ROOT / "scripts" / "postgres-test.sh")
    started = subprocess.run([script, "start", directory], capture_output=True, text=True, timeout=180, check=False)
    if started.returncode != 0:
        raise SystemExit(f"postgres-test.sh failed: {started.stderr.strip()}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([script, "stop", directory], capture_output=True, timeout=60, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000, help="leads in the store (default 1,000,000)")
    parser.add_argument("--claims", type=int, default=200, help="claim rounds of 50 per backend (default 200)")
    parser.add_argument("--decisions", type=int, default=200_000, help="leads the scheduler alone decides")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--pg-url", default="", help="an existing PostgreSQL (else a throwaway one is started)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    result: dict[str, Any] = {"meta": {"date": datetime.now().isoformat(timespec="seconds"), "loadavg": os.getloadavg(),
                                       "leads": args.leads, "claims": args.claims}}
    result["scheduler"] = bench_scheduler(min(args.decisions, max(args.leads, BATCH)))
    print(f"scheduler: {result['scheduler']['us_per_decision']:.1f} µs per decision "
          f"({result['scheduler']['leads']} leads, {result['scheduler']['dials']} dials)")
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                figures = bench_store(str(Path(tmp) / "bench.db"), args.leads, args.claims)
        elif backend == "postgres":
            with postgres(args.pg_url) as url:
                figures = bench_store(url, args.leads, args.claims)
        else:
            parser.error(f"unknown backend {backend!r}: use sqlite or postgres")
        result[backend] = figures
        claim, cycle = figures["claim_ms"], figures["cycle_ms"]
        print(f"{backend}: {args.leads} leads loaded in {figures['fill_s']:.1f} s; claim of {BATCH}: "
              f"p50 {claim['p50']:.2f} ms, p95 {claim['p95']:.2f} ms; whole round (claim, decide, dial, end): "
              f"p50 {cycle['p50']:.1f} ms = {figures['per_decision_ms']:.2f} ms per lead")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
