"""The speech-synthesis interface: a shared voice and a cancellable per-utterance stream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from voicebot.audio.frame import AudioFrame


class VoiceError(Exception):
    """A voice or voice pack is missing or broken; the message names the path and what was expected."""


class TtsStream(Protocol):
    """One utterance being synthesized: 20 ms frames at the call's rate, first audio after the first sentence."""

    def __iter__(self) -> Iterator[AudioFrame]:
        """Frames in order; ends when the text is done or the stream was cancelled."""
        ...

    def cancel(self) -> None:
        """Stop now (barge-in): no further frame is yielded and synthesis stops within the current sentence."""
        ...


class Voice(Protocol):
    """A loaded voice, shared by every call (thread-safe ``stream``)."""

    name: str
    language: str
    sample_rate: int  # the model's native rate (Hz)

    def stream(self, text: str, rate: int, frame_ms: int = 20) -> TtsStream:
        """Synthesize ``text`` as frames of ``frame_ms`` at ``rate`` Hz."""
        ...
