"""Draw a call flow as a diagram, for script designers to look at.

:func:`flow_to_dot` turns a :class:`~voicebot.dialog.flow.Flow` into Graphviz
DOT text; :func:`render` writes that text to a ``.dot`` file or runs the
``dot`` program to make an ``.svg``, ``.png`` or ``.pdf``.

What the diagram shows:

- one rounded box per node: its id, the first variant of what it says and
  small lines for tags, level, notify, prepare and capture; the fill colour
  follows the level; hang-up nodes have a red border;
- a black "start" dot with an arrow to the start node;
- solid edges for intents (labelled with the intent), keys ("key 1"), the
  default ("anything else") and ``next`` (unlabelled);
- dashed edges for no-input / no-match retries ("no input ×3" means the
  caller said nothing three times: the first prompt and two re-prompts); a
  rule that at least SHARED_RETRY_MIN listening nodes share is drawn once,
  from an "any listening node" note;
- a green "handoff: GROUP" shape for each transfer, with dashed edges for
  when no agent answers or the transfer fails;
- a "from any node" cluster with the global intents (and the shared retries);
- ``repeat`` as a self-loop and ``return`` as a small note;
- a "limits" note with a dotted edge to ``flow.on_limit``.

Large flows must read on one page: prompt text wraps onto two short lines,
and :func:`best_dot` picks the layout (plain, or every second edge to a
hang-up node two ranks long) whose drawing is nearest a square.

Output is deterministic: nodes, routes and keys are drawn in the order the
flow gives them (its file order), so the same flow always gives the same text.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from voicebot.dialog.flow import REPEAT, RETURN, Flow, Node, Retry, Say

__all__ = ["GraphvizError", "GraphvizMissing", "UnsupportedFormat", "flow_to_dot", "render"]

TEXT_LIMIT = 30  # columns of a line of prompt text in a node box (a Chinese character is 2)
TEXT_LINES = 2  # lines of prompt text in a node box; longer prompts are cut with an ellipsis
DETAIL_LIMIT = 60  # columns of a small detail line
DOT_TIMEOUT_S = 30.0
FORMATS = ("dot", "svg", "png", "pdf")
FONT = "Helvetica"
LEVEL_FILL = {"A": "#d8f0d8", "B": "#d8e8f8", "C": "#fff4c8", "D": "#e8e8e8"}
HANDOFF_COLOR = "#2e7d32"
HANGUP_COLOR = "#c62828"
GRAPH_STYLE = {
    "labelloc": "t",
    "fontname": FONT,
    "fontsize": "16",
    "charset": "UTF-8",
    "rankdir": "TB",
    "nodesep": "0.4",
    "ranksep": "0.5",
}
NODE_STYLE = {
    "shape": "box",
    "style": "rounded,filled",
    "fillcolor": "white",
    "fontname": FONT,
    "fontsize": "11",
}
EDGE_STYLE = {"fontname": FONT, "fontsize": "10"}
START_STYLE = {"shape": "circle", "label": "start", "style": "filled", "fillcolor": "black", "fontcolor": "white",
               "fontsize": "10", "width": "0.6", "fixedsize": "true"}
HANDOFF_STYLE = {"shape": "doubleoctagon", "style": "filled", "fillcolor": "#c8e6c9", "color": HANDOFF_COLOR}
GLOBAL_COLOR = "#7b1fa2"
CLUSTER_STYLE = {"label": "from any node", "style": "dashed,rounded", "color": GLOBAL_COLOR}
ANY_NODE_STYLE = {"shape": "note", "label": "any node", "fillcolor": "#f3e5f5"}
START = "__start__"
GLOBALS = "__globals__"
RETRIES = "__retries__"
SHARED_RETRY_MIN = 3  # a retry rule (no input/no match, count, target) this many listening nodes share is drawn once
RETRIES_STYLE = {"shape": "note", "label": "any listening node", "fillcolor": "#f0f0f0"}
LIMITS = "__limits__"


class GraphvizError(RuntimeError):
    """The ``dot`` program failed or took too long."""


class GraphvizMissing(GraphvizError):
    """The ``dot`` program is not installed (not on ``PATH``)."""


class UnsupportedFormat(ValueError):
    """The output file's name does not end in a format :func:`render` can write."""


class _Html(str):
    """An HTML-like Graphviz label: written inside ``<...>``, not quoted."""


@dataclass
class _Graph:
    """DOT statements being collected for one flow."""

    flow: Flow
    pending: list[str] = field(default_factory=list)  # notes not yet written
    seen: set[str] = field(default_factory=set)  # note ids already made
    shared: list[tuple[str, int, str]] = field(default_factory=list)  # retry rules drawn once, from RETRIES
    stagger: bool = False  # every second edge to a hang-up node is made two ranks long
    leaf_edges: int = 0  # edges to hang-up nodes so far


def flow_to_dot(flow: Flow, *, stagger: bool = False) -> str:
    """Return Graphviz DOT text that draws ``flow``.

    ``stagger`` makes every second edge to a hang-up node two ranks long, which
    makes a wide drawing narrower and taller (see :func:`best_dot`).
    """
    g = _Graph(flow, shared=_shared_retries(flow), stagger=stagger)
    title = f"{flow.id} v{flow.version} ({flow.language})"
    lines = [
        f"digraph {_q(flow.id)} {{",
        f"  graph {_attrs({**GRAPH_STYLE, 'label': title})};",
        f"  node {_attrs(NODE_STYLE)};",
        f"  edge {_attrs(EDGE_STYLE)};",
        f"  {_q(START)} {_attrs(START_STYLE)};",
        _edge(START, _target(g, START, flow.start), {"penwidth": "2"}),
    ]
    for node in flow.nodes.values():
        lines.append(_node_stmt(node))
        lines += _route_edges(g, node)
        lines += _retry_edges(g, node)
        lines += _transfer_stmts(g, node)
        lines += _flush(g)
    lines += _anywhere_cluster(g)
    lines += _limits(g)
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(flow: Flow, output: Path) -> Path:
    """Draw ``flow`` into ``output``; its suffix (.dot, .svg, .png, .pdf) picks the format.

    Raises :class:`UnsupportedFormat` (a ValueError) for any other suffix,
    naming the ones supported; :class:`GraphvizMissing` when ``dot`` is not
    installed and :class:`GraphvizError` when it fails (a .dot file needs it
    only to pick the layout: without it, the plain layout is written).
    """
    output = Path(output)
    fmt = output.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        supported = ", ".join(f".{f}" for f in FORMATS)
        raise UnsupportedFormat(f"cannot draw {output.name!r}: the name must end in one of {supported}")
    text = _dot_text(flow) if fmt == "dot" else best_dot(flow)
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        output.write_text(text, encoding="utf-8")
    else:
        output.write_bytes(_run_dot(text, fmt))
    return output


def _dot_text(flow: Flow) -> str:
    """The text of a .dot file: the best layout, or the plain one where Graphviz cannot measure it."""
    try:
        return best_dot(flow)
    except GraphvizError:
        return flow_to_dot(flow)


def best_dot(flow: Flow) -> str:
    """The DOT text whose layout is nearest a square: plain, or with hang-up nodes staggered (needs ``dot``)."""
    plain, staggered = flow_to_dot(flow), flow_to_dot(flow, stagger=True)
    if plain == staggered:
        return plain
    return min((plain, staggered), key=lambda text: abs(math.log(layout_aspect(text))))


def layout_aspect(text: str) -> float:
    """Width over height of the drawing Graphviz lays out for DOT ``text``."""
    fields = _run_dot(text, "plain").decode("utf-8", "replace").split("\n", 1)[0].split()
    return float(fields[2]) / max(float(fields[3]), 1e-6)  # "graph SCALE WIDTH HEIGHT"


def _run_dot(text: str, fmt: str) -> bytes:
    """Run Graphviz ``dot -T<fmt>`` on DOT ``text`` and return what it drew."""
    missing = GraphvizMissing(
        "Graphviz 'dot' was not found on PATH: install the Debian package 'graphviz' "
        "(apt-get install graphviz), or write a .dot file instead"
    )
    exe = shutil.which("dot")
    if exe is None:
        raise missing
    try:
        done = subprocess.run(
            [exe, f"-T{fmt}"],
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=DOT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise missing from exc
    except subprocess.TimeoutExpired as exc:
        raise GraphvizError(f"Graphviz 'dot' took longer than {DOT_TIMEOUT_S:g} s") from exc
    if done.returncode != 0 or not done.stdout:
        err = done.stderr.decode("utf-8", "replace").strip()
        raise GraphvizError(f"Graphviz 'dot -T{fmt}' failed (exit {done.returncode}): {err}")
    return done.stdout


# --- nodes -------------------------------------------------------------------


def _node_stmt(node: Node) -> str:
    """The DOT statement for one flow node's box."""
    attrs: dict[str, str] = {"label": _node_label(node)}
    if node.level in LEVEL_FILL:
        attrs["fillcolor"] = LEVEL_FILL[node.level]
    if node.hangup:
        attrs.update({"color": HANGUP_COLOR, "penwidth": "2.5", "fillcolor": "#fdecea"})
    return f"  {_q(node.id)} {_attrs(attrs)};"


def _node_label(node: Node) -> _Html:
    """An HTML-like label: the id in bold, the prompt, then small detail lines."""
    parts = [f"<B>{_h(node.id)}</B>"]
    parts += [_h(line) for line in _say_lines(node.say)]
    for line in _details(node):
        small = _h(_truncate(line, DETAIL_LIMIT))
        parts.append(f'<FONT POINT-SIZE="9" COLOR="#555555">{small}</FONT>')
    if node.hangup:
        parts.append(f'<FONT COLOR="{HANGUP_COLOR}"><B>hang up: {_h(node.hangup)}</B></FONT>')
    return _Html("<BR/>".join(parts))


def _say_lines(say: Say) -> list[str]:
    """The first variant of what ``say`` says, quoted and wrapped into at most TEXT_LINES lines for a box."""
    if not say.variants:
        return []
    first = say.variants[0]
    if first.text.strip():
        more = f" (+{len(say.variants) - 1})" if len(say.variants) > 1 else ""
        lines = _wrap(f"“{_one_line(first.text)}”", TEXT_LIMIT, TEXT_LINES)
        if not lines[-1].endswith("”"):
            lines[-1] += "”"
        return [*lines[:-1], lines[-1] + more]
    return [f"[recording: {_truncate(first.prompt, TEXT_LIMIT)}]"] if first.prompt else []


def _wrap(text: str, width: int, max_lines: int) -> list[str]:
    """``text`` in lines of at most ``width`` columns, broken at spaces (anywhere in Chinese); the last cut with "…"."""
    lines: list[str] = []
    line = ""
    for ch in text:
        if _columns(line + ch) <= width:
            line += ch
        elif " " in line and not _wide(ch):
            head, tail = line.rsplit(" ", 1)
            lines.append(head)
            line = (tail + ch).lstrip()
        else:
            lines.append(line)
            line = ch.strip()
    lines = [ln.strip() for ln in [*lines, line] if ln.strip()]
    if len(lines) > max_lines:
        lines = [*lines[:max_lines - 1], _truncate(" ".join(lines[max_lines - 1:]), width)]
    return lines or [""]


def _wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in "WF"


def _columns(text: str) -> int:
    return sum(2 if _wide(ch) else 1 for ch in text)


def _details(node: Node) -> list[str]:
    """Small lines under a node's prompt: its effects and what ends the call."""
    lines = []
    if node.tags:
        lines.append("tags: " + ", ".join(node.tags))
    if node.level:
        lines.append(f"level: {node.level}")
    if node.notify:
        lines.append("notify: " + ", ".join(node.notify))
    if node.prepare:
        lines.append(f"prepare: {node.prepare}")
    if node.capture:
        lines.append("capture: " + ", ".join(f"{k} ({v})" for k, v in node.capture.items()))
    if not node.globals_enabled:
        lines.append("global intents off")
    if _listens(node):
        for name, retry in _retries(node):
            if not retry.then:
                lines.append(f"{name} ×{retry.retries + 1} → hang up")
    return lines


# --- edges -------------------------------------------------------------------


def _listens(node: Node) -> bool:
    """Whether the node waits for the caller (so retries apply)."""
    return node.listen is not None or bool(node.routes or node.dtmf or node.default)


def _retries(node: Node) -> list[tuple[str, Retry]]:
    """The retry rules in force at a node: no-match only without a default."""
    rules = [("no input", node.no_input)]
    if not node.default:
        rules.append(("no match", node.no_match))
    return rules


def _route_edges(g: _Graph, node: Node) -> list[str]:
    """Solid edges for intents, keys, the default and ``next``; same-target labels merged."""
    labels: dict[str, list[str]] = {}
    for intent, target in node.routes.items():
        labels.setdefault(target, []).append(intent)
    for key, target in node.dtmf.items():
        labels.setdefault(target, []).append(f"key {key}")
    if node.default:
        labels.setdefault(node.default, []).append("anything else")
    edges = []
    for target, names in labels.items():
        attrs = {"label": "\n".join(names + (["(say again)"] if target == REPEAT else []))}
        if _is_leaf(g.flow, target):
            g.leaf_edges += 1
            if g.stagger and g.leaf_edges % 2 == 0:
                attrs["minlen"] = "2"
        edges.append(_edge(node.id, _target(g, node.id, target), attrs))
    if node.next:
        edges.append(_edge(node.id, _target(g, node.id, node.next), {}))
    return edges


def _is_leaf(flow: Flow, node_id: str) -> bool:
    """Whether ``node_id`` is a node that hangs up without going anywhere else."""
    node = flow.nodes.get(node_id)
    return node is not None and bool(node.hangup) and node.transfer is None and not node.next


def _retry_edges(g: _Graph, node: Node) -> list[str]:
    """Dashed edges to where no-input / no-match retries lead once used up."""
    if not _listens(node):
        return []
    edges = []
    for name, retry in _retries(node):
        if retry.then and (name, retry.retries, retry.then) not in g.shared:
            attrs = {"label": f"{name} ×{retry.retries + 1}", "style": "dashed", "color": "#777777"}
            edges.append(_edge(node.id, _target(g, node.id, retry.then), attrs))
    return edges


def _transfer_stmts(g: _Graph, node: Node) -> list[str]:
    """A green handoff shape for a transfer, with dashed edges for when it fails."""
    t = node.transfer
    if t is None:
        return []
    hid = f"__handoff__:{node.id}"
    fail = t.on_fail or t.on_timeout
    extra = "" if t.on_timeout else "\nno agent: hang up (no_agent)"
    label = f"handoff: {t.group}\nwait {t.timeout_s:g} s{extra}"
    lines = [f"  {_q(hid)} {_attrs({**HANDOFF_STYLE, 'label': label})};"]
    lines.append(_edge(node.id, hid, {"color": HANDOFF_COLOR, "penwidth": "2"}))
    dashed = {"style": "dashed", "color": HANDOFF_COLOR}
    if t.on_timeout and fail == t.on_timeout:
        lines.append(_edge(hid, _target(g, hid, fail), {**dashed, "label": "no agent / failed"}))
        return lines
    if t.on_timeout:
        lines.append(_edge(hid, _target(g, hid, t.on_timeout), {**dashed, "label": "no agent"}))
    if fail:
        lines.append(_edge(hid, _target(g, hid, fail), {**dashed, "label": "transfer failed"}))
    return lines


def _shared_retries(flow: Flow) -> list[tuple[str, int, str]]:
    """Retry rules (name, retries, target) that at least SHARED_RETRY_MIN listening nodes share, in flow order."""
    rules = [(name, r.retries, r.then) for node in flow.nodes.values() if _listens(node) for name, r in _retries(node) if r.then]
    counts = Counter(rules)
    return [rule for rule in dict.fromkeys(rules) if counts[rule] >= SHARED_RETRY_MIN]


def _anywhere_cluster(g: _Graph) -> list[str]:
    """A "from any node" cluster: the global intents, and the retry rules most listening nodes share, each drawn once."""
    if not g.flow.global_routes and not g.shared:
        return []
    lines = [f"  subgraph {_q('cluster_globals')} {{", f"    graph {_attrs(CLUSTER_STYLE)};"]
    edges = []
    if g.flow.global_routes:
        lines.append(f"    {_q(GLOBALS)} {_attrs(ANY_NODE_STYLE)};")
    for intent, target in g.flow.global_routes.items():
        attrs = {"label": intent, "color": GLOBAL_COLOR, "fontcolor": GLOBAL_COLOR}
        edges.append(_edge(GLOBALS, _target(g, GLOBALS, target), attrs))
    if g.shared:
        lines.append(f"    {_q(RETRIES)} {_attrs(RETRIES_STYLE)};")
    for name, retries, target in g.shared:
        attrs = {"label": f"{name} ×{retries + 1}", "style": "dashed", "color": "#777777"}
        edges.append(_edge(RETRIES, _target(g, RETRIES, target), attrs))
    lines += ["  " + n for n in _flush(g)]
    return [*lines, "  }", *edges]


def _limits(g: _Graph) -> list[str]:
    """A "limits" note (call length, turns) with a dotted edge to ``on_limit``."""
    flow = g.flow
    end = "" if flow.on_limit else "\n→ hang up"
    label = f"limits: {flow.max_duration_s:g} s, {flow.max_turns} turns{end}"
    lines = [f"  {_q(LIMITS)} {_attrs({'shape': 'note', 'label': label, 'fontsize': '9'})};"]
    if flow.on_limit:
        lines.append(_edge(LIMITS, _target(g, LIMITS, flow.on_limit), {"style": "dotted"}))
    return lines + _flush(g)


def _target(g: _Graph, src: str, target: str) -> str:
    """The DOT id an edge from ``src`` to ``target`` points at.

    ``repeat`` from a node loops back to it; ``return``, ``repeat`` from a
    synthetic shape and unknown node ids get a small note instead.
    """
    if target in g.flow.nodes and target not in (RETURN, REPEAT):
        return target
    if target == REPEAT and src in g.flow.nodes:
        return src
    attrs: dict[str, str] = {}
    if target == RETURN:
        nid, label = f"__return__:{src}", "↩ back to the node\nthat was listening"
    elif target == REPEAT:
        nid, label = f"__repeat__:{src}", "↻ say the current\nprompt again"
    else:
        nid, label = f"__missing__:{target}", f"⚠ missing node: {target}"
        attrs = {"color": HANGUP_COLOR, "fontcolor": HANGUP_COLOR}
    if nid not in g.seen:
        g.seen.add(nid)
        note = {"shape": "note", "fontsize": "9", "style": "filled,dashed", "fillcolor": "#fafafa"}
        g.pending.append(f"  {_q(nid)} {_attrs({**note, **attrs, 'label': label})};")
    return nid


def _flush(g: _Graph) -> list[str]:
    """Take the note statements made since the last flush."""
    lines, g.pending = g.pending, []
    return lines


# --- DOT text ------------------------------------------------------------------


def _edge(src: str, dst: str, attrs: dict[str, str]) -> str:
    """One DOT edge statement."""
    return f"  {_q(src)} -> {_q(dst)}" + (f" {_attrs(attrs)}" if attrs else "") + ";"


def _attrs(attrs: dict[str, str]) -> str:
    """A DOT attribute list, in the order given."""
    items = (f"{k}=<{v}>" if isinstance(v, _Html) else f"{k}={_q(v)}" for k, v in attrs.items())
    return "[" + ", ".join(items) + "]"


def _q(text: str) -> str:
    """A DOT quoted string; newlines become line breaks, other controls are dropped."""
    text = "".join(ch for ch in text if ch == "\n" or ch.isprintable())
    body = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{body}"'


def _h(text: str) -> str:
    """Text escaped for an HTML-like label, on one line."""
    text = _one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;")


def _one_line(text: str) -> str:
    """``text`` with whitespace runs made single spaces and control characters dropped."""
    return "".join(ch for ch in " ".join(text.split()) if ch.isprintable())


def _truncate(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` columns with an ellipsis.

    Wide characters (Chinese) count as two columns, so boxes keep a similar width.
    """
    text = _one_line(text)
    widths = [2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text]
    if sum(widths) <= limit:
        return text
    used, cut = 1, 0  # one column for the ellipsis
    while used + widths[cut] <= limit:
        used += widths[cut]
        cut += 1
    return text[:cut].rstrip(" ,.;:") + "…"
