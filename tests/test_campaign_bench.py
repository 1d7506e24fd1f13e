"""bench/campaign_bench.py's smoke run (a few thousand leads, both backends), so the benchmark cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.campaign_support import PgServer, pg_location, pg_server

__all__ = ["pg_server"]

ROOT = Path(__file__).resolve().parent.parent


def test_the_campaign_bench_runs_and_reports_every_figure(tmp_path: Path, pg_server: PgServer) -> None:
    out = tmp_path / "campaign.json"
    locations = pg_location(pg_server.require())
    url = next(locations)
    try:
        done = subprocess.run([sys.executable, str(ROOT / "bench" / "campaign_bench.py"), "--leads", "3000", "--claims", "8",
                               "--decisions", "2000", "--pg-url", url, "--json", str(out)],
                              cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    finally:
        locations.close()
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["scheduler"]["leads"] == 2000 and 0 < data["scheduler"]["dials"] < 2000
    assert 0 < data["scheduler"]["us_per_decision"] < 20_000
    for backend in ("sqlite", "postgres"):
        figures = data[backend]
        assert figures["leads"] == 3000 and figures["claim_ms"]["n"] == 8
        assert 0 < figures["claim_ms"]["p50"] <= figures["claim_ms"]["max"] < 5000
        assert sum(figures["counts"].values()) == 3000 and figures["counts"].get("done", 0) > 0
        assert f"{backend}: 3000 leads loaded" in done.stdout
