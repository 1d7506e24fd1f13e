"""Load a YAML call flow into a :class:`~voicebot.dialog.flow.Flow`, checking everything.

Checks run in three stages and every problem points at a line and column:

1. YAML: syntax errors, duplicate keys, unsupported tags. Scalars are read by
   the YAML 1.2 core schema, so only ``true``/``false`` are booleans and
   ``on``, ``off``, ``yes``, ``no`` stay strings (``on: {yes: ...}`` works).
2. Structure: the shipped JSON Schema (:data:`SCHEMA_PATH`, the same one editors
   use), with its messages rewritten for people.
3. Meaning (only when 1 and 2 found no errors): dangling and unreachable
   targets, intents, template variables, recordings, node endings, regexes.

:func:`load_flow` raises :class:`FlowError` listing every problem;
:func:`validate_file` returns them (errors and warnings) without raising.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import yaml

from voicebot.dialog.flow import (
    LANGUAGES,
    RETURN,
    SPECIAL_TARGETS,
    BargeIn,
    BargeInAction,
    BargeInMode,
    Flow,
    HandoffSettings,
    IntentDef,
    Listen,
    Node,
    Retry,
    Say,
    Transfer,
    Utterance,
    Variable,
)
from voicebot.logs import get_logger

__all__ = ["SCHEMA_PATH", "FlowError", "Problem", "load_flow", "load_flow_text", "validate_file"]

SCHEMA_PATH = Path(__file__).with_name("flow.schema.json")
DEFAULT_PROMPTS_DIR = "prompts"

KeyPath = tuple[str | int, ...]
Pos = tuple[int, int]
Check = Callable[["_Doc", Flow], None]

_LISTEN_KEYS = ("on", "dtmf", "default", "capture", "listen")
_ENDINGS = ("next", "transfer", "hangup")
_TEMPLATE_RE = re.compile(r"\{\{(.*?)\}\}")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PHONE_RE = re.compile(r"\+?[0-9][0-9 ()-]*")
_YAML11_BOOLS = {"yes": "true", "no": "false", "on": "true", "off": "false", "y": "true", "n": "false"}
_TYPE_NAMES = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "nothing",
}


# --- problems ----------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a flow file, at a 1-based line and column."""

    file: str
    line: int
    column: int
    path: str  # key path like "nodes.greet.on.yes"
    message: str
    hint: str = ""
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        """``file:line:col: severity: path: message (hint: ...)``."""
        where = f"{self.path}: " if self.path else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {where}{self.message}{hint}"


class FlowError(Exception):
    """A flow file has errors; ``problems`` lists all of them (and any warnings)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        """Keep ``problems``; the message lists them one per line."""
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# --- public API --------------------------------------------------------------


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
    doc = _read_yaml(text, source)
    if doc.parsed:
        _check_schema(doc)
    if doc.problems:
        return None, _sorted(doc.problems)
    flow = _build_flow(doc, source)
    for check in _SEMANTIC_CHECKS:
        check(doc, flow)
    _check_prompts(doc, flow, flow_dir)
    return flow, _sorted(doc.problems)


def _sorted(problems: list[Problem]) -> list[Problem]:
    """Problems without repeats, by line then column (stable otherwise)."""
    return sorted(dict.fromkeys(problems), key=lambda p: (p.line, p.column))


# --- the document: data plus positions --------------------------------------


@dataclass
class _Doc:
    """A composed YAML file: plain data, where each key and value starts, and problems."""

    file: str
    data: Any = None
    parsed: bool = False
    keys: dict[KeyPath, Pos] = field(default_factory=dict)
    values: dict[KeyPath, Pos] = field(default_factory=dict)
    raw: dict[KeyPath, str] = field(default_factory=dict)  # scalar source text
    problems: list[Problem] = field(default_factory=list)

    def position(self, path: KeyPath, key: bool = False) -> Pos:
        """Where ``path``'s key (or value) starts; falls back to the nearest parent key."""
        if key and path in self.keys:
            return self.keys[path]
        if path in self.values:
            return self.values[path]
        return self.position(path[:-1], key=True) if path else (1, 1)

    def at(self, path: KeyPath, message: str, hint: str = "", *, key: bool = False, severity: str = "error") -> None:
        """Record a problem at ``path`` (its key's position when ``key``)."""
        line, column = self.position(path, key)
        self.add((line, column), path, message, hint, severity)

    def add(self, pos: Pos, path: KeyPath, message: str, hint: str = "", severity: str = "error") -> None:
        """Record a problem at an explicit position."""
        self.problems.append(Problem(self.file, pos[0], pos[1], _dotted(path), message, hint, severity))


def _dotted(path: KeyPath) -> str:
    """``("nodes", "greet", "say", 0)`` -> ``"nodes.greet.say[0]"``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _pos(mark: yaml.Mark) -> Pos:
    """A PyYAML mark as a 1-based (line, column)."""
    return mark.line + 1, mark.column + 1


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"did you mean 'x'?"`` for the closest choice (case-insensitive first), or ``""``."""
    options = [c for c in choices if c != word]
    folded = [c for c in options if c.lower() == word.lower()]
    close = folded or difflib.get_close_matches(word, options, n=1)
    return f"did you mean '{close[0]}'?" if close else ""


# --- stage 1: YAML -------------------------------------------------------------

_STR, _NULL, _BOOL = "tag:yaml.org,2002:str", "tag:yaml.org,2002:null", "tag:yaml.org,2002:bool"
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_SEQ, _MAP = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"


class _Yaml12Loader(yaml.SafeLoader):
    """A SafeLoader whose plain scalars resolve by the YAML 1.2 core schema."""


_YAML12_RESOLVERS = (
    (_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (
        _FLOAT,
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+0123456789."),
    ),
)
_Yaml12Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in _YAML12_RESOLVERS:
    _Yaml12Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


def _read_yaml(text: str, source: str) -> _Doc:
    """Compose ``text`` and convert it to plain data, noting positions and problems."""
    doc = _Doc(source)
    try:
        root = yaml.compose(text, Loader=_Yaml12Loader)
    except yaml.MarkedYAMLError as exc:
        _syntax_problem(doc, exc)
        return doc
    except yaml.YAMLError as exc:
        doc.add((1, 1), (), "invalid YAML: " + " ".join(str(exc).split()))
        return doc
    if root is None:
        doc.add((1, 1), (), "the file is empty", "a flow needs 'flow' and 'nodes'")
        return doc
    doc.parsed = True
    doc.data = _convert(doc, root, (), frozenset())
    return doc


def _syntax_problem(doc: _Doc, exc: yaml.MarkedYAMLError) -> None:
    """Record a YAML syntax error at the parser's position."""
    mark = exc.problem_mark or exc.context_mark
    pos = _pos(mark) if mark is not None else (1, 1)
    context, problem = exc.context or "", exc.problem or ""
    hint = ""
    if context.startswith("while ") and problem:
        if exc.context_mark is not None:
            line, column = _pos(exc.context_mark)
            what = re.sub(r"^while \w+ (a |an )?", "", context)
            hint = f"look at the {what} that starts at line {line}, column {column}"
        context = ""
    doc.add(pos, (), "invalid YAML: " + " ".join(part for part in (context, problem) if part), hint)


def _convert(doc: _Doc, node: yaml.Node, path: KeyPath, stack: frozenset[int]) -> Any:
    """Plain data for ``node``; records its position (and its text when a scalar)."""
    doc.values[path] = _pos(node.start_mark)
    if isinstance(node, yaml.ScalarNode):
        doc.raw[path] = node.value
        return _convert_scalar(doc, node, path)
    if id(node) in stack:
        doc.at(path, "an alias refers to a node that contains it", "remove the recursive alias")
        return None
    stack = stack | {id(node)}
    if node.tag not in (_SEQ, _MAP):
        doc.at(path, f"unsupported YAML tag {_short_tag(node.tag)}", "remove the tag")
    if isinstance(node, yaml.SequenceNode):
        return [_convert(doc, item, (*path, i), stack) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.MappingNode)
    return _convert_mapping(doc, node, path, stack)


def _convert_mapping(doc: _Doc, node: yaml.MappingNode, path: KeyPath, stack: frozenset[int]) -> dict[str, Any]:
    """A mapping with string keys (as written: ``1:`` gives ``"1"``); reports duplicate keys."""
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            doc.add(_pos(key_node.start_mark), path, "keys must be plain names", "use a simple key such as 'name:'")
            continue
        key = key_node.value
        if key == "<<" and key_node.style is None:
            hint = "write the keys out; 'defaults' covers listen, barge_in, no_input and no_match"
            doc.add(_pos(key_node.start_mark), path, "YAML merge keys ('<<') are not supported", hint)
            continue
        key_path = (*path, key)
        if key in out:
            first = doc.keys[key_path][0]
            doc.add(_pos(key_node.start_mark), key_path, f"duplicate key '{key}'", f"'{key}' is already defined at line {first}")
            continue
        doc.keys[key_path] = _pos(key_node.start_mark)
        out[key] = _convert(doc, value_node, key_path, stack)
    return out


def _convert_scalar(doc: _Doc, node: yaml.ScalarNode, path: KeyPath) -> Any:
    """A scalar's value by its (YAML 1.2) tag; odd tags are reported and kept as text."""
    text: str = node.value
    try:
        if node.tag == _NULL:
            return None
        if node.tag == _BOOL:
            return {"true": True, "false": False}[text.lower()]
        if node.tag == _INT:
            return _parse_int(text)
        if node.tag == _FLOAT:
            return _parse_float(doc, text, path)
    except (KeyError, ValueError):
        doc.at(path, f"'{text}' is not a valid {_short_tag(node.tag)} value")
        return text
    if node.tag != _STR:
        doc.at(path, f"unsupported YAML tag {_short_tag(node.tag)}", "remove the tag")
    return text


def _short_tag(tag: str) -> str:
    """``tag:yaml.org,2002:int`` -> ``!!int``."""
    return tag.replace("tag:yaml.org,2002:", "!!")


def _parse_int(text: str) -> int:
    """A YAML 1.2 integer: decimal, ``0o`` octal or ``0x`` hex, with an optional sign."""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-").lower()
    for prefix, base in (("0o", 8), ("0x", 16), ("0b", 2)):
        if body.startswith(prefix):
            return sign * int(body[2:], base)
    return sign * int(body, 10)


def _parse_float(doc: _Doc, text: str, path: KeyPath) -> float:
    """A YAML 1.2 float; ``.inf`` and ``.nan`` are read but reported (no flow setting takes them)."""
    lowered = text.lower()
    if lowered.lstrip("+-") not in (".inf", ".nan"):
        return float(text)
    doc.at(path, f"'{text}' is not a finite number")
    return float(lowered.replace(".", ""))


# --- stage 2: the JSON Schema --------------------------------------------------


@functools.cache
def _validator() -> Any:
    """The Draft 2020-12 validator for the shipped schema (loaded once)."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _check_schema(doc: _Doc) -> None:
    """Validate the data against the schema; report each error at its key or value."""
    for error in _validator().iter_errors(doc.data):
        path: KeyPath = tuple(error.absolute_path)
        if "propertyNames" in error.absolute_schema_path:
            _report_bad_key(doc, path, error)
        elif error.validator == "additionalProperties":
            _report_unknown_keys(doc, path, error.instance, error.schema)
        elif error.validator == "required":
            for name in error.validator_value:
                if name not in error.instance:
                    doc.at(path, f"missing required key '{name}'", key=True)
        elif error.validator == "dependentRequired":
            _report_dependency(doc, path, error.instance, error.validator_value)
        else:
            doc.at(path, _value_message(error), _value_hint(error))


def _report_bad_key(doc: _Doc, path: KeyPath, error: Any) -> None:
    """A mapping key that breaks its ``propertyNames`` rule."""
    key = str(error.instance)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "pattern" and "patternErrorMessage" in schema:
        reason = schema["patternErrorMessage"]
    else:
        reason = schema.get("errorMessage", error.message)
    doc.at((*path, key), f"bad key '{key}': {reason}", key=True)


def _report_unknown_keys(doc: _Doc, path: KeyPath, instance: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """One problem per key not allowed by ``schema``, with a did-you-mean hint."""
    allowed = list(schema.get("properties", {}))
    for key in instance:
        if key not in allowed:
            hint = _did_you_mean(key, allowed) or "allowed keys: " + ", ".join(allowed)
            doc.at((*path, key), f"unknown key '{key}'", hint, key=True)


def _report_dependency(doc: _Doc, path: KeyPath, instance: Mapping[str, Any], rules: Mapping[str, list[str]]) -> None:
    """A key that needs another key beside it."""
    for key, needed in rules.items():
        for other in needed:
            if key in instance and other not in instance:
                doc.at((*path, key), f"'{key}' needs '{other}'", f"add '{other}' or remove '{key}'", key=True)


def _value_message(error: Any) -> str:
    """A readable message for a schema error about a value."""
    kind, limit, value = error.validator, error.validator_value, error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    messages: dict[str, Callable[[], str]] = {
        "type": lambda: f"expected {_expected_types(limit)}, got {_describe(value)}",
        "enum": lambda: "must be one of: " + ", ".join(map(_plain, limit)) + f" (got {_plain(value, quote=True)})",
        "pattern": lambda: f"bad value {_plain(value, quote=True)}: " + schema.get("patternErrorMessage", f"must match {limit}"),
        "minLength": lambda: "must not be empty",
        "minItems": lambda: "must not be empty",
        "minProperties": lambda: "must not be empty",
        "exclusiveMinimum": lambda: f"must be greater than {_plain(limit)}, got {_plain(value)}",
        "minimum": lambda: f"must be at least {_plain(limit)}, got {_plain(value)}",
        "maximum": lambda: f"must be at most {_plain(limit)}, got {_plain(value)}",
    }
    if kind in messages:
        return messages[kind]()
    return str(schema.get("errorMessage", error.message))


def _value_hint(error: Any) -> str:
    """How to fix a bad value: a did-you-mean for enums, quoting or YAML 1.2 booleans for types."""
    value = error.instance
    if error.validator == "enum" and isinstance(value, str):
        return _did_you_mean(value, [str(v) for v in error.validator_value])
    if error.validator != "type":
        return ""
    expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
    if "boolean" in expected and isinstance(value, str) and value.lower() in _YAML11_BOOLS:
        return f"only true and false are booleans here (YAML 1.2): write {_YAML11_BOOLS[value.lower()]}"
    if "string" in expected and isinstance(value, int | float | bool):
        return "put the value in quotes to make it text"
    return ""


def _expected_types(types: str | list[str]) -> str:
    """``["string", "array"]`` -> ``"a string or a list"``."""
    names = [_TYPE_NAMES.get(t, t) for t in ([types] if isinstance(types, str) else types)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _describe(value: Any) -> str:
    """A value's kind and value, for "got ..." messages."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return f"boolean {_plain(value)}"
    if isinstance(value, int | float):
        return f"number {_plain(value)}"
    if isinstance(value, str):
        return f"string {_plain(value, quote=True)}"
    return "a mapping" if isinstance(value, dict) else "a list"


def _plain(value: Any, quote: bool = False) -> str:
    """A value as YAML would show it: true/false, null, numbers, 'quoted' strings when asked."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        short = value if len(value) <= 40 else value[:37] + "..."
        return f"'{short}'" if quote else short
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, int | float) else type(value).__name__


# --- building the Flow (data is schema-valid here) ---------------------------


def _build_flow(doc: _Doc, source: str) -> Flow:
    """The :class:`Flow` for schema-valid data (targets may still dangle)."""
    data: dict[str, Any] = doc.data
    meta: dict[str, Any] = data["flow"]
    defaults: dict[str, Any] = data.get("defaults", {})
    nodes = {node_id: _build_node(node_id, spec, defaults) for node_id, spec in data["nodes"].items()}
    options = {
        "voice": meta.get("voice"),
        "max_duration_s": _opt(float, meta.get("max_duration_s")),
        "max_turns": _opt(int, meta.get("max_turns")),
        "on_limit": meta.get("on_limit"),
        "min_intent_score": _opt(float, meta.get("min_intent_score")),
    }
    return Flow(
        id=meta["id"],
        version=doc.raw.get(("flow", "version"), str(meta["version"])),
        language=meta["language"],
        start=meta["start"],
        nodes=nodes,
        variables=_build_variables(doc),
        intents=_build_intents(data.get("intents", {}), meta["language"]),
        global_routes=dict(data.get("global", {})),
        hangup_notify=_names(meta.get("on_hangup", {}).get("notify")),
        handoff=HandoffSettings(**meta.get("handoff", {})),
        source=source,
        **{key: value for key, value in options.items() if value is not None},
    )


def _opt(kind: Callable[[Any], Any], value: Any) -> Any:
    """``kind(value)``, or None when the value is absent."""
    return None if value is None else kind(value)


def _names(value: Any) -> tuple[str, ...]:
    """A name or a list of names as a tuple (None -> empty)."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _build_node(node_id: str, spec: dict[str, Any], defaults: dict[str, Any]) -> Node:
    """A :class:`Node`: defaults merged, listening inferred, capture + next -> default."""
    listens = any(key in spec for key in _LISTEN_KEYS)
    default, next_ = spec.get("default", ""), spec.get("next", "")
    if listens and next_:
        default, next_ = default or next_, ""
    transfer = spec.get("transfer")
    return Node(
        id=node_id,
        say=_build_say(spec.get("say")),
        listen=_build_listen(defaults.get("listen"), spec.get("listen")) if listens else None,
        barge_in=_build_barge_in(defaults.get("barge_in"), spec.get("barge_in")),
        routes=dict(spec.get("on", {})),
        dtmf=dict(spec.get("dtmf", {})),
        default=default,
        no_input=_build_retry(defaults.get("no_input"), spec.get("no_input")),
        no_match=_build_retry(defaults.get("no_match"), spec.get("no_match")),
        next=next_,
        tags=_names(spec.get("tags")),
        level=spec.get("level", ""),
        capture=dict(spec.get("capture", {})),
        notify=_names(spec.get("notify")),
        prepare=spec.get("prepare", ""),
        transfer=_build_transfer(transfer) if transfer is not None else None,
        hangup=spec.get("hangup", ""),
        globals_enabled=spec.get("globals", True),
    )


def _build_listen(default: dict[str, Any] | None, own: dict[str, Any] | None) -> Listen:
    """Listen timings: the node's keys over ``defaults.listen`` over the dataclass defaults."""
    merged = {**(default or {}), **(own or {})}
    return Listen(**{key: int(value) for key, value in merged.items()})


def _barge_in_fields(value: Any) -> dict[str, Any]:
    """Barge-in keys from the long form or the shorthand (``off``, ``on``, ``protected``, booleans)."""
    if value is None:
        return {}
    fields = dict(value) if isinstance(value, dict) else {"mode": value}
    if isinstance(fields.get("mode"), bool):
        fields["mode"] = "on" if fields["mode"] else "off"
    return fields


def _build_barge_in(default: Any, own: Any) -> BargeIn:
    """A :class:`BargeIn`: the node's keys over ``defaults.barge_in`` over the dataclass defaults."""
    merged = {**_barge_in_fields(default), **_barge_in_fields(own)}
    values: dict[str, Any] = {key: int(value) for key, value in merged.items() if key not in ("mode", "action")}
    if "mode" in merged:
        values["mode"] = BargeInMode(merged["mode"])
    if "action" in merged:
        values["action"] = BargeInAction(merged["action"])
    return BargeIn(**values)


def _build_retry(default: dict[str, Any] | None, own: dict[str, Any] | None) -> Retry:
    """A :class:`Retry`: the node's keys over the defaults' keys; ``then`` empty when absent."""
    merged = {**(default or {}), **(own or {})}
    values: dict[str, Any] = {"then": merged.get("then", "")}
    if "retries" in merged:
        values["retries"] = int(merged["retries"])
    if "reprompt" in merged:
        values["reprompt"] = _build_say(merged["reprompt"])
    return Retry(**values)


def _build_say(value: Any) -> Say:
    """A :class:`Say` from any say form: text, list of variants, utterance, or {variants, order}."""
    if value is None:
        return Say()
    if isinstance(value, dict) and "variants" in value:
        variants = tuple(_build_utterance(item) for item in value["variants"])
        return Say(variants, value["order"]) if "order" in value else Say(variants)
    items = value if isinstance(value, list) else [value]
    return Say(tuple(_build_utterance(item) for item in items))


def _build_utterance(value: Any) -> Utterance:
    """An :class:`Utterance` from text or ``{prompt, text}``."""
    if isinstance(value, str):
        return Utterance(text=value)
    return Utterance(text=value.get("text", ""), prompt=value.get("prompt", ""))


def _build_transfer(spec: dict[str, Any]) -> Transfer:
    """A :class:`Transfer`; absent ``on_timeout``/``on_fail`` are empty strings."""
    values: dict[str, Any] = {key: spec.get(key, "") for key in ("on_timeout", "on_fail", "after_agent")}
    if "timeout_s" in spec:
        values["timeout_s"] = float(spec["timeout_s"])
    return Transfer(group=spec["group"], hold=_build_say(spec.get("hold")), **values)


def _build_variables(doc: _Doc) -> dict[str, Variable]:
    """Variables; a bare value is a default, the type defaults to the default's YAML type."""
    out: dict[str, Variable] = {}
    for name, spec in doc.data.get("variables", {}).items():
        path: KeyPath = ("variables", name)
        if isinstance(spec, dict):
            path, default = (*path, "default"), spec.get("default")
            declared, pii = spec.get("type"), spec.get("pii", False)
        else:
            default, declared, pii = spec, None, False
        text = None if default is None else doc.raw.get(path, str(default))
        out[name] = Variable(name, declared or _value_type(default), text, pii)
    return out


def _value_type(value: Any) -> str:
    """The variable type a YAML scalar suggests."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return "float" if isinstance(value, float) else "string"


def _is_per_language(spec: Mapping[str, Any]) -> bool:
    """Whether an intent is written with language sections (``en:``, ``zh:``)."""
    return any(language in spec for language in LANGUAGES)


def _build_intents(specs: dict[str, Any], language: str) -> dict[str, IntentDef]:
    """Intents for the flow's language (per-language intents give their section)."""
    out: dict[str, IntentDef] = {}
    for name, spec in specs.items():
        phrases = spec.get(language, {}) if _is_per_language(spec) else spec
        out[name] = IntentDef(
            name,
            keywords=_names(phrases.get("keywords")),
            regex=_names(phrases.get("regex")),
            examples=_names(phrases.get("examples")),
        )
    return out


# --- stage 3: meaning --------------------------------------------------------

Ref = tuple[KeyPath, str, tuple[str, ...]]  # where, target, special targets allowed there


def _target_refs(data: dict[str, Any]) -> Iterator[Ref]:
    """Every target in the file with its path and the special targets that make sense there."""
    meta = data["flow"]
    for key in ("start", "on_limit"):
        if key in meta:
            yield ("flow", key), meta[key], ()
    if "after_agent" in meta.get("handoff", {}):
        yield ("flow", "handoff", "after_agent"), meta["handoff"]["after_agent"], ()
    for intent, target in data.get("global", {}).items():
        yield ("global", intent), target, SPECIAL_TARGETS
    for key, retry in data.get("defaults", {}).items():
        if key in ("no_input", "no_match") and "then" in retry:
            yield ("defaults", key, "then"), retry["then"], ()
    for node_id, spec in data["nodes"].items():
        yield from _node_refs(("nodes", node_id), spec)


def _node_refs(path: KeyPath, spec: dict[str, Any]) -> Iterator[Ref]:
    """The targets of one node."""
    if "next" in spec:
        yield (*path, "next"), spec["next"], (RETURN,)
    if "default" in spec:
        yield (*path, "default"), spec["default"], SPECIAL_TARGETS
    for table in ("on", "dtmf"):
        for key, target in spec.get(table, {}).items():
            yield (*path, table, key), target, SPECIAL_TARGETS
    for key in ("no_input", "no_match"):
        if "then" in spec.get(key, {}):
            yield (*path, key, "then"), spec[key]["then"], ()
    for key in ("on_timeout", "on_fail", "after_agent"):
        if key in spec.get("transfer", {}):
            yield (*path, "transfer", key), spec["transfer"][key], (RETURN,)


def _check_targets(doc: _Doc, flow: Flow) -> None:
    """Targets must name a node, or a special target where it makes sense."""
    for path, target, allowed in _target_refs(doc.data):
        if target in SPECIAL_TARGETS and target not in allowed:
            hint = "name a node here" if not allowed else "this node doesn't listen, so there is nothing to repeat"
            doc.at(path, f"'{target}' can't be used here", hint)
        elif target not in SPECIAL_TARGETS and target not in flow.nodes:
            hint = _did_you_mean(target, flow.nodes) or "add a node with this id under 'nodes'"
            doc.at(path, f"unknown node '{target}'", hint)


def _edges(node: Node) -> Iterator[str]:
    """Every target a node can go to (retries only when it listens)."""
    yield from (node.next, node.default, *node.routes.values(), *node.dtmf.values())
    if node.listen is not None:
        yield from (node.no_input.then, node.no_match.then)
    if node.transfer is not None:
        yield from (node.transfer.on_timeout, node.transfer.on_fail, node.transfer.after_agent)


def _intended(target: str, flow: Flow) -> str:
    """The node ``target`` leads to; for a misspelt target, the node it probably means."""
    if target in flow.nodes or target in SPECIAL_TARGETS:
        return target
    close = difflib.get_close_matches(target, list(flow.nodes), n=1)
    return close[0] if close else ""


def _check_reachable(doc: _Doc, flow: Flow) -> None:
    """Every node must be reachable from start, a global target or on_limit.

    A misspelt target counts as its did-you-mean, so one typo gives one problem.
    """
    roots = [_intended(t, flow) for t in (flow.start, flow.on_limit, flow.handoff.after_agent,
                                          *flow.global_routes.values())]
    if _intended(flow.start, flow) not in flow.nodes:
        return  # reported as a bad target; everything would look unreachable
    todo = [t for t in roots if t in flow.nodes]
    seen = set(todo)
    while todo:
        for target in map(functools.partial(_intended, flow=flow), _edges(flow.nodes[todo.pop()])):
            if target in flow.nodes and target not in seen:
                seen.add(target)
                todo.append(target)
    for node_id in flow.nodes:
        if node_id not in seen:
            hint = f"no target leads here from start '{flow.start}', on_limit or a global intent"
            doc.at(("nodes", node_id), f"node '{node_id}' is unreachable", hint, key=True)


def _intent_uses(data: dict[str, Any]) -> Iterator[KeyPath]:
    """Paths of every intent name used in ``global`` and in nodes' ``on``."""
    for intent in data.get("global", {}):
        yield "global", intent
    for node_id, spec in data["nodes"].items():
        for intent in spec.get("on", {}):
            yield "nodes", node_id, "on", intent


def _check_intents(doc: _Doc, flow: Flow) -> None:
    """Used intents must be defined (error); defined intents should be used (warning)."""
    used: set[str] = set()
    for path in _intent_uses(doc.data):
        name = str(path[-1])
        used.add(name)
        if name not in flow.intents:
            hint = _did_you_mean(name, flow.intents) or "define it under 'intents'"
            doc.at(path, f"intent '{name}' is not defined", hint, key=True)
    for name in flow.intents:
        if name not in used:
            hint = "route it in a node's 'on' or in 'global', or remove it"
            doc.at(("intents", name), f"intent '{name}' is never used", hint, key=True, severity="warning")


def _check_intent_languages(doc: _Doc, flow: Flow) -> None:
    """An intent written per language needs a section for the flow's language."""
    for name, spec in doc.data.get("intents", {}).items():
        if _is_per_language(spec) and flow.language not in spec:
            has = ", ".join(language for language in LANGUAGES if language in spec)
            hint = f"add a '{flow.language}:' section (it has {has})"
            doc.at(("intents", name), f"intent '{name}' has no '{flow.language}' section", hint, key=True)


def _phrase_sections(doc: _Doc) -> Iterator[tuple[KeyPath, dict[str, Any]]]:
    """Every phrase section: flat intents, and each language section of per-language ones."""
    for name, spec in doc.data.get("intents", {}).items():
        if not _is_per_language(spec):
            yield ("intents", name), spec
        for language in LANGUAGES:
            if language in spec:
                yield ("intents", name, language), spec[language]


def _phrase_items(doc: _Doc, key: str) -> Iterator[tuple[KeyPath, str]]:
    """Every phrase under ``key`` (keywords, regex or examples), with its path."""
    for path, section in _phrase_sections(doc):
        items = section.get(key)
        if isinstance(items, str):
            yield (*path, key), items
        elif items is not None:
            yield from (((*path, key, i), item) for i, item in enumerate(items))


def _check_regexes(doc: _Doc, flow: Flow) -> None:
    """Every intent regex must compile (as the matcher does: case-insensitive)."""
    for path, pattern in _phrase_items(doc, "regex"):
        try:
            re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            doc.at(path, f"bad regex '{pattern}': {exc}", "fix the pattern (Python 're' syntax)")


def _say_values(data: dict[str, Any]) -> Iterator[tuple[KeyPath, Any]]:
    """Every say-like value: node say, re-prompts (nodes and defaults), transfer hold."""
    for key in ("no_input", "no_match"):
        if "reprompt" in data.get("defaults", {}).get(key, {}):
            yield ("defaults", key, "reprompt"), data["defaults"][key]["reprompt"]
    for node_id, spec in data["nodes"].items():
        path: KeyPath = ("nodes", node_id)
        if "say" in spec:
            yield (*path, "say"), spec["say"]
        for key in ("no_input", "no_match"):
            if "reprompt" in spec.get(key, {}):
                yield (*path, key, "reprompt"), spec[key]["reprompt"]
        if "hold" in spec.get("transfer", {}):
            yield (*path, "transfer", "hold"), spec["transfer"]["hold"]


def _utterances(path: KeyPath, value: Any) -> Iterator[tuple[KeyPath, Any]]:
    """Each utterance (text or ``{prompt, text}``) of a say-like value, with its path."""
    if isinstance(value, dict) and "variants" in value:
        path, value = (*path, "variants"), value["variants"]
    if isinstance(value, list):
        yield from (((*path, i), item) for i, item in enumerate(value))
    else:
        yield path, value


def _texts(data: dict[str, Any]) -> Iterator[tuple[KeyPath, str]]:
    """Every text the bot may say, with its path."""
    for say_path, value in _say_values(data):
        for path, utterance in _utterances(say_path, value):
            if isinstance(utterance, str):
                yield path, utterance
            elif "text" in utterance:
                yield (*path, "text"), utterance["text"]


def _check_templates(doc: _Doc, flow: Flow) -> None:
    """``{{name}}`` must name a declared variable or a slot some node captures."""
    known = set(flow.variables) | {slot for node in flow.nodes.values() for slot in node.capture}
    for path, text in _texts(doc.data):
        for match in _TEMPLATE_RE.finditer(text):
            name = match.group(1).strip()
            if not _IDENTIFIER_RE.fullmatch(name):
                doc.at(path, f"bad template '{match.group(0)}'", "write {{name}} with a variable name")
            elif name not in known:
                hint = _did_you_mean(name, known) or "declare it under 'variables' or capture it in a node"
                doc.at(path, f"undeclared variable '{name}' in template", hint)


def _check_prompts(doc: _Doc, flow: Flow, flow_dir: Path | None) -> None:
    """Each utterance needs text or a prompt; a prompt without text needs its recording."""
    prompts_dir = doc.data["flow"].get("prompts_dir", DEFAULT_PROMPTS_DIR)
    for say_path, value in _say_values(doc.data):
        for path, utterance in _utterances(say_path, value):
            if isinstance(utterance, str) or "text" in utterance:
                continue
            if "prompt" not in utterance:
                doc.at(path, "an utterance needs 'text', 'prompt' or both", 'add text: "..."')
                continue
            recording = f"{prompts_dir}/{utterance['prompt']}.wav"
            if flow_dir is not None and not (flow_dir / recording).is_file():
                hint = "add 'text' (it is synthesized when the recording is missing) or record the prompt"
                doc.at((*path, "prompt"), f"prompt '{utterance['prompt']}' has no text and no recording {recording}", hint)


def _check_endings(doc: _Doc, flow: Flow) -> None:
    """A node ends one way: it listens, or has exactly one of next/transfer/hangup."""
    for node_id, spec in doc.data["nodes"].items():
        path: KeyPath = ("nodes", node_id)
        endings = [key for key in _ENDINGS if key in spec]
        if len(endings) > 1:
            hint = "a node ends one way: 'next', 'transfer' or 'hangup'"
            doc.at((*path, endings[1]), f"conflicting endings '{endings[0]}' and '{endings[1]}'", hint, key=True)
        elif flow.nodes[node_id].listen is not None:
            _check_listening_ending(doc, path, spec, endings)
        elif not endings:
            hint = "add 'next', 'transfer' or 'hangup', or make it listen with 'on'"
            doc.at(path, f"node '{node_id}' is a dead end: it doesn't listen and doesn't go anywhere", hint, key=True)


def _check_listening_ending(doc: _Doc, path: KeyPath, spec: dict[str, Any], endings: list[str]) -> None:
    """A listening node may only have ``next`` (with ``capture``, as its default target)."""
    trigger = next(key for key in _LISTEN_KEYS if key in spec)
    for ending in endings:
        where = (*path, ending)
        if ending != "next":
            hint = "route to a node that does it instead"
            doc.at(where, f"a node that listens (it has '{trigger}') can't have '{ending}'", hint, key=True)
        elif "capture" not in spec:
            hint = "use 'default' for speech that matches no intent"
            doc.at(where, f"a node that listens (it has '{trigger}') can have 'next' only with 'capture'", hint, key=True)
        elif "default" in spec:
            hint = "with 'capture', 'next' is the default target: keep one of them"
            doc.at(where, "'next' and 'default' conflict", hint, key=True)


def _check_unused_retries(doc: _Doc, flow: Flow) -> None:
    """``no_input``/``no_match`` on a node that doesn't listen never apply (warning)."""
    for node_id, spec in doc.data["nodes"].items():
        if flow.nodes[node_id].listen is not None:
            continue
        for key in ("no_input", "no_match"):
            if key in spec:
                message = f"'{key}' is ignored: the node doesn't listen"
                doc.at(("nodes", node_id, key), message, "remove it, or make the node listen", key=True, severity="warning")


_VALUE_EXAMPLES = {
    "int": "write a whole number, e.g. 42",
    "float": "write a number, e.g. 2.5",
    "bool": "write true or false",
    "phone": "write a phone number, e.g. +15551234567",
    "date": "write an ISO date, e.g. 2025-01-31",
    "string": "",
}


def _valid_value(kind: str, text: str) -> bool:
    """Whether ``text`` is a valid value of variable type ``kind``."""
    try:
        if kind == "int":
            int(text, 10)
        elif kind == "float":
            float(text)
        elif kind == "date":
            date.fromisoformat(text)
    except ValueError:
        return False
    if kind == "bool":
        return text.lower() in ("true", "false")
    return kind != "phone" or _PHONE_RE.fullmatch(text) is not None


def _check_variable_defaults(doc: _Doc, flow: Flow) -> None:
    """A variable's default must be a valid value of its type."""
    for name, variable in flow.variables.items():
        if variable.default is not None and not _valid_value(variable.type, variable.default):
            path: KeyPath = ("variables", name, "default")
            message = f"default '{variable.default}' is not a valid {variable.type}"
            doc.at(path if path in doc.values else path[:-1], message, _VALUE_EXAMPLES[variable.type])


def _check_handoff(doc: _Doc, flow: Flow) -> None:
    """``prepare_at_level`` needs a group to prepare."""
    if flow.handoff.prepare_at_level and not flow.handoff.group:
        doc.at(("flow", "handoff", "prepare_at_level"), "prepare_at_level needs an agent group to prepare",
               "add 'group: <agent group>' under flow.handoff")


_SEMANTIC_CHECKS: tuple[Check, ...] = (
    _check_targets,
    _check_reachable,
    _check_intents,
    _check_intent_languages,
    _check_regexes,
    _check_templates,
    _check_endings,
    _check_unused_retries,
    _check_variable_defaults,
    _check_handoff,
)
