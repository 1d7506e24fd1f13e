"""Whole simulated calls through the real pipeline (VAD, pocketsphinx, dialog, Piper) at 8 and 16 kHz."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine_support import steady_speech
from voicebot.dialog.loader import load_flow
from voicebot.pipeline import PipelineConfig, load_pipeline
from voicebot.sim.agents import SimAgents
from voicebot.sim.audio import run_call
from voicebot.sim.caller import CallerScript, CallerTurn, SimCaller, raw_or_wav
from voicebot.sim.report import write_outputs

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
CACHE = ROOT / ".voicebot-cache" / "prompts"


@pytest.mark.parametrize("rate", [8000, 16000])
def test_a_call_renders_no_static_prompt_and_barge_in_stops_the_bot(rate: int, tmp_path: Path) -> None:
    pipeline = load_pipeline(load_flow(FLOW), PipelineConfig(rate=rate, cache_dir=CACHE))
    synth_before = pipeline.cache.synth_count
    # "stop calling me" ends the call, so an unsure hearing of it is confirmed first ("Just to be sure: you'd like us
    # to stop calling you?"): the caller's "yes" answers that question; on a sure hearing the call ends before it is said
    script = CallerScript((CallerTurn("say", "yes speaking"), CallerTurn("barge", "stop calling me", at_ms=5000),
                           CallerTurn("say", "yes")))
    # the same caller take every run: Piper samples a new take each time, and about one in three 8 kHz takes of
    # "stop calling me" was not heard as a request before the prompt ended (a flaky test, not a flaky engine)
    caller = SimCaller(script, rate, synth=lambda text, r: steady_speech(pipeline.cache, text, r), read_audio=raw_or_wav)
    result = run_call(pipeline.session(charge_compute=True, handoff=SimAgents()), caller, variables={"customer_name": "Ann"})

    assert pipeline.cache.synth_count == synth_before, "a call must never wait for synthesis of static text"
    outcome = result.session.machine.outcome
    assert outcome.path == ["greet", "disclosure", "goodbye_blocklist"] and outcome.disposition == "blocklist"
    barge = result.ear_latencies()["barge_in"]
    assert barge and barge[0]["interrupted"] and barge[0]["ms"] < 400
    paths = write_outputs(result, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)
    timeline = json.loads((tmp_path / "timeline.json").read_text())
    assert [t["text"] for t in timeline["turns"]][-1] != ""


def test_a_plain_recording_as_the_caller(tmp_path: Path) -> None:
    """`--caller FILE.wav`: a real human recording plays from the start; off-script speech is not matched."""
    pipeline = load_pipeline(load_flow(FLOW), PipelineConfig(rate=8000, cache_dir=CACHE))
    wav = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"
    script = CallerScript((CallerTurn("wav", path=wav),), gap_ms=0, free_running=True)
    caller = SimCaller(script, 8000, synth=pipeline.cache.synthesize, read_audio=raw_or_wav)
    result = run_call(pipeline.session(charge_compute=True), caller, linger_s=3.0)
    turns = [t for t in result.session.machine.outcome.turns if not t.ignored]
    assert turns == [] or all(t.intent == "" for t in turns)


def test_ignored_and_declined_speech_is_marked_like_the_dialog_machine_saw_it(tmp_path: Path) -> None:
    """A real call: talk over the protected disclosure (ignored), say "mm-hmm" over the pitch later (declined or
    ignored), then answer. The timeline's marks agree with the dialog machine's ignored turns, none of them gets a
    response latency, and latency.txt, transcript.txt and timeline.json say so."""
    pipeline = load_pipeline(load_flow(FLOW), PipelineConfig(rate=8000, cache_dir=CACHE))
    script = CallerScript((CallerTurn("say", "yes speaking"), CallerTurn("barge", "wait, who is this?", at_ms=1500),
                           CallerTurn("say", "yes tell me more"), CallerTurn("barge", "mm-hmm", at_ms=2500),
                           CallerTurn("say", "send me a text message")))
    caller = SimCaller(script, 8000, synth=pipeline.cache.synthesize, read_audio=raw_or_wav)
    result = run_call(pipeline.session(charge_compute=True, handoff=SimAgents()), caller)
    turns = result.session.timeline.turns()
    machine = result.session.machine.outcome.turns
    said = [t for t in turns if t["text"].strip()]
    assert [t["text"] for t in said] == [t.text for t in machine if t.text.strip()], "one timeline turn per dialog turn"
    assert [t["ignored"] for t in said] == [t.ignored for t in machine if t.text.strip()]
    ignored = [t for t in said if t["ignored"]]
    assert ignored and ignored[0]["barge_in"] == "ignored" and ignored[0]["ignored_code"] == "not_interruptible"
    assert all(t["response_ms"] is None for t in turns if t["ignored"])
    assert all(t["response_ms"] is not None and t["response_ms"] < 2000 for t in said if not t["ignored"])
    write_outputs(result, tmp_path)
    latency = (tmp_path / "latency.txt").read_text(encoding="utf-8")
    assert "protected for its first 4 s (no response latency)" in latency
    transcript = (tmp_path / "transcript.txt").read_text(encoding="utf-8")
    assert "(ignored: said 1.5 s into a prompt of node 'disclosure'" in transcript
    data = json.loads((tmp_path / "timeline.json").read_text(encoding="utf-8"))
    assert [t["ignored"] for t in data["turns"]] == [t["ignored"] for t in turns]
    assert all(row["ear_response_ms"] is None for row in data["latency"] if row["ignored"])
