"""Handing items from native threads to a greenlet without polling.

A call's session runs in a native thread (CPU work never blocks the gevent
hub); what it decides that needs I/O (put the caller through to an agent) must
reach a greenlet at once, not on the next poll. :class:`HubInbox` is a deque
plus a libev/libuv *async* watcher, the one thread-safe way to wake the hub.
"""

from __future__ import annotations

import collections
from typing import Generic, TypeVar

import gevent
import gevent.event

T = TypeVar("T")


class HubInbox(Generic[T]):
    """Items put from any thread, taken by one greenlet. Create it in the hub's thread."""

    def __init__(self) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._ready = gevent.event.Event()
        self._watcher = gevent.get_hub().loop.async_()
        self._watcher.start(self._ready.set)
        self._closed = False

    def put(self, item: T) -> None:
        """Queue ``item`` and wake the hub (any thread; never blocks)."""
        if self._closed:
            return
        self._items.append(item)
        self._watcher.send()

    def get(self, timeout: float | None = None) -> T | None:
        """The next item, waiting up to ``timeout`` s (None: forever); None when nothing came."""
        if not self._items:
            self._ready.clear()
            if not self._items:
                self._ready.wait(timeout)
        return self._items.popleft() if self._items else None

    def close(self) -> None:
        """Stop the watcher; later puts are dropped. Wakes a waiting greenlet (its get returns None)."""
        if not self._closed:
            self._closed = True
            self._ready.set()
            self._watcher.stop()
            self._watcher.close()
