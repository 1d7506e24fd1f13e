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

This module holds the spool and the spool-first saving both backends share;
the queries are built once in :mod:`voicebot.records.sql`, the backends live
in :mod:`voicebot.records.sqlite_store` and :mod:`voicebot.records.postgres_store`
(importable from here too). The engine never calls a store from the gevent
hub: :class:`voicebot.records.writer.RecordWriter` owns it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeAlias, TypeVar
from urllib.parse import urlsplit, urlunsplit

from voicebot.logs import get_logger
from voicebot.records.model import CallRecord, iso_utc, parse_iso

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
                      **error_fields(exc))
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
            log.error("records.recover_failed", backend=self.backend, **error_fields(exc))
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
                            pending=len(entries) - len(done), **error_fields(exc, detail=down))
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


def error_fields(exc: BaseException, *, detail: bool = True) -> dict[str, Any]:
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


def row_values(record: CallRecord, saved_at: float) -> dict[str, Any]:
    """Column values of a record (``tags``, ``extras`` and ``record`` still as Python data)."""
    return {"call_id": record.call_id, "started_at": _time_or_none(record.started_at),
            "ended_at": _time_or_none(record.ended_at), "flow_id": record.flow_id, "flow_version": record.flow_version,
            "caller": record.caller, "callee": record.callee, "duration_s": float(record.duration_s),
            "disposition": record.disposition, "level": record.level, "tags": list(record.tags),
            "extras": record.extras, "record": record.to_dict(), "saved_at": saved_at}


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


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
    from voicebot.records.postgres_store import PostgresStore
    from voicebot.records.sqlite_store import SqliteStore

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


_BACKEND_NAMES = {"SqliteStore": "sqlite_store", "SQLITE_MIGRATIONS": "sqlite_store",
                  "PostgresStore": "postgres_store", "POSTGRES_MIGRATIONS": "postgres_store"}


def __getattr__(name: str) -> Any:
    """The backends, importable from here as before the split (loaded on first use: they import this module)."""
    if name in _BACKEND_NAMES:
        import importlib

        return getattr(importlib.import_module(f"voicebot.records.{_BACKEND_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
