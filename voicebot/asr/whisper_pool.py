"""The accurate pass in a warm pool of worker processes: a request in, an answer back (never an exception).

Shape (as :mod:`voicebot.asr.procpool`, which runs the streaming pass's pocketsphinx): ``processes`` spawned
workers (default one per CPU), each loading one :class:`~voicebot.asr.whisper.WhisperRecogniser` once with one
CTranslate2 thread and warming it with one decode before it takes requests (the pool's constructor waits for
that, so the engine accepts no call before its workers are warm); one native reader thread per worker routes
answers back.

* :meth:`WhisperPool.submit` (utterance as int16 at the call's rate, the node's hints, the flow's language) sends
  the request to the live worker with the fewest requests in hand and returns a :class:`PendingAnswer` at once.
* The :class:`AccurateAnswer` arrives by the ``on_answer`` callback (called on the reader thread: post it to the
  call's actor as an event) and through :meth:`PendingAnswer.wait`.
* Failure is an answer too: a worker that dies answers each of its requests with ``error`` set (the call keeps its
  first pass) and is replaced in the background; with no live worker a request is answered with an error at once.
* A model that does not exist or does not load is a :class:`~voicebot.asr.base.ModelError` from the constructor.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import multiprocessing
import os
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from voicebot.asr.base import ModelError
from voicebot.asr.procpool import _original
from voicebot.asr.whisper import WhisperRecogniser, resolve_model
from voicebot.logs import get_logger

READY_TIMEOUT_S = 120.0  # a worker starting Python, loading its model (tiny.en ~1 s, base ~2 s on an idle core), warm-up
log = get_logger("asr.whisper_pool")


@dataclass(frozen=True)
class AccurateAnswer:
    """The accurate pass's answer to one request. ``error`` None = ``text`` is what Whisper heard (spoken form;
    ``raw``: as Whisper wrote it).

    ``decode_s``: time the worker spent decoding (s); ``elapsed_s``: submit → answer (s, queueing included)."""

    request_id: int
    text: str = ""
    raw: str = ""
    error: str | None = None
    decode_s: float = 0.0
    elapsed_s: float = 0.0
    avg_logprob: float = 0.0
    no_speech: float = 0.0


class PendingAnswer:
    """One request in flight; :meth:`wait` blocks a native thread until its answer arrives."""

    def __init__(self, request_id: int, on_answer: Callable[[AccurateAnswer], None] | None) -> None:
        self.request_id = request_id
        self.submitted = time.monotonic()
        self._on_answer = on_answer
        self._answer: AccurateAnswer | None = None
        self._done = _original("_thread", "allocate_lock")()
        self._done.acquire()

    @property
    def done(self) -> bool:
        """True once answered."""
        return self._answer is not None

    def wait(self, timeout: float | None = None) -> AccurateAnswer | None:
        """The answer, or None if none came within ``timeout`` seconds (None = wait as long as it takes)."""
        if self._done.acquire(True, -1 if timeout is None else max(0.0, timeout)):
            self._done.release()
        return self._answer

    def _deliver(self, answer: AccurateAnswer) -> None:
        if self._answer is not None:
            return
        self._answer = answer
        self._done.release()
        if self._on_answer is not None:
            try:
                self._on_answer(answer)
            except Exception as err:  # the caller's callback must not kill the reader thread
                log.error("asr.whisper_callback_failed", error=repr(err))

    def _fail(self, message: str) -> None:
        self._deliver(AccurateAnswer(self.request_id, error=message, elapsed_s=time.monotonic() - self.submitted))


def _serve(conn: Any, model: str, threads: int) -> None:
    """A worker process: load the model, warm it with one decode (:meth:`WhisperRecogniser.warm_up`), then answer
    requests until the pipe closes or a None arrives."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        recogniser = WhisperRecogniser(model, threads=threads)
    except Exception as err:
        conn.send(("failed", f"{err}"))
        return
    try:
        warmed = recogniser.warm_up()
    except Exception as err:  # a model that loads but cannot decode is as broken as one that does not load
        conn.send(("failed", f"{recogniser.path}: the warm-up decode failed ({type(err).__name__}: {err})"))
        return
    conn.send(("ready", recogniser.name, warmed))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        rid, pcm, rate, hints, language = request
        try:
            samples = np.frombuffer(pcm, dtype="<i2")
            result = recogniser.transcribe(samples, rate, hints, language)
            reply: tuple[Any, ...] = (rid, "ok", result.text, result.raw, result.seconds, result.avg_logprob,
                                     result.no_speech)
        except Exception as err:  # one request's failure is its answer; the worker goes on
            reply = (rid, "error", f"{type(err).__name__}: {err}")
        conn.send(reply)


class _Worker:
    """One worker process, its pipe and the reader thread that answers its requests."""

    def __init__(self, index: int, model: str, threads: int, ctx: Any) -> None:
        self.index, self.alive, self.stopping = index, False, False
        self.warmup_s: float | None = None  # the warm-up decode's seconds, once the worker is ready
        self.pending: dict[int, PendingAnswer] = {}
        self._send_lock = _original("_thread", "allocate_lock")()
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, model, threads), name=f"whisper-{index}", daemon=True)
        self.process.start()
        child.close()

    def wait_ready(self, timeout: float) -> None:
        """Wait for the model to load; ModelError if it did not."""
        if not self._conn.poll(timeout):
            self.process.kill()
            raise ModelError(f"Whisper worker {self.index} did not load its model within {timeout:g} s")
        try:
            kind, value, *warmed = self._conn.recv()
        except (EOFError, OSError) as err:
            raise ModelError(f"Whisper worker {self.index} died while loading its model (exit code "
                             f"{self.process.exitcode})") from err
        if kind != "ready":
            raise ModelError(f"Whisper worker {self.index} could not load its model: {value}")
        self.warmup_s = float(warmed[0])
        self.alive = True
        _original("_thread", "start_new_thread")(self._read, ())

    def send(self, pending: PendingAnswer, request: tuple[Any, ...]) -> None:
        """Hand one request to the worker; a dead pipe fails it (and every other request of this worker)."""
        self.pending[pending.request_id] = pending
        try:
            with self._send_lock:
                self._conn.send(request)
        except (OSError, ValueError) as err:
            self._died(err)
        if not self.alive:  # died before or while we sent: the reader may have failed its requests already
            self.pending.pop(pending.request_id, None)
            pending._fail(f"the Whisper worker {self.index} is gone; keep the first pass's words")

    def _read(self) -> None:
        while True:
            try:
                reply = self._conn.recv()
            except (EOFError, OSError) as err:
                self._died(err)
                return
            pending = self.pending.pop(reply[0], None)
            if pending is None:
                continue
            elapsed = time.monotonic() - pending.submitted
            if reply[1] == "ok":
                _, _, text, raw, seconds, logprob, quiet = reply
                pending._deliver(AccurateAnswer(pending.request_id, text, raw, None, seconds, elapsed, logprob, quiet))
            else:
                pending._deliver(AccurateAnswer(pending.request_id, error=str(reply[2]), elapsed_s=elapsed))

    def _died(self, err: BaseException) -> None:
        if not self.alive or self.stopping:
            return
        self.alive = False
        with contextlib.suppress(Exception):
            self.process.join(1)
        code = self.process.exitcode
        log.error("asr.whisper_worker_died", worker=self.index, error=repr(err), exit_code=code)
        for pending in list(self.pending.values()):
            pending._fail(f"the Whisper worker process died (exit code {code}); keep the first pass's words")
        self.pending.clear()

    def stop(self) -> None:
        """Ask the worker to exit, then make sure it did."""
        self.stopping = True
        if self.alive:
            with contextlib.suppress(OSError, ValueError), self._send_lock:
                self._conn.send(None)
        self.alive = False
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2)
        self._conn.close()
        for pending in list(self.pending.values()):
            pending._fail("the Whisper pool was closed")


class WhisperPool:
    """``processes`` warm workers (default: one per CPU) decoding with ``model`` (a name or a directory)."""

    def __init__(self, model: str | os.PathLike[str] | None = None, processes: int | None = None, *,
                 threads: int = 1) -> None:
        self.model_dir = str(resolve_model(model))  # a missing model is a clear error here, before any process starts
        self.threads = threads
        self._ctx = multiprocessing.get_context("spawn")
        self._ids = itertools.count(1)
        self._lock = _original("_thread", "allocate_lock")()
        count = max(1, processes or os.cpu_count() or 1)
        self.workers = [_Worker(i, self.model_dir, threads, self._ctx) for i in range(count)]
        try:
            for worker in self.workers:
                worker.wait_ready(READY_TIMEOUT_S)
        except ModelError:
            self.close()
            raise
        atexit.register(_close_at_exit, weakref.ref(self))

    def submit(self, samples: npt.ArrayLike, rate: int, hints: Sequence[str] = (), language: str = "en",
               on_answer: Callable[[AccurateAnswer], None] | None = None) -> PendingAnswer:
        """Decode one utterance (int16 at ``rate`` Hz) in a worker; the answer comes by ``on_answer`` (reader
        thread) and :meth:`PendingAnswer.wait`. Never raises for a pool failure: that is an answer with ``error``."""
        pcm = np.asarray(samples, dtype="<i2").tobytes()
        with self._lock:
            pending = PendingAnswer(next(self._ids), on_answer)
            self._restart_dead()
            live = [w for w in self.workers if w.alive]
            worker = min(live, key=lambda w: len(w.pending)) if live else None
        if worker is None:
            pending._fail("no Whisper worker is running (one is restarting); keep the first pass's words")
        else:
            worker.send(pending, (pending.request_id, pcm, int(rate), tuple(hints), language))
        return pending

    def _restart_dead(self) -> None:
        """Start a fresh worker in place of each dead one (it loads in the background)."""
        for i, worker in enumerate(self.workers):
            if not worker.alive and not worker.stopping and not worker.process.is_alive():
                worker.stopping = True
                fresh = _Worker(worker.index, self.model_dir, self.threads, self._ctx)
                self.workers[i] = fresh
                _original("_thread", "start_new_thread")(_ready_quietly, (fresh,))

    def wait_all_ready(self, timeout: float = READY_TIMEOUT_S) -> bool:
        """(Tests, warm-up) wait until every worker is alive; False if one is not within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                self._restart_dead()
                if all(w.alive for w in self.workers):
                    return True
            _original("time", "sleep")(0.05)
        return False

    def close(self) -> None:
        """Stop every worker; requests still in flight are answered with an error."""
        for worker in self.workers:
            worker.stop()


def _ready_quietly(worker: _Worker) -> None:
    try:
        worker.wait_ready(READY_TIMEOUT_S)
    except ModelError as err:
        log.error("asr.whisper_worker_restart_failed", worker=worker.index, error=str(err))


def _close_at_exit(ref: weakref.ref[WhisperPool]) -> None:
    pool = ref()
    if pool is not None:
        pool.close()
