"""The outbox: notifications (SMS, webhooks) written to the database first, delivered later by the sender.

One table, the same in SQLite (default) and PostgreSQL (by URL), versioned by the ``schema_versions`` table
(component ``outbox``; add a function to :data:`MIGRATIONS` to migrate)::

    outbox(id PK, kind, endpoint, destination, payload, created_at, attempts, next_attempt_at,
           delivered_at, failed_at, last_error)

``id`` is derived from what the message is (:func:`message_id`: call id, notification name, endpoint), so
writing the same notification twice keeps one row (``ON CONFLICT DO NOTHING``). Times are epoch seconds (UTC).
``kind`` is ``sms`` or ``webhook``; ``endpoint`` names the configured gateway or webhook (its URL and secret
are read from the configuration when the message is sent); ``destination`` is the SMS recipient or the
webhook's URL (for people reading the table); ``payload`` is the JSON body posted.

A claim (:meth:`Outbox.claim`) moves ``next_attempt_at`` past a lease and adds one to ``attempts``: a sender
that dies while posting leaves the message due again once the lease ends. ``attempts`` is the claim's token:
the sender's answer (:meth:`Outbox.delivered`, :meth:`Outbox.retry_at`, :meth:`Outbox.give_up`) only counts
while nobody claimed the message after it, and ``delivered_at`` is set once.

:func:`enqueue` writes inside a caller's open transaction (an ``sqlite3`` or ``psycopg`` connection: a campaign
store writes an attempt and its messages in one commit); :meth:`Outbox.enqueue` commits on its own.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from voicebot.logs import get_logger

KINDS = ("sms", "webhook")
COMPONENT = "outbox"
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "voicebot:outbox")
_PG_LOCK_KEY = 0x766F696365  # the records store's advisory lock: one migration at a time per database
Connection: TypeAlias = Any  # sqlite3.Connection or psycopg.Connection


class OutboxError(Exception):
    """The outbox database cannot be opened or is newer than this engine."""


@dataclass(frozen=True)
class Message:
    """One notification to deliver. ``payload`` is the JSON body; ``created_at`` epoch seconds."""

    id: str
    kind: str
    endpoint: str
    destination: str
    payload: Mapping[str, Any]
    created_at: float


@dataclass(frozen=True)
class Claimed:
    """A message claimed for one delivery attempt; ``attempts`` counts this one and is the claim's token."""

    message: Message
    attempts: int


@dataclass(frozen=True)
class Row:
    """A message and its delivery state, as stored (times: epoch seconds, None when not yet)."""

    message: Message
    attempts: int
    next_attempt_at: float
    delivered_at: float | None
    failed_at: float | None
    last_error: str = ""


def message_id(call_id: str, name: str, endpoint: str, scope: str = "") -> str:
    """The id of notification ``name`` of call ``call_id`` through ``endpoint``: the same inputs, the same id."""
    return str(uuid.uuid5(_ID_NAMESPACE, "\x00".join((call_id, scope, name, endpoint))))


# ------------------------------------------------------------------ schema


def _v1(sql: Callable[[str], None], postgres: bool) -> None:
    real = "DOUBLE PRECISION" if postgres else "REAL"
    sql(f"""
        CREATE TABLE outbox (
            id              TEXT PRIMARY KEY,          -- message_id(): one row per call, notification and endpoint
            kind            TEXT NOT NULL,             -- sms | webhook
            endpoint        TEXT NOT NULL,             -- the configured gateway or webhook it goes through
            destination     TEXT NOT NULL DEFAULT '',  -- SMS recipient or webhook URL
            payload         TEXT NOT NULL,             -- the JSON body posted
            created_at      {real} NOT NULL,
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at {real} NOT NULL,
            delivered_at    {real},
            failed_at       {real},                    -- given up (a final refusal, or max attempts)
            last_error      TEXT NOT NULL DEFAULT ''
        )""")
    sql("CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL")


# MIGRATIONS[i] takes the outbox schema from version i to i + 1. Append, never edit.
MIGRATIONS: list[Callable[[Callable[[str], None], bool], None]] = [_v1]


def migrate(conn: Connection) -> None:
    """Bring the outbox schema up to date inside the caller's open transaction; refuse a newer one."""
    postgres = _is_postgres(conn)
    if postgres:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
    conn.execute("CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    row = conn.execute(_sql(postgres, "SELECT version FROM schema_versions WHERE component = ?"), (COMPONENT,)).fetchone()
    version, latest = (int(row[0]) if row else 0), len(MIGRATIONS)
    if version > latest:
        raise OutboxError(f"outbox schema v{version} is newer than this engine's (v{latest})")
    for step in MIGRATIONS[version:]:
        step(lambda text: conn.execute(text), postgres)
    if version < latest:
        conn.execute(_sql(postgres, "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version"), (COMPONENT, latest))


def enqueue(conn: Connection, messages: Iterable[Message]) -> int:
    """Write ``messages`` in the caller's open transaction (no commit); returns how many were new."""
    postgres = _is_postgres(conn)
    sql = _sql(postgres, "INSERT INTO outbox (id, kind, endpoint, destination, payload, created_at, next_attempt_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING")
    added = 0
    for m in messages:
        if m.kind not in KINDS:
            raise ValueError(f"outbox: kind must be one of {', '.join(KINDS)}, got {m.kind!r}")
        body = json.dumps(dict(m.payload), ensure_ascii=False, separators=(",", ":"))
        if postgres:
            body = body.replace("\\u0000", "")  # PostgreSQL text holds no NUL
        cur = conn.execute(sql, (m.id, m.kind, m.endpoint, m.destination, body, m.created_at, m.created_at))
        added += max(0, cur.rowcount)
    return added


def _is_postgres(conn: Connection) -> bool:
    return not isinstance(conn, sqlite3.Connection)


def _sql(postgres: bool, text: str) -> str:
    """``?`` placeholders as the backend wants them."""
    return text.replace("?", "%s") if postgres else text


# ------------------------------------------------------------------ the store


_COLUMNS = "id, kind, endpoint, destination, payload, created_at, attempts, next_attempt_at, delivered_at, failed_at, last_error"
_LIVE = "delivered_at IS NULL AND failed_at IS NULL"


@dataclass
class Outbox:
    """The outbox at an SQLite path (``sqlite:///PATH`` or a plain path) or a ``postgresql://`` URL.

    One connection shared under a lock (threads may share an Outbox); processes may share the database.
    """

    location: str
    timeout_s: float = 5.0
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _conn: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.location = str(self.location)
        self.postgres = self.location.startswith(("postgresql://", "postgres://"))
        if not self.postgres and "://" in self.location and not self.location.startswith("sqlite:///"):
            raise OutboxError(f"unknown outbox database {self.location.split('://')[0]}://...: "
                              "use a file path, sqlite:///PATH or postgresql://...")
        self._migrated = False
        try:
            with self._transaction():
                pass
        except OutboxError:
            raise
        except Exception as exc:  # PostgreSQL down at start: messages wait in memory, the schema comes later
            if not self.postgres:
                raise
            get_logger("outbox").warning("outbox.db_unavailable", error=type(exc).__name__, detail=str(exc)[:200])

    def _connect(self) -> Any:
        if self.postgres:
            import psycopg

            if self._conn is not None and (self._conn.closed or self._conn.broken):
                self._conn = None
            if self._conn is None:
                self._conn = psycopg.connect(self.location, autocommit=True, connect_timeout=max(1, round(self.timeout_s)))
            return self._conn
        if self._conn is None:
            path = self.location.removeprefix("sqlite:///")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            self._conn = conn
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """One committed transaction (SQLite: ``BEGIN IMMEDIATE``, so claims never race)."""
        with self._lock:
            conn = self._connect()
            if not self._migrated:
                self._migrated = True
                try:
                    with self._transaction():
                        migrate(conn)
                except BaseException:
                    self._migrated = False
                    raise
            if self.postgres:
                with conn.transaction():
                    yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _q(self, text: str) -> str:
        return _sql(self.postgres, text)

    def enqueue(self, messages: Sequence[Message]) -> int:
        """Write ``messages`` in one transaction of our own; returns how many were new (the rest existed)."""
        with self._transaction() as conn:
            return enqueue(conn, messages)

    def claim(self, now: float, limit: int, lease_s: float) -> list[Claimed]:
        """Up to ``limit`` due messages, oldest due first, each leased for ``lease_s`` seconds to the caller."""
        skip = " FOR UPDATE SKIP LOCKED" if self.postgres else ""
        sql = self._q(f"UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id IN "
                      f"(SELECT id FROM outbox WHERE {_LIVE} AND next_attempt_at <= ? ORDER BY next_attempt_at "
                      f"LIMIT ?{skip}) RETURNING {_COLUMNS}")
        with self._transaction() as conn:
            rows = conn.execute(sql, (now + lease_s, now, int(limit))).fetchall()
        return sorted((Claimed(_row(r).message, int(r[6])) for r in rows), key=lambda c: c.message.created_at)

    def delivered(self, claim: Claimed, now: float) -> bool:
        """Mark delivered; True only for the one call that set ``delivered_at`` (never set twice)."""
        return self._update("delivered_at = ?, last_error = ''", (now,), claim, fenced=False)

    def retry_at(self, claim: Claimed, at: float, error: str) -> bool:
        """After a failed attempt: due again at ``at`` (epoch s); False when another claim took the message since."""
        return self._update("next_attempt_at = ?, last_error = ?", (at, error[:500]), claim)

    def give_up(self, claim: Claimed, now: float, error: str) -> bool:
        """A final failure: never attempted again (the row stays, with ``failed_at`` and the error)."""
        return self._update("failed_at = ?, last_error = ?", (now, error[:500]), claim)

    def _update(self, assignments: str, values: tuple[Any, ...], claim: Claimed, *, fenced: bool = True) -> bool:
        fence = " AND attempts = ?" if fenced else ""
        sql = self._q(f"UPDATE outbox SET {assignments} WHERE id = ? AND {_LIVE}{fence}")
        params = (*values, claim.message.id, *((claim.attempts,) if fenced else ()))
        with self._transaction() as conn:
            return bool(conn.execute(sql, params).rowcount == 1)

    def next_due(self) -> float | None:
        """When the next undelivered message is due (epoch s), or None when none waits."""
        with self._transaction() as conn:
            row = conn.execute(f"SELECT MIN(next_attempt_at) FROM outbox WHERE {_LIVE}").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def get(self, message_id_: str) -> Row | None:
        """One message and its state."""
        with self._transaction() as conn:
            row = conn.execute(self._q(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?"), (message_id_,)).fetchone()
        return _row(row) if row else None

    def rows(self, limit: int = 1000) -> list[Row]:
        """Messages, oldest first."""
        with self._transaction() as conn:
            rows = conn.execute(self._q(f"SELECT {_COLUMNS} FROM outbox ORDER BY created_at, id LIMIT ?"), (limit,)).fetchall()
        return [_row(r) for r in rows]

    def pending(self) -> int:
        """How many messages are neither delivered nor given up."""
        with self._transaction() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM outbox WHERE {_LIVE}").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _row(r: Sequence[Any]) -> Row:
    payload = json.loads(r[4]) if isinstance(r[4], str) else r[4]
    message = Message(str(r[0]), str(r[1]), str(r[2]), str(r[3]), payload, float(r[5]))
    return Row(message, int(r[6]), float(r[7]), None if r[8] is None else float(r[8]),
               None if r[9] is None else float(r[9]), str(r[10] or ""))
