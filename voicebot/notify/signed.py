"""Signed JSON POSTs, shared by the screen-pop and the outbox sender: the signature, one attempt, the backoff.

Standard library only (``http.client`` with a timeout per socket operation): the senders run in native threads.
The signature is ``sha256=`` + hex HMAC-SHA256 of ``TIMESTAMP.`` + body (:func:`sign`), sent in
``X-Voicebot-Signature`` beside ``X-Voicebot-Timestamp``; receivers check both with :func:`verify`.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import random
import ssl
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["PostOutcome", "backoff", "connection", "post", "retry_after", "sign", "verify"]

RETRY_STATUSES = frozenset({408, 429})  # besides 5xx and no answer at all


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``"sha256=" + hex(HMAC-SHA256(secret, f"{timestamp}." + body))``."""
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance_s: float = 300) -> bool:
    """True when the signature matches ``body`` and the timestamp is within ``tolerance_s`` of ``now`` (unix s).

    Header names are matched case-insensitively; the comparison is constant-time; never raises.
    """
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    timestamp, signature = lower.get("x-voicebot-timestamp", ""), lower.get("x-voicebot-signature", "")
    try:
        age = abs(now - float(timestamp))
        expected = sign(secret, timestamp, body)
    except (ValueError, UnicodeError):
        return False
    return age <= tolerance_s and hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace"))


@dataclass(frozen=True)
class PostOutcome:
    """One attempt: HTTP ``status`` (0 for no answer), ``error`` text, server's ``Retry-After`` seconds (or None)."""

    status: int
    error: str = ""
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        """Worth another try: no answer, 5xx, 408 or 429."""
        return self.status == 0 or self.status >= 500 or self.status in RETRY_STATUSES


def backoff(attempt: int, base_s: float, cap_s: float, rng: random.Random, retry_after_s: float | None = None) -> float:
    """Seconds before attempt ``attempt + 1``: ``base_s * 2**(attempt-1)`` ±20 % jitter, or Retry-After; ≤ ``cap_s``."""
    delay = retry_after_s if retry_after_s is not None else base_s * 2.0 ** min(attempt - 1, 60) * rng.uniform(0.8, 1.2)
    return max(0.0, min(delay, cap_s))


def connection(url: urllib.parse.SplitResult, timeout_s: float, tls: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    """An unopened connection to ``url``'s host (HTTPS for https://, with ``tls`` or the default context)."""
    host, port = url.hostname or "", url.port
    if url.scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=timeout_s, context=tls or ssl.create_default_context())
    return http.client.HTTPConnection(host, port, timeout=timeout_s)


def post(url: urllib.parse.SplitResult, body: bytes, headers: Mapping[str, str], timeout_s: float, *,
         tls: ssl.SSLContext | None = None,
         opened: Callable[[http.client.HTTPConnection | None], None] | None = None) -> PostOutcome:
    """One POST of ``body``; the outcome, never an exception. ``opened`` is told the connection, then None."""
    conn = connection(url, timeout_s, tls)
    if opened is not None:
        opened(conn)
    try:
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        conn.request("POST", target, body=body, headers=dict(headers))
        response = conn.getresponse()
        response.read()
        return PostOutcome(response.status, "" if response.status < 400 else response.reason, retry_after(response))
    except (OSError, http.client.HTTPException) as exc:
        return PostOutcome(0, type(exc).__name__)
    finally:
        if opened is not None:
            opened(None)
        conn.close()


def retry_after(response: http.client.HTTPResponse) -> float | None:
    """The ``Retry-After`` header in seconds (the delta-seconds form only), or None."""
    value = response.getheader("Retry-After", "") or ""
    try:
        return max(0.0, float(value)) if value.strip() else None
    except ValueError:
        return None
