"""Decode one call's audio on its own native thread, never on the gevent hub (for bench/asr_bench.py).

The engine does not use this: a call's ASR stream is fed by its session thread, or decoded in worker processes
(voicebot/asr/procpool.py); see docs/decisions.md entry 4.

One OS thread per call stream, fed through a queue:

* a stream is not thread-safe and its frames must stay in order: one thread
  per stream gives both with no locking; a shared pool would need per-stream
  serialisation and could let one call's backlog delay another's finals;
* a thread costs ~100 kB of memory, nothing next to a recogniser (10..66 MB);
* parallelism: Vosk (cffi) releases the GIL while it decodes, so its streams
  use both cores (1.84 of 2 measured); pocketsphinx 5 holds the GIL, so its
  streams share one core whatever the threading (bench/asr_bench.py). Each
  decode call covers one 20 ms frame and pocketsphinx calls are serialised by
  the model's lock, so with hints the hub waits a few ms for the GIL (worst
  gap 21..43 ms with 10 streams); a full-LM pocketsphinx ``end_utt`` still
  holds it 0.1..0.3 s.

Under gevent monkey-patching ``threading`` and ``queue`` are cooperative, so
the thread comes from the original ``_thread.start_new_thread`` and the queue
is the original ``queue.SimpleQueue`` (``gevent.monkey.get_original``).
Results go back to the hub with ``loop.run_callback_threadsafe`` (gevent's
documented way to schedule a callback from another thread; it wakes the loop
through an async watcher, as gevent's own ``ThreadPool`` does). Without gevent
the callback runs on the worker thread.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from voicebot.asr.base import AsrResult, AsrStream
from voicebot.audio.frame import AudioFrame
from voicebot.logs import get_logger

log = get_logger("asr.worker")

ResultCallback = Callable[[AsrResult], None]
T = TypeVar("T")


class FinalFuture(Protocol):
    """The final result of a ``finish()``; ``result()`` waits (cooperatively under gevent)."""

    def result(self, timeout: float | None = None) -> AsrResult:
        """The final result; raises ``TimeoutError`` after ``timeout`` s, or what decoding raised."""
        ...

    def done(self) -> bool:
        """Whether the result is in."""
        ...


def gevent_patched() -> bool:
    """Whether gevent has monkey-patched ``threading`` in this process."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("threading"))


class _GeventFuture(Generic[T]):
    """A future over ``gevent.event.AsyncResult``, resolved on the hub thread."""

    def __init__(self, hub: Any) -> None:
        from gevent.event import AsyncResult

        self._hub, self._async = hub, AsyncResult()

    def resolve(self, value: T | BaseException) -> None:
        """Called from the worker thread."""
        setter = self._async.set_exception if isinstance(value, BaseException) else self._async.set
        self._hub.loop.run_callback_threadsafe(setter, value)

    def result(self, timeout: float | None = None) -> T:
        import gevent

        try:
            value: T = self._async.get(timeout=timeout)
        except gevent.Timeout as e:
            raise TimeoutError(f"no result within {timeout} s") from e
        return value

    def done(self) -> bool:
        return bool(self._async.ready())


class _ThreadFuture(Generic[T]):
    """A future over ``concurrent.futures.Future`` (no gevent)."""

    def __init__(self) -> None:
        self._future: concurrent.futures.Future[T] = concurrent.futures.Future()

    def resolve(self, value: T | BaseException) -> None:
        if isinstance(value, BaseException):
            self._future.set_exception(value)
        else:
            self._future.set_result(value)

    def result(self, timeout: float | None = None) -> T:
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError as e:
            raise TimeoutError(f"no result within {timeout} s") from e

    def done(self) -> bool:
        return self._future.done()


_STOP = object()


def _log_failure(worker: str, error: Exception) -> None:
    with contextlib.suppress(Exception):  # a broken log sink must not take the decode thread down
        log.error("asr.decode_failed", worker=worker, error=repr(error))


class DecodeWorker:
    """Feeds one call's stream on a dedicated native thread; ``submit()`` never blocks.

    ``stream`` is a stream, or a zero-argument callable that makes one on the
    worker thread (creating a recogniser takes up to ~0.1 s: keep it off the
    hub). Every result (partials, then each final) goes to ``on_result`` if
    given (on the hub under gevent, else on the worker thread; keep it short),
    otherwise into a queue read with ``poll()``. ``finish()`` also returns the
    final as a ``FinalFuture``. ``close()`` waits cooperatively under gevent.
    """

    def __init__(self, stream: AsrStream | Callable[[], AsrStream], on_result: ResultCallback | None = None,
                 name: str = "asr") -> None:
        self.name = name
        self.stream: AsrStream | None = None if callable(stream) else stream
        self._factory: Callable[[], AsrStream] | None = stream if callable(stream) else None
        self._error: Exception | None = None
        self._on_result = on_result
        self._results: deque[AsrResult] = deque()
        self._patched = gevent_patched()
        self._hub: Any = None
        self._thread: threading.Thread | None = None
        self._closed = False
        if self._patched:
            import gevent
            from gevent.monkey import get_original

            self._hub = gevent.get_hub()
            self._queue: Any = get_original("queue", "SimpleQueue")()
            self._exited: _GeventFuture[bool] | _ThreadFuture[bool] = _GeventFuture(self._hub)
            get_original("_thread", "start_new_thread")(self._run, ())
        else:
            self._queue = queue.SimpleQueue()
            self._exited = _ThreadFuture()
            self._thread = threading.Thread(target=self._run, name=f"{name}-decode", daemon=True)
            self._thread.start()

    @property
    def backlog(self) -> int:
        """Commands (mostly frames) waiting for the thread."""
        return int(self._queue.qsize())

    def submit(self, frame: AudioFrame) -> None:
        """Queue a frame for decoding; returns at once."""
        if self._closed:
            raise RuntimeError("DecodeWorker is closed")
        self._queue.put(frame)

    def set_hints(self, phrases: Sequence[str]) -> None:
        """Apply hints in order with the frames (they take effect from the next utterance)."""
        self._queue.put(("hints", tuple(phrases)))

    def finish(self) -> FinalFuture:
        """End the current utterance after the frames already submitted; its final result."""
        if self._closed:
            raise RuntimeError("DecodeWorker is closed")
        future: _GeventFuture[AsrResult] | _ThreadFuture[AsrResult] = (
            _GeventFuture(self._hub) if self._patched else _ThreadFuture())
        self._queue.put(("finish", future))
        return future

    def poll(self) -> list[AsrResult]:
        """Results delivered since the last poll (only used without ``on_result``)."""
        out = []
        while self._results:
            out.append(self._results.popleft())
        return out

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the thread after the queued work and close the stream; whether it stopped within ``timeout`` s."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
        try:
            self._exited.result(timeout)
        except TimeoutError:
            return False
        if self._thread is not None:
            self._thread.join(timeout)
        return True

    def _to_owner(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._patched:
            self._hub.loop.run_callback_threadsafe(fn, *args)
        else:
            fn(*args)

    def _deliver(self, result: AsrResult) -> None:
        if self._on_result is None:
            self._results.append(result)
        else:
            self._to_owner(self._on_result, result)

    def _handle(self, stream: AsrStream, item: Any) -> None:
        if isinstance(item, AudioFrame):
            partial = stream.accept(item)
            if partial is not None:
                self._deliver(partial)
        elif item[0] == "hints":
            stream.set_hints(item[1])
        else:
            try:
                final = stream.finish()
            except Exception as e:
                item[1].resolve(e)
                raise
            self._deliver(final)
            item[1].resolve(final)

    def _open(self) -> AsrStream | None:
        if self.stream is None and self._factory is not None:
            try:
                self.stream = self._factory()
            except Exception as e:
                self._error = e
                self._to_owner(_log_failure, self.name, e)
        return self.stream

    def _run(self) -> None:
        try:
            stream = self._open()
            while (item := self._queue.get()) is not _STOP:
                if stream is None:  # the factory failed: finish() reports why
                    if isinstance(item, tuple) and item[0] == "finish":
                        item[1].resolve(self._error or RuntimeError("no stream"))
                    continue
                try:
                    self._handle(stream, item)
                except Exception as e:  # keep the call alive; logged on the owner's side, finish() re-raises it
                    self._to_owner(_log_failure, self.name, e)
            if stream is not None:
                stream.close()
        finally:
            self._exited.resolve(True)
