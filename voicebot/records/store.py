"""Call record stores: SQLite (default, embedded, WAL) and PostgreSQL (by URL), behind a spool that never loses a record.

``save(record)`` first appends the record as one fsync'ed JSON line to
``<spool_dir>/pending.jsonl``, then upserts it (by ``call_id``) into the
database and removes it from the spool once committed. When the database
write fails the record stays in the spool, ``records.deferred`` is logged and
``save`` returns False: a hang-up never raises because the database is down.
Pending entries are retried on the next ``save`` and by ``recover()`` (call it
once at start; :func:`open_store` does). No background threads.

Threads may share a store (a lock per store); processes may share a spool
directory (``flock``). A stale save never overwrites a newer one: rows carry
``saved_at`` and the upsert keeps the newest.

Schema (one table, the same in both backends; versioned by ``PRAGMA
user_version`` in SQLite and the ``schema_versions`` table in PostgreSQL; add
a function to ``SQLITE_MIGRATIONS``/``POSTGRES_MIGRATIONS`` to migrate)::

    call_records(call_id PK, started_at, ended_at, flow_id, flow_version, caller, callee,
                 duration_s, disposition, level, tags, extras, record, saved_at)

``record`` is the whole :class:`CallRecord` as JSON (JSONB in PostgreSQL);
the other columns exist for listing and filtering.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar
from urllib.parse import urlsplit, urlunsplit

from voicebot.logs import get_logger
from voicebot.records.model import CallRecord, iso_utc, parse_iso

if TYPE_CHECKING:
    import psycopg

log = get_logger("records")

Since: TypeAlias = datetime | str | float | None  # a datetime, an ISO 8601 string or epoch seconds
Records: TypeAlias = list[CallRecord]
Ids: TypeAlias = list[str]
_T = TypeVar("_T")
SPOOL_ENV = "VOICEBOT_SPOOL_DIR"
PENDING, CORRUPT, LOCK = "pending.jsonl", "corrupt.jsonl", "pending.lock"
COLUMNS = ("call_id", "started_at", "ended_at", "flow_id", "flow_version", "caller", "callee", "duration_s",
           "disposition", "level", "tags", "extras", "record", "saved_at")


class StoreError(Exception):
    """The records database cannot answer (reads only: saves never raise)."""


class RecordStore(Protocol):
    """Where call records go. ``save`` never raises; True when committed, False when left in the spool."""

    def save(self, record: CallRecord) -> bool: ...

    def get(self, call_id: str) -> CallRecord | None: ...

    def list(self, limit: int = 50, since: Since = None, disposition: str | None = None,
             tag: str | None = None) -> Records: ...

    def recover(self) -> int: ...

    def pending(self) -> int: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------ the spool


class Spool:
    """Pending records in ``directory``, one JSON line each. Use every method but :meth:`count` inside :meth:`locked`.

    A line left half-written by a crash is moved to ``corrupt.jsonl``, never dropped.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.file = directory / PENDING
        self._lock = threading.Lock()

    @contextmanager
    def locked(self) -> Iterator[bool]:
        """Hold the spool against other threads and processes; yields False when its directory is unusable."""
        with self._lock:
            fd = self._open_lock()
            try:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                yield fd is not None
            finally:
                if fd is not None:
                    os.close(fd)

    def _open_lock(self) -> int | None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            return os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.error("records.spool_failed", op="lock", error=type(exc).__name__, detail=str(exc))
            return None

    def append(self, entry: dict[str, Any]) -> bool:
        """Append one entry and fsync it; False when the disk refused."""
        line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            created = not self.file.exists()
            with open(self.file, "a+b") as f:
                if f.seek(0, os.SEEK_END) > 0:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":  # a line cut short by a crash: keep ours on its own line
                        f.write(b"\n")
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            if created:
                _fsync_dir(self.dir)
            return True
        except OSError as exc:
            log.error("records.spool_failed", op="append", error=type(exc).__name__, detail=str(exc))
            return False

    def entries(self) -> list[dict[str, Any]]:
        """Every pending entry, oldest first; unreadable lines go to ``corrupt.jsonl``."""
        lines = self._lines()
        good = [entry for entry in map(_parse_entry, lines) if entry is not None]
        if len(good) < len(lines):
            self._quarantine(lines)
        return good

    def remove(self, ids: set[str]) -> None:
        """Drop the entries with these ids; durable before it returns."""
        if ids:
            self._rewrite([raw for raw in self._lines() if (_parse_entry(raw) or {}).get("id") not in ids])

    def count(self) -> int:
        """Number of pending lines (a snapshot; no lock needed)."""
        return len(self._lines())

    def _lines(self) -> list[bytes]:
        try:
            data = self.file.read_bytes()
        except FileNotFoundError:
            return []
        return [raw for raw in data.split(b"\n") if raw.strip()]

    def _rewrite(self, lines: list[bytes]) -> None:
        if not lines:  # the usual case: emptied in place, no directory sync needed
            with contextlib.suppress(FileNotFoundError), open(self.file, "r+b") as f:
                f.truncate(0)
                os.fsync(f.fileno())
            return
        tmp = self.file.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(raw + b"\n" for raw in lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.file)
        _fsync_dir(self.dir)

    def _quarantine(self, lines: list[bytes]) -> None:
        bad = [raw for raw in lines if _parse_entry(raw) is None]
        with open(self.dir / CORRUPT, "ab") as f:
            f.write(b"".join(raw + b"\n" for raw in bad))
            f.flush()
            os.fsync(f.fileno())
        log.error("records.spool_corrupt", lines=len(bad), moved_to=str(self.dir / CORRUPT))
        self._rewrite([raw for raw in lines if _parse_entry(raw) is not None])


def _parse_entry(raw: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not isinstance(entry.get("record"), dict):
        return None
    return entry


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------ the common part


class SpooledStore:
    """Spool-first saving and recovery; backends supply ``_write``, ``_get``, ``_list``, ``_find_ids`` and ``_close``."""

    backend = ""
    unavailable: tuple[type[BaseException], ...] = ()  # errors meaning "database down": stop retrying for now
    db_errors: tuple[type[BaseException], ...] = ()  # every error of the database driver

    def __init__(self, spool_dir: Path, *, retry_after_s: float) -> None:
        self.spool = Spool(spool_dir)
        self.retry_after_s = retry_after_s
        self._retry_at = 0.0

    # ----------------------------------------------------------- public API

    def save(self, record: CallRecord) -> bool:
        """Spool, then commit this record and any still pending. Never raises; True when this record is committed."""
        try:
            data = json.loads(json.dumps(record.to_dict(), default=str))  # plain JSON data from here on
            entry = {"id": uuid.uuid4().hex, "saved_at": time.time(), "record": data}
            with self.spool.locked() as usable:
                return self._save(entry, usable and self.spool.append(entry))
        except Exception as exc:  # the hang-up path must never raise
            log.error("records.save_failed", call_id=str(getattr(record, "call_id", "")), backend=self.backend,
                      **_error_fields(exc))
            return False

    def recover(self) -> int:
        """Commit what the spool holds (after a crash or an outage); the number committed. Never raises."""
        try:
            with self.spool.locked() as usable:
                if not usable:
                    return 0
                entries = self.spool.entries()
                done = self._commit(entries)
                self.spool.remove(done)
        except Exception as exc:
            log.error("records.recover_failed", backend=self.backend, **_error_fields(exc))
            return 0
        if entries:
            log.info("records.recovered", backend=self.backend, committed=len(done), pending=len(entries) - len(done))
        return len(done)

    def pending(self) -> int:
        """How many records wait in the spool."""
        return self.spool.count()

    def get(self, call_id: str) -> CallRecord | None:
        """The record of one call, or None."""
        return self._read(lambda: self._get(call_id))

    def list(self, limit: int = 50, since: Since = None, disposition: str | None = None, tag: str | None = None) -> Records:
        """Newest first: at most ``limit`` calls started at or after ``since``, with this disposition and tag."""
        start = _iso(since) if since is not None else None
        return self._read(lambda: self._list(limit, start, disposition, tag))

    def find_ids(self, prefix: str, limit: int = 10) -> Ids:
        """Call ids starting with ``prefix`` (for short ids typed by people)."""
        return self._read(lambda: self._find_ids(prefix, limit))

    def close(self) -> None:
        """Close the database connection(s)."""
        self._close()

    def __enter__(self) -> SpooledStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------- internals

    def _save(self, entry: dict[str, Any], spooled: bool) -> bool:
        call_id = entry["record"]["call_id"]
        if spooled and time.monotonic() < self._retry_at:
            log.warning("records.deferred", call_id=call_id, backend=self.backend, reason="database down, retrying later")
            return False
        others = [e for e in self.spool.entries() if e["id"] != entry["id"]] if spooled else []
        done = self._commit([entry, *others])
        if spooled:
            self.spool.remove(done)
        if entry["id"] in done:
            return True
        if not spooled:
            log.error("records.lost", call_id=call_id, backend=self.backend, pii={"record": entry["record"]})
        return False

    def _commit(self, entries: Sequence[dict[str, Any]]) -> set[str]:
        """Write entries one transaction each; stop at the first sign the database is down. The ids committed."""
        done: set[str] = set()
        for entry in entries:
            try:
                self._write(CallRecord.from_dict(entry["record"]), float(entry.get("saved_at", 0.0)))
            except Exception as exc:
                down = isinstance(exc, self.unavailable)
                log.warning("records.deferred", call_id=str(entry["record"].get("call_id", "")), backend=self.backend,
                            pending=len(entries) - len(done), **_error_fields(exc, detail=down))
                if down:
                    self._retry_at = time.monotonic() + self.retry_after_s
                    break
            else:
                done.add(entry["id"])
        return done

    def _read(self, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except self.db_errors as exc:
            raise StoreError(f"{self.backend} records database: {exc}") from exc

    def _write(self, record: CallRecord, saved_at: float) -> None:
        raise NotImplementedError

    def _get(self, call_id: str) -> CallRecord | None:
        raise NotImplementedError

    def _list(self, limit: int, since: str | None, disposition: str | None, tag: str | None) -> Records:
        raise NotImplementedError

    def _find_ids(self, prefix: str, limit: int) -> Ids:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


def _error_fields(exc: BaseException, *, detail: bool = True) -> dict[str, Any]:
    """Log fields for a database error; messages of data errors may quote values, so they go under ``pii``."""
    code = getattr(exc, "sqlstate", None) or getattr(exc, "sqlite_errorname", None)
    fields: dict[str, Any] = {"error": type(exc).__name__, **({"code": code} if code else {})}
    if detail:
        fields["detail"] = str(exc).strip()[:300]
    else:
        fields["pii"] = {"detail": str(exc).strip()[:300]}
    return fields


def _iso(value: datetime | str | float) -> str:
    if isinstance(value, str):
        return iso_utc(parse_iso(value))
    return iso_utc(value)


def _time_or_none(value: str | None) -> str | None:
    """A record's time normalized for its column; None when missing or unreadable (never poisons a save)."""
    if not value:
        return None
    try:
        return _iso(value)
    except ValueError:
        return None


def _row(record: CallRecord, saved_at: float) -> dict[str, Any]:
    """Column values of a record (``tags``, ``extras`` and ``record`` still as Python data)."""
    return {"call_id": record.call_id, "started_at": _time_or_none(record.started_at),
            "ended_at": _time_or_none(record.ended_at), "flow_id": record.flow_id, "flow_version": record.flow_version,
            "caller": record.caller, "callee": record.callee, "duration_s": float(record.duration_s),
            "disposition": record.disposition, "level": record.level, "tags": list(record.tags),
            "extras": record.extras, "record": record.to_dict(), "saved_at": saved_at}


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------- SQLite


def _sqlite_v1(conn: sqlite3.Connection) -> None:
    conn.execute("""
        CREATE TABLE call_records (
            call_id      TEXT PRIMARY KEY,
            started_at   TEXT,                       -- UTC ISO 8601, fixed width: text order is time order
            ended_at     TEXT,
            flow_id      TEXT NOT NULL DEFAULT '',
            flow_version TEXT NOT NULL DEFAULT '',
            caller       TEXT NOT NULL DEFAULT '',
            callee       TEXT NOT NULL DEFAULT '',
            duration_s   REAL NOT NULL DEFAULT 0,
            disposition  TEXT NOT NULL DEFAULT '',
            level        TEXT NOT NULL DEFAULT '',
            tags         TEXT NOT NULL DEFAULT '[]', -- JSON array
            extras       TEXT NOT NULL DEFAULT '{}', -- JSON object: later additions (agent, handoff figures...)
            record       TEXT NOT NULL,              -- the whole CallRecord as JSON
            saved_at     REAL NOT NULL               -- epoch s of save(); an older save never overwrites a newer one
        )""")
    conn.execute("CREATE INDEX call_records_started ON call_records (started_at)")
    conn.execute("CREATE INDEX call_records_disposition ON call_records (disposition, started_at)")
    conn.execute("CREATE INDEX call_records_caller ON call_records (caller, started_at)")


# SQLITE_MIGRATIONS[i] takes the schema from version i to i + 1 (PRAGMA user_version). Append, never edit.
SQLITE_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_sqlite_v1]

_SQLITE_UPSERT = (
    f"INSERT INTO call_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)}) "
    "ON CONFLICT (call_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[1:])
    + " WHERE excluded.saved_at >= call_records.saved_at"
)


class SqliteStore(SpooledStore):
    """Call records in an SQLite file: WAL mode, ``synchronous=NORMAL``, one connection shared under a lock.

    NORMAL leaves the last commits to the next WAL sync; before a record leaves
    the spool its WAL is fsync'ed, so a power cut cannot lose it either.
    """

    backend = "sqlite"
    unavailable = (sqlite3.OperationalError,)  # locked, read-only, unopenable, I/O error
    db_errors = (sqlite3.Error,)

    def __init__(self, path: str | Path, *, spool_dir: str | Path | None = None, timeout_s: float = 5.0,
                 retry_after_s: float = 0.0) -> None:
        self.path = Path(path)
        super().__init__(Path(spool_dir) if spool_dir else _default_sqlite_spool(self.path), retry_after_s=retry_after_s)
        self.timeout_s = timeout_s
        self._db_lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        try:
            self._connection()
        except sqlite3.Error as exc:
            log.warning("records.db_unavailable", backend=self.backend, **_error_fields(exc))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                _sqlite_migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _write(self, record: CallRecord, saved_at: float) -> None:
        row = _row(record, saved_at)
        row.update(tags=_dumps(row["tags"]), extras=_dumps(row["extras"]), record=_dumps(row["record"]))
        with self._db_lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(_SQLITE_UPSERT, [row[c] for c in COLUMNS])
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._sync_wal()

    def _sync_wal(self) -> None:
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except FileNotFoundError:
            return  # checkpointed into the main file, which checkpoints sync
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _get(self, call_id: str) -> CallRecord | None:
        with self._db_lock:
            row = self._connection().execute("SELECT record FROM call_records WHERE call_id = ?", (call_id,)).fetchone()
        return CallRecord.from_json(row[0]) if row else None

    def _list(self, limit: int, since: str | None, disposition: str | None, tag: str | None) -> Records:
        where, params = ["1 = 1"], []
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        if disposition is not None:
            where.append("disposition = ?")
            params.append(disposition)
        if tag is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(call_records.tags) WHERE json_each.value = ?)")
            params.append(tag)
        sql = (f"SELECT record FROM call_records WHERE {' AND '.join(where)} "
               "ORDER BY started_at DESC NULLS LAST, call_id DESC LIMIT ?")
        with self._db_lock:
            rows = self._connection().execute(sql, [*params, max(0, int(limit))]).fetchall()
        return [CallRecord.from_json(row[0]) for row in rows]

    def _find_ids(self, prefix: str, limit: int) -> Ids:
        sql = "SELECT call_id FROM call_records WHERE substr(call_id, 1, ?) = ? ORDER BY call_id LIMIT ?"
        with self._db_lock:
            rows = self._connection().execute(sql, (len(prefix), prefix, limit)).fetchall()
        return [str(row[0]) for row in rows]

    def _close(self) -> None:
        with self._db_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _sqlite_migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to the latest version, in one transaction; refuse a newer database."""
    latest = len(SQLITE_MIGRATIONS)
    if _sqlite_version(conn) == latest:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _sqlite_version(conn)  # another process may have migrated meanwhile
        if version > latest:
            raise StoreError(f"records database schema v{version} is newer than this engine's (v{latest})")
        for migrate in SQLITE_MIGRATIONS[version:]:
            migrate(conn)
        conn.execute(f"PRAGMA user_version = {latest}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _sqlite_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _default_sqlite_spool(path: Path) -> Path:
    return Path(os.environ[SPOOL_ENV]) if os.environ.get(SPOOL_ENV) else path.with_name(path.name + ".spool")


# ------------------------------------------------------------------ PostgreSQL


def _postgres_v1(conn: psycopg.Connection[Any]) -> None:
    conn.execute("""
        CREATE TABLE call_records (
            call_id      TEXT PRIMARY KEY,
            started_at   TIMESTAMPTZ,
            ended_at     TIMESTAMPTZ,
            flow_id      TEXT NOT NULL DEFAULT '',
            flow_version TEXT NOT NULL DEFAULT '',
            caller       TEXT NOT NULL DEFAULT '',
            callee       TEXT NOT NULL DEFAULT '',
            duration_s   DOUBLE PRECISION NOT NULL DEFAULT 0,
            disposition  TEXT NOT NULL DEFAULT '',
            level        TEXT NOT NULL DEFAULT '',
            tags         TEXT[] NOT NULL DEFAULT '{}',
            extras       JSONB NOT NULL DEFAULT '{}',
            record       JSONB NOT NULL,
            saved_at     DOUBLE PRECISION NOT NULL
        )""")
    conn.execute("CREATE INDEX call_records_started ON call_records (started_at)")
    conn.execute("CREATE INDEX call_records_disposition ON call_records (disposition, started_at)")
    conn.execute("CREATE INDEX call_records_caller ON call_records (caller, started_at)")
    conn.execute("CREATE INDEX call_records_tags ON call_records USING GIN (tags)")


# POSTGRES_MIGRATIONS[i] takes the schema from version i to i + 1 (table schema_versions). Append, never edit.
POSTGRES_MIGRATIONS: list[Callable[[psycopg.Connection[Any]], None]] = [_postgres_v1]
_PG_COMPONENT = "call_records"
_PG_LOCK_KEY = 0x766F696365  # advisory lock serializing migrations between engines starting together

_PG_UPSERT = (
    f"INSERT INTO call_records ({', '.join(COLUMNS)}) VALUES ({', '.join('%s' for _ in COLUMNS)}) "
    "ON CONFLICT (call_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
    + " WHERE EXCLUDED.saved_at >= call_records.saved_at"
)


class PostgresStore(SpooledStore):
    """Call records in PostgreSQL (psycopg 3): the same table, ``record`` and ``extras`` as JSONB, ``tags`` as text[].

    Connects lazily and reconnects after a failure; while the server is down,
    saves stay in the spool and are retried at most every ``retry_after_s``.
    """

    backend = "postgresql"

    def __init__(self, url: str, *, spool_dir: str | Path | None = None, connect_timeout_s: float = 5.0,
                 retry_after_s: float = 5.0) -> None:
        import psycopg

        self.unavailable = (psycopg.OperationalError, psycopg.InterfaceError)
        self.db_errors = (psycopg.Error,)
        self.url = url
        super().__init__(Path(spool_dir) if spool_dir else _default_postgres_spool(url), retry_after_s=retry_after_s)
        self.connect_timeout_s = connect_timeout_s
        self._db_lock = threading.RLock()
        self._conn: psycopg.Connection[Any] | None = None
        try:
            self._connection()
        except self.unavailable as exc:
            log.warning("records.db_unavailable", backend=self.backend, **_error_fields(exc))

    def _connection(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._conn = None
        if self._conn is None:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, round(self.connect_timeout_s)))
            try:
                _postgres_migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _write(self, record: CallRecord, saved_at: float) -> None:
        from psycopg.types.json import Jsonb

        row = _row(CallRecord.from_dict(_without_nul(record.to_dict())), saved_at)
        row.update(extras=Jsonb(row["extras"]), record=Jsonb(row["record"]))
        with self._db_lock:
            conn = self._connection()
            with conn.transaction():
                conn.execute(_PG_UPSERT, [row[c] for c in COLUMNS])

    def _get(self, call_id: str) -> CallRecord | None:
        with self._db_lock:
            row = self._connection().execute("SELECT record FROM call_records WHERE call_id = %s", (call_id,)).fetchone()
        return CallRecord.from_dict(row[0]) if row else None

    def _list(self, limit: int, since: str | None, disposition: str | None, tag: str | None) -> Records:
        where, params = ["TRUE"], []
        if since is not None:
            where.append("started_at >= %s::timestamptz")
            params.append(since)
        if disposition is not None:
            where.append("disposition = %s")
            params.append(disposition)
        if tag is not None:
            where.append("tags @> ARRAY[%s]::text[]")
            params.append(tag)
        sql = (f"SELECT record FROM call_records WHERE {' AND '.join(where)} "
               "ORDER BY started_at DESC NULLS LAST, call_id DESC LIMIT %s")
        with self._db_lock:
            rows = self._connection().execute(sql, [*params, max(0, int(limit))]).fetchall()
        return [CallRecord.from_dict(row[0]) for row in rows]

    def _find_ids(self, prefix: str, limit: int) -> Ids:
        sql = "SELECT call_id FROM call_records WHERE starts_with(call_id, %s) ORDER BY call_id LIMIT %s"
        with self._db_lock:
            rows = self._connection().execute(sql, (prefix, limit)).fetchall()
        return [str(row[0]) for row in rows]

    def _close(self) -> None:
        with self._db_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _postgres_migrate(conn: psycopg.Connection[Any]) -> None:
    """Bring the schema to the latest version under an advisory lock; refuse a newer database."""
    latest = len(POSTGRES_MIGRATIONS)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_versions WHERE component = %s", (_PG_COMPONENT,)).fetchone()
        version = int(row[0]) if row else 0
        if version > latest:
            raise StoreError(f"records database schema v{version} is newer than this engine's (v{latest})")
        for migrate in POSTGRES_MIGRATIONS[version:]:
            migrate(conn)
        if version < latest:
            conn.execute("INSERT INTO schema_versions (component, version) VALUES (%s, %s) "
                         "ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version", (_PG_COMPONENT, latest))


def _without_nul(data: Any) -> Any:
    """PostgreSQL text and JSONB cannot hold NUL characters: drop them rather than poison the save."""
    if isinstance(data, str):
        return data.replace("\x00", "")
    if isinstance(data, dict):
        return {_without_nul(k): _without_nul(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_without_nul(v) for v in data]
    return data


def _default_postgres_spool(url: str) -> Path:
    if os.environ.get(SPOOL_ENV):
        return Path(os.environ[SPOOL_ENV])
    digest = hashlib.sha256(redact_url(url).encode()).hexdigest()[:12]
    return Path.home() / ".local" / "state" / "voicebot" / f"records-spool-{digest}"


def redact_url(url: str) -> str:
    """The URL without its password (for messages and spool names)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


# ------------------------------------------------------------------- opening


def sqlite_path(url_or_path: str) -> Path | None:
    """The file of an SQLite location (``sqlite:///rel.db``, ``sqlite:////abs.db`` or a plain path); None for others."""
    if url_or_path.startswith("sqlite:///"):
        return Path(url_or_path[len("sqlite:///"):])
    if "://" in url_or_path:
        return None
    return Path(url_or_path)


def open_store(url_or_path: str | Path, *, spool_dir: str | Path | None = None, recover: bool = True) -> SpooledStore:
    """Open the store at a path, ``sqlite:///path`` or ``postgresql://...``; replays the spool unless ``recover=False``."""
    location = str(url_or_path)
    path = sqlite_path(location)
    store: SpooledStore
    if path is not None:
        store = SqliteStore(path, spool_dir=spool_dir)
    elif location.startswith(("postgresql://", "postgres://")):
        store = PostgresStore(location, spool_dir=spool_dir)
    else:
        raise ValueError(f"unknown records database {redact_url(location)!r}: use a file path, sqlite:///PATH or postgresql://...")
    if recover:
        store.recover()
    return store
