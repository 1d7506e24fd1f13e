"""Where a call's accurate-pass requests go: :class:`~voicebot.dialog.twopass.RecogniseTurn` in, an answer out.

The call core asks for the accurate pass (Whisper on the turn's audio) and waits for a
:class:`~voicebot.dialog.twopass.TurnRecognised`; an executor here runs it:

* :class:`InlineAccurate` (the simulator): decodes now on the calling thread with one loaded
  :class:`~voicebot.asr.whisper.WhisperRecogniser`; with ``charge_compute`` the decode time is charged to the
  call's virtual clock (the answer comes that much later), so simulated latencies are honest.
* :class:`PooledAccurate` (FreeSWITCH): hands the request to the shared
  :class:`~voicebot.asr.whisper_pool.WhisperPool` (worker processes: never the gevent hub, never the call's
  thread); the answer is posted to the call's thread by the function :meth:`bind` gives it.
* :class:`NoAccurate`: no accurate pass is configured: every request is answered at once with an error, so the
  fast final stands.

An executor never raises for a failed decode: the failure is an answer with ``error`` set.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from voicebot.asr.whisper import WhisperRecogniser
from voicebot.asr.whisper_pool import AccurateAnswer, WhisperPool
from voicebot.dialog.twopass import RecogniseTurn, TurnRecognised
from voicebot.logs import get_logger

Deliver = Callable[[TurnRecognised], None]
Post = Callable[[Callable[[], None]], None]  # runs a callable on the call's own thread
NOT_CONFIGURED = "no accurate pass is configured; the first pass's words stand"


class AccuratePass(Protocol):
    """Where a call's accurate-pass requests go."""

    def start(self, request: RecogniseTurn, deliver: Deliver) -> None:
        """Decode ``request``'s audio; call ``deliver`` (on the call's thread) with the answer."""
        ...

    def bind(self, post: Post) -> None:
        """Answers from other threads are handed to the call's thread through ``post``."""
        ...


def confidence_of(avg_logprob: float) -> float:
    """Whisper's mean token log-probability as a 0..1 confidence (its geometric-mean token probability)."""
    return max(0.0, min(1.0, math.exp(avg_logprob)))


class NoAccurate:
    """No accurate pass: each request is answered at once with :data:`NOT_CONFIGURED`."""

    def start(self, request: RecogniseTurn, deliver: Deliver) -> None:
        deliver(TurnRecognised(request.at, request.turn, error=NOT_CONFIGURED))

    def bind(self, post: Post) -> None:
        """Nothing runs elsewhere."""


class InlineAccurate:
    """Decode on the calling thread (the simulator); ``charge_compute``: the answer comes after the decode time."""

    def __init__(self, recogniser: WhisperRecogniser, charge_compute: bool = False) -> None:
        self.recogniser = recogniser
        self.charge_compute = charge_compute

    def start(self, request: RecogniseTurn, deliver: Deliver) -> None:
        started = time.perf_counter()
        try:
            samples = np.frombuffer(request.audio, dtype="<i2")
            result = self.recogniser.transcribe(samples, request.rate, request.hints, request.language)
        except Exception as err:  # a failed decode is an answer: the fast final stands
            get_logger("asr.accurate").error("asr.accurate_failed", error=repr(err))
            deliver(TurnRecognised(request.at, request.turn, error=f"{type(err).__name__}: {err}"))
            return
        spent = time.perf_counter() - started
        at = request.at + (spent if self.charge_compute else 0.0)
        deliver(TurnRecognised(at, request.turn, result.text, None, confidence_of(result.avg_logprob),
                               round(spent * 1000)))

    def bind(self, post: Post) -> None:
        """Runs on the caller's thread already."""


class PooledAccurate:
    """Decode in the shared Whisper worker pool; answers reach the call's thread through the bound ``post``."""

    def __init__(self, pool: WhisperPool) -> None:
        self.pool = pool
        self.post: Post | None = None

    def bind(self, post: Post) -> None:
        self.post = post

    def start(self, request: RecogniseTurn, deliver: Deliver) -> None:
        post = self.post
        if post is None:
            deliver(TurnRecognised(request.at, request.turn, error="the accurate pass is not bound to a call thread"))
            return

        def answered(answer: AccurateAnswer) -> None:  # on the pool's reader thread
            event = TurnRecognised(request.at + answer.elapsed_s, request.turn, answer.text, answer.error,
                                   confidence_of(answer.avg_logprob), round(answer.decode_s * 1000))
            post(lambda: deliver(event))

        samples = np.frombuffer(request.audio, dtype="<i2")
        self.pool.submit(samples, request.rate, request.hints, request.language, on_answer=answered)
