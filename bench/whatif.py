"""What-if changes: proposed changes to code the benchmarks do not own, applied to a loaded engine to measure them first.

Each entry of :data:`WHAT_IFS` patches this process only (never a file) and
says which change it stands for; the results file records which were on.
Once the change is made in the code itself the what-if is redundant (and
harmless).

- ``tts-memo``: :meth:`voicebot.tts.render.PromptCache.synthesize` keeps what it
  synthesized live (a variable's value and the text after it, per text and
  rate) in a bounded LRU: per-campaign constants (agent name, company, offer)
  are synthesized once per process instead of once per prompt per call; a
  per-call value (the customer's name) still costs one synthesis per call.
- ``session-loop``: :class:`voicebot.esl.driver.SessionThread` wakes when a caller
  frame arrives (at most every 60 ms without one) instead of every 10 ms, and
  its queues are a C ``queue.SimpleQueue`` (inbox) and a lock-free bounded
  deque (outbox) instead of ``queue.Queue``'s Python-level locks.
- ``switch-1ms`` (now in ``Engine.start``): the engine sets ``sys.setswitchinterval(0.001)``. With a
  thread per call, the hub gives up the GIL on every socket call and then
  waits up to the switch interval (5 ms by default) to get it back from the
  session threads: its frames leave late when many calls are busy.
- ``receive-callback``: ``drive_call`` spawns ``media.deliver(worker.caller)``
  instead of ``_receive`` (a greenlet iterating ``media.frames()``): caller
  frames are read by an I/O watcher callback on the hub, no greenlet switch
  per frame.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any


def _tts_memo(engine: Any, size: int = 256) -> None:
    for pipeline in engine.pipelines.values():
        cache = pipeline.cache
        synthesize, memo, lock = cache.synthesize, OrderedDict(), threading.Lock()

        def memoized(text: str, rate: int, synthesize: Callable[[str, int], Any] = synthesize,
                     memo: OrderedDict[tuple[str, int], Any] = memo, lock: Any = lock) -> Any:
            with lock:
                if (text, rate) in memo:
                    memo.move_to_end((text, rate))
                    return memo[(text, rate)]
            audio = synthesize(text, rate)
            with lock:
                memo[(text, rate)] = audio
                while len(memo) > size:
                    memo.popitem(last=False)
            return audio
        cache.synthesize = memoized


class BoundedDeque:
    """``queue.Queue(maxsize)``'s put_nowait/get_nowait/full on a deque: no locks (single producer, single consumer)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[Any] = deque()

    def full(self) -> bool:
        return len(self._items) >= self.maxsize

    def put_nowait(self, item: Any) -> None:
        if self.full():
            raise queue.Full
        self._items.append(item)

    def get_nowait(self) -> Any:
        try:
            return self._items.popleft()
        except IndexError:
            raise queue.Empty from None


def _session_loop(engine: Any) -> None:
    from voicebot.esl import driver

    cls = driver.SessionThread
    if getattr(cls, "_whatif_session_loop", False):
        return
    start = cls.start

    def start_with_light_queues(self: Any) -> None:
        self.inbox, self.outbox = queue.SimpleQueue(), BoundedDeque(driver.BOT_FRAMES_AHEAD)
        start(self)

    def run(self: Any) -> None:
        try:
            self.session.start(0.0, self.variables)
            next_bot = 0.0
            while not self._stop and not self.session.ended:
                self._drain(timeout=3 * self.frame_s)
                next_bot = self._produce(next_bot)
                if self.recorder is not None and self.recorder.due():
                    self.recorder.flush()  # the call's recording streams to disk (voicebot/records/recording.py)
            if not self.session.ended:
                self._drain(timeout=0.0)
        except BaseException as err:
            self.error = err

    def drain(self: Any, timeout: float) -> None:
        with contextlib.suppress(queue.Empty):
            item = self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
            while True:
                self._handle(item)
                item = self.inbox.get_nowait()

    cls.start, cls._run, cls._drain = start_with_light_queues, run, drain
    cls._whatif_session_loop = True


def _receive_callback(engine: Any) -> None:
    from voicebot.esl import driver

    driver._receive = lambda media, worker: media.deliver(worker.caller)


def _switch_1ms(engine: Any) -> None:
    import sys

    sys.setswitchinterval(0.001)  # CPython's default is 5 ms


WHAT_IFS: dict[str, tuple[str, Callable[[Any], None]]] = {
    "tts-memo": ("voicebot/tts/render.py: PromptCache.synthesize keeps live-synthesized pieces in a 256-entry LRU",
                 _tts_memo),
    "session-loop": ("voicebot/esl/driver.py: SessionThread wakes on caller frames (not every 10 ms); "
                     "SimpleQueue inbox, lock-free outbox", _session_loop),
    "receive-callback": ("voicebot/esl/driver.py: caller frames reach the session through UnicastMedia.deliver "
                         "(an I/O watcher callback) instead of a greenlet iterating frames()", _receive_callback),
    "switch-1ms": ("voicebot/engine.py: sys.setswitchinterval(0.001) at start: the gevent hub, back from a "
                   "socket call, waits at most 1 ms (not 5) for the GIL held by busy session threads", _switch_1ms),
}


def apply(names: Iterable[str], engine: Any) -> None:
    """Apply the named what-ifs to a loaded engine."""
    for name in names:
        if name not in WHAT_IFS:
            raise SystemExit(f"unknown what-if {name!r}; known: {', '.join(WHAT_IFS)}")
        WHAT_IFS[name][1](engine)
