"""Speech recognition in worker processes, for backends that hold the GIL (pocketsphinx).

Why: pocketsphinx 5 never releases the GIL and its model serialises every
decoder call (:mod:`voicebot.asr.pocketsphinx_asr`), so in the engine's process
all calls decode on one core, one frame at a time, and the gevent hub waits
for the GIL meanwhile. ``bench/capacity.py`` at 20 calls: 79% of the busy
samples were session threads queued in ``PocketsphinxStream.accept`` while the
process used 0.7 of 2 cores. Worker processes each have their own GIL.

Design:

* :class:`ProcessPoolModel` is an :class:`~voicebot.asr.base.AsrModel`: it
  starts ``processes`` workers (spawn; default one per CPU), each of which loads
  the inner model (any backend of :mod:`voicebot.asr.registry`) once.
* :meth:`ProcessPoolModel.stream` makes a :class:`PooledStream`, pinned to the
  worker with the fewest open streams: its decoder lives there.
* Frames go one way, in order, as binary messages (op, stream id, captured_at,
  s16le). :meth:`PooledStream.accept` never waits for the worker: it returns the
  newest partial the worker sent back since the previous call, so a partial
  reaches the call a frame (20 ms) or so after its audio. ``finish()`` waits
  for the final (``timeout_s``); ``set_hints`` travels in order with the frames.
* One native reader thread per worker routes replies to their streams.
* A worker that dies fails its open streams (``ModelError`` from the next
  call; that call fails, no other) and is restarted in the background.

Selected with ``asr: {backend: pocketsphinx-pool}`` once the registry names it
(:func:`load_pool`). Streams are meant for native threads (the engine's
session threads): ``finish`` blocks its thread.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import multiprocessing
import os
import pickle
import struct
import sys
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from voicebot.asr.base import AsrResult, ModelError
from voicebot.asr.registry import AsrConfig, load_asr
from voicebot.audio.frame import AudioFrame
from voicebot.logs import get_logger

HEADER = struct.Struct("<BQd")  # op, stream id, captured_at (monotonic s)
OPEN, FRAME, HINTS, FINISH, CLOSE, STOP = range(1, 7)
MAX_BACKLOG = 3000  # requests a worker reads ahead (~60 s of one call's frames); beyond, the pipe pushes back
READY_TIMEOUT_S = 120.0  # a worker loading its model (pocketsphinx ~1 s, Vosk ~3 s, plus the interpreter)

log = get_logger("asr.procpool")


def _original(module: str, name: str) -> Any:
    """``module.name`` as before gevent monkey-patching (as it is without gevent)."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched(module):
        return monkey.get_original(module, name)
    return getattr(__import__(module), name)


# ---------------------------------------------------------------- the worker process


class _Backlog:
    """Requests read but not handled yet, per stream and in order. The worker takes them round-robin across
    streams, except that a stream whose utterance has ended (FINISH or CLOSE queued) goes first, up to that
    request: a final never waits behind other calls' queued frames, only behind its own."""

    def __init__(self) -> None:
        self.queues: dict[int, deque[tuple[int, float, bytes]]] = {}
        self.ring: deque[int] = deque()  # streams with queued requests, in turn
        self.urgent: deque[int] = deque()  # streams with a FINISH/CLOSE queued, oldest first
        self.size = 0

    def add(self, message: bytes) -> int:
        """Queue one message; its op."""
        op, sid, at = HEADER.unpack_from(message)
        queue = self.queues.setdefault(sid, deque())
        if not queue:
            self.ring.append(sid)
        queue.append((op, at, message[HEADER.size:]))
        self.size += 1
        if op in (FINISH, CLOSE):
            self.urgent.append(sid)
        return int(op)

    def take(self) -> tuple[int, int, float, bytes]:
        """The next request to handle: (op, sid, at, body). Only called while ``size`` > 0."""
        while self.urgent and not self.queues.get(self.urgent[0]):
            self.urgent.popleft()
        if self.urgent:
            sid = self.urgent[0]
        else:
            while not self.queues.get(self.ring[0]):
                self.ring.popleft()
            sid = self.ring.popleft()
        queue = self.queues[sid]
        op, at, body = queue.popleft()
        self.size -= 1
        if op in (FINISH, CLOSE) and self.urgent and self.urgent[0] == sid:
            self.urgent.popleft()
        if not queue:
            del self.queues[sid]
        elif sid not in self.ring:
            self.ring.append(sid)
        return op, sid, at, body


def _serve(conn: Any, inner: AsrConfig) -> None:
    """A worker: load the model, then decode what arrives (see :class:`_Backlog`) until STOP or the pipe closes."""
    try:
        model = load_asr(inner)
    except Exception as err:
        conn.send_bytes(pickle.dumps((0, "failed", f"{type(err).__name__}: {err}")))
        return
    conn.send_bytes(pickle.dumps((0, "ready", model.name)))
    streams: dict[int, tuple[Any, int]] = {}
    backlog = _Backlog()
    try:
        while _read(conn, backlog):
            op, sid, at, body = backlog.take()
            try:
                reply = _handle(model, streams, op, sid, at, body)
            except Exception as err:  # one stream's failure is reported to it; the worker goes on
                reply = ("error", f"{type(err).__name__}: {err}")
            if reply is not None:
                conn.send_bytes(pickle.dumps((sid, *reply)))
    except (EOFError, OSError):
        pass
    for stream, _ in streams.values():
        stream.close()


def _read(conn: Any, backlog: _Backlog) -> bool:
    """Read the messages waiting, up to MAX_BACKLOG (block for one when nothing is queued); False on STOP."""
    while not backlog.size or (backlog.size < MAX_BACKLOG and conn.poll(0)):
        if backlog.add(conn.recv_bytes()) == STOP:
            return False
    return True


def _handle(model: Any, streams: dict[int, tuple[Any, int]], op: int, sid: int, at: float,
            body: bytes) -> tuple[str, Any] | None:
    """One request; the reply to send back, if any."""
    if op == OPEN:
        rate, hints = pickle.loads(body)
        streams[sid] = (model.stream(rate, hints), rate)
        return None
    stream, rate = streams[sid]
    if op == FRAME:
        partial = stream.accept(AudioFrame(body, rate, 0, at))
        return ("partial", partial) if partial is not None else None
    if op == HINTS:
        stream.set_hints(pickle.loads(body))
        return None
    if op == FINISH:
        return "final", stream.finish()
    if op == CLOSE:
        del streams[sid]
        stream.close()
    return None


# ---------------------------------------------------------------- the engine's side


class _Worker:
    """One worker process, its pipe, and the reader thread that routes its replies."""

    def __init__(self, index: int, inner: AsrConfig, ctx: Any) -> None:
        self.index = index
        self.streams: dict[int, PooledStream] = {}
        self.alive = self.stopping = False
        self._send_lock = _original("_thread", "allocate_lock")()
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, inner), name=f"asr-pool-{index}", daemon=True)
        self.process.start()
        child.close()

    def wait_ready(self, timeout: float) -> None:
        """Wait for the model to load; ModelError if it did not."""
        if not self._conn.poll(timeout):
            self.process.kill()
            raise ModelError(f"ASR worker {self.index} did not load its model within {timeout:g} s")
        _, kind, value = pickle.loads(self._conn.recv_bytes())
        if kind != "ready":
            raise ModelError(f"ASR worker {self.index} could not load its model: {value}")
        self.alive = True
        _original("_thread", "start_new_thread")(self._read, ())

    def send(self, op: int, sid: int, at: float = 0.0, body: bytes = b"") -> None:
        """One request (thread-safe); ModelError once the worker is gone."""
        if not self.alive:
            raise ModelError(f"ASR worker {self.index} is gone")
        try:
            with self._send_lock:
                self._conn.send_bytes(HEADER.pack(op, sid, at) + body)
        except (OSError, ValueError) as err:
            self._died(err)
            raise ModelError(f"ASR worker {self.index} is gone: {err}") from err

    def _read(self) -> None:
        while True:
            try:
                sid, kind, value = pickle.loads(self._conn.recv_bytes())
            except (EOFError, OSError) as err:
                self._died(err)
                return
            stream = self.streams.get(sid)
            if stream is not None:
                stream._deliver(kind, value)

    def _died(self, err: BaseException) -> None:
        if not self.alive or self.stopping:
            return
        self.alive = False
        log.error("asr.pool_worker_died", worker=self.index, error=repr(err), exit_code=self.process.exitcode)
        for stream in list(self.streams.values()):
            stream._deliver("error", f"the ASR worker process died ({err!r})")

    def stop(self) -> None:
        """Ask the worker to exit, then make sure it did."""
        self.stopping = True
        if self.alive:
            with contextlib.suppress(ModelError):
                self.send(STOP, 0)
        self.alive = False
        self.process.join(2)
        if self.process.is_alive():
            self.process.kill()
        self._conn.close()


class ProcessPoolModel:
    """An AsrModel whose streams decode in ``processes`` worker processes running ``inner``."""

    def __init__(self, inner: AsrConfig, processes: int | None = None, *, timeout_s: float = 10.0) -> None:
        self.inner = inner
        self.name, self.language = f"{inner.backend}-pool", inner.language
        self.timeout_s = timeout_s
        self._ctx = multiprocessing.get_context("spawn")
        self._ids = itertools.count(1)
        self._lock = _original("_thread", "allocate_lock")()
        self.workers = [_Worker(i, inner, self._ctx) for i in range(max(1, processes or os.cpu_count() or 1))]
        try:
            for worker in self.workers:
                worker.wait_ready(READY_TIMEOUT_S)
        except ModelError:
            self.close()
            raise
        atexit.register(_close_at_exit, weakref.ref(self))  # runs before multiprocessing kills its daemon children

    def stream(self, sample_rate: int, hints: Sequence[str] = ()) -> PooledStream:
        """A new stream on the least-loaded live worker (a dead one is restarted for later streams)."""
        with self._lock:
            self._restart_dead()
            live = [w for w in self.workers if w.alive]
            if not live:
                raise ModelError("no ASR worker process is running")
            worker = min(live, key=lambda w: len(w.streams))
            sid = next(self._ids)
            stream = PooledStream(self, worker, sid, sample_rate)
            worker.streams[sid] = stream
        worker.send(OPEN, sid, body=pickle.dumps((sample_rate, tuple(hints))))
        return stream

    def _restart_dead(self) -> None:
        """Start a fresh worker in place of each dead one that has no streams left (it loads in the background)."""
        for i, worker in enumerate(self.workers):
            if not worker.alive and not worker.streams and not worker.process.is_alive():
                fresh = _Worker(worker.index, self.inner, self._ctx)
                self.workers[i] = fresh
                _original("_thread", "start_new_thread")(_ready_quietly, (fresh,))

    def close(self) -> None:
        """Stop every worker."""
        for worker in self.workers:
            worker.stop()


def _close_at_exit(ref: weakref.ref[ProcessPoolModel]) -> None:
    model = ref()
    if model is not None:
        model.close()


def _ready_quietly(worker: _Worker) -> None:
    try:
        worker.wait_ready(READY_TIMEOUT_S)
    except ModelError as err:
        log.error("asr.pool_worker_restart_failed", worker=worker.index, error=str(err))


class PooledStream:
    """One call's stream, decoded in a worker process (see the module docstring)."""

    def __init__(self, model: ProcessPoolModel, worker: _Worker, sid: int, sample_rate: int) -> None:
        self.model, self.worker, self.sid, self.sample_rate = model, worker, sid, sample_rate
        self._partials: deque[AsrResult] = deque(maxlen=1)  # the newest partial not yet returned
        self._finals: Any = _original("queue", "SimpleQueue")()
        self._error: str | None = None
        self._closed = False

    def _deliver(self, kind: str, value: Any) -> None:
        """(The reader thread) a reply from the worker."""
        if kind == "partial":
            self._partials.append(value)
        elif kind == "final":
            self._finals.put(value)
        else:
            self._error = str(value)
            self._finals.put(ModelError(f"ASR stream failed in worker {self.worker.index}: {value}"))

    def _check(self) -> None:
        if self._closed:
            raise RuntimeError("PooledStream is closed")
        if self._error is not None:
            raise ModelError(f"ASR stream failed in worker {self.worker.index}: {self._error}")

    def accept(self, frame: AudioFrame) -> AsrResult | None:
        """Send one frame; the newest partial that came back since the last call, if any."""
        if frame.rate != self.sample_rate:
            raise ValueError(f"frame at {frame.rate} Hz fed to a {self.sample_rate} Hz stream")
        self._check()
        self.worker.send(FRAME, self.sid, frame.captured_at, frame.samples)
        try:
            return self._partials.popleft()
        except IndexError:
            return None

    def finish(self) -> AsrResult:
        """End the utterance: wait (up to the model's ``timeout_s``) for its final result."""
        self._check()
        self.worker.send(FINISH, self.sid)
        try:
            result = self._finals.get(timeout=self.model.timeout_s)
        except Exception as err:  # queue.Empty
            raise TimeoutError(f"no final from ASR worker {self.worker.index} within {self.model.timeout_s:g} s") from err
        self._partials.clear()  # partials of the utterance that just ended
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]

    def set_hints(self, phrases: Sequence[str]) -> None:
        """Bias the next utterance toward ``phrases`` (applied in order with the frames)."""
        self._check()
        self.worker.send(HINTS, self.sid, body=pickle.dumps(tuple(phrases)))

    def close(self) -> None:
        """Release the stream in the worker. Closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        self.worker.streams.pop(self.sid, None)
        if self.worker.alive:
            with contextlib.suppress(ModelError):
                self.worker.send(CLOSE, self.sid)


def load_pool(config: AsrConfig) -> ProcessPoolModel:
    """For the registry: backend ``<inner>-pool`` (e.g. ``pocketsphinx-pool``) runs ``<inner>`` in worker processes."""
    inner = config.backend[: -len("-pool")] if config.backend.endswith("-pool") else config.backend
    return ProcessPoolModel(replace(config, backend=inner))
