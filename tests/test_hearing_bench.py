"""Smoke test: bench/hearing_bench.py --quick runs end to end and prints its figures.

It checks that the bench runs and reports, not the figures themselves (those
are what the bench is for; see bench/hearing_bench.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data_support import needs_data

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "hearing_bench.py"
DATA = Path("/usr/share/pocketsphinx/test/data")

pytestmark = needs_data(DATA.is_dir(), "pocketsphinx-testdata")


def test_quick_run_prints_every_section(tmp_path: Path) -> None:
    out = tmp_path / "hearing.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    for line in ("intent accuracy: ", "misses", "barge-in latency (true speech onset", "false barge-ins (confirmed stops): ",
                 "hesitations (paused then resumed", "end of turn: all p50 ", "early end-of-turn fired",
                 "asr finish compute: p50 "):
        assert line in text, f"{line!r} missing from:\n{text}"
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["quick"] is True
    assert set(results["summary"]) == {"intent", "barge_in", "end_of_turn", "asr_finish_compute_ms"}
    assert results["intent_turns"] and results["barge_ins"] and results["false_barge_ins"]
    assert {r["source"] for r in results["intent_turns"]} == {"synth", "human"}
    assert all(r["expect"] == "none" for r in results["intent_turns"] if r["source"] == "human")


def test_turn_settings_what_ifs_are_typed_and_checked() -> None:
    sys.path.insert(0, str(BENCH.parent))
    import hearing_bench

    from voicebot.asr.turns import TurnSettings

    turn = hearing_bench.turn_with(TurnSettings(), ["hold_extra_ms=200", "early_end_score=0.75"])
    assert turn.hold_extra_ms == 200 and turn.early_end_score == 0.75 and isinstance(turn.hold_extra_ms, int)
    with pytest.raises(SystemExit, match="no field 'nonsense'"):
        hearing_bench.turn_with(TurnSettings(), ["nonsense=1"])
