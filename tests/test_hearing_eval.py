"""bench/hearing_eval.py --quick runs as the user runs it (a subprocess, real models, real espeak-ng voices), so the
evaluation cannot rot: its JSON holds WER, speed, intent accuracy and false intents with plausible values."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/usr/share/pocketsphinx/test/data")
pytestmark = pytest.mark.skipif(not DATA.is_dir() or shutil.which("espeak-ng") is None,
                                reason="needs pocketsphinx-testdata and espeak-ng (scripts/setup.sh installs both)")


def test_quick_evaluation(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "hearing_eval.py"), "--quick", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    human = result["wer"]["human"]["clean-pcmu"]
    assert human["whisper-tiny.en"]["all"]["n"] == 2 and human["pocketsphinx"]["all"]["n"] == 2
    assert human["whisper-tiny.en"]["all"]["wer"] <= 0.3  # "go forward ten meters", "ten of clubs"
    assert set(result["speed"]) == {"pocketsphinx", "whisper-tiny.en"}
    for speed in result["speed"].values():
        assert 0 < speed["cpu_p50_s"] <= speed["cpu_p95_s"] and speed["wall_p50_s"] > 0 and speed["cpu_rtf"] > 0
    accuracy = result["intent_accuracy"]
    assert accuracy["all|reference text|(matcher ceiling)"] == {"accuracy": 1.0, "n": 3}
    assert accuracy["espeak|clean-pcmu|whisper-tiny.en"]["n"] == 3
    assert {k: v["n"] for k, v in result["false_intents"].items()} == {"clean-pcmu|pocketsphinx": 24,
                                                                         "clean-pcmu|whisper-tiny.en": 24}
    heard = {c["id"]: c for c in result["run"]["clips_heard"]}
    assert heard["goforward"]["held_out"] is True and heard["001"]["held_out"] is True
    assert heard["goforward"]["heard"]["clean-pcmu"]["whisper-tiny.en"][0] == "go forward ten meters"
    assert heard["goforward"]["snr"]["clean-pcmu"] >= 20  # promptguard's estimate: a clean recording is not noisy
    assert "| human | clean-pcmu | whisper-tiny.en |" in run.stdout
