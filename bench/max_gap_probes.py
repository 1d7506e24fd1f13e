"""bench/max_gap.py's probes in the engine's process: each call's send slots, a stalled records database, where
the hub blocks, the records saved. Nothing here runs on the hub except the probes' own short greenlets."""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

IDLE, AUDIO, UNDERRUN = 0, 1, 2  # what a send slot carried
QUEUE_WAITS = {("synthesis.py", "_run"), ("writer.py", "_run")}  # threads blocked in a queue's get (C), not running


class SlotProbe:
    """Logs, per call, every send slot: (monotonic s, IDLE | AUDIO | UNDERRUN). Install before ``engine.start``."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.uuid_of: dict[int, str] = {}  # id(CallSession) → the channel's uuid
        self.slots: dict[str, list[tuple[float, int]]] = {}
        self._restore: list[Callable[[], None]] = []

    def install(self) -> None:
        from voicebot.esl import driver

        make_session, original = self.engine._session, driver.SessionThread.next_bot_frame
        probe = self

        def session(flow: Any, rate: int, voice: Any = None, data: Any = None) -> Any:
            made = make_session(flow, rate, voice, data)
            if data is not None:
                probe.uuid_of[id(made)] = data.uuid
            return made

        def next_bot_frame(worker: Any, t: float) -> bytes | None:
            player = worker.session.player
            in_prompt = player.play_id is not None and not player.paused and player.heard_ms > 0
            frame: bytes | None = original(worker, t)
            uuid = probe.uuid_of.get(id(worker.session))
            if uuid is not None:
                kind = AUDIO if frame is not None else UNDERRUN if in_prompt else IDLE
                probe.slots.setdefault(uuid, []).append((time.monotonic(), kind))
            return frame

        self.engine._session = session
        setattr(driver.SessionThread, "next_bot_frame", next_bot_frame)  # noqa: B010 (a method replaced for the run)
        self._restore = [lambda: setattr(driver.SessionThread, "next_bot_frame", original),
                         lambda: setattr(self.engine, "_session", make_session)]

    def remove(self) -> None:
        for undo in self._restore:
            undo()


class DbStall:
    """Another connection holds the SQLite records database's write lock for ``hold_s`` (a native thread)."""

    def __init__(self, path: str, hold_s: float) -> None:
        self.path, self.hold_s = path, hold_s
        self.locked = threading.Event()
        self.released = threading.Event()
        self.acquired_at = self.released_at = 0.0
        self.error = ""
        self._thread = threading.Thread(target=self._run, name="bench-db-stall", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            try:
                conn.execute("BEGIN EXCLUSIVE")
                self.acquired_at = time.monotonic()
                self.locked.set()
                time.sleep(self.hold_s)
                conn.execute("COMMIT")
                self.released_at = time.monotonic()
            finally:
                conn.close()
        except sqlite3.Error as err:
            self.error = repr(err)
        finally:
            self.locked.set()
            self.released.set()


class HubWatch:
    """Where the hub blocks: a greenlet beats every 5 ms; a native thread that sees no beat for ``stale_ms`` takes the
    hub's Python stack (the main thread's) once per stall. ``top()``: the innermost engine frames seen, most first."""

    def __init__(self, stale_ms: float = 30.0) -> None:
        import gevent

        self.stale_s, self.beat = stale_ms / 1000, time.monotonic()
        self.seen: dict[str, int] = {}
        self.others: dict[str, int] = {}  # busy frames of the other threads during stalls
        self._hub_thread = threading.get_ident()
        self._running = True
        self._greenlet = gevent.spawn(self._beat)
        self._thread = threading.Thread(target=self._watch, name="bench-hub-watch", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        import gevent

        while self._running:
            self.beat = time.monotonic()
            gevent.sleep(0.005)

    def _watch(self) -> None:
        taken = 0.0
        while self._running:
            time.sleep(0.005)
            if time.monotonic() - self.beat > self.stale_s and taken != self.beat:
                taken = self.beat
                frames = sys._current_frames()
                frame = frames.get(self._hub_thread)
                where = []
                while frame is not None:
                    code = frame.f_code
                    where.append(f"{Path(code.co_filename).name}:{code.co_name}:{frame.f_lineno}")
                    frame = frame.f_back
                key = " < ".join(where if len(where) <= 10 else [*where[:4], "...", *where[-6:]])
                self.seen[key] = self.seen.get(key, 0) + 1
                self._others(frames)

    def _others(self, frames: dict[int, Any]) -> None:
        """What the other threads ran while the hub stalled (one of them held the GIL): innermost busy frames."""
        from profiling import _IDLE

        for ident, frame in frames.items():
            if ident in (self._hub_thread, threading.get_ident()):
                continue
            code = frame.f_code
            if (Path(code.co_filename).name, code.co_name) in _IDLE | QUEUE_WAITS:
                continue
            outer = frame.f_back.f_code.co_name if frame.f_back is not None else ""
            key = f"{Path(code.co_filename).name}:{code.co_name} < {outer}"
            self.others[key] = self.others.get(key, 0) + 1

    def stop(self) -> list[tuple[str, int]]:
        self._running = False
        self._greenlet.kill()
        self._thread.join(1)
        return sorted(self.seen.items(), key=lambda kv: -kv[1])


def saved_records(path: str) -> int:
    """How many records the database holds, read on a native thread of gevent's pool (never on the hub: a read
    there would itself stall every call's audio)."""
    import gevent

    def count() -> int:
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            return int(conn.execute("SELECT count(*) FROM call_records").fetchone()[0])
    return int(gevent.get_hub().threadpool.spawn(count).get())
