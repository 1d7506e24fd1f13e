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
  passed in the originate's ``&socket(127.0.0.1:PORT async full)``), and the
  unicast media on 127.0.0.1 UDP ports 43600-43699 (free on this machine).
- Nothing else on the box using loopback extension 7001 while the test runs.

The call is the one ``voicebot call`` places (:func:`voicebot.engine.place_test_call`):
``originate {origination_uuid=...,vb_var_customer_name=Dana}loopback/7001/voicebot
&socket(...)``. The test watches the originate's A leg start its socket app on
an ESL connection of its own, waits for the greeting to play, sends
``uuid_recv_dtmf <uuid> 2`` (the caller presses 2: wrong person) and expects the
bot to say goodbye and hang up, with the ``wrong_person`` disposition in the
summary and in the call's record.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import pytest

from voicebot.config import EngineConfig
from voicebot.engine import place_test_call
from voicebot.esl.connection import InboundConnection
from voicebot.records.store import open_store

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
ESL = os.environ.get("VOICEBOT_TEST_ESL", "")

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
