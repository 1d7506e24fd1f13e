"""The handoff benchmark's smoke run: it must keep running, and its figures must stay in the captured range."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_handoff_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "handoff.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "handoff_bench.py"), "--smoke", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    talk, bridge, no_agent = results["talk"], results["bridge"], results["no_agent"]
    assert talk["decision_to_agent_ms"]["n"] == 2 and bridge["decision_to_agent_ms"]["n"] == 2
    assert talk["decision_to_agent_ms"]["max"] < 80, "talk mode: DTMF event 20 ms, then the next frame"
    assert talk["gap_ms"]["max"] <= 20, "talk mode: no gap over one frame"
    assert 60 < bridge["decision_to_agent_ms"]["p50"] < 200, "the double reproduces the captured ~89 ms"
    assert bridge["gap_ms"]["p50"] >= 20, "a bridge leaves dead air (captured 40-80 ms)"
    assert no_agent["ring_ms"]["p50"] >= 450, "the ring time is part of the no-agent case"
    assert "talk       decision_to_agent_ms" in done.stdout
    # the switch's delays are the double's configured timings, and the output says so
    configured = results["double_timings_ms"]
    assert {"bridge_s", "bridge_audio_s", "dtmf_s"} <= configured.keys()
    assert all("configured" in t["source"] and "fsdouble/config.py" in t["source"] for t in configured.values())
    assert "configured in the test double (fsdouble/config.py Timing), not measured" in done.stdout
