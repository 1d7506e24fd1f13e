"""Load a YAML call flow into a :class:`~voicebot.dialog.flow.Flow`, checking everything.

Checks run in three stages and every problem points at a line and column:

1. YAML (:mod:`voicebot.yamldoc`): syntax errors, duplicate keys, unsupported tags. Scalars are read by
   the YAML 1.2 core schema, so only ``true``/``false`` are booleans and
   ``on``, ``off``, ``yes``, ``no`` stay strings (``on: {yes: ...}`` works).
2. Structure: the shipped JSON Schema (:data:`SCHEMA_PATH`, the same one editors
   use), with its messages rewritten for people (:mod:`voicebot.schemacheck`).
3. Meaning (:mod:`voicebot.dialog.checks`): dangling and unreachable
   targets, intents, template variables, recordings, node endings, regexes.

:func:`load_flow` raises :class:`FlowError` listing every problem;
:func:`validate_file` returns them (errors and warnings) without raising.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]

from voicebot.dialog.build import build_flow
from voicebot.dialog.checks import DEFAULT_PROMPTS_DIR, SEMANTIC_CHECKS, check_prompts
from voicebot.dialog.flow import LANGUAGES, Flow
from voicebot.logs import get_logger
from voicebot.schemacheck import check_schema, prune
from voicebot.yamldoc import Doc, KeyPath, Problem, did_you_mean, dotted, read_yaml

__all__ = ["DEFAULT_PROMPTS_DIR", "SCHEMA_PATH", "FlowError", "Problem", "load_flow", "load_flow_text", "validate_file"]

SCHEMA_PATH = Path(__file__).with_name("flow.schema.json")

_did_you_mean = did_you_mean  # the name voicebot.handoff.agents imports
_read_yaml = read_yaml


class FlowError(Exception):
    """A flow file has errors; ``problems`` lists all of them (and any warnings)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        """Keep ``problems``; the message lists them one per line."""
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def load_flow(path: str | Path, *, check_recordings: bool = True) -> Flow:
    """Load and check the flow file at ``path``; raise :class:`FlowError` on any error.

    With ``check_recordings`` a prompt that has no text must have its recording
    ``<flow dir>/<prompts_dir>/<prompt>.wav``.
    """
    flow, problems = _analyze_file(Path(path), check_recordings)
    return _result(flow, problems)


def load_flow_text(text: str, source: str = "<string>", *, check_recordings: bool = False) -> Flow:
    """Load and check flow YAML ``text``; ``source`` names it in messages and ``Flow.source``.

    Recordings are looked up beside ``source`` only when ``check_recordings`` is true.
    """
    base = Path(source).parent if check_recordings else None
    flow, problems = _analyze(text, source, base)
    return _result(flow, problems)


def validate_file(path: str | Path) -> list[Problem]:
    """Every problem (errors and warnings) in the flow file at ``path``, sorted by position."""
    return _analyze_file(Path(path), True)[1]


def _result(flow: Flow | None, problems: list[Problem]) -> Flow:
    """Return ``flow``, or raise :class:`FlowError` when ``problems`` hold an error."""
    if flow is None or any(p.severity == "error" for p in problems):
        raise FlowError(problems)
    if problems:
        log = get_logger("dialog.loader")
        for problem in problems:
            log.warning("flow.warning", problem=str(problem))
    return flow


def _analyze_file(path: Path, check_recordings: bool) -> tuple[Flow | None, list[Problem]]:
    """Read the file at ``path`` and check it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, [Problem(str(path), 1, 1, "", f"cannot read the flow file: {reason}")]
    return _analyze(text, str(path), path.parent if check_recordings else None)


def _analyze(text: str, source: str, flow_dir: Path | None) -> tuple[Flow | None, list[Problem]]:
    """Run every stage on ``text``; ``flow_dir`` (or None: skip) is where recordings live."""
    doc = read_yaml(text, source)
    if not doc.parsed:
        return None, _sorted(doc.problems)
    check_schema(doc, _validator())
    if doc.problems:
        _check_what_is_left(doc, source, flow_dir)
        return None, _sorted(doc.problems)
    flow = build_flow(doc, source)
    _check_meaning(doc, flow, flow_dir, skip=())
    return flow, _sorted(doc.problems)


def _check_meaning(doc: Doc, flow: Flow, flow_dir: Path | None, skip: Iterable[str]) -> None:
    """Stage 3: every semantic check but those named in ``skip``."""
    for check in SEMANTIC_CHECKS:
        if check.__name__ not in skip:
            check(doc, flow)
    check_prompts(doc, flow, flow_dir)


def _check_what_is_left(doc: Doc, source: str, flow_dir: Path | None) -> None:
    """Stage 3 on the part of a structurally broken flow the schema accepts, so one pass reports every error.

    Broken values are left out (a broken node, intent or variable stays as an empty stand-in so references to
    it still resolve); errors at or around a left-out path are not reported twice, checks that the left-out
    parts could mislead are skipped, and warnings wait for a flow without errors.
    """
    removed: list[KeyPath] = []
    salvaged = prune(doc.data, _validator(), functools.partial(_stand_in, doc.data, removed))
    if salvaged is None:
        return
    data, pruned = salvaged
    removed += pruned
    part = dataclasses.replace(doc, data=_stub_out(data, removed), problems=[])
    _check_meaning(part, build_flow(part, source), flow_dir, _misled_checks(removed))
    gone = [dotted(path) for path in removed]
    doc.problems += [p for p in part.problems if p.severity == "error" and not any(_related(p.path, g) for g in gone)]


def _stand_in(data: Any, filled: list[KeyPath], path: KeyPath, instance: Any, key: str) -> bool:
    """Put a stand-in for a missing required key of ``flow`` (the first node for ``start``); False elsewhere."""
    nodes = data.get("nodes") if isinstance(data, dict) else None
    stand_ins = {"id": "flow", "version": "0", "language": LANGUAGES[0]}
    if path != ("flow",) or not isinstance(instance, dict):
        return False
    if key == "start" and isinstance(nodes, dict) and nodes:
        instance[key] = next(iter(nodes))
    elif key in stand_ins:
        instance[key] = stand_ins[key]
    else:
        return False
    filled.append((*path, key))
    return True


def _stub_out(data: dict[str, Any], removed: list[KeyPath]) -> dict[str, Any]:
    """``data`` with an empty node, intent or variable where a broken one was left out."""
    stubs: dict[str, Any] = {"nodes": {}, "intents": {}, "variables": None}
    for path in removed:
        if len(path) == 2 and path[0] in stubs and isinstance(data.get(str(path[0])), dict):
            data[str(path[0])].setdefault(str(path[1]), copy.copy(stubs[str(path[0])]))
    return data


_ROOT_EDGES = (("flow", "start"), ("flow", "on_limit"), ("flow", "handoff"))
_EDGE_KEYS = frozenset({"next", "default", "on", "dtmf", "no_input", "no_match", "transfer", "capture", "listen"})


def _misled_checks(removed: list[KeyPath]) -> set[str]:
    """The checks that left-out parts could make report false errors."""
    skip: set[str] = set()
    for path in removed:
        head = path[:2]
        node_edge = path[0] == "nodes" and (len(path) <= 2 or path[2] in _EDGE_KEYS)
        if node_edge or path[0] in ("global", "defaults") or head in _ROOT_EDGES:
            skip.add("_check_reachable")
        if "capture" in path or path == ("variables",):
            skip.add("_check_templates")
        if path == ("intents",):
            skip.add("_check_intents")
        if head == ("flow", "language"):
            skip.add("_check_intent_languages")
    return skip


def _related(a: str, b: str) -> bool:
    """Whether dotted key path ``a`` is ``b``, inside it, or contains it."""
    inner, outer = (a, b) if len(a) >= len(b) else (b, a)
    return inner == outer or not outer or inner.startswith((outer + ".", outer + "["))


def _sorted(problems: list[Problem]) -> list[Problem]:
    """Problems without repeats, by line then column (stable otherwise)."""
    return sorted(dict.fromkeys(problems), key=lambda p: (p.line, p.column))


@functools.cache
def _validator() -> Any:
    """The Draft 2020-12 validator for the shipped schema (loaded once)."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)

