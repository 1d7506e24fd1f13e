"""Call records: written at hang-up, never lost, listed by ``voicebot calls``.

:func:`record_from_call` builds a :class:`CallRecord` from the dialog outcome
and the call's timeline; :func:`open_store` opens SQLite (a path or
``sqlite:///path``) or PostgreSQL (``postgresql://...``) behind a write-ahead
spool.
"""

from voicebot.records.model import CallRecord, TranscriptLine, record_from_call
from voicebot.records.store import PostgresStore, RecordStore, SqliteStore, StoreError, open_store

__all__ = ["CallRecord", "PostgresStore", "RecordStore", "SqliteStore", "StoreError", "TranscriptLine", "open_store",
           "record_from_call"]
