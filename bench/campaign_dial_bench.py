"""Campaigns: dials per second through the FreeSWITCH double, the whole runner path (claim, decide, originate,
the hangup back, the attempt's end written).

Run: .venv/bin/python bench/campaign_dial_bench.py [--leads N] [--max-cps CPS] [--bots B] [--db sqlite|URL]
     [--json PATH]

Each lead's number is busy (``USER_BUSY`` at once, no retry), so every dial is one ``bgapi originate`` on the
double, a CHANNEL_HANGUP and a BACKGROUND_JOB back, and one transaction that ends the attempt and finishes the
lead. No call reaches an engine (answered calls cost what the engine's calls cost: bench/capacity.py). The
runner is :class:`voicebot.esl.campaigns.CampaignService` on a stand-in for the engine (its inbound ESL
connection, ``max_calls`` = ``--bots``). Figure: attempts ended per second of wall clock, from the first claim
to the last lead finished; the JSON records the load average it ran under.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gevent  # noqa: E402

from fsdouble.double import FreeSwitchDouble  # noqa: E402
from voicebot.campaign.model import Pacing, RetryRule  # noqa: E402
from voicebot.campaign.store import Campaign, CampaignStore, NewLead  # noqa: E402
from voicebot.config import CampaignsConfig, EngineConfig  # noqa: E402
from voicebot.esl.campaigns import CampaignService, open_store  # noqa: E402
from voicebot.esl.connection import InboundConnection  # noqa: E402
from voicebot.handoff.agents import AgentPool  # noqa: E402
from voicebot.metrics import Metrics  # noqa: E402

PASSWORD = "bench"


def _stand_in(inbound: InboundConnection, bots: int) -> Any:
    """What CampaignService uses of the engine, without models or calls."""
    config = EngineConfig(max_calls=bots)
    return SimpleNamespace(inbound=inbound, config=config, metrics=Metrics(), server=SimpleNamespace(port=9),
                           store=None, notifier=None, flows={}, agents=AgentPool(config.agents, time.monotonic()))


def _heartbeats(fs: FreeSwitchDouble) -> None:
    while True:
        fs.heartbeat()
        gevent.sleep(1.0)


def bench(db: str, leads: int, max_cps: float, bots: int) -> dict[str, Any]:
    store = CampaignStore(db)
    now = time.time()
    store.create_campaign(Campaign("bench", window={"all": ["00:00-23:59"]}, retries={"busy": RetryRule(1.0, 0)},
                                   pacing=Pacing(max_cps=max_cps, max_dial_level=1.0), status="running"), now)
    store.add_leads("bench", [NewLead(f"+1646{i:07d}", "America/New_York", "US") for i in range(leads)], now)
    with FreeSwitchDouble(password=PASSWORD) as fs:
        fs.set_endpoint("sofia/gateway/trunk/*", ring_s=0.0, result="USER_BUSY")
        inbound = InboundConnection("127.0.0.1", fs.inbound_port, PASSWORD)
        inbound.start()
        assert inbound.wait_up(10), "the double's ESL"
        config = CampaignsConfig(db=db, poll_s=0.2)
        service = CampaignService(cast(Any, _stand_in(inbound, bots)), config, open_store(config))
        started = time.monotonic()
        beats = gevent.spawn(_heartbeats, fs)  # FreeSWITCH sends one every 20 s; the dialer counts free sessions by them
        service.start()
        try:
            while store.counts("bench").get("exhausted", 0) < leads:
                if time.monotonic() - started > 600:
                    raise SystemExit(f"not done after 600 s: {store.counts('bench')}")
                gevent.sleep(0.1)
            took = time.monotonic() - started
        finally:
            service.close(5.0)
            beats.kill()
            inbound.stop()
        originates = sum(1 for c in fs.commands if c.startswith("bgapi originate"))
    store.close()
    return {"leads": leads, "originates": originates, "seconds": round(took, 2),
            "dials_per_s": round(leads / took, 1), "max_cps": max_cps, "bots": bots}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2000, help="busy leads to dial (default 2000)")
    parser.add_argument("--max-cps", type=float, default=1000.0, help="the campaign's dial limit (default 1000/s)")
    parser.add_argument("--bots", type=int, default=200, help="free bots, i.e. lines at once (default 200)")
    parser.add_argument("--db", default="sqlite", help="sqlite (a temporary file) or a postgresql:// URL")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.sqlite") if args.db == "sqlite" else args.db
        result = bench(db, args.leads, args.max_cps, args.bots)
    result["meta"] = {"date": datetime.now().isoformat(timespec="seconds"), "loadavg": os.getloadavg(),
                      "db": "sqlite" if args.db == "sqlite" else "postgresql"}
    print(f"{result['leads']} dials ({result['originates']} originates) in {result['seconds']} s: "
          f"{result['dials_per_s']} dials/s (max_cps {args.max_cps:g}, {args.bots} lines; load {result['meta']['loadavg']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
