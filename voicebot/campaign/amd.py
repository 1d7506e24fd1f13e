"""Answering-machine detection after answer, sans-I/O: per-frame voice activity and transcripts in, a verdict out.

The timing rules are Asterisk's ``app_amd`` (apps/app_amd.c, the version with
``maximumNumberOfWords = 2`` and ``iWordsCount > max`` → MACHINE), with its defaults
(:class:`AmdSettings`). Timers start at the answer (``answered_at``), never at early media.
Per frame of ``ms`` milliseconds:

- total audio time >= total analysis (5000 ms) → NOTSURE, ``TOOLONG``; also when the
  clock (``now`` - answer) passes it, frames or not (``NOAUDIODATA`` if none came).
- a *silent* frame adds to the running silence (reset by voice). Silence >= between-words
  (50 ms) ends the current word. Still before the first word and silence >= initial
  silence (2500 ms) → MACHINE, ``INITIALSILENCE``. After the first word and silence >=
  after-greeting silence (800 ms) → HUMAN, ``HUMAN``.
- a *voiced* frame adds to the word's and the greeting's voice. A word counts once it
  has >= min word length (100 ms) of voice after a word-ending silence; the first such
  word starts the greeting. Word longer than max word length (5000 ms) → MACHINE,
  ``MAXWORDLENGTH``; more than max words (2) → MACHINE, ``MAXWORDS``; voice in the
  greeting >= greeting (1500 ms) → MACHINE, ``LONGGREETING``.

Departures from app_amd, and why:

1. *Silent* is ``mean |sample| < silence_threshold`` (app_amd's DSP, 256) **or** the VAD
   says no voice (probability < ``vad_threshold``) when a VAD value is given: energy alone
   counts line noise as words. The VAD alone is not enough at 10 dB SNR (webrtcvad calls
   white hiss speech until it adapts): see 3.
2. Transcripts (:meth:`AnsweringMachineDetector.transcript`): a voicemail phrase ("leave a
   message", 请在提示音后留言…) is MACHINE, ``PHRASE``, at once, and also *revises* an
   earlier HUMAN/NOTSURE verdict (a greeting with a pause looks human to the timer);
   the revision is marked ``revised``. With ``confirm_machine`` the timing MACHINE
   verdicts (LONGGREETING, MAXWORDS, MAXWORDLENGTH) wait for the recogniser's first final
   transcript (or the total analysis time): a final with a human phrase ("who is this",
   喂, 哪位) and no voicemail phrase turns it into HUMAN, ``HUMANPHRASE``. INITIALSILENCE is
   never held: nobody spoke.
3. The silence threshold follows the line's noise: a frame is also silent when its mean |sample| is under
   ``noise_floor_ratio`` times the quietest frame since the answer (0 turns this off). On a clean line the
   quietest frame is near 0 and app_amd's 256 rules; at 10 dB SNR, hiss is otherwise a greeting that never
   ends. The first ``NOISE_FLOOR_AFTER_FRAMES`` frames only measure the line (they count as silence): one
   frame is no estimate of a line, and a burst of hiss at the answer must not open a "greeting" whose
   silence then reads HUMAN before anyone spoke. The ratio was chosen on the tuning part of
   bench/amd_bench.py, never on its held-out part.
4. app_amd's first state is "in word", so a voice that starts in the very first frame is
   not a counted word until a silence ends it; kept as is (the channel's first frames
   after answer are nearly always silent).

The bot holds its greeting (:attr:`AnsweringMachineDetector.hold_bot`) until a final verdict
or the total analysis time. After a MACHINE verdict, :class:`~voicebot.campaign.tones.BeepDetector`
finds the beep for a "leave a message after the tone" policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from voicebot.campaign.preanswer import normalise, phrase_in


class AmdStatus(Enum):
    """app_amd's AMDSTATUS."""

    HUMAN = "HUMAN"
    MACHINE = "MACHINE"
    NOTSURE = "NOTSURE"


class AmdReason(Enum):
    """app_amd's AMDCAUSE names, plus the two that come from the words (PHRASE, HUMANPHRASE)."""

    INITIALSILENCE = "INITIALSILENCE"
    LONGGREETING = "LONGGREETING"
    MAXWORDS = "MAXWORDS"
    MAXWORDLENGTH = "MAXWORDLENGTH"
    HUMAN = "HUMAN"
    TOOLONG = "TOOLONG"
    NOAUDIODATA = "NOAUDIODATA"
    PHRASE = "PHRASE"
    HUMANPHRASE = "HUMANPHRASE"


@dataclass(frozen=True)
class AmdSettings:
    """app_amd's parameters (its defaults; times in ms) and ours (``vad_threshold``, ``noise_floor_ratio``,
    ``use_phrases``, ``confirm_machine``: see the module doc's departures)."""

    initial_silence_ms: float = 2500.0
    greeting_ms: float = 1500.0
    after_greeting_silence_ms: float = 800.0
    total_analysis_ms: float = 5000.0
    min_word_ms: float = 100.0
    between_words_silence_ms: float = 50.0
    max_words: int = 2
    silence_threshold: float = 256.0  # mean |sample| of a 16-bit frame below which it is silent
    max_word_ms: float = 5000.0
    vad_threshold: float = 0.5
    noise_floor_ratio: float = 1.5
    use_phrases: bool = True
    confirm_machine: bool = False

    def __post_init__(self) -> None:
        times = {name: getattr(self, name) for name in ("initial_silence_ms", "greeting_ms", "after_greeting_silence_ms",
                                                         "total_analysis_ms", "min_word_ms", "between_words_silence_ms",
                                                         "max_word_ms")}
        bad = [f"{name}={value!r}" for name, value in times.items() if not value > 0]
        if self.max_words < 0 or self.silence_threshold < 0 or self.noise_floor_ratio < 0:
            bad.append(f"max_words={self.max_words!r}, silence_threshold={self.silence_threshold!r} and "
                       f"noise_floor_ratio={self.noise_floor_ratio!r} must not be negative")
        if not 0.0 <= self.vad_threshold <= 1.0:
            bad.append(f"vad_threshold={self.vad_threshold!r} must be between 0 and 1")
        if bad:
            raise ValueError("answering-machine detection settings: times must be positive (ms): " + "; ".join(bad))

    def earliest_verdict_ms(self) -> float:
        """The least audio any timing rule needs (MAXWORDS: max_words + 1 words, each after a word-ending silence)."""
        words = (self.max_words + 1) * (self.min_word_ms + self.between_words_silence_ms)
        return min(words, self.min_word_ms + self.after_greeting_silence_ms, self.greeting_ms, self.initial_silence_ms,
                   self.total_analysis_ms)


@dataclass(frozen=True)
class AmdVerdict:
    """The verdict: ``status`` because of ``reason``, at ``at`` (s, the clock of the events); ``revised`` when a
    voicemail phrase overturned an earlier verdict."""

    status: AmdStatus
    reason: AmdReason
    at: float
    detail: str = ""
    revised: bool = False


VOICEMAIL_PHRASES = (
    "leave a message", "leave your message", "leave me a message", "leave your name", "after the tone", "after the beep",
    "at the tone", "at the beep", "record your message", "not available", "unavailable", "voicemail", "voice mail",
    "mailbox", "can't take your call", "cannot take your call", "can't come to the phone", "unable to take your call",
    "you've reached", "you have reached", "get back to you", "call you back", "press pound",
    "留言", "提示音后", "嘀声后", "语音信箱", "无法接听", "暂时无法接听", "不方便接听", "录音",
)
HUMAN_PHRASES = (
    "who is this", "who's this", "who is calling", "who's calling", "who is it", "speaking", "can i help you",
    "what is it", "what's up", "哪位", "谁啊", "谁呀", "什么事", "喂",
)


def is_voicemail(text: str) -> bool:
    """True when ``text`` holds a voicemail phrase (en or zh)."""
    flat = normalise(text)
    return any(phrase_in(p, flat) for p in VOICEMAIL_PHRASES)


def is_human_reply(text: str) -> bool:
    """True when ``text`` holds what a person says on picking up, and no voicemail phrase."""
    flat = normalise(text)
    return not is_voicemail(text) and any(phrase_in(p, flat) for p in HUMAN_PHRASES)


NOISE_FLOOR_AFTER_FRAMES = 5  # frames after the answer that only measure the line's noise (100 ms at 20 ms)
_TIMING_MACHINE = (AmdReason.LONGGREETING, AmdReason.MAXWORDS, AmdReason.MAXWORDLENGTH)


class AnsweringMachineDetector:
    """One call's AMD, started at the answer (``answered_at``, s). Feed :meth:`frame`, :meth:`transcript`, :meth:`tick`."""

    def __init__(self, answered_at: float, settings: AmdSettings | None = None) -> None:
        self.settings = settings or AmdSettings()
        self.answered_at = answered_at
        self.total_ms = 0.0  # audio time fed
        self.voice_ms = 0.0
        self.silence_ms = 0.0
        self.word_ms = 0.0  # app_amd's consecutiveVoiceDuration
        self.words = 0
        self.frames = 0
        self.quietest = float("inf")  # the lowest mean |sample| of a frame since the answer
        self._in_word = True  # app_amd's first state is STATE_IN_WORD (see departure 4)
        self._in_greeting = False
        self.verdict: AmdVerdict | None = None
        self.pending: AmdVerdict | None = None  # a timing MACHINE waiting for the words (confirm_machine)

    @property
    def hold_bot(self) -> bool:
        """True while the bot must not speak: no final verdict yet and the analysis time not over."""
        return self.verdict is None

    @property
    def done(self) -> bool:
        return self.verdict is not None

    # ------------------------------------------------------------- events

    def frame(self, now: float, mean_abs: float, voice: float | None = None, ms: float = 20.0) -> AmdVerdict | None:
        """One frame of ``ms`` ms ending at ``now`` (s): its mean |sample| (int16 scale) and, when a VAD ran, its
        speech probability (or 0/1). Returns the verdict when this frame makes one."""
        if not ms > 0:
            raise ValueError(f"a frame lasts a positive number of milliseconds, got {ms!r}")
        if self.verdict is not None:
            return None
        if (timeout := self.tick(now)) is not None:
            return timeout
        self.frames += 1
        self.total_ms += ms
        s = self.settings
        if self.total_ms >= s.total_analysis_ms:
            return self._timeout(now)
        self.quietest = min(self.quietest, mean_abs)
        learning = s.noise_floor_ratio > 0 and self.frames <= NOISE_FLOOR_AFTER_FRAMES
        threshold = max(s.silence_threshold, s.noise_floor_ratio * self.quietest)
        silent = learning or mean_abs < threshold or (voice is not None and voice < s.vad_threshold)
        found = self._silent(ms) if silent else self._voiced(ms)
        if found is None:
            return None
        reason, detail = found
        status = AmdStatus.HUMAN if reason is AmdReason.HUMAN else AmdStatus.MACHINE
        verdict = AmdVerdict(status, reason, now, detail)
        if s.use_phrases and s.confirm_machine and reason in _TIMING_MACHINE:
            self.pending = self.pending or verdict
            return None
        return self._decide(verdict)

    def transcript(self, now: float, text: str, final: bool = True) -> AmdVerdict | None:
        """What the recogniser heard so far (a partial, or the ``final`` text of a turn)."""
        if not self.settings.use_phrases:
            return None
        if is_voicemail(text):
            if self.verdict is None:
                return self._decide(AmdVerdict(AmdStatus.MACHINE, AmdReason.PHRASE, now, "voicemail phrase"))
            if self.verdict.status is not AmdStatus.MACHINE:
                self.verdict = AmdVerdict(AmdStatus.MACHINE, AmdReason.PHRASE, now, "voicemail phrase", revised=True)
                return self.verdict
            return None
        if self.verdict is None and self.pending is not None and final:
            if is_human_reply(text):
                return self._decide(AmdVerdict(AmdStatus.HUMAN, AmdReason.HUMANPHRASE, now, "human phrase"))
            return self._decide(AmdVerdict(self.pending.status, self.pending.reason, now, self.pending.detail))
        return None

    def tick(self, now: float) -> AmdVerdict | None:
        """The clock alone: past the total analysis time since the answer, the verdict is given (NOTSURE, or the
        held MACHINE)."""
        if self.verdict is None and 1000.0 * (now - self.answered_at) >= self.settings.total_analysis_ms:
            return self._timeout(now)
        return None

    # ------------------------------------------------------------- app_amd's two branches

    def _silent(self, ms: float) -> tuple[AmdReason, str] | None:
        s = self.settings
        self.silence_ms += ms
        if self.silence_ms >= s.between_words_silence_ms:
            self._in_word = False
            self.word_ms = 0.0
        if not self._in_greeting and self.silence_ms >= s.initial_silence_ms:
            return AmdReason.INITIALSILENCE, f"INITIALSILENCE-{self.silence_ms:.0f}-{s.initial_silence_ms:.0f}"
        if self._in_greeting and self.silence_ms >= s.after_greeting_silence_ms:
            return AmdReason.HUMAN, f"HUMAN-{self.silence_ms:.0f}-{s.after_greeting_silence_ms:.0f}"
        return None

    def _voiced(self, ms: float) -> tuple[AmdReason, str] | None:
        s = self.settings
        self.silence_ms = 0.0
        self.word_ms += ms
        self.voice_ms += ms
        if self.word_ms >= s.min_word_ms and not self._in_word:
            self.words += 1
            self._in_word = True
        if self.word_ms >= s.max_word_ms:
            return AmdReason.MAXWORDLENGTH, f"MAXWORDLENGTH-{self.word_ms:.0f}"
        if self.words > s.max_words:
            return AmdReason.MAXWORDS, f"MAXWORDS-{self.words}-{s.max_words}"
        if self._in_greeting and self.voice_ms >= s.greeting_ms:
            return AmdReason.LONGGREETING, f"LONGGREETING-{self.voice_ms:.0f}-{s.greeting_ms:.0f}"
        if self.word_ms >= s.min_word_ms:
            self._in_greeting = True
        return None

    def _timeout(self, now: float) -> AmdVerdict:
        if self.pending is not None:
            return self._decide(AmdVerdict(self.pending.status, self.pending.reason, now, self.pending.detail))
        reason = AmdReason.TOOLONG if self.frames else AmdReason.NOAUDIODATA
        return self._decide(AmdVerdict(AmdStatus.NOTSURE, reason, now, f"{reason.value}-{self.total_ms:.0f}"))

    def _decide(self, verdict: AmdVerdict) -> AmdVerdict:
        self.verdict = verdict
        self.pending = None
        return verdict
