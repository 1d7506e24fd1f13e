"""The outbox sender: one native thread that posts due messages, signed, and retries them until delivered.

Never on the gevent hub and never in a call's path: calls only write to the outbox (through the
:class:`voicebot.notify.notifier.Notifier`'s own writer thread); this thread reads it. Each POST carries the
message's ``payload`` as its UTF-8 JSON body, with headers ``Content-Type: application/json``,
``Idempotency-Key`` (the message id: the same on every attempt, so a gateway drops duplicates),
``X-Voicebot-Event`` (``sms`` or ``webhook``), ``X-Voicebot-Attempt``, ``X-Voicebot-Timestamp`` (unix s) and
``X-Voicebot-Signature`` (``sha256=`` + hex HMAC-SHA256 of ``TIMESTAMP.`` + body, the screen-pop's
:func:`~voicebot.notify.signed.sign`; receivers check it with :func:`~voicebot.notify.signed.verify`).

2xx: delivered (marked once). Connection errors, timeouts, 5xx, 408 and 429: retried after
``backoff_s * 2**(attempt-1)`` seconds, ±20 % jitter, at most ``max_backoff_s`` (or the server's
``Retry-After`` within that cap), forever unless ``max_attempts`` is set. Other answers (3xx, 4xx) are final:
the message is given up (``failed_at``). Delivery is at least once on the wire: a message being posted when
the engine dies is posted again after its lease (``lease_s``); a gateway that honours ``Idempotency-Key``
sees it exactly once.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voicebot import __version__
from voicebot.logs import get_logger
from voicebot.notify.outbox import Claimed, Outbox
from voicebot.notify.signed import PostOutcome, backoff, post, sign

__all__ = ["Endpoint", "Sender", "SenderConfig"]


def _log() -> Any:
    return get_logger("outbox")


@dataclass(frozen=True)
class Endpoint:
    """Where one gateway or webhook listens: ``url`` (http/https), the signing ``secret``, ``timeout_s`` per socket op."""

    url: str
    secret: str
    timeout_s: float = 5.0


@dataclass(frozen=True)
class SenderConfig:
    """Seconds: ``backoff_s`` first retry delay (1), ``max_backoff_s`` cap (300), ``lease_s`` a claim's lease (60;
    keep it above the endpoints' timeouts), ``poll_s`` longest idle wait (5). ``max_attempts`` (0: no limit) and
    ``batch`` (messages claimed at once, 20)."""

    backoff_s: float = 1.0
    max_backoff_s: float = 300.0
    max_attempts: int = 0
    lease_s: float = 60.0
    poll_s: float = 5.0
    batch: int = 20


@dataclass
class Sender:
    """Delivers the outbox's due messages from one daemon thread; :attr:`stats` counts sent, retried, failed."""

    outbox: Outbox
    endpoints: Mapping[str, Endpoint]
    config: SenderConfig = field(default_factory=SenderConfig)
    clock: Callable[[], float] = time.time
    stats: dict[str, int] = field(default_factory=lambda: {"sent": 0, "retried": 0, "failed": 0, "errors": 0})

    def __post_init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._rng = random.Random()
        self._thread: threading.Thread | None = None

    def start(self) -> Sender:
        """Start the thread (undelivered messages from an earlier run go out first); returns self."""
        self._thread = threading.Thread(target=self._run, name="outbox-sender", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """New messages are due: look now (never blocks)."""
        self._wake.set()

    def close(self, timeout: float = 2.0) -> None:
        """Stop after the message being posted (at most ``timeout`` s); what is left is sent on the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- worker thread --

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.run_once()
                wait = 0.0 if sent else self._idle_wait()
            except Exception as exc:  # the database is away: try again later, never die
                self.stats["errors"] += 1
                with contextlib.suppress(Exception):
                    _log().warning("outbox.db_error", error=type(exc).__name__, detail=str(exc)[:200])
                wait = self.config.poll_s
            if wait > 0:
                self._wake.wait(wait)
            self._wake.clear()

    def _idle_wait(self) -> float:
        due = self.outbox.next_due()
        if due is None:
            return self.config.poll_s
        return max(0.0, min(self.config.poll_s, due - self.clock()))

    def run_once(self) -> int:
        """Claim the due messages and try each once; returns how many were claimed."""
        claims = self.outbox.claim(self.clock(), self.config.batch, self.config.lease_s)
        for claim in claims:
            if self._stop.is_set():
                break  # left claimed: due again after the lease, or at the next start
            self._attempt(claim)
        return len(claims)

    def _attempt(self, claim: Claimed) -> None:
        m = claim.message
        endpoint = self.endpoints.get(m.endpoint)
        fields = {"message": m.id, "kind": m.kind, "endpoint": m.endpoint, "attempt": claim.attempts}
        missing = PostOutcome(0, f"endpoint {m.endpoint!r} is not configured")
        outcome = missing if endpoint is None else self._post(endpoint, claim)
        if 200 <= outcome.status < 300:
            if self.outbox.delivered(claim, self.clock()):
                self.stats["sent"] += 1
                _log().info("outbox.sent", status=outcome.status, **fields)
            return
        error = f"HTTP {outcome.status} {outcome.error}".strip() if outcome.status else outcome.error
        final = not outcome.retryable or 0 < self.config.max_attempts <= claim.attempts
        if final:
            self.outbox.give_up(claim, self.clock(), error)
            self.stats["failed"] += 1
            _log().warning("outbox.failed", status=outcome.status, error=error, **fields)
            return
        delay = self._delay(claim.attempts, outcome.retry_after)
        self.outbox.retry_at(claim, self.clock() + delay, error)
        self.stats["retried"] += 1
        _log().info("outbox.retry", status=outcome.status, error=error, retry_in_s=round(delay, 3), **fields)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before the next attempt: exponential with ±20 % jitter, or Retry-After; at most max_backoff_s."""
        return backoff(attempt, self.config.backoff_s, self.config.max_backoff_s, self._rng, retry_after)

    def _post(self, endpoint: Endpoint, claim: Claimed) -> PostOutcome:
        """One signed POST; the outcome, never an exception."""
        body = json.dumps(dict(claim.message.payload), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json", "User-Agent": f"voicebot/{__version__}",
            "Idempotency-Key": claim.message.id, "X-Voicebot-Event": claim.message.kind,
            "X-Voicebot-Attempt": str(claim.attempts), "X-Voicebot-Timestamp": timestamp,
            "X-Voicebot-Signature": sign(endpoint.secret, timestamp, body),
        }
        return post(urllib.parse.urlsplit(endpoint.url), body, headers, endpoint.timeout_s)
