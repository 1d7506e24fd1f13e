"""Memory of ended calls goes back to the system (issue 13, defect 15).

What held it (bench/soak.py, 20 calls x 3 rounds): not Python objects (tracemalloc grew by under 1 MB) but
glibc's per-thread malloc arenas, where each call's native allocations stay after they are freed. The engine
trims after calls end (:class:`~voicebot.memory.MemoryTrimmer`, run by the record writer when it goes idle).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from voicebot.memory import MemoryTrimmer
from voicebot.records.store import open_store
from voicebot.records.writer import RecordWriter

ROOT = Path(__file__).resolve().parent.parent

CHURN = """
import threading
from voicebot.memory import MemoryTrimmer

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

def call():  # a call's native work in its own thread: many malloc'ed blocks, a few outliving the call
    blocks = [bytes(4000) for _ in range(40_000)]
    survivors.extend(blocks[::500])

survivors = []
before = rss_mb()
threads = [threading.Thread(target=call) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
ended = rss_mb()
MemoryTrimmer().trim()
print(before, ended, rss_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_trimming_gives_an_ended_calls_memory_back() -> None:
    out = subprocess.run([sys.executable, "-c", CHURN], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    before, ended, trimmed = map(float, out.stdout.split())
    assert ended - before > 100, (before, ended, trimmed)  # 4 calls x 160 MB freed, but held by the arenas
    assert trimmed - before < (ended - before) / 4, (before, ended, trimmed)


def test_the_trimmer_runs_at_most_every_so_often() -> None:
    trimmer = MemoryTrimmer(every_s=60.0)
    assert trimmer.maybe() and not trimmer.maybe() and trimmer.trims == 1
    assert trimmer.trim() and trimmer.trims == 2  # forced


def test_the_record_writer_runs_its_idle_job_once_after_the_calls_settle(tmp_path: Path) -> None:
    ran = threading.Event()
    count: list[float] = []

    def idle() -> None:
        count.append(time.monotonic())
        ran.set()

    writer = RecordWriter(open_store(tmp_path / "calls.sqlite"), when_idle=idle)
    try:
        for batch in (1, 2):
            ran.clear()
            submitted = time.monotonic()
            for _ in range(3):
                writer.submit(lambda: None)
            assert ran.wait(5), "the idle job runs once the jobs have settled"
            assert len(count) == batch, "once per settling"
            assert count[-1] - submitted >= 0.9, "not before the writer has been idle a second"
    finally:
        assert writer.close(5)
