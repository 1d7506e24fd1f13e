"""Latency of the engine on (simulated) FreeSWITCH, per turn and across calls, at the caller's ear and in the engine.

Run: .venv/bin/python bench/latency.py [--calls N] [--smoke] [--json PATH] [--png PATH]

The whole engine runs as in production (``Engine.load``/``start``: outbound ESL
server, inbound ESL, unicast UDP, each call's session thread) with the real
models (webrtc VAD, PocketSphinx with hints, the default Piper voice) against
the FreeSWITCH test double, which runs in its own process (bench/fsbench.py),
one call at a time, PCMU 8 kHz, 20 ms: N calls (default 20; ``--smoke`` 2) of
``examples/flows/lead_screening_en.yaml``. The caller is scripted and reactive
(:class:`fsbench.ScriptedCaller`), four lines per call:

1. once the greeting ended (bot heard, then ``--quiet-ms`` of silence at the
   ear) a *real human recording* (Debian pocketsphinx-testdata
   ``goforward.raw``, "go forward ten meters"): off-script at the greeting, so
   the bot answers with its no-match reprompt;
2. once the reprompt ended, "yes speaking" (synthesized): the bot goes on to
   the disclosure (protected for its first 4 s);
3. ``--barge-after-s`` (5) s into the disclosure, the next moment the bot is
   audibly talking, "I am not interested" over it: the bot stops and, since
   the flow confirms an unsure hearing of an intent that ends the call, asks
   "Sorry, did you say you're not interested?";
4. once that question ended, "yes" (synthesized): the bot says goodbye and
   hangs up (path ... > disclosure > goodbye_not_interested). On a sure
   hearing of line 3 the call ends there and line 4 is never said.

Figures (p50, p95, p99, max; ms):

- response at the ear: caller's true end of speech → first audible bot sample
  the caller hears (per line kind, and all together); in the engine: speech end
  as the VAD dates it → first bot frame of the answer (timeline ``turns()``);
- barge-in reaction at the ear: caller's true speech onset → last audible bot
  sample before the goodbye; in the engine: onset (VAD) → the bot's pause;
- ASR finalisation: speech end (VAD) → final transcript (timeline), and the
  compute time of the recogniser's ``finish()`` within it;
- TTS time to first audio: ``play.tts_first_ms`` of prompts with variables
  (synthesized live, sentence by sentence) and of ready-made (cached) prompts;
- handoff: decision → first agent audio at the caller, from
  :func:`measure_handoffs` (bench/handoff_bench.py's talk-mode scenario).

Output: a table on stdout, ``bench/results/latency.json``, and
``bench/results/latency.png`` (one CDF per figure, with the 200 ms human
turn-gap and the 800 ms reference lines). Absolute numbers depend on the
machine's load: the load average is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fsbench
import whatif
from fsbench import RESULTS, ROOT, DoubleHost, Step, engine_config, fmt, human_line, summary, synth_line

EXPECTED_END = ["disclosure", "goodbye_not_interested"]
HUMAN_TURN_GAP_MS = 200  # Stivers et al., PNAS 2009
REFERENCE_MS = 800  # cascaded voice bots answer in ~500-800 ms
FIGURES = {  # key in the summary → (panel title, curve label)
    "response_ear_ms": ("Response latency", "at the ear"),
    "response_engine_ms": ("Response latency", "in the engine"),
    "barge_in_ear_ms": ("Barge-in reaction", "at the ear"),
    "barge_in_engine_ms": ("Barge-in reaction", "in the engine"),
    "asr_final_ms": ("ASR finalisation", "speech end → final"),
    "asr_finish_compute_ms": ("ASR finalisation", "finish() compute"),
    "tts_first_dynamic_ms": ("TTS time to first audio", "prompts with variables"),
    "tts_first_cached_ms": ("TTS time to first audio", "ready-made prompts"),
    "handoff_ms": ("Handoff", "decision → first agent audio"),
}


# ---------------------------------------------------------------- the handoff hook


def measure_handoffs(fs: DoubleHost, engine: Any, lines: dict[str, fsbench.Line], calls: int) -> list[dict[str, Any]]:
    """Issue 7's figure: decision → first agent audio at the caller's ear, for a listening agent (talk mode).

    Measured by bench/handoff_bench.py's ``talk`` scenario, which needs agent
    endpoints and the handoff flow: it runs its own double and engine in this
    process (``fs``, ``engine`` and ``lines`` are not used). The bridge and
    no-agent scenarios are in bench/handoff_bench.py's own results.
    """
    import handoff_bench

    args = argparse.Namespace(calls=calls, ring_s=0.3, wait_s=1.0)
    with tempfile.TemporaryDirectory() as tmp:
        rows = handoff_bench.scenario_rows("talk", args, Path(tmp))
    return [{"handoff_ms": row["decision_to_agent_ms"], "gap_ms": row["gap_ms"]} for row in rows]


# ---------------------------------------------------------------- one call


def run_call(fs: DoubleHost, engine: Any, sessions: list[Any], steps: list[Step], quiet_s: float,
             timeout_s: float = 90.0) -> dict[str, Any]:
    """One call through the engine; its figures at the ear and in the engine."""
    before = len(sessions)
    uuid = fs.place(engine.server.port, steps, quiet_s)
    fsbench.wait_until(lambda: len(sessions) > before, 15, "the call's session")
    session = sessions[before]
    try:
        fsbench.wait_until(lambda: fs.hung_up([uuid])[uuid], timeout_s, "the bot hangs up", poll_s=0.2)
    except TimeoutError:
        fs.hangup([uuid])
    fsbench.wait_until(lambda: engine.metrics.active_calls == 0, 15, "the call is released")
    record = engine.store.get(uuid)
    ear = fs.report([uuid])[uuid]
    path = list(record.path) if record else list(session.machine.outcome.path)
    row: dict[str, Any] = {"call": uuid, "path": path, "disposition": record.disposition if record else "",
                           "lines": ear["lines"], "gaps": ear["gaps"],
                           "engine": fsbench.engine_figures([session.timeline]),
                           "engine_turns": [{k: t[k] for k in ("reason", "response_ms", "asr_final_ms")}
                                            for t in session.timeline.turns()], "errors": []}
    if ear["error"]:
        row["errors"].append(f"caller: {ear['error']}")
    if path[-2:] != EXPECTED_END:
        row["errors"].append(f"path {' > '.join(path)} (expected ... > {' > '.join(EXPECTED_END)})")
    if len(ear["lines"]) not in (len(steps) - 1, len(steps)):  # the last line answers a confirmation, if asked
        row["errors"].append(f"the caller said {len(ear['lines'])} line(s), not {len(steps) - 1} or {len(steps)}")
    return row


# ---------------------------------------------------------------- summary


def series(rows: list[dict[str, Any]], handoffs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Every figure's values over the calls that went as scripted."""
    good = [r for r in rows if not r["errors"]]
    out: dict[str, list[float]] = {
        "response_ear_ms": [ln["response_ms"] for r in good for ln in r["lines"] if ln["response_ms"] is not None],
        "barge_in_ear_ms": [ln["barge_in_ms"] for r in good for ln in r["lines"] if ln["barge_in_ms"] is not None],
    }
    for key in ("response_engine_ms", "barge_in_engine_ms", "asr_final_ms", "asr_finish_compute_ms", "tts_first_dynamic_ms",
                "tts_first_cached_ms"):
        out[key] = [v for r in good for v in r["engine"][key]]
    out["handoff_ms"] = [h["handoff_ms"] for h in handoffs if h.get("handoff_ms") is not None]
    for label in dict.fromkeys(f"{ln['kind']}: {ln['text']}" for r in good for ln in r["lines"]):
        out[f"response_ear_ms[{label}]"] = [ln["response_ms"] for r in good for ln in r["lines"]
                                            if f"{ln['kind']}: {ln['text']}" == label and ln["response_ms"] is not None]
    return out


def print_report(rows: list[dict[str, Any]], figures: dict[str, dict[str, Any]], meta: dict[str, Any]) -> None:
    """Per call, then the figures' table."""
    print(f"\nlatency: {meta['calls']} calls of {meta['flow']} through the FreeSWITCH double (own process), "
          f"PCMU 8 kHz, {meta['asr']}, {meta['vad']} VAD, Piper; one call at a time")
    print(f"machine: {meta['machine']['cpus']} CPUs ({meta['machine']['cpu_model']}), load average before/after "
          f"{meta['machine']['loadavg']} / {meta['loadavg_after']}; commit {meta['machine']['commit']}; wall {meta['wall_s']} s")
    failed = [r for r in rows if r["errors"]]
    print(f"calls as scripted: {len(rows) - len(failed)}/{len(rows)}"
          + "".join(f"\n  {r['call'][:8]}: {'; '.join(r['errors'])}" for r in failed))
    print(f"\n{'figure (ms)':<58} {'n':>4} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}")
    for name, s in figures.items():
        if s["n"] or not name.startswith("handoff"):
            print(f"{name:<58} {s['n']:>4} {fmt(s['p50']):>7} {fmt(s['p95']):>7} {fmt(s['p99']):>7} {fmt(s['max']):>7}")
    if not figures["handoff_ms"]["n"]:
        print(f"{'handoff_ms':<58} {'-':>4}  (measure_handoffs() returned nothing)")


def draw_cdfs(values: dict[str, list[float]], path: Path, title: str) -> None:
    """One panel (CDF) per figure that has values, with the 200 ms and 800 ms reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels: dict[str, list[tuple[str, list[float]]]] = {}
    for key, (panel, label) in FIGURES.items():
        if values.get(key):
            panels.setdefault(panel, []).append((label, values[key]))
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (panel, curves) in zip(axes.flat, panels.items(), strict=False):
        for label, data in curves:
            xs = np.sort(np.asarray(data, dtype=float))
            ax.step(xs, np.arange(1, len(xs) + 1) / len(xs), where="post", label=f"{label} (n={len(xs)})")
        ax.axvline(HUMAN_TURN_GAP_MS, color="green", linestyle="--", linewidth=1, label="200 ms human turn gap")
        ax.axvline(REFERENCE_MS, color="red", linestyle="--", linewidth=1, label="800 ms reference")
        ax.set_title(panel)
        ax.set_xlabel("ms")
        ax.set_ylabel("fraction of turns")
        ax.set_xlim(left=0)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- main


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Start the double and the engine, run the calls and the handoff hook."""
    from voicebot.engine import Engine

    tmp = Path(tempfile.mkdtemp(prefix="latency-"))
    rows: list[dict[str, Any]] = []
    try:
        with DoubleHost() as fs:
            fsbench.register_pool_backend(args.asr)
            config = engine_config(fs.inbound_port, tmp, asr_backend=args.asr)
            engine = Engine(config)
            sessions: list[Any] = []
            engine.on_session = sessions.append
            engine.load()
            whatif.apply(args.what_if, engine)
            engine.start()
            try:
                if not engine.inbound.wait_up(10):
                    raise SystemExit("the engine did not connect to the double")
                cache = next(iter(engine.pipelines.values())).cache
                lines = {"human": human_line(), "yes": synth_line(cache, "yes speaking"),
                         "barge": synth_line(cache, "I am not interested"), "confirm": synth_line(cache, "yes")}
                steps = [Step("answer", lines["human"]), Step("answer", lines["yes"]),
                         Step("barge", lines["barge"], args.barge_after_s), Step("answer", lines["confirm"])]
                for i in range(args.calls):
                    row = run_call(fs, engine, sessions, steps, args.quiet_ms / 1000)
                    rows.append(row)
                    print(f"call {i + 1}/{args.calls}: {' > '.join(row['path'])}; ear response "
                          f"{[ln['response_ms'] for ln in row['lines']]} "
                          f"barge {[ln['barge_in_ms'] for ln in row['lines'] if ln['kind'] == 'barge']}; "
                          f"engine response {row['engine']['response_engine_ms']} barge {row['engine']['barge_in_engine_ms']}"
                          + (f"; {'; '.join(row['errors'])}" if row["errors"] else ""), flush=True)
                handoffs = measure_handoffs(fs, engine, lines, args.calls)
            finally:
                engine.shutdown()
        if fs.fatal_errors:
            raise SystemExit(f"the double saw fatal errors: {fs.fatal_errors}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the bench calls' records and recordings
    return rows, handoffs, {"asr": config.asr_backend, "vad": config.vad}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=None, help="calls, one at a time (default 20; --smoke 2)")
    parser.add_argument("--smoke", action="store_true", help="2 calls: the CI smoke run")
    parser.add_argument("--quiet-ms", type=int, default=700, help="silence at the ear that ends a prompt (ms)")
    parser.add_argument("--barge-after-s", type=float, default=5.0, help="into the disclosure before barging in (s)")
    parser.add_argument("--asr", default=fsbench.SERVE_ASR,
                        help="ASR backend: pocketsphinx-pool (worker processes; voicebot serve's default) or pocketsphinx "
                             "(in the engine's process)")
    parser.add_argument("--what-if", action="append", default=[], choices=sorted(whatif.WHAT_IFS),
                        help="measure a proposed change to code outside bench/ (bench/whatif.py); repeatable")
    parser.add_argument("--json", type=Path, default=RESULTS / "latency.json", help="results file")
    parser.add_argument("--png", type=Path, default=RESULTS / "latency.png", help="CDF picture")
    args = parser.parse_args(argv)
    args.calls = args.calls or (2 if args.smoke else 20)
    from voicebot.logs import configure

    configure(level="WARNING")  # the engine logs every call at info: keep the table readable
    meta: dict[str, Any] = {"bench": "latency", "calls": args.calls, "smoke": args.smoke, "flow": fsbench.FLOW.stem,
                            "codec": "PCMU", "rate": fsbench.RATE, "quiet_ms": args.quiet_ms,
                            "barge_after_s": args.barge_after_s, "machine": fsbench.machine(),
                            "available_cores": fsbench.available_cores(),
                            "what_if": {name: whatif.WHAT_IFS[name][0] for name in args.what_if}}
    started = time.monotonic()
    rows, handoffs, engine_meta = run(args)
    values = series(rows, handoffs)
    figures = {name: summary(v) for name, v in values.items()}
    meta.update(engine_meta, wall_s=round(time.monotonic() - started, 1), loadavg_after=fsbench.machine()["loadavg"],
                calls_ok=sum(not r["errors"] for r in rows))
    print_report(rows, figures, meta)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "figures": figures, "values": values, "calls": rows,
                                     "handoffs": handoffs}, indent=1) + "\n", encoding="utf-8")
    draw_cdfs(values, args.png, f"voicebot latency, {meta['calls']} calls, commit {meta['machine']['commit']}, "
                                f"{meta['machine']['date']}, {meta['machine']['cpus']} CPUs")
    for path in (args.json, args.png):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
