"""voicebot.esl.unicast: port pairs, frame checks, the paced sender, stall re-arm; real UDP on 127.0.0.1.

The end-to-end tests run the outbound server and the bot of ``test_esl_connection``
against the FreeSWITCH double: what it records (``packets_heard`` with arrival
times) is what the caller would have heard.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import numpy as np
import pytest
from structlog.testing import capture_logs

from fsdouble.double import ArrayAudio, FreeSwitchDouble, MediaFaults
from tests.test_esl_connection import MediaBot, free_pool, located, noise, wait
from voicebot.esl.connection import OutboundServer
from voicebot.esl.protocol import media_format
from voicebot.esl.sendclock import SEND_LATENESS, SendClock, SendLateness
from voicebot.esl.stall import watch_stall
from voicebot.esl.unicast import PortPair, PortPool, PortsExhausted, UnicastMedia
from voicebot.logs import get_logger

PEER = ("127.0.0.1", 9)
get_logger("tests")  # configure logging now, so capture_logs() is not undone by a first-use configure()


@pytest.fixture
def stream() -> Iterator[UnicastMedia]:
    """A PCMU 8 kHz, 20 ms stream on an ephemeral port whose FreeSWITCH side is PEER (nothing listens)."""
    media = UnicastMedia(media_format("PCMU", 8000, 20), 0, PEER[1])
    yield media
    media.close()


# ------------------------------------------------------------------ port pairs


def test_port_pairs_cover_the_range_and_run_out_loudly() -> None:
    pool = PortPool(40000, 40009)
    pairs = [pool.allocate() for _ in range(pool.capacity)]
    assert pool.capacity == 5 and pairs[0] == PortPair(40000, 40001) and pairs[-1] == PortPair(40008, 40009)
    assert len({p for pair in pairs for p in (pair.local, pair.remote)}) == 10
    with pytest.raises(PortsExhausted, match="40000-40009"):
        pool.allocate()
    pool.release(pairs[3])
    pool.release(pairs[1])
    pool.release(pairs[1])  # twice: no effect
    assert (pool.free, pool.in_use) == (2, 3)
    assert [pool.allocate(), pool.allocate()] == [pairs[3], pairs[1]]  # least recently released first
    with pytest.raises(ValueError):
        PortPool(5000, 5000)
    assert PortPool(40000, 40010).capacity == 5  # an odd port at the top is left out


def test_the_pool_is_safe_across_threads() -> None:
    pool = PortPool(42000, 42099)
    held: set[PortPair] = set()
    clashes: list[PortPair] = []
    lock = threading.Lock()

    def churn() -> None:
        for _ in range(2000):
            pair = pool.allocate()
            with lock:
                if pair in held:
                    clashes.append(pair)
                held.add(pair)
            with lock:
                held.discard(pair)
            pool.release(pair)
    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clashes == [] and pool.free == pool.capacity


def test_open_skips_a_pair_whose_port_is_taken_and_close_releases() -> None:
    pool = free_pool(3)
    low = pool.low
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", low + 1))  # our side of the first pair
    try:
        media = UnicastMedia.open(pool, media_format("PCMU", 8000), label="t")
        assert media.ports == PortPair(low + 2, low + 3) and media.bound_port == low + 3 and media.peer[1] == low + 2
        assert pool.in_use == 1
        media.close()
        media.close()
        assert pool.free == pool.capacity
    finally:
        squatter.close()


# ------------------------------------------------------------------ what arrives (rules 2, 3)


def test_frames_duplicates_and_repeated_silence(stream: UnicastMedia) -> None:
    first = stream.ingest(bytes(320), PEER, 1.000)
    assert first is not None and (first.seq, first.rate, first.captured_at, len(first.samples)) == (0, 8000, 1.0, 320)
    assert stream.ingest(bytes(320), PEER, 1.0004) is None  # the same payload back to back: a duplicate
    assert stream.ingest(bytes(320), PEER, 1.020) is not None  # the same silence a frame later is a new frame
    tone = np.tile(np.array([0, 5000, 0, -5000], dtype="<i2"), 40).tobytes()  # 160 samples, period divides 20 ms
    assert stream.ingest(tone, PEER, 1.040) is not None and stream.ingest(tone, PEER, 1.060) is not None
    stats = stream.stats()
    assert (stats.packets_in, stats.frames_in, stats.duplicates) == (5, 4, 1)


def test_garbage_foreign_senders_and_gaps(stream: UnicastMedia) -> None:
    for junk in (b"", b"\x01", b"\x01\x02\x03", bytes(100), bytes(321), bytes(3200)):
        assert stream.ingest(junk, PEER, 1.0) is None
    assert stream.ingest(bytes(320), ("127.0.0.1", 10), 1.0) is None
    assert stream.ingest(bytes(320), ("127.0.0.2", 9), 1.0) is None
    assert stream.ingest(b"\x01" * 320, PEER, 2.000) is not None
    assert stream.ingest(b"\x02" * 320, PEER, 2.100) is not None  # 100 ms later: 4 frames missing (or late)
    assert stream.ingest(b"\x03" * 320, PEER, 2.101) is not None  # reordering looks like this: cannot be told
    stats = stream.stats()
    assert (stats.garbage, stats.foreign, stats.gaps, stats.est_lost, stats.frames_in) == (6, 2, 1, 4, 3)


def test_a_new_frame_size_is_adopted_after_three_in_a_row(stream: UnicastMedia) -> None:
    with capture_logs() as logs:
        assert stream.ingest(bytes(480), PEER, 1.00) is None
        assert stream.ingest(bytes(320), PEER, 1.02) is not None  # the run is broken: start again
        assert stream.ingest(b"\x01" * 480, PEER, 1.05) is None
        assert stream.ingest(b"\x02" * 480, PEER, 1.08) is None
        frame = stream.ingest(b"\x03" * 480, PEER, 1.11)
    assert frame is not None and len(frame.samples) == 480
    assert stream.media == media_format("PCMU", 8000, 30)
    [log] = [e for e in logs if e["event"] == "unicast.frame_size_mismatch"]
    assert (log["expected"], log["seen"], log["ptime_ms"]) == (320, 480, 30)
    assert stream.stats().mismatched == 4


def test_native_g711_frames_are_decoded() -> None:
    media = UnicastMedia(media_format("PCMA", 8000, 20, native=True), 0, PEER[1])
    try:
        frame = media.ingest(bytes([0xD5]) * 160, PEER, 1.0)  # A-law "zero"
        assert frame is not None and len(frame.samples) == 320 and max(abs(frame.to_array())) <= 8
        assert media.ingest(bytes(320), PEER, 1.02) is None  # s16le-sized datagram on a native stream: 40 ms
    finally:
        media.close()


def test_recv_times_out_and_close_ends_the_frames(stream: UnicastMedia) -> None:
    t0 = time.monotonic()
    assert stream.recv(timeout=0.05) is None and 0.04 < time.monotonic() - t0 < 0.2
    reader = gevent.spawn(lambda: list(stream.frames()))
    gevent.sleep(0.01)
    stream.close()
    assert reader.get(timeout=1) == []


def test_stalled_counts_from_the_last_frame_or_the_last_arm(stream: UnicastMedia) -> None:
    stream.armed(now=10.0)
    assert not stream.stalled(now=10.15) and stream.stalled(now=10.25)
    stream.ingest(bytes(320), PEER, 10.2)
    assert not stream.stalled(now=10.35) and stream.stalled(now=10.45)
    stream.armed(now=10.5)
    assert not stream.stalled(now=10.6)


def test_watch_stall_rearms_only_while_live_and_survives_a_failing_rearm(stream: UnicastMedia) -> None:
    calls: list[float] = []
    live = [True]

    def rearm() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise ConnectionError("switch busy")
    looked: list[bool] = []  # what the watcher saw at each poll

    def is_live() -> bool:
        looked.append(live[0])
        return live[0]
    stream.armed()
    with capture_logs() as logs:
        watcher = gevent.spawn(watch_stall, stream, rearm, threshold_s=0.05, poll_s=0.01, live=is_live)
        wait(lambda: len(calls) >= 2, what="two re-arms")
        live[0] = False
        seen = len(calls)
        wait(lambda: looked.count(False) >= 10, what="10 polls (twice the threshold) of a stalled stream not expected")
        assert len(calls) == seen  # paused while no stream is expected (e.g. bridged)
        stream.close()
        watcher.join(1)
    assert watcher.dead and stream.stats().stalls == len(calls)
    assert calls[1] - calls[0] >= 0.05  # a failed re-arm is retried after another threshold
    names = [e["event"] for e in logs]
    assert "unicast.rearm_failed" in names and "unicast.rearmed" in names and "unicast.stalled" in names


# ------------------------------------------------------------------ the sender (rule 4)


def test_the_schedule_is_absolute_and_late_slots_are_skipped() -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    media = UnicastMedia(media_format("PCMU", 8000, 20), 0, sink.getsockname()[1])
    asked: list[float] = []

    def next_frame(t: float) -> bytes | None:
        asked.append(t)
        if len(asked) == 5:
            time.sleep(0.07)  # the source (on the clock's thread) holds it up for 3.5 frames
        return b"\x01\x00" * 100 if len(asked) == 6 else None  # one short frame: padded
    t0 = time.monotonic()
    sender = gevent.spawn(media.send_loop, next_frame, start_at=t0)
    wait(lambda: len(asked) >= 8, what="8 slots asked")
    media.close()
    sender.join(1)
    slots = [(t - t0) / 0.02 for t in asked]
    assert all(abs(s - round(s)) < 1e-6 for s in slots)  # t_k = t0 + k·ptime: no drift
    assert round(slots[5]) - round(slots[4]) >= 3  # slots 5 and 6 passed while blocked: skipped, not sent late
    stats = media.stats()
    assert stats.late_frames >= 2 and stats.resized_out == 1 and stats.silence_out == len(asked) - 1
    assert len(sink.recv(4096)) == 320
    sink.close()


def _sinks(n: int) -> tuple[list[socket.socket], list[UnicastMedia]]:
    sinks = []
    for _ in range(n):
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        sinks.append(sink)
    return sinks, [UnicastMedia(media_format("PCMU", 8000, 20), 0, sink.getsockname()[1]) for sink in sinks]


def test_streams_share_one_clock_on_one_grid_and_one_failing_source_stops_only_itself() -> None:
    sinks, medias = _sinks(4)
    asked: dict[int, list[float]] = {i: [] for i in range(4)}

    def source(i: int) -> Callable[[float], bytes | None]:
        def next_frame(t: float) -> bytes | None:
            asked[i].append(t)
            if i == 3 and len(asked[i]) == 5:
                raise RuntimeError("the session thread failed")
            return None
        return next_frame
    senders = []
    for i, media in enumerate(medias):
        senders.append(gevent.spawn(media.send_loop, source(i)))
        gevent.sleep(0.007)  # streams start at different moments...
    assert SendClock.process().streams == 4
    wait(lambda: senders[3].dead and all(len(asked[i]) >= 12 for i in range(3)), what="12 slots of each stream")
    grid = asked[0][0]
    for i in range(3):  # ...and still share the clock's 20 ms grid, slot after slot, without drift
        assert all(abs((t - grid) / 0.02 - round((t - grid) / 0.02)) < 1e-6 for t in asked[i]), i
        assert len(asked[i]) >= 12
    slots = [{round(t, 6) for t in asked[i]} for i in range(3)]
    assert slots[1] <= slots[0] and slots[2] <= slots[0]  # due together: one wake sends them
    assert senders[3].dead and isinstance(senders[3].exception, RuntimeError) and len(asked[3]) == 5
    assert all(not g.dead for g in senders[:3]) and SendClock.process().streams == 3
    senders[0].kill()  # the call's greenlets are killed on hang-up: its sending stops at once
    count = len(asked[0])
    wait(lambda: len(asked[1]) >= count + 4, what="4 more slots of the other streams")
    assert len(asked[0]) == count
    for media in medias:
        media.close()
    gevent.joinall(senders[1:3], timeout=1)
    assert all(g.dead and g.exception is None for g in senders[1:3]) and SendClock.process().streams == 0
    assert [len(s.recv(4096)) for s in sinks] == [320] * 4
    for sink in sinks:
        sink.close()


def test_send_lateness_percentiles_and_skips() -> None:
    late = SendLateness()
    assert late.summary() == {"n": 0, "p50": None, "p95": None, "p99": None, "max": 0.0, "skipped": 0}
    for ms in [0.2] * 90 + [3.0] * 8 + [41.0, 2000.0]:
        late.add(ms / 1000)
    late.skip(3)
    summary = late.summary()
    assert summary["n"] == 100 and summary["skipped"] == 3 and summary["max"] == 2000.0
    assert summary["p50"] == 0.5 and summary["p95"] == 3.5 and summary["p99"] == 41.5  # upper edges of 0.5 ms bins
    late.reset()
    assert late.n == 0 and late.skipped == 0


def test_every_frame_sent_is_counted_in_the_process_lateness() -> None:
    sinks, medias = _sinks(1)
    SEND_LATENESS.reset()
    sender = gevent.spawn(medias[0].send_loop, lambda t: None)
    wait(lambda: medias[0].stats().packets_out >= 12, what="12 frames sent")
    medias[0].close()
    sender.join(1)
    stats = medias[0].stats()
    assert SEND_LATENESS.n == stats.packets_out >= 10
    assert SEND_LATENESS.percentile_ms(50) is not None and SEND_LATENESS.percentile_ms(50) < 20
    sinks[0].close()


HUB_BLOCK_S = 0.2  # how long the test keeps the gevent hub busy (10 slots)


def _stamped_sink() -> socket.socket:
    """A UDP socket on 127.0.0.1 that has the kernel stamp each datagram's arrival (SO_TIMESTAMPNS, Linux)."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
    sink.setblocking(False)
    return sink


def _arrivals(sink: socket.socket) -> list[float]:
    """The kernel's arrival times (wall-clock s) of every datagram waiting in ``sink``, in order."""
    times: list[float] = []
    while True:
        try:
            _, ancillary, _, _ = sink.recvmsg(4096, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return times
        stamps = [struct.unpack("qq", data[:16]) for level, kind, data in ancillary
                  if level == socket.SOL_SOCKET and kind == 35]
        assert stamps, "no kernel timestamp on a datagram"
        times.append(stamps[0][0] + stamps[0][1] / 1e9)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_TIMESTAMPNS is Linux's")
def test_frames_keep_leaving_every_ptime_while_the_hub_is_blocked() -> None:
    """The send clock is a native thread: a hub busy for 200 ms (ESL parsing, a socket read on a loaded box, as
    bench/max_gap.py caught it) delays no call's frame. The frames' arrival times at a real UDP socket say so.
    On a greenlet clock nothing arrives while the hub is busy (a 200+ ms hole); the bounds leave room for a box
    whose other work keeps the clock's thread off a CPU for a while (tens of ms seen at a load average of 6)."""
    sink = _stamped_sink()
    media = UnicastMedia(media_format("PCMU", 8000, 20), 0, sink.getsockname()[1])
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.001)  # as Engine.start sets it
    sender = gevent.spawn(media.send_loop, lambda t: b"\x10\x00" * 160)
    try:
        wait(lambda: media.stats().packets_out >= 5, what="5 frames sent before the block")
        blocked_from = time.time()
        while time.time() - blocked_from < HUB_BLOCK_S:  # Python busy on the hub: it never yields to any greenlet
            pass
        blocked_until = time.time()
        after = media.stats().packets_out
        wait(lambda: media.stats().packets_out >= after + 3, what="3 frames after the block")
    finally:
        sys.setswitchinterval(old_interval)
        media.close()
        sender.join(1)
    times = _arrivals(sink)
    sink.close()
    during = [t for t in times if blocked_from <= t <= blocked_until]
    around = [t for t in times if blocked_from - 0.025 <= t <= blocked_until + 0.025]
    gaps_ms = [(b - a) * 1000 for a, b in itertools.pairwise(around)]
    assert len(during) >= 5, f"{len(during)} frames arrived while the hub was blocked {HUB_BLOCK_S * 1000:.0f} ms"
    assert max(gaps_ms) < 100, f"a {max(gaps_ms):.1f} ms hole in the stream while the hub was blocked"


def test_deliver_hands_frames_to_a_callback_in_order_until_close() -> None:
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    media = UnicastMedia(media_format("PCMU", 8000, 20), 0, peer.getsockname()[1])
    got: list[Any] = []
    receiver = gevent.spawn(media.deliver, got.append)
    gevent.sleep(0.01)
    frames = [np.full(160, 100 * (k + 1), dtype="<i2").tobytes() for k in range(5)]
    for k, pcm in enumerate(frames):
        peer.sendto(pcm, ("127.0.0.1", media.bound_port))
        if k == 2:
            peer.sendto(b"odd", ("127.0.0.1", media.bound_port))  # garbage: counted and dropped
        gevent.sleep(0.021)
    wait(lambda: len(got) == 5 and media.stats().garbage == 1, what="the 5 frames and the garbage")
    assert [f.samples for f in got] == frames and [f.seq for f in got] == list(range(5))
    assert all(b.captured_at - a.captured_at > 0.015 for a, b in itertools.pairwise(got))  # arrival times, not now
    assert media.stats().garbage == 1 and not receiver.dead
    media.close()
    receiver.join(1)
    assert receiver.dead and receiver.exception is None
    peer.close()


def test_deliver_raises_what_the_callback_raised_and_stops() -> None:
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    media = UnicastMedia(media_format("PCMU", 8000, 20), 0, peer.getsockname()[1])
    seen: list[Any] = []

    def consumer(frame: Any) -> None:
        seen.append(frame)
        raise RuntimeError("the session is gone")
    receiver = gevent.spawn(media.deliver, consumer)
    gevent.sleep(0.01)
    for _ in range(3):
        peer.sendto(bytes(320), ("127.0.0.1", media.bound_port))
        gevent.sleep(0.01)
    receiver.join(1)
    assert receiver.dead and isinstance(receiver.exception, RuntimeError) and len(seen) == 1
    media.close()
    peer.close()


@pytest.fixture
def short_gil_slices() -> Iterator[None]:
    """The double shares this process and its GIL (a real FreeSWITCH does not): with Python's 5 ms switch
    interval its receiving thread can wait up to 5 ms to timestamp a datagram. 0.5 ms keeps that
    harness artifact out of the arrival times; the sender's own lateness is measured without it too."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    yield
    sys.setswitchinterval(old)


def _jitter_limit_ms() -> float:
    """5 ms, as specified; 10 ms while the box is oversubscribed (a 1-minute load average over its core count:
    other work on these cores delays every wake-up, ours and the double's), said in a warning."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load <= cores:
        return 5.0
    warnings.warn(f"load average {load:.1f} on {cores} cores: pacing checked against 10 ms, not 5 ms", stacklevel=2)
    return 10.0


def test_pacing_over_five_seconds_and_barge_in_stops_the_bot_at_once(fs: FreeSwitchDouble,
                                                                    serve: Callable[..., OutboundServer],
                                                                    capsys: Any, short_gil_slices: None) -> None:
    pool = free_pool()
    bot = MediaBot(pool)
    server = serve(bot)
    uuid = fs.place_call(server.port, caller=ArrayAudio(noise(8000, 6.0, seed=2), 8000))
    wait(lambda: uuid in bot.calls and bot.calls[uuid].source is not None, what="sending")
    rec = bot.calls[uuid]
    assert rec.source is not None and rec.media is not None
    gevent.sleep(4.0)
    rec.source.stop()  # the caller barged in: from now on the bot sends silence
    gevent.sleep(1.0)
    limit = _jitter_limit_ms()
    stats = rec.media.stats()
    packets = fs.channel(uuid).packets_heard()
    slot = {pcm: t for t, pcm in rec.source.sent}
    speech = [(p.at, slot[p.data]) for p in packets if p.data in slot]
    assert len(speech) >= 190 and len(packets) >= 240
    slots, asked = np.array(rec.source.calls).T
    assert (asked >= slots).all()  # nothing is ever asked for (or sent) ahead of its slot: no queue in the engine
    sender_ms = np.abs(np.diff(asked[5:]) - 0.020) * 1000  # when frames left the engine
    sender_p95 = float(np.percentile(sender_ms, 95))
    assert sender_p95 < limit  # the sender's inter-frame jitter
    lateness = np.array([at - t for at, t in speech])
    assert lateness.min() >= 0  # no frame reached the caller before its slot
    assert np.percentile(lateness, 99) < 0.040  # each reaches the caller within a frame or two of its slot
    jitter_ms = np.abs(np.diff([p.at for p in packets[5:]]) - 0.020) * 1000  # as the caller's side heard them
    p95 = float(np.percentile(jitter_ms, 95))
    assert p95 < limit + 3  # includes the double's own thread wake-ups: 0.5-3 ms on a quiet box
    last_speech = max(at for at, _ in speech)
    assert last_speech - rec.source.stopped_at < 0.025  # barge-in: the caller stops hearing the bot within a frame
    assert all(p.data == bytes(320) for p in packets if p.at > rec.source.stopped_at + 0.025)
    assert stats.late_frames <= 5 and stats.p95_send_jitter_ms < limit
    with capsys.disabled():
        print(f"\npacing over 5 s: {len(packets)} frames, sender inter-frame jitter p95 {sender_p95:.2f} ms "
              f"max {sender_ms.max():.2f} ms; inter-arrival jitter at the double p50 "
              f"{np.percentile(jitter_ms, 50):.2f} ms p95 {p95:.2f} ms max {jitter_ms.max():.2f} ms; "
              f"send lateness p95 {stats.p95_send_jitter_ms:.2f} ms max {stats.max_send_jitter_ms:.2f} ms; "
              f"slot-to-arrival p99 {np.percentile(lateness, 99) * 1000:.2f} ms max {lateness.max() * 1000:.2f} ms; "
              f"late frames {stats.late_frames}; "
              f"barge-in to last bot frame {(last_speech - rec.source.stopped_at) * 1000:.1f} ms")
    fs.hangup(uuid)
    wait(lambda: pool.free == pool.capacity, what="ports released")
    fs.assert_no_crash()


# ------------------------------------------------------------------ faults end to end


def test_loss_duplicates_reordering_and_garbage_are_survived(fs: FreeSwitchDouble,
                                                            serve: Callable[..., OutboundServer]) -> None:
    pool = free_pool()
    bot = MediaBot(pool)
    server = serve(bot)
    caller = noise(8000, 4.0, seed=3)
    uuid = fs.place_call(server.port, caller=ArrayAudio(caller, 8000))
    wait(lambda: uuid in bot.calls and len(bot.calls[uuid].frames) >= 5, what="media")
    rec = bot.calls[uuid]
    assert rec.media is not None
    fs.set_media_faults(uuid, MediaFaults(loss=0.1, duplicate=0.3, reorder=0.1, seed=5))
    for junk in (b"", b"\x01", b"\x01\x02\x03", bytes(100), bytes(321), bytes(480)):
        fs.send_udp(uuid, junk)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.sendto(bytes(320), ("127.0.0.1", rec.media.bound_port))
    stranger.close()

    def faults_seen() -> bool:
        stats = rec.media.stats()
        return (stats.duplicates >= 5 and stats.gaps >= 2 and stats.est_lost >= 2 and stats.garbage >= 5
                and stats.foreign >= 1 and stats.mismatched >= 1 and len(rec.frames) >= 50)
    wait(faults_seen, timeout=5, what="the faults counted")
    stats = rec.media.stats()
    assert stats.duplicates >= 5 and stats.gaps >= 2 and stats.est_lost >= 2
    assert (stats.garbage, stats.foreign, stats.mismatched) == (5, 1, 1)
    assert rec.media.media.ptime_ms == 20 and not rec.call.closed
    frames = list(rec.frames)
    assert {len(f.samples) for f in frames} == {320} and len(frames) >= 50
    for frame in frames[-40:]:  # every frame passed on is a genuine piece of what the caller said
        located(caller, frame.to_array())
    same = [a.samples == b.samples for a, b in itertools.pairwise(frames)]
    assert not any(same)  # no duplicate got through
    fs.set_media_faults(uuid, MediaFaults())
    n = len(rec.frames)
    wait(lambda: len(rec.frames) >= n + 10, what="clean media again")
    fs.assert_no_crash()


def test_a_stall_after_a_ptime_change_is_detected_and_rearmed(fs: FreeSwitchDouble,
                                                             serve: Callable[..., OutboundServer]) -> None:
    pool = free_pool()
    bot = MediaBot(pool, watch_stall_s=0.2)
    server = serve(bot)
    uuid = fs.place_call(server.port, codec="PCMA")
    wait(lambda: uuid in bot.calls and len(bot.calls[uuid].frames) >= 10, what="media")
    rec = bot.calls[uuid]
    assert rec.media is not None
    with capture_logs() as logs:
        changed_at = time.monotonic()
        fs.change_ptime(uuid, 30)  # the SIP peer switched to 30 ms: unicast dies silently
        assert not fs.channel(uuid).unicast_active
        fs.wait_for(lambda: fs.channel(uuid).unicast_active, timeout=2, what="unicast re-armed")
        rearmed_in = time.monotonic() - changed_at
        wait(lambda: rec.media is not None and rec.media.media.ptime_ms == 30, what="30 ms adopted")
        wait(lambda: sum(len(p.data) == 480 for p in fs.channel(uuid).packets_heard()) >= 10,
             what="the bot sends 30 ms frames")
    assert 0.2 <= rearmed_in < 0.6
    assert f"api uuid_transfer {uuid} park inline" in fs.commands
    assert rec.media.stats().stalls == 1 and len(rec.frames[-1].samples) == 480
    names = [e["event"] for e in logs]
    assert names.index("unicast.stalled") < names.index("unicast.rearmed") < names.index("unicast.frame_size_mismatch")
    fs.assert_no_crash()
