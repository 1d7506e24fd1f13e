"""Max gap: the longest hole in each call's bot audio, at the caller's ear, while the engine is disturbed.

Run: PYTHONPATH=$PWD .venv/bin/python bench/max_gap.py [--calls 20] [--disturbances wideband,db_stall,long_variable]
     [--json PATH]

One engine (``Engine.load``/``start``, as ``voicebot serve`` runs it: real
models, every pipeline warmed) against the FreeSWITCH test double in its own
process (bench/fsbench.py), real UDP media on 127.0.0.1. ``--calls`` (20) PCMU
8 kHz calls of ``examples/flows/lead_screening_en.yaml`` are placed over
``--stagger-s`` (3) s and talk all along as in bench/capacity.py (a human clip
at the greeting, then "sorry, what did you say?" and "are you a robot?" in a
loop). Once they are all up (``--settle-s``, 4 s), the disturbances come one by
one, ``--spacing-s`` (7) s apart, while those calls go on:

- ``baseline`` (not a disturbance): the settle time, every call up and nothing
  else happening: what the machine and the calls alone leave.
- ``wideband``: the engine's first 16 kHz call (L16, 20 ms; a silent caller)
  starts. Its window: from its placing for ``--spacing-s``.
- ``db_stall``: another SQLite connection holds the records database's write
  lock (``BEGIN EXCLUSIVE``) for ``--stall-s`` (1) s, and meanwhile
  ``--stall-calls`` (2) extra calls, placed with the others, hang up, so their
  records must wait for the lock. Its window: while the lock is held and 1 s
  after.
- ``long_variable``: a call whose ``vb_var_customer_name`` is 300 characters
  starts: its greeting's variable part is synthesized live as it plays. Its
  window: from its placing to the end of the run (``--tail-s``, 10 s, after it).

Every call is hung up at the end. Peak concurrency is ``--calls`` plus the
disturbances' own calls (printed).

What counts as a gap. The engine sends a frame every ptime, silence included,
so a gap is measured only between two consecutive packets that carry the
*same prompt's* audio: the bench wraps, in the engine's process,
``SessionThread.next_bot_frame`` (the send clock's request for a call's next
frame) and logs for every slot whether it carried prompt audio, or silence
while the call's player was inside a prompt (started, not paused, not ended:
an underrun, the session thread or the synthesis behind the clock), or
intended silence (no prompt, a prompt not yet started, a barge-in pause). The
double's ear records each datagram with the kernel's arrival time
(SO_TIMESTAMPNS on its receiving socket); a packet belongs to the last slot
its stream logged before it arrived (on loopback the kernel stamps a datagram
inside its send; checked: a slot sent as silence must arrive as silence and
each slot gets one packet at most, ``misaligned`` counts the packets that did
not fit). A gap is the time between the arrivals of two audio packets with only
underrun silence, lost packets or skipped slots between them; a run that
contains intended silence is no gap. So a 20 ms stream has gaps of ~20 ms, and a hole the
caller hears inside a prompt shows as one long gap.

Printed: per disturbance, the max and p99 gap over every call whose gap
overlaps its window, and the max over the disturbance's own call; overall,
per call's max (the worst calls) and pass/fail against ``--limit-ms`` (40).
Exit status 0 whether it passes or not (read ``pass`` in the JSON).
"""

from __future__ import annotations

import argparse
import bisect
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fsbench
from capacity import JITTER_S, QUIET_S, HubProbe
from fsbench import RESULTS, ROOT, DoubleHost, Step, engine_config, fmt, human_line, synth_line
from max_gap_probes import AUDIO, IDLE, UNDERRUN, DbStall, HubWatch, SlotProbe, saved_records

__all__ = ["AUDIO", "IDLE", "UNDERRUN", "call_gaps", "main", "paired"]  # the probes' constants: tests read them here

LIMIT_MS = 40.0  # the bound on any gap in a call's bot audio
DISTURBANCES = ("wideband", "db_stall", "long_variable")
LONG_VARIABLE = ("Alexandra Maria Konstantinopoulou-Whitfield, of forty-two Riverside Terrace, apartment nine, "
                 "Northbridge, who asked on the twelfth of March about a fixed savings plan for her daughter's "
                 "studies and her own retirement, with monthly deposits, a paper statement every quarter and a "
                 "reminder by text message")
PAIR_EPS_S = 0.00005  # a packet may seem to arrive this much before its slot was logged (the clocks' conversion)


# ---------------------------------------------------------------- in the double's process


def arrivals(fs: Any, _callers: Any, uuids: list[str]) -> dict[str, tuple[list[float], list[bool]]]:
    """(Double's process) per call: the engine's datagrams' arrival times (monotonic s) and whether each was silence."""
    out: dict[str, tuple[list[float], list[bool]]] = {}
    for uuid in uuids:
        packets = [p for p in fs.channel(uuid).packets_heard() if p.source == "engine"]
        out[uuid] = ([p.at for p in packets], [not p.pcm().strip(b"\0") for p in packets])
    return out


def place_call(fs: Any, _callers: Any, engine_port: int, codec: str, rate: int, variables: dict[str, str]) -> str:
    """(Double's process) a silent caller dials the engine in ``codec`` at ``rate`` with these channel variables."""
    return str(fs.place_call(engine_port, codec=codec, rate=rate, ptime=fsbench.PTIME_MS, variables=variables))


# ---------------------------------------------------------------- gaps


@dataclass
class Gap:
    """One gap in a call's bot audio: it ended at ``end`` (monotonic s), lasted ``ms``, with ``underruns`` slots of
    silence sent inside a prompt (the rest of it: packets late or slots skipped); ``t`` s after the call's first slot."""

    end: float
    ms: float
    underruns: int = 0
    t: float = 0.0

    def overlaps(self, start: float, stop: float) -> bool:
        return self.end >= start and self.end - self.ms / 1000 <= stop


@dataclass
class CallGaps:
    """One call's gaps inside prompts, and the checks on how its slots matched its packets."""

    uuid: str
    gaps: list[Gap] = field(default_factory=list)
    slots: int = 0
    packets: int = 0
    misaligned: int = 0
    underruns: int = 0

    @property
    def max_ms(self) -> float | None:
        return max((g.ms for g in self.gaps), default=None)


def paired(slots: list[tuple[float, int]], arrived: list[float], silent: list[bool]) -> tuple[list[float | None], int]:
    """Each slot's packet arrival (None: never arrived), and how many packets did not fit their slot.

    A slot is logged before its datagram is sent, and on loopback the kernel stamps the arrival inside that
    send, before the stream's next slot (which may follow within 0.1 ms when the sender catches up): a packet
    belongs to the last slot logged before it arrived (``PAIR_EPS_S`` allows for moving the kernel's stamp onto the
    monotonic clock). A packet that lands on a slot already taken,
    or arrives with sound where the slot sent silence, is ``misaligned``.
    """
    times = [t for t, _ in slots]
    out: list[float | None] = [None] * len(slots)
    misaligned = 0
    for at, quiet in zip(arrived, silent, strict=True):
        i = bisect.bisect_right(times, at + PAIR_EPS_S) - 1
        if i < 0 or out[i] is not None or (slots[i][1] != AUDIO and not quiet):
            misaligned += 1
            continue
        out[i] = at
    return out, misaligned


def call_gaps(uuid: str, slots: list[tuple[float, int]], arrived: list[float], silent: list[bool], t0: float) -> CallGaps:
    """The gaps between audio packets of one prompt (module docstring); ``t0``: when the run began (monotonic s).
    A lost audio packet lengthens the gap it falls in."""
    arrivals, misaligned = paired(slots, arrived, silent)
    out = CallGaps(uuid, slots=len(slots), packets=len(arrived), misaligned=misaligned)
    last: float | None = None
    holes = 0
    for (_, kind), at in zip(slots, arrivals, strict=True):
        if kind == AUDIO:
            if at is None:
                continue  # lost: the caller hears the gap grow
            if last is not None:
                out.gaps.append(Gap(at, round(1000 * (at - last), 1), holes, round(at - t0, 2)))
            last, holes = at, 0
        elif kind == UNDERRUN:
            out.underruns += 1
            holes += 1
        else:
            last = None  # intended silence: the next audio starts a new run
    return out


def stats(gaps: list[float]) -> dict[str, Any]:
    """n, p50, p99, max (ms)."""
    return {"n": len(gaps), "p50": fsbench.pct(gaps, 50), "p99": fsbench.pct(gaps, 99),
            "max": round(max(gaps), 1) if gaps else None}


def figures(calls: list[CallGaps], windows: dict[str, dict[str, Any]], limit_ms: float) -> dict[str, Any]:
    """Per disturbance (its window over every call, and its own call), per call and overall; the verdict."""
    every = [g.ms for c in calls for g in c.gaps]
    by_uuid = {c.uuid: c for c in calls}
    out: dict[str, Any] = {"overall": stats(every), "disturbances": {}, "limit_ms": limit_ms}
    for name, w in windows.items():
        inside = [g.ms for c in calls for g in c.gaps if g.overlaps(w["start"], w["end"])]
        own = by_uuid.get(w.get("uuid", ""))
        out["disturbances"][name] = {**stats(inside), "at_s": w["start_s"], "window_s": round(w["end"] - w["start"], 1),
                                     "own_call_max": own.max_ms if own else None, **w.get("extra", {})}
    out["calls"] = sorted(({"uuid": c.uuid, "max_ms": c.max_ms, "gaps": len(c.gaps), "underrun_slots": c.underruns,
                            "slots": c.slots, "packets": c.packets, "misaligned": c.misaligned,
                            "long_gaps": [[g.t, g.ms, g.underruns] for g in c.gaps if g.ms > limit_ms]} for c in calls),
                          key=lambda row: -(row["max_ms"] or 0))
    out["misaligned"] = sum(c.misaligned for c in calls)
    worst = out["overall"]["max"]
    out["pass"] = worst is not None and worst <= limit_ms and all(c.max_ms is not None for c in calls)
    return out


# ---------------------------------------------------------------- the run


@dataclass
class Run:
    """What a run needs while its calls are up."""

    fs: DoubleHost
    engine: Any
    args: argparse.Namespace
    script: list[Step]
    uuids: list[str] = field(default_factory=list)
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)

    def place_scripted(self, n: int, seed0: int) -> list[str]:
        placed = []
        for i in range(n):
            placed.append(self.fs.place(self.engine.server.port, self.script, QUIET_S, loop_from=1, jitter_s=JITTER_S,
                                        seed=seed0 + i))
            fsbench._yield(self.args.stagger_s / max(1, n))
        self.uuids += placed
        return placed

    def place_silent(self, codec: str, rate: int, variables: dict[str, str]) -> str:
        uuid = str(self.fs.run("max_gap:place_call", self.engine.server.port, codec, rate, variables))
        self.uuids.append(uuid)
        return uuid

    def wideband(self) -> None:
        start = time.monotonic()
        uuid = self.place_silent("L16", 16000, {})
        fsbench._yield(self.args.spacing_s)
        self.windows["wideband"] = {"start": start, "end": time.monotonic(), "uuid": uuid}

    def db_stall(self, victims: list[str]) -> None:
        stall = DbStall(self.engine.config.records_db, self.args.stall_s)
        stall.start()
        fsbench.wait_until(stall.locked.is_set, 10, "the records database's lock", 0.002)
        if stall.error:
            raise SystemExit(f"could not lock the records database: {stall.error}")
        self.fs.hangup(victims)
        fsbench.wait_until(stall.released.is_set, 30, "the lock's release", 0.01)
        fsbench.wait_until(lambda: saved_records(self.engine.config.records_db) >= len(victims), 30, "the stalled records")
        saved = time.monotonic()
        fsbench._yield(max(0.0, self.args.spacing_s - (saved - stall.acquired_at)))
        self.windows["db_stall"] = {"start": stall.acquired_at, "end": stall.released_at + 1.0, "extra": {
            "lock_held_s": round(stall.released_at - stall.acquired_at, 3),
            "records_saved_s_after_lock": round(saved - stall.acquired_at, 3)}}

    def long_variable(self) -> None:
        start = time.monotonic()
        uuid = self.place_silent("PCMU", fsbench.RATE, {"vb_var_customer_name": LONG_VARIABLE})
        fsbench._yield(self.args.tail_s)
        self.windows["long_variable"] = {"start": start, "end": time.monotonic(), "uuid": uuid,
                                         "extra": {"variable_chars": len(LONG_VARIABLE)}}


def disturb(run: Run) -> int:
    """Place the calls, run the disturbances in order, hang everything up; the peak number of calls."""
    args = run.args
    run.place_scripted(args.calls, 0)
    victims = run.place_scripted(args.stall_calls, 1000) if "db_stall" in args.disturbances else []
    settled = time.monotonic()
    fsbench._yield(args.settle_s)
    run.windows["baseline"] = {"start": settled, "end": time.monotonic()}  # every call up, no disturbance yet
    peak = run.engine.metrics.active_calls
    for name in args.disturbances:
        if name == "db_stall":
            run.db_stall(victims)
        else:
            getattr(run, name)()
        peak = max(peak, run.engine.metrics.active_calls)
    if "long_variable" not in args.disturbances:
        fsbench._yield(args.tail_s)
    live = [u for u, down in run.fs.hung_up(run.uuids).items() if not down]
    run.fs.hangup(live)
    fsbench.wait_until(lambda: run.engine.metrics.active_calls == 0, 60, "every call released")
    return int(peak)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The double, the engine, the calls and disturbances; the figures."""
    from voicebot.engine import Engine
    from voicebot.esl import sendclock

    tmp = Path(tempfile.mkdtemp(prefix="max-gap-"))
    try:
        with DoubleHost() as fs:
            fsbench.register_pool_backend(args.asr)
            engine = Engine(engine_config(fs.inbound_port, tmp, asr_backend=args.asr))
            engine.load()
            probe = SlotProbe(engine)
            probe.install()
            engine.start()
            try:
                if not engine.inbound.wait_up(10):
                    raise SystemExit("the engine did not connect to the double")
                cache = next(iter(engine.pipelines.values())).cache
                script = [Step("answer", human_line()), Step("answer", synth_line(cache, "sorry, what did you say?")),
                          Step("answer", synth_line(cache, "are you a robot?"))]
                bench = Run(fs, engine, args, script)
                sendclock.SEND_LATENESS.reset()
                hub, watch = HubProbe(), HubWatch()
                peak = disturb(bench)
                engine_side = {"send_lateness_ms": sendclock.SEND_LATENESS.summary(), "hub_lag_ms": hub.stop(),
                               "hub_blocked_in": watch.stop()[:8],
                               "other_threads_busy_in": sorted(watch.others.items(), key=lambda kv: -kv[1])[:8]}
                heard = fs.run("max_gap:arrivals", bench.uuids, timeout=120)
                errors = engine.metrics.errors
            finally:
                engine.shutdown()
                probe.remove()
        if fs.fatal_errors:
            raise SystemExit(f"the double saw fatal errors: {fs.fatal_errors}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    calls = [call_gaps(u, probe.slots.get(u, []), heard[u][0], heard[u][1], bench.t0) for u in bench.uuids]
    windows = {k: {**w, "start_s": round(w["start"] - bench.t0, 2)} for k, w in bench.windows.items()}
    return {**figures(calls, windows, args.limit_ms), "peak_calls": peak, "engine_errors": errors, **engine_side}


# ---------------------------------------------------------------- the command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=20, help="talking PCMU calls up all along (20)")
    parser.add_argument("--disturbances", default=",".join(DISTURBANCES),
                        help=f"which, in this order (default {','.join(DISTURBANCES)})")
    parser.add_argument("--stagger-s", type=float, default=3.0, help="the calls are placed over this (s, 3)")
    parser.add_argument("--settle-s", type=float, default=4.0, help="from the last call placed to the first disturbance (s, 4)")
    parser.add_argument("--spacing-s", type=float, default=7.0, help="from one disturbance to the next (s, 7)")
    parser.add_argument("--tail-s", type=float, default=10.0, help="after the last disturbance, before the hang-ups (s, 10)")
    parser.add_argument("--stall-s", type=float, default=1.0, help="how long the database's lock is held (s, 1)")
    parser.add_argument("--stall-calls", type=int, default=2, help="extra calls that hang up while it is held (2)")
    parser.add_argument("--asr", default=fsbench.SERVE_ASR,
                        help="ASR backend: pocketsphinx-pool (worker processes; voicebot serve's default) or pocketsphinx "
                             "(in the engine's process)")
    parser.add_argument("--limit-ms", type=float, default=LIMIT_MS, help="the largest gap that passes (ms, 40)")
    parser.add_argument("--json", type=Path, default=RESULTS / "max_gap.json", help="results file")
    args = parser.parse_args(argv)
    args.disturbances = [d for d in args.disturbances.split(",") if d]
    unknown = sorted(set(args.disturbances) - set(DISTURBANCES))
    if unknown:
        parser.error(f"unknown disturbance(s) {', '.join(unknown)}; choose from {', '.join(DISTURBANCES)}")
    return args


def report(result: dict[str, Any]) -> None:
    """The figures as a table."""
    print(f"{'disturbance':<14} {'max ms':>7} {'p99 ms':>7} {'gaps':>7} {'own call max':>12}  notes")
    for name, d in result["disturbances"].items():
        notes = ", ".join(f"{k} {v}" for k, v in d.items() if k not in ("n", "p50", "p99", "max", "own_call_max"))
        print(f"{name:<14} {fmt(d['max']):>7} {fmt(d['p99']):>7} {d['n']:>7} {fmt(d['own_call_max']):>12}  {notes}")
    o = result["overall"]
    print(f"{'overall':<14} {fmt(o['max']):>7} {fmt(o['p99']):>7} {o['n']:>7}")
    long = sorted((g for c in result["calls"] for g in c["long_gaps"]), key=lambda g: -g[1])
    print(f"gaps over {result['limit_ms']:g} ms: {len(long)}, of which {sum(g[2] > 0 for g in long)} with underrun slots"
          + ("; the longest (s into the run, ms, underrun slots): " + ", ".join(f"{t} {ms} {u}" for t, ms, u in long[:6])
             if long else ""))
    print(f"peak calls {result['peak_calls']}, engine errors {result['engine_errors']}, misaligned packets "
          f"{result['misaligned']}; in the engine: frames sent late p99 {fmt(result['send_lateness_ms']['p99'])} ms, "
          f"max {fmt(result['send_lateness_ms']['max'])} ms; hub lag p99 {fmt(result['hub_lag_ms']['p99'])} ms, "
          f"max {fmt(result['hub_lag_ms']['max'])} ms")
    for where, n in result["hub_blocked_in"]:
        print(f"  hub stalled {n}x in {where}")
    print("  meanwhile other threads ran: " + ", ".join(f"{where} {n}x" for where, n in result["other_threads_busy_in"]))
    verdict = "PASS" if result["pass"] else "FAIL"
    print(f"{verdict}: largest gap in any call's bot audio {fmt(o['max'])} ms (limit {result['limit_ms']:g} ms)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from voicebot.logs import configure

    configure(level="ERROR")
    machine = {**fsbench.machine(), "available_cores": fsbench.available_cores()}
    print(f"max gap: {args.calls} calls + disturbances {', '.join(args.disturbances)}, asr {args.asr}; {machine['cpus']} CPUs, "
          f"load average {machine['loadavg']}, {machine['available_cores']} cores free; commit {machine['commit']}",
          flush=True)
    started = time.monotonic()
    result = run(args)
    report(result)
    meta = {"bench": "max_gap", "calls": args.calls, "asr": args.asr, "disturbances": args.disturbances, "machine": machine,
            "wall_s": round(time.monotonic() - started, 1), "loadavg_after": fsbench.machine()["loadavg"]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "result": result}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
