"""structlog configuration: JSON lines, console, and personal data kept out of logs."""

from __future__ import annotations

import io
import json

import pytest

from voicebot import logs


@pytest.fixture(autouse=True)
def _reset() -> None:
    yield
    logs.configure(json=True)


def test_json_lines_redact_pii_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VOICEBOT_LOG_PII", raising=False)
    out = io.StringIO()
    logs.configure(json=True, stream=out)
    logs.get_logger("test").info("turn.final", node="greet", pii={"transcript": "my number is +14155550100"})
    record = json.loads(out.getvalue())
    assert record["event"] == "turn.final" and record["node"] == "greet" and record["component"] == "test"
    assert record["pii"] == "[redacted]" and "+1415" not in out.getvalue() and "my number" not in out.getvalue()


def test_pii_kept_when_asked() -> None:
    out = io.StringIO()
    logs.configure(json=True, pii=True, stream=out)
    logs.get_logger("test").info("turn.final", pii={"transcript": "hello"})
    assert json.loads(out.getvalue())["pii"] == {"transcript": "hello"}


def test_console_renderer_when_not_json() -> None:
    out = io.StringIO()
    logs.configure(json=False, stream=out)
    logs.get_logger("test").warning("esl.down", retry_in_s=2)
    text = out.getvalue()
    assert "esl.down" in text and "retry_in_s" in text and not text.lstrip().startswith("{")
