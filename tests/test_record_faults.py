"""The fault matrix: whatever ends a call, its record is saved with its path, transcript and recording.

Through the FreeSWITCH test double (real sockets, real UDP, real ASR and TTS).
Each fault hits a call a few seconds into its greeting: the FreeSWITCH socket
closes, the driver raises, the recording cannot be written, the database is
down, the session thread gets stuck, the engine gets SIGTERM. Where the fault
used to stall the gevent hub (a database outage, a stuck thread), another call
in progress must keep its media: no gap over ``MAX_GAP_S`` in the bot's audio
at its ear.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sqlite3
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import gevent
import numpy as np
import pytest

from fsdouble.double import ArrayAudio, FreeSwitchDouble
from tests import test_records
from tests.engine_support import PASSWORD, EngineSetup, engine_config, wait
from tests.test_records import PgServer
from voicebot.call import CallSession
from voicebot.engine import Engine
from voicebot.esl import driver
from voicebot.records import store as store_module
from voicebot.records.model import CallRecord
from voicebot.records.store import open_store

MAX_GAP_S = 0.5  # the bot's packets at another call's ear: the old hub stalls were 1 s (stuck thread) and 5 s (database)
GREETING_FRAMES = 150  # 3 s of the greeting heard before the fault
pg_server = test_records.pg_server  # the session's PostgreSQL server (a fixture)


ENGINE = EngineSetup((44000, 44199))


def silent_caller(seconds: float = 60.0) -> ArrayAudio:
    return ArrayAudio(np.zeros(int(8000 * seconds), np.int16), 8000)


def place(fs: FreeSwitchDouble, engine: Engine) -> str:
    uuid = fs.place_call(engine.server.port, codec="PCMU", rate=8000, caller=silent_caller())
    fs.wait_for(lambda: fs.channel(uuid).unicast_active, timeout=15, what="unicast armed")
    return uuid


def greeting_heard(fs: FreeSwitchDouble, uuid: str) -> None:
    fs.wait_for(lambda: len(fs.channel(uuid).packets_heard()) > GREETING_FRAMES, timeout=15, what="3 s of greeting")


def saved(engine: Engine, uuid: str, timeout: float = 20.0) -> CallRecord:
    """The call's record once the writer has saved it (reads only when no save is in flight)."""
    found: list[CallRecord] = []

    def written() -> bool:
        if not engine.records.idle or engine.store.pending():
            return False
        record = engine.store.get(uuid)
        if record is not None:
            found.append(record)
        return record is not None

    wait(written, timeout, f"the record of {uuid}")
    return found[0]


def max_gap_s(fs: FreeSwitchDouble, uuid: str, since: float, until: float) -> float:
    """The longest time without a packet from the engine at this leg's ear between ``since`` and ``until`` (s)."""
    times = [p.at for p in fs.channel(uuid).packets_heard() if p.source == "engine" and p.at <= until]
    edges = [since, *(t for t in times if t >= since), until]
    return float(np.max(np.diff(edges)))


def assert_complete(record: CallRecord, *, recording: bool = True) -> None:
    """Answered, its path from the greeting on, the bot's lines, and (``recording``) a stereo WAV of the greeting."""
    assert record.answered_at and record.disposition != "not_answered", record
    assert record.path and record.path[0] == "greet", record.path
    assert any(line.speaker == "bot" and line.text for line in record.transcript), record.transcript
    if not recording:
        return
    assert record.recording_path, "the record names its recording"
    with wave.open(record.recording_path, "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        both = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert len(both) >= 2.5 * 8000, f"{len(both) / 8000:.2f} s recorded"
    assert np.abs(both[:, 1]).max() > 3000, "the bot's greeting is on the right channel"
    assert np.abs(both[:, 0]).max() < 1000, "the silent caller is on the left channel"


def hang_up_and_wait(fs: FreeSwitchDouble, engine: Engine, uuid: str) -> None:
    fs.hangup(uuid)
    wait(lambda: engine.metrics.active_calls == 0 and engine.pool.in_use == 0, 15, "the calls are released")


# ---------------------------------------------------------------- the faults


def socket_closed(fs: FreeSwitchDouble, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uuid = place(fs, engine)
    greeting_heard(fs, uuid)
    fs.drop_connection(uuid)
    record = saved(engine, uuid)
    assert record.hangup_cause == "esl_socket_closed", record
    assert_complete(record)


def driver_exception(fs: FreeSwitchDouble, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver raises mid-call (as a failed re-arm after a bridge timeout did): the call's content survives."""
    doomed: set[str] = set()
    real = driver._next_event

    def exploding(call: Any, timeout: float) -> Any:
        if call.uuid in doomed:
            raise RuntimeError("injected: the driver failed")
        return real(call, timeout)

    monkeypatch.setattr(driver, "_next_event", exploding)
    uuid = place(fs, engine)
    greeting_heard(fs, uuid)
    doomed.add(uuid)
    fs.wait_for(lambda: fs.channel(uuid).hung_up, timeout=10, what="the failed call is hung up")
    record = saved(engine, uuid)
    assert "injected" in record.extras.get("error", ""), record.extras
    assert_complete(record)


def wav_write_failure(fs: FreeSwitchDouble, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recordings directory cannot be written (here: it is a file): the record is saved all the same."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    monkeypatch.setattr(engine, "config", dataclasses.replace(engine.config, recordings_dir=blocker))
    uuid = place(fs, engine)
    greeting_heard(fs, uuid)
    hang_up_and_wait(fs, engine, uuid)
    record = saved(engine, uuid)
    assert_complete(record, recording=False)
    assert record.recording_path == "", "no recording is claimed when none could be written"


def database_down(fs: FreeSwitchDouble, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database is locked by someone else for 8 s: records queue, the other call's media never stalls."""
    other = place(fs, engine)
    victim = place(fs, engine)
    greeting_heard(fs, victim)
    blocker = sqlite3.connect(engine.config.records_db, timeout=1, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        down_at = time.monotonic()
        fs.hangup(victim)
        wait(lambda: engine.metrics.active_calls == 1 and engine.store.pending() >= 1, 10,
             "the victim's record waits in the spool")
        wait(lambda: time.monotonic() - down_at > 8, 10, "8 s of outage")  # the hub turns meanwhile: media flows
        assert max_gap_s(fs, other, down_at, time.monotonic()) < MAX_GAP_S
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert_complete(saved(engine, victim))
    hang_up_and_wait(fs, engine, other)
    assert_complete(saved(engine, other))


def stuck_thread(fs: FreeSwitchDouble, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One call's session thread hangs (in its dialog, after a key press): that call's record is saved, the other
    call's media flows. (Synthesis cannot hang it: it runs on its own worker thread since the call core.)"""
    release = threading.Event()
    sessions: list[CallSession] = []

    def hang_on_second_prompt(session: CallSession) -> None:
        sessions.append(session)
        if len(sessions) == 1:
            press = session.dtmf

            def stuck(digit: str, now: float) -> None:
                press(digit, now)
                release.wait(60)
            session.dtmf = stuck  # type: ignore[method-assign]

    engine.on_session = hang_on_second_prompt
    victim = place(fs, engine)
    other = place(fs, engine)
    try:
        greeting_heard(fs, victim)
        fs.press(victim, "1")  # greet → disclosure: its prompt hangs the victim's thread
        wait(lambda: "disclosure" in sessions[0].machine.outcome.path, 10, "the victim's thread takes the key")
        hung_at = time.monotonic()
        fs.hangup(victim)
        record = saved(engine, victim)
        assert max_gap_s(fs, other, hung_at, time.monotonic()) < MAX_GAP_S
        assert record.extras.get("thread_stuck") is True, record.extras
        assert list(record.path)[:2] == ["greet", "disclosure"], record.path
        assert_complete(record)
    finally:
        release.set()
    hang_up_and_wait(fs, engine, other)
    assert_complete(saved(engine, other))


def engine_sigterm(fs: FreeSwitchDouble, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM mid-call: the shutdown ends the call and the record writer saves its record before the engine stops."""
    with FreeSwitchDouble(password=PASSWORD) as fs2:
        config = engine_config(fs2.inbound_port, tmp_path, (44200, 44299), shutdown_deadline_s=1)
        eng = Engine(config)
        eng.pipelines = engine.pipelines  # the models are loaded once per process in tests too
        eng.load()
        serving = gevent.spawn(eng.serve_forever)
        try:
            wait(lambda: hasattr(eng, "http") and eng.inbound.up, 10, "the engine serves")
            uuid = place(fs2, eng)
            greeting_heard(fs2, uuid)
            os.kill(os.getpid(), signal.SIGTERM)
            serving.join(timeout=30)
            assert serving.dead, "the engine stops after SIGTERM"
        finally:
            serving.kill()
        with open_store(config.records_db) as store:
            record = store.get(uuid)
    assert record is not None, "the cut-off call's record was saved before the engine stopped"
    assert_complete(record)


FAULTS = [socket_closed, driver_exception, wav_write_failure, database_down, stuck_thread, engine_sigterm]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.__name__ for f in FAULTS])
def test_every_answered_call_keeps_its_record(fault: Callable[..., None], fs: FreeSwitchDouble, engine: Engine,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fault(fs, engine, tmp_path, monkeypatch)
    wait(lambda: engine.metrics.active_calls == 0 and engine.pool.in_use == 0, 15, "the calls are released")
    fs.assert_no_crash()


def test_the_recording_streams_to_disk_as_the_call_goes(fs: FreeSwitchDouble, engine: Engine) -> None:
    """Defect 10: the whole call was held in memory until the hang-up (~115 MB for an hour at 8 kHz)."""
    uuid = place(fs, engine)
    greeting_heard(fs, uuid)
    fs.wait_for(lambda: len(fs.channel(uuid).packets_heard()) > 250, timeout=15, what="5 s of the call")
    path = engine.config.recordings_dir / f"{uuid}.wav"
    assert path.exists(), "the recording is on disk while the call is up"
    with wave.open(str(path), "rb") as w:
        so_far = w.getnframes()
    assert so_far >= 3 * 8000, f"{so_far / 8000:.2f} s on disk after 5 s of call"
    hang_up_and_wait(fs, engine, uuid)
    assert_complete(saved(engine, uuid))


class Blackhole:
    """A TCP relay to PostgreSQL that can go dark: while down it drops every relayed connection and accepts new
    ones without ever answering, so a client waits out its whole connect timeout (5 s for the records store)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.up = target, True
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, name="blackhole", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(client)
            if self.up:
                server = socket.create_connection(self.target)
                self.conns.append(server)
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            s.close()

    def go_down(self) -> None:
        self.up = False
        for conn in self.conns:
            conn.close()
        self.conns.clear()

    def close(self) -> None:
        self.listener.close()
        self.go_down()


def test_a_postgres_outage_delays_records_never_media(fs: FreeSwitchDouble, engine: Engine, tmp_path: Path,
                                                      pg_server: PgServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect 5: with PostgreSQL unreachable (connects hang for their 5 s timeout) the hang-up's save froze every
    call's media; now records wait in the spool and land when the database is back."""
    url = urlsplit(pg_server.require())
    schema = "t_" + os.urandom(6).hex()
    import psycopg

    with psycopg.connect(urlunsplit(url), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    relay = Blackhole((url.hostname or "127.0.0.1", url.port or 5432))
    netloc = url.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{relay.port}" if "@" in url.netloc else f"127.0.0.1:{relay.port}"
    query = (url.query + "&" if url.query else "") + f"options=-csearch_path%3D{schema}"
    monkeypatch.setenv(store_module.SPOOL_ENV, str(tmp_path / "spool"))
    relayed = urlunsplit(url._replace(netloc=netloc, query=query))
    config = engine_config(fs.inbound_port, tmp_path, (44300, 44399), records_db=relayed)
    eng = Engine(config)
    eng.pipelines = engine.pipelines
    try:
        eng.load()
        eng.start()
        assert eng.inbound.wait_up(10)
        first, victim = place(fs, eng), place(fs, eng)
        greeting_heard(fs, victim)
        relay.go_down()
        other = place(fs, eng)
        fs.hangup(first)  # its save finds the connection dead (fast), and the store waits retry_after_s (5 s)
        wait(lambda: eng.metrics.active_calls == 2 and eng.store.pending() >= 1, 15, "the first record is spooled")
        failed_at = time.monotonic()
        wait(lambda: time.monotonic() - failed_at > 6, 10, "the store's retry_after_s")
        hung_at = time.monotonic()
        fs.hangup(victim)  # its save reconnects: the connect hangs for its whole 5 s timeout
        wait(lambda: eng.metrics.active_calls == 1 and eng.store.pending() >= 2, 15, "the victim's record is spooled")
        wait(lambda: time.monotonic() - hung_at > 6, 15, "the reconnect times out")  # the hub turns meanwhile
        assert max_gap_s(fs, other, hung_at, time.monotonic()) < MAX_GAP_S
        relay.up = True
        assert_complete(saved(eng, victim, timeout=30))
        assert_complete(saved(eng, first))
        hang_up_and_wait(fs, eng, other)
        assert_complete(saved(eng, other, timeout=30))
    finally:
        eng.shutdown()
        relay.close()
        with psycopg.connect(urlunsplit(url), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
