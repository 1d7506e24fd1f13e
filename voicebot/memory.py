"""Giving the memory of ended calls back to the system.

A call's native work (the ASR decoders it creates, the session thread's
buffers) is allocated by glibc's malloc in per-thread arenas; when the call
ends the memory is free but stays in the arenas, so the engine's RSS stays at
its peak (bench/soak.py, 10 calls: 462 MB loaded, 570 MB after the calls ended,
475 MB after ``malloc_trim(0)``; Python's own traced memory grew by under 1 MB).
:class:`MemoryTrimmer` trims after calls end, at most every ``TRIM_EVERY_S``, and once more when
the calls' ends have settled (the engine's record writer runs it when idle).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable

TRIM_EVERY_S = 5.0  # at most one malloc_trim per this many seconds (s)


def _libc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


class MemoryTrimmer:
    """``maybe()`` returns free heap memory to the system unless it did so under ``every_s`` ago (thread-safe)."""

    def __init__(self, every_s: float = TRIM_EVERY_S) -> None:
        self.every_s = every_s
        self.trims = 0
        self._trim = _libc_trim()
        self._last = float("-inf")
        self._lock = threading.Lock()

    def maybe(self) -> bool:
        """Trim now if it is time (blocks the calling thread for a few ms: never call it on the hub)."""
        return self.trim(force=False)

    def trim(self, force: bool = True) -> bool:
        """Trim now (``force``) or if it is time; True when it trimmed."""
        with self._lock:
            now = time.monotonic()
            if self._trim is None or (not force and now - self._last < self.every_s):
                return False
            self._last = now
        self._trim(0)
        self.trims += 1
        return True
