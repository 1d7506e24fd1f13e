"""Validation: a prompt must not say a captured slot that may be empty when the bot gets there.

A slot has a value after its capture node went on through ``default`` (``next``): a capture that gets
no value is re-asked and then goes to ``no_match.then``, never to ``default``. Every other way out of a
capture node (an intent, a key, no input, no match, a global intent) may leave it empty, and after no
input or no match a lone slot is surely empty (a capture that filled it would have gone on).

For each node the check computes, over every path from the flow's entry points (``start``, ``on_limit``,
``handoff.after_agent`` and the global intents' targets), the slots set on every path (*must*) and on
some path (*may*). A ``{{slot}}`` in a node's prompts (``say``, re-prompts, transfer hold) that is:

* set on no path there is an **error** (it would always be spoken empty);
* set on some paths only is a **warning** (it would be spoken empty on the others).

Declared variables are always filled (from their default or the call), so they are never reported.
``return`` and ``repeat`` go back to a node that was already reached with no fewer slots, so they add
nothing and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from voicebot.dialog.flow import SPECIAL_TARGETS, Flow, Node
from voicebot.yamldoc import Doc, KeyPath

_TEMPLATE_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_NONE: frozenset[str] = frozenset()

Edge = tuple[str, frozenset[str], frozenset[str]]  # target, slots set for sure, slots maybe set


def _edges(flow: Flow, node: Node) -> Iterator[Edge]:
    """Where ``node`` can go and which slots are set (surely, maybe) on the way."""
    captured = frozenset(node.capture)
    if node.default:
        yield node.default, captured, captured
    for target in (*node.routes.values(), *node.dtmf.values()):
        yield target, _NONE, captured
    yield node.next, _NONE, _NONE
    if node.listen is not None:
        partial = captured if len(captured) > 1 else _NONE  # one slot: a capture that failed set nothing
        yield node.no_input.then, _NONE, partial
        yield node.no_match.then, _NONE, partial
        if node.globals_enabled:
            for target in flow.global_routes.values():
                yield target, _NONE, captured
    if node.transfer is not None:
        for target in (node.transfer.on_timeout, node.transfer.on_fail, node.transfer.after_agent):
            yield target, _NONE, _NONE


def slot_states(flow: Flow) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """For each reachable node: (slots set on every path there, slots set on some path there)."""
    roots = (flow.start, flow.on_limit, flow.handoff.after_agent, *flow.global_routes.values())
    must: dict[str, frozenset[str]] = {r: _NONE for r in roots if r in flow.nodes}
    may: dict[str, frozenset[str]] = {r: _NONE for r in must}
    todo = list(must)
    while todo:
        node_id = todo.pop()
        for target, sure, maybe in _edges(flow, flow.nodes[node_id]):
            if not target or target in SPECIAL_TARGETS or target not in flow.nodes:
                continue
            new_must = must[node_id] | sure
            new_must = new_must if target not in must else must[target] & new_must
            new_may = may.get(target, _NONE) | may[node_id] | maybe | sure
            if must.get(target) != new_must or may.get(target) != new_may:
                must[target], may[target] = new_must, new_may
                todo.append(target)
    return {node_id: (must[node_id], may[node_id]) for node_id in must}


def _node_texts(path: KeyPath, spec: dict[str, Any]) -> Iterator[tuple[KeyPath, str]]:
    """Every text a node may say (prompt, re-prompts, hold), with its path."""
    values: list[tuple[KeyPath, Any]] = [((*path, "say"), spec.get("say"))]
    values += [((*path, key, "reprompt"), spec.get(key, {}).get("reprompt")) for key in ("no_input", "no_match")]
    values.append(((*path, "transfer", "hold"), spec.get("transfer", {}).get("hold")))
    for where, value in values:
        if isinstance(value, dict) and "variants" in value:
            where, value = (*where, "variants"), value["variants"]
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            at = where if index is None else (*where, index)
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                yield (*at, "text"), item["text"]
            elif isinstance(item, str):
                yield at, item


def check_slot_paths(doc: Doc, flow: Flow) -> None:
    """A prompt that says a slot empty on every path to it is an error; on some paths, a warning."""
    captured_by: dict[str, list[str]] = {}
    for node_id, node in flow.nodes.items():
        for slot in node.capture:
            captured_by.setdefault(slot, []).append(node_id)
    states = slot_states(flow)
    for node_id, spec in doc.data["nodes"].items():
        if node_id not in states or not isinstance(spec, dict):
            continue
        must, may = states[node_id]
        for path, text in _node_texts(("nodes", node_id), spec):
            for name in dict.fromkeys(m.group(1) for m in _TEMPLATE_RE.finditer(text)):
                if name in flow.variables or name not in captured_by or name in must:
                    continue
                where = ", ".join(f"'{n}'" for n in captured_by[name])
                if name not in may:
                    doc.at(path, f"slot '{name}' is always empty here: no path to node '{node_id}' captures it",
                           f"it is captured by {where}; route here from there through 'next' (or 'default'), or drop it")
                else:
                    doc.at(path, f"slot '{name}' may be empty here: some paths to node '{node_id}' skip its capture",
                           f"only 'next' (or 'default') of {where} guarantees a value; give the other paths their own node",
                           severity="warning")
