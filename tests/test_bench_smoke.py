"""The smoke versions of the end-to-end benchmarks run in CI, so they cannot rot.

``bench/latency.py --smoke`` (2 calls) and ``bench/capacity.py --smoke`` (steps
of 2 and 4 calls) run as the user runs them, in subprocesses, with the real
engine, models and the FreeSWITCH double, writing into a temporary folder;
their JSON must hold every figure with plausible values, and
``bench/report.py`` must render those very numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.data_support import needs_data

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/usr/share/pocketsphinx/test/data")
pytestmark = needs_data(DATA.is_dir(), "pocketsphinx-testdata", "the human caller clip")

LATENCY_FIGURES = ("response_ear_ms", "response_engine_ms", "barge_in_ear_ms", "barge_in_engine_ms", "asr_final_ms",
                   "tts_first_dynamic_ms", "tts_first_cached_ms")


def run_bench(script: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout, check=False)
    assert out.returncode == 0, f"{script} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("bench")
    latency = run_bench("latency.py", "--smoke", "--json", str(folder / "latency.json"), "--png", str(folder / "latency.png"))
    capacity = run_bench("capacity.py", "--smoke", "--json", str(folder / "capacity.json"))
    yield {"folder": folder, "latency_out": latency.stdout, "capacity_out": capacity.stdout,
           "latency": json.loads((folder / "latency.json").read_text()),
           "capacity": json.loads((folder / "capacity.json").read_text())}


def test_latency_smoke_has_every_figure_with_plausible_values(results: dict[str, Any]) -> None:
    data = results["latency"]
    assert data["meta"]["calls"] == 2 and data["meta"]["calls_ok"] == 2
    assert all(not call["errors"] for call in data["calls"])
    figures = data["figures"]
    for name in LATENCY_FIGURES:
        assert figures[name]["n"] >= 2, name
        assert figures[name]["p50"] <= figures[name]["p95"] <= figures[name]["p99"] <= figures[name]["max"], name
    said = [len(call["lines"]) for call in data["calls"]]  # 3 lines, or 4 when the bot confirmed the barge-in
    assert all(n in (3, 4) for n in said) and figures["response_ear_ms"]["n"] == sum(said)  # each line answered
    assert 50 <= figures["response_ear_ms"]["p50"] <= 3000
    assert 50 <= figures["response_engine_ms"]["p50"] <= 3000
    assert 0 <= figures["barge_in_ear_ms"]["p95"] <= 1500 and 0 <= figures["barge_in_engine_ms"]["p95"] <= 1500
    assert figures["asr_final_ms"]["p50"] >= 100  # at least part of the end-of-turn silence is waited for
    assert figures["handoff_ms"]["n"] == 2 and figures["handoff_ms"]["max"] < 100, "talk-mode handoffs, one per call"
    human = [line for call in data["calls"] for line in call["lines"] if line["source"].startswith("human:")]
    assert len(human) == 2 and all(line["response_ms"] is not None for line in human)
    png = (results["folder"] / "latency.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "response_ear_ms" in results["latency_out"] and "p95" in results["latency_out"]


def test_capacity_smoke_ramps_and_measures_every_step(results: dict[str, Any]) -> None:
    data = results["capacity"]
    steps = data["steps"]
    assert [s["calls"] for s in steps] == [2, 4]
    for step in steps:
        assert step["failed_calls"] == 0 and step["engine_errors"] == 0, step
        assert step["turns"] >= step["calls"]  # every caller spoke and was answered at least once
        assert 50 <= step["response_ear_ms"]["p50"] <= 3000 and 50 <= step["response_engine_ms"]["p50"] <= 3000
        assert step["gaps_ms"]["packets"] >= step["calls"] * 200  # ~50 bot frames a second reached each caller
        assert step["send_lateness_ms"]["n"] >= step["gaps_ms"]["packets"] * 0.9
        assert 0 < step["cpu_engine_cores"] <= (data["meta"]["machine"]["cpus"] or 1) + 0.5
        assert step["cpu_double_cores"] > 0 and step["rss_peak_mb"] >= step["rss_before_mb"] > 50
        assert step["cpu_by_thread_s"]["main (gevent hub)"] > 0
    assert data["result"]["max_sustained_calls"] in (0, 2, 4)
    top = steps[-1]["profile"]["top"]
    assert top and sum(row["self"] for row in top) <= steps[-1]["profile"]["busy_samples"]
    assert "largest sustained step" in results["capacity_out"]


def test_report_renders_the_numbers_the_benchmarks_wrote(results: dict[str, Any], tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- results:begin -->\nold\n<!-- results:end -->\ntail\n")
    run_bench("report.py", "--write", "--results", str(results["folder"]), "--readme", str(readme), timeout=60)
    text = readme.read_text()
    assert "old" not in text and text.endswith("<!-- results:end -->\ntail\n")
    ear = results["latency"]["figures"]["response_ear_ms"]
    assert f"| response_ear_ms | {ear['n']} | {ear['p50']:g} | {ear['p95']:g} |" in text
    assert f"**{results['capacity']['result']['max_sustained_calls']} concurrent calls**" in text
    assert results["latency"]["meta"]["machine"]["commit"] in text


def test_soak_smoke_reports_rss_before_during_and_after(tmp_path: Path) -> None:
    """``bench/soak.py --smoke``: one round of 2 calls; RSS when loaded, at its peak, when the calls ended, later."""
    out = run_bench("soak.py", "--smoke", "--json", str(tmp_path / "soak.json"))
    rows = {row["at"]: row for row in json.loads((tmp_path / "soak.json").read_text())["rows"]}
    assert list(rows) == ["loaded", "round 1: before", "round 1: peak", "round 1: calls ended", "round 1: +2 s"], rows
    assert all(100 < row["rss_mb"] < 4000 for row in rows.values()), rows
    assert rows["round 1: peak"]["rss_mb"] >= rows["round 1: before"]["rss_mb"]
    assert rows["round 1: calls ended"]["records"] == 2 and rows["round 1: calls ended"]["errors"] == 0
    assert "records saved: 2 of 2 calls" in out.stdout
