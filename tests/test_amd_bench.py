"""bench/amd_bench.py --quick runs as the user runs it (a subprocess), and its set and channel hold what they say."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import amd_bench  # noqa: E402

needs_tools = pytest.mark.skipif(shutil.which("espeak-ng") is None or not amd_bench.DATA.is_dir(),
                                 reason="espeak-ng and pocketsphinx-testdata are installed by scripts/setup.sh")


def test_the_held_out_part_is_stable_and_about_a_fifth() -> None:
    clips = amd_bench.build_set(quick=False)
    held = [c.clip_id for c in clips if c.held_out]
    assert held == [c.clip_id for c in amd_bench.build_set(quick=False) if c.held_out]
    assert 0.1 < len(held) / len(clips) < 0.3
    assert {c.label for c in clips} == {"human", "machine"} and len({c.clip_id for c in clips}) == len(clips)


def test_the_channel_is_band_limited_mu_law() -> None:
    t = np.arange(amd_bench.RATE) / amd_bench.RATE
    low_and_high = 8000 * (np.sin(2 * np.pi * 100 * t) + np.sin(2 * np.pi * 1000 * t))
    clip = amd_bench.Clip("probe", "human", "en", "en-us")
    out = amd_bench.channel(amd_bench.Speech(low_and_high), clip, None).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(out))
    freqs = np.fft.rfftfreq(len(out), 1 / amd_bench.RATE)
    assert spectrum[np.argmin(np.abs(freqs - 100))] < 0.01 * spectrum[np.argmin(np.abs(freqs - 1000))]
    assert len(np.unique(out)) <= 256  # every sample is one of G.711's 256 levels


def test_oracle_transcripts_grow_word_by_word_and_end_final() -> None:
    speech = amd_bench.Speech(np.zeros(8000), [(0.5, 1.5, "leave a message")])
    words = amd_bench.oracle_transcripts(speech)
    assert [w[1] for w in words] == ["leave", "leave a", "leave a message", "leave a message"]
    assert [w[2] for w in words] == [False, False, False, True]
    assert words[0][0] == pytest.approx(0.5 + 1 / 3 + amd_bench.ASR_LATENCY_S)


@needs_tools
def test_quick_bench_runs_and_reports_both_classes(tmp_path: Path) -> None:
    out = tmp_path / "amd.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "amd_bench.py"), "--quick", "--no-asr", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["clips"] == 8
    timing = result["summary"]["timing/all"]
    assert timing["human"]["n"] == 12 and timing["machine"]["n"] == 12  # 4 clips x 3 channel conditions each
    assert timing["machine"]["accuracy"] >= 0.75  # long voicemail greetings are what app_amd catches
    statuses = {o["status"] for o in result["outcomes"]}
    assert statuses <= {"HUMAN", "MACHINE", "NOTSURE"} and "HUMAN" in statuses
    assert all(0.0 < o["at_s"] <= 5.0 + 1e-9 for o in result["outcomes"])
    assert "timing/all" in done.stdout and "machine→MACHINE" in done.stdout
