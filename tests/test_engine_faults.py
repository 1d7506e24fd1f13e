"""The engine under faults, through the FreeSWITCH test double: real sockets, real UDP, real ASR and TTS.

Each test asserts the same three things: the engine survives (it takes a new call
afterwards, or another call in flight carries on), the affected call ends cleanly
(released: no active call, no port pair in use), and its record is written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gevent
import gevent.socket
import numpy as np
from structlog.testing import capture_logs

from fsdouble.double import ArrayAudio, FreeSwitchDouble, MediaFaults
from tests.engine_support import PASSWORD, EngineSetup, engine_config, free_port, steady_speech
from tests.engine_support import wait as gevent_wait
from voicebot.call import CallSession
from voicebot.engine import Engine
from voicebot.esl.stall import REARM_MAX_FAILED
from voicebot.records.model import CallRecord

ENGINE = EngineSetup((43000, 43199))


def silence(seconds: float = 1.0) -> ArrayAudio:
    return ArrayAudio(np.zeros(int(8000 * seconds), np.int16), 8000)


def speech(engine: Engine, text: str) -> np.ndarray:
    """The caller's words, synthesized at 8 kHz (the same take every run)."""
    return steady_speech(next(iter(engine.pipelines.values())).cache, text)


def call(fs: FreeSwitchDouble, engine: Engine, caller: Any = None) -> str:
    """A call into the engine, up with unicast flowing."""
    uuid = fs.place_call(engine.server.port, codec="PCMU", rate=8000, caller=caller or silence())
    fs.wait_for(lambda: fs.channel(uuid).unicast_active, timeout=15, what="unicast armed")
    return uuid


def record_of(engine: Engine, uuid: str, timeout: float = 10.0) -> CallRecord:
    """The call's record, once written (the engine writes it as the call's greenlet ends)."""
    found: list[CallRecord] = []

    def written() -> bool:
        record = engine.store.get(uuid)
        if record is not None:
            found.append(record)
        return record is not None

    gevent_wait(written, timeout, f"the record of {uuid}")
    return found[0]


def released(engine: Engine) -> None:
    """No call in progress, every port pair back in the pool."""
    gevent_wait(lambda: engine.metrics.active_calls == 0 and engine.pool.in_use == 0, 10, "the calls are released")


def wrong_person_call(fs: FreeSwitchDouble, engine: Engine) -> CallRecord:
    """A short healthy call: DTMF 2 → the bot says goodbye and hangs up. Proves the engine still works."""
    uuid = call(fs, engine)
    fs.press(uuid, "2")
    fs.wait_for(lambda: fs.channel(uuid).hung_up, timeout=30, what="the bot says goodbye and hangs up")
    record = record_of(engine, uuid)
    assert record.disposition == "wrong_person"
    return record


def http_get(port: int, path: str) -> tuple[int, str]:
    """GET over a gevent socket (the engine's HTTP server runs on this thread's hub): (status, body)."""
    with gevent.socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), body.decode()


# ---------------------------------------------------------------- (a) the socket closes mid-call


def test_freeswitch_closes_the_socket_mid_call(fs: FreeSwitchDouble, engine: Engine) -> None:
    errors_before = engine.metrics.errors
    uuid = call(fs, engine)
    fs.wait_for(lambda: len(fs.channel(uuid).packets_heard()) > 25, timeout=10, what="the greeting plays")
    fs.drop_connection(uuid)
    released(engine)
    record = record_of(engine, uuid)
    assert record.path and record.path[0] == "greet"
    # the caller lost the bot; the record says it was the socket, not a hang-up of theirs
    assert record.disposition == "caller_hangup" and record.hangup_cause == "esl_socket_closed", record
    assert not record.extras.get("error")
    assert engine.metrics.errors == errors_before, "a dropped socket is not an engine error"
    # the orphaned channel does not stay parked in FreeSWITCH with nobody driving it
    fs.wait_for(lambda: fs.channel(uuid).hung_up, timeout=5, what="the orphaned channel is hung up")
    wrong_person_call(fs, engine)
    released(engine)
    fs.assert_no_crash()


# ---------------------------------------------------------------- (b) FreeSWITCH down at start


def test_freeswitch_down_at_start_then_back(engine: Engine, tmp_path: Path) -> None:
    with FreeSwitchDouble(password=PASSWORD, port=free_port()) as fs2:
        fs2.stop()  # FreeSWITCH is down when the engine starts
        eng = Engine(engine_config(fs2.inbound_port, tmp_path, (43200, 43299)))
        eng.pipelines = engine.pipelines  # the models are loaded once per process in tests too
        eng.load()
        eng.start()
        try:
            gevent_wait(lambda: eng.inbound.state().attempts >= 3, 10, "three failed connection attempts")
            status, body = http_get(eng.http.server_port, "/health")
            assert status == 503 and body.startswith("degraded: freeswitch down"), body
            # issue 17: it said "reconnects 0" after nine attempts; now it counts them and says what to check
            tried = re.search(r"attempts (\d+),", body)
            assert tried and int(tried.group(1)) >= 3 and "connects 0," in body, body
            assert "hint: check freeswitch.host/port" in body and "event_socket.conf.xml" in body, body
            status, metrics = http_get(eng.http.server_port, "/metrics")
            assert status == 200 and "voicebot_freeswitch_up 0" in metrics.splitlines()
            fs2.restart()
            gevent_wait(lambda: eng.inbound.up, 20, "the inbound connection comes up by itself")
            status, body = http_get(eng.http.server_port, "/health")
            assert status == 200 and body.startswith("ok: freeswitch up (connects 1, reconnects 0,"), body
            assert "hint" not in body
            assert "voicebot_freeswitch_up 1" in http_get(eng.http.server_port, "/metrics")[1].splitlines()
            record = wrong_person_call(fs2, eng)  # and it takes calls
            assert record.hangup_cause
            released(eng)
            fs2.assert_no_crash()
        finally:
            eng.shutdown()


# ---------------------------------------------------------------- (b2) FreeSWITCH crashes mid-call


def test_a_freeswitch_crash_mid_call_is_recorded_as_switch_lost_not_as_the_caller(engine: Engine,
                                                                                 tmp_path: Path) -> None:
    """Defect 13: a crash closes every socket at once; it was recorded as the caller hanging up."""
    with FreeSwitchDouble(password=PASSWORD, port=free_port()) as fs2:
        eng = Engine(engine_config(fs2.inbound_port, tmp_path, (43300, 43399)))
        eng.pipelines = engine.pipelines  # the models are loaded once per process in tests too
        eng.load()
        eng.start()
        try:
            assert eng.inbound.wait_up(10)
            uuid = call(fs2, eng)
            fs2.wait_for(lambda: len(fs2.channel(uuid).packets_heard()) > 25, timeout=10, what="the greeting plays")
            fs2.stop()  # the process dies: every socket closes, no hang-up event, no disconnect notice
            record = record_of(eng, uuid)
            assert record.hangup_cause == "switch_lost" and record.disposition == "switch_lost", record
            assert record.path and record.path[0] == "greet" and record.recording_path
            released(eng)
            fs2.start()  # back: the engine takes calls again
            assert eng.inbound.wait_up(5)
            wrong_person_call(fs2, eng)
            released(eng)
        finally:
            eng.shutdown()


# ---------------------------------------------------------------- (b3) the caller's stream never comes back


def test_a_stream_that_never_comes_back_is_given_up_as_media_lost_naming_the_ptime_trap(fs: FreeSwitchDouble,
                                                                                       engine: Engine) -> None:
    """Defect 6: re-arms were unbounded (46 in 6.6 s with the caller's stream cut, the call never ended)."""
    uuid = call(fs, engine)
    fs.wait_for(lambda: len(fs.channel(uuid).packets_heard()) > 25, timeout=10, what="the greeting plays")
    with capture_logs() as logs:
        fs.change_ptime(uuid, 30)  # the ptime trap kills unicast...
        fs.cut_media(uuid)  # ...and here no re-arm brings it back
        record = record_of(engine, uuid, timeout=20)
    assert record.hangup_cause == "media_lost" and record.disposition == "media_lost", record
    assert record.path and record.path[0] == "greet" and not record.extras.get("error")
    rearms = [c for c in fs.commands if c == f"api uuid_transfer {uuid} park inline"]
    assert len(rearms) == REARM_MAX_FAILED, rearms
    [lost] = [e for e in logs if e["event"] == "unicast.media_lost"]
    assert lost["trap"] == "ptime_change" and "Adv=20;Sent=30" in lost["why"] and "a=ptime" in lost["why"], lost
    fs.wait_for(lambda: fs.channel(uuid).hung_up, timeout=5, what="the engine hangs the call up")
    assert fs.channel(uuid).cause == "MEDIA_TIMEOUT"
    released(engine)
    fs.assert_no_crash()


# ---------------------------------------------------------------- (c) garbage on a call's ESL socket


def test_garbage_on_one_calls_socket_ends_that_call_only(fs: FreeSwitchDouble, engine: Engine) -> None:
    victim = call(fs, engine)
    other = call(fs, engine)
    fs.wait_for(lambda: len(fs.channel(victim).packets_heard()) > 10, timeout=10, what="the greeting plays")
    fs.send_garbage(victim, b"\xff\x00garbage\n\n")
    fs.wait_for(lambda: fs.channel(victim).hung_up, timeout=10, what="the victim's call ends")
    assert not fs.channel(victim).unicast_active
    record = record_of(engine, victim)
    assert record.path and record.path[0] == "greet"
    assert record.disposition == "caller_hangup" and record.hangup_cause == "esl_socket_closed", record
    assert not fs.channel(other).hung_up, "the other call is still up"
    fs.press(other, "2")
    fs.wait_for(lambda: fs.channel(other).hung_up, timeout=30, what="the other call's bot says goodbye")
    assert record_of(engine, other).disposition == "wrong_person"
    released(engine)
    fs.assert_no_crash()


# ---------------------------------------------------------------- (d) garbage and faults on the UDP stream


def test_speech_gets_through_garbage_loss_duplicates_and_reordering(fs: FreeSwitchDouble, engine: Engine) -> None:
    sessions: list[CallSession] = []
    engine.on_session = sessions.append
    track = np.zeros(8000 * 30, np.int16)
    words = speech(engine, "yes speaking")
    at = int(5.5 * 8000)  # after the greeting (about 4 s long)
    track[at:at + len(words)] = words
    uuid = call(fs, engine, ArrayAudio(track, 8000))
    fs.set_media_faults(uuid, MediaFaults(loss=0.03, duplicate=0.1, reorder=0.1, seed=7))
    for payload in (b"garbage", b"\x00" * 7, b"\xff" * 1500, b"x" * 161):
        fs.send_udp(uuid, payload)
    heard = len(fs.channel(uuid).packets_heard())
    fs.wait_for(lambda: len(fs.channel(uuid).packets_heard()) > heard + 25, timeout=5,
                what="the bot keeps sending after the garbage")
    fs.wait_for(lambda: sessions, timeout=5, what="the call's session")
    session = sessions[0]
    fs.wait_for(lambda: "disclosure" in session.machine.outcome.path or session.ended, timeout=20,
                what="the caller's 'yes speaking' is heard through the faults")
    fs.send_udp(uuid, b"more garbage")
    fs.wait_for(lambda: len(fs.channel(uuid).packets_heard()) > heard + 100, timeout=5, what="the disclosure plays")
    fs.hangup(uuid)
    record = record_of(engine, uuid)
    said = [(line.speaker, line.text) for line in record.transcript]
    assert list(record.path)[:2] == ["greet", "disclosure"], said
    assert record.disposition == "caller_hangup"
    released(engine)
    fs.assert_no_crash()


def test_dtmf_routes_and_the_bot_says_goodbye_over_a_silent_line_with_garbage(fs: FreeSwitchDouble,
                                                                              engine: Engine) -> None:
    uuid = call(fs, engine)
    fs.set_media_faults(uuid, MediaFaults(silence=True, loss=0.2, duplicate=0.2, reorder=0.2, seed=3))
    fs.send_udp(uuid, b"garbage")
    fs.send_udp(uuid, b"\x7f" * 3)
    fs.press(uuid, "2")
    fs.send_udp(uuid, b"garbage")
    fs.wait_for(lambda: fs.channel(uuid).hung_up, timeout=30, what="the bot says goodbye and hangs up")
    record = record_of(engine, uuid)
    assert record.disposition == "wrong_person" and list(record.path) == ["greet", "wrong_person"], record.path
    assert any(line.speaker == "bot" and "Have a nice day" in line.text for line in record.transcript)
    heard = np.frombuffer(fs.channel(uuid).heard_audio(), dtype="<i2")
    assert np.abs(heard[-8000 * 3:]).max() > 3000, "the caller heard the goodbye"
    released(engine)
    fs.assert_no_crash()


# ---------------------------------------------------------------- (e) an exception inside one call's session


def test_an_exception_in_one_calls_session_ends_that_call_only(fs: FreeSwitchDouble, engine: Engine) -> None:
    sessions: list[CallSession] = []

    def sabotage(session: CallSession) -> None:
        sessions.append(session)
        if len(sessions) == 1:  # the first call's speaker fails on its second prompt
            speak = session.speaker

            def broken(play: Any, values: Any) -> Any:
                if play.node != "greet":
                    raise RuntimeError("injected: the TTS of this call broke")
                return speak(play, values)
            session.speaker = broken

    engine.on_session = sabotage
    errors_before = engine.metrics.errors
    victim = call(fs, engine)
    other = call(fs, engine)
    fs.wait_for(lambda: len(sessions) == 2, timeout=5, what="both sessions started")
    fs.press(victim, "1")  # greet → disclosure: its prompt raises in the victim's session thread
    fs.wait_for(lambda: fs.channel(victim).hung_up, timeout=10, what="the failed call is hung up")
    assert fs.channel(victim).cause == "NORMAL_TEMPORARY_FAILURE"
    record = record_of(engine, victim)
    assert "injected" in record.extras.get("error", ""), record.extras
    assert record.hangup_cause == "engine_error" and record.disposition == "unfinished", record
    assert engine.metrics.errors == errors_before + 1
    assert record.path and record.path[0] == "greet"
    assert not fs.channel(other).hung_up, "the other call is still up"
    fs.press(other, "2")
    fs.wait_for(lambda: fs.channel(other).hung_up, timeout=30, what="the other call's bot says goodbye")
    assert record_of(engine, other).disposition == "wrong_person"
    released(engine)
    wrong_person_call(fs, engine)
    fs.assert_no_crash()
