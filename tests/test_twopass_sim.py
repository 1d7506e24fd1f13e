"""The two-pass policy in whole simulated calls with real models (webrtcvad, pocketsphinx, Whisper base, Piper): a
real human recording answers a node, and only the accurate pass hears it well enough to take the right path."""

from __future__ import annotations

from pathlib import Path

from voicebot.dialog.loader import load_flow_text
from voicebot.pipeline import PipelineConfig, load_pipeline
from voicebot.sim.audio import run_call
from voicebot.sim.caller import CallerScript, CallerTurn, SimCaller, raw_or_wav

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".voicebot-cache" / "prompts"
HUMAN = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav")
# a Librivox reader (pocketsphinx-testdata): "he was not an ill disposed young man"

FLOW = """\
flow: {id: hearing_test, version: 1, language: en, start: ask}
intents:
  young: {keywords: [young man]}
nodes:
  ask:
    say: Tell me about him.
    listen: {asr: ASR}
    on: {young: young}
    no_match: {retries: 0, then: lost}
  young:
    say: So he is young.
    hangup: understood
  lost:
    say: Sorry, I did not get that.
    hangup: not_understood
"""


def human_answers(asr: str) -> tuple[list[str], str, list[dict[str, object]]]:
    """One call where the human recording answers ``ask`` (listen.asr = ``asr``): path, disposition, finals."""
    flow = load_flow_text(FLOW.replace("ASR", asr))
    pipeline = load_pipeline(flow, PipelineConfig(rate=8000, cache_dir=CACHE, accurate="base"))
    caller = SimCaller(CallerScript((CallerTurn("wav", path=str(HUMAN)),)), 8000, synth=pipeline.cache.synthesize,
                       read_audio=raw_or_wav)
    result = run_call(pipeline.session(charge_compute=True), caller)
    outcome = result.session.machine.outcome
    return outcome.path, outcome.disposition, result.session.timeline.of("final")


def test_a_human_answer_takes_the_right_path_at_an_accurate_node_and_not_at_a_fast_one() -> None:
    path, disposition, finals = human_answers("accurate")
    assert path == ["ask", "young"] and disposition == "understood", (path, finals)
    [final] = finals
    assert final["asr"] == "accurate" and "young man" in str(final["text"])
    assert isinstance(final["accurate_ms"], int) and final["accurate_ms"] > 0

    path, disposition, finals = human_answers("fast")
    assert path == ["ask", "lost"] and disposition == "not_understood", (path, finals)
    assert [f["asr"] for f in finals] == ["fast"]
