"""Check a flow test file (``NAME.tests.yaml``) against its schema and the flow it tests, every problem at once.

Structure comes from :data:`SCHEMA_PATH` (beside the flow schema); then each test is checked against the flow:
nodes in ``path``/``path_includes``, intents, tags, levels, slots and notifications the flow can produce,
variables it declares, and each caller action. Problems read like the flow's: ``file:line:col: error: key.path:
message (hint: did you mean ...?)``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]

from voicebot.dialog.flow import Flow
from voicebot.dialog.loader import SCHEMA_PATH as FLOW_SCHEMA_PATH
from voicebot.dialog.loader import FlowError, load_flow
from voicebot.schemacheck import check_schema
from voicebot.sim.script import ACTION_OPTIONS, ScriptError, action_from_item
from voicebot.sim.text import ACTION_KINDS
from voicebot.yamldoc import Doc, KeyPath, did_you_mean, read_yaml

__all__ = ["SCHEMA_PATH", "validate_tests"]

SCHEMA_PATH = FLOW_SCHEMA_PATH.with_name("flowtest.schema.json")
_DTMF_INTENT = re.compile(r"dtmf [0-9*#]+")


def validate_tests(path: Path) -> tuple[Doc, Flow | None]:
    """The checked test file (``doc.problems`` sorted) and the flow it names (None when that has errors)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        doc = Doc(str(path))
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        doc.add((1, 1), (), f"cannot read the test file: {reason}")
        return doc, None
    doc = read_yaml(text, str(path), empty="a test file needs `flow: FILE` and a `tests:` list")
    flow = None
    if doc.parsed:
        check_schema(doc, _validator())
        flow = _flow(doc, path)
        for i, case in enumerate(_list(doc.data, "tests")):
            if isinstance(case, dict):
                _check_callers(doc, ("tests", i), case)
                if flow is not None:
                    _check_against_flow(doc, ("tests", i), case, flow)
    doc.problems = sorted(dict.fromkeys(doc.problems), key=lambda p: (p.line, p.column))
    return doc, flow


@functools.cache
def _validator() -> Any:
    """The Draft 2020-12 validator for the test-file schema (loaded once)."""
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def _list(data: Any, key: str) -> list[Any]:
    """``data[key]`` when it is a list, else []."""
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, list) else []


def _flow(doc: Doc, path: Path) -> Flow | None:
    """The flow named by ``flow:``; a missing or broken flow is a problem at that key."""
    name = doc.data.get("flow") if isinstance(doc.data, dict) else None
    if not isinstance(name, str) or not name:
        return None
    flow_path = path.parent / name
    if not flow_path.is_file():
        nearby = [p.name for p in path.parent.glob("*.y*ml") if not p.name.endswith((".tests.yaml", ".tests.yml"))]
        hint = did_you_mean(name, nearby) or "the path is relative to this test file"
        doc.at(("flow",), f"no flow file '{name}' beside this test file", hint)
        return None
    try:
        return load_flow(flow_path)
    except FlowError as exc:
        errors = sum(p.severity == "error" for p in exc.problems)
        doc.at(("flow",), f"the flow '{name}' has {errors} error(s)", f"run: voicebot validate {flow_path}")
        return None


def _check_callers(doc: Doc, path: KeyPath, case: dict[str, Any]) -> None:
    """Each caller action must be one the simulator understands."""
    for j, item in enumerate(_list(case, "caller")):
        where: KeyPath = (*path, "caller", j)
        known = (*ACTION_KINDS, *ACTION_OPTIONS)
        unknown = [key for key in item if key not in known] if isinstance(item, dict) else []
        for key in unknown:
            hint = did_you_mean(str(key), known) or "use one of: " + ", ".join(ACTION_KINDS)
            doc.at((*where, key), f"unknown caller action '{key}'", hint, key=True)
        if unknown:
            continue
        try:
            action_from_item(item)
        except ScriptError as exc:
            doc.at(where, str(exc))


def _check_against_flow(doc: Doc, path: KeyPath, case: dict[str, Any], flow: Flow) -> None:
    """What the test names must exist in the flow: variables, nodes, intents, tags, levels, slots, notifications."""
    variables = case.get("vars")
    for name in variables if isinstance(variables, dict) else {}:
        if name not in flow.variables:
            hint = did_you_mean(name, flow.variables) or _known("the flow declares", flow.variables)
            doc.at((*path, "vars", name), f"the flow has no variable '{name}'", hint, key=True)
    expect = case.get("expect")
    if not isinstance(expect, dict):
        return
    where: KeyPath = (*path, "expect")
    nodes = list(flow.nodes)
    _check_names(doc, (*where, "path"), expect, "path", nodes, "unknown node '{}'")
    _check_names(doc, (*where, "path_includes"), expect, "path_includes", nodes, "unknown node '{}'")
    intents = [*flow.intents, "none"]
    for j, intent in enumerate(_list(expect, "intents")):
        if isinstance(intent, str) and intent not in intents and not _DTMF_INTENT.fullmatch(intent):
            hint = did_you_mean(intent, intents) or "an intent of the flow, none (no match) or dtmf KEY"
            doc.at((*where, "intents", j), f"unknown intent '{intent}'", hint)
    tags = {tag for node in flow.nodes.values() for tag in node.tags}
    _check_names(doc, (*where, "tags"), expect, "tags", sorted(tags), "no node sets tag '{}'")
    notes = {*flow.hangup_notify, *(note for node in flow.nodes.values() for note in node.notify)}
    _check_names(doc, (*where, "notifications"), expect, "notifications", sorted(notes), "the flow never sends '{}'")
    levels = sorted({node.level for node in flow.nodes.values() if node.level})
    level = expect.get("level")
    if level in ("A", "B", "C", "D") and level not in levels:
        doc.at((*where, "level"), f"no node sets level '{level}'", _known("levels the flow sets", levels))
    slots = expect.get("slots")
    captured = sorted({slot for node in flow.nodes.values() for slot in node.capture})
    for name in slots if isinstance(slots, dict) else {}:
        if name not in captured:
            hint = did_you_mean(name, captured) or _known("slots the flow captures", captured)
            doc.at((*where, "slots", name), f"no node captures slot '{name}'", hint, key=True)


def _check_names(doc: Doc, path: KeyPath, expect: dict[str, Any], key: str, known: list[str], message: str) -> None:
    """Each name listed under ``expect[key]`` must be one of ``known``."""
    for j, name in enumerate(_list(expect, key)):
        if isinstance(name, str) and name not in known:
            doc.at((*path, j), message.format(name), did_you_mean(name, known) or _known("the flow has", known))


def _known(what: str, names: Iterable[str]) -> str:
    """``"the flow has: a, b"`` (``none`` when empty)."""
    return f"{what}: {', '.join(names) or 'none'}"
