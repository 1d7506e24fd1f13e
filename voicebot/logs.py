"""structlog, configured once: JSON lines in production, readable console in a terminal.

Personal data (phone numbers, names, transcripts) never goes into a log
event's name or message text. Put it under the ``pii`` key, a dict::

    log.info("turn.final", node="greet", pii={"transcript": text})

By default the ``pii`` field is replaced with ``"[redacted]"``; set
``VOICEBOT_LOG_PII=1`` (or ``configure(pii=True)``) to keep it, e.g. on a
test box.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

PII_KEY = "pii"
_configured = False


def _redact_pii(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    if PII_KEY in event_dict:
        event_dict[PII_KEY] = "[redacted]"
    return event_dict


def configure(*, json: bool | None = None, pii: bool | None = None, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Configure structlog for the process. ``json=None`` picks JSON unless ``stream`` is a terminal."""
    global _configured
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    if pii is None:
        pii = os.environ.get("VOICEBOT_LOG_PII", "") == "1"
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if not pii:
        processors.append(_redact_pii)
    processors.append(structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=stream.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str) -> Any:
    """A logger bound to ``component=name``; configures defaults on first use."""
    if not _configured:
        configure()
    return structlog.get_logger().bind(component=name)
