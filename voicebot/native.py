"""Native OS locks that stay native under gevent monkey-patching (for locks shared with worker threads)."""

from __future__ import annotations

import _thread
import sys
from typing import Any


def native_lock() -> Any:
    """A real OS lock, even under gevent monkey-patching (``_thread.allocate_lock`` from before patching)."""
    monkey = sys.modules.get("gevent.monkey")
    allocate = monkey.get_original("_thread", "allocate_lock") if monkey is not None else _thread.allocate_lock
    return allocate()
