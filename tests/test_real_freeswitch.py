"""The engine end to end against a real FreeSWITCH: a loopback call, the greeting, DTMF 2, a record.

Runs only when ``VOICEBOT_TEST_ESL=host:port[:password]`` is set (the password
defaults to ``ClueCon``), e.g.::

    VOICEBOT_TEST_ESL=127.0.0.1:8021:CHANGE-ME-voicebot-esl .venv/bin/python -m pytest tests/test_real_freeswitch.py

What the FreeSWITCH needs (see freeswitch_conf/README.md):

- ``freeswitch_conf/`` installed and loaded: the inbound ESL of
  ``autoload_configs/event_socket.conf.xml`` (the host, port and password given
  above) and the ``voicebot`` dialplan context of ``dialplan/voicebot.xml``, whose
  extension 7001 answers and parks (the simulated caller's phone). ``reloadxml``
  after copying.
- FreeSWITCH on this machine: the test runs the engine here, and FreeSWITCH must
  reach the engine's outbound socket on 127.0.0.1 (a free port the test picks,
  passed in the originate's ``&socket('127.0.0.1:PORT async full')``), and the
  unicast media on 127.0.0.1 UDP ports 43600-43699 (free on this machine).
- Nothing else on the box using loopback extension 7001 while the test runs.

The call is the one ``voicebot call`` places (:func:`voicebot.engine.place_test_call`):
``originate {origination_uuid=...,vb_var_customer_name=Dana}loopback/7001/voicebot
&socket(...)``. The test watches the originate's A leg start its socket app on
an ESL connection of its own, waits for the greeting to play, sends
``uuid_recv_dtmf <uuid> 2`` (the caller presses 2: wrong person) and expects the
bot to say goodbye and hang up, with the ``wrong_person`` disposition in the
summary and in the call's record.

The second test is ``voicebot call 7000 --caller examples/callers/demo_en.yaml``
(:func:`voicebot.esl.testcall.run_caller_call`): ``originate {...}loopback/7000/voicebot
&park()``; leg B runs the dialplan's extension 7000 (``socket 127.0.0.1:8084 async
full``) into an engine this test starts on that port, so nothing else may listen on
127.0.0.1:8084 meanwhile (``VOICEBOT_TEST_ENGINE_PORT`` names another port if your
dialplan points elsewhere); leg A plays the caller script and records the bot
(unicast on 127.0.0.1 UDP ports 43600-43699 too).
"""

from __future__ import annotations

import os
import socket
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import numpy as np
import pytest

from voicebot.config import EngineConfig
from voicebot.engine import Engine, place_test_call
from voicebot.esl.connection import InboundConnection
from voicebot.esl.testcall import CallOptions, caller_ports, run_caller_call
from voicebot.records.store import open_store

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
ESL = os.environ.get("VOICEBOT_TEST_ESL", "")
ENGINE_PORT = int(os.environ.get("VOICEBOT_TEST_ENGINE_PORT", "8084"))  # the dialplan's socket target (extension 7000)

pytestmark = pytest.mark.skipif(not ESL, reason="needs a real FreeSWITCH: set VOICEBOT_TEST_ESL=host:port[:password]")


def esl_address(value: str) -> tuple[str, int, str]:
    """``host:port[:password]`` → (host, port, password); the password may contain colons."""
    host, port, *rest = value.split(":", 2)
    return host, int(port), rest[0] if rest else "ClueCon"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll while yielding to the hub (the engine of place_test_call runs on it)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        gevent.sleep(0.02)


def test_a_loopback_call_converses_takes_dtmf_and_is_recorded(tmp_path: Path) -> None:
    host, port, password = esl_address(ESL)
    outbound_port = free_port()
    config = EngineConfig(esl_host=host, esl_port=port, esl_password=password, outbound_host="127.0.0.1",
                          outbound_port=outbound_port, http_port=0, default_flow=FLOW,
                          records_db=str(tmp_path / "calls.sqlite"), recordings_dir=tmp_path / "rec",
                          cache_dir=ROOT / ".voicebot-cache", media_ports=(43600, 43699), shutdown_deadline_s=5)
    watcher = InboundConnection(host, port, password)
    watcher.start()
    entries: list[dict[str, Any]] = []  # the call's timeline, live (appended from the call's session thread)
    try:
        assert watcher.wait_up(10), f"FreeSWITCH is not reachable at {host}:{port}: {watcher.state().last_error}"
        ours = f"127.0.0.1:{outbound_port} async full"
        with watcher.expect_event(lambda e: e.name == "CHANNEL_EXECUTE" and e.get("Application") == "socket"
                                  and e.get("Application-Data") == ours, "the test call's socket app") as socket_app:
            job = gevent.spawn(place_test_call, config, "loopback/7001/voicebot", {"customer_name": "Dana"},
                               entries.append, timeout_s=120)
            uuid = socket_app.get(30).unique_id
        wait(lambda: job.dead or any(e["kind"] == "prompt_start" for e in entries), 30, "the greeting plays")
        assert not job.dead, job.value
        watcher.uuid_recv_dtmf(uuid, "2")  # the caller presses 2: wrong person
        status, summary = job.get(timeout=60)
        assert status == 0, summary
        assert f"call {uuid}:" in summary and "disposition=wrong_person" in summary, summary
        wait(lambda: watcher.api(f"uuid_exists {uuid}").strip() == "false", 10, "the channel is gone")
    finally:
        watcher.stop()

    said = [e.get("text", "") for e in entries if e["kind"] == "play"]
    assert said[0].startswith("Hi, this is Sam") and "Dana" in said[0], said
    assert any(e["kind"] == "dtmf" and e.get("digit") == "2" for e in entries)
    store = open_store(config.records_db)
    try:
        record = store.get(uuid)
    finally:
        store.close()
    assert record is not None, "the call's record is written"
    assert record.disposition == "wrong_person" and list(record.path) == ["greet", "wrong_person"], record
    assert record.hangup_cause and record.answered_at is not None
    assert any(line.speaker == "bot" and "Dana" in line.text for line in record.transcript)
    assert record.recording_path and Path(record.recording_path).stat().st_size > 8000 * 2 * 2  # >1 s of stereo


def test_a_test_call_through_the_dialplan_reaches_the_engine_and_hears_the_bot(tmp_path: Path) -> None:
    host, port, password = esl_address(ESL)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", ENGINE_PORT)) != 0, \
            f"something already listens on 127.0.0.1:{ENGINE_PORT} (the dialplan's socket target): stop it first"
    config = EngineConfig(esl_host=host, esl_port=port, esl_password=password, outbound_host="127.0.0.1",
                          outbound_port=ENGINE_PORT, http_port=0, default_flow=FLOW,
                          records_db=str(tmp_path / "calls.sqlite"), recordings_dir=tmp_path / "rec",
                          cache_dir=ROOT / ".voicebot-cache", media_ports=(43600, 43699), shutdown_deadline_s=5)
    engine = Engine(config)
    engine.load()
    engine.start()
    lines: list[str] = []
    try:
        assert engine.inbound.wait_up(10), f"FreeSWITCH is not reachable at {host}:{port}"
        report = run_caller_call(CallOptions(
            "7000", ROOT / "examples" / "callers" / "demo_en.yaml", tmp_path / "out", esl_host=host, esl_port=port,
            esl_password=password, variables={"customer_name": "Dana"}, media_ports=caller_ports(config.media_ports),
            cache_dir=config.cache_dir / "prompts", records_db=config.records_db, max_s=30.0), printer=lines.append)
        assert engine.inbound.api("status").startswith("UP"), "FreeSWITCH is still up"
    finally:
        engine.shutdown()

    assert report.status == 0, report.message
    assert any("BOT     speaking" in line for line in lines) and any("CALLER  yes, speaking" in line for line in lines)
    record = report.record
    assert record is not None and record.call_id == report.b_uuid, "the engine's record of leg B"
    assert list(record.path)[:2] == ["greet", "disclosure"], record.path  # the caller's "yes, speaking" was heard
    assert "Dana" in record.transcript[0].text, "--var reached leg B through mod_loopback"
    with wave.open(str(tmp_path / "out" / "call.wav")) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, report.rate)
        stereo = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    bot = stereo[: 5 * report.rate, 1].astype(np.float64)
    frames = bot[: len(bot) // (report.rate // 50) * (report.rate // 50)].reshape(-1, report.rate // 50)
    loud = np.count_nonzero(20 * np.log10(np.sqrt(np.mean(frames * frames, axis=1)) / 32768 + 1e-12) > -40)
    assert loud * 0.02 > 2.0, "leg A heard the greeting"
