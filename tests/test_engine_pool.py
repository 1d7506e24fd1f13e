"""``voicebot serve`` with its default recogniser, the ASR pool (voicebot/asr/procpool.py), through the FreeSWITCH
double: the caller's words are recognised in the worker processes, and no worker outlives the engine, whether it
stops on SIGTERM or is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from bench.fsbench import SERVE_ASR
from fsdouble.double import ArrayAudio, FreeSwitchDouble
from tests.engine_support import (
    FLOW,
    ROOT,
    answer_the_question,
    engine_config,
    free_port,
    running_engine,
    steady_speech,
)
from voicebot.asr.procpool import ProcessPoolModel
from voicebot.config import EngineConfig
from voicebot.configkeys import SETTINGS
from voicebot.pipeline import default_pack
from voicebot.records.store import open_store
from voicebot.serving import one_call_config
from voicebot.tts.render import PromptCache


def test_serve_defaults_to_the_asr_pool() -> None:
    table = next(s.default for s in SETTINGS if s.key == "asr.backend")
    assert table == EngineConfig().asr_backend == SERVE_ASR == "pocketsphinx-pool"


def test_voicebot_call_serves_its_one_call_in_process() -> None:
    """``voicebot call`` starts an engine for one call: no process per core for it (the backend's inner one)."""
    assert one_call_config(EngineConfig()).asr_backend == "pocketsphinx"
    vosk = EngineConfig(asr_backend="vosk")
    assert one_call_config(vosk) == vosk


def _config(tmp: Path, esl_port: int, outbound_port: int, http_port: int) -> Path:
    """A config with no ``asr:`` section: serve's defaults."""
    path = tmp / "voicebot.yaml"
    path.write_text(f"""
freeswitch: {{host: 127.0.0.1, port: {esl_port}, password: ClueCon}}
outbound: {{port: {outbound_port}}}
media: {{ports: "42400-42499"}}
flows: {{default: "{FLOW}"}}
records: {{db: "{tmp / 'calls.sqlite'}", recordings: "{tmp / 'rec'}"}}
http: {{port: {http_port}}}
cache_dir: "{ROOT / '.voicebot-cache'}"
shutdown_deadline_s: 2
""", encoding="utf-8")
    return path


def _healthy(port: int) -> bool:
    """``/health`` answers ok: the engine is loaded, started and connected to the double."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def gone(pids: set[int], timeout: float) -> set[int]:
    """Those of ``pids`` still running (not exited, or exited but unreaped) after up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        left = {p for p in pids if Path(f"/proc/{p}").exists() and _state(p) != "Z"}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "Z"


@pytest.fixture
def served(fs: FreeSwitchDouble, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """``voicebot serve`` in its own process with serve's defaults, up (ready, connected to the double)."""
    port, http = free_port(), free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", "import sys; from voicebot.cli import main; sys.exit(main())",
                                 "serve", "--config", str(_config(tmp_path, fs.inbound_port, port, http))],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not _healthy(http):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
            time.sleep(0.1)
        yield proc, port, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_serve_recognises_calls_in_the_pool_and_stops_its_workers(fs: FreeSwitchDouble, tmp_path: Path,
                                                                   served: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    proc, port, log = served
    workers = children(proc.pid)
    assert len(workers) >= (os.cpu_count() or 1), "one ASR worker process per core (and the accurate pass's)"
    cache = PromptCache(default_pack("en"), ROOT / ".voicebot-cache" / "prompts")
    track = np.zeros(8000 * 30, dtype=np.int16)
    for at, text in [(6.0, "yes speaking"), (15.0, "stop calling me")]:
        audio = steady_speech(cache, text)
        track[int(at * 8000):int(at * 8000) + len(audio)] = audio
    uuid = fs.place_call(port, codec="PCMU", rate=8000, caller=ArrayAudio(track, 8000))
    answer_the_question(fs, uuid, steady_speech(cache, "yes"), 15.0)  # the flow confirms an unsure "stop calling"
    fs.wait_for(lambda: fs.channel(uuid).hung_up, timeout=60, what="the bot hangs up")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text(errors="replace")[-3000:]
    assert not gone(workers, 10), "no worker process outlives `voicebot serve`"
    record = open_store(tmp_path / "calls.sqlite").list(limit=1)[0]
    heard = [line.text for line in record.transcript if line.speaker == "caller"]
    assert record.call_id == uuid and record.disposition == "blocklist", heard
    assert any("stop" in text for text in heard), heard  # recognised in the pool's workers


def test_a_killed_engine_leaves_no_worker_behind(served: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    proc, _, _ = served
    workers = children(proc.pid)
    assert workers
    proc.kill()  # no shutdown, no atexit: each worker sees its pipe close and exits
    proc.wait(10)
    assert not gone(workers, 15), "the workers of a killed engine exit by themselves"


def test_a_crashed_worker_costs_its_call_nothing_but_the_words_in_flight(fs: FreeSwitchDouble, tmp_path: Path) -> None:
    """In-process, the pool warm before the first call; the worker decoding a call is killed during the greeting:
    the error is logged, the call's stream moves to the other worker, the caller's later words are recognised,
    the call ends as it should; then shutdown itself (not the interpreter's exit hooks) stops every worker."""
    config = engine_config(fs.inbound_port, tmp_path, (42500, 42599), esl_password="ClueCon", asr_backend=SERVE_ASR)
    sessions: list[Any] = []
    with running_engine(config) as engine, capture_logs() as logs:
        pools = {id(p.asr): p.asr for p in engine.pipelines.values()}
        assert len(pools) == 1, "one pool serves every rate"
        pool = next(iter(pools.values()))
        assert isinstance(pool, ProcessPoolModel) and len(pool.workers) >= 2
        assert all(w.alive and set(w.warmed) == {8000, 16000} for w in pool.workers), "warm before the first call"
        engine.on_session = sessions.append
        cache = next(iter(engine.pipelines.values())).cache
        track = np.zeros(8000 * 30, dtype=np.int16)
        for at, text in [(6.0, "yes speaking"), (15.0, "stop calling me")]:
            audio = steady_speech(cache, text)
            track[int(at * 8000):int(at * 8000) + len(audio)] = audio
        uuid = fs.place_call(engine.server.port, codec="PCMU", rate=8000, caller=ArrayAudio(track, 8000))
        fs.wait_for(lambda: fs.channel(uuid).unicast_active and bool(sessions), timeout=10, what="the call is up")
        doomed = sessions[0].asr.worker
        doomed.process.kill()  # a crash, mid-greeting
        answer_the_question(fs, uuid, steady_speech(cache, "yes"), 15.0)  # the flow confirms an unsure "stop calling"
        fs.wait_for(lambda: fs.channel(uuid).hung_up, timeout=60, what="the bot hangs up")
        fs.wait_for(lambda: engine.metrics.active_calls == 0, timeout=5, what="the call is released")
        assert engine.flush_records()
        record = engine.store.list(limit=1)[0]
        pids = {w.process.pid for w in pool.workers} | {doomed.process.pid}
    heard = [line.text for line in record.transcript if line.speaker == "caller"]
    assert record.call_id == uuid and record.disposition == "blocklist", heard
    assert any("stop" in text for text in heard), heard  # recognised in the worker the stream moved to
    moved = [e for e in logs if e["event"] == "asr.stream_moved"]
    assert moved and moved[0]["from_worker"] == doomed.index and moved[0]["to_worker"] != doomed.index
    assert not record.extras or "error" not in record.extras  # the call did not fail
    assert not gone({p for p in pids if p is not None}, 0.0), "shutdown stopped and reaped every worker"
