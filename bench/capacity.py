"""Capacity: how many concurrent calls one engine process carries before callers notice.

Run: .venv/bin/python bench/capacity.py [--steps 10,20,40,80] [--duration-s 20] [--smoke] [--json PATH]

One engine (``Engine.load``/``start``, real models: webrtc VAD, PocketSphinx
with hints, Piper) against the FreeSWITCH test double running in its own
process (bench/fsbench.py), PCMU 8 kHz, 20 ms. For each step N: N calls of
``examples/flows/lead_screening_en.yaml`` are placed over ``--stagger-s`` (3) s;
each runs ``--duration-s`` (20) s and is then hung up by the caller. Every caller
talks the whole time: off-script human speech at the greeting (Debian
pocketsphinx-testdata ``goforward.raw``), then, each time the bot's prompt has
ended (``--quiet-ms`` of silence at the ear), "sorry, what did you say?" (the bot
repeats) and "are you a robot?" (the bot explains and returns), in a loop, so
VAD, ASR, the dialog and live TTS (the greeting has variables) run all along.
Each caller answers 0.5-1.1 s after a prompt ended (random, seeded per call),
so the calls drift apart as real ones do instead of speaking in lockstep.

Per step:

- response latency: at the ear (caller's true end of speech → first audible bot
  sample) and in the engine (timeline: VAD speech end → first bot frame);
  p50/p95/p99;
- outgoing frames: inter-arrival gaps of the bot's packets at the double
  (``late``: gaps over ptime + 40 ms), and in the engine, how late the unicast
  sender sent each frame against its media clock
  (:data:`voicebot.esl.sendclock.SEND_LATENESS`; skipped slots);
- the gevent hub's lag (a 10 ms sleep's oversleep) and engine errors;
- CPU: the engine process (cores used while all N calls were up, from
  ``os.times``) by thread kind (/proc/self/task), and the double's process apart;
- memory: the engine's RSS (/proc/self/status, plus its ASR worker processes)
  before the step and its peak, per call = (peak − before) / N;
- a sampling profile (every 10 ms, every thread's stack; :class:`profiling.StackSampler`)
  kept for the step where the limit is found (and the last step).

A step is *sustained* when p95 response at the ear ≤ ``--limit-ms`` (800), the
bot's frames are late by more than 40 ms in at most 1% of gaps (p99 gap ≤
ptime + 40 ms), and no call failed. The ramp stops at the first step that is
not. Results: ``bench/results/capacity.json``. The machine is shared and noisy:
compare runs made in the same conditions, and read the load average printed
with them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fsbench
import profiling
import whatif
from fsbench import RESULTS, ROOT, DoubleHost, Step, engine_config, fmt, human_line, summary, synth_line

QUIET_S = 0.5  # the caller answers 0.5-1.1 s after the bot's prompt ended (longer than a pause inside a prompt)
JITTER_S = 0.6


class HubProbe:
    """Oversleep of a 10 ms gevent sleep, sampled all along (ms): how late the hub runs its timers."""

    def __init__(self) -> None:
        import gevent

        self.lags: list[float] = []
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        import gevent

        while True:
            t = time.monotonic()
            gevent.sleep(0.01)
            self.lags.append(1000 * (time.monotonic() - t - 0.01))

    def stop(self) -> dict[str, Any]:
        """Stop; the lags' summary."""
        self._greenlet.kill()
        return summary(self.lags)


def place_calls(fs: DoubleHost, engine: Any, n: int, steps: list[Step], stagger_s: float) -> dict[str, float]:
    """N calls, evenly over ``stagger_s``; uuid → when placed (monotonic s)."""
    placed: dict[str, float] = {}
    start = time.monotonic()
    for i in range(n):
        fsbench.wait_until(lambda i=i: time.monotonic() >= start + i * stagger_s / max(1, n), 60, "the call's slot", 0.005)
        placed[fs.place(engine.server.port, steps, QUIET_S, loop_from=1, jitter_s=JITTER_S, seed=i)] = time.monotonic()
    return placed


def hold_calls(fs: DoubleHost, placed: dict[str, float], duration_s: float, on_tick: Any) -> None:
    """Hang each call up ``duration_s`` after it was placed; ``on_tick()`` every ~0.25 s meanwhile."""
    live = dict(placed)
    while live:
        now = time.monotonic()
        due = [u for u, at in live.items() if now >= at + duration_s]
        if due:
            on_tick(first_hangup=True)
            fs.hangup(due)
            for u in due:
                del live[u]
        on_tick(first_hangup=False)
        fsbench._yield(0.25)


def memory_mb() -> float:
    """RSS (MB) of the engine: this process and its ASR worker processes (not the double: FreeSWITCH's stand-in)."""
    return fsbench.rss_mb() + profiling.children_rss_mb("asr-pool")


def snapshot(fs: DoubleHost) -> dict[str, Any]:
    """CPU so far: this process (total and by thread kind), its ASR worker processes, the double."""
    t = os.times()
    return {"t": time.monotonic(), "cpu": t.user + t.system, "double": fs.cpu_s(), "threads": profiling.thread_cpu(),
            "children": profiling.children_cpu()}


def run_step(fs: DoubleHost, engine: Any, sessions: list[Any], n: int, steps: list[Step], args: argparse.Namespace,
             profile: bool) -> dict[str, Any]:
    """One step of N concurrent calls: every figure, and the profile when asked."""
    from voicebot.esl import sendclock

    before_sessions, errors_before, rss_before = len(sessions), engine.metrics.errors, memory_mb()
    sendclock.SEND_LATENESS.reset()
    window: dict[str, Any] = {"rss_peak": rss_before}
    probe, sampler = HubProbe(), profiling.StackSampler() if profile else None
    if sampler:
        sampler.__enter__()
    started = time.monotonic()
    placed = place_calls(fs, engine, n, steps, args.stagger_s)
    window["first"] = snapshot(fs)  # every call is up from here...

    def tick(first_hangup: bool) -> None:
        window["rss_peak"] = max(window["rss_peak"], memory_mb())
        if first_hangup and "last" not in window:
            window["last"] = snapshot(fs)  # ...to the first hang-up
    hold_calls(fs, placed, args.duration_s, tick)
    fsbench.wait_until(lambda: engine.metrics.active_calls == 0, 60, "every call released")
    if sampler:
        sampler.__exit__()
    step: dict[str, Any] = {"calls": n, "wall_s": round(time.monotonic() - started, 1),
                            "engine_errors": engine.metrics.errors - errors_before}
    step.update(call_figures(fs.report(placed), fsbench.engine_figures(s.timeline for s in sessions[before_sessions:])))
    step.update(media_figures(step.pop("_gaps"), probe.stop()))
    step.update(resource_figures(window, rss_before, n))
    step["sustained"], step["why_not"] = verdict(step, args)
    if sampler is not None:
        step["profile"] = {"samples": sampler.samples, "busy_samples": sampler.busy, "interval_ms": 1000 * sampler.interval_s,
                           "sampler_cpu_s": round(sampler.own_cpu_s, 2), "top": sampler.top(15)}
    return step


def call_figures(ears: dict[str, Any], engine_values: dict[str, list[float]]) -> dict[str, Any]:
    """Turns, latency at the ear and in the engine, failed calls (and the bot's packet gaps, for media_figures)."""
    lines = [ln for ear in ears.values() for ln in ear["lines"]]
    failed = [u for u, ear in ears.items() if ear["error"] or ear["unanswered"] or not ear["heard_bot"]]
    return {"turns": len(lines), "failed_calls": len(failed),
            "response_ear_ms": summary([ln["response_ms"] for ln in lines if ln["response_ms"] is not None]),
            "unanswered_lines": sum(ln["response_ms"] is None for ln in lines),
            **{key: summary(engine_values[key]) for key in ("response_engine_ms", "asr_final_ms", "asr_finish_compute_ms",
                                                            "tts_first_dynamic_ms")},
            "_gaps": [ear["gaps"] for ear in ears.values()]}


def media_figures(gaps: list[dict[str, Any]], hub: dict[str, Any]) -> dict[str, Any]:
    """The bot's frames: late at the double, late leaving the engine; the hub's lag."""
    import numpy as np

    from voicebot.esl import sendclock

    packets, late = sum(g["n"] for g in gaps), sum(g["late"] for g in gaps)
    return {"gaps_ms": {"packets": packets, "late": late, "late_pct": round(100 * late / max(1, packets), 2),
                        "p99": round(float(np.percentile([g["p99"] for g in gaps if g["p99"] is not None] or [0], 95)), 1),
                        "max": max((g["max"] or 0 for g in gaps), default=0)},
            "send_lateness_ms": sendclock.SEND_LATENESS.summary(), "hub_lag_ms": hub}


def resource_figures(window: dict[str, Any], rss_before: float, n: int) -> dict[str, Any]:
    """CPU while every call was up (cores, by thread, per call-second) and memory."""
    first, last = window["first"], window.get("last")
    span = last["t"] - first["t"] if last else 0.0
    out: dict[str, Any] = {"full_window_s": round(span, 1), "rss_before_mb": round(rss_before, 1),
                           "rss_peak_mb": round(window["rss_peak"], 1),
                           "rss_per_call_mb": round((window["rss_peak"] - rss_before) / n, 2),
                           "cpu_engine_cores": None, "cpu_double_cores": None, "cpu_asr_workers_cores": None,
                           "cpu_by_thread_s": {}, "cpu_ms_per_call_s": {}}
    if not span:
        return out
    workers = [v for k, v in profiling.cpu_delta(first["children"], last["children"]).items() if k.startswith("asr-pool")]
    out.update(cpu_engine_cores=round((last["cpu"] - first["cpu"]) / span, 2),
               cpu_double_cores=round((last["double"] - first["double"]) / span, 2),
               cpu_asr_workers_cores=round(sum(workers) / span, 2) if workers else None,
               cpu_by_thread_s=profiling.cpu_delta(first["threads"], last["threads"]))
    per_call = {k: round(1000 * out[f"cpu_{k}_cores"] / n, 1) for k in ("engine", "asr_workers", "double")
                if out[f"cpu_{k}_cores"] is not None}
    per_call["engine_total"] = round(per_call["engine"] + per_call.get("asr_workers", 0.0), 1)
    out["cpu_ms_per_call_s"] = per_call
    return out


def verdict(step: dict[str, Any], args: argparse.Namespace) -> tuple[bool, str]:
    """Sustained? and if not, why."""
    why = []
    p95 = step["response_ear_ms"]["p95"]
    if p95 is None or p95 > args.limit_ms:
        why.append(f"p95 response at the ear {fmt(p95)} ms > {args.limit_ms} ms")
    if step["gaps_ms"]["late_pct"] > 1.0:
        why.append(f"{step['gaps_ms']['late_pct']}% of bot frames late by > {fsbench.LATE_MS:g} ms")
    if step["failed_calls"] or step["engine_errors"]:
        why.append(f"{step['failed_calls']} call(s) failed, {step['engine_errors']} engine error(s)")
    return not why, "; ".join(why)


def projection(steps: list[dict[str, Any]], cpus: int, utilisation: float = 0.8) -> dict[str, Any]:
    """CPU ms per call-second (engine + ASR workers, and with the double) at the busiest sustained step (else the
    first), and the calls ``cpus`` cores would carry at ``utilisation``: an estimate from CPU cost, not a measured
    limit; it reads through other load on a shared machine, which the measured limit does not."""
    step = next((s for s in reversed(steps) if s["sustained"]), steps[0])
    engine = step["cpu_ms_per_call_s"].get("engine_total")
    with_double = engine + step["cpu_ms_per_call_s"].get("double", 0.0) if engine else None
    return {"cpu_ms_per_call_s": engine, "cpu_ms_per_call_s_with_double": with_double, "projection_at_calls": step["calls"],
            "projected_calls": int(utilisation * cpus * 1000 / engine) if engine else None,
            "projected_calls_with_double": int(utilisation * cpus * 1000 / with_double) if with_double else None}


def print_step(s: dict[str, Any]) -> None:
    """One step's line of the table."""
    print(f"{s['calls']:>5} {fmt(s['response_ear_ms']['p50']):>7} {fmt(s['response_ear_ms']['p95']):>7} "
          f"{fmt(s['response_engine_ms']['p95']):>7} {s['turns']:>5} {s['gaps_ms']['late_pct']:>6} "
          f"{fmt(s['send_lateness_ms']['p99']):>7} {fmt(s['hub_lag_ms']['p99']):>7} {fmt(s['cpu_engine_cores']):>6} "
          f"{fmt(s['cpu_asr_workers_cores']):>6} {fmt(s['cpu_double_cores']):>6} {s['rss_peak_mb']:>7} "
          f"{s['rss_per_call_mb']:>6} {fmt(s['cpu_ms_per_call_s'].get('engine_total')):>6}  "
          f"{'yes' if s['sustained'] else 'NO: ' + s['why_not']}", flush=True)


HEADER = (f"{'calls':>5} {'ear p50':>7} {'ear p95':>7} {'eng p95':>7} {'turns':>5} {'late%':>6} {'send99':>7} "
          f"{'hub99':>7} {'cores':>6} {'asr wk':>6} {'double':>6} {'RSS MB':>7} {'MB/call':>6} {'ms/s':>6}  sustained")


def print_profile(step: dict[str, Any]) -> None:
    """The hottest functions and the CPU by thread kind at a step."""
    prof = step.get("profile")
    print(f"\nwhere the time goes at {step['calls']} calls: engine CPU by thread (s over {step['full_window_s']} s with every "
          f"call up): " + ", ".join(f"{k} {v}" for k, v in sorted(step["cpu_by_thread_s"].items(), key=lambda kv: -kv[1])))
    if not prof:
        return
    print(f"sampling profile: {prof['busy_samples']} busy thread-samples in {prof['samples']} ticks of "
          f"{prof['interval_ms']:g} ms "
          f"(sampler's own CPU {prof['sampler_cpu_s']} s); self % of busy samples, inclusive %:")
    for row in prof["top"]:
        print(f"  {row['self_pct']:>5}% {row['inclusive_pct']:>5}%  {row['function']}")


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The double, the engine, the ramp."""
    from voicebot.engine import Engine

    tmp = Path(tempfile.mkdtemp(prefix="capacity-"))
    steps_done: list[dict[str, Any]] = []
    try:
        with DoubleHost() as fs:
            fsbench.register_pool_backend(args.asr)
            config = engine_config(fs.inbound_port, tmp, asr_backend=args.asr,
                                   asr_offscript_rejection=not args.no_offscript_rejection)
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
                script = [Step("answer", human_line()), Step("answer", synth_line(cache, "sorry, what did you say?")),
                          Step("answer", synth_line(cache, "are you a robot?"))]
                loaded_rss = memory_mb()
                print(HEADER, flush=True)
                for i, n in enumerate(args.steps):
                    step = run_step(fs, engine, sessions, n, script, args, profile=not args.no_profile)
                    print_step(step)
                    steps_done.append(step)
                    if not step["sustained"] or i == len(args.steps) - 1:
                        break
                    steps_done[-1].pop("profile", None)  # only the limit's profile is kept
                    sessions.clear()
            finally:
                engine.shutdown()
        if fs.fatal_errors:
            raise SystemExit(f"the double saw fatal errors: {fs.fatal_errors}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    asr = config.asr_backend + ("" if config.asr_offscript_rejection else " (no off-script rejection)")
    return steps_done, {"asr": asr, "vad": config.vad, "rss_loaded_mb": round(loaded_rss, 1)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, with the smoke run's defaults filled in."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", default=None, help="concurrent calls per step (default 5,10,20,30,40,50,60,80; --smoke 2,4)")
    parser.add_argument("--duration-s", type=float, default=None, help="each call's length (default 20; --smoke 12)")
    parser.add_argument("--stagger-s", type=float, default=None, help="calls are placed over this long (default 3; --smoke 1)")
    parser.add_argument("--limit-ms", type=float, default=800.0, help="p95 response at the ear that ends the ramp")
    parser.add_argument("--no-profile", action="store_true", help="no sampling profiler")
    parser.add_argument("--smoke", action="store_true", help="steps 2,4 of 12 s calls: the CI smoke run")
    parser.add_argument("--asr", default=fsbench.SERVE_ASR,
                        help="ASR backend: pocketsphinx-pool (worker processes; voicebot serve's default) or pocketsphinx "
                             "(in the engine's process)")
    parser.add_argument("--no-offscript-rejection", action="store_true",
                        help="asr.offscript_rejection false: no phone loop beside the hinted decoder (about half the ASR CPU)")
    parser.add_argument("--what-if", action="append", default=[], choices=sorted(whatif.WHAT_IFS),
                        help="measure a proposed change to code outside bench/ (bench/whatif.py); repeatable")
    parser.add_argument("--json", type=Path, default=RESULTS / "capacity.json", help="results file")
    parser.add_argument("--label", default="", help="names this run in bench/report.py's table of capacity-*.json runs")
    args = parser.parse_args(argv)
    args.steps = [int(x) for x in (args.steps or ("2,4" if args.smoke else "5,10,20,30,40,50,60,80")).split(",")]
    args.duration_s = args.duration_s or (12.0 if args.smoke else 20.0)
    args.stagger_s = args.stagger_s if args.stagger_s is not None else (1.0 if args.smoke else 3.0)
    return args


def conclude(steps: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """The run's result (largest sustained step, memory, CPU projection), printed with the limit's profile."""
    sustained = [s["calls"] for s in steps if s["sustained"]]
    limit = steps[-1]
    result = {"max_sustained_calls": max(sustained, default=0), "limit_step": limit["calls"],
              "limit_reached": not limit["sustained"], "why": limit["why_not"],
              "rss_per_call_mb": next((s["rss_per_call_mb"] for s in reversed(steps) if s["sustained"]), None),
              **projection(steps, meta["machine"]["cpus"] or 1)}
    print_profile(limit)
    print(f"\nlargest sustained step: {result['max_sustained_calls']} concurrent calls"
          + (f" (at {limit['calls']}: {limit['why_not']})" if result["limit_reached"] else " (the ramp did not reach the limit)"))
    print(f"CPU per call-second at {result['projection_at_calls']} calls: {fmt(result['cpu_ms_per_call_s'])} ms (engine + ASR "
          f"workers), {fmt(result['cpu_ms_per_call_s_with_double'])} ms with the double; at 80% of "
          f"{meta['machine']['cpus']} cores that is ~{fmt(result['projected_calls'])} calls "
          f"(~{fmt(result['projected_calls_with_double'])} with the double) (an estimate, not a measurement)")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from voicebot.logs import configure

    configure(level="ERROR")
    meta: dict[str, Any] = {"bench": "capacity", "smoke": args.smoke, "steps": args.steps, "duration_s": args.duration_s,
                            "stagger_s": args.stagger_s, "limit_ms": args.limit_ms, "flow": fsbench.FLOW.stem,
                            "codec": "PCMU", "rate": fsbench.RATE, "machine": fsbench.machine(),
                            "available_cores": fsbench.available_cores(),
                            "what_if": {name: whatif.WHAT_IFS[name][0] for name in args.what_if}, "label": args.label}
    print(f"capacity: {meta['flow']}, PCMU 8 kHz, calls of {args.duration_s:g} s placed over {args.stagger_s:g} s; "
          f"{meta['machine']['cpus']} CPUs ({meta['machine']['cpu_model']}), load average {meta['machine']['loadavg']}, "
          f"{meta['available_cores']} cores free for this run; commit {meta['machine']['commit']}")
    started = time.monotonic()
    steps, engine_meta = run(args)
    meta.update(engine_meta, wall_s=round(time.monotonic() - started, 1), loadavg_after=fsbench.machine()["loadavg"])
    result = conclude(steps, meta)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "result": result, "steps": steps}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
