"""The two-pass policy measured by bench/hearing_eval.py: fast, accurate and auto as the engine runs them.

From what the two passes heard for each flow line (decoded once by hearing_eval.py):

* ``fast``: the streaming pass with the node's hints (``pocketsphinx-hints``): what a ``listen: {asr: fast}`` node takes;
* ``accurate``: Whisper base with the node's hints as its prompt (``whisper-base-prompt``): what the engine's accurate
  pass decodes (voicebot.asr.accurate sends the node's hints);
* ``auto``: the fast words when :func:`voicebot.dialog.twopass.accurate_reason` lets them stand, else Whisper's.

The latency auto adds is the accurate pass's decode time on the turns where it runs (0 where the fast final
stands), per node kind: ``yes/no`` (the node's own intents are only yes and no), ``capture`` (it captures a slot),
``open`` (any other question).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from voicebot.dialog.flow import Flow, Node
from voicebot.dialog.twopass import accurate_reason, allowed_intents

FAST, ACCURATE = "pocketsphinx-hints", "whisper-base-prompt"
PASSES = ("fast", "accurate", "auto")


def node_kind(node: Node) -> str:
    """``capture``, ``yes/no`` or ``open`` (see the module's docstring)."""
    if node.capture:
        return "capture"
    return "yes/no" if node.routes and set(node.routes) <= {"yes", "no"} else "open"


def add_two_pass(clips: Sequence[Any], flows: dict[str, Flow], matchers: dict[str, Any]) -> dict[str, Any]:
    """Add ``fast``/``accurate``/``auto`` to each flow line's ``heard``; return the latency auto adds per node kind."""
    added: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)  # (condition, kind) -> (wall, cpu)
    for clip in clips:
        if clip.flow is None or clip.node is None:
            continue
        flow, matcher = flows[clip.flow], matchers[clip.flow]
        node = flow.nodes[clip.node]

        def score(text: str, allowed: list[str], matcher: Any = matcher) -> list[tuple[str, float]]:
            return [(str(m.intent), float(m.score)) for m in matcher.match(text, allowed)]

        for cname, heard in clip.heard.items():
            if FAST not in heard or ACCURATE not in heard:
                continue
            fast, accurate = heard[FAST], heard[ACCURATE]
            runs = bool(accurate_reason(flow, node, fast[0], score))
            heard["fast"], heard["accurate"] = fast, accurate
            heard["auto"] = ((accurate[0], fast[1] + accurate[1], fast[2] + accurate[2]) if runs else fast)
            added[(cname, node_kind(node))].append((accurate[1], accurate[2]) if runs else (0.0, 0.0))
    return {f"{c}|{k}": _latency(v) for (c, k), v in sorted(added.items())}


def _latency(values: list[tuple[float, float]]) -> dict[str, Any]:
    ran = [v for v in values if v[1] > 0]
    cpu = [c for _, c in values]
    return {"n": len(values), "ran": len(ran), "cpu_p50_s": float(np.percentile(cpu, 50)),
            "cpu_p95_s": float(np.percentile(cpu, 95)), "cpu_mean_s": float(np.mean(cpu)),
            "wall_p50_s": float(np.percentile([w for w, _ in values], 50))}


def latency_report(latency: dict[str, Any]) -> list[str]:
    """The added latency as a Markdown table."""
    lines = ["", "## Latency auto adds per node kind (the accurate pass's decode where it runs; 0 where the fast final "
             "stands)", "", "| condition | node kind | accurate pass ran | CPU p50 s | CPU p95 s | CPU mean s | wall p50 s |",
             "|---|---|---|---|---|---|---|"]
    for key, v in latency.items():
        cname, kind = key.split("|")
        lines.append(f"| {cname} | {kind} | {v['ran']} of {v['n']} | {v['cpu_p50_s']:.2f} | {v['cpu_p95_s']:.2f} | "
                     f"{v['cpu_mean_s']:.2f} | {v['wall_p50_s']:.2f} |")
    return lines


def offscript_two_pass(clips: Sequence[Any], flows: dict[str, Flow], matchers: dict[str, Any], recs: dict[str, Any],
                       conditions: dict[str, Any], through: Any, intent_of: Any) -> dict[str, Any]:
    """False intents per pass: every human clip (none says anything a flow knows) heard at every listening node of
    every flow, each pass with that node's hints, as the engine would hear it there."""
    out: dict[str, Any] = {}
    human = [c for c in clips if c.source.startswith("human")]
    for cname, condition in conditions.items():
        for clip in human:
            audio = through(clip, condition, clips)
            for fname, flow in flows.items():
                matcher = matchers[fname]
                for node in (n for n in flow.nodes.values() if n.routes):
                    hints = list(matcher.hint_phrases(allowed_intents(flow, node)))
                    fast, accurate = recs[FAST](audio, hints, flow.language)[0], recs[ACCURATE](audio, hints, flow.language)[0]

                    def score(text: str, allowed: list[str], matcher: Any = matcher) -> list[tuple[str, float]]:
                        return [(str(m.intent), float(m.score)) for m in matcher.match(text, allowed)]

                    auto = accurate if accurate_reason(flow, node, fast, score) else fast
                    for name, text in (("fast", fast), ("accurate", accurate), ("auto", auto)):
                        entry = out.setdefault(f"{cname}|{name}", {"false": 0, "n": 0, "examples": []})
                        entry["n"] += 1
                        got = intent_of(flow, matcher, node.id, text)
                        if got != "none":
                            entry["false"] += 1
                            if len(entry["examples"]) < 5:
                                entry["examples"].append(f"{clip.id} at {fname}:{node.id}: {text!r} -> {got}")
    return out

