"""SessionThread: the call's native thread, paced by a send clock in the test (real time, 20 ms slots).

Defect 7: bot audio is paced by the send clock, not by caller frames. Defect 2: slow synthesis never blocks the
call's thread (the voice is a test double that takes 300 ms per chunk, in its own thread).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Mapping

import numpy as np
import pytest

from tests.call_fakes import BOT_LEVEL, CALLER_LEVEL, FRAME, FRAME_S, RATE, LevelVad, ScriptedAsr
from tests.dialog_fixtures import screening_flow
from voicebot.audio.frame import AudioFrame
from voicebot.call import CallSession, CallSettings
from voicebot.dialog import events as ev
from voicebot.dialog.machine import DialogMachine
from voicebot.esl.driver import SessionThread, start_off_hub
from voicebot.player import Chunk

SLOW_CHUNK_S = 0.3  # the slow voice's compute per chunk
CHUNK_S = 0.2  # audio per chunk


def long_prompt(play: ev.Play, values: Mapping[str, str]) -> tuple[Iterator[Chunk], bool]:
    """Ten seconds of ready-made audio."""
    return iter([np.full(RATE * 10, BOT_LEVEL, dtype=np.int16)]), True


def slow_voice(play: ev.Play, values: Mapping[str, str]) -> tuple[Iterator[Chunk], bool]:
    """Live synthesis at 2/3 of real time: each 200 ms chunk takes 300 ms to make."""
    def chunks() -> Iterator[Chunk]:
        for _ in range(10):
            time.sleep(SLOW_CHUNK_S)
            yield np.full(int(RATE * CHUNK_S), BOT_LEVEL, dtype=np.int16)
    return chunks(), False


class Timed(CallSession):
    """A CallSession that measures how long each caller_frame and bot_frame call takes."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.took: dict[str, list[float]] = {"caller_frame": [], "bot_frame": []}

    def caller_frame(self, frame: AudioFrame) -> None:
        started = time.perf_counter()
        super().caller_frame(frame)
        self.took["caller_frame"].append(time.perf_counter() - started)

    def bot_frame(self, now: float) -> Chunk | None:
        started = time.perf_counter()
        try:
            return super().bot_frame(now)
        finally:
            self.took["bot_frame"].append(time.perf_counter() - started)


def run_clock(worker: SessionThread, seconds: float, speech: tuple[float, float] | None = None) -> list[bool]:
    """Drive the media clock in real time for ``seconds``: per 20 ms slot, take a bot frame (True: it held audio);
    during ``speech`` (s on the call's clock) send loud caller frames, else none at all."""
    heard: list[bool] = []
    t0 = worker.started
    for k in range(round(seconds / FRAME_S)):
        slot = t0 + k * FRAME_S
        time.sleep(max(0.0, slot - time.monotonic()))
        if speech is not None and speech[0] <= k * FRAME_S < speech[1]:
            samples = np.full(FRAME, CALLER_LEVEL, dtype=np.int16)
            worker.caller(AudioFrame(samples.tobytes(), RATE, k, slot))
        heard.append(worker.next_bot_frame(slot) is not None)
    return heard


def session(speaker: object) -> Timed:
    return Timed(DialogMachine(screening_flow()), vad=LevelVad(), asr=ScriptedAsr(), speaker=speaker,
                 settings=CallSettings(rate=RATE))


def test_bot_audio_is_paced_by_the_send_clock_without_caller_frames() -> None:
    """Defect 7: FreeSWITCH sends nothing; every send slot of a prompt still carries audio."""
    worker = SessionThread(session(long_prompt), {})
    worker.start()
    try:
        heard = run_clock(worker, 1.5)
    finally:
        assert worker.stop(2.0)
    during = heard[3:]  # the first slots may come before the first frame is queued
    silent = during.count(False)
    assert silent <= 1, f"{silent} of {len(during)} send slots went out as silence during the prompt"


def test_slow_synthesis_never_blocks_the_call_and_the_caller_is_heard_meanwhile() -> None:
    """Defect 2: synthesis at 300 ms per chunk; frames are never held up, and caller speech pauses the bot."""
    timed = session(slow_voice)
    worker = SessionThread(timed, {})
    worker.start()
    try:
        heard = run_clock(worker, 1.6, speech=(0.9, 1.3))
    finally:
        assert worker.stop(2.0)
    slowest = {name: max(took) for name, took in timed.took.items()}
    assert slowest["bot_frame"] < 0.05 and slowest["caller_frame"] < 0.05, slowest
    assert any(heard), "the slow voice was heard once its first audio existed"
    starts = [e["t"] for e in timed.timeline.of("prompt_start")]
    assert starts and starts[0] >= SLOW_CHUNK_S - 0.02, "the prompt starts when its first audio is sent"
    assert [e["t"] for e in timed.timeline.of("speech_start")] == [0.9]
    pauses = [e["t"] for e in timed.timeline.of("pause")]
    assert pauses and 0.9 < pauses[0] < 1.05, pauses


def test_starting_a_calls_threads_never_stalls_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Thread.start`` waits until the new thread runs; on a busy box that is the scheduler's wait (here 300 ms).
    Started on the hub, it stopped every other call's audio (bench/max_gap.py caught the hub in threading.start)."""
    import gevent

    started = threading.Thread.start

    def slow_to_run(self: threading.Thread) -> None:
        time.sleep(0.3)  # the new thread waits for a CPU
        started(self)

    worker = SessionThread(session(long_prompt), {})
    beats: list[float] = []

    def beat() -> None:  # another call's send clock
        while True:
            beats.append(time.monotonic())
            gevent.sleep(0.005)

    ticker = gevent.spawn(beat)
    gevent.sleep(0.02)
    monkeypatch.setattr(threading.Thread, "start", slow_to_run)
    try:
        start_off_hub(worker.start)
    finally:
        monkeypatch.undo()
        gevent.sleep(0.02)
        ticker.kill()
    try:
        assert worker.alive and worker.session.synthesis is not None
    finally:
        assert worker.stop(2.0)
    longest = max(b - a for a, b in itertools.pairwise(beats))
    assert longest < 0.15, f"the hub stopped for {1000 * longest:.0f} ms while the call's threads started"
