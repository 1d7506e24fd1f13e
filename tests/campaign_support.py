"""Shared by the campaign store tests: a fresh database per test, SQLite or a real PostgreSQL.

PostgreSQL comes from ``pg_server`` in tests/test_records.py (scripts/postgres-test.sh, or
$VOICEBOT_TEST_PG_URL); each test gets its own schema on it, dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.test_records import PgServer, pg_server
from voicebot.campaign.store import CampaignStore

__all__ = ["PgServer", "campaign_db", "open_db", "pg_location", "pg_server"]


def pg_location(url: str) -> Generator[str, None, None]:
    """A URL whose search_path is a new, empty schema (dropped when the generator closes)."""
    import psycopg

    schema = "c_" + uuid.uuid4().hex[:12]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield url + ("&" if "?" in url else "?") + "options=" + quote(f"-csearch_path={schema}")
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def campaign_db(request: pytest.FixtureRequest, tmp_path: Path, pg_server: PgServer) -> Iterator[str]:
    """The location of an empty campaign database of each kind."""
    if request.param == "sqlite":
        yield str(tmp_path / "campaigns.db")
    else:
        yield from pg_location(pg_server.require())


def open_db(location: str, opened: list[CampaignStore]) -> CampaignStore:
    store = CampaignStore(location)
    opened.append(store)
    return store
