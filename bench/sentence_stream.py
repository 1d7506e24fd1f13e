"""Sentence-by-sentence streaming synthesis with barge-in cancellation (for bench/tts_bench.py).

The engine does not use this: a call's prompts are produced by its synthesis worker (voicebot/synthesis.py,
docs/decisions.md entry 4). It lives in bench/ to measure Piper's time to first audio with and without fast start.

:class:`SentenceStream` splits text into sentences, synthesizes them one by one
on a background *native* thread, resamples each sentence in one shot from the
voice's rate to the call's rate, and hands out exact ``frame_ms`` frames
through a bounded buffer (``max_ahead_ms`` of audio, 4 s by default, so
synthesis runs ahead of playback without running away).

Time to first audio: with ``fast_start`` a long first sentence is cut in two
at a word boundary (at a comma if one comes early), so the first, short piece
(about 3 words) is heard while the rest is synthesized. Only the first
sentence is cut; the pause at the cut is trimmed to a word gap.

Cancellation (barge-in): :meth:`SentenceStream.cancel` returns at once; no
frame is handed out after it returns and the buffered frames are dropped. An
onnxruntime run cannot be interrupted, so a sentence being synthesized when
``cancel`` is called finishes (on the background thread), its audio is
discarded, and no further sentence is started.

gevent: the worker is always a native OS thread, started with the *original*
``_thread.start_new_thread`` when gevent has patched threading (a
``threading.Thread`` taken with ``monkey.get_original`` still runs as a
greenlet, because the module it lives in is patched), and every lock here is
an original, native lock. Iterating blocks the calling native thread; a gevent
player should call :meth:`SentenceStream.poll` on its 20 ms tick instead.
"""

from __future__ import annotations

import contextlib
import re
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from voicebot.audio.frame import AudioFrame
from voicebot.audio.resample import SUPPORTED_RATES, resample
from voicebot.tts.base import VoiceError
from voicebot.tts.normalize import normalize_text
from voicebot.tts.piper_voice import PiperVoice
from voicebot.tts.sentences import split_sentences

Int16Array = npt.NDArray[np.int16]
SynthFn = Callable[[str], Int16Array]

FADE_MS = 3.0  # raised-cosine fade at both ends of every piece: no clicks at joins
HEAD_LETTERS = 12  # fast start: the first piece is the shortest word prefix with this many letters (and 2+ words)
HEAD_MIN_WORDS = 7  # fast start only cuts sentences of at least this many words
HEAD_MAX_COMMA_WORDS = 6  # a comma within this many words is the preferred cut
SILENCE_LEVEL = 0.01 * 32768  # below this (-40 dBFS, over 5 ms windows) counts as silence when trimming a cut
KEEP_AT_CUT_MS = (40.0, 20.0)  # silence kept after the first piece and before the second at a fast-start cut


# --------------------------------------------------------------------------- native threads and locks


def _original(module: str, name: str) -> Any:
    """``module.name`` as it was before gevent monkey-patching (or as it is, without gevent)."""
    try:
        from gevent import monkey

        if monkey.is_module_patched(module) or monkey.is_module_patched("threading"):
            return monkey.get_original(module, name)
    except ImportError:
        pass
    return getattr(__import__(module), name)


def native_lock() -> Any:
    """A plain OS lock, even under gevent (``_thread.allocate_lock`` before patching)."""
    return _original("_thread", "allocate_lock")()


class _Wakeup:
    """An auto-reset event made of one native lock: ``set`` wakes one ``wait``."""

    def __init__(self) -> None:
        self._lock = native_lock()
        self._lock.acquire()

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):  # already set
            self._lock.release()

    def wait(self, timeout: float) -> None:
        self._lock.acquire(timeout=timeout)


class NativeThread:
    """A daemon OS thread running ``target()``; ``join``/``is_alive`` like ``threading.Thread``."""

    def __init__(self, target: Callable[[], None]) -> None:
        self._done = native_lock()
        self._done.acquire()
        self._target = target
        _original("_thread", "start_new_thread")(self._run, ())

    def _run(self) -> None:
        try:
            self._target()
        finally:
            self._done.release()

    def is_alive(self) -> bool:
        """Whether ``target`` is still running."""
        return bool(self._done.locked())

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (forever when None); True when the thread has ended."""
        if self._done.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            self._done.release()
            return True
        return False


def split_head(sentence: str, language: str = "en") -> tuple[str, str] | None:
    """The fast-start cut of a first sentence: (short head, rest), or None when it should not be cut.

    en: at a comma within the first ``HEAD_MAX_COMMA_WORDS`` words, else after the
    shortest 2+ word prefix with ``HEAD_LETTERS`` letters, leaving 3+ words.
    zh: only at ，、 within the first 10 characters (a cut elsewhere may split a word).
    """
    if language.lower().startswith(("zh", "cmn", "yue")):
        found = re.search(r"[，、,]", sentence[:10])
        return (sentence[:found.end()], sentence[found.end():]) if found and sentence[found.end():].strip() else None
    words = sentence.split()
    if len(words) < HEAD_MIN_WORDS:
        return None
    cut, letters = 0, 0
    for index, word in enumerate(words[:HEAD_MAX_COMMA_WORDS]):
        if word.endswith(",") and index >= 1:
            cut = index + 1
            break
    if not cut:
        for index, word in enumerate(words):
            letters += sum(c.isalpha() for c in word)
            if index >= 1 and letters >= HEAD_LETTERS:
                cut = index + 1
                break
    if not cut or len(words) - cut < 3:
        return None
    return " ".join(words[:cut]), " ".join(words[cut:])


class Piece(NamedTuple):
    """One synthesis call: text, and whether its start/end is a fast-start cut (trimmed to a word gap)."""

    text: str
    cut_before: bool = False
    cut_after: bool = False


def plan_pieces(text: str, language: str = "en", fast_start: bool = True) -> list[Piece]:
    """The synthesis calls for ``text``, in order."""
    pieces = [Piece(s) for s in split_sentences(text, language)]
    if fast_start and pieces and (head := split_head(pieces[0].text, language)):
        pieces[:1] = [Piece(head[0], cut_after=True), Piece(head[1], cut_before=True)]
    return pieces


# --------------------------------------------------------------------------- audio shaping


def trim_silence(audio: Int16Array, rate: int, *, start_keep_ms: float | None = None,
                 end_keep_ms: float | None = None) -> Int16Array:
    """``audio`` with leading/trailing silence cut down to ``*_keep_ms`` (None: untouched)."""
    window = max(1, rate // 200)  # 5 ms
    usable = len(audio) // window * window
    if usable == 0:
        return audio
    peaks = np.abs(audio[:usable].astype(np.int32)).reshape(-1, window).max(axis=1)
    loud = np.flatnonzero(peaks >= SILENCE_LEVEL)
    if len(loud) == 0:
        return audio
    begin, end = 0, len(audio)
    if start_keep_ms is not None:
        begin = max(0, int(loud[0]) * window - int(rate * start_keep_ms / 1000))
    if end_keep_ms is not None:
        end = min(len(audio), (int(loud[-1]) + 1) * window + int(rate * end_keep_ms / 1000))
    return audio[begin:end]


def fade_edges(audio: Int16Array, rate: int, ms: float = FADE_MS) -> Int16Array:
    """``audio`` with a raised-cosine fade-in and fade-out of ``ms`` each."""
    n = min(len(audio) // 2, int(rate * ms / 1000))
    if n == 0:
        return audio
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)
    out = audio.astype(np.float32)
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return np.round(out).astype(np.int16)


class _Framer:
    """Cuts a run of audio pieces into exact frames, carrying the remainder from one piece to the next."""

    def __init__(self, rate: int, frame_ms: int) -> None:
        self.rate, self.size = rate, rate * frame_ms // 1000
        if self.size <= 0:
            raise ValueError(f"frame of {frame_ms} ms at {rate} Hz holds no sample")
        self._carry = np.zeros(0, dtype=np.int16)
        self._seq = 0

    def push(self, audio: Int16Array) -> Iterator[AudioFrame]:
        """The whole frames now available."""
        data = np.concatenate([self._carry, audio]) if len(self._carry) else audio
        whole = len(data) // self.size * self.size
        self._carry = data[whole:].copy()
        for start in range(0, whole, self.size):
            yield AudioFrame(data[start:start + self.size].tobytes(), self.rate, self._seq)
            self._seq += 1

    def flush(self) -> Iterator[AudioFrame]:
        """The last partial frame, padded with silence."""
        if len(self._carry):
            yield from self.push(np.zeros(self.size - len(self._carry), dtype=np.int16))


# --------------------------------------------------------------------------- the stream


class _State:
    """What the worker thread and the consumer share (the worker holds no reference to the stream itself)."""

    def __init__(self, capacity: int) -> None:
        self.frames: deque[AudioFrame] = deque()
        self.capacity = capacity
        self.lock = native_lock()
        self.data_ready, self.space_ready = _Wakeup(), _Wakeup()
        self.cancelled = self.finished = False
        self.error: BaseException | None = None
        self.created = time.perf_counter()
        self.first_audio_s: float | None = None
        self.synth_seconds = 0.0
        self.audio_seconds = 0.0
        self.piece_ends: list[int] = []  # sample offset (call rate) where each piece ends

    def put(self, frame: AudioFrame) -> bool:
        """Queue ``frame``, waiting for room; False once cancelled."""
        while True:
            with self.lock:
                if self.cancelled:
                    return False
                if len(self.frames) < self.capacity:
                    if self.first_audio_s is None:
                        self.first_audio_s = time.perf_counter() - self.created
                    self.frames.append(frame)
                    self.audio_seconds += frame.duration_s
                    self.data_ready.set()
                    return True
            self.space_ready.wait(0.05)

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            self.frames.clear()
        self.data_ready.set()
        self.space_ready.set()

    def finish(self, error: BaseException | None) -> None:
        with self.lock:
            self.finished, self.error = True, error
        self.data_ready.set()


def _work(state: _State, synth: SynthFn, pieces: list[Piece], source_rate: int, framer: _Framer) -> None:
    """The worker thread: synthesize piece by piece, queue frames, stop at cancel."""
    error: BaseException | None = None
    try:
        for piece in pieces:
            if state.cancelled:
                return
            started = time.perf_counter()
            audio = _render(synth, piece, source_rate, framer.rate)
            state.synth_seconds += time.perf_counter() - started
            state.piece_ends.append((state.piece_ends[-1] if state.piece_ends else 0) + len(audio))
            if state.cancelled:  # the run could not be interrupted: drop its audio
                return
            if not all(state.put(frame) for frame in framer.push(audio)):
                return
        all(state.put(frame) for frame in framer.flush())
    except Exception as exc:  # handed to the consumer
        error = exc
    finally:
        state.finish(error)


def _render(synth: SynthFn, piece: Piece, source_rate: int, rate: int) -> Int16Array:
    """One piece at the call's rate: synthesized, cut pauses trimmed, resampled, edges faded."""
    audio = np.asarray(synth(piece.text), dtype=np.int16)
    if piece.cut_before or piece.cut_after:
        audio = trim_silence(audio, source_rate, start_keep_ms=KEEP_AT_CUT_MS[1] if piece.cut_before else None,
                             end_keep_ms=KEEP_AT_CUT_MS[0] if piece.cut_after else None)
    return fade_edges(resample(audio, source_rate, rate), rate)


class SentenceStream:
    """One utterance: frames of ``frame_ms`` at ``rate`` Hz from ``synth`` (text -> int16 at ``source_rate``).

    Frames carry ``seq`` from 0 and ``captured_at`` 0.0 (the player stamps time).
    ``first_audio_s``: seconds from creation to the first frame being ready
    (None until then); ``synth_seconds``: worker time spent synthesizing and
    resampling; ``audio_seconds``: audio queued so far.
    """

    def __init__(self, synth: SynthFn, text: str, rate: int, frame_ms: int = 20, *, source_rate: int,
                 language: str = "en", fast_start: bool = True, max_ahead_ms: int = 4000) -> None:
        for hz in (rate, source_rate):
            if hz not in SUPPORTED_RATES:
                raise ValueError(f"unsupported sample rate {hz} Hz; supported: {SUPPORTED_RATES}")
        framer = _Framer(rate, frame_ms)
        self.rate, self.frame_ms = rate, frame_ms
        self._state = _State(capacity=max(1, max_ahead_ms // frame_ms))
        self.pieces = pieces = plan_pieces(text, language, fast_start)
        state = self._state
        weakref.finalize(self, _State.cancel, state)  # an abandoned stream stops its worker
        self._thread = NativeThread(lambda: _work(state, synth, pieces, source_rate, framer))

    @property
    def first_audio_s(self) -> float | None:
        """Seconds from creation to the first frame being ready."""
        return self._state.first_audio_s

    @property
    def synth_seconds(self) -> float:
        """Worker seconds spent synthesizing (and resampling) so far."""
        return self._state.synth_seconds

    @property
    def audio_seconds(self) -> float:
        """Seconds of audio queued so far."""
        return self._state.audio_seconds

    @property
    def piece_ends(self) -> list[int]:
        """Sample offsets (at ``rate``, from the first frame) where each synthesized piece ends: the joins."""
        return list(self._state.piece_ends)

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._state.cancelled

    @property
    def done(self) -> bool:
        """True once no frame will come any more (finished and drained, or cancelled)."""
        state = self._state
        return state.cancelled or (state.finished and not state.frames)

    def cancel(self) -> None:
        """Stop now: nothing more is yielded after this returns; the worker stops within the current sentence."""
        self._state.cancel()

    def poll(self) -> AudioFrame | None:
        """The next frame if one is ready, else None (never blocks; for a gevent player's tick).

        Raises VoiceError, once, when synthesis failed.
        """
        taken = self._take()
        return taken if isinstance(taken, AudioFrame) else None

    def _take(self) -> AudioFrame | bool:
        """A frame, True when no frame will come any more, or False when none is ready yet."""
        state = self._state
        with state.lock:
            if state.cancelled:
                return True
            if state.frames:
                frame = state.frames.popleft()
                state.space_ready.set()
                return frame
            if state.finished and state.error is not None:
                error, state.error = state.error, None
                raise VoiceError(f"speech synthesis failed: {error}") from error
            return state.finished

    def __iter__(self) -> Iterator[AudioFrame]:
        return self

    def __next__(self) -> AudioFrame:
        """The next frame, waiting for it (blocks this native thread)."""
        while True:
            taken = self._take()
            if isinstance(taken, AudioFrame):
                return taken
            if taken:
                raise StopIteration
            self._state.data_ready.wait(0.05)

    def is_alive(self) -> bool:
        """Whether the worker thread is still running."""
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker thread; True when it has ended."""
        return self._thread.join(timeout)


def voice_stream(voice: PiperVoice, text: str, rate: int, frame_ms: int = 20, *, normalize: bool = True,
                 fast_start: bool = True) -> SentenceStream:
    """``text`` in ``voice`` as ``frame_ms`` frames at ``rate`` Hz, synthesized in the background sentence by sentence.

    ``fast_start`` cuts a long first sentence so the first audio comes sooner
    (turn it off for offline rendering, where prosody matters more than latency).
    """
    said = normalize_text(text, voice.language) if normalize else text
    return SentenceStream(voice.synthesize_sentence, said, rate, frame_ms, source_rate=voice.sample_rate,
                          language=voice.language, fast_start=fast_start)
