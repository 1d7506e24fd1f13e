"""What :class:`~voicebot.callcore.CallCore` takes and gives: time-stamped events in, commands out (its rules 1-3).

Re-exported by :mod:`voicebot.callcore`; the driver (:class:`voicebot.call.CallSession`) answers each command that
asks for work with the event named in its docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicebot.asr.base import AsrResult
from voicebot.audio.frame import AudioFrame
from voicebot.dialog import events as ev
from voicebot.dialog.twopass import RecogniseTurn, TurnRecognised
from voicebot.handoff.protocol import HandoffCommand, HandoffEvent
from voicebot.player import Chunk, PromptAudio

__all__ = ["AudioReady", "CallerAudio", "CancelSynthesis", "CoreCommand", "CoreEvent", "Finalised", "FinishRecognition",
           "Recognise", "Recognised", "SendFrame", "SendSlot", "SetHints", "Synthesize"]


# ------------------------------------------------------------------ events in


@dataclass(frozen=True)
class CallerAudio:
    """One caller frame (``frame.captured_at``: its start, s) and its speech probability (0..1)."""

    frame: AudioFrame
    probability: float


@dataclass(frozen=True)
class Recognised:
    """A partial transcript of the current turn, at ``at``."""

    at: float
    result: AsrResult


@dataclass(frozen=True)
class Finalised:
    """The final transcript of the turn that ended, at ``at`` (compute charged when the clock is virtual)."""

    at: float
    result: AsrResult
    compute_ms: int = 0


@dataclass(frozen=True)
class AudioReady:
    """Synthesis of ``play_id`` (issued at ``at``) answered: its audio, first audio from ``ready_at`` (s)."""

    at: float
    play_id: int
    audio: PromptAudio
    ready_at: float
    cached: bool = False
    first_ms: int = 0  # compute until the first audio existed


@dataclass(frozen=True)
class SendSlot:
    """The send clock wants the bot's frame for the slot starting at ``at``."""

    at: float


CoreEvent = CallerAudio | Recognised | Finalised | TurnRecognised | AudioReady | SendSlot | ev.Event | HandoffEvent

# ---------------------------------------------------------------- commands out


@dataclass(frozen=True)
class Recognise:
    """Feed this frame to the recogniser; answer a changed hypothesis with :class:`Recognised`."""

    frame: AudioFrame


@dataclass(frozen=True)
class FinishRecognition:
    """End the recogniser's utterance at ``at``; answer with :class:`Finalised`."""

    at: float


@dataclass(frozen=True)
class SetHints:
    """Bias the recogniser's next utterance toward these phrases."""

    hints: tuple[str, ...]


@dataclass(frozen=True)
class Synthesize:
    """Produce the audio of ``play`` (templates filled from ``values``); answer with :class:`AudioReady`."""

    at: float
    play: ev.Play
    values: dict[str, str]


@dataclass(frozen=True)
class CancelSynthesis:
    """The prompt ``play_id`` is over: stop producing its audio."""

    play_id: int


@dataclass(frozen=True)
class SendFrame:
    """The bot's frame for the slot at ``at`` (None: silence)."""

    at: float
    audio: Chunk | None


CoreCommand = (Recognise | FinishRecognition | RecogniseTurn | SetHints | Synthesize | CancelSynthesis | SendFrame
               | ev.Command | HandoffCommand)
