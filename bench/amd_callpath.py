"""Answering-machine detection through the real call path: accuracy per class (human, machine) and what a person waits.

Run: PYTHONPATH=$PWD .venv/bin/python bench/amd_callpath.py [--quick] [--conditions clean,snr20,snr10] [--json PATH]

The labelled set and the telephone channel are bench/amd_bench.py's (espeak-ng, Piper and pocketsphinx-testdata
voices, 8 kHz µ-law, 300-3400 Hz, clean or with noise). Each clip is one outbound call through a real
:class:`~voicebot.call.CallSession` of examples/flows/lead_screening_en.yaml (webrtc VAD, turn-taking, PocketSphinx
fed only while the caller speaks, the Piper voice) with the AMD gate's ``hang_up`` policy
(voicebot.campaign.amdgate): the detector hears what the call path gives it, not an oracle. The recogniser is the
English one, so Chinese clips are judged on timing alone (and its guesses). A call runs until the bot hangs up, or
7 s: a voicemail phrase heard after a HUMAN verdict still turns the call into a machine's (``revised``).

Per class: the outcome (human: the flow started, on a HUMAN or a NOTSURE verdict; machine: hung up as
``machine``), the verdicts, the time of the verdict after the answer, and for people, the wait from the end of
their words to the bot's first audio (app_amd's 800 ms of silence after the greeting, plus a frame or two).
Results: bench/results/amd_callpath.json (or ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import amd_bench  # noqa: E402

from voicebot.audio.frame import AudioFrame  # noqa: E402
from voicebot.campaign.amd import AmdSettings  # noqa: E402
from voicebot.campaign.amdgate import AmdCall, AmdGate, AmdPolicy  # noqa: E402
from voicebot.dialog.loader import load_flow  # noqa: E402
from voicebot.pipeline import Pipeline, PipelineConfig, load_pipeline  # noqa: E402

FLOW = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
RESULTS = ROOT / "bench" / "results" / "amd_callpath.json"
RATE, FRAME, TICK_S, MAX_S = 8000, 160, 0.02, 7.0
CONDITIONS = {"clean": None, "snr20": 20.0, "snr10": 10.0}


@dataclass
class CallOutcome:
    clip_id: str
    label: str
    lang: str
    condition: str
    verdict: str  # human, machine, notsure, or "" when the call ended first
    reason: str
    verdict_s: float | None
    revised: bool
    flow_started: bool
    hung_up_machine: bool
    bot_first_s: float | None  # the bot's first audio (s after the answer)
    speech_end_s: float  # the end of the clip's last spoken part (s after the answer)
    beep_s: float | None


def run_clip(pipeline: Pipeline, clip: amd_bench.Clip, condition: str, settings: AmdSettings) -> CallOutcome:
    """One outbound call: the clip is the callee's side from the answer on."""
    speech = amd_bench.speech_of(clip)
    pcm = amd_bench.channel(speech, clip, CONDITIONS[condition])
    session = pipeline.session(charge_compute=True)
    session.core.amd = AmdGate(AmdCall(AmdPolicy.HANG_UP, settings=settings), pipeline.flow, RATE)
    session.start(0.0, {"customer_name": "Ann"})
    bot_first = None
    for i in range(int(MAX_S / TICK_S)):
        t = round(i * TICK_S, 6)
        frame = pcm[i * FRAME:(i + 1) * FRAME]
        if session.ended:
            break
        if len(frame) < FRAME:
            frame = np.zeros(FRAME, dtype=np.int16)
        session.caller_frame(AudioFrame(frame.tobytes(), RATE, i, t))
        if session.bot_frame(t) is not None and bot_first is None:
            bot_first = t
    session.close()
    entries = session.timeline.of("amd")
    amd = entries[-1] if entries else {}
    verdict_ms = amd.get("verdict_ms")
    return CallOutcome(clip.clip_id, clip.label, clip.lang, condition, amd.get("verdict") or "", amd.get("reason") or "",
                       None if verdict_ms is None else verdict_ms / 1000, bool(amd.get("revised")), amd.get("action") == "flow",
                       session.disposition == "machine", bot_first, speech.spans[-1][1] if speech.spans else 0.0,
                       speech.beep_at)


def _pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def summarise(outcomes: Sequence[CallOutcome]) -> dict[str, Any]:
    """Per condition and class: right outcome, verdicts, verdict time, a person's wait, machines gone before the beep."""
    table: dict[str, Any] = {}
    for condition in [*CONDITIONS, "all"]:
        for label in ("human", "machine"):
            mine = [o for o in outcomes if o.label == label and condition in (o.condition, "all")]
            if not mine:
                continue
            right = [o for o in mine if (o.flow_started if label == "human" else o.hung_up_machine)]
            times = [o.verdict_s for o in mine if o.verdict_s is not None]
            entry: dict[str, Any] = {"n": len(mine), "right": len(right), "accuracy": round(len(right) / len(mine), 3),
                                     "verdicts": dict(Counter(o.verdict or "none" for o in mine)),
                                     "verdict_s_p50": _pct(times, 50), "verdict_s_p95": _pct(times, 95),
                                     "revised": sum(o.revised for o in mine)}
            if label == "human":
                waits = [o.bot_first_s - o.speech_end_s for o in mine if o.bot_first_s is not None
                         and o.bot_first_s > o.speech_end_s]
                entry.update(wait_ms_p50=_ms(_pct(waits, 50)), wait_ms_p95=_ms(_pct(waits, 95)),
                             wait_ms_max=_ms(max(waits, default=None)))
            else:
                before = [o for o in right if o.beep_s is not None and o.verdict_s is not None and o.verdict_s < o.beep_s]
                entry["hung_up_before_the_beep"] = len(before)
            table[f"{condition}/{label}"] = entry
    return table


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(1000 * seconds)


def print_table(summary: dict[str, Any]) -> None:
    print(f"{'condition/class':18} {'right':>10} {'accuracy':>9} {'verdicts':44} {'verdict p50/p95 s':>18} "
          f"{'wait p50/p95/max ms':>20}")
    for key, e in summary.items():
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(e["verdicts"].items()))
        wait = f"{e['wait_ms_p50']}/{e['wait_ms_p95']}/{e['wait_ms_max']}" if "wait_ms_p50" in e else \
            f"before beep {e['hung_up_before_the_beep']}"
        print(f"{key:18} {e['right']:>5}/{e['n']:<4} {e['accuracy']:>9.1%} {verdicts:44} "
              f"{e['verdict_s_p50']}/{e['verdict_s_p95']:>8} {wait:>20}")
    print("right: human → the flow started (HUMAN or NOTSURE), machine → hung up as machine; wait: from the end of the "
          "person's words to the bot's first audio")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="amd_bench's 8 quick clips")
    parser.add_argument("--conditions", default="clean", help="comma-separated: clean, snr20, snr10 (default clean)")
    parser.add_argument("--confirm-machine", action="store_true",
                        help="timing MACHINE verdicts wait for the recogniser's first final (AmdSettings.confirm_machine)")
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        parser.error(f"--conditions: {', '.join(unknown)}: use clean, snr20 or snr10")
    started = time.perf_counter()
    pipeline = load_pipeline(load_flow(FLOW), PipelineConfig(rate=RATE, cache_dir=ROOT / ".voicebot-cache" / "prompts"))
    clips = amd_bench.build_set(args.quick)
    settings = AmdSettings(confirm_machine=args.confirm_machine)
    outcomes = [run_clip(pipeline, clip, condition, settings) for condition in conditions for clip in clips]
    summary = summarise(outcomes)
    print(f"{len(clips)} clips ({sum(c.label == 'human' for c in clips)} human, {sum(c.label == 'machine' for c in clips)} "
          f"machine) x {len(conditions)} condition(s) through the call path, {time.perf_counter() - started:.0f} s")
    print_table(summary)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"settings": asdict(settings), "conditions": conditions, "summary": summary,
                                     "outcomes": [asdict(o) for o in outcomes]}, ensure_ascii=False, indent=1))
    print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
