"""Test doubles for driving a :class:`~voicebot.call.CallSession` on a fake clock: a level VAD, a scripted recogniser,
a constant-tone speaker and a caller made of loud intervals. The session, turn-taking and dialog machine are real."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from voicebot.asr.base import AsrResult
from voicebot.audio.frame import AudioFrame
from voicebot.call import CallSession, CallSettings
from voicebot.dialog import events as ev
from voicebot.dialog.flow import Flow
from voicebot.dialog.machine import DialogMachine
from voicebot.player import Chunk

RATE = 8000
FRAME_S = 0.02
FRAME = RATE // 50
BOT_LEVEL = 300  # about -40 dBFS: the bot's voice on the line
CALLER_LEVEL = 8000  # about -12 dBFS: a caller speaking


class LevelVad:
    """Speech probability 1.0 for a frame louder than -30 dBFS, else 0.0."""

    def speech_probability(self, frame: AudioFrame) -> float:
        return 1.0 if frame.rms_dbfs() > -30.0 else 0.0

    def reset(self) -> None:
        """Nothing to forget."""


@dataclass
class ScriptedAsr:
    """Partials at given call times: ``words`` maps a time (s) to the partial text from then on.

    ``finish`` returns the latest partial of the utterance (empty: a cough) and starts the next one.
    """

    words: Mapping[float, str] = field(default_factory=dict)
    said: str = ""
    finals: list[str] = field(default_factory=list)

    def accept(self, frame: AudioFrame) -> AsrResult | None:
        due = [t for t in self.words if t <= frame.captured_at + 1e-9]
        text = self.words[max(due)] if due else ""
        if text and text != self.said and frame.captured_at - max(due) < FRAME_S - 1e-9:
            self.said = text
            return AsrResult(text, final=False, confidence=0.9, at=frame.captured_at)
        return None

    def finish(self) -> AsrResult:
        text, self.said = self.said, ""
        self.finals.append(text)
        return AsrResult(text, final=True, confidence=0.9 if text else 0.0)

    def set_hints(self, phrases: Sequence[str]) -> None:
        """Hints change nothing here."""

    def close(self) -> None:
        """Nothing to release."""


def tone_speaker(seconds: float = 10.0) -> object:
    """A speaker whose every prompt is ``seconds`` of a quiet constant tone, ready-made."""

    def speak(play: ev.Play, values: Mapping[str, str]) -> tuple[Iterator[Chunk], bool]:
        return iter([np.full(int(RATE * seconds), BOT_LEVEL, dtype=np.int16)]), True

    return speak


def make_session(flow: Flow, asr: ScriptedAsr, *, prompt_s: float = 10.0) -> CallSession:
    """A session of ``flow`` with the fakes above (8 kHz, 20 ms frames)."""
    speaker = tone_speaker(prompt_s)
    return CallSession(DialogMachine(flow), vad=LevelVad(), asr=asr, speaker=speaker,  # type: ignore[arg-type]
                       settings=CallSettings(rate=RATE))


@dataclass
class Drive:
    """Run a session tick by tick: the caller is loud inside ``speech`` intervals (s), silent elsewhere."""

    session: CallSession
    speech: Sequence[tuple[float, float]] = ()
    bot: list[bool] = field(default_factory=list)  # per tick: the bot sent audio

    def until(self, end_s: float, start_s: float = 0.0) -> None:
        """Tick from ``start_s`` to ``end_s``; start the call first when ``start_s`` is 0."""
        if start_s == 0.0:
            self.session.start(0.0)
        for i in range(round(start_s / FRAME_S), round(end_s / FRAME_S)):
            t = round(i * FRAME_S, 6)
            if self.session.ended:
                return
            loud = any(a - 1e-9 <= t < b - 1e-9 for a, b in self.speech)
            samples = np.full(FRAME, CALLER_LEVEL if loud else 0, dtype=np.int16)
            self.session.caller_frame(AudioFrame(samples.tobytes(), RATE, i, t))
            self.bot.append(self.session.bot_frame(t) is not None)

    def times(self, kind: str) -> list[float]:
        """When the session's timeline recorded ``kind``."""
        return [e["t"] for e in self.session.timeline.of(kind)]
