"""Shared by the notification tests: a local HTTP gateway that records what it receives, and outbox locations."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.test_records import PgServer
from voicebot.notify.signed import verify

SECRET = "gateway-secret-for-tests"


@dataclass
class Received:
    """One POST: headers, body, whether its signature checked out, and when (monotonic s)."""

    headers: dict[str, str]
    body: bytes
    signed: bool
    at: float


class Gateway:
    """An SMS gateway / webhook receiver on 127.0.0.1 that drops duplicates by ``Idempotency-Key``.

    ``statuses`` are answered in turn (then 200); ``delay_s`` holds each answer back, and so does ``hold``
    until it is set.
    """

    def __init__(self, statuses: list[int] | None = None, delay_s: float = 0.0, port: int = 0,
                 hold: threading.Event | None = None) -> None:
        self.statuses = list(statuses or [])
        self.delay_s = delay_s
        self.hold = hold
        self.arrived = 0  # requests read, answered or not
        self.posts: list[Received] = []
        self.accepted: dict[str, Received] = {}  # idempotency key -> first delivery
        self.cond = threading.Condition()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k: v for k, v in self.headers.items()}
                with gateway.cond:
                    gateway.arrived += 1
                    gateway.cond.notify_all()
                if gateway.hold is not None:
                    gateway.hold.wait(30)
                if gateway.delay_s:
                    time.sleep(gateway.delay_s)
                status = gateway.record(headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/send"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def record(self, headers: dict[str, str], body: bytes) -> int:
        with self.cond:
            status = self.statuses.pop(0) if self.statuses else 200
            item = Received(headers, body, verify(SECRET, headers, body, time.time()), time.monotonic())
            self.posts.append(item)
            if 200 <= status < 300:
                self.accepted.setdefault(headers.get("Idempotency-Key", ""), item)
            self.cond.notify_all()
            return status

    def wait(self, predicate: Callable[[Gateway], bool], timeout: float = 10.0, what: str = "") -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self), timeout), f"timed out waiting for {what}: {self.posts}"

    def wait_green(self, predicate: Callable[[Gateway], bool], timeout: float = 10.0, what: str = "") -> None:
        """:meth:`wait` for a test that runs an engine: the gevent hub (the engine's greenlets) keeps running."""
        import gevent

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.cond:
                if predicate(self):
                    return
            gevent.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {self.posts}")

    def keys(self) -> list[str]:
        with self.cond:
            return [p.headers.get("Idempotency-Key", "") for p in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Db:
    """A fresh outbox location: a temp SQLite file, or a fresh schema of the test PostgreSQL."""

    kind: str
    tmp: Path
    pg: PgServer
    schemas: list[str] = field(default_factory=list)

    def location(self) -> str:
        if self.kind == "sqlite":
            return str(self.tmp / "outbox.sqlite")
        import psycopg

        if not self.schemas:
            schema = "o_" + uuid.uuid4().hex[:12]
            with psycopg.connect(self.pg.require(), autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            self.schemas.append(schema)
        return self.pg.url + ("&" if "?" in self.pg.url else "?") + f"options=-csearch_path%3D{self.schemas[0]}"

    def connect(self) -> Any:
        """A raw connection of the backend's driver, outside any Outbox (autocommit off)."""
        if self.kind == "sqlite":
            import sqlite3

            return sqlite3.connect(self.location(), isolation_level=None)
        import psycopg

        return psycopg.connect(self.location())

    def cleanup(self) -> None:
        if self.schemas:
            import psycopg

            with psycopg.connect(self.pg.url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {self.schemas[0]} CASCADE")
