"""Two ``voicebot serve`` processes on one campaign in one real PostgreSQL (scripts/postgres-test.sh), dialing
through the FreeSWITCH double; one is killed (SIGKILL) mid-campaign. No lead is dialed twice, none is lost: the
dead engine's leases expire and the other engine recovers its leads."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fsdouble.double import FreeSwitchDouble, Silence
from tests.campaign_support import PgServer, pg_location, pg_server
from tests.engine_support import PASSWORD, ROOT, free_port
from voicebot.campaign.model import Pacing, RetryRule
from voicebot.campaign.store import Campaign, CampaignStore, NewLead

__all__ = ["pg_server"]

FLOW = Path(__file__).parent / "flows" / "campaign" / "campaign.yaml"
TZ = "America/New_York"
TRUNK = "sofia/gateway/trunk/"
KINDS = {"talk": ("+1212555", "answer", 0.3), "busy": ("+1646555", "USER_BUSY", 0.8),
         "invalid": ("+1646557", "UNALLOCATED_NUMBER", 0.8)}
PER_KIND = 30
LEASE_S = 6.0


@pytest.fixture
def campaign_url(pg_server: PgServer) -> Iterator[str]:
    yield from pg_location(pg_server.require())


def _config(tmp: Path, name: str, esl_port: int, db: str, ports: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(f"""
freeswitch: {{host: 127.0.0.1, port: {esl_port}, password: {PASSWORD}}}
outbound: {{port: 0}}
media: {{ports: "{ports}"}}
asr: {{backend: pocketsphinx}}  # two engines on two cores: in-process (tests/test_engine_pool.py runs the pool)
flows: {{default: "{FLOW}"}}
records: {{db: "{tmp / name}-calls.sqlite", recordings: "{tmp / name}-rec"}}
limits: {{max_calls: 8, busy_action: hangup}}
http: {{port: {free_port()}}}
cache_dir: "{ROOT / '.voicebot-cache'}"
shutdown_deadline_s: 2
campaigns: {{db: "{db}", owner: {name}, lease_s: {LEASE_S}, poll_s: 0.3}}
""", encoding="utf-8")
    return path


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-c", "import sys; from voicebot.cli import main; sys.exit(main())",
                                 "serve", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def _wait(predicate: Any, timeout: float, what: str, fs: FreeSwitchDouble, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    beat = 0.0
    while not predicate():
        if time.monotonic() > deadline:
            tails = "\n".join(p.read_text(errors="replace")[-3000:] for p in logs if p.exists())
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tails}")
        if time.monotonic() - beat > 1.0:
            fs.heartbeat()
            beat = time.monotonic()
        _press_answered(fs)
        time.sleep(0.05)


_pressed: set[str] = set()


def _press_answered(fs: FreeSwitchDouble) -> None:
    """The callees of answered calls press 1 (the link: the call completes)."""
    for ch in fs.channels():
        if ch.unicast_active and ch.uuid not in _pressed:
            _pressed.add(ch.uuid)
            fs.press(ch.uuid, "1")


def _originated(fs: FreeSwitchDouble) -> list[tuple[str, str]]:
    out = []
    for command in fs.commands:
        if command.startswith("bgapi originate") and TRUNK in command:
            uuid = command.split("origination_uuid=", 1)[1].split(",", 1)[0]
            out.append((uuid, command.split(TRUNK, 1)[1].split(" ", 1)[0]))
    return out


def test_two_engines_share_a_campaign_and_one_dies(tmp_path: Path, campaign_url: str) -> None:
    store = CampaignStore(campaign_url)
    now = time.time()
    store.create_campaign(Campaign("shared", "two engines", str(FLOW), {"all": ["00:00-23:59"]},
                                   retries={"busy": RetryRule(0.3, 1)}, max_attempts=4, min_gap_s=0.2, daily_cap=5,
                                   pacing=Pacing(max_cps=10, max_dial_level=1.0), status="running",
                                   amd_policy="off"), now)
    for _kind, (prefix, _, _) in KINDS.items():
        store.add_leads("shared", [NewLead(f"{prefix}{i:04d}", TZ, "US", 1, {"customer_name": f"C{i}"})
                                   for i in range(PER_KIND)], now)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    with FreeSwitchDouble(password=PASSWORD) as fs:
        for prefix, result, ring in KINDS.values():
            fs.set_endpoint(f"{TRUNK}{prefix}*", ring_s=ring, result=result, agent_audio=Silence())
        a = _serve(_config(tmp_path, "engine-a", fs.inbound_port, campaign_url, "43000-43099"), logs[0])
        b = _serve(_config(tmp_path, "engine-b", fs.inbound_port, campaign_url, "43100-43199"), logs[1])
        try:
            def a_mid_call() -> bool:
                mine = [x for x in store.attempts("shared") if str(x["owner"]).startswith("engine-a/")]
                return len(mine) >= 10 and any(x["ended_at"] is None for x in mine)

            _wait(a_mid_call, 240, "engine a dialing with dials in flight", fs, logs)
            a.send_signal(signal.SIGKILL)
            a.wait(10)
            killed_at = time.time()
            _wait(lambda: all(r.status != "in_call" and (r.status != "pending" or r.next_at > time.time() + 3600)
                              for r in store.leads("shared")), 240, "every lead settled", fs, logs)
        finally:
            for proc in (a, b):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in (a, b):
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        originated = _originated(fs)
    _check(store, originated, killed_at)
    store.close()


def _check(store: CampaignStore, originated: list[tuple[str, str]], killed_at: float) -> None:
    attempts = store.attempts("shared")
    owners = Counter(str(x["owner"]).split("/")[0] for x in attempts)
    assert owners["engine-a"] and owners["engine-b"], owners  # both engines dialed
    assert max(Counter(u for u, _ in originated).values()) == 1, "no attempt originated twice"
    by_lead: dict[int, list[dict[str, Any]]] = {}
    for x in sorted(attempts, key=lambda x: float(x["started_at"])):
        by_lead.setdefault(int(x["lead_id"]), []).append(x)
    for tries in by_lead.values():  # never two dials of one lead at once
        for before, after in itertools.pairwise(tries):
            assert before["ended_at"] is not None and float(after["started_at"]) >= float(before["ended_at"]), tries
    lost = [x for x in attempts if x["disposition"] == "worker_lost"]
    assert lost and all(str(x["owner"]).startswith("engine-a/") for x in lost)  # the dead engine's, recovered
    early = [(x["lead_id"], float(x["started_at"]) - killed_at, float(x["ended_at"]) - killed_at) for x in lost
             if float(x["ended_at"]) < max(killed_at, float(x["started_at"]) + LEASE_S)]
    assert not early, early  # taken back only after the kill, once the lease given at the dial ran out
    for tries in by_lead.values():  # apart from recovered dials, each lead was dialed as its outcomes say
        real = [x["disposition"] for x in tries if x["disposition"] != "worker_lost"]
        assert real in (["completed"], ["invalid_number"], ["busy", "busy"]), tries
    leads = store.leads("shared")
    assert len(by_lead) == len(leads) == 3 * PER_KIND  # none lost: every lead was dialed and finished
    assert {r.status for r in leads} <= {"done", "exhausted"}, Counter(r.status for r in leads)
