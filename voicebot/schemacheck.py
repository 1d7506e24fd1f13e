"""JSON Schema errors as problems for people: at the key or value, with did-you-mean hints, every one at once."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from voicebot.yamldoc import Doc, KeyPath, did_you_mean

__all__ = ["check_schema", "describe", "plain", "prune"]

_YAML11_BOOLS = {"yes": "true", "no": "false", "on": "true", "off": "false", "y": "true", "n": "false"}
_TYPE_NAMES = {
    "string": "a string",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "nothing",
}


def check_schema(doc: Doc, validator: Any) -> None:
    """Validate the data against the schema; report each error at its key or value."""
    for error in validator.iter_errors(doc.data):
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


def _report_bad_key(doc: Doc, path: KeyPath, error: Any) -> None:
    """A mapping key that breaks its ``propertyNames`` rule."""
    key = str(error.instance)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "pattern" and "patternErrorMessage" in schema:
        reason = schema["patternErrorMessage"]
    else:
        reason = schema.get("errorMessage", error.message)
    doc.at((*path, key), f"bad key '{key}': {reason}", key=True)


def _report_unknown_keys(doc: Doc, path: KeyPath, instance: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """One problem per key not allowed by ``schema``, with a did-you-mean hint."""
    allowed = list(schema.get("properties", {}))
    for key in instance:
        if key not in allowed:
            hint = did_you_mean(key, allowed) or "allowed keys: " + ", ".join(allowed)
            doc.at((*path, key), f"unknown key '{key}'", hint, key=True)


def _report_dependency(doc: Doc, path: KeyPath, instance: Mapping[str, Any], rules: Mapping[str, list[str]]) -> None:
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
        "type": lambda: f"expected {_expected_types(limit)}, got {describe(value)}",
        "enum": lambda: "must be one of: " + ", ".join(map(plain, limit)) + f" (got {plain(value, quote=True)})",
        "pattern": lambda: f"bad value {plain(value, quote=True)}: " + schema.get("patternErrorMessage", f"must match {limit}"),
        "minLength": lambda: "must not be empty",
        "minItems": lambda: "must not be empty",
        "minProperties": lambda: "must not be empty",
        "exclusiveMinimum": lambda: f"must be greater than {plain(limit)}, got {plain(value)}",
        "minimum": lambda: f"must be at least {plain(limit)}, got {plain(value)}",
        "maximum": lambda: f"must be at most {plain(limit)}, got {plain(value)}",
    }
    if kind in messages:
        return messages[kind]()
    return str(schema.get("errorMessage", error.message))


def _value_hint(error: Any) -> str:
    """How to fix a bad value: a did-you-mean for enums, quoting or YAML 1.2 booleans for types."""
    value = error.instance
    if error.validator == "enum" and isinstance(value, str):
        return did_you_mean(value, [str(v) for v in error.validator_value])
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


def describe(value: Any) -> str:
    """A value's kind and value, for "got ..." messages."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return f"boolean {plain(value)}"
    if isinstance(value, int | float):
        return f"number {plain(value)}"
    if isinstance(value, str):
        return f"string {plain(value, quote=True)}"
    return "a mapping" if isinstance(value, dict) else "a list"


def plain(value: Any, quote: bool = False) -> str:
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



# --- salvage: the valid part of invalid data ------------------------------------

_GONE = object()


def prune(
    data: Any, validator: Any, fill: Callable[[KeyPath, Any, str], bool], rounds: int = 8
) -> tuple[Any, list[KeyPath]] | None:
    """A copy of ``data`` without the parts the schema rejects, and the paths removed (None: nothing left to check).

    Each invalid value (or unknown key) is removed; an object missing a required key is removed as a whole
    unless ``fill(path, instance, key)`` puts a stand-in there (returning True). Repeats until the copy is valid.
    """
    data = copy.deepcopy(data)
    removed: list[KeyPath] = []
    for _ in range(rounds):
        culprits: list[KeyPath] = []
        for error in validator.iter_errors(data):
            culprits += _culprits(error, fill)
        if not culprits:
            return data, removed
        if any(not path for path in culprits):
            return None
        for path in culprits:
            _remove(data, path)
        data = _drop_gone(data)
        removed += culprits
    return None


def _culprits(error: Any, fill: Callable[[KeyPath, Any, str], bool]) -> list[KeyPath]:
    """The paths to remove for one schema error (the value itself, unless the error is about its keys)."""
    path: KeyPath = tuple(error.absolute_path)
    instance = error.instance
    if "propertyNames" in error.absolute_schema_path:
        return [(*path, str(instance))]
    if error.validator == "additionalProperties":
        allowed = error.schema.get("properties", {})
        return [(*path, key) for key in instance if key not in allowed]
    if error.validator == "dependentRequired":
        return [(*path, key) for key, needed in error.validator_value.items()
                if key in instance and any(other not in instance for other in needed)]
    if error.validator == "required":
        missing = [key for key in error.validator_value if key not in instance]
        return [] if all(fill(path, instance, key) for key in missing) else [path]
    return [path]


def _remove(data: Any, path: KeyPath) -> None:
    """Remove the value at ``path`` (list items become a marker, dropped afterwards); a missing path is ignored."""
    parent = data
    for part in path[:-1]:
        try:
            parent = parent[part]
        except (KeyError, IndexError, TypeError):
            return
    last = path[-1]
    if isinstance(parent, dict):
        parent.pop(last, None)
    elif isinstance(parent, list) and isinstance(last, int) and 0 <= last < len(parent):
        parent[last] = _GONE


def _drop_gone(data: Any) -> Any:
    """``data`` without the list items :func:`_remove` marked."""
    if isinstance(data, dict):
        return {key: _drop_gone(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_drop_gone(item) for item in data if item is not _GONE]
    return data
