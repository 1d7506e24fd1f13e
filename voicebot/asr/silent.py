"""The streaming pass for a language no shipped streaming recogniser hears: voice activity only, no words.

No registry ships a streaming Mandarin model (pocketsphinx is English only; the only Vosk model is Korean), so a
``zh`` flow on the default recogniser gets this backend (``none``; :func:`voicebot.asr.registry.load_asr`): the
turn still ends on silence (the VAD and the turn gates run as always), its final is empty, and the two-pass policy
sends every such turn to the accurate pass (Whisper base is multilingual), whose words the dialog gets. What a
streaming pass gives and this one cannot: partial words (early end of turn, barge-in confirmed by words while the
bot speaks: an interruption is confirmed by the accurate pass's final instead). A user's Vosk model for the
language (``asr.backend: vosk``) brings those back.
"""

from __future__ import annotations

from collections.abc import Sequence

from voicebot.asr.base import AsrResult
from voicebot.audio.frame import AudioFrame

NAME = "none"


class SilentStream:
    """Hears audio, returns no words: ``finish`` is an empty final stamped with the last frame's capture time."""

    def __init__(self) -> None:
        self._last_at = 0.0

    def accept(self, frame: AudioFrame) -> AsrResult | None:
        self._last_at = frame.captured_at
        return None

    def finish(self) -> AsrResult:
        return AsrResult("", final=True, at=self._last_at)

    def set_hints(self, phrases: Sequence[str]) -> None:
        """Nothing to bias."""

    def close(self) -> None:
        """Nothing to release."""


class SilentModel:
    """The ``none`` backend (see the module docstring); ``language``: the flow's."""

    name = NAME

    def __init__(self, language: str = "und") -> None:
        self.language = language

    def stream(self, sample_rate: int, hints: Sequence[str] = ()) -> SilentStream:
        return SilentStream()
