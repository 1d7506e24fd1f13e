"""The meaning of a flow (stage 3 of :mod:`voicebot.dialog.loader`): targets, reachability, intents, templates...

Each check takes the document and the built :class:`Flow` and records problems on the document.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

from voicebot.dialog.build import LISTEN_KEYS, is_per_language
from voicebot.dialog.checks_slots import check_slot_paths
from voicebot.dialog.flow import LANGUAGES, RETURN, SPECIAL_TARGETS, Flow, Node
from voicebot.yamldoc import Doc, KeyPath, did_you_mean

__all__ = ["DEFAULT_PROMPTS_DIR", "SEMANTIC_CHECKS", "check_prompts"]

DEFAULT_PROMPTS_DIR = "prompts"

Check = Callable[[Doc, Flow], None]

_ENDINGS = ("next", "transfer", "hangup")
_TEMPLATE_RE = re.compile(r"\{\{(.*?)\}\}")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PHONE_RE = re.compile(r"\+?[0-9][0-9 ()-]*")


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


def _check_targets(doc: Doc, flow: Flow) -> None:
    """Targets must name a node, or a special target where it makes sense."""
    for path, target, allowed in _target_refs(doc.data):
        if target in SPECIAL_TARGETS and target not in allowed:
            hint = "name a node here" if not allowed else "this node doesn't listen, so there is nothing to repeat"
            doc.at(path, f"'{target}' can't be used here", hint)
        elif target not in SPECIAL_TARGETS and target not in flow.nodes:
            hint = did_you_mean(target, flow.nodes) or "add a node with this id under 'nodes'"
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


def _check_reachable(doc: Doc, flow: Flow) -> None:
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


def _check_intents(doc: Doc, flow: Flow) -> None:
    """Used intents must be defined (error); defined intents should be used (warning)."""
    used: set[str] = set()
    for path in _intent_uses(doc.data):
        name = str(path[-1])
        used.add(name)
        if name not in flow.intents:
            hint = did_you_mean(name, flow.intents) or "define it under 'intents'"
            doc.at(path, f"intent '{name}' is not defined", hint, key=True)
    for name in flow.intents:
        if name not in used:
            hint = "route it in a node's 'on' or in 'global', or remove it"
            doc.at(("intents", name), f"intent '{name}' is never used", hint, key=True, severity="warning")


def _check_intent_languages(doc: Doc, flow: Flow) -> None:
    """An intent written per language needs a section for the flow's language."""
    for name, spec in doc.data.get("intents", {}).items():
        if is_per_language(spec) and flow.language not in spec:
            has = ", ".join(language for language in LANGUAGES if language in spec)
            hint = f"add a '{flow.language}:' section (it has {has})"
            doc.at(("intents", name), f"intent '{name}' has no '{flow.language}' section", hint, key=True)


def _phrase_sections(doc: Doc) -> Iterator[tuple[KeyPath, dict[str, Any]]]:
    """Every phrase section: flat intents, and each language section of per-language ones."""
    for name, spec in doc.data.get("intents", {}).items():
        if not is_per_language(spec):
            yield ("intents", name), spec
        for language in LANGUAGES:
            if language in spec:
                yield ("intents", name, language), spec[language]


def _phrase_items(doc: Doc, key: str) -> Iterator[tuple[KeyPath, str]]:
    """Every phrase under ``key`` (keywords, regex or examples), with its path."""
    for path, section in _phrase_sections(doc):
        items = section.get(key)
        if isinstance(items, str):
            yield (*path, key), items
        elif items is not None:
            yield from (((*path, key, i), item) for i, item in enumerate(items))


def _check_regexes(doc: Doc, flow: Flow) -> None:
    """Every intent regex must compile (as the matcher does: case-insensitive)."""
    for path, pattern in _phrase_items(doc, "regex"):
        try:
            re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            doc.at(path, f"bad regex '{pattern}': {exc}", "fix the pattern (Python 're' syntax)")


def _say_values(data: dict[str, Any]) -> Iterator[tuple[KeyPath, Any]]:
    """Every say-like value: node say, re-prompts (nodes and defaults), transfer hold, intents' confirm prompts."""
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
    for name, spec in data.get("intents", {}).items():
        for language in ("", *LANGUAGES):
            section = spec.get(language, {}) if language else spec
            if isinstance(section, dict) and "confirm" in section:
                yield ("intents", name, *((language,) if language else ()), "confirm"), section["confirm"]


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


def _check_templates(doc: Doc, flow: Flow) -> None:
    """``{{name}}`` must name a declared variable or a slot some node captures."""
    known = set(flow.variables) | {slot for node in flow.nodes.values() for slot in node.capture}
    for path, text in _texts(doc.data):
        for match in _TEMPLATE_RE.finditer(text):
            name = match.group(1).strip()
            if not _IDENTIFIER_RE.fullmatch(name):
                doc.at(path, f"bad template '{match.group(0)}'", "write {{name}} with a variable name")
            elif name not in known:
                hint = did_you_mean(name, known) or "declare it under 'variables' or capture it in a node"
                doc.at(path, f"undeclared variable '{name}' in template", hint)


def check_prompts(doc: Doc, flow: Flow, flow_dir: Path | None) -> None:
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


def _check_endings(doc: Doc, flow: Flow) -> None:
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


def _check_listening_ending(doc: Doc, path: KeyPath, spec: dict[str, Any], endings: list[str]) -> None:
    """A listening node may only have ``next`` (with ``capture``, as its default target)."""
    trigger = next(key for key in LISTEN_KEYS if key in spec)
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


def _check_unused_retries(doc: Doc, flow: Flow) -> None:
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


def _check_variable_defaults(doc: Doc, flow: Flow) -> None:
    """A variable's default must be a valid value of its type."""
    for name, variable in flow.variables.items():
        if variable.default is not None and not _valid_value(variable.type, variable.default):
            path: KeyPath = ("variables", name, "default")
            message = f"default '{variable.default}' is not a valid {variable.type}"
            doc.at(path if path in doc.values else path[:-1], message, _VALUE_EXAMPLES[variable.type])


def _check_handoff(doc: Doc, flow: Flow) -> None:
    """``prepare_at_level`` needs a group to prepare."""
    if flow.handoff.prepare_at_level and not flow.handoff.group:
        doc.at(("flow", "handoff", "prepare_at_level"), "prepare_at_level needs an agent group to prepare",
               "add 'group: <agent group>' under flow.handoff")


SEMANTIC_CHECKS: tuple[Check, ...] = (
    _check_targets,
    _check_reachable,
    _check_intents,
    _check_intent_languages,
    _check_regexes,
    _check_templates,
    check_slot_paths,
    _check_endings,
    _check_unused_retries,
    _check_variable_defaults,
    _check_handoff,
)
