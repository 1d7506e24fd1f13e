"""The two-pass policy in whole simulated calls with real models (webrtcvad, pocketsphinx, Whisper base, Piper): a
real human recording answers a node, and only the accurate pass hears it well enough to take the right path; the
engine's executor (the Whisper worker pool) answers on the call's thread, and with an error when it cannot."""

from __future__ import annotations

import queue
from collections.abc import Callable
from pathlib import Path

import numpy as np

from voicebot.asr.accurate import PooledAccurate
from voicebot.asr.whisper_pool import WhisperPool
from voicebot.audio.telephone import telephone_channel
from voicebot.audio.wav import read_wav
from voicebot.dialog.loader import load_flow_text
from voicebot.dialog.twopass import RecogniseTurn, TurnRecognised
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
    result = run_call(pipeline.session(charge_compute=False), caller)  # Whisper's time is not charged: on a loaded
    # machine it could pass the accurate pass's timeout, and this test is about what each pass hears
    outcome = result.session.machine.outcome
    return outcome.path, outcome.disposition, result.session.timeline.of("final")


def test_a_human_answer_takes_the_right_path_at_an_accurate_node_and_not_at_a_fast_one() -> None:
    path, disposition, finals = human_answers("accurate")
    assert path == ["ask", "young"] and disposition == "understood", (path, finals)
    [final] = finals
    assert final["asr"] == "accurate" and "young man" in str(final["text"])
    assert isinstance(final["compute_ms"], int) and final["compute_ms"] > 0  # Whisper's decode time

    path, disposition, finals = human_answers("fast")
    assert path == ["ask", "lost"] and disposition == "not_understood", (path, finals)
    assert [f["asr"] for f in finals] == ["fast"]


# ------------------------------------------------ the engine's executor: the Whisper worker pool


def turn_request(path: Path) -> RecogniseTurn:
    samples, rate = read_wav(path)
    audio = telephone_channel(samples, rate, "PCMU")  # 8 kHz, as a call hears it
    return RecogniseTurn(12.5, 3, np.asarray(audio, dtype="<i2").tobytes(), 8000, ("young man",), "en", "policy")


def test_the_pool_answers_on_the_calls_thread_and_a_closed_pool_answers_with_an_error() -> None:
    pool = WhisperPool("tiny.en", processes=1)
    posted: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
    answers: list[TurnRecognised] = []
    executor = PooledAccurate(pool)
    executor.bind(posted.put)  # the session thread's call_soon
    try:
        executor.start(turn_request(HUMAN), answers.append)
        posted.get(timeout=120)()  # the answer reaches the call only through its own thread
        [answer] = answers
        assert answer.turn == 3 and answer.error is None and "young man" in answer.text, answer  # tiny.en: "ill sposed"
        assert answer.at > 12.5 and answer.compute_ms > 0 and 0 < answer.confidence <= 1
    finally:
        pool.close()
    executor.start(turn_request(HUMAN), answers.append)
    posted.get(timeout=10)()
    assert answers[1].turn == 3 and answers[1].text == "" and "first pass" in str(answers[1].error)


def test_an_unbound_pool_executor_answers_with_an_error_at_once() -> None:
    answers: list[TurnRecognised] = []
    PooledAccurate(object()).start(turn_request(HUMAN), answers.append)  # type: ignore[arg-type]
    assert len(answers) == 1 and answers[0].error is not None and answers[0].at == 12.5
