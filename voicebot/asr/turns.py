"""Turn-taking and barge-in detection, sans-I/O: per-frame VAD decisions and time in, turn events out.

Rules, in the order they apply to each caller frame (20 ms, time stamps in s):

1. **Echo gate** (:class:`EchoGate`): while the bot is talking, the caller's
   line can carry the bot's own voice back. A voiced caller frame counts only
   if it is louder than the bot's recent output minus the echo return loss.
2. **Endpointing** (:class:`Endpointer`): ``speech_start_ms`` of voiced frames
   in a row start a turn (the event is back-dated to the first voiced frame);
   ``end_silence_ms`` of unvoiced frames end it (dated at the last voiced frame);
   ``max_speech_ms`` cuts an endless turn.
3. **Early end of turn** (:class:`EarlyEnd`): when the latest partial
   transcript already matches an intent with a high score, a shorter silence
   ends the turn.
4. **Barge-in** (:class:`BargeInGate`): while the bot talks, speech that lasts
   ``min_speech_ms`` outside a protected window pauses the bot at once
   (:class:`PauseBot`). Whether the interruption stands is the dialog machine's
   call (minimum words, backchannels); if it does not, the driver resumes.

Nothing here reads a clock, touches audio buffers or does I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from voicebot.dialog.flow import BargeIn, BargeInMode

# ----------------------------------------------------------------- events


@dataclass(frozen=True)
class SpeechStart:
    """The caller started speaking at ``at`` (the first voiced frame)."""

    at: float


@dataclass(frozen=True)
class SpeechEnd:
    """The caller's turn ended; ``at`` is the end of the last voiced frame. ``reason``: silence|early|max_speech."""

    at: float
    reason: str = "silence"


@dataclass(frozen=True)
class PauseBot:
    """Stop sending bot audio now: the caller is talking over the bot."""

    at: float


TurnEvent = SpeechStart | SpeechEnd | PauseBot


@dataclass(frozen=True)
class TurnSettings:
    """Tuning. Times in ms; levels in dBFS. Defaults suit 8 kHz telephone audio."""

    vad_threshold: float = 0.5
    min_energy_dbfs: float = -50.0  # quieter frames are never speech (line noise)
    speech_start_ms: int = 60
    end_silence_ms: int = 700
    max_speech_ms: int = 15000
    early_end_silence_ms: int = 300
    early_end_score: float = 0.9
    echo_return_loss_db: float = 12.0  # how much quieter the echo of the bot is than the bot, at least
    echo_window_ms: int = 250  # how far back bot output can echo


# -------------------------------------------------------------- strategies


class EchoGate:
    """Rejects caller frames whose loudness the bot's own recent output explains."""

    def __init__(self, return_loss_db: float, window_ms: int) -> None:
        self.return_loss_db = return_loss_db
        self.window_s = window_ms / 1000
        self._bot: deque[tuple[float, float]] = deque()  # (at, dBFS) of recent bot frames

    def bot_frame(self, energy_dbfs: float, at: float) -> None:
        """The bot sent a frame of this loudness at ``at``."""
        self._bot.append((at, energy_dbfs))
        while self._bot and self._bot[0][0] < at - self.window_s:
            self._bot.popleft()

    def passes(self, energy_dbfs: float, at: float) -> bool:
        """True when a caller frame this loud at ``at`` cannot be just the bot's echo."""
        recent = [level for t, level in self._bot if t >= at - self.window_s]
        if not recent:
            return True
        return energy_dbfs > max(recent) - self.return_loss_db


class Endpointer:
    """Speech start and end from per-frame voiced/unvoiced decisions."""

    def __init__(self, settings: TurnSettings) -> None:
        self.start_s = settings.speech_start_ms / 1000
        self.end_silence_s = settings.end_silence_ms / 1000
        self.max_speech_s = settings.max_speech_ms / 1000
        self.in_speech = False
        self._run_start: float | None = None  # first voiced frame of the current run
        self._speech_start = 0.0
        self._last_voiced_end = 0.0

    def frame(self, voiced: bool, at: float, duration_s: float, end_silence_s: float | None = None) -> TurnEvent | None:
        """One frame starting at ``at``; returns a SpeechStart or SpeechEnd when the turn changes."""
        end = at + duration_s
        if not self.in_speech:
            if not voiced:
                self._run_start = None
                return None
            self._run_start = at if self._run_start is None else self._run_start
            if end - self._run_start >= self.start_s - 1e-9:
                self.in_speech, self._speech_start, self._last_voiced_end = True, self._run_start, end
                return SpeechStart(self._run_start)
            return None
        if voiced:
            self._last_voiced_end = end
        if end - self._speech_start >= self.max_speech_s:
            return self._end(end, "max_speech")
        silence = end_silence_s if end_silence_s is not None else self.end_silence_s
        if end - self._last_voiced_end >= silence - 1e-9:
            return self._end(self._last_voiced_end, "silence" if end_silence_s is None else "early")
        return None

    def voiced_for(self, at: float) -> float:
        """Seconds since the current turn started (0 when silent)."""
        return at - self._speech_start if self.in_speech else 0.0

    def _end(self, at: float, reason: str) -> SpeechEnd:
        self.in_speech, self._run_start = False, None
        return SpeechEnd(at, reason)


class EarlyEnd:
    """Shortens the end-of-turn silence when the partial transcript already names an intent."""

    def __init__(self, settings: TurnSettings, score: Callable[[str], float] | None) -> None:
        self.silence_s = settings.early_end_silence_ms / 1000
        self.min_score = settings.early_end_score
        self._score = score
        self.confident = False

    def partial(self, text: str) -> None:
        """The latest partial transcript of the current turn."""
        self.confident = bool(self._score and text.strip() and self._score(text) >= self.min_score)

    def end_silence_s(self) -> float | None:
        """The shortened end silence, or None to use the normal one."""
        return self.silence_s if self.confident else None

    def reset(self) -> None:
        """A new turn starts."""
        self.confident = False


class BargeInGate:
    """Decides when caller speech over the bot pauses the bot (once per turn)."""

    def __init__(self) -> None:
        self.policy = BargeIn()
        self.bot_since: float | None = None  # when the current prompt started being heard
        self._paused = False

    def bot_started(self, at: float) -> None:
        """A prompt started being heard at ``at``."""
        self.bot_since, self._paused = at, False

    def bot_stopped(self) -> None:
        """The bot is silent."""
        self.bot_since = None

    def new_turn(self) -> None:
        """A caller turn started or ended: the next one may pause the bot again."""
        self._paused = False

    def check(self, voiced_for_s: float, at: float) -> PauseBot | None:
        """Pause if the caller has spoken long enough over an interruptible prompt."""
        if self.bot_since is None or self._paused or voiced_for_s <= 0:
            return None
        policy = self.policy
        if policy.mode is BargeInMode.OFF:
            return None
        if policy.mode is BargeInMode.PROTECTED and at - self.bot_since < policy.protect_ms / 1000:
            return None
        if voiced_for_s >= policy.min_speech_ms / 1000 - 1e-9:
            self._paused = True
            return PauseBot(at)
        return None


# --------------------------------------------------------------- composite


class TurnTaker:
    """One call's turn-taking: feed caller frames, bot activity and partials; get turn events."""

    def __init__(self, settings: TurnSettings | None = None, intent_score: Callable[[str], float] | None = None) -> None:
        self.settings = settings or TurnSettings()
        self.echo = EchoGate(self.settings.echo_return_loss_db, self.settings.echo_window_ms)
        self.endpointer = Endpointer(self.settings)
        self.early = EarlyEnd(self.settings, intent_score)
        self.barge = BargeInGate()
        self.echo_rejected = 0  # voiced frames the echo gate rejected (a metric)

    def listen(self, end_silence_ms: int, max_speech_ms: int, barge_in: BargeIn) -> None:
        """Apply a node's listening parameters (from the dialog machine's Listen command)."""
        self.endpointer.end_silence_s = end_silence_ms / 1000
        self.endpointer.max_speech_s = max_speech_ms / 1000
        self.barge.policy = barge_in

    def set_barge_in(self, barge_in: BargeIn) -> None:
        """The barge-in policy of the prompt about to play (OFF for nodes that do not listen)."""
        self.barge.policy = barge_in

    def bot_started(self, at: float) -> None:
        """The bot's prompt is being heard from ``at``."""
        self.barge.bot_started(at)

    def bot_stopped(self) -> None:
        """The bot stopped talking (end of prompt, stop or pause)."""
        self.barge.bot_stopped()

    def bot_frame(self, energy_dbfs: float, at: float) -> None:
        """The bot sent a frame of this loudness at ``at`` (for echo gating)."""
        self.echo.bot_frame(energy_dbfs, at)

    def partial(self, text: str) -> None:
        """A partial transcript of the current turn arrived."""
        if self.endpointer.in_speech:
            self.early.partial(text)

    def caller_frame(self, speech_prob: float, energy_dbfs: float, at: float, duration_s: float) -> list[TurnEvent]:
        """One caller frame: its VAD probability, loudness, start time (s) and length (s)."""
        voiced = speech_prob >= self.settings.vad_threshold and energy_dbfs >= self.settings.min_energy_dbfs
        if voiced and not self.echo.passes(energy_dbfs, at):
            voiced = False
            self.echo_rejected += 1
        events: list[TurnEvent] = []
        change = self.endpointer.frame(voiced, at, duration_s, self.early.end_silence_s())
        if change is not None:
            events.append(change)
            self.early.reset()
            self.barge.new_turn()
        pause = self.barge.check(self.endpointer.voiced_for(at + duration_s), at + duration_s)
        if pause is not None:
            events.append(pause)
        return events
