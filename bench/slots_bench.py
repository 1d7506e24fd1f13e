"""Slot accuracy on text: spoken answers (en, zh) with the value each must give, tune and held-out parts.

Run: PYTHONPATH=$PWD .venv/bin/python bench/slots_bench.py [--set bench/slots_set.yaml] [--misses]

Each answer in the set goes through :func:`voicebot.dialog.slots.extract_slot` with the reference time the
set names (Monday 2026-12-07 10:00 in the callee's zone) and is right when the value equals the expected one
(``null``: nothing may be captured). The held-out half is chosen by a hash of language, type and text, so it
stays the same as answers are added; tune on the tune part only. Accuracy through ASR on audio is not measured
here (text only).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from voicebot.dialog.slots import extract_slot

SET = Path(__file__).with_name("slots_set.yaml")
REFERENCES = {
    "en": datetime(2026, 12, 7, 10, 0, tzinfo=ZoneInfo("America/New_York")),
    "zh": datetime(2026, 12, 7, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai")),
}


@dataclass(frozen=True)
class Case:
    """One spoken answer and the value it must give (None: nothing)."""

    language: str
    slot_type: str
    text: str
    expected: str | None

    @property
    def held_out(self) -> bool:
        """Stable half: the low bit of a SHA-256 of language, type and text."""
        digest = hashlib.sha256(f"{self.language}|{self.slot_type}|{self.text}".encode()).digest()
        return bool(digest[0] & 1)


def load_cases(path: Path) -> list[Case]:
    """Every answer in the set file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Case(language, slot_type, str(text), None if expected is None else str(expected))
            for language, by_type in data.items()
            for slot_type, rows in by_type.items()
            for text, expected in rows]


def run(cases: list[Case]) -> tuple[dict[tuple[str, str, bool], list[int]], list[tuple[Case, str | None]]]:
    """(right, total) per (language, type, held out), and the misses with what was captured."""
    scores: dict[tuple[str, str, bool], list[int]] = defaultdict(lambda: [0, 0])
    misses: list[tuple[Case, str | None]] = []
    for case in cases:
        got = extract_slot(case.slot_type, case.text, case.language, now=REFERENCES[case.language])
        score = scores[(case.language, case.slot_type, case.held_out)]
        score[1] += 1
        if got == case.expected:
            score[0] += 1
        else:
            misses.append((case, got))
    return scores, misses


def _cell(score: list[int] | None) -> str:
    if not score or not score[1]:
        return "-"
    return f"{100 * score[0] / score[1]:5.1f} % ({score[0]}/{score[1]})"


def report(scores: dict[tuple[str, str, bool], list[int]]) -> list[str]:
    """A table: accuracy per language and slot type on the tune and held-out parts, with totals."""
    lines = [f"{'lang':4} {'slot':9} {'tune':>18} {'held out':>18}"]
    totals: dict[bool, list[int]] = {False: [0, 0], True: [0, 0]}
    for language, slot_type in sorted({(k[0], k[1]) for k in scores}):
        row = [scores.get((language, slot_type, held)) for held in (False, True)]
        for held, score in zip((False, True), row, strict=True):
            if score:
                totals[held][0] += score[0]
                totals[held][1] += score[1]
        lines.append(f"{language:4} {slot_type:9} {_cell(row[0]):>18} {_cell(row[1]):>18}")
    lines.append(f"{'all':4} {'':9} {_cell(totals[False]):>18} {_cell(totals[True]):>18}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, default=SET, help="the set file (default bench/slots_set.yaml)")
    parser.add_argument("--misses", action="store_true", help="list every wrong answer")
    args = parser.parse_args(argv)
    cases = load_cases(args.set)
    scores, misses = run(cases)
    held = sum(c.held_out for c in cases)
    print(f"{len(cases)} answers: {len(cases) - held} tune, {held} held out")
    print("\n".join(report(scores)))
    if args.misses:
        for case, got in misses:
            part = "held out" if case.held_out else "tune"
            print(f"MISS [{part}] {case.language} {case.slot_type}: {case.text!r} -> {got!r}, expected {case.expected!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
