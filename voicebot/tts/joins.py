"""Joining the pieces of a prompt without clicks, and measuring the joins a caller could hear.

A dynamic prompt is pieces (the agent's recordings, fixed text synthesized ahead, values synthesized on the call,
pauses) joined by :class:`Joiner` with a 10 ms equal-power crossfade. :class:`Segment` says where each piece lies in
the joined audio; :func:`measure_joins` gives, at each join between two pieces of speech, the loudness step (dB)
and whether it clicks.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voicebot.tts.pack import Int16Array, active_dbfs

CROSSFADE_MS = 10
CLICK_RATIO = 2.0  # a join clicks when its largest sample step is this many times the speech's own around it


@dataclass(frozen=True)
class Segment:
    """One piece of a rendered dynamic prompt: where it starts in the prompt's audio and how long it is (samples),
    what it is (``recording``: the agent's own take; ``cached``: fixed text synthesized before the call; ``live``:
    a value synthesized for the call; ``pause``: silence after a clause) and what it says."""

    start: int
    length: int
    kind: str
    text: str


class Joiner:
    """Streams segments out joined by equal-power crossfades of ``crossfade_ms`` (holds back one fade's worth)."""

    def __init__(self, rate: int, crossfade_ms: float = CROSSFADE_MS, fade_in: bool = False) -> None:
        self.n = max(1, int(rate * crossfade_ms / 1000))
        self._tail: npt.NDArray[np.float64] | None = np.zeros(self.n) if fade_in else None
        self.emitted = 0  # samples returned so far

    def start_of(self, length: int) -> int:
        """Where a segment of ``length`` samples pushed next starts in the joined output (its crossfade's start)."""
        held = 0 if self._tail is None else len(self._tail)
        return self.emitted + held - min(held, length, self.n)

    def push(self, segment: Int16Array) -> Int16Array:
        """Add the next segment; returns the audio now final (all but the last ``crossfade_ms``)."""
        seg = np.asarray(segment, dtype=np.float64)
        if self._tail is None:
            body = seg
        else:
            k = min(len(self._tail), len(seg), self.n)
            t = (np.arange(k) + 0.5) / max(k, 1)
            mixed = self._tail[len(self._tail) - k :] * np.cos(t * np.pi / 2) + seg[:k] * np.sin(t * np.pi / 2)
            body = np.concatenate([self._tail[: len(self._tail) - k], mixed, seg[k:]])
        keep = min(self.n, len(body))
        self._tail = body[len(body) - keep :]
        self.emitted += len(body) - keep
        return _to_int16(body[: len(body) - keep])

    def finish(self, fade_out: bool = False) -> Int16Array:
        """The held-back end, faded to silence over ``crossfade_ms`` when ``fade_out``."""
        tail = self._tail if self._tail is not None else np.zeros(0)
        if fade_out and len(tail):
            tail = tail * np.cos((np.arange(len(tail)) + 0.5) / len(tail) * np.pi / 2)
        self._tail = None
        return _to_int16(tail)


def _to_int16(x: npt.NDArray[np.float64]) -> Int16Array:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def join_segments(segments: list[Int16Array], rate: int, crossfade_ms: float = CROSSFADE_MS) -> Int16Array:
    """Segments joined by equal-power crossfades (``crossfade_ms`` = 0: plain concatenation)."""
    if crossfade_ms <= 0:
        return np.concatenate([np.asarray(s, dtype=np.int16) for s in segments] or [np.zeros(0, dtype=np.int16)])
    joiner = Joiner(rate, crossfade_ms)
    out = [joiner.push(s) for s in segments]
    return np.concatenate([*out, joiner.finish()])


def join_offsets(lengths: list[int], rate: int, crossfade_ms: float = CROSSFADE_MS) -> list[int]:
    """Where each join starts in :func:`join_segments`' output (the crossfade region, or the boundary)."""
    n = max(1, int(rate * crossfade_ms / 1000)) if crossfade_ms > 0 else 0
    offsets, end = [], 0
    for i, length in enumerate(lengths):
        if i:
            k = min(n, end, length)
            end -= k
            offsets.append(end)
        end += length
    return offsets


def max_join_discontinuity(audio: Int16Array, offsets: list[int], rate: int, window_ms: float = 15.0) -> int:
    """Largest sample-to-sample step within ``window_ms`` after each join offset (and 1 ms before)."""
    steps = np.abs(np.diff(np.asarray(audio, dtype=np.int32)))
    before, after = max(1, rate // 1000), max(2, int(rate * window_ms / 1000))
    worst = 0
    for off in offsets:
        lo, hi = max(0, off - before), min(len(steps), off + after)
        if hi > lo:
            worst = max(worst, int(steps[lo:hi].max()))
    return worst


@dataclass(frozen=True)
class Join:
    """A join between two pieces of speech: where (s into the prompt), the pieces' kinds, the loudness step (dB:
    the speech level of the piece after minus the one before, each the RMS of its active frames, the level loudness
    matching sets; a window of a few hundred ms on each side would measure the sentence's own prosody, a question
    rising or a clause falling, as much as the join) and the click measure (the largest sample step at the join
    over the largest in the speech around it; above :data:`CLICK_RATIO` it clicks)."""

    at_s: float
    before: str
    after: str
    loudness_step_db: float
    step_ratio: float

    @property
    def clicks(self) -> bool:
        return self.step_ratio > CLICK_RATIO


def measure_joins(audio: Int16Array, segments: list[Segment], rate: int) -> list[Join]:
    """Every join between consecutive pieces of speech in ``audio`` (pauses between them are skipped over)."""
    speech = [s for s in segments if s.kind != "pause" and s.length > 0]
    joins = []
    for left, right in itertools.pairwise(speech):
        before = audio[left.start: left.start + left.length]
        after = audio[right.start: right.start + right.length]
        step = active_dbfs(after, rate) - active_dbfs(before, rate)
        joins.append(Join(round(right.start / rate, 3), left.kind, right.kind, round(step, 2),
                          round(_step_ratio(audio, right.start, rate), 2)))
    return joins


def _step_ratio(audio: Int16Array, at: int, rate: int) -> float:
    """The largest sample-to-sample step within 1 ms before to 15 ms after ``at``, over the largest step in the
    100 ms of audio on either side outside that window (1.0 when there is nothing around to compare with)."""
    steps = np.abs(np.diff(np.asarray(audio, dtype=np.int32)))
    lo, hi = max(0, at - rate // 1000), min(len(steps), at + rate * 15 // 1000)
    around = np.concatenate([steps[max(0, lo - rate // 10): lo], steps[hi: hi + rate // 10]])
    if hi <= lo or len(around) == 0 or around.max() == 0:
        return 1.0
    return float(steps[lo:hi].max()) / float(around.max())
