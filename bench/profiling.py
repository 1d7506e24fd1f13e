"""Where a benchmark's time goes: a sampling profiler over every thread, and CPU by thread and by child process.

- :class:`StackSampler`: ``sys._current_frames()`` every ``interval_s``; busy
  samples by function (self and inclusive).
- :func:`thread_cpu`: CPU seconds per thread kind of this process (the gevent
  hub, the call session threads, native threads), from /proc/self/task.
- :func:`children_cpu`: CPU seconds of this process's child processes by name
  (the ASR worker processes), from /proc/<pid>/stat.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_IDLE = {("threading.py", "wait"), ("_threading.py", "acquire_with_timeout"), ("_threading.py", "wait"),
         ("_threading.py", "get"), ("threading.py", "_wait_for_tstate_lock"), ("queue.py", "get"),
         ("selectors.py", "select"), ("hub.py", "run"), ("hub.py", "switch"), ("hub.py", "wait"),
         ("connection.py", "poll"), ("connection.py", "_poll"), ("profiling.py", "_sample_loop"), ("fsbench.py", "_yield"),
         ("connection.py", "_recv"), ("procpool.py", "finish"),
         ("driver.py", "_drain"), ("whatif.py", "drain"),  # these two: blocked in SimpleQueue.get (C)
         ("sendclock.py", "_sleep")}  # the send clock's thread between slots (a lock's timed wait, C)


class StackSampler:
    """Samples every thread's Python stack every ``interval_s``; counts busy samples by function.

    A sample is *busy* unless the thread's innermost frame is a known wait
    (queue get, condition wait, the gevent hub's loop, select). Samples of a
    thread waiting for the GIL count as busy (Python cannot tell), and time in
    a C extension (pocketsphinx, onnxruntime, webrtcvad) is charged to the
    Python function that called it. ``self`` = innermost frame,
    ``inclusive`` = anywhere on the stack. Per-thread CPU comes from
    /proc/self/task/*/stat, grouped by thread name.
    """

    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.self_counts: Counter[str] = Counter()
        self.inclusive: Counter[str] = Counter()
        self.samples = 0
        self.busy = 0
        self.own_cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, name="bench-sampler", daemon=True)

    def __enter__(self) -> StackSampler:
        self._cpu0 = thread_cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.thread_cpu_s = cpu_delta(self._cpu0, thread_cpu())

    def _sample_loop(self) -> None:
        me = threading.get_ident()
        started = time.thread_time()
        while not self._stop.wait(self.interval_s):
            for tid, frame in sys._current_frames().items():
                if tid != me:
                    self._take(frame)
            self.samples += 1
        self.own_cpu_s = time.thread_time() - started

    def _take(self, frame: Any) -> None:
        code = frame.f_code
        if (os.path.basename(code.co_filename), code.co_name) in _IDLE:
            return
        self.busy += 1
        self.self_counts[_where(frame)] += 1
        seen = set()
        while frame is not None:
            key = _where(frame)
            if key not in seen:
                seen.add(key)
                self.inclusive[key] += 1
            frame = frame.f_back

    def top(self, n: int = 15) -> list[dict[str, Any]]:
        """The ``n`` functions with the most busy samples (self), with their inclusive count."""
        total = max(1, self.busy)
        return [{"function": key, "self": count, "self_pct": round(100 * count / total, 1),
                 "inclusive_pct": round(100 * self.inclusive[key] / total, 1)}
                for key, count in self.self_counts.most_common(n)]


def _where(frame: Any) -> str:
    code = frame.f_code
    path = code.co_filename
    short = path.split("site-packages/")[-1] if "site-packages/" in path else os.path.relpath(path, ROOT)
    return f"{short}:{code.co_firstlineno}({code.co_name})"


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) so far per thread group: main (the gevent hub), each named thread kind, other."""
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    main = threading.main_thread().native_id
    tick = os.sysconf("SC_CLK_TCK")
    out: Counter[str] = Counter()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tid = int(task)
        name = "main (gevent hub)" if tid == main else names.get(tid, "native (ASR/TTS/onnxruntime)")
        group = "voicebot-call (sessions)" if name.startswith("voicebot-call") else name
        out[group] += (int(fields[11]) + int(fields[12])) / tick
    return dict(out)


def children_cpu() -> dict[str, float]:
    """CPU seconds (user + system) so far of this process's live child processes, by name (e.g. asr-pool-0)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for child in multiprocessing.active_children():
        try:
            with open(f"/proc/{child.pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[child.name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def children_rss_mb(prefix: str = "asr-pool") -> float:
    """Resident memory (MB) of this process's live child processes whose name starts with ``prefix``."""
    total = 0.0
    for child in multiprocessing.active_children():
        if not child.name.startswith(prefix):
            continue
        try:
            with open(f"/proc/{child.pid}/status", encoding="ascii") as f:
                total += next((int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:")), 0) / 1024
        except OSError:
            continue
    return total


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per group: after − before (a thread that ended between the two takes its last reading with it)."""
    return {k: round(after.get(k, 0.0) - before.get(k, 0.0), 2) for k in sorted(set(before) | set(after))}
