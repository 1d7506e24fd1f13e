"""A campaign definition file (YAML) an operator writes, checked like a flow: every problem at once, each with
``file:line:col``, its key and a did-you-mean. ``examples/campaigns/spring_offer_en.yaml`` shows every key;
docs/campaigns.md explains them.

:func:`load_definition` gives a :class:`Definition` (the :class:`~voicebot.campaign.store.Campaign` to store and
the caller-ID numbers to load into its pool) or raises :class:`DefinitionError` listing the problems.
Relative paths (``flow``) are relative to the definition file.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import phonenumbers

from voicebot.campaign.model import CATALOGUE, Pacing, RetryRule
from voicebot.campaign.numbers import NumberError, normalize
from voicebot.campaign.store import Campaign
from voicebot.campaign.windows import CallingWindow, WindowError
from voicebot.schemacheck import check_schema
from voicebot.yamldoc import Doc, KeyPath, Problem, did_you_mean, read_yaml

AMD_POLICIES = ("hang_up", "leave_message", "off")
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class DefinitionError(ValueError):
    """A campaign file with problems; ``problems`` lists every one (file:line:col, key, message, hint)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Definition:
    """A checked campaign file: the campaign (status ``paused``) and its caller IDs (E.164 -> region)."""

    campaign: Campaign
    caller_ids: Mapping[str, str]
    flow: Path


def _number(minimum: float, exclusive: bool = False, maximum: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "number", "exclusiveMinimum" if exclusive else "minimum": minimum}
    return out | ({"maximum": maximum} if maximum is not None else {})


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


SCHEMA: dict[str, Any] = _object({
    "campaign": {"type": "string", "pattern": ID_PATTERN,
                 "patternErrorMessage": "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"},
    "name": {"type": "string"},
    "flow": {"type": "string", "minLength": 1},
    "window": {"type": "object", "minProperties": 1,
               "additionalProperties": {"type": "array", "items": {"type": "string"}}},
    "holidays": {"type": "array", "items": {"type": "string"}},
    "time_zone": _object({"region": {"type": "string"}, "column": {"type": "string", "minLength": 1}}),
    "pacing": _object({"max_cps": _number(0, True), "max_dial_level": _number(0, True),
                       "min_answer_rate": _number(0, True, 1), "answer_rate_alpha": _number(0, True, 1),
                       "handoff_rate": _number(0, True, 1)}),
    "retries": {"type": "object", "additionalProperties": _object(
        {"delay_s": _number(0), "max_retries": {"type": "integer", "minimum": 0}}, ("delay_s", "max_retries"))},
    "max_attempts": {"type": "integer", "minimum": 1},
    "min_gap_s": _number(0),
    "daily_cap": {"type": "integer", "minimum": 1},
    "total_cap": {"type": "integer", "minimum": 0},
    "caller_ids": _object({"pool": {"type": "string", "minLength": 1},
                           "numbers": {"type": "array", "items": {"type": ["string", "integer"]}}}),
    "agent_group": {"type": "string"},
    "answering_machine": _object({"policy": {"enum": list(AMD_POLICIES)}, "message": {"type": "string"}}, ("policy",)),
}, ("campaign", "flow"))


@functools.cache
def _validator() -> Any:
    return jsonschema.Draft202012Validator(SCHEMA)


def load_definition(path: Path) -> Definition:
    """Read and check ``path``; :class:`DefinitionError` lists every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise DefinitionError([Problem(str(path), 1, 1, "", f"cannot read the campaign file: {reason}")]) from None
    doc = read_yaml(text, str(path), empty="a campaign needs at least 'campaign' and 'flow'")
    flow, caller_ids = Path(), dict[str, str]()
    if doc.parsed and not isinstance(doc.data, dict):
        doc.at((), "a campaign file is a mapping of keys (campaign, flow, window...)")
    if doc.parsed and isinstance(doc.data, dict):
        check_schema(doc, _validator())
        _check_window(doc)
        _check_retries(doc)
        _check_answering_machine(doc)
        flow = _check_flow(doc, path)
        region = _check_region(doc)
        caller_ids = _caller_ids(doc, region)
    if doc.problems:
        raise DefinitionError(sorted(dict.fromkeys(doc.problems), key=lambda p: (p.line, p.column)))
    return Definition(_campaign(doc.data, flow), caller_ids, flow)


def _check_window(doc: Doc) -> None:
    """Each weekday key and hours range parses; each holiday is an ISO date."""
    window = doc.data.get("window")
    for days, ranges in (window or {}).items() if isinstance(window, dict) else ():
        for i, text in enumerate(ranges if isinstance(ranges, list) else []):
            try:
                CallingWindow.parse({days: [text]} if isinstance(text, str) else {days: []})
            except WindowError as exc:
                where: KeyPath = ("window", days) if "weekdays" in str(exc) else ("window", days, i)
                doc.at(where, str(exc), key="weekdays" in str(exc))
                if "weekdays" in str(exc):
                    break
    holidays = doc.data.get("holidays")
    for i, text in enumerate(holidays if isinstance(holidays, list) else []):
        try:
            date.fromisoformat(str(text))
        except ValueError:
            doc.at(("holidays", i), f"'{text}' is not a date", "write it as YYYY-MM-DD, e.g. 2026-12-25")


def _check_retries(doc: Doc) -> None:
    """Retry rules name dispositions of the catalogue that are retried at all."""
    retries = doc.data.get("retries")
    for name in retries if isinstance(retries, dict) else ():
        entry = CATALOGUE.get(name)
        if entry is None:
            hint = did_you_mean(name, CATALOGUE) or "dispositions: " + ", ".join(CATALOGUE)
            doc.at(("retries", name), f"unknown disposition '{name}'", hint, key=True)
        elif entry.final or entry.block:
            doc.at(("retries", name), f"'{name}' is final: a lead that ends so is never called again",
                   "remove this rule", key=True)


def _check_answering_machine(doc: Doc) -> None:
    amd = doc.data.get("answering_machine")
    if isinstance(amd, dict) and amd.get("policy") == "leave_message" and not str(amd.get("message") or "").strip():
        doc.at(("answering_machine", "policy"), "leave_message needs the message to leave",
               "add answering_machine.message: the words the bot says after the beep")


def _check_flow(doc: Doc, path: Path) -> Path:
    """The flow file exists and has no errors (``voicebot validate`` shows them)."""
    from voicebot.dialog.loader import validate_file

    value = doc.data.get("flow")
    flow = Path(str(value)) if isinstance(value, str) else Path()
    flow = flow if flow.is_absolute() else (path.parent / flow).resolve()
    if not isinstance(value, str) or not value:
        return flow
    if not flow.is_file():
        doc.at(("flow",), f"no flow file at {flow}", "the path is relative to this campaign file")
        return flow
    errors = [p for p in validate_file(flow) if p.severity == "error"]
    if errors:
        doc.at(("flow",), f"the flow has {len(errors)} error(s), the first: {errors[0]}", f"run voicebot validate {flow}")
    return flow


def _check_region(doc: Doc) -> str:
    tz = doc.data.get("time_zone")
    region = str(tz.get("region") or "") if isinstance(tz, dict) else ""
    if region and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        hint = did_you_mean(region.upper(), sorted(phonenumbers.SUPPORTED_REGIONS)) or "an ISO 3166 code such as US or CN"
        doc.at(("time_zone", "region"), f"unknown region '{region}'", hint)
    return region.upper()


def _caller_ids(doc: Doc, region: str) -> dict[str, str]:
    """The pool's numbers in E.164 (as written in the file: a leading + makes YAML read a number)."""
    ids = doc.data.get("caller_ids")
    numbers = ids.get("numbers") if isinstance(ids, dict) else None
    out: dict[str, str] = {}
    for i, value in enumerate(numbers if isinstance(numbers, list) else []):
        text = doc.raw.get(("caller_ids", "numbers", i), str(value))
        try:
            info = normalize(text, region)
        except NumberError as exc:
            doc.at(("caller_ids", "numbers", i), f"caller ID '{text}': {exc}", "a number you hold, in E.164 (+12125550100)")
            continue
        out[info.e164] = info.region
    return out


def _campaign(data: dict[str, Any], flow: Path) -> Campaign:
    """The campaign the checked ``data`` describes (absent keys: the store's defaults)."""
    base = Campaign(str(data["campaign"]))
    amd = data.get("answering_machine") or {}
    tz = data.get("time_zone") or {}
    settings = {"time_zone": {"region": str(tz.get("region", "")).upper(), "column": str(tz.get("column", ""))}}
    return Campaign(
        base.id, str(data.get("name", base.id)), str(flow), data.get("window", base.window),
        tuple(str(d) for d in data.get("holidays", ())),
        {k: RetryRule(float(v["delay_s"]), int(v["max_retries"])) for k, v in (data.get("retries") or {}).items()},
        int(data.get("max_attempts", base.max_attempts)), float(data.get("min_gap_s", base.min_gap_s)),
        int(data.get("daily_cap", base.daily_cap)), int(data.get("total_cap", base.total_cap)),
        Pacing(**{k: float(v) for k, v in (data.get("pacing") or {}).items()}),
        str((data.get("caller_ids") or {}).get("pool", base.id if data.get("caller_ids") else "")),
        str(data.get("agent_group", "")), str(amd.get("policy", base.amd_policy)), "paused",
        str(amd.get("message", "")), settings)
