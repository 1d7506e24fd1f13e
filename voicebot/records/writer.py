"""The record writer: one native thread owns the record store, so storage never blocks the gevent hub.

The engine queues each ended call's work (:meth:`RecordWriter.submit`: save
the record, then close its recording) and returns at once. The thread runs the
jobs in order; :meth:`~voicebot.records.store.SpooledStore.save` spools a
record before it tries the database, so while the database is down records
wait in the spool, and the thread retries them every ``RETRY_S`` until they
are committed. Media never waits: an outage only delays records.
:meth:`close` drains the queue, makes a last attempt, and closes the store.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from voicebot.logs import get_logger
from voicebot.records.store import SpooledStore

RETRY_S = 1.0  # while records wait in the spool (database down), retry them this often (s)
IDLE_S = 1.0  # ``when_idle`` runs once the writer has had no job for this long after one (s)

Job = Callable[[], object]  # its result is ignored
log = get_logger("records.writer")


class RecordWriter:
    """Runs storage jobs in order on its own thread; ``submit`` never blocks."""

    def __init__(self, store: SpooledStore, *, retry_s: float = RETRY_S, when_idle: Job | None = None) -> None:
        self.store = store
        self.retry_s = retry_s
        self.when_idle = when_idle  # e.g. give the ended calls' memory back, once the hang-ups have settled
        self._idle_due = False
        self.submitted = 0
        self.done = 0  # jobs finished (ran or failed)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._waiting = store.pending() > 0  # records left in the spool by a previous run or an outage
        self._thread = threading.Thread(target=self._run, name="voicebot-records", daemon=True)
        self._thread.start()

    @property
    def idle(self) -> bool:
        """True when every submitted job has run (records may still wait in the spool: see ``store.pending()``)."""
        return self.done == self.submitted

    def submit(self, job: Job) -> None:
        """Queue ``job`` for the writer thread (never blocks, never raises)."""
        self.submitted += 1
        self._jobs.put_nowait(job)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Run what is queued, retry the spool once more, close the store; True when the thread finished in time."""
        self._jobs.put_nowait(None)
        self._thread.join(timeout_s)
        finished = not self._thread.is_alive()
        if not finished:
            log.error("records.writer_stuck", queued=self.submitted - self.done, timeout_s=timeout_s)
        pending = self.store.pending()
        if pending:
            log.warning("records.left_in_spool", pending=pending)  # recovered at the next start
        if finished:
            self.store.close()
        return finished

    def _run(self) -> None:
        while True:
            timeout = self.retry_s if self._waiting else IDLE_S if self._idle_due else None
            try:
                job = self._jobs.get(timeout=timeout)
            except queue.Empty:
                self._retry()
                if self._idle_due and self.when_idle is not None:
                    self._idle_due = False
                    self._do(self.when_idle, counted=False)
                continue
            if job is None:
                self._retry()
                return
            self._do(job)
            self._idle_due = True

    def _do(self, job: Job, *, counted: bool = True) -> None:
        try:
            job()
        except Exception as exc:  # a job must never end the thread: the next call's record needs it
            log.error("records.job_failed", error=type(exc).__name__, detail=str(exc))
        finally:
            if counted:
                self.done += 1
        self._waiting = self.store.pending() > 0

    def _retry(self) -> None:
        """Commit what the spool holds, if anything (the database may be back)."""
        if self.store.pending() == 0:
            self._waiting = False
            return
        started = time.monotonic()
        committed = self.store.recover()
        self._waiting = self.store.pending() > 0
        if committed:
            log.info("records.caught_up", committed=committed, pending=self.store.pending(),
                     seconds=round(time.monotonic() - started, 3))
