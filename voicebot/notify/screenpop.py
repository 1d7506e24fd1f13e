"""Screen-pop webhook: tells the CRM about a hand-off, signed, retried, and never blocking the caller.

:meth:`ScreenPop.send` only queues (bounded, never blocks, never raises); one native daemon thread posts,
using the standard library only (no gevent here). Each POST carries::

    {"event": EVENT, "call_id": ID, "sent_at": UNIX_S, "attempt": N, "data": PAYLOAD}    (UTF-8 JSON)

with headers ``Content-Type: application/json``, ``X-Voicebot-Event``, ``X-Voicebot-Timestamp`` (unix seconds),
``X-Voicebot-Signature`` (``sha256=`` + hex HMAC-SHA256 of ``TIMESTAMP.`` + body, see :func:`sign`; receivers
check it with :func:`verify`) and ``Idempotency-Key`` (the same for every attempt of one (call id, event)).

Connection errors, timeouts, 5xx, 408 and 429 are retried up to ``retries`` times after
``backoff_s * 2**n`` seconds (±20 % jitter, at most ``max_backoff_s``, or the server's ``Retry-After``
within that cap); other answers (2xx: sent; 3xx, 4xx: failed) are final. Logs (``screenpop.sent``,
``screenpop.retry``, ``screenpop.failed``, ``screenpop.dropped``) carry ``hook_event`` (structlog keeps
``event`` for the log event's name), ``call``, ``attempt`` and ``status``, never the payload.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import random
import socket
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from voicebot import __version__
from voicebot.config import HandoffConfig
from voicebot.logs import get_logger
from voicebot.notify.signed import PostOutcome, backoff, post, sign, verify

__all__ = ["ScreenPop", "ScreenPopConfig", "sign", "verify"]

_KEY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "voicebot:screenpop")


def _log() -> Any:
    return get_logger("screenpop")


@dataclass(frozen=True)
class ScreenPopConfig:
    """Where and how to post. Seconds: ``timeout_s`` per socket operation (default 2), ``backoff_s`` first retry
    delay (0.25), ``max_backoff_s`` cap (5); ``retries`` after the first attempt (4); ``max_queue`` events (1000)."""

    url: str
    secret: str
    timeout_s: float = 2.0
    retries: int = 4
    backoff_s: float = 0.25
    max_backoff_s: float = 5.0
    max_queue: int = 1000


@dataclass(frozen=True)
class _Item:
    """One queued event; ``data`` is the payload already serialized as JSON."""

    event: str
    call_id: str
    data: str


class ScreenPop:
    """Posts queued events from one daemon thread; :attr:`stats` counts sent, retried, failed and dropped."""

    def __init__(self, config: ScreenPopConfig) -> None:
        url = urllib.parse.urlsplit(config.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"screen-pop url must be http:// or https:// with a host, got scheme {url.scheme!r}")
        if config.retries < 0 or config.max_queue < 1 or config.timeout_s <= 0 or config.backoff_s < 0:
            raise ValueError("screen-pop: retries ≥ 0, max_queue ≥ 1, timeout_s > 0 and backoff_s ≥ 0 are required")
        self.config = config
        self._url = url
        self.stats: dict[str, int] = {"sent": 0, "retried": 0, "failed": 0, "dropped": 0}
        self._queue: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._stop = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._rng = random.Random()
        self._tls = ssl.create_default_context() if url.scheme == "https" else None
        self._thread = threading.Thread(target=self._run, name="screenpop", daemon=True)
        self._thread.start()

    def send(self, event: str, call_id: str, payload: Mapping[str, object]) -> bool:
        """Queue one event; False (counted as dropped) when the queue is full, closed, or the payload is not JSON."""
        try:
            item = _Item(str(event), str(call_id), json.dumps(dict(payload), ensure_ascii=False))
        except Exception:  # never raise into the call: a payload that is not JSON is dropped
            return self._drop(event, call_id, "payload is not JSON")
        with self._cond:
            if self._closing:
                reason = "closed"
            elif len(self._queue) >= self.config.max_queue:
                reason = "queue full"
            else:
                self._queue.append(item)
                self._cond.notify()
                return True
        return self._drop(event, call_id, reason)

    def close(self, timeout: float = 2.0) -> None:
        """Send what can be sent within ``timeout`` seconds, then stop; events still queued count as dropped."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()
            self._interrupt()
            self._thread.join(1.0)
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
        for item in left:
            self._drop(item.event, item.call_id, "closed before delivery")

    def _interrupt(self) -> None:
        """Wake a worker blocked on a silent server (shutdown, unlike close, ends a blocked recv)."""
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- worker thread --

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or self._stop.is_set():
                    return
                item = self._queue.popleft()
            try:
                self._deliver(item)
            except Exception as exc:  # a bug here must not kill the worker
                self._count("failed")
                with contextlib.suppress(Exception):
                    _log().error("screenpop.failed", hook_event=item.event, call=item.call_id, error=type(exc).__name__)

    def _deliver(self, item: _Item) -> None:
        attempts = self.config.retries + 1
        for attempt in range(1, attempts + 1):
            outcome = self._post(item, attempt)
            fields = {"hook_event": item.event, "call": item.call_id, "attempt": attempt, "status": outcome.status}
            if 200 <= outcome.status < 300:
                self._count("sent")
                _log().info("screenpop.sent", **fields)
                return
            if not outcome.retryable or attempt == attempts or self._stop.is_set():
                self._count("failed")
                _log().warning("screenpop.failed", error=outcome.error, **fields)
                return
            delay = self._delay(attempt, outcome.retry_after)
            self._count("retried")
            _log().info("screenpop.retry", error=outcome.error, retry_in_s=round(delay, 3), **fields)
            if self._stop.wait(delay):
                self._count("failed")
                _log().warning("screenpop.failed", error="closed while retrying", **fields)
                return

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before attempt ``attempt + 1``: exponential with ±20 % jitter, or Retry-After; ≤ max_backoff_s."""
        return backoff(attempt, self.config.backoff_s, self.config.max_backoff_s, self._rng, retry_after)

    def _post(self, item: _Item, attempt: int) -> PostOutcome:
        """One POST of ``item``; the outcome, never an exception."""
        body, headers = self._request(item, attempt, time.time())
        return post(self._url, body, headers, self.config.timeout_s, tls=self._tls, opened=self._opened)

    def _opened(self, conn: http.client.HTTPConnection | None) -> None:
        self._conn = conn

    def _request(self, item: _Item, attempt: int, sent_at: float) -> tuple[bytes, dict[str, str]]:
        """The signed body and headers of one attempt (``sent_at``: unix seconds)."""
        head = {"event": item.event, "call_id": item.call_id, "sent_at": sent_at, "attempt": attempt}
        body = f'{json.dumps(head, ensure_ascii=False)[:-1]}, "data": {item.data}}}'.encode()
        timestamp = str(int(sent_at))
        return body, {
            "Content-Type": "application/json", "User-Agent": f"voicebot/{__version__}", "X-Voicebot-Event": item.event,
            "X-Voicebot-Timestamp": timestamp, "X-Voicebot-Signature": sign(self.config.secret, timestamp, body),
            "Idempotency-Key": str(uuid.uuid5(_KEY_NAMESPACE, f"{item.call_id}\x00{item.event}")),
        }

    def _count(self, key: str) -> None:
        with self._cond:
            self.stats[key] += 1

    def _drop(self, event: object, call_id: object, reason: str) -> bool:
        self._count("dropped")
        _log().warning("screenpop.dropped", hook_event=_safe_str(event), call=_safe_str(call_id), reason=reason)
        return False


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def make_screenpop(config: HandoffConfig) -> ScreenPop | None:
    """The screen-pop sender, when a URL is configured."""
    if not config.screen_pop_url:
        return None
    return ScreenPop(ScreenPopConfig(url=config.screen_pop_url, secret=config.screen_pop_secret,
                                     retries=config.screen_pop_retries))
