"""Call records: the record built from a real call, both stores (SQLite and a real PostgreSQL), the spool, the CLI.

The PostgreSQL server is started by scripts/postgres-test.sh for the session
(or taken from $VOICEBOT_TEST_PG_URL). Without PostgreSQL binaries the
postgres tests fail: scripts/setup.sh installs them.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.dialog_fixtures import screening_flow
from voicebot.dialog import events as ev
from voicebot.records import cli as records_cli
from voicebot.records import store as store_module
from voicebot.records.model import UNFINISHED, CallRecord, TranscriptLine, percentile, record_from_call, summarize
from voicebot.records.store import PostgresStore, SpooledStore, SqliteStore, StoreError, open_store
from voicebot.sim.text import END_SILENCE_S, CallerAction, TextCall
from voicebot.timeline import Timeline

ROOT = Path(__file__).resolve().parent.parent
PG_SCRIPT = ROOT / "scripts" / "postgres-test.sh"
PG_ENV = "VOICEBOT_TEST_PG_URL"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC).timestamp()
CALLER = "+14155550100"


# ------------------------------------------------------------------ PostgreSQL


@dataclass
class PgServer:
    """The session's PostgreSQL server, or why there is none."""

    url: str = ""
    missing: str = ""

    def require(self) -> str:
        if self.missing:
            pytest.fail(self.missing)
        if importlib.util.find_spec("psycopg") is None:
            pytest.fail("the PostgreSQL driver psycopg (3) is not installed: run scripts/setup.sh")
        return self.url


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL: $VOICEBOT_TEST_PG_URL, else a throwaway one from scripts/postgres-test.sh."""
    if os.environ.get(PG_ENV):
        yield PgServer(os.environ[PG_ENV])
        return
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        yield PgServer(missing="PostgreSQL server binaries are not installed (no /usr/lib/postgresql/*/bin/initdb): "
                               f"run scripts/setup.sh, or set {PG_ENV} to a test server's URL")
        return
    directory = tempfile.mkdtemp(prefix="voicebot-pg-")
    done = subprocess.run([str(PG_SCRIPT), "start", directory], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        subprocess.run([str(PG_SCRIPT), "stop", directory], capture_output=True, timeout=60)
        yield PgServer(missing=f"scripts/postgres-test.sh failed ({done.returncode}): {done.stderr.strip()}")
        return
    try:
        yield PgServer(done.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run([str(PG_SCRIPT), "stop", directory], capture_output=True, timeout=60)


def _with_search_path(url: str, schema: str) -> str:
    return url + ("&" if "?" in url else "?") + "options=" + quote(f"-csearch_path={schema}")


# ---------------------------------------------------------------- store fixture


@dataclass
class Backend:
    """Opens stores of one kind on one fresh database (a temp SQLite file, or a fresh PostgreSQL schema)."""

    kind: str
    tmp: Path
    pg: PgServer
    opened: list[SpooledStore] = field(default_factory=list)
    schema: str = ""

    @property
    def location(self) -> str:
        if self.kind == "sqlite":
            return str(self.tmp / "calls.sqlite")
        if not self.schema:
            import psycopg

            schema = "t_" + uuid.uuid4().hex[:12]
            with psycopg.connect(self.pg.require(), autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            self.schema = schema
        return _with_search_path(self.pg.require(), self.schema)

    def open(self, spool: str = "spool", **options: Any) -> SpooledStore:
        store: SpooledStore
        if self.kind == "sqlite":
            store = SqliteStore(self.location, spool_dir=self.tmp / spool, **options)
        else:
            store = PostgresStore(self.location, spool_dir=self.tmp / spool, **{"retry_after_s": 0.0, **options})
        self.opened.append(store)
        return store

    @property
    def down_error(self) -> type[Exception]:
        if self.kind == "sqlite":
            return sqlite3.OperationalError
        import psycopg

        return psycopg.OperationalError

    def cleanup(self) -> None:
        for store in self.opened:
            store.close()
        if self.schema:
            import psycopg

            with psycopg.connect(self.pg.url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {self.schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, pg_server: PgServer) -> Iterator[Backend]:
    b = Backend(request.param, tmp_path, pg_server)
    yield b
    b.cleanup()


class LogRecorder:
    """Stands in for the records logger: keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **fields: self.events.append((level, event, fields))

    def names(self) -> list[str]:
        return [event for _, event, _ in self.events]


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> LogRecorder:
    recorder = LogRecorder()
    monkeypatch.setattr(store_module, "log", recorder)
    return recorder


def make_record(n: int = 0, **changes: Any) -> CallRecord:
    record = CallRecord(
        call_id=str(uuid.UUID(int=n + 1)), flow_id="screening", flow_version="1", caller=CALLER, callee="+14155550199",
        started_at=_iso(T0 + 60 * n), answered_at=_iso(T0 + 60 * n + 2), ended_at=_iso(T0 + 60 * n + 47),
        duration_s=45.0, disposition="not_interested", hangup_cause="NORMAL_CLEARING",
        path=("greet", "pitch", "bye_not_interested"), tags=("confirmed", "not_interested"), level="D",
        slots={"callback_time": "明天 3pm"}, variables={"name": "Ann Lee"},
        transcript=(TranscriptLine(0.1, "bot", "Hi, is this Ann?", node="greet", heard_ms=1500),
                    TranscriptLine(2.4, "caller", "yes, speaking", intent="yes", score=0.95, node="greet")),
        latency={"response_ms": [620], "summary": {"response_ms": {"n": 1, "p50": 620, "p95": 620, "max": 620}}},
        recording_path=f"/var/lib/voicebot/recordings/{n}.wav", extras={"agent_id": "agent-7", "handoff": {"bridge_ms": 80}},
    )
    return replace(record, **changes)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ----------------------------------------------------------------- store tests


def test_save_get_round_trip(backend: Backend) -> None:
    store = backend.open()
    record = make_record()
    assert store.save(record) is True
    assert store.get(record.call_id) == record
    assert store.get(str(uuid.uuid4())) is None
    assert store.pending() == 0


def test_save_is_an_upsert_and_a_stale_save_never_overwrites(backend: Backend) -> None:
    store = backend.open()
    first = make_record(disposition="unfinished")
    final = make_record(disposition="transferred", tags=("interested",))
    assert store.save(first) and store.save(final)
    assert store.get(first.call_id) == final
    assert [r.call_id for r in store.list()] == [first.call_id]
    store._write(first, saved_at=time.time() - 3600)  # an old spool entry replayed late
    assert store.get(first.call_id) == final


def test_list_newest_first_with_filters(backend: Backend) -> None:
    store = backend.open()
    records = [
        make_record(0, disposition="not_interested", tags=("confirmed", "not_interested")),
        make_record(1, disposition="transferred", tags=("interested",)),
        make_record(2, disposition="no_answer", tags=()),
        make_record(3, disposition="transferred", tags=("interested", "vip")),
        make_record(4, disposition="callback", tags=("interest",)),
    ]
    for record in records:
        assert store.save(record)
    ids = [r.call_id for r in records]
    assert [r.call_id for r in store.list()] == ids[::-1]
    assert [r.call_id for r in store.list(limit=2)] == [ids[4], ids[3]]
    assert [r.call_id for r in store.list(disposition="transferred")] == [ids[3], ids[1]]
    assert [r.call_id for r in store.list(tag="interested")] == [ids[3], ids[1]], "whole tags only, not substrings"
    assert [r.call_id for r in store.list(tag="vip", disposition="transferred")] == [ids[3]]
    since = datetime.fromtimestamp(T0 + 120, UTC)
    for form in (since, since.isoformat(), T0 + 120, "2025-03-01T10:02:00+01:00"):
        assert [r.call_id for r in store.list(since=form)] == [ids[4], ids[3], ids[2]], form
    assert store.list(disposition="nothing") == []
    assert store.find_ids(ids[2]) == [ids[2]]
    assert len(store.find_ids("00000000")) == 5


def test_concurrent_saves_from_8_threads_lose_nothing(backend: Backend) -> None:
    store = backend.open()
    per_thread, errors = 25, []

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                assert store.save(make_record(t * 1000 + i))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(store.list(limit=1000)) == 8 * per_thread
    assert store.pending() == 0


def test_crash_between_spool_and_commit_is_recovered(backend: Backend) -> None:
    """A real crash: a child process spools a record and dies (os._exit) before the database write."""
    record = make_record(7)
    options = "" if backend.kind == "sqlite" else ", retry_after_s=0.0"
    cls = "SqliteStore" if backend.kind == "sqlite" else "PostgresStore"
    child = textwrap.dedent(f"""
        import os, sys
        from voicebot.records import store
        from voicebot.records.model import CallRecord
        s = store.{cls}(sys.argv[1], spool_dir=sys.argv[2]{options})
        store.{cls}._write = lambda *a, **k: os._exit(17)
        s.save(CallRecord.from_json(sys.argv[3]))
    """)
    done = subprocess.run([sys.executable, "-c", child, backend.location, str(backend.tmp / "spool"), record.to_json()],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 17, done.stderr
    store = backend.open()
    assert store.get(record.call_id) is None and store.pending() == 1
    assert store.recover() == 1
    assert store.get(record.call_id) == record and store.pending() == 0


def test_failing_database_defers_then_next_save_commits(backend: Backend, monkeypatch: pytest.MonkeyPatch,
                                                        logged: LogRecorder) -> None:
    store = backend.open()
    first, second = make_record(1), make_record(2)

    def down(*_: Any, **__: Any) -> None:
        raise backend.down_error("server closed the connection unexpectedly")

    monkeypatch.setattr(store, "_write", down)
    assert store.save(first) is False, "a hang-up never raises: the record waits in the spool"
    assert store.pending() == 1 and "records.deferred" in logged.names()
    deferred = next(fields for _, event, fields in logged.events if event == "records.deferred")
    assert deferred["call_id"] == first.call_id
    assert CALLER not in json.dumps(deferred, default=str), "no personal data in log fields"
    monkeypatch.undo()
    monkeypatch.setattr(store_module, "log", logged)
    assert store.get(first.call_id) is None
    assert store.save(second) is True
    assert store.get(first.call_id) == first and store.get(second.call_id) == second
    assert store.pending() == 0


def test_failing_database_then_recover_at_start(backend: Backend, monkeypatch: pytest.MonkeyPatch, logged: LogRecorder) -> None:
    store = backend.open()
    records = [make_record(n) for n in range(3)]
    monkeypatch.setattr(store, "_write", lambda *_: (_ for _ in ()).throw(backend.down_error("down")))
    assert [store.save(r) for r in records] == [False, False, False]
    store.close()
    restarted = backend.open()
    assert restarted.pending() == 3
    assert restarted.recover() == 3
    assert [r.call_id for r in restarted.list()] == [r.call_id for r in records[::-1]]
    assert restarted.pending() == 0 and "records.recovered" in logged.names()


def test_a_bad_record_does_not_block_the_others(backend: Backend, logged: LogRecorder) -> None:
    store = backend.open()
    with store.spool.locked():
        store.spool.append({"id": "bad", "saved_at": 1.0, "record": {"no": "call id"}})
    assert store.save(make_record(1)) is True, "an unreadable spool entry stays, the rest goes through"
    assert store.pending() == 1 and store.get(make_record(1).call_id) is not None


def test_odd_extras_are_stored_as_text(backend: Backend) -> None:
    store = backend.open()
    record = make_record(extras={"when": datetime(2025, 3, 1, tzinfo=UTC), "file": Path("/rec/1.wav")})
    assert store.save(record) is True
    assert store.get(record.call_id).extras == {"when": "2025-03-01 00:00:00+00:00", "file": "/rec/1.wav"}  # type: ignore[union-attr]


def test_nul_characters_and_unicode_survive(backend: Backend) -> None:
    store = backend.open()
    record = make_record(transcript=(TranscriptLine(1.0, "caller", "好的\x00 ok ✓", intent="yes"),))
    assert store.save(record)
    text = store.get(record.call_id).transcript[0].text  # type: ignore[union-attr]
    assert text.replace("\x00", "") == "好的 ok ✓"


def test_corrupt_spool_line_is_quarantined_not_lost(backend: Backend, logged: LogRecorder) -> None:
    store = backend.open()
    entry = {"id": "e1", "saved_at": time.time(), "record": make_record(3).to_dict()}
    store.spool.dir.mkdir(parents=True, exist_ok=True)
    store.spool.file.write_text(json.dumps(entry) + "\n" + '{"id": "e2", "saved_at": 1, "rec')  # cut short by a crash
    assert store.recover() == 1
    assert store.get(make_record(3).call_id) is not None
    assert store.pending() == 0
    assert '"rec' in (store.spool.dir / "corrupt.jsonl").read_text()
    assert "records.spool_corrupt" in logged.names()
    assert store.save(make_record(4)) and store.pending() == 0


def test_save_never_raises_even_without_spool_or_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          logged: LogRecorder) -> None:
    (tmp_path / "file").write_text("")
    store = SqliteStore(tmp_path / "calls.sqlite", spool_dir=tmp_path / "file" / "spool")
    assert store.save(make_record(1)) is True, "no spool: straight to the database"
    monkeypatch.setattr(store, "_write", lambda *_: (_ for _ in ()).throw(sqlite3.OperationalError("disk I/O error")))
    assert store.save(make_record(2)) is False
    lost = next(fields for _, event, fields in logged.events if event == "records.lost")
    assert set(lost) == {"call_id", "backend", "pii"}, "the record itself only under pii"
    store.close()


# ------------------------------------------------------------------ SQLite only


def test_sqlite_wal_mode_schema_version_and_spool_beside(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    store = SqliteStore(path)
    assert store.save(make_record())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store_module.SQLITE_MIGRATIONS)
    assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert store.spool.dir == tmp_path / "calls.sqlite.spool"
    conn.close()
    store.close()


def test_sqlite_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    sqlite3.connect(path).execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(path)


def test_sqlite_locked_database_defers_then_commits(tmp_path: Path, logged: LogRecorder) -> None:
    path = tmp_path / "calls.sqlite"
    store = SqliteStore(path, spool_dir=tmp_path / "spool", timeout_s=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the database
    started = time.monotonic()
    assert store.save(make_record(1)) is False
    assert time.monotonic() - started < 3
    assert store.pending() == 1 and "records.deferred" in logged.names()
    other.execute("ROLLBACK")
    assert store.save(make_record(2)) is True
    assert {r.call_id for r in store.list()} == {make_record(1).call_id, make_record(2).call_id}
    other.close()
    store.close()


def test_open_store_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plain = open_store(tmp_path / "a.sqlite")
    relative = open_store("sqlite:///b.sqlite")
    absolute = open_store(f"sqlite:///{tmp_path}/c.sqlite")
    assert isinstance(plain, SqliteStore) and isinstance(relative, SqliteStore) and isinstance(absolute, SqliteStore)
    assert relative.path == Path("b.sqlite") and absolute.path == tmp_path / "c.sqlite"
    for store in (plain, relative, absolute):
        store.close()
    with pytest.raises(ValueError, match="unknown records database"):
        open_store("mysql://u:secret@host/db")
    with pytest.raises(ValueError) as info:
        open_store("mysql://u:secret@host/db")
    assert "secret" not in str(info.value)


def test_open_store_postgres_url(tmp_path: Path, pg_server: PgServer) -> None:
    store = open_store(pg_server.require(), spool_dir=tmp_path / "pg-spool")
    assert isinstance(store, PostgresStore) and store.pending() == 0
    store.close()


# -------------------------------------------------------------- PostgreSQL only


def test_postgres_outage_loses_nothing(tmp_path: Path, pg_server: PgServer, logged: LogRecorder) -> None:
    url = pg_server.require()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"postgresql://voicebot@127.0.0.1:{s.getsockname()[1]}/voicebot"
    down = PostgresStore(dead, spool_dir=tmp_path / "spool", connect_timeout_s=1)
    assert "records.db_unavailable" in logged.names(), "the engine starts while the database is down"
    records = [make_record(n + 20) for n in range(3)]
    assert [down.save(r) for r in records] == [False, False, False]
    assert down.pending() == 3
    with pytest.raises(StoreError):
        down.list()
    down.close()
    schema = "t_" + uuid.uuid4().hex[:12]
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        up = PostgresStore(_with_search_path(url, schema), spool_dir=tmp_path / "spool")
        assert up.recover() == 3 and up.pending() == 0
        assert {r.call_id for r in up.list()} == {r.call_id for r in records}
        up.close()
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_postgres_columns_are_native_types(tmp_path: Path, pg_server: PgServer) -> None:
    backend = Backend("postgres", tmp_path, pg_server)
    try:
        _check_native_types(backend)
    finally:
        backend.cleanup()


def _check_native_types(backend: Backend) -> None:
    store = backend.open()
    assert store.save(make_record())
    import psycopg

    with psycopg.connect(backend.location) as conn:
        row = conn.execute("SELECT started_at, tags, extras->>'agent_id', record->>'caller', "
                           "(SELECT version FROM schema_versions WHERE component = 'call_records') FROM call_records").fetchone()
    assert row is not None
    assert row[0] == datetime.fromtimestamp(T0, UTC) and row[1] == ["confirmed", "not_interested"]
    assert row[2] == "agent-7" and row[3] == CALLER and row[4] == len(store_module.POSTGRES_MIGRATIONS)


# ----------------------------------------------------------- record_from_call


def run_text_call(actions: list[CallerAction], *, finish: bool = True, variables: dict[str, str] | None = None
                  ) -> tuple[TextCall, Timeline]:
    """Run a text call and keep a timeline of it, with the entry kinds CallSession writes."""
    call = TextCall(screening_flow(), variables or {"name": "Ann"})
    timeline = Timeline()
    handle = call.machine.handle

    def recording(event: ev.Event, now: float) -> list[ev.Command]:
        _note_event(timeline, event)
        commands = handle(event, now)
        for command in commands:
            _note_command(timeline, command, now, event)
        return commands

    call.machine.handle = recording  # type: ignore[method-assign]
    call.start()
    for action in actions:
        if not call.ended:
            call.act(action)
    if finish:
        call.finish()
    return call, timeline


def _note_event(timeline: Timeline, event: ev.Event) -> None:
    match event:
        case ev.SpeechStarted(at=at):
            timeline.add(at, "speech_start")
        case ev.Transcript(at=at, text=text, final=True):
            timeline.add(at - END_SILENCE_S, "speech_end", reason="silence")
            timeline.add(at, "final", text=text, confidence=1.0, compute_ms=0)
        case ev.Transcript(at=at, text=text):
            timeline.add(at, "partial", text=text)
        case ev.PromptStarted(at=at, play_id=play_id):
            timeline.add(at, "prompt_start", play_id=play_id)
        case ev.PromptFinished(at=at, play_id=play_id, interrupted=interrupted, heard_ms=heard_ms):
            timeline.add(at, "prompt_end", play_id=play_id, interrupted=interrupted, heard_ms=heard_ms)
        case ev.Dtmf(at=at, digit=digit):
            timeline.add(at, "dtmf", digit=digit)


def _note_command(timeline: Timeline, command: ev.Command, now: float, cause: ev.Event) -> None:
    match command:
        case ev.Play(play_id=play_id, node=node, text=text):
            timeline.add(now, "play", play_id=play_id, node=node, text=text, cached=False, tts_first_ms=35)
        case ev.StopPlayback(play_id=play_id) if isinstance(cause, (ev.SpeechStarted, ev.Transcript, ev.TimerFired)):
            timeline.add(now, "pause", play_id=play_id)
        case ev.HangUp(disposition=disposition):
            timeline.add(now, "hangup", disposition=disposition)


def test_record_from_a_real_call() -> None:
    call, timeline = run_text_call([
        CallerAction("say", "yes, speaking"),
        CallerAction("barge", "no, not interested", at_ms=900),
    ])
    outcome = call.machine.outcome
    assert outcome.disposition == "not_interested"
    record = record_from_call(str(uuid.uuid4()), outcome, timeline, flow_id="screening", flow_version="1",
                              caller=CALLER, callee="+14155550199", started_wall=T0, answered_wall=T0 + 2.5,
                              recording_path="/rec/x.wav", hangup_cause="NORMAL_CLEARING", extras={"campaign": "spring"})
    assert record.disposition == "not_interested" and record.hangup_cause == "NORMAL_CLEARING"
    assert record.path == ("greet", "pitch", "bye_not_interested")
    assert record.tags == ("confirmed", "not_interested") and record.level == "D"
    assert record.variables == {"name": "Ann"} and record.caller == CALLER
    assert record.started_at == "2025-03-01T09:00:00.000Z" and record.answered_at == "2025-03-01T09:00:02.500Z"
    assert outcome.ended_at is not None and outcome.started_at is not None
    assert record.duration_s == pytest.approx(outcome.ended_at - outcome.started_at, abs=1e-3)
    assert record.ended_at is not None
    ended = datetime.fromisoformat(record.ended_at.replace("Z", "+00:00")).timestamp()
    assert ended == pytest.approx(T0 + 2.5 + record.duration_s, abs=0.002)
    assert record.extras["campaign"] == "spring" and record.extras["notifications"] == ["call_outcome"]

    bot = [line for line in record.transcript if line.speaker == "bot"]
    said = [line for line in record.transcript if line.speaker == "caller"]
    assert [line.text for line in bot] == ["Hi, is this Ann?", "We have a new savings plan. Interested?", "Thanks, goodbye."]
    assert [line.node for line in bot] == ["greet", "pitch", "bye_not_interested"]
    assert bot[1].barge_in and bot[1].heard_ms is not None and not bot[0].barge_in, "the pitch was cut short"
    assert [(line.text, line.intent) for line in said] == [("yes, speaking", "yes"), ("no, not interested", "no")]
    assert said[1].barge_in and said[0].score > 0
    times = [line.t for line in record.transcript]
    assert times == sorted(times) and times[0] == 0.0, "seconds since answer"

    latency = record.latency
    assert len(latency["response_ms"]) == len(latency["asr_final_ms"]) == 2
    assert all(ms is not None and ms >= 0 for ms in latency["response_ms"])
    assert latency["asr_final_ms"] == [round(END_SILENCE_S * 1000)] * 2
    assert len(latency["barge_in_ms"]) == 1 and latency["tts_first_ms"] == [35, 35, 35]
    assert latency["summary"]["response_ms"]["n"] == 2 and latency["summary"]["response_ms"]["p95"] is not None
    assert CallRecord.from_json(record.to_json()) == record


def test_record_of_a_call_cut_off_mid_dialog() -> None:
    """The engine stopped (or FreeSWITCH died) while the bot listened: the record still says what happened."""
    call, timeline = run_text_call([CallerAction("say", "yes")], finish=False)
    record = record_from_call("c-1", call.machine.outcome, timeline, flow_id="screening", caller=CALLER, callee="",
                              started_wall=T0, ended_wall=T0 + 30, recording_path="")
    assert record.disposition == UNFINISHED and record.ended_at == _iso(T0 + 30) and record.duration_s == 30.0
    assert record.path == ("greet", "pitch") and [line.speaker for line in record.transcript] == ["bot", "caller", "bot"]


def test_record_without_timeline_uses_the_outcome() -> None:
    call, _ = run_text_call([CallerAction("dtmf", "2")])
    record = record_from_call("c-2", call.machine.outcome, None, flow_id="screening", caller=CALLER, callee="",
                              started_wall=T0)
    assert record.disposition == "wrong_person"
    assert [(line.speaker, line.dtmf) for line in record.transcript] == [("bot", ""), ("caller", "2"), ("bot", "")]
    assert record.latency["response_ms"] == [] and record.latency["summary"]["response_ms"]["p50"] is None


def test_from_json_tolerates_old_and_new_records() -> None:
    old = CallRecord.from_json('{"call_id": "x", "disposition": "no_answer"}')
    assert old.disposition == "no_answer" and old.transcript == () and old.extras == {}
    newer = CallRecord.from_json(json.dumps({**make_record().to_dict(), "record_version": 9, "agent_group": "sales"}))
    assert newer == make_record()
    with pytest.raises(ValueError):
        CallRecord.from_json('{"disposition": "x"}')


def test_percentiles() -> None:
    assert percentile([100.0], 95) == 100
    assert percentile([100.0, 200.0, 300.0, 400.0], 50) == 250
    assert summarize([None, 400, 100, 300, 200]) == {"n": 4, "p50": 250, "p95": 385, "max": 400}
    assert summarize([None]) == {"n": 0, "p50": None, "p95": None, "max": None}


# ------------------------------------------------------------------------ CLI


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="voicebot")
    sub = parser.add_subparsers()
    records_cli.register(sub)
    args = parser.parse_args(argv)
    code = args.run(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cli_db(tmp_path: Path) -> Iterator[tuple[str, CallRecord]]:
    call, timeline = run_text_call([CallerAction("say", "yes, speaking"), CallerAction("say", "no")])
    record = record_from_call("3f2a9c1e-1111-4222-8333-444455556666", call.machine.outcome, timeline,
                              flow_id="screening", caller=CALLER, callee="+14155550199", started_wall=T0,
                              recording_path="/rec/3f2a9c1e.wav")
    db = str(tmp_path / "calls.sqlite")
    with SqliteStore(db) as store:
        assert store.save(record)
        assert store.save(make_record(5, disposition="transferred", tags=("interested",)))
    yield db, record


def test_cli_lists_calls_with_masked_numbers(cli_db: tuple[str, CallRecord], capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = cli_db
    code, out, _ = run_cli(["calls", "--db", db], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("STARTED (UTC)") and len(lines) == 3
    mine = next(line for line in lines if "3f2a9c1e" in line)
    assert "+1415****100" in mine and CALLER not in out
    assert "2025-03-01 09:00:00" in mine and "not_interested" in mine and " D " in mine and "confirmed,not_interested" in mine
    code, out, _ = run_cli(["calls", "--db", db, "--disposition", "transferred", "--show-pii"], capsys)
    assert code == 0 and len(out.splitlines()) == 2 and CALLER in out and "3f2a9c1e" not in out
    code, out, _ = run_cli(["calls", "--db", db, "--tag", "nothing"], capsys)
    assert code == 0 and out.strip() == "no calls"


def test_cli_uses_voicebot_db_env(cli_db: tuple[str, CallRecord], capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBOT_DB", cli_db[0])
    code, out, _ = run_cli(["calls", "--limit", "1"], capsys)
    assert code == 0 and len(out.splitlines()) == 2


def test_cli_show_prints_transcript_and_latency(cli_db: tuple[str, CallRecord], capsys: pytest.CaptureFixture[str]) -> None:
    db, record = cli_db
    code, out, _ = run_cli(["calls", "show", "3f2a9c1e", "--db", db], capsys)
    assert code == 0
    assert record.call_id in out and "+1415****100" in out and CALLER not in out
    assert "name=***" in out and "Ann" not in out.split("transcript")[0]
    assert "greet > pitch > bye_not_interested" in out and "/rec/3f2a9c1e.wav" in out
    assert "BOT    Hi, is this Ann?" in out
    assert "CALLER yes, speaking  (yes " in out and "CALLER no  (no " in out
    first = next(line for line in out.splitlines() if "Hi, is this Ann?" in line)
    assert first.strip().startswith("[    0.00s]")
    assert "response_ms" in out and "p50" in out and "asr_final_ms" in out


def test_cli_show_json(cli_db: tuple[str, CallRecord], capsys: pytest.CaptureFixture[str]) -> None:
    db, record = cli_db
    code, out, _ = run_cli(["calls", "--db", db, "show", record.call_id, "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["caller"] == "+1415****100" and data["variables"] == {"name": "***"}
    assert data["transcript"][0]["speaker"] == "bot" and data["latency"]["summary"]["response_ms"]["n"] == 2
    code, out, _ = run_cli(["calls", "show", record.call_id, "--json", "--show-pii", "--db", db], capsys)
    assert CallRecord.from_json(out) == record


def test_cli_errors(cli_db: tuple[str, CallRecord], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = cli_db
    code, _, err = run_cli(["calls", "--db", str(tmp_path / "none.sqlite")], capsys)
    assert code == 2 and "no records database" in err and not (tmp_path / "none.sqlite").exists()
    code, _, err = run_cli(["calls", "show", "ffffffff", "--db", db], capsys)
    assert code == 2 and "no call" in err
    code, _, err = run_cli(["calls", "show", "0000", "--db", db], capsys)
    assert code == 0, err


def test_cli_since_filter(cli_db: tuple[str, CallRecord], capsys: pytest.CaptureFixture[str]) -> None:
    db, _ = cli_db
    later = (datetime.fromtimestamp(T0, UTC) + timedelta(minutes=1)).isoformat()
    code, out, _ = run_cli(["calls", "--db", db, "--since", later], capsys)
    assert code == 0 and "3f2a9c1e" not in out and len(out.splitlines()) == 2


def test_show_lines_include_the_handoff_and_the_record_round_trips_it() -> None:
    from voicebot.records.cli import show_lines

    handoff = {"group": "advisors", "agent_id": "sam", "mode": "talk", "outcome": "connected", "prepare_at": 1.5,
               "transfer_at": 9.0, "connected_at": 9.021, "agent_left_at": None, "handoff_ms": 21.0,
               "attempts": [{"agent": "ana", "result": "USER_BUSY"}]}
    record = CallRecord(call_id="c1", handoff=handoff)
    assert CallRecord.from_json(record.to_json()).handoff == handoff
    text = "\n".join(show_lines(record))
    assert "agent sam (advisors), mode talk, outcome connected, decision to connected 21 ms" in text
    assert "at prepare 1.500, transfer 9.000, connected 9.021" in text and "tried ana: USER_BUSY" in text
    assert "handoff" not in "\n".join(show_lines(CallRecord(call_id="c2")))
