"""Turn-taking and barge-in detection, sans-I/O: per-frame VAD decisions and time in, turn events out.

Rules, in the order they apply to each caller frame (20 ms, time stamps in s):

1. **Echo gate** (:class:`EchoGate`): the caller's line can carry the bot's own
   voice back. The gate learns the echo path from the power of the bot's
   outgoing frames and of the incoming ones while the caller is not taking a
   turn: it cross-correlates the two power envelopes over lags up to
   ``echo_window_ms`` (the delay is the best lag) and regresses incoming on
   outgoing power at that lag (the echo's gain). A voiced caller frame counts
   only if it is ``echo_margin_db`` louder than the echo expected at that delay.
   Until ``echo_learn_ms`` of bot output has been heard, the expected echo is
   the bot's recent loudest frame minus ``echo_return_loss_db``; the learned
   gain never exceeds that either.
2. **Endpointing** (:class:`Endpointer`): ``speech_start_ms`` of voiced frames
   in a row start a turn (the event is back-dated to the first voiced frame);
   an end silence of unvoiced frames ends it (dated at the last voiced frame);
   ``max_speech_ms`` cuts an endless turn.
3. **End silence from the transcript** (:class:`EarlyEnd`): the end silence
   follows the latest partial. ``early_end_silence_ms`` when it already names
   an intent with score >= ``early_end_score`` and holds
   ``early_end_min_words`` words (a shorter one must also have been stable for
   ``early_end_stable_ms``: "no, ..." and "sure, ..." are often just the start),
   or with score >= ``early_end_long_score`` and ``early_end_long_words`` words
   (a keyword covers less of a longer sentence, so it scores lower);
   the node's end silence plus ``hold_extra_ms`` when it ends in a filler or a
   conjunction ("and", "but", "um": the caller is not done); otherwise the
   node's ``end_silence_ms``.

What caller speech over the bot's prompt does (pause, confirm, resume) is decided in one place:
:mod:`voicebot.dialog.interruption`.

Nothing here reads a clock, touches audio buffers or does I/O.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from voicebot.dialog.backchannel import ends_open, word_count

# ----------------------------------------------------------------- events


@dataclass(frozen=True)
class SpeechStart:
    """The caller started speaking at ``at`` (the first voiced frame)."""

    at: float


@dataclass(frozen=True)
class SpeechEnd:
    """The caller's turn ended; ``at`` is the end of the last voiced frame. ``reason``: silence|early|held|max_speech."""

    at: float
    reason: str = "silence"


TurnEvent = SpeechStart | SpeechEnd


@dataclass(frozen=True)
class TurnSettings:
    """Tuning. Times in ms; levels in dBFS, differences in dB. Defaults suit 8 kHz telephone audio."""

    vad_threshold: float = 0.5
    min_energy_dbfs: float = -50.0  # quieter frames are never speech (line noise)
    speech_start_ms: int = 60
    end_silence_ms: int = 700  # until a node's Listen says otherwise
    max_speech_ms: int = 15000
    early_end_silence_ms: int = 180
    early_end_score: float = 0.8
    early_end_min_words: int = 2
    early_end_long_score: float = 0.7  # enough for a partial of early_end_long_words words or more
    early_end_long_words: int = 3
    early_end_stable_ms: int = 600  # a shorter confident partial must be unchanged this long
    hold_extra_ms: int = 300  # added to the end silence after a trailing "and", "but", "um"...
    echo_return_loss_db: float = 12.0  # the echo is at least this much quieter than the bot (until learned)
    echo_window_ms: int = 250  # how far back bot output can echo
    echo_margin_db: float = 6.0  # caller speech must be this much louder than the learned echo
    echo_learn_ms: int = 300  # bot output heard (caller silent) before the learned echo path is used


# -------------------------------------------------------------- strategies


def _power(dbfs: float) -> float:
    return 10 ** (dbfs / 10) if dbfs > -120 else 0.0


class EchoGate:
    """Rejects caller frames that the bot's own output, echoed back with a learned delay and gain, explains.

    Powers are linear (mean square, full scale = 1). Statistics are exponentially
    forgotten (time constant ``memory_frames``); a frame is learned from only
    ``hold`` frames later, and not at all if it turned out to start a turn.
    """

    def __init__(self, return_loss_db: float, window_ms: int, *, margin_db: float = 6.0, learn_ms: int = 300,
                 frame_ms: int = 20, memory_frames: int = 250, hold: int = 3) -> None:
        self.lags = max(1, round(window_ms / frame_ms)) + 1
        self.cap = 10 ** (-return_loss_db / 10)  # the largest echo gain believed (and the fallback)
        self.margin = 10 ** (margin_db / 10)
        self.learn_frames = max(1, learn_ms // frame_ms)
        self.frame_s = frame_ms / 1000
        self._decay = 1.0 - 1.0 / memory_frames
        self._hold = hold
        self._sent: deque[tuple[float, float]] = deque()  # (at, power) of bot frames not yet lined up
        self._bot: deque[float] = deque([0.0] * (self.lags + 1), maxlen=self.lags + 1)  # per caller frame, newest last
        self._queue: deque[tuple[float, tuple[float, ...]]] = deque()  # (caller power, bot lags) waiting to be learned
        self._last_at: float | None = None
        n = self.lags
        self._sxy, self._sxx, self._sx = [0.0] * n, [0.0] * n, [0.0] * n
        self._sy = self._syy = self._w = 0.0
        self.learned = 0  # frames learned while the bot was talking
        self.delay_frames: int | None = None  # the learned echo delay, in caller frames
        self.gain = self.cap  # the learned echo gain (power ratio)

    def bot_frame(self, energy_dbfs: float, at: float) -> None:
        """The bot sent a frame of this loudness at ``at``."""
        self._sent.append((at, _power(energy_dbfs)))

    def passes(self, energy_dbfs: float, at: float, learn: bool = True) -> bool:
        """True when a voiced caller frame this loud at ``at`` cannot be just the bot's echo.

        Call once per caller frame (voiced or not: every frame teaches the gate); ``learn`` False while the
        caller holds a turn.
        """
        self._advance(at)
        power = _power(energy_dbfs)
        if learn:
            self._queue.append((power, tuple(self._bot)[::-1][: self.lags]))
        while len(self._queue) > self._hold:
            self._learn(*self._queue.popleft())
        if not any(self._bot):
            return True
        if self.learned < self.learn_frames or self.delay_frames is None:
            return power > max(self._bot) * self.cap
        d = self.delay_frames
        near = [self._bot[-1 - k] for k in (d - 1, d, d + 1) if 0 <= k < self.lags]
        return power > self.gain * max(near) * self.margin

    @property
    def delay_ms(self) -> float:
        """The learned echo delay in ms (lag 0 is the bot frame sent just before the caller frame), or 0."""
        return (self.delay_frames + 1) * self.frame_s * 1000 if self.delay_frames is not None else 0.0

    def discard_recent(self) -> None:
        """The frames not yet learned belong to the caller's speech: forget them."""
        self._queue.clear()

    def _advance(self, at: float) -> None:
        """Line up the bot frames sent before ``at`` with caller frames: one slot per caller frame, newest last."""
        steps = self.lags + 1 if self._last_at is None else round((at - self._last_at) / self.frame_s)
        slots = [0.0] * min(max(1, steps), self.lags + 1)
        while self._sent and self._sent[0][0] < at - 1e-9:
            sent_at, sent = self._sent.popleft()
            back = int((at - sent_at - 1e-9) // self.frame_s)  # 0: the frame just before ``at``
            if back < len(slots):
                slots[-1 - back] = max(slots[-1 - back], sent)
        self._bot.extend(slots)
        self._last_at = at

    def _learn(self, y: float, xs: tuple[float, ...]) -> None:
        a = self._decay
        self._w = a * self._w + 1.0
        self._sy = a * self._sy + y
        self._syy = a * self._syy + y * y
        for k, x in enumerate(xs):
            self._sxy[k] = a * self._sxy[k] + x * y
            self._sxx[k] = a * self._sxx[k] + x * x
            self._sx[k] = a * self._sx[k] + x
        if any(xs):
            self.learned += 1
            self._estimate()

    def _estimate(self) -> None:
        """Best lag by normalised cross-correlation of the power envelopes; the regression slope there is the gain.

        A line whose level never changed says nothing about the lag: all of its level may be echo (digital
        silence: none of it).
        """
        w, my = self._w, self._sy / self._w
        var_y = self._syy / w - my * my
        best: tuple[float, int, float] | None = None  # (rho, lag, slope)
        for k in range(self.lags):
            mx = self._sx[k] / w
            var_x = self._sxx[k] / w - mx * mx
            if var_x <= 1e-18:
                continue  # the bot's level never changed at this lag: nothing to learn from
            cov = self._sxy[k] / w - mx * my
            if var_y > 1e-18:
                rho, slope = cov / math.sqrt(var_x * var_y), cov / var_x
            else:
                rho, slope = 0.0, my / mx if mx > 0 else 0.0
            if best is None or rho > best[0]:
                best = (rho, k, slope)
        if best is not None:
            self.delay_frames, self.gain = best[1], min(self.cap, max(0.0, best[2]))


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

    def frame(self, voiced: bool, at: float, duration_s: float,
              end_silence: tuple[float, str] | None = None) -> TurnEvent | None:
        """One frame starting at ``at``; a SpeechStart or SpeechEnd when the turn changes.

        ``end_silence``: (seconds, reason) to use instead of the node's end silence (reason "silence").
        """
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
        silence, reason = end_silence if end_silence is not None else (self.end_silence_s, "silence")
        if end - self._last_voiced_end >= silence - 1e-9:
            return self._end(self._last_voiced_end, reason)
        return None

    def voiced_for(self, at: float) -> float:
        """Seconds since the current turn started (0 when silent)."""
        return at - self._speech_start if self.in_speech else 0.0

    def _end(self, at: float, reason: str) -> SpeechEnd:
        self.in_speech, self._run_start = False, None
        return SpeechEnd(at, reason)


class EarlyEnd:
    """The end silence from the partial transcript: shorter when it names an intent, longer when it trails off."""

    def __init__(self, settings: TurnSettings, score: Callable[[str], float] | None) -> None:
        self.silence_s = settings.early_end_silence_ms / 1000
        self.min_score = settings.early_end_score
        self.min_words = settings.early_end_min_words
        self.long_score = settings.early_end_long_score
        self.long_words = settings.early_end_long_words
        self.stable_s = settings.early_end_stable_ms / 1000
        self.hold_s = settings.hold_extra_ms / 1000
        self._score = score
        self.confident = False
        self.open = False  # the partial ends in a filler or conjunction
        self._words = 0
        self._text = ""
        self._since = 0.0

    def partial(self, text: str, at: float, language: str = "en") -> None:
        """The latest partial transcript of the current turn, at ``at``."""
        if text != self._text:
            self._text, self._since = text, at
        self.open = ends_open(text, language)
        self._words = word_count(text, language)
        score = self._score(text) if self._score and text.strip() else 0.0
        self.confident = score >= self.min_score or (self._words >= self.long_words and score >= self.long_score)

    def end_silence(self, base_s: float, now: float) -> tuple[float, str] | None:
        """(end silence in s, reason) for this moment of the turn, or None for the node's own (``base_s``)."""
        if self.open:
            return base_s + self.hold_s, "held"
        if self.confident and (self._words >= self.min_words or now - self._since >= self.stable_s - 1e-9):
            return min(self.silence_s, base_s), "early"
        return None

    def reset(self) -> None:
        """A new turn starts."""
        self.confident = self.open = False
        self._words, self._text = 0, ""


# --------------------------------------------------------------- composite


class TurnTaker:
    """One call's turn-taking: feed caller frames, bot activity and partials; get turn events."""

    def __init__(self, settings: TurnSettings | None = None, intent_score: Callable[[str], float] | None = None) -> None:
        self.settings = s = settings or TurnSettings()
        self.echo = EchoGate(s.echo_return_loss_db, s.echo_window_ms, margin_db=s.echo_margin_db,
                             learn_ms=s.echo_learn_ms)
        self.endpointer = Endpointer(s)
        self.early = EarlyEnd(s, intent_score)
        self.echo_rejected = 0  # voiced frames the echo gate rejected (a metric)
        self._echo_only: deque[tuple[float, bool]] = deque(maxlen=64)  # (frame start, the echo explains it)

    def listen(self, end_silence_ms: int, max_speech_ms: int) -> None:
        """Apply a node's listening parameters (from the dialog machine's Listen command)."""
        self.endpointer.end_silence_s = end_silence_ms / 1000
        self.endpointer.max_speech_s = max_speech_ms / 1000

    def bot_frame(self, energy_dbfs: float, at: float) -> None:
        """The bot sent a frame of this loudness at ``at`` (for echo gating)."""
        self.echo.bot_frame(energy_dbfs, at)

    def partial(self, text: str, at: float, language: str) -> None:
        """A partial of the current turn at ``at`` (it sets the end silence)."""
        if self.endpointer.in_speech:
            self.early.partial(text, at, language)

    def echo_only(self, at: float) -> bool:
        """True when the caller frame that started at ``at`` (one of the last 64) held nothing but the bot's echo."""
        return any(abs(t - at) < 1e-6 and echo for t, echo in reversed(self._echo_only))

    def voiced_for(self, at: float) -> float:
        """Seconds of the caller's current turn at ``at`` (0 when silent)."""
        return self.endpointer.voiced_for(at)

    def caller_frame(self, speech_prob: float, energy_dbfs: float, at: float, duration_s: float) -> list[TurnEvent]:
        """One caller frame: its VAD probability, loudness, start time (s) and length (s)."""
        voiced = speech_prob >= self.settings.vad_threshold and energy_dbfs >= self.settings.min_energy_dbfs
        echo = not self.echo.passes(energy_dbfs, at, learn=not self.endpointer.in_speech)
        self._echo_only.append((at, echo))
        if echo and voiced:
            voiced = False
            self.echo_rejected += 1
        end_silence = self.early.end_silence(self.endpointer.end_silence_s, at + duration_s)
        change = self.endpointer.frame(voiced, at, duration_s, end_silence)
        if change is None:
            return []
        self.early.reset()
        if isinstance(change, SpeechStart):
            self.echo.discard_recent()
        return [change]
