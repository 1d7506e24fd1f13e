"""Dialog-machine throughput and intent-matching time, on the example flows.

Run: .venv/bin/python bench/dialog_bench.py [--quick]

Prints:
- events/s: whole simulated calls of the example flow test cases fed through
  DialogMachine.handle (the caller scripts of examples/flows/*.tests.yaml,
  replayed many times), counting every event the machine handled;
- intent matching: microseconds per utterance for IntentMatcher.best over the
  caller lines of those scripts plus extra phrases, per language (p50, p95).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.dialog.loader import load_flow  # noqa: E402
from voicebot.dialog.machine import DialogMachine, build_matcher  # noqa: E402
from voicebot.sim.flowtest import load_cases  # noqa: E402
from voicebot.sim.script import action_from_item  # noqa: E402
from voicebot.sim.text import TextCall  # noqa: E402

FLOWS = ROOT / "examples" / "flows"


class CountingMachine(DialogMachine):
    """A DialogMachine that counts events and the time spent handling them."""

    events = 0
    seconds = 0.0

    def handle(self, event, now):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        out = super().handle(event, now)
        CountingMachine.seconds += time.perf_counter() - start
        CountingMachine.events += 1
        return out


def machine_throughput(rounds: int) -> tuple[int, float]:
    """Replay every flow test case ``rounds`` times; return (events, seconds inside handle)."""
    CountingMachine.events, CountingMachine.seconds = 0, 0.0
    for tests in sorted(FLOWS.glob("*.tests.yaml")):
        flow_path, cases = load_cases(tests)
        flow = load_flow(flow_path)
        matcher = build_matcher(flow)
        for _ in range(rounds):
            for case in cases:
                call = TextCall(flow, case.variables, matcher=matcher, agent=case.agent)
                call.machine = CountingMachine(flow, matcher=matcher)
                call.start()
                for item in case.caller:
                    if call.ended:
                        break
                    call.act(action_from_item(item))
                call.finish()
    return CountingMachine.events, CountingMachine.seconds


def utterances(language: str) -> list[str]:
    lines = []
    for tests in FLOWS.glob(f"*_{language}.tests.yaml"):
        for case in load_cases(tests)[1]:
            lines += [str(item) for item in case.caller if isinstance(item, str) and item not in ("silence", "hangup")]
    return lines


def matching_times(language: str, repeat: int) -> list[float]:
    flow = load_flow(FLOWS / f"lead_screening_{language}.yaml")
    matcher = build_matcher(flow)
    allowed = list(flow.intents)
    times = []
    for _ in range(repeat):
        for text in utterances(language):
            start = time.perf_counter()
            matcher.best(text, allowed, flow.min_intent_score)
            times.append((time.perf_counter() - start) * 1e6)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds only (CI smoke run)")
    args = parser.parse_args()
    rounds, repeat = (2, 5) if args.quick else (40, 200)

    events, seconds = machine_throughput(rounds)
    print(f"dialog machine: {events} events in {seconds:.3f} s inside handle() -> {events / seconds:,.0f} events/s "
          f"({seconds / events * 1e6:.1f} µs/event)")
    for language in ("en", "zh"):
        times = sorted(matching_times(language, repeat))
        p95 = times[int(len(times) * 0.95)]
        print(f"intent matching [{language}]: {len(utterances(language))} utterances x {repeat}: "
              f"p50 {statistics.median(times):.1f} µs, p95 {p95:.1f} µs, max {times[-1]:.1f} µs per utterance")


if __name__ == "__main__":
    main()
