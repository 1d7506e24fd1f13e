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
  for the final (``timeout_s``); ``finish_later(deliver)`` never waits: the
  worker's reader thread hands the final to ``deliver`` (the engine's call
  posts it to the call's thread, which keeps sending the bot's audio
  meanwhile), and ``give_up()`` drops a final that is too late. ``set_hints``
  travels in order with the frames.
* One native reader thread per worker routes replies to their streams.
* Workers run ``WORKER_NICE`` nicer than the engine. They decode one or two
  cores' worth of audio; at the same priority, when they and a live synthesis
  want more CPU than there is, the scheduler let the gevent hub (which sends
  every call's frames) wait its turn behind them: ``bench/max_gap.py`` saw
  every call's audio stall at once (30-100 ms) with both workers on the CPUs
  and the hub off it (``perf record``). A decode may wait a few ms; a frame
  may not.
* Each worker runs a warm-up decode at every rate in ``WARM_RATES`` before it
  reports ready, and the model waits for every worker: the first call finds
  decoders built and the model paged in.
* A worker that dies (or a stream that fails in it) is logged
  (``asr.pool_worker_died``, ``asr.stream_moved``) and its streams move to a
  live worker with their hints: the utterance in flight is lost (its final is
  empty) and the call carries on. The dead worker is restarted in the
  background; while no worker is up, frames are dropped and finals are empty.
* :meth:`ProcessPoolModel.close` stops and reaps every worker (the engine calls
  it at shutdown; an ``atexit`` hook too). A worker whose engine is killed sees
  its pipe close and exits.

``asr: {backend: pocketsphinx-pool}``, the engine's default (:func:`load_pool`). Streams are meant for native
threads (the engine's session threads): ``finish`` blocks its thread.
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
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
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
WARM_RATES = (8000, 16000)  # Hz: each worker decodes a little audio at these rates before it reports ready
WARM_AUDIO_S = 0.3  # seconds of faint noise in each warm-up decode
MAX_MOVES = 5  # a stream that lost its decoder this many times stays deaf (its call carries on without words)
RESTART_EVERY_S = 5.0  # a worker slot is restarted at most this often (one that cannot load is not respawned per call)
WORKER_NICE = 5  # workers run this much nicer than the engine: its hub (every call's media) goes first for a CPU

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
    with contextlib.suppress(OSError, AttributeError):  # not on Linux/Unix: same priority as the engine
        os.nice(WORKER_NICE)
    try:
        model = load_asr(inner)
    except Exception as err:
        conn.send_bytes(pickle.dumps((0, "failed", f"{type(err).__name__}: {err}")))
        return
    try:
        warmed = _warm_up(model)
    except Exception as err:
        conn.send_bytes(pickle.dumps((0, "failed", f"warm-up decode: {type(err).__name__}: {err}")))
        return
    conn.send_bytes(pickle.dumps((0, "ready", warmed)))
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


def _warm_up(model: Any) -> dict[int, float]:
    """One short decode per rate of ``WARM_RATES`` (builds and pools a decoder each); seconds taken per rate."""
    import numpy as np

    taken: dict[int, float] = {}
    noise = np.random.default_rng(0)
    for rate in WARM_RATES:
        started = time.perf_counter()
        stream = model.stream(rate)
        audio = (noise.standard_normal(int(rate * WARM_AUDIO_S)) * 30).astype("<i2")
        step = rate // 50
        for i in range(0, len(audio), step):
            stream.accept(AudioFrame(audio[i:i + step].tobytes(), rate, i // step, i / rate))
        stream.finish()
        stream.close()
        taken[rate] = time.perf_counter() - started
    return taken


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
        self.warmed: dict[int, float] = {}  # rate (Hz) -> seconds its warm-up decode took, once ready
        self._send_lock = _original("_thread", "allocate_lock")()
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, inner), name=f"asr-pool-{index}", daemon=True)
        self.process.start()
        child.close()

    def wait_ready(self, timeout: float) -> None:
        """Wait for the model to load; ModelError if it did not."""
        try:
            if not self._conn.poll(timeout):
                self.process.kill()
                raise ModelError(f"ASR worker {self.index} did not load its model within {timeout:g} s")
            _, kind, value = pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError) as err:  # it died loading, or the pool was closed meanwhile
            self.process.join(5)
            raise ModelError(f"ASR worker {self.index} exited before it was ready (exit code "
                             f"{self.process.exitcode})") from err
        if kind != "ready":
            self.process.join(5)
            raise ModelError(f"ASR worker {self.index} could not load its model: {value}")
        self.warmed = dict(value)
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
        lost, self.streams = list(self.streams.values()), {}  # they move on their next call; this one can restart
        for stream in lost:
            stream._deliver("error", f"ASR worker {self.index} died (exit code {self.process.exitcode}): {err!r}")

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
            self.process.join(2)
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
        self._restarted: dict[int, float] = {}  # worker index -> when it was last restarted (monotonic s)
        self._closed = False
        self.workers = [_Worker(i, inner, self._ctx) for i in range(max(1, processes or os.cpu_count() or 1))]
        try:
            for worker in self.workers:
                worker.wait_ready(READY_TIMEOUT_S)
        except ModelError:
            self.close()
            raise
        atexit.register(_close_at_exit, weakref.ref(self))  # runs before multiprocessing kills its daemon children

    def stream(self, sample_rate: int, hints: Sequence[str] = ()) -> PooledStream:
        """A new stream on the least-loaded live worker (with none up, it waits deaf for one: see the module doc)."""
        stream = PooledStream(self, sample_rate, hints)
        if not stream.attach():
            log.error("asr.stream_deaf", reason="no ASR worker process is running")
        return stream

    def assign(self, stream: PooledStream) -> tuple[_Worker, int] | None:
        """Pin ``stream`` to the least-loaded live worker under a fresh id (restarting dead workers first)."""
        with self._lock:
            self._restart_dead()
            live = [w for w in self.workers if w.alive]
            if not live:
                return None
            worker = min(live, key=lambda w: len(w.streams))
            sid = next(self._ids)
            worker.streams[sid] = stream
        return worker, sid

    def _restart_dead(self) -> None:
        """Start a fresh worker in place of each dead one that has no streams left (it loads in the background), at most
        every ``RESTART_EVERY_S`` per worker, and none once the pool is closed."""
        now = time.monotonic()
        for i, worker in enumerate(self.workers):
            if self._closed or now - self._restarted.get(worker.index, float("-inf")) < RESTART_EVERY_S:
                continue
            if not worker.alive and not worker.streams and not worker.process.is_alive():
                self._restarted[worker.index] = now
                fresh = _Worker(worker.index, self.inner, self._ctx)
                self.workers[i] = fresh
                _original("_thread", "start_new_thread")(_ready_quietly, (fresh,))

    def close(self) -> None:
        """Stop every worker (for good: none is restarted after)."""
        with self._lock:
            self._closed = True
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
        if not worker.stopping:  # not the pool closing under it
            log.error("asr.pool_worker_restart_failed", worker=worker.index, error=str(err))


class PooledStream:
    """One call's stream, decoded in a worker process (see the module docstring)."""

    def __init__(self, model: ProcessPoolModel, sample_rate: int, hints: Sequence[str] = ()) -> None:
        self.model, self.sample_rate = model, sample_rate
        self.worker: _Worker | None = None
        self.sid = 0
        self.moves = 0  # times this stream moved to another worker after a failure
        self._hints = tuple(hints)
        self._partials: deque[AsrResult] = deque(maxlen=1)  # the newest partial not yet returned
        self._finals: Any = _original("queue", "SimpleQueue")()
        self._lost: str | None = None  # why the stream's worker-side decoder is gone; it moves on the next call
        self._closed = False
        self._late = 0  # finals given up on (finish timed out): the worker still sends them, in order; skip them
        self._waiting: deque[Callable[[AsrResult], None]] = deque()  # finish_later's deliveries, in FINISH order
        self._async = False  # finish_later was used: finals go to _waiting, not to _finals
        self._deliveries = _original("_thread", "allocate_lock")()  # _waiting, _late and _async (reader vs call)

    def attach(self) -> bool:
        """Open the stream's decoder on a live worker (with its rate and hints); False when none is up."""
        placed = self.model.assign(self)
        if placed is None:
            self.worker, self._lost = None, self._lost or "no ASR worker process is running"
            return False
        self.worker, self.sid = placed
        self._finals = _original("queue", "SimpleQueue")()  # nothing stale from the old decoder
        self._late = 0
        self._partials.clear()
        self._lost = None
        try:
            self.worker.send(OPEN, self.sid, body=pickle.dumps((self.sample_rate, self._hints)))
        except ModelError:
            return False  # the worker died under us: _died marked this stream lost, it moves again
        return True

    def _deliver(self, kind: str, value: Any) -> None:
        """(A reader thread) a reply from the worker."""
        if kind == "partial":
            self._partials.append(value)
            return
        with self._deliveries:
            if self._async:
                targets = self._async_targets(kind, value)
            else:
                targets = []
                if kind != "final":
                    self._lost = str(value)
                self._finals.put(value if kind == "final" else None)  # None wakes a finish() waiting for this decoder
        empty = AsrResult("", final=True)
        for deliver, result in targets:
            deliver(result if isinstance(result, AsrResult) else empty)

    def _async_targets(self, kind: str, value: Any) -> list[tuple[Callable[[AsrResult], None], Any]]:
        """(Under ``_deliveries``) who gets this reply in finish_later mode: a final goes to the oldest waiting
        delivery (one given up on is skipped); a lost decoder answers every waiting one with an empty final."""
        if kind == "final":
            if self._late:
                self._late -= 1
                return []
            return [(self._waiting.popleft(), value)] if self._waiting else []
        self._lost = str(value)
        waiting, self._waiting = list(self._waiting), deque()
        self._late = 0
        return [(deliver, None) for deliver in waiting]

    def _ready(self) -> bool:
        """Closed: RuntimeError. Lost its decoder: move to a live worker now. True if there is one to send to."""
        if self._closed:
            raise RuntimeError("PooledStream is closed")
        if self._lost is None:
            return True
        old, reason = self.worker, self._lost
        if old is not None:
            old.streams.pop(self.sid, None)
            if old.alive:
                with contextlib.suppress(ModelError):
                    old.send(CLOSE, self.sid)
        if self.moves >= MAX_MOVES:  # give up: the call carries on without words
            if old is not None:
                self.worker = None
                log.error("asr.stream_deaf", reason=reason, moves=self.moves, detail="lost its decoder too often")
            return False
        moved = self.attach()
        if moved or old is not None:  # log each failure once, not every frame while no worker is up
            self.moves += 1
            log.error("asr.stream_moved" if moved else "asr.stream_deaf", reason=reason, moves=self.moves,
                      from_worker=old.index if old else None, to_worker=self.worker.index if moved and self.worker else None,
                      detail="the utterance in progress is lost; the call carries on")
        return moved

    def _send(self, op: int, at: float = 0.0, body: bytes = b"") -> bool:
        """One request to the stream's worker; False if the stream has none or it just died (the stream is lost)."""
        if not self._ready() or self.worker is None:
            return False
        try:
            self.worker.send(op, self.sid, at, body)
        except ModelError as err:
            self._lost = self._lost or str(err)
            return False
        return True

    def accept(self, frame: AudioFrame) -> AsrResult | None:
        """Send one frame; the newest partial that came back since the last call, if any."""
        if frame.rate != self.sample_rate:
            raise ValueError(f"frame at {frame.rate} Hz fed to a {self.sample_rate} Hz stream")
        if not self._send(FRAME, frame.captured_at, frame.samples):
            return None
        try:
            return self._partials.popleft()
        except IndexError:
            return None

    def finish(self) -> AsrResult:
        """End the utterance: wait (up to the model's ``timeout_s``) for its final result; empty if its worker died
        or the final did not come in time (workers far behind: more calls than the cores decode). Such a late
        final is skipped when it comes, so the next utterance gets its own; the call goes on either way."""
        if self._lost is not None:  # the utterance's frames died with the decoder; move for the next one
            self._ready()
            return AsrResult("", final=True)
        if not self._send(FINISH):
            return AsrResult("", final=True)
        deadline = time.monotonic() + self.model.timeout_s
        try:
            result = self._finals.get(timeout=self.model.timeout_s)
            while self._late and result is not None:  # the finals given up on come first, in order
                self._late -= 1
                result = self._finals.get(timeout=max(0.0, deadline - time.monotonic()))
        except Exception:  # queue.Empty
            self._late += 1
            log.warning("asr.final_late", worker=self.worker.index if self.worker else None,
                        timeout_s=self.model.timeout_s, detail="the utterance's words are dropped; the call goes on")
            return AsrResult("", final=True)
        self._partials.clear()  # partials of the utterance that just ended
        return result if isinstance(result, AsrResult) else AsrResult("", final=True)

    def finish_later(self, deliver: Callable[[AsrResult], None]) -> None:
        """End the utterance without waiting: ``deliver`` gets its final (from a reader thread, or now when the
        stream has no live decoder: an empty final). Finals come in the order of the FINISHes."""
        with self._deliveries:
            self._async = True
            lost = self._lost is not None
            if not lost:
                self._waiting.append(deliver)  # before FINISH goes out: the reply may come at once
        if lost:
            self._ready()  # the utterance's frames died with the decoder; move for the next one
            deliver(AsrResult("", final=True))
            return
        if not self._send(FINISH):
            with self._deliveries:
                still_waiting = deliver in self._waiting
                if still_waiting:
                    self._waiting.remove(deliver)
            if still_waiting:
                deliver(AsrResult("", final=True))
            return
        self._partials.clear()  # the utterance's partials end with it

    def give_up(self) -> bool:
        """Drop the oldest final :meth:`finish_later` waits for (it is too late: the call goes on without its
        words); it is skipped when it comes. False when none was waiting (it was just delivered)."""
        with self._deliveries:
            if not self._waiting:
                return False
            self._waiting.popleft()
            self._late += 1
        log.warning("asr.final_late", worker=self.worker.index if self.worker else None, timeout_s=self.model.timeout_s,
                    detail="the utterance's words are dropped; the call goes on")
        return True

    @property
    def finish_timeout_s(self) -> float:
        """How long a call waits for a final before :meth:`give_up` (the model's ``timeout_s``)."""
        return self.model.timeout_s

    def set_hints(self, phrases: Sequence[str]) -> None:
        """Bias the next utterance toward ``phrases`` (applied in order with the frames; kept for a move)."""
        self._hints = tuple(phrases)
        self._send(HINTS, body=pickle.dumps(self._hints))

    def close(self) -> None:
        """Release the stream in the worker. Closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        if self.worker is not None:
            self.worker.streams.pop(self.sid, None)
            if self.worker.alive:
                with contextlib.suppress(ModelError):
                    self.worker.send(CLOSE, self.sid)


def load_pool(config: AsrConfig) -> ProcessPoolModel:
    """For the registry: backend ``<inner>-pool`` (e.g. ``pocketsphinx-pool``) runs ``<inner>`` in worker processes."""
    inner = config.backend[: -len("-pool")] if config.backend.endswith("-pool") else config.backend
    return ProcessPoolModel(replace(config, backend=inner))
