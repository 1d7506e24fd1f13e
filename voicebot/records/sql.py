"""The queries both record databases share, built once from each one's spelling (:class:`Dialect`), and the
store that runs them (:class:`SqlStore`): a connection opened lazily and shared under a lock.

SQLite and PostgreSQL differ only in their placeholders, how a time and a tag
are compared, how a call-id prefix is matched, and how values are encoded and
decoded; the upsert, the listing and the lookups are the same statements.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicebot.records.model import CallRecord
from voicebot.records.store import COLUMNS, Ids, Records, SpooledStore


@dataclass(frozen=True)
class Dialect:
    """How one database spells the shared queries. ``{p}`` in a fragment is the placeholder."""

    param: str  # "?" or "%s"
    true: str  # an always-true condition
    since: str  # started_at at or after a parameter
    tag: str  # tags hold a parameter
    prefix: str  # call_id starts with a parameter (``prefix_params`` says which)
    prefix_params: str = "prefix"  # "prefix" (the prefix only) or "length,prefix"

    def _f(self, fragment: str) -> str:
        return fragment.replace("{p}", self.param)

    @property
    def upsert(self) -> str:
        """Insert a row, or replace the stored one unless it was saved later (``saved_at``)."""
        return (f"INSERT INTO call_records ({', '.join(COLUMNS)}) VALUES ({', '.join(self.param for _ in COLUMNS)}) "
                "ON CONFLICT (call_id) DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
                + " WHERE EXCLUDED.saved_at >= call_records.saved_at")

    @property
    def get(self) -> str:
        return f"SELECT record FROM call_records WHERE call_id = {self.param}"

    def listing(self, limit: int, since: str | None, disposition: str | None, tag: str | None) -> tuple[str, list[Any]]:
        """Newest first, filtered: (SQL, parameters)."""
        where, params = [self.true], []
        for fragment, value in ((self.since, since), ("disposition = {p}", disposition), (self.tag, tag)):
            if value is not None:
                where.append(self._f(fragment))
                params.append(value)
        sql = (f"SELECT record FROM call_records WHERE {' AND '.join(where)} "
               f"ORDER BY started_at DESC NULLS LAST, call_id DESC LIMIT {self.param}")
        return sql, [*params, max(0, int(limit))]

    def find_ids(self, prefix: str, limit: int) -> tuple[str, list[Any]]:
        """Call ids starting with ``prefix``: (SQL, parameters)."""
        params: list[Any] = [len(prefix), prefix] if self.prefix_params == "length,prefix" else [prefix]
        return (f"SELECT call_id FROM call_records WHERE {self._f(self.prefix)} ORDER BY call_id LIMIT {self.param}",
                [*params, limit])


class SqlStore(SpooledStore):
    """A :class:`SpooledStore` over one lazily opened connection; backends supply the dialect, the connection,
    the upsert's transaction and the value codecs."""

    dialect: Dialect

    def __init__(self, spool_dir: Path, *, retry_after_s: float) -> None:
        super().__init__(spool_dir, retry_after_s=retry_after_s)
        self._db_lock = threading.RLock()
        self._conn: Any = None

    def _connection(self) -> Any:
        raise NotImplementedError

    def _encode(self, record: CallRecord, saved_at: float) -> list[Any]:
        """The upsert's parameters, in ``COLUMNS`` order."""
        raise NotImplementedError

    def _decode(self, value: Any) -> CallRecord:
        """A record from its ``record`` column."""
        raise NotImplementedError

    def _upsert(self, conn: Any, params: list[Any]) -> None:
        """Run the upsert in its own transaction."""
        raise NotImplementedError

    def _write(self, record: CallRecord, saved_at: float) -> None:
        params = self._encode(record, saved_at)
        with self._db_lock:
            self._upsert(self._connection(), params)

    def _rows(self, sql: str, params: list[Any]) -> list[Any]:
        with self._db_lock:
            return list(self._connection().execute(sql, params).fetchall())

    def _get(self, call_id: str) -> CallRecord | None:
        rows = self._rows(self.dialect.get, [call_id])
        return self._decode(rows[0][0]) if rows else None

    def _list(self, limit: int, since: str | None, disposition: str | None, tag: str | None) -> Records:
        return [self._decode(row[0]) for row in self._rows(*self.dialect.listing(limit, since, disposition, tag))]

    def _find_ids(self, prefix: str, limit: int) -> Ids:
        return [str(row[0]) for row in self._rows(*self.dialect.find_ids(prefix, limit))]

    def _close(self) -> None:
        with self._db_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
