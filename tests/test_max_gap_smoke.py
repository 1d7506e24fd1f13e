"""bench/max_gap.py's core, small: 3 talking calls through the FreeSWITCH double while the records database is
locked for 1 s and 2 other calls hang up (their records must wait for the lock).

The engine, its models, the double and the UDP media are real, run as the user runs the bench (a subprocess).
The gap bound is generous (the test machine is shared: a busy moment can delay a packet by tens of ms), but far
under the 1 s the hub would stop for if a record's save ran on it: every call's audio would stop with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.data_support import needs_data

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/usr/share/pocketsphinx/test/data")
pytestmark = needs_data(DATA.is_dir(), "pocketsphinx-testdata", "the human caller clip")
GENEROUS_MS = 400.0  # a hub blocked by the 1 s lock leaves gaps of ~1000 ms


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out_json = tmp_path_factory.mktemp("max_gap") / "max_gap.json"
    args = ["--calls", "3", "--disturbances", "db_stall", "--stagger-s", "1", "--settle-s", "2", "--spacing-s", "3",
            "--tail-s", "2", "--json", str(out_json)]
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "max_gap.py"), *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=180, check=False)
    assert out.returncode == 0, f"max_gap.py failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert "largest gap in any call's bot audio" in out.stdout
    data: dict[str, Any] = json.loads(out_json.read_text())["result"]
    return data


def test_the_stall_really_held_the_records_back(result: dict[str, Any]) -> None:
    stall = result["disturbances"]["db_stall"]
    assert stall["lock_held_s"] >= 0.95
    assert stall["records_saved_s_after_lock"] >= 0.95  # the hung-up calls' records waited for the lock


def test_every_call_reports_its_gaps_and_its_packets_match_its_slots(result: dict[str, Any]) -> None:
    assert len(result["calls"]) == 5  # 3 talking calls and the 2 that hung up during the stall
    for call in result["calls"]:
        assert call["gaps"] > 20 and call["max_ms"] is not None and call["max_ms"] >= 15
        assert call["misaligned"] == 0 and call["packets"] > 0
    assert result["disturbances"]["db_stall"]["n"] > 20  # gaps measured while the lock was held


def test_a_database_stall_leaves_no_hole_in_any_calls_audio(result: dict[str, Any]) -> None:
    stall = result["disturbances"]["db_stall"]
    assert stall["max"] < GENEROUS_MS, f"a {stall['max']} ms hole in the bot's audio while the database was locked"
    assert result["engine_errors"] == 0


def test_a_gap_is_counted_inside_a_prompt_only_and_a_lost_packet_lengthens_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import max_gap

    idle, audio, underrun = max_gap.IDLE, max_gap.AUDIO, max_gap.UNDERRUN
    kinds = [idle, audio, audio, underrun, audio, audio, audio, idle, idle, audio, audio]
    slots = [(0.02 * k, kind) for k, kind in enumerate(kinds)]
    lost = {5, 7}  # an audio packet and an idle one never arrive
    arrived = [t + 0.0003 for k, (t, _) in enumerate(slots) if k not in lost]
    silent = [kind != audio for k, (_, kind) in enumerate(slots) if k not in lost]
    call = max_gap.call_gaps("c", slots, arrived, silent, t0=0.0)
    assert [(g.ms, g.underruns) for g in call.gaps] == [(20.0, 0), (40.0, 1), (40.0, 0), (20.0, 0)]
    assert call.misaligned == 0 and call.underruns == 1 and call.max_ms == 40.0
    loud = [True] * len(arrived)  # sound in every packet: those of the silent slots that arrived (2 idle, 1 underrun)
    bunched = max_gap.call_gaps("c", slots, [0.0] * len(arrived), silent, t0=0.0)  # all on the first slot
    assert bunched.misaligned == len(arrived) - 1 and bunched.gaps == []
    assert max_gap.call_gaps("c", slots, arrived, [not x for x in loud], t0=0.0).misaligned == 3
