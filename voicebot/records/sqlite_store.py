"""Call records in SQLite (the default: embedded, WAL); the queries come from :mod:`voicebot.records.sql`."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voicebot.records import store as base
from voicebot.records.model import CallRecord
from voicebot.records.sql import Dialect, SqlStore
from voicebot.records.store import COLUMNS, SPOOL_ENV, StoreError, dumps, error_fields, row_values


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

SQLITE = Dialect(param="?", true="1 = 1", since="started_at >= {p}",
                 tag="EXISTS (SELECT 1 FROM json_each(call_records.tags) WHERE json_each.value = {p})",
                 prefix="substr(call_id, 1, {p}) = {p}", prefix_params="length,prefix")


class SqliteStore(SqlStore):
    """Call records in an SQLite file: WAL mode, ``synchronous=NORMAL``, one connection shared under a lock.

    NORMAL leaves the last commits to the next WAL sync; before a record leaves
    the spool its WAL is fsync'ed, so a power cut cannot lose it either.
    """

    backend = "sqlite"
    dialect = SQLITE
    unavailable = (sqlite3.OperationalError,)  # locked, read-only, unopenable, I/O error
    db_errors = (sqlite3.Error,)

    def __init__(self, path: str | Path, *, spool_dir: str | Path | None = None, timeout_s: float = 5.0,
                 retry_after_s: float = 0.0) -> None:
        self.path = Path(path)
        super().__init__(Path(spool_dir) if spool_dir else _default_sqlite_spool(self.path), retry_after_s=retry_after_s)
        self.timeout_s = timeout_s
        try:
            self._connection()
        except sqlite3.Error as exc:
            base.log.warning("records.db_unavailable", backend=self.backend, **error_fields(exc))

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
        return self._conn  # type: ignore[no-any-return]

    def _encode(self, record: CallRecord, saved_at: float) -> list[Any]:
        row = row_values(record, saved_at)
        row.update(tags=dumps(row["tags"]), extras=dumps(row["extras"]), record=dumps(row["record"]))
        return [row[c] for c in COLUMNS]

    def _decode(self, value: Any) -> CallRecord:
        return CallRecord.from_json(value)

    def _upsert(self, conn: sqlite3.Connection, params: list[Any]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(self.dialect.upsert, params)
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
