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

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]

from voicebot.dialog.build import build_flow
from voicebot.dialog.checks import DEFAULT_PROMPTS_DIR, SEMANTIC_CHECKS, check_prompts
from voicebot.dialog.flow import Flow
from voicebot.logs import get_logger
from voicebot.schemacheck import check_schema
from voicebot.yamldoc import Problem, did_you_mean, read_yaml

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
    if doc.parsed:
        check_schema(doc, _validator())
    if doc.problems:
        return None, _sorted(doc.problems)
    flow = build_flow(doc, source)
    for check in SEMANTIC_CHECKS:
        check(doc, flow)
    check_prompts(doc, flow, flow_dir)
    return flow, _sorted(doc.problems)


def _sorted(problems: list[Problem]) -> list[Problem]:
    """Problems without repeats, by line then column (stable otherwise)."""
    return sorted(dict.fromkeys(problems), key=lambda p: (p.line, p.column))


@functools.cache
def _validator() -> Any:
    """The Draft 2020-12 validator for the shipped schema (loaded once)."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)

