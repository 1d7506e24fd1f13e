"""The screen-pop webhook against real HTTP servers on 127.0.0.1: signing, retries, timeouts, the queue, close."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from structlog.testing import capture_logs

from voicebot.logs import get_logger
from voicebot.notify.screenpop import ScreenPop, ScreenPopConfig, sign, verify

get_logger("tests")  # configure logging now, so capture_logs() is not undone by a first-use configure()

SECRET = "s3cret-for-tests"
PAYLOAD = {"agent": "sam", "lead": {"name": "Zoë Durand", "score": 0.92}, "tags": ["mortgage", "hot"]}


class Hook:
    """A webhook receiver: answers the statuses in ``statuses`` in turn, then 200; records every request."""

    def __init__(self, statuses: list[int] | None = None, delay_s: float = 0.0, retry_after: str = "") -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict[str, str], bytes, float]] = []  # headers, body, monotonic arrival
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with hook.lock:
                    hook.requests.append((dict(self.headers.items()), body, time.monotonic()))
                    status = hook.statuses.pop(0) if hook.statuses else 200
                    hook.paths.append(self.path)
                time.sleep(delay_s)
                self.send_response(status)
                if retry_after and status >= 500:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/screenpop?src=voicebot"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Silent:
    """A server that accepts connections and never reads nor answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.conns: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def servers() -> Iterator[list[Hook | Silent]]:
    made: list[Hook | Silent] = []
    yield made
    for server in made:
        server.close()


@pytest.fixture
def make_pop() -> Iterator[Callable[..., ScreenPop]]:
    pops: list[ScreenPop] = []

    def make(url: str, **options: Any) -> ScreenPop:
        pop = ScreenPop(ScreenPopConfig(url=url, secret=SECRET, **{"backoff_s": 0.01, **options}))
        pops.append(pop)
        return pop

    yield make
    for pop in pops:
        pop.close(0.1)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def timed_send(pop: ScreenPop, event: str, call: str) -> tuple[bool, float]:
    start = time.perf_counter()
    queued = pop.send(event, call, PAYLOAD)
    return queued, time.perf_counter() - start


def test_retries_503_until_accepted_with_one_signed_idempotent_event(
        servers: list[Any], make_pop: Callable[..., ScreenPop]) -> None:
    hook = Hook(statuses=[503, 503])
    servers.append(hook)
    pop = make_pop(hook.url)
    with capture_logs() as logs:
        assert pop.send("handoff.offered", "call-1", PAYLOAD)
        pop.close(5.0)
    assert len(hook.requests) == 3 and hook.paths == ["/hooks/screenpop?src=voicebot"] * 3
    bodies = [json.loads(body) for _, body, _ in hook.requests]
    assert [b["attempt"] for b in bodies] == [1, 2, 3]
    assert list(bodies[-1]) == ["event", "call_id", "sent_at", "attempt", "data"]
    assert bodies[-1]["event"] == "handoff.offered" and bodies[-1]["call_id"] == "call-1" and bodies[-1]["data"] == PAYLOAD
    assert abs(bodies[-1]["sent_at"] - time.time()) < 30
    assert "Zoë".encode() in hook.requests[-1][1]  # UTF-8, not \\u escapes
    for headers, body, _ in hook.requests:
        assert verify(SECRET, headers, body, time.time())
        assert headers["Content-Type"] == "application/json" and headers["X-Voicebot-Event"] == "handoff.offered"
        assert headers["X-Voicebot-Timestamp"].isdigit()
    assert len({headers["Idempotency-Key"] for headers, _, _ in hook.requests}) == 1
    assert pop.stats == {"sent": 1, "retried": 2, "failed": 0, "dropped": 0}
    events = [(e["event"], e["hook_event"], e["attempt"], e["status"]) for e in logs if e["event"].startswith("screenpop.")]
    assert events == [("screenpop.retry", "handoff.offered", 1, 503), ("screenpop.retry", "handoff.offered", 2, 503),
                      ("screenpop.sent", "handoff.offered", 3, 200)]
    assert all(e["call"] == "call-1" for e in logs if e["event"].startswith("screenpop."))
    assert "Zo" not in repr(logs) and "mortgage" not in repr(logs)  # never the payload


def test_idempotency_key_is_per_call_and_event(servers: list[Any], make_pop: Callable[..., ScreenPop]) -> None:
    hook = Hook()
    servers.append(hook)
    pop = make_pop(hook.url)
    for event, call in [("offered", "c1"), ("offered", "c1"), ("offered", "c2"), ("answered", "c1")]:
        assert pop.send(event, call, {})
    pop.close(5.0)
    keys = [headers["Idempotency-Key"] for headers, _, _ in hook.requests]
    assert len(keys) == 4 and keys[0] == keys[1] and len(set(keys)) == 3


@pytest.mark.parametrize(("status", "requests"), [(400, 1), (404, 1), (408, 3), (429, 3), (500, 3), (503, 3)])
def test_only_timeouts_throttling_and_server_errors_are_retried(
        servers: list[Any], make_pop: Callable[..., ScreenPop], status: int, requests: int) -> None:
    hook = Hook(statuses=[status] * 5)
    servers.append(hook)
    pop = make_pop(hook.url, retries=2)
    pop.send("handoff.offered", "call-1", PAYLOAD)
    pop.close(5.0)
    assert len(hook.requests) == requests
    assert pop.stats == {"sent": 0, "retried": requests - 1, "failed": 1, "dropped": 0}


def test_backoff_doubles_with_jitter_and_is_capped(servers: list[Any], make_pop: Callable[..., ScreenPop]) -> None:
    hook = Hook(statuses=[503] * 5)
    servers.append(hook)
    pop = make_pop(hook.url, backoff_s=0.05, max_backoff_s=0.2, retries=5)
    pop.send("handoff.offered", "call-1", PAYLOAD)
    pop.close(5.0)
    arrivals = [t for _, _, t in hook.requests]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert len(gaps) == 5 and pop.stats == {"sent": 1, "retried": 5, "failed": 0, "dropped": 0}
    assert gaps[0] >= 0.04 and gaps[1] >= 0.08 and gaps[2] >= 0.16  # 0.05, 0.1, 0.2: each -20 % at worst
    assert gaps[4] < 0.5  # 0.8 uncapped (≥ 0.64 with jitter); capped at 0.2


def test_retry_after_is_honoured_within_the_cap(servers: list[Any], make_pop: Callable[..., ScreenPop]) -> None:
    hook = Hook(statuses=[503], retry_after="0.3")
    servers.append(hook)
    pop = make_pop(hook.url, backoff_s=0.01, max_backoff_s=1.0)
    pop.send("handoff.offered", "call-1", PAYLOAD)
    pop.close(5.0)
    assert len(hook.requests) == 2 and hook.requests[1][2] - hook.requests[0][2] >= 0.29


def test_silent_server_times_out_and_retries_while_send_never_blocks(
        servers: list[Any], make_pop: Callable[..., ScreenPop]) -> None:
    silent = Silent()
    servers.append(silent)
    pop = make_pop(silent.url, timeout_s=0.3, retries=1)
    queued, took = timed_send(pop, "handoff.offered", "call-1")
    assert queued and took < 0.05
    wait_for(lambda: len(silent.conns) >= 1)  # the worker is now stuck waiting for an answer
    for i in range(5):
        queued, took = timed_send(pop, "handoff.offered", f"call-{i + 2}")
        assert queued and took < 0.05, f"send took {took * 1000:.1f} ms while the worker was stuck"
    wait_for(lambda: pop.stats["failed"] >= 1)
    assert len(silent.conns) >= 2 and pop.stats["retried"] >= 1  # timed out, then tried again
    start = time.perf_counter()
    pop.close(0.2)
    assert time.perf_counter() - start < 1.5
    assert pop.stats["sent"] == 0 and pop.stats["failed"] + pop.stats["dropped"] == 6


def test_full_queue_drops_and_counts(servers: list[Any], make_pop: Callable[..., ScreenPop]) -> None:
    silent = Silent()
    servers.append(silent)
    pop = make_pop(silent.url, timeout_s=2.0, retries=0, max_queue=2)
    assert pop.send("e", "call-1", PAYLOAD)
    wait_for(lambda: len(silent.conns) >= 1)  # call-1 is in flight, the queue is empty
    with capture_logs() as logs:
        assert pop.send("e", "call-2", PAYLOAD) and pop.send("e", "call-3", PAYLOAD)
        queued, took = timed_send(pop, "e", "call-4")
    assert not queued and took < 0.05
    assert pop.stats["dropped"] == 1
    dropped = [e for e in logs if e["event"] == "screenpop.dropped"]
    assert [(e["call"], e["reason"]) for e in dropped] == [("call-4", "queue full")] and "Zo" not in repr(logs)
    pop.close(0.1)
    assert pop.stats["dropped"] == 3  # call-2 and call-3 never went out


def test_close_drains_the_queue_then_refuses(servers: list[Any], make_pop: Callable[..., ScreenPop]) -> None:
    hook = Hook(delay_s=0.02)
    servers.append(hook)
    pop = make_pop(hook.url)
    for i in range(10):
        assert pop.send("handoff.offered", f"call-{i}", {"i": i})
    pop.close(5.0)
    assert sorted(json.loads(body)["data"]["i"] for _, body, _ in hook.requests) == list(range(10))
    assert pop.stats == {"sent": 10, "retried": 0, "failed": 0, "dropped": 0}
    assert not pop.send("handoff.offered", "call-late", {}) and pop.stats["dropped"] == 1


def test_refused_connection_is_retried_then_failed(make_pop: Callable[..., ScreenPop]) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    pop = make_pop(f"http://127.0.0.1:{port}/", retries=2)
    pop.send("handoff.offered", "call-1", PAYLOAD)
    pop.close(5.0)
    assert pop.stats == {"sent": 0, "retried": 2, "failed": 1, "dropped": 0}


def test_send_never_raises_on_bad_payloads(servers: list[Any], make_pop: Callable[..., ScreenPop]) -> None:
    hook = Hook()
    servers.append(hook)
    pop = make_pop(hook.url)
    assert not pop.send("e", "call-1", {"when": object()})
    assert not pop.send("e", "call-1", None)  # type: ignore[arg-type]
    assert pop.send("e", "call-1", {"ok": True})
    pop.close(5.0)
    assert pop.stats == {"sent": 1, "retried": 0, "failed": 0, "dropped": 2} and len(hook.requests) == 1


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "127.0.0.1:8080/hook", "http:///nohost"])
def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        ScreenPop(ScreenPopConfig(url=url, secret=SECRET))


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = '{"event": "x", "data": {"name": "Zoë"}}'.encode()
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1700000000", body) == f"sha256={expected}"
    assert sign(SECRET, "1700000001", body) != sign(SECRET, "1700000000", body)


def test_verify_rejects_tampering_old_timestamps_and_wrong_secrets() -> None:
    now = 1_700_000_000.0
    body = b'{"event": "handoff.offered", "data": {"score": 0.9}}'
    headers = {"X-Voicebot-Timestamp": "1700000000", "X-Voicebot-Signature": sign(SECRET, "1700000000", body)}
    assert verify(SECRET, headers, body, now)
    assert verify(SECRET, {k.lower(): v for k, v in headers.items()}, body, now + 299)
    assert not verify(SECRET, headers, body.replace(b"0.9", b"1.0"), now)
    assert not verify(SECRET, headers, body, now + 301)  # too old
    assert not verify(SECRET, headers, body, now - 301)  # from the future
    assert not verify(SECRET, headers, body, now + 30, tolerance_s=10)
    assert not verify("another-secret", headers, body, now)
    assert not verify(SECRET, {**headers, "X-Voicebot-Timestamp": "1700000001"}, body, now)
    assert not verify(SECRET, {**headers, "X-Voicebot-Timestamp": "soon"}, body, now)
    assert not verify(SECRET, {"X-Voicebot-Timestamp": "1700000000"}, body, now)
    assert not verify(SECRET, {**headers, "X-Voicebot-Signature": "sha256=é"}, body, now)
