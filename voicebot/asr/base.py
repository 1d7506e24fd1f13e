"""The speech-recognition and voice-activity interfaces every backend implements.

Pattern: one shared, immutable *model* object per process (loaded once, used by
every call), and one cheap *stream* per call created with ``model.stream()``.
Streams are not thread-safe; the per-call driver feeds one stream from one
native thread. CPU-heavy work (decoding, VAD inference) never runs on the gevent
hub: the call's session thread feeds its streams, or worker processes decode them
(:mod:`voicebot.asr.procpool`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from voicebot.audio.frame import AudioFrame

UNK = "[unk]"  # a word the recogniser could not make out (Vosk's symbol; PocketSphinx's unsure words become it too)


class ModelError(Exception):
    """A model is missing or broken; the message names the path and what was expected."""


# ------------------------------------------------------------------- VAD


class VadStream(Protocol):
    """Per-call voice-activity detection."""

    def speech_probability(self, frame: AudioFrame) -> float:
        """Probability (0..1) that ``frame`` holds speech; webrtcvad answers 0.0 or 1.0."""
        ...

    def reset(self) -> None:
        """Forget state (between calls or after a long gap)."""
        ...


class VadModel(Protocol):
    """A shared VAD model; ``stream()`` makes a per-call detector."""

    name: str

    def stream(self) -> VadStream:
        """A new per-call detector."""
        ...


# ------------------------------------------------------------------- ASR


@dataclass(frozen=True)
class Word:
    """One recognised word; times in seconds from the start of the utterance."""

    text: str
    start_s: float
    end_s: float
    confidence: float = 1.0


@dataclass(frozen=True)
class AsrResult:
    """A partial or final hypothesis for the current utterance.

    ``at`` is the ``captured_at`` of the last frame the recogniser had seen when
    it produced this result (monotonic s), so finalisation latency is measurable.
    ``text`` may hold :data:`UNK` for words the recogniser was unsure of; ``words``
    keep what it heard. ``fit`` (finals, where the backend measures it): how well
    the node's hints explain the audio compared with free phones, in 1e-4 log
    units per frame (PocketSphinx; lower is worse), else None.
    """

    text: str
    final: bool
    confidence: float = 0.0
    words: tuple[Word, ...] = ()
    at: float = 0.0
    fit: float | None = None


class AsrStream(Protocol):
    """Per-call streaming recognition of one utterance at a time."""

    def accept(self, frame: AudioFrame) -> AsrResult | None:
        """Feed audio; return a partial result when the hypothesis changed, else None."""
        ...

    def finish(self) -> AsrResult:
        """End the current utterance: its final result. The stream is then ready for the next one."""
        ...

    def set_hints(self, phrases: Sequence[str]) -> None:
        """Bias recognition of the next utterance toward these phrases (where the backend can)."""
        ...

    def close(self) -> None:
        """Release native resources."""
        ...


class AsrModel(Protocol):
    """A shared recogniser model; ``stream()`` makes a per-call stream."""

    name: str
    language: str

    def stream(self, sample_rate: int, hints: Sequence[str] = ()) -> AsrStream:
        """A new per-call stream for audio at ``sample_rate`` Hz."""
        ...
