"""The ``notifications:`` section of ``voicebot.yaml``: what each notification name of a flow sends, and where.

::

    notifications:
      db: voicebot-outbox.sqlite        # the outbox database (default: records.db, the same database)
      sms_gateway: {url: "http://127.0.0.1:9100/sms", secret: CHANGE-ME, timeout_s: 5}
      webhooks:
        crm: {url: "http://127.0.0.1:9200/hook", secret: CHANGE-ME-TOO}
      retry: {backoff_s: 1, max_backoff_s: 300, max_attempts: 0, lease_s: 60}
      sms:                              # notification name -> the SMS it sends (templates: {{name}})
        sms_invite: {to: "{{caller}}", text: "Hi {{customer_name}}, here is the link: https://example.com/x"}
      webhook:                          # notification name -> the webhooks it posts to
        call_outcome: [crm]

Problems are reported all at once, ``file:line:col: error: notifications.key: message (hint: ...)``, with a
did-you-mean for unknown keys and webhook names. A notification a flow names but this section does not
configure is sent nowhere (the engine logs ``notify.unconfigured``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]

from voicebot.notify.sender import Endpoint, SenderConfig
from voicebot.schemacheck import check_schema
from voicebot.yamldoc import Doc, Problem, did_you_mean, read_yaml

__all__ = ["NotificationsConfig", "NotificationsError", "SmsTemplate", "load_notifications", "parse_notifications"]

SECTION = "notifications"
SMS_ENDPOINT = "sms"  # the outbox endpoint name of the SMS gateway; webhooks use "webhook:NAME"
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class NotificationsError(ValueError):
    """Problems in the ``notifications:`` section, every one (file:line:col, key path, message, hint)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class SmsTemplate:
    """An SMS: ``to`` and ``text`` with ``{{name}}`` templates (call variables, slots, caller, outcome)."""

    to: str
    text: str


@dataclass(frozen=True)
class NotificationsConfig:
    """The parsed section. ``db`` is None: use the records database."""

    db: str | None = None
    sms_gateway: Endpoint | None = None
    webhooks: Mapping[str, Endpoint] = field(default_factory=dict)
    retry: SenderConfig = field(default_factory=SenderConfig)
    sms: Mapping[str, SmsTemplate] = field(default_factory=dict)
    webhook: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def endpoints(self) -> dict[str, Endpoint]:
        """The sender's endpoints by outbox endpoint name (``sms``, ``webhook:NAME``)."""
        out = {f"webhook:{name}": e for name, e in self.webhooks.items()}
        if self.sms_gateway is not None:
            out[SMS_ENDPOINT] = self.sms_gateway
        return out

    @property
    def configured(self) -> bool:
        return bool(self.sms or self.webhook)


_SECONDS = {"type": "number", "exclusiveMinimum": 0}
_ENDPOINT = {
    "type": "object", "additionalProperties": False, "required": ["url", "secret"],
    "properties": {
        "url": {"type": "string", "pattern": r"^https?://[^/\s]+", "patternErrorMessage": "expected an http:// or https:// URL"},
        "secret": {"type": "string", "minLength": 1},
        "timeout_s": _SECONDS,
    },
}
_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {SECTION: {
        "type": ["object", "null"], "additionalProperties": False,
        "properties": {
            "db": {"type": "string", "minLength": 1},
            "sms_gateway": _ENDPOINT,
            "webhooks": {"type": ["object", "null"], "additionalProperties": _ENDPOINT},
            "retry": {"type": ["object", "null"], "additionalProperties": False, "properties": {
                "backoff_s": _SECONDS, "max_backoff_s": _SECONDS, "lease_s": _SECONDS, "poll_s": _SECONDS,
                "max_attempts": {"type": "integer", "minimum": 0}, "batch": {"type": "integer", "minimum": 1}}},
            "sms": {"type": ["object", "null"], "additionalProperties": {
                "type": "object", "additionalProperties": False, "required": ["to", "text"],
                "properties": {"to": {"type": "string", "minLength": 1}, "text": {"type": "string", "minLength": 1}}}},
            "webhook": {"type": ["object", "null"], "additionalProperties": {
                "type": ["string", "array"], "items": {"type": "string"}, "minItems": 1}},
        },
    }},
}


@functools.cache
def _validator() -> Any:
    return jsonschema.Draft202012Validator(_SCHEMA)


def load_notifications(path: Path) -> NotificationsConfig:
    """The ``notifications:`` section of the config file at ``path`` (absent: nothing configured)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NotificationsError([Problem(str(path), 1, 1, "", f"cannot read the config file: {exc}")]) from None
    return parse_notifications(read_yaml(text, str(path), empty=None), path.parent.resolve())


def parse_notifications(doc: Doc, base: Path) -> NotificationsConfig:
    """The section from a read config document; relative ``db`` paths are relative to ``base``."""
    if doc.parsed and isinstance(doc.data, dict):
        check_schema(doc, _validator())
        _check_references(doc)
    problems = [p for p in doc.problems if p.path == SECTION or p.path.startswith(SECTION + ".") or not p.path]
    if problems:
        raise NotificationsError(sorted(dict.fromkeys(problems), key=lambda p: (p.line, p.column)))
    section = doc.data.get(SECTION) if isinstance(doc.data, dict) else None
    return _build(section or {}, base)


def _check_references(doc: Doc) -> None:
    """Webhook names exist, SMS need a gateway, templates are ``{{name}}``."""
    section = doc.data.get(SECTION)
    if not isinstance(section, dict):
        return
    hooks: dict[str, Any] = section["webhooks"] if isinstance(section.get("webhooks"), dict) else {}
    for name, targets in (section.get("webhook") or {}).items():
        for i, target in enumerate([targets] if isinstance(targets, str) else targets or []):
            if isinstance(target, str) and target not in hooks:
                path = (SECTION, "webhook", name) + ((i,) if isinstance(targets, list) else ())
                doc.at(path, f"no webhook named '{target}' under notifications.webhooks",
                       did_you_mean(target, hooks) or "define it under notifications.webhooks")
    sms = section.get("sms") or {}
    if sms and not isinstance(section.get("sms_gateway"), dict):
        doc.at((SECTION, "sms"), "SMS need a gateway", "add notifications.sms_gateway with url and secret", key=True)
    for name, spec in sms.items() if isinstance(sms, dict) else ():
        for key in ("to", "text"):
            value = spec.get(key) if isinstance(spec, dict) else None
            for match in _TEMPLATE.finditer(value if isinstance(value, str) else ""):
                if not _NAME.fullmatch(match.group(1).strip()):
                    doc.at((SECTION, "sms", name, key), f"bad template '{match.group(0)}'", "write {{name}} with a variable name")


def _endpoint(spec: Mapping[str, Any]) -> Endpoint:
    return Endpoint(str(spec["url"]), str(spec["secret"]), float(spec.get("timeout_s", 5.0)))


def _build(section: Mapping[str, Any], base: Path) -> NotificationsConfig:
    db = section.get("db")
    if isinstance(db, str) and "://" not in db and not Path(db).is_absolute():
        db = str(base / db)
    retry: dict[str, Any] = {k: (int(v) if k in ("max_attempts", "batch") else float(v))
                             for k, v in (section.get("retry") or {}).items()}
    hooks = section.get("webhook") or {}
    return NotificationsConfig(
        db=db,
        sms_gateway=_endpoint(section["sms_gateway"]) if section.get("sms_gateway") else None,
        webhooks={str(k): _endpoint(v) for k, v in (section.get("webhooks") or {}).items()},
        retry=SenderConfig(**retry),
        sms={str(k): SmsTemplate(str(v["to"]), str(v["text"])) for k, v in (section.get("sms") or {}).items()},
        webhook={str(k): (v,) if isinstance(v, str) else tuple(v) for k, v in hooks.items()},
    )
