"""Soak: does the engine's memory come back after its calls end?

Run: .venv/bin/python bench/soak.py [--calls 20] [--rounds 3] [--duration-s 20] [--settle-s 25] [--smoke]

One engine (``Engine.load``/``start``, real models) against the FreeSWITCH test
double in its own process (bench/fsbench.py), as bench/capacity.py runs it. Each
round places ``--calls`` concurrent calls over ``--stagger-s`` (2) s; every
caller talks all along (a human clip at the greeting, then "sorry, what did you
say?" and "are you a robot?" in a loop), each call is hung up ``--duration-s``
after it started, and then nothing happens for ``--settle-s`` s. Printed: the
engine's RSS (this process and its ASR worker processes, MB) when loaded,
before each round, its peak during the round, right after the calls ended and
after the settle time; and the same with Python's own view (tracemalloc's
traced MB, when ``--tracemalloc``). A leak shows as "after" growing round on
round; memory that is held but bounded shows as "after" staying near the
first round's peak.

Each round also prints the bot's audio at the callers' ears: the longest gap
between two of its packets over all calls (ms) and how many gaps were late (over
ptime + 40 ms).

``--smoke``: 2 calls, 1 round of 4 s, 2 s settle (checks that the bench runs).
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fsbench
from capacity import hold_calls, memory_mb, place_calls
from fsbench import DoubleHost, Step, engine_config, human_line, synth_line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20, help="concurrent calls per round (20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of calls (3)")
    parser.add_argument("--duration-s", type=float, default=20.0, help="each call's length (s, 20)")
    parser.add_argument("--stagger-s", type=float, default=2.0, help="the round's calls are placed over this (s, 2)")
    parser.add_argument("--settle-s", type=float, default=25.0, help="idle time after each round (s, 25)")
    parser.add_argument("--tracemalloc", action="store_true", help="also report Python's traced memory (slower)")
    parser.add_argument("--trim", action="store_true", help="(diagnosis) malloc_trim(0) before sampling after a round")
    parser.add_argument("--smoke", action="store_true", help="2 calls, 1 round of 4 s, 2 s settle")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    if args.smoke:
        args.calls, args.rounds, args.duration_s, args.settle_s, args.stagger_s = 2, 1, 4.0, 2.0, 0.5
    return args


def traced_mb() -> float | None:
    return tracemalloc.get_traced_memory()[0] / 2**20 if tracemalloc.is_tracing() else None


def sample(label: str, **extra: Any) -> dict[str, Any]:
    """RSS now (and Python's traced memory), printed as one line."""
    gc.collect()
    row = {"at": label, "rss_mb": round(memory_mb(), 1), "traced_mb": _round(traced_mb()), **extra}
    print(f"{label:<24} rss {row['rss_mb']:>8.1f} MB" + (f"   traced {row['traced_mb']:>7.1f} MB" if row["traced_mb"] else "")
          + "".join(f"   {k} {v}" for k, v in extra.items()), flush=True)
    return row


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def run_round(fs: DoubleHost, engine: Any, script: list[Step], args: argparse.Namespace, n: int) -> list[dict[str, Any]]:
    rows = [sample(f"round {n}: before")]
    peak = [rows[0]["rss_mb"]]
    placed = place_calls(fs, engine, args.calls, script, args.stagger_s)

    def tick(first_hangup: bool) -> None:
        peak[0] = max(peak[0], memory_mb())
    hold_calls(fs, placed, args.duration_s, tick)
    gaps = [ear["gaps"] for ear in fs.report(placed).values()]
    worst = max((g["max"] for g in gaps if g["max"] is not None), default=None)
    late = sum(g["late"] for g in gaps)
    rows.append({"at": f"round {n}: peak", "rss_mb": round(peak[0], 1), "max_gap_ms": worst, "late_gaps": late})
    print(f"{rows[-1]['at']:<24} rss {peak[0]:>8.1f} MB   bot audio: max gap {worst} ms, {late} gaps late", flush=True)
    fsbench.wait_until(lambda: engine.metrics.active_calls == 0 and engine.records.idle, 60, "every call released")
    rows.append(sample(f"round {n}: calls ended", records=engine.metrics.calls_total, errors=engine.metrics.errors))
    if args.trim:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        rows.append(sample(f"round {n}: malloc_trim"))
    fsbench._yield(args.settle_s)
    rows.append(sample(f"round {n}: +{args.settle_s:g} s"))
    return rows


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from voicebot.engine import Engine

    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    rows: list[dict[str, Any]] = []
    try:
        with DoubleHost() as fs:
            engine = Engine(engine_config(fs.inbound_port, tmp))
            engine.load()
            engine.start()
            try:
                if not engine.inbound.wait_up(10):
                    raise SystemExit("the engine did not connect to the double")
                cache = next(iter(engine.pipelines.values())).cache
                script = [Step("answer", human_line()), Step("answer", synth_line(cache, "sorry, what did you say?")),
                          Step("answer", synth_line(cache, "are you a robot?"))]
                if args.tracemalloc:
                    tracemalloc.start()
                rows.append(sample("loaded"))
                for n in range(1, args.rounds + 1):
                    rows += run_round(fs, engine, script, args, n)
                saved = len(engine.store.list(limit=10 * args.calls * args.rounds))
                print(f"records saved: {saved} of {args.calls * args.rounds} calls", flush=True)
            finally:
                engine.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"soak: {args.calls} calls x {args.rounds} rounds of {args.duration_s:g} s, {args.settle_s:g} s settle", flush=True)
    rows = run(args)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
