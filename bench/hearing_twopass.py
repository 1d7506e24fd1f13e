"""The two-pass policy measured by bench/hearing_eval.py: fast, accurate and auto as the engine runs them.

From what the two passes heard for each flow line (decoded once by hearing_eval.py):

* ``fast``: the streaming pass with the node's hints (``pocketsphinx-hints``): what a ``listen: {asr: fast}`` node takes;
* ``accurate``: Whisper base with the node's hints as its prompt (``whisper-base-prompt``): what the engine's accurate
  pass decodes (voicebot.asr.accurate sends the node's hints);
* ``auto``: the fast words when :func:`voicebot.dialog.twopass.accurate_reason` lets them stand, else Whisper's.
* ``accurate-guarded`` / ``auto-guarded``: the same with :mod:`voicebot.asr.promptguard` (a turn that reads noisy
  is decoded without the prompt too, ``whisper-base``, and the prompted words stand only when their hint words were
  heard that way too): measured, not what the engine runs (see bench/README.md).

The latency auto adds is the accurate pass's decode time on the turns where it runs (0 where the fast final
stands), per node kind: ``yes/no`` (the node's own intents are only yes and no), ``capture`` (it captures a slot),
``open`` (any other question).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from voicebot.asr import promptguard
from voicebot.dialog.flow import Flow, Node
from voicebot.dialog.twopass import accurate_reason, allowed_intents

FAST, ACCURATE, PLAIN = "pocketsphinx-hints", "whisper-base-prompt", "whisper-base"
PASSES = ("fast", "accurate", "auto")
GUARDED = ("accurate-guarded", "auto-guarded")  # with voicebot.asr.promptguard (measured; not what the engine runs)


def node_kind(node: Node) -> str:
    """``capture``, ``yes/no`` or ``open`` (see the module's docstring)."""
    if node.capture:
        return "capture"
    return "yes/no" if node.routes and set(node.routes) <= {"yes", "no"} else "open"


def node_hints(flow: Flow, node: Node, matcher: Any) -> list[str]:
    """The hint phrases the engine gives both passes at ``node``."""
    return list(matcher.hint_phrases(allowed_intents(flow, node)))


def guarded(snr_db: float, prompted: Sequence[Any], plain: Sequence[Any] | None, hints: Sequence[str]) -> tuple[Any, ...]:
    """What the accurate pass would answer with voicebot.asr.promptguard: (text, wall s, CPU s) of the prompted
    decode, or the decode without the prompt when the turn is noisy and the prompt's words were not heard without
    it; a noisy turn costs both decodes."""
    if not promptguard.is_noisy(snr_db) or not any(h.strip() for h in hints):
        return (prompted[0], prompted[1], prompted[2])
    if plain is None:  # not decoded in this run: the prompted words, said loudly
        print(f"warning: a noisy turn ({snr_db:.1f} dB) without {PLAIN}: its guarded rows keep the prompt",
              file=sys.stderr)
        return (prompted[0], prompted[1], prompted[2])
    choice = promptguard.choose(snr_db, prompted[0], plain[0], hints)
    return (choice.text, prompted[1] + plain[1], prompted[2] + plain[2])


def add_two_pass(clips: Sequence[Any], flows: dict[str, Flow], matchers: dict[str, Any]) -> dict[str, Any]:
    """Add ``fast``/``accurate``/``auto`` (and the guarded rows) to each flow line's ``heard``; return the latency
    auto adds per node kind."""
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
            fast, prompted = heard[FAST], heard[ACCURATE]
            guard = guarded(clip.snr.get(cname, promptguard.MAX_SNR_DB), prompted, heard.get(PLAIN),
                            node_hints(flow, node, matcher))
            runs = bool(accurate_reason(flow, node, fast[0], score))
            heard["fast"], heard["accurate"], heard["accurate-guarded"] = fast[:3], prompted[:3], guard
            heard["auto"] = (prompted[0], fast[1] + prompted[1], fast[2] + prompted[2]) if runs else fast[:3]
            heard["auto-guarded"] = (guard[0], fast[1] + guard[1], fast[2] + guard[2]) if runs else fast[:3]
            added[(cname, node_kind(node))].append((prompted[1], prompted[2]) if runs else (0.0, 0.0))
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


def offscript_hearings(clips: Sequence[Any], flows: dict[str, Flow], matchers: dict[str, Any], recs: dict[str, Any],
                       conditions: dict[str, Any], through: Any) -> list[dict[str, Any]]:
    """Every human clip (none says anything a flow knows) heard at every listening node of every flow, as the engine
    would hear it there: the fast pass and Whisper with that node's hints, Whisper without a prompt once per clip,
    and the turn's estimated SNR."""
    out: list[dict[str, Any]] = []
    human = [c for c in clips if c.source.startswith("human")]
    for cname, condition in conditions.items():
        for clip in human:
            audio = through(clip, condition, clips)
            snr = round(promptguard.turn_snr_db(audio, 8000), 1)
            plain = recs[PLAIN](audio, [], "en")[0]
            for fname, flow in flows.items():
                for node in (n for n in flow.nodes.values() if n.routes):
                    hints = node_hints(flow, node, matchers[fname])
                    out.append({"condition": cname, "clip": clip.id, "flow": fname, "node": node.id, "snr": snr,
                                "fast": recs[FAST](audio, hints, flow.language)[0], "plain": plain,
                                "prompted": recs[ACCURATE](audio, hints, flow.language)[0]})
        print(f"  off-script hearings: {cname} done", file=sys.stderr, flush=True)
    return out


def offscript_two_pass(hearings: Sequence[dict[str, Any]], flows: dict[str, Flow], matchers: dict[str, Any],
                       intent_of: Any) -> dict[str, Any]:
    """False intents per pass in the off-script hearings (see :func:`offscript_hearings`)."""
    out: dict[str, Any] = {}
    for h in hearings:
        flow, matcher = flows[h["flow"]], matchers[h["flow"]]
        node = flow.nodes[h["node"]]

        def score(text: str, allowed: list[str], matcher: Any = matcher) -> list[tuple[str, float]]:
            return [(str(m.intent), float(m.score)) for m in matcher.match(text, allowed)]

        guard = guarded(h["snr"], (h["prompted"], 0.0, 0.0), (h["plain"], 0.0, 0.0), node_hints(flow, node, matcher))[0]
        runs = bool(accurate_reason(flow, node, h["fast"], score))
        texts = {"fast": h["fast"], "accurate": h["prompted"], "auto": h["prompted"] if runs else h["fast"],
                 "accurate-guarded": guard, "auto-guarded": guard if runs else h["fast"]}
        for name, text in texts.items():
            entry = out.setdefault(f"{h['condition']}|{name}", {"false": 0, "n": 0, "examples": []})
            entry["n"] += 1
            got = intent_of(flow, matcher, node.id, text)
            if got != "none":
                entry["false"] += 1
                if len(entry["examples"]) < 5:
                    entry["examples"].append(f"{h['clip']} at {h['flow']}:{node.id}: {text!r} -> {got}")
    return out


def pass_table(summary: dict[str, Any]) -> list[str]:
    """The two-pass rows per source and condition in one Markdown table: WER and intent accuracy, held-out (all)."""
    rows = ["", "## The two-pass policy per source and condition: WER and intent accuracy, held-out (all lines)", "",
            "| source | condition | pass | WER held-out | WER all | intents held-out | intents all |",
            "|---|---|---|---|---|---|---|"]
    wers, intents = summary["wer"], summary["intent_accuracy"]
    for source in wers:
        for cname in wers[source]:
            for name in (*PASSES, *GUARDED):
                w, a = wers[source][cname].get(name), intents.get(f"{source}|{cname}|{name}")
                if w is None:
                    continue
                cells = [_pct(w.get(p, {}).get("wer"), w.get(p, {}).get("n")) for p in ("held-out", "all")]
                cells += [_pct(a["held_out"]["accuracy"], a["held_out"]["n"]) if a and "held_out" in a else "-",
                          _pct(a["accuracy"], a["n"]) if a else "-"]
                label = "piper (the bot's own voice)" if source == "piper" else source
                rows.append(f"| {label} | {cname} | {name} | {' | '.join(cells)} |")
    return rows


def _pct(value: float | None, n: int | None) -> str:
    return "-" if value is None else f"{value:.1%} ({n})"
