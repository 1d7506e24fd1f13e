"""DecodeWorker: decoding on native threads, with and without gevent monkey-patching."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from voicebot.asr.base import AsrResult
from voicebot.asr.pocketsphinx_asr import PocketsphinxModel
from voicebot.asr.worker import DecodeWorker, gevent_patched
from voicebot.audio.frame import AudioFrame
from voicebot.audio.resample import resample

DATA = Path("/usr/share/pocketsphinx/test/data")
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="pocketsphinx-testdata is not installed")
HINTS = ["yes", "no", "stop calling me", "go forward ten meters"]
REPO = Path(__file__).resolve().parent.parent


def frames(rate: int = 8000) -> list[AudioFrame]:
    audio = resample(np.fromfile(DATA / "goforward.raw", dtype="<i2"), 16000, rate)
    step = rate // 50
    return [AudioFrame(audio[i:i + step].tobytes(), rate, k, i / rate) for k, i in enumerate(range(0, len(audio), step))]


def native_threads() -> set[str]:
    """Ids of this process's OS threads."""
    return set(os.listdir("/proc/self/task"))


def still_running(tids: set[str]) -> set[str]:
    """Those of ``tids`` still alive after up to 2 s (an OS thread lingers a moment after its function returns)."""
    deadline = time.monotonic() + 2.0
    while (alive := tids & native_threads()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return alive


def decode_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("-decode")]


@pytest.fixture(scope="module")
def model() -> PocketsphinxModel:
    return PocketsphinxModel()


def test_results_arrive_by_poll_and_by_future(model: PocketsphinxModel) -> None:
    assert not gevent_patched()
    worker = DecodeWorker(model.stream(8000, HINTS), name="poll")
    for frame in frames():
        worker.submit(frame)
    final = worker.finish().result(timeout=30)
    results = worker.poll()
    assert final.text == "go forward ten meters"
    assert results[-1] == final and all(not r.final for r in results[:-1]) and len(results) >= 3
    assert worker.poll() == []
    assert worker.close()


def test_callback_runs_on_the_worker_thread_and_a_second_turn_works(model: PocketsphinxModel) -> None:
    seen: list[tuple[AsrResult, str]] = []
    worker = DecodeWorker(lambda: model.stream(8000, HINTS), lambda r: seen.append((r, threading.current_thread().name)),
                          name="cb")
    for turn in range(2):
        for frame in frames():
            worker.submit(frame)
        assert worker.finish().result(timeout=30).text == "go forward ten meters", turn
    assert sum(r.final for r, _ in seen) == 2
    assert {name for _, name in seen} == {"cb-decode"}
    assert worker.close()


def test_submit_never_waits_for_decoding(model: PocketsphinxModel) -> None:
    worker = DecodeWorker(model.stream(8000, HINTS), name="fast")
    batch = frames() * 3
    started = time.perf_counter()
    for frame in batch:
        worker.submit(frame)
    spent = time.perf_counter() - started
    assert worker.backlog > 0  # the thread is still decoding what was queued
    assert spent < 0.05, f"{len(batch)} submits took {spent * 1000:.1f} ms"
    worker.finish().result(timeout=30)
    assert worker.close()


def test_close_leaves_no_thread_behind(model: PocketsphinxModel) -> None:
    before, names = native_threads(), decode_threads()
    workers = [DecodeWorker(model.stream(8000, HINTS), name=f"w{i}") for i in range(4)]
    started = native_threads() - before
    assert len(started) == 4 and len(decode_threads()) == len(names) + 4
    for w in workers:
        w.submit(frames()[0])
    assert all(w.close(timeout=10) for w in workers)
    assert decode_threads() == names and still_running(started) == set()
    with pytest.raises(RuntimeError, match="closed"):
        workers[0].submit(frames()[0])


def test_a_failing_stream_factory_is_reported_by_finish() -> None:
    def broken() -> PocketsphinxModel:
        raise OSError("no model here")

    worker = DecodeWorker(broken, name="broken")  # type: ignore[arg-type]
    worker.submit(frames()[0])
    with pytest.raises(OSError, match="no model here"):
        worker.finish().result(timeout=10)
    assert worker.close()


GEVENT_PROBE = r"""
from gevent import monkey
monkey.patch_all()
import json, os, sys, threading, time
import gevent
import numpy as np
sys.path.insert(0, sys.argv[1])
from voicebot.asr.pocketsphinx_asr import PocketsphinxModel
from voicebot.asr.worker import DecodeWorker, gevent_patched
from voicebot.audio.frame import AudioFrame
from voicebot.audio.resample import resample

audio = resample(np.fromfile(sys.argv[2], dtype="<i2"), 16000, 8000)
frames = [AudioFrame(audio[i:i + 160].tobytes(), 8000, k, 0.0) for k, i in enumerate(range(0, len(audio), 160))]
model = PocketsphinxModel()
hints = ["yes", "no", "stop calling me", "go forward ten meters"]
tasks_before = len(os.listdir("/proc/self/task"))
gaps, running, delivered = [], True, []

def probe():
    last = time.perf_counter()
    while running:
        gevent.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last - 0.01)
        last = now

def call(i):
    worker = DecodeWorker(lambda: model.stream(8000, hints), delivered.append, name=f"call{i}")
    for frame in frames:  # a frame per 20 ms, as from FreeSWITCH
        worker.submit(frame)
        gevent.sleep(0.02)
    final = worker.finish().result(timeout=60)
    assert worker.close(timeout=10)
    return final.text

probing = gevent.spawn(probe)
gevent.sleep(0.05)
calls = [gevent.spawn(call, i) for i in range(10)]
gevent.joinall(calls, raise_error=True)
running = False
probing.join()
deadline = time.monotonic() + 2.0
while len(os.listdir("/proc/self/task")) > tasks_before and time.monotonic() < deadline:
    time.sleep(0.01)  # an OS thread lingers a moment after its function returned
print(json.dumps({"patched": gevent_patched(), "finals": [g.value for g in calls], "max_gap_ms": 1000 * max(gaps),
                  "delivered": len(delivered), "tasks_before": tasks_before,
                  "tasks_after": len(os.listdir("/proc/self/task")), "greenlet_threads": threading.active_count()}))
"""


def test_under_gevent_ten_streams_decode_without_blocking_the_hub() -> None:
    """Ten calls' audio arriving in real time; in a subprocess, so monkey-patching cannot leak into other tests."""
    out = subprocess.run([sys.executable, "-c", GEVENT_PROBE, str(REPO), str(DATA / "goforward.raw")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["patched"]
    assert report["finals"] == ["go forward ten meters"] * 10
    assert report["delivered"] >= 10 * 4  # partials and finals reached the hub
    assert report["max_gap_ms"] < 50, report
    assert report["tasks_after"] == report["tasks_before"]  # every native decode thread ended
