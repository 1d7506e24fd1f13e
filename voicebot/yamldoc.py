"""A YAML file read for checking: plain data, where every key and value starts, and the problems found.

Scalars are read by the YAML 1.2 core schema, so only ``true``/``false`` are booleans and ``on``, ``off``,
``yes``, ``no`` stay strings. Duplicate keys, merge keys, recursive aliases and odd tags are problems, and
syntax errors are reported in plain words at the line and column where they start. Used for flows, flow test
files and the engine config.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from voicebot.yamlerrors import explain

__all__ = ["Doc", "KeyPath", "Pos", "Problem", "did_you_mean", "dotted", "mark_pos", "read_yaml"]

KeyPath = tuple[str | int, ...]
Pos = tuple[int, int]


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



# --- the document: data plus positions --------------------------------------


@dataclass
class Doc:
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
        self.problems.append(Problem(self.file, pos[0], pos[1], dotted(path), message, hint, severity))


def dotted(path: KeyPath) -> str:
    """``("nodes", "greet", "say", 0)`` -> ``"nodes.greet.say[0]"``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def mark_pos(mark: yaml.Mark) -> Pos:
    """A PyYAML mark as a 1-based (line, column)."""
    return mark.line + 1, mark.column + 1


def did_you_mean(word: str, choices: Iterable[str]) -> str:
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


def read_yaml(text: str, source: str, empty: str | None = "a flow needs 'flow' and 'nodes'") -> Doc:
    """Compose ``text`` and convert it to plain data, noting positions and problems.

    An empty document is a problem with hint ``empty``, or (``empty=None``) parsed data ``None``.
    """
    doc = Doc(source)
    try:
        root = yaml.compose(text, Loader=_Yaml12Loader)
    except yaml.MarkedYAMLError as exc:
        _syntax_problem(doc, exc, text)
        return doc
    except yaml.YAMLError as exc:
        doc.add((1, 1), (), "invalid YAML: " + " ".join(str(exc).split()))
        return doc
    if root is None:
        doc.parsed = empty is None
        if empty is not None:
            doc.add((1, 1), (), "the file is empty", empty)
        return doc
    doc.parsed = True
    doc.data = _convert(doc, root, (), frozenset())
    return doc


def _syntax_problem(doc: Doc, exc: yaml.MarkedYAMLError, text: str) -> None:
    """Record a YAML syntax error in plain words, where the fix belongs (:func:`voicebot.yamlerrors.explain`)."""
    pos, message, hint = explain(exc, text)
    doc.add(pos, (), "invalid YAML: " + message, hint)


def _convert(doc: Doc, node: yaml.Node, path: KeyPath, stack: frozenset[int]) -> Any:
    """Plain data for ``node``; records its position (and its text when a scalar)."""
    doc.values[path] = mark_pos(node.start_mark)
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


def _convert_mapping(doc: Doc, node: yaml.MappingNode, path: KeyPath, stack: frozenset[int]) -> dict[str, Any]:
    """A mapping with string keys (as written: ``1:`` gives ``"1"``); reports duplicate keys."""
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            doc.add(mark_pos(key_node.start_mark), path, "keys must be plain names", "use a simple key such as 'name:'")
            continue
        key = key_node.value
        if key == "<<" and key_node.style is None:
            hint = "write the keys out; 'defaults' covers listen, barge_in, no_input and no_match"
            doc.add(mark_pos(key_node.start_mark), path, "YAML merge keys ('<<') are not supported", hint)
            continue
        key_path = (*path, key)
        if key in out:
            first = doc.keys[key_path][0]
            hint = f"'{key}' is already defined at line {first}"
            doc.add(mark_pos(key_node.start_mark), key_path, f"duplicate key '{key}'", hint)
            continue
        doc.keys[key_path] = mark_pos(key_node.start_mark)
        out[key] = _convert(doc, value_node, key_path, stack)
    return out


def _convert_scalar(doc: Doc, node: yaml.ScalarNode, path: KeyPath) -> Any:
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


def _parse_float(doc: Doc, text: str, path: KeyPath) -> float:
    """A YAML 1.2 float; ``.inf`` and ``.nan`` are read but reported (no flow setting takes them)."""
    lowered = text.lower()
    if lowered.lstrip("+-") not in (".inf", ".nan"):
        return float(text)
    doc.at(path, f"'{text}' is not a finite number")
    return float(lowered.replace(".", ""))

