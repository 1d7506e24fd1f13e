"""The "Latest results" section of bench/README.md, generated from bench/results/*.json (nothing typed by hand).

Run: .venv/bin/python bench/report.py [--write] [--results DIR] [--readme PATH]

Reads what the benchmarks wrote: ``latency.json`` (bench/latency.py),
``capacity.json`` (bench/capacity.py), ``capacity-*.json`` (labelled capacity
runs, ``--label``: the steps that raised capacity, in name order) and
``hearing.json`` (bench/hearing_bench.py). Prints the section in Markdown;
``--write`` replaces the text between ``<!-- results:begin -->`` and
``<!-- results:end -->`` in the README. Each table names the date, commit,
machine and load average its file recorded, and the published anchors are
compared with the figures read here.

``bench/results/`` is not committed, so a fresh checkout has only what was run
there: a table whose results file is absent is kept from the README as it
was (with its own date and commit), labelled runs are added to the capacity
series (a run replaces the row of the same label), and an anchor line whose
figure is absent is kept too. Nothing measured earlier is lost by a partial run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "bench" / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
ANCHOR_RESPONSE_MS = (500, 800)  # cascaded voice bots (Pipecat's figure)
ANCHOR_VOSK_STREAMS_PER_CORE = (2, 4)  # Vosk deployments
ANCHOR_HANDOFF_MS = 800  # commercial outbound systems advertise ~0.8 s


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _v(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text + unit


def _provenance(meta: dict[str, Any]) -> str:
    m = meta.get("machine", {})
    extra = f"; what-if: {', '.join(meta['what_if'])}" if meta.get("what_if") else ""
    asr = f"; ASR {meta['asr']}" if meta.get("asr") else ""
    asr += f"; {meta['available_cores']} of its cores free for the run" if meta.get("available_cores") is not None else ""
    return (f"*{m.get('date', '?')}, commit `{m.get('commit', '?')}`, {m.get('cpus', '?')} CPUs ({m.get('cpu_model', '?')}), "
            f"load average {m.get('loadavg', '?')} → {meta.get('loadavg_after', '?')}{asr}{extra}*")


def latency_section(data: dict[str, Any]) -> list[str]:
    """The latency table, from latency.json."""
    meta, figures = data["meta"], data["figures"]
    out = [f"### Latency (`bench/latency.py`, {meta['calls']} calls, {meta.get('calls_ok', '?')} as scripted)", "",
           _provenance(meta), "", "| figure (ms) | n | p50 | p95 | p99 | max |", "|---|---:|---:|---:|---:|---:|"]
    for name, s in figures.items():
        if s["n"] or name == "handoff_ms":
            out.append(f"| {name} | {s['n']} | {_v(s['p50'])} | {_v(s['p95'])} | {_v(s['p99'])} | {_v(s['max'])} |")
    return [*out, ""]


def capacity_section(data: dict[str, Any]) -> list[str]:
    """The capacity ramp, from capacity.json."""
    meta, result = data["meta"], data["result"]
    out = [f"### Capacity (`bench/capacity.py`, calls of {meta['duration_s']:g} s placed over {meta['stagger_s']:g} s)", "",
           _provenance(meta), "",
           f"Largest sustained step: **{result['max_sustained_calls']} concurrent calls**"
           + (f" (at {result['limit_step']}: {result['why']})" if result["limit_reached"]
              else " (the ramp did not reach the limit)")
           + f"; memory per call {_v(result['rss_per_call_mb'], ' MB')}.", "",
           f"CPU per call-second at {result.get('projection_at_calls')} calls: {_v(result.get('cpu_ms_per_call_s'))} ms "
           f"(engine + ASR workers; {_v(result.get('cpu_ms_per_call_s_with_double'))} ms with the double): at 80% of "
           f"{meta['machine'].get('cpus')} cores that is ~{_v(result.get('projected_calls'))} calls "
           f"(~{_v(result.get('projected_calls_with_double'))} with the double), an estimate from CPU cost.", "",
           "| calls | response ear p50/p95 | engine p95 | late frames | hub lag p99 | engine cores | ASR workers | double "
           "| CPU ms/s per call | RSS peak MB | MB/call | sustained |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in data["steps"]:
        out.append(f"| {s['calls']} | {_v(s['response_ear_ms']['p50'])}/{_v(s['response_ear_ms']['p95'])} "
                   f"| {_v(s['response_engine_ms']['p95'])} | {s['gaps_ms']['late_pct']}% | {_v(s['hub_lag_ms']['p99'])} "
                   f"| {_v(s['cpu_engine_cores'])} | {_v(s['cpu_asr_workers_cores'])} | {_v(s['cpu_double_cores'])} "
                   f"| {_v(s['cpu_ms_per_call_s'].get('engine_total'))} | {s['rss_peak_mb']} | {s['rss_per_call_mb']} "
                   f"| {'yes' if s['sustained'] else 'no: ' + s['why_not']} |")
    limit = data["steps"][-1]
    if limit.get("profile"):
        prof = limit["profile"]
        out += ["", f"Where the time goes at {limit['calls']} calls (sampling profile, {prof['busy_samples']} busy "
                    f"thread-samples; self % / inclusive %; engine CPU by thread: "
                    + ", ".join(f"{k} {v} s" for k, v in sorted(limit["cpu_by_thread_s"].items(), key=lambda kv: -kv[1]))
                    + "):", ""]
        out += [f"- {row['self_pct']}% / {row['inclusive_pct']}% `{row['function']}`" for row in prof["top"]]
    return [*out, ""]


def series_section(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Labelled capacity runs (capacity-*.json): what each change did."""
    out = ["### What raised capacity (labelled `bench/capacity.py --label` runs, in order)", "",
           "| run | cores free | ASR | what-if | largest sustained | p95 ear at it | engine+ASR CPU ms per call-second at it "
           "| MB/call | stopped at |",
           "|---|---:|---|---|---:|---:|---:|---:|---|"]
    for name, data in runs:
        meta, result, steps = data["meta"], data["result"], data["steps"]
        best = next((s for s in reversed(steps) if s["sustained"]), None)
        cpu = (best or steps[0])["cpu_ms_per_call_s"].get("engine_total")
        out.append(f"| {meta.get('label') or name} | {_v(meta.get('available_cores'))} | {meta.get('asr', '?')} "
                   f"| {', '.join(meta.get('what_if', {})) or '–'} "
                   f"| {result['max_sustained_calls']} | {_v(best['response_ear_ms']['p95'], ' ms') if best else '–'} "
                   f"| {_v(cpu)} | {_v(result['rss_per_call_mb'])} "
                   f"| {str(result['limit_step']) + ': ' + result['why'] if result['limit_reached'] else 'not reached'} |")
    dates = sorted({d['meta']['machine'].get('date', '?') for _, d in runs})
    return [*out, "", f"*Runs of {', '.join(dates)}; the machine is shared: compare runs made together.*", ""]


def handoff_section(data: dict[str, Any]) -> list[str]:
    """The handoff scenarios, from handoff.json (bench/handoff_bench.py)."""
    out = [f"### Handoff (`bench/handoff_bench.py`, {data.get('calls', '?')} handoffs per scenario)", "",
           f"*commit `{data.get('commit', '?')}`, load average {_v(data.get('load_avg'))}*", "",
           "| scenario | figure (ms) | n | p50 | p95 | max |", "|---|---|---:|---:|---:|---:|"]
    for scenario in ("talk", "bridge", "no_agent"):
        for key, s in data.get(scenario, {}).items():
            if key != "raw" and isinstance(s, dict) and s.get("n"):
                out.append(f"| {scenario} | {key} | {s['n']} | {_v(s.get('p50'))} | {_v(s.get('p95'))} | {_v(s.get('max'))} |")
    timings = data.get("double_timings_ms") or {}
    if timings:
        out += ["", "The switch's delays in these figures are configured in the test double (`fsdouble/config.py` "
                "`Timing`), not measured: " + "; ".join(f"{t['what']} {_v(t['ms'])} ms" for t in timings.values()) + "."]
    else:
        out += ["", "The switch's delays in these figures are the test double's configured timings (`fsdouble/config.py` "
                "`Timing`), not measurements of a real FreeSWITCH."]
    return [*out, ""]


def _handoff_p95(latency: dict[str, Any] | None, handoff: dict[str, Any] | None) -> tuple[Any, str]:
    """Handoff p95 (ms) and where it comes from: latency.json's hook, else handoff.json's talk scenario."""
    hand = (latency or {}).get("figures", {}).get("handoff_ms", {})
    if hand.get("n"):
        return hand["p95"], "latency.py"
    talk = (handoff or {}).get("talk", {}).get("decision_to_agent_ms", {})
    return (talk["p95"], "handoff_bench.py, talk mode") if talk.get("n") else (None, "")


def hearing_section(data: dict[str, Any]) -> list[str]:
    """The hearing summary's top-level figures, from hearing.json."""
    out = ["### Hearing (`bench/hearing_bench.py`)", ""]
    for key, value in data.get("summary", {}).items():
        if isinstance(value, dict):
            flat = ", ".join(f"{k} {_v(v)}" for k, v in value.items() if not isinstance(v, (dict, list)))
            out.append(f"- {key}: {flat}")
    return [*out, ""]


def anchors(latency: dict[str, Any] | None, capacity: dict[str, Any] | None, handoff: dict[str, Any] | None) -> list[str]:
    """The published anchors next to the figures read from the results."""
    out = ["### Against the published anchors", ""]
    if latency:
        ear = latency["figures"]["response_ear_ms"]
        out.append(f"- Response at the caller's ear p50 {_v(ear['p50'])} ms / p95 {_v(ear['p95'])} ms; cascaded bots answer "
                   f"in ~{ANCHOR_RESPONSE_MS[0]}–{ANCHOR_RESPONSE_MS[1]} ms (the 200 ms human turn gap is the floor).")
    p95, source = _handoff_p95(latency, handoff)
    out.append(f"- Handoff p95 {_v(p95, ' ms') + f' ({source})' if p95 is not None else 'not measured yet'}; commercial "
               f"outbound systems advertise ~{ANCHOR_HANDOFF_MS} ms.")
    if capacity:
        cpus = capacity["meta"]["machine"].get("cpus") or 1
        calls = capacity["result"]["max_sustained_calls"]
        out.append(f"- {calls} concurrent calls on {cpus} cores = {calls / cpus:g} calls per core, each with live streaming "
                   f"ASR; Vosk deployments report ~{ANCHOR_VOSK_STREAMS_PER_CORE[0]}–{ANCHOR_VOSK_STREAMS_PER_CORE[1]} "
                   f"live streams per core (a caller speaks a fraction of the call: our ASR decodes only then).")
    return [*out, ""]


SUBSECTIONS = ("Latency", "Capacity", "What raised capacity", "Handoff", "Against the published anchors", "Hearing")


def previous_subsections(generated: str) -> dict[str, list[str]]:
    """The README's current generated text split by ``### `` heading: {subsection name: its lines}."""
    parts: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in generated.splitlines():
        if line.startswith("### "):
            name = next((n for n in SUBSECTIONS if line[4:].startswith(n)), line[4:])
            current = parts.setdefault(name, [])
        if current is not None:
            current.append(line)
    kept = {}
    for name, lines in parts.items():
        while lines and not lines[-1].strip():  # trailing blank lines: each subsection ends with exactly one
            lines.pop()
        kept[name] = [*lines, ""]
    return kept


def row_label(line: str) -> str:
    """A table row's first cell."""
    return line.split("|")[1].strip()


def merged_series(new: list[str], old: list[str] | None) -> list[str]:
    """The capacity series: the old table's rows, each replaced by a new run of the same label, then new labels."""
    if not old:
        return new
    new_rows = {row_label(ln): ln for ln in new if ln.startswith("| ") and not ln.startswith("| run ")}
    old_rows = [ln for ln in old if ln.startswith("| ") and not ln.startswith("| run ")]
    rows = [new_rows.pop(row_label(ln), ln) for ln in old_rows] + list(new_rows.values())
    header = new[:next(i for i, ln in enumerate(new) if ln.startswith("|---")) + 1]  # title, blank, columns, rule
    old_dates = next((ln for ln in old if ln.startswith("*Runs of ")), "").removeprefix("*Runs of ").split(";")[0]
    new_dates = next((ln for ln in new if ln.startswith("*Runs of ")), "").removeprefix("*Runs of ").split(";")[0]
    dates = ", ".join(dict.fromkeys(d for part in (old_dates, new_dates) for d in part.split(", ") if d))
    return [*header, *rows, "",
            f"*Runs of {dates}; the machine is shared: compare runs made together.*", ""]


def merged_anchors(new: list[str], old: list[str] | None) -> list[str]:
    """Anchor lines for the figures present; an absent figure's line is kept from the previous text."""
    if not old:
        return new
    keys = ("Response at the caller's ear", "Handoff p95", "concurrent calls on")
    lines = list(new[:2])
    for key in keys:
        line = next((ln for ln in new if key in ln and "not measured yet" not in ln), None) \
            or next((ln for ln in old if key in ln), None)
        if line:
            lines.append(line)
    return [*lines, ""]


def _kept(name: str, previous: dict[str, list[str]], missing: str) -> list[str]:
    return previous.get(name) or [f"*No {missing} yet: run bench/{missing.split('.')[0]}.py.*", ""]


def section(results: Path, previous: dict[str, list[str]] | None = None) -> str:
    """The whole generated section; ``previous`` (see :func:`previous_subsections`) fills in what is absent here."""
    previous = previous or {}
    latency, capacity, hearing, handoff = (_load(results / f"{n}.json") for n in ("latency", "capacity", "hearing", "handoff"))
    runs = [(p.stem, d) for p in sorted(results.glob("capacity-*.json")) if (d := _load(p)) is not None]
    lines = ["_Generated by `bench/report.py` from `bench/results/*.json`; do not edit by hand._", ""]
    lines += latency_section(latency) if latency else _kept("Latency", previous, "latency.json")
    lines += capacity_section(capacity) if capacity else _kept("Capacity", previous, "capacity.json")
    old_series = previous.get("What raised capacity")
    lines += merged_series(series_section(runs), old_series) if runs else (old_series or [])
    lines += handoff_section(handoff) if handoff else previous.get("Handoff", [])
    lines += merged_anchors(anchors(latency, capacity, handoff), previous.get("Against the published anchors"))
    lines += hearing_section(hearing) if hearing else previous.get("Hearing", [])
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the section in the README")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    readme = args.readme.read_text(encoding="utf-8") if args.readme.is_file() else ""
    if BEGIN not in readme or END not in readme:
        if args.write:
            print(f"{args.readme} has no {BEGIN} ... {END} markers", file=sys.stderr)
            return 1
        readme = f"{BEGIN}{END}"
    head, rest = readme.split(BEGIN, 1)
    text = section(args.results, previous_subsections(rest.split(END, 1)[0]))
    if not args.write:
        print(text, end="")
        return 0
    args.readme.write_text(f"{head}{BEGIN}\n{text}{END}{rest.split(END, 1)[1]}", encoding="utf-8")
    print(f"wrote the results section of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
