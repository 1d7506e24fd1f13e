"""Twenty short calls through the engine and the FreeSWITCH test double leave nothing behind.

Calls alternate: the caller presses 2 (wrong person: the bot says goodbye and
hangs up), or the caller hangs up as soon as media flows. Afterwards every port
pair is back in the pool, the native threads and the live greenlets are back to
their baseline, every call has its record, and nothing would have crashed
FreeSWITCH.
"""

from __future__ import annotations

import gc
import threading

import gevent
import numpy as np

from fsdouble.double import ArrayAudio, FreeSwitchDouble
from tests.engine_support import EngineSetup, wait
from voicebot.engine import Engine

CALLS = 20  # a per-call leak shows as 20 of a thread, greenlet or port pair; 50 calls took a minute of CI


ENGINE = EngineSetup((43400, 43599))


def live_greenlets() -> int:
    """gevent Greenlets started and not finished (the engine's I/O: servers, calls, media loops, subscribers)."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, gevent.Greenlet) and not obj.dead)


def engine_threads() -> int:
    """Native threads, less the double's own (``fsdouble-*``): the double leaves the writer thread of each
    outbound socket the engine closed blocked on its queue (its ``_Conn`` only ends it on its own close), which
    is the double's leak, not the engine's."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("fsdouble-"))


def settled(engine: Engine, fs: FreeSwitchDouble) -> bool:
    """No call in the engine, no port pair in use, no live channel in the double."""
    return engine.metrics.active_calls == 0 and engine.pool.in_use == 0 and not fs.channels(live_only=True)


def test_twenty_calls_leak_nothing(fs: FreeSwitchDouble, engine: Engine) -> None:
    silence = ArrayAudio(np.zeros(8000, np.int16), 8000)
    threads_before = engine_threads()
    greenlets_before = live_greenlets()
    uuids: list[str] = []
    for i in range(CALLS):
        uuid = fs.place_call(engine.server.port, codec="PCMU", rate=8000, caller=silence)
        uuids.append(uuid)
        channel = fs.channel(uuid)
        fs.wait_for(lambda: channel.unicast_active, timeout=15, what=f"call {i}: unicast armed")  # noqa: B023
        if i % 2 == 0:
            fs.press(uuid, "2")  # wrong person: goodbye, then the bot hangs up
        else:
            fs.hangup(uuid)  # the caller hangs up at once
        fs.wait_for(lambda: channel.hung_up, timeout=30, what=f"call {i}: hung up")  # noqa: B023
        wait(lambda: settled(engine, fs), 10, f"call {i}: released")

    assert engine.pool.in_use == 0
    # each call's session thread ends with the call
    wait(lambda: engine_threads() <= threads_before + 1, 10,
         f"threads back to {threads_before} (+1), now {engine_threads()}: {sorted(t.name for t in threading.enumerate())}")
    wait(lambda: live_greenlets() <= greenlets_before + 2, 10,
         f"live greenlets back to {greenlets_before} (+2), now {live_greenlets()}")

    assert engine.flush_records(), "the record writer saved the records"
    records = {r.call_id: r for r in engine.store.list(limit=CALLS * 2)}
    assert len(records) == CALLS and set(records) == set(uuids)
    dispositions = [records[u].disposition for u in uuids]
    assert dispositions[0::2] == ["wrong_person"] * (CALLS // 2)
    assert dispositions[1::2] == ["caller_hangup"] * (CALLS // 2)
    assert engine.metrics.calls_total == CALLS and engine.metrics.errors == 0 and engine.metrics.active_calls == 0
    fs.assert_no_crash()
