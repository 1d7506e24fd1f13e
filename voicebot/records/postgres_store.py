"""Call records in PostgreSQL (by URL); the queries come from :mod:`voicebot.records.sql`."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voicebot.records import store as base
from voicebot.records.model import CallRecord
from voicebot.records.sql import Dialect, SqlStore
from voicebot.records.store import COLUMNS, SPOOL_ENV, StoreError, error_fields, redact_url, row_values

if TYPE_CHECKING:
    import psycopg


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

POSTGRES = Dialect(param="%s", true="TRUE", since="started_at >= {p}::timestamptz", tag="tags @> ARRAY[{p}]::text[]",
                   prefix="starts_with(call_id, {p})")


class PostgresStore(SqlStore):
    """Call records in PostgreSQL (psycopg 3): the same table, ``record`` and ``extras`` as JSONB, ``tags`` as text[].

    Connects lazily and reconnects after a failure; while the server is down,
    saves stay in the spool and are retried at most every ``retry_after_s``.
    """

    backend = "postgresql"
    dialect = POSTGRES

    def __init__(self, url: str, *, spool_dir: str | Path | None = None, connect_timeout_s: float = 5.0,
                 retry_after_s: float = 5.0) -> None:
        import psycopg

        self.unavailable = (psycopg.OperationalError, psycopg.InterfaceError)
        self.db_errors = (psycopg.Error,)
        self.url = url
        super().__init__(Path(spool_dir) if spool_dir else _default_postgres_spool(url), retry_after_s=retry_after_s)
        self.connect_timeout_s = connect_timeout_s
        try:
            self._connection()
        except self.unavailable as exc:
            base.log.warning("records.db_unavailable", backend=self.backend, **error_fields(exc))

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
        return self._conn  # type: ignore[no-any-return]

    def _encode(self, record: CallRecord, saved_at: float) -> list[Any]:
        from psycopg.types.json import Jsonb

        row = row_values(CallRecord.from_dict(_without_nul(record.to_dict())), saved_at)
        row.update(extras=Jsonb(row["extras"]), record=Jsonb(row["record"]))
        return [row[c] for c in COLUMNS]

    def _decode(self, value: Any) -> CallRecord:
        return CallRecord.from_dict(value)

    def _upsert(self, conn: psycopg.Connection[Any], params: list[Any]) -> None:
        with conn.transaction():
            conn.execute(self.dialect.upsert, params)


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
