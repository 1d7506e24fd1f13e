"""voicebot.esl.connection against the FreeSWITCH double (and small scripted peers) on 127.0.0.1.

Real sockets, real UDP. The engine runs as greenlets in the test's own gevent hub
(no monkey-patching); the double runs in its own threads, and ``fs.wait_for``
yields to the hub while it waits.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
import gevent.server
import gevent.socket
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from structlog.testing import capture_logs

from fsdouble.double import ArrayAudio, ChannelState, FreeSwitchDouble, Timing
from voicebot.audio.codecs import decode, encode
from voicebot.audio.frame import AudioFrame
from voicebot.esl.connection import (
    CALL_EVENTS,
    CallGone,
    EslDown,
    EslError,
    EslTimeout,
    InboundConnection,
    OutboundCall,
    OutboundServer,
    UnicastBeforeAnswer,
    backoff_delay,
)
from voicebot.esl.protocol import (
    EslEvent,
    format_api_response,
    format_channel_data,
    format_event,
    format_reply,
    media_format,
)
from voicebot.esl.stall import watch_stall
from voicebot.esl.unicast import PortPool, UnicastMedia
from voicebot.logs import get_logger

get_logger("tests")  # configure logging now, so capture_logs() is not undone by a first-use configure()


# ------------------------------------------------------------------ helpers shared with test_unicast.py


def wait(pred: Callable[[], object], timeout: float = 3.0, what: str = "condition") -> None:
    """Yield to the hub until ``pred()`` holds; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        gevent.sleep(0.005)


def noise(rate: int, seconds: float, seed: int) -> np.ndarray:
    """Random int16 audio: every frame is unique, so a frame tells where it came from."""
    return np.random.default_rng(seed).integers(-20000, 20000, int(rate * seconds)).astype(np.int16)


class Source:
    """Bot audio for ``send_loop``: one unique frame per call, recorded with its scheduled time."""

    def __init__(self, samples: int, seed: int = 7, stop_at: float | None = None) -> None:
        self.samples = samples
        self.rng = np.random.default_rng(seed)
        self.sent: list[tuple[float, bytes]] = []
        self.calls: list[tuple[float, float]] = []  # (slot t, when the sender asked): its real timing
        self.stop_at = stop_at  # monotonic s after which the bot is silent (barge-in)
        self.stopped_at: float | None = None

    def stop(self) -> None:
        self.stopped_at = time.monotonic()

    def __call__(self, t: float) -> bytes | None:
        self.calls.append((t, time.monotonic()))
        if self.stopped_at is not None:
            return None
        pcm = self.rng.integers(-20000, 20000, self.samples).astype("<i2").tobytes()
        self.sent.append((t, pcm))
        return pcm


@dataclass
class BotRecord:
    call: OutboundCall
    media: UnicastMedia | None = None
    source: Source | None = None
    frames: list[AudioFrame] = field(default_factory=list)
    events: list[EslEvent] = field(default_factory=list)
    done: Any = field(default_factory=gevent.event.Event)
    paused_polls: int = 0  # stall-watch polls that found no stream expected (bridged)


class MediaBot:
    """An outbound-server handler: connect, subscribe, answer, unicast, record caller frames, send bot frames."""

    def __init__(self, pool: PortPool, *, native: bool = False, watch_stall_s: float | None = None,
                 source: Callable[[int], Source] | None = None) -> None:
        self.pool = pool
        self.native = native
        self.watch_stall_s = watch_stall_s
        self.make_source = source or (lambda samples: Source(samples))
        self.calls: dict[str, BotRecord] = {}

    def __call__(self, call: OutboundCall) -> None:
        call.connect()
        rec = self.calls[call.uuid] = BotRecord(call)
        try:
            call.subscribe()
            call.linger()
            call.answer()
            assert call.media is not None
            fmt = media_format(call.media.codec, call.media.rate, call.media.ptime_ms, native=self.native)
            rec.media = media = UnicastMedia.open(self.pool, fmt, label=call.uuid)
            self._serve(rec, media)
        finally:
            if rec.media is not None:
                rec.media.close()
            rec.done.set()

    def _arm(self, call: OutboundCall, media: UnicastMedia, rearm: bool = False) -> None:
        assert media.ports is not None
        args = ("127.0.0.1", media.ports.local, "127.0.0.1", media.ports.remote)
        (call.rearm_unicast if rearm else call.unicast)(*args, native=self.native)

    def _serve(self, rec: BotRecord, media: UnicastMedia) -> None:
        call = rec.call
        self._arm(call, media)
        media.armed()
        rec.source = self.make_source(media.media.samples_per_frame)
        workers = [gevent.spawn(media.send_loop, rec.source), gevent.spawn(lambda: rec.frames.extend(media.frames()))]
        if self.watch_stall_s is not None:
            def live() -> bool:
                rec.paused_polls += not call.unicast_expected
                return call.unicast_expected
            workers.append(gevent.spawn(watch_stall, media, lambda: self._arm(call, media, rearm=True),
                                        threshold_s=self.watch_stall_s, live=live))
        try:
            for event in call.events():
                rec.events.append(event)
                if event.name == "CHANNEL_HANGUP":
                    break
        finally:
            media.close()
            gevent.killall(workers)


@pytest.fixture
def inbound(fs: FreeSwitchDouble) -> Iterator[InboundConnection]:
    conn = InboundConnection("127.0.0.1", fs.inbound_port, "ClueCon", command_timeout_s=2,
                             backoff_initial_s=0.05, backoff_max_s=0.2)
    conn.start()
    assert conn.wait_up(3)
    yield conn
    conn.stop()


def free_pool(pairs: int = 5) -> PortPool:
    """A PortPool over a block of UDP ports free right now: an ephemeral port's block, each one test-bound."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            low = probe.getsockname()[1] & ~1
        if low + 2 * pairs > 65536:
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(low, low + 2 * pairs):
                socks.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                socks[-1].bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return PortPool(low, low + 2 * pairs - 1)
    raise RuntimeError("no free block of UDP ports on 127.0.0.1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def located(haystack: np.ndarray, needle: np.ndarray) -> int:
    """Where ``needle``'s first 64 samples start in ``haystack`` (exactly one place)."""
    head = needle[:64]
    hits = np.flatnonzero((sliding_window_view(haystack, len(head)) == head).all(axis=1))
    assert len(hits) == 1, f"found {len(hits)} times"
    return int(hits[0])


# ------------------------------------------------------------------ backoff


def test_backoff_doubles_from_a_quarter_second_to_a_cap_of_one_and_a_half_with_jitter() -> None:
    top = [backoff_delay(n, rand=lambda: 1.0) for n in range(1, 8)]
    low = [backoff_delay(n, rand=lambda: 0.0) for n in range(1, 8)]
    assert top == [0.25, 0.5, 1.0, 1.5, 1.5, 1.5, 1.5]
    assert low == [d / 2 for d in top]
    assert backoff_delay(10_000) <= 1.5


# ------------------------------------------------------------------ inbound


def test_inbound_auth_api_bgapi_originate_and_events(fs: FreeSwitchDouble, inbound: InboundConnection) -> None:
    state = inbound.state()
    assert state.connected and state.reconnects == 0 and state.last_error == ""
    assert inbound.api("status").startswith("UP 0 years")
    with pytest.raises(EslError, match="-ERR nosuch Command not found"):
        inbound.api("nosuch thing")
    seen: list[EslEvent] = []
    inbound.on_event(seen.append, names=["CHANNEL_PARK", "CHANNEL_HANGUP"])
    job = inbound.bgapi("originate {origination_uuid=job-leg}loopback/7001/voicebot &park()")
    assert inbound.job_result(job, timeout=2) == "+OK job-leg\n"
    assert inbound.originate("loopback/7002/voicebot", "&park()", uuid="leg-2", timeout=2) == "leg-2"
    duplicate = inbound.bgapi_result("originate {origination_uuid=leg-2}loopback/7002/voicebot &park()", 2)
    assert duplicate.startswith("+OK ") and duplicate.strip() != "+OK leg-2"  # a fresh uuid, as FreeSWITCH does
    inbound.uuid_kill(duplicate[4:].strip())
    wait(lambda: {"job-leg", "leg-2"} <= {e.unique_id for e in seen if e.name == "CHANNEL_PARK"}, what="parks")
    with inbound.expect_event(lambda e: e.name == "CHANNEL_HANGUP" and e.unique_id == "leg-2") as hangup:
        assert inbound.uuid_kill("leg-2") == "+OK\n"
        assert hangup.get(2).get("Hangup-Cause") == "NORMAL_CLEARING"
    assert inbound.uuid_recv_dtmf("job-leg", "5").startswith("+OK job-leg")
    assert inbound.wait_event(lambda e: e.name == "DTMF", 2).get("DTMF-Digit") == "5"
    assert inbound.uuid_transfer_park("job-leg").name == "CHANNEL_PARK"
    inbound.originate("loopback/7003/voicebot", "&park()", uuid="agent", timeout=2)
    with inbound.expect_event(lambda e: e.name == "CHANNEL_BRIDGE", "CHANNEL_BRIDGE") as bridged:
        assert inbound.uuid_bridge("job-leg", "agent") == "+OK agent\n"
        assert bridged.get(2).get("Bridge-B-Unique-ID") == "agent"
    with pytest.raises(EslError, match="No such channel"):
        inbound.uuid_break("nope")
    with pytest.raises(EslTimeout):
        inbound.wait_event(lambda e: e.name == "NEVER", 0.05)
    fs.assert_no_crash()


def test_a_slow_subscriber_delays_nobody_and_a_failing_one_is_contained(fs: FreeSwitchDouble,
                                                                      inbound: InboundConnection) -> None:
    fast: list[float] = []
    slow: list[str] = []
    inbound.on_event(lambda e: (gevent.sleep(1.0), slow.append(e.name)), names=["CHANNEL_PARK"])
    inbound.on_event(lambda e: 1 / 0, names=["CHANNEL_PARK"])
    inbound.on_event(lambda e: fast.append(time.monotonic()), names=["CHANNEL_PARK"])
    t0 = time.monotonic()
    for n in range(3):
        inbound.originate(f"loopback/70{n}/voicebot", "&park()", timeout=2)
    wait(lambda: len(fast) >= 6, what="fast subscriber")  # 2 legs per loopback originate
    assert fast[-1] - t0 < 0.5 and slow == []  # the slow one is still on its first event
    wait(lambda: len(slow) >= 1, timeout=3, what="slow subscriber")


def test_api_while_freeswitch_is_down_fails_fast_and_the_connection_comes_up_by_itself() -> None:
    port = free_port()
    conn = InboundConnection("127.0.0.1", port, "ClueCon", backoff_initial_s=0.05, backoff_max_s=0.2)
    conn.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(EslDown):
            conn.api("status")
        assert time.monotonic() - t0 < 0.05
        wait(lambda: conn.state().attempts >= 3, what="retries")
        state = conn.state()
        assert not state.connected and "ConnectionRefused" in state.last_error and state.since is not None
        with FreeSwitchDouble(port=port) as fs:
            assert conn.wait_up(2)
            assert conn.api("status").startswith("UP") and conn.state().attempts == 0
            fs.assert_no_crash()
    finally:
        conn.stop()


def test_freeswitch_restart_mid_session_reconnects_and_subscriptions_go_on(fs: FreeSwitchDouble,
                                                                          inbound: InboundConnection) -> None:
    parks: list[str] = []
    inbound.on_event(lambda e: parks.append(e.unique_id), names=["CHANNEL_PARK"])
    with capture_logs() as logs:
        fs.stop()
        wait(lambda: not inbound.up, what="down noticed")
        with pytest.raises(EslDown):
            inbound.api("status")
        assert not inbound.state().connected
        fs.start()
        assert inbound.wait_up(2)
    assert inbound.state().reconnects == 1
    assert [e["event"] for e in logs if e["event"].startswith("esl.inbound")][:1] == ["esl.inbound_down"]
    assert any(e["event"] == "esl.inbound_up" for e in logs)
    inbound.originate("loopback/7001/voicebot", "&park()", uuid="after-restart", timeout=2)
    wait(lambda: "after-restart" in parks, what="events after the restart")


def _fake_switch(script: Callable[[Any, dict[str, Any]], None]) -> tuple[Any, dict[str, Any]]:
    """A scripted ESL peer on 127.0.0.1: ``script(sock, shared)`` per connection."""
    shared: dict[str, Any] = {"connections": 0}

    def handle(sock: Any, _: Any) -> None:
        shared["connections"] += 1
        script(sock, shared)
    server = gevent.server.StreamServer(("127.0.0.1", 0), handle)
    server.start()
    return server, shared


def _commands(sock: Any) -> Iterator[str]:
    """Command lines sent by the engine, one by one."""
    buf = b""
    while True:
        while b"\n\n" not in buf:
            data = sock.recv(4096)
            if not data:
                return
            buf += data
        block, buf = buf.split(b"\n\n", 1)
        yield block.decode().split("\n")[0]


def _greet(sock: Any, commands: Iterator[str]) -> None:
    sock.sendall(b"Content-Type: auth/request\n\n")
    assert next(commands).startswith("auth ")
    sock.sendall(format_reply("+OK accepted"))
    assert next(commands).startswith("event plain ")
    sock.sendall(format_reply("+OK event listener enabled plain"))


def test_a_listener_that_never_greets_is_a_failed_attempt() -> None:
    server, _ = _fake_switch(lambda sock, shared: gevent.sleep(30))
    conn = InboundConnection("127.0.0.1", server.server_port, "ClueCon", command_timeout_s=0.2,
                             backoff_initial_s=0.05, backoff_max_s=0.1)
    conn.start()
    try:
        wait(lambda: conn.state().attempts >= 2, what="two timed-out handshakes")
        assert "no auth/request" in conn.state().last_error and not conn.up
    finally:
        conn.stop()
        server.stop(timeout=0.1)


def test_a_command_never_answered_times_out_and_a_mute_switch_is_dropped() -> None:
    def mute(sock: Any, shared: dict[str, Any]) -> None:
        commands = _commands(sock)
        _greet(sock, commands)
        for _ in commands:  # never replies
            pass
    server, shared = _fake_switch(mute)
    conn = InboundConnection("127.0.0.1", server.server_port, "ClueCon", command_timeout_s=2,
                             backoff_initial_s=0.05, backoff_max_s=0.1)
    conn.start()
    try:
        assert conn.wait_up(2)
        t0 = time.monotonic()
        with pytest.raises(EslTimeout):
            conn.api("status", timeout=0.3)
        assert 0.29 <= time.monotonic() - t0 < 0.5
        wait(lambda: shared["connections"] >= 2 and conn.up, what="reconnect to the mute switch")
        assert "not responding" in conn.state().last_error and conn.state().reconnects == 1
    finally:
        conn.stop()
        server.stop(timeout=0.1)


def test_a_late_reply_never_answers_the_next_command() -> None:
    def late(sock: Any, shared: dict[str, Any]) -> None:
        commands = _commands(sock)
        _greet(sock, commands)
        for n, line in enumerate(commands):
            if n == 0:
                gevent.sleep(0.1)
                sock.sendall(format_event([("Event-Name", "HEARTBEAT")]))  # the switch is alive, just slow
                gevent.sleep(0.4)
            sock.sendall(format_api_response(f"reply to {line}"))
    server, _ = _fake_switch(late)
    conn = InboundConnection("127.0.0.1", server.server_port, "ClueCon", backoff_initial_s=0.05)
    conn.start()
    try:
        assert conn.wait_up(2)
        with pytest.raises(EslTimeout):
            conn.api("first", timeout=0.3)
        assert conn.api("second", timeout=2) == "reply to api second"
        assert conn.up and conn.state().reconnects == 0
    finally:
        conn.stop()
        server.stop(timeout=0.1)


def test_garbage_on_the_inbound_connection_is_logged_and_the_connection_comes_back() -> None:
    def script(sock: Any, shared: dict[str, Any]) -> None:
        commands = _commands(sock)
        _greet(sock, commands)
        if shared["connections"] == 1:
            sock.sendall(b"\x00\xff not ESL at all\n\n")
        for line in commands:
            sock.sendall(format_api_response(f"+OK {line}"))
    server, _ = _fake_switch(script)
    conn = InboundConnection("127.0.0.1", server.server_port, "ClueCon", backoff_initial_s=0.05)
    with capture_logs() as logs:
        conn.start()
        try:
            wait(lambda: conn.state().reconnects == 1 and conn.up, what="reconnect after garbage")
            assert conn.api("status") == "+OK api status"
        finally:
            conn.stop()
            server.stop(timeout=0.1)
    errors = [e for e in logs if e["event"] == "esl.protocol_error"]
    assert len(errors) == 1 and "control bytes" in errors[0]["error"] and "\\xff" in errors[0]["pii"]["seen"]


# ------------------------------------------------------------------ outbound: calls, events, media


def test_outbound_call_connect_events_playback_dtmf_and_hangup(fs: FreeSwitchDouble,
                                                               serve: Callable[..., OutboundServer]) -> None:
    got: dict[str, Any] = {}

    def handler(call: OutboundCall) -> None:
        got["data"] = call.connect()
        call.subscribe()
        call.linger()
        call.answer()
        got["answered"] = (call.answered, call.can_unicast)
        got["playback"] = call.execute("playback", "silence_stream://100", timeout=2)
        got["events"] = [e.name for e in _drain(call)]
        digits = []
        for event in call.events():
            if event.name == "DTMF":
                digits.append(event.get("DTMF-Digit"))
            if len(digits) == 2:
                break
        got["digits"] = digits
        call.hangup("USER_BUSY")
        got["hangup"] = next(e.get("Hangup-Cause") for e in call.events() if e.name == "CHANNEL_HANGUP")

    t0 = time.monotonic()
    server = serve(handler)
    uuid = fs.place_call(server.port, codec="PCMA", number="5550100", destination="7000")
    fs.wait_for(lambda: "events" in got, timeout=3, what="playback done")
    fs.press(uuid, "42", gap_s=0.03)
    fs.wait_for(lambda: "hangup" in got, timeout=3, what="hang-up")
    data = got["data"]
    assert data.uuid == uuid and data.callee == "7000" and data.caller == "5550100" and not data.answered
    assert "5550100" not in repr(data)  # the caller's number is personal data
    assert data.media == media_format("PCMA", 8000, 20)
    assert got["answered"] == (True, True)
    assert got["playback"].get("Application") == "playback"
    assert {"PLAYBACK_START", "PLAYBACK_STOP"} <= set(got["events"])
    assert got["digits"] == ["4", "2"] and got["hangup"] == "USER_BUSY"
    assert fs.channel(uuid).state is ChannelState.HUNG_UP and time.monotonic() - t0 < 3
    fs.assert_no_crash()


def _drain(call: OutboundCall) -> list[EslEvent]:
    out = []
    while True:
        try:
            out.append(call.next_event(0.05))
        except EslTimeout:
            return out


def test_the_server_accepts_at_once(fs: FreeSwitchDouble, serve: Callable[..., OutboundServer]) -> None:
    accepted: list[float] = []
    server = serve(lambda call: (accepted.append(time.monotonic()), call.connect()))
    delays = []
    for _ in range(7):
        t0 = time.monotonic()
        fs.place_call(server.port)
        n = len(accepted)
        wait(lambda: len(accepted) > n, what="accept")  # noqa: B023 (n is read at once)
        delays.append(accepted[-1] - t0)
    assert float(np.median(delays)) < 0.03  # a 100 ms accept poll (greenswitch's) would average 50 ms


@pytest.mark.parametrize(("codec", "rate", "native", "size"), [
    ("PCMU", 8000, False, 320), ("PCMU", 8000, True, 160), ("L16", 16000, False, 640)])
def test_outbound_answer_unicast_frames_both_ways(fs: FreeSwitchDouble, serve: Callable[..., OutboundServer],
                                                  codec: str, rate: int, native: bool, size: int) -> None:
    pool = free_pool()
    bot = MediaBot(pool, native=native)
    server = serve(bot)
    caller = noise(rate, 3.0, seed=1)
    uuid = fs.place_call(server.port, codec=codec, rate=rate, caller=ArrayAudio(caller, rate))
    wait(lambda: uuid in bot.calls and len(bot.calls[uuid].frames) >= 50, what="a second of caller frames")
    rec = bot.calls[uuid]
    assert rec.media is not None and rec.source is not None and pool.free == pool.capacity - 1
    frames = list(rec.frames)
    wire = "PCMU" if native else "L16"
    assert {len(encode(f.samples, wire)) for f in frames} == {size}
    assert [f.seq for f in frames] == list(range(len(frames))) and {f.rate for f in frames} == {rate}
    span = frames[-1].captured_at - frames[0].captured_at
    assert (len(frames) - 1) / span == pytest.approx(50, rel=0.15)  # ~50 frames/s
    got = np.frombuffer(b"".join(f.samples for f in frames), dtype="<i2")
    expected = np.frombuffer(decode(encode(caller.tobytes(), wire), wire), dtype="<i2")
    at = located(expected, got)
    assert np.array_equal(got, expected[at:at + len(got)])  # the caller's audio, exactly, in order
    fs.hangup(uuid)
    rec.done.wait(3)
    heard = np.frombuffer(fs.channel(uuid).heard_audio(), dtype="<i2")
    sent = np.frombuffer(b"".join(decode(encode(pcm, wire), wire) for _, pcm in rec.source.sent), dtype="<i2")
    assert len(heard) >= 20 * rec.media.media.samples_per_frame  # (a starved hub skips late slots: fewer frames)
    at = located(sent, heard)
    assert np.array_equal(heard, sent[at:at + len(heard)])  # what the bot sent is what the caller heard
    wait(lambda: pool.free == pool.capacity, what="ports released on hang-up")
    fs.assert_no_crash()


def test_a_handler_that_raises_is_logged_and_its_call_hung_up(fs: FreeSwitchDouble,
                                                                serve: Callable[..., OutboundServer]) -> None:
    def handler(call: OutboundCall) -> None:
        if call.connect().callee == "666":
            raise RuntimeError("bug in a flow")
        call.subscribe()
        call.answer()
        for _ in call.events():
            pass

    server = serve(handler)
    with capture_logs() as logs:
        bad = fs.place_call(server.port, destination="666")
        fs.wait_for(lambda: fs.channel(bad).state is ChannelState.HUNG_UP, timeout=3, what="bad call hung up")
        good = fs.place_call(server.port)
        fs.wait_for(lambda: fs.channel(good).answered, timeout=3, what="good call answered")
    [error] = [e for e in logs if e["event"] == "esl.handler_error"]
    assert error["call"] == bad and "bug in a flow" in error["error"]
    assert fs.channel(bad).cause == "NORMAL_TEMPORARY_FAILURE" and server.failed == 1
    assert fs.channel(good).state is ChannelState.PARKED
    fs.assert_no_crash()


def test_over_max_connections_a_call_is_turned_away(fs: FreeSwitchDouble,
                                                     serve: Callable[..., OutboundServer]) -> None:
    release = gevent.event.Event()

    def handler(call: OutboundCall) -> None:
        call.connect()
        release.wait(5)
    server = serve(handler, max_connections=1)
    first = fs.place_call(server.port)
    wait(lambda: server.active_calls == 1, what="first call")
    second = fs.place_call(server.port)
    fs.wait_for(lambda: fs.channel(second).state is ChannelState.HUNG_UP, timeout=3, what="second turned away")
    assert server.rejected == 1 and fs.channel(first).state is not ChannelState.HUNG_UP
    release.set()


def test_garbage_on_one_call_ends_it_cleanly_while_another_carries_on(fs: FreeSwitchDouble,
                                                                      serve: Callable[..., OutboundServer]) -> None:
    pool = free_pool()
    bot = MediaBot(pool)
    server = serve(bot)
    victim, other = fs.place_call(server.port), fs.place_call(server.port)
    wait(lambda: all(u in bot.calls and len(bot.calls[u].frames) >= 10 for u in (victim, other)), what="media")
    with capture_logs() as logs:
        fs.send_garbage(victim, b"Content-Type: command/reply\n\x00\x01 mad switch\n\n")
        wait(lambda: bot.calls[victim].done.is_set(), what="victim's handler ends")
    [error] = [e for e in logs if e["event"] == "esl.protocol_error"]
    assert error["conn"] == f"call {victim}" and "control bytes" in error["error"]
    assert bot.calls[victim].call.closed and "protocol error" in bot.calls[victim].call.close_reason
    fs.wait_for(lambda: fs.channel(victim).state is ChannelState.HUNG_UP, timeout=3, what="victim hung up")
    before = len(bot.calls[other].frames), len(fs.channel(other).packets_heard())
    wait(lambda: len(bot.calls[other].frames) >= before[0] + 10 and len(fs.channel(other).packets_heard()) >= before[1] + 10,
         what="the other call's media goes on")
    assert not bot.calls[other].call.closed
    third = fs.place_call(server.port)
    wait(lambda: third in bot.calls and len(bot.calls[third].frames) >= 5, what="the server still serves")
    assert pool.in_use == 2
    fs.assert_no_crash()


def test_a_bridge_stops_the_stall_watch_and_park_after_bridge_brings_media_back(
        fs: FreeSwitchDouble, inbound: InboundConnection, serve: Callable[..., OutboundServer]) -> None:
    pool = free_pool()
    bot = MediaBot(pool, watch_stall_s=0.1)
    server = serve(bot)
    caller = fs.place_call(server.port)
    wait(lambda: caller in bot.calls and len(bot.calls[caller].frames) >= 5, what="media")
    call = bot.calls[caller].call
    inbound.api(f"uuid_setvar {caller} park_after_bridge true")
    inbound.originate("loopback/7010/voicebot", "&park()", uuid="agent", timeout=2)
    inbound.uuid_bridge(caller, "agent")
    wait(lambda: call.bridged and not call.unicast_expected, what="bridged")
    paused = bot.calls[caller].paused_polls
    # unicast is down while bridged: 8 polls of the watch (0.4 s, 4 thresholds) may not pull the caller out of the bridge
    wait(lambda: bot.calls[caller].paused_polls >= paused + 8, what="8 stall-watch polls while bridged")
    assert fs.channel(caller).state is ChannelState.BRIDGED and call.can_unicast
    assert not any(c.startswith("api uuid_transfer") for c in fs.commands)
    with pytest.raises(RuntimeError, match="bridged"):
        call.rearm_unicast("127.0.0.1", 1, "127.0.0.1", 2)
    inbound.uuid_kill("agent")  # the agent hangs up: the caller is parked again, and media comes back
    wait(lambda: not call.bridged and call.unicast_expected, what="parked after the bridge")
    fs.wait_for(lambda: fs.channel(caller).unicast_active, timeout=2, what="unicast re-armed")
    n = len(bot.calls[caller].frames)
    wait(lambda: len(bot.calls[caller].frames) >= n + 5, what="caller frames again")
    fs.assert_no_crash()


# ------------------------------------------------------------------ THE crash guard: no unicast before answer


def test_unicast_before_answer_is_refused_and_never_reaches_freeswitch(fs: FreeSwitchDouble,
                                                                       serve: Callable[..., OutboundServer]) -> None:
    got: dict[str, Any] = {}
    ports = free_pool(1).allocate()

    def handler(call: OutboundCall) -> None:
        call.connect()
        call.subscribe()
        with pytest.raises(UnicastBeforeAnswer):
            call.unicast("127.0.0.1", ports.local, "127.0.0.1", ports.remote)
        got["refused_log"] = list(fs.channel(call.uuid).unicast_log)
        call.answer()
        call.unicast("127.0.0.1", ports.local, "127.0.0.1", ports.remote)
        got["ok"] = True
        for _ in call.events():
            pass

    server = serve(handler)
    with capture_logs() as logs:
        uuid = fs.place_call(server.port)
        fs.wait_for(lambda: "ok" in got, timeout=3, what="unicast after answer")
    assert got["refused_log"] == []  # nothing reached the switch
    assert fs.channel(uuid).unicast_active
    assert [e["event"] for e in logs].count("esl.unicast_refused") == 1
    fs.assert_no_crash()


@pytest.mark.parametrize(("flavour", "timing"), [
    ("sofia", Timing()),
    ("loopback", Timing()),
    ("sofia", Timing(app_start_s=0.0005, answer_s=0.001)),  # answer events right on the heels of the command
    ("sofia", Timing(app_start_s=0.060, answer_s=0.150)),  # a slow answer
])
def test_unicast_hammered_during_the_answer_never_crashes_the_switch(serve: Callable[..., OutboundServer],
                                                                     flavour: str, timing: Timing) -> None:
    outcome: dict[str, Any] = {"refused": 0}
    ports = free_pool(1).allocate()

    def hammer(call: OutboundCall) -> None:
        while not call.closed:
            try:
                call.unicast("127.0.0.1", ports.local, "127.0.0.1", ports.remote, timeout=1)
                outcome["unicast_at"] = time.monotonic()
                return
            except UnicastBeforeAnswer:
                outcome["refused"] += 1
            gevent.sleep(0.001)

    def handler(call: OutboundCall) -> None:
        call.connect()
        call.subscribe()
        worker = gevent.spawn(hammer, call)
        gevent.sleep(0.005)
        call.answer(timeout=2)
        outcome["answered_at"] = time.monotonic()
        worker.join(2)
        for _ in call.events():
            pass

    with FreeSwitchDouble(timing=timing) as fs:
        server = serve(handler)
        uuid = fs.place_call(server.port, flavour=flavour)
        fs.wait_for(lambda: fs.channel(uuid).unicast_active, timeout=3, what="unicast armed")
        fs.assert_no_crash()
    assert outcome["refused"] >= 3  # it really did try before the answer completed


def test_a_call_answered_before_it_reached_us_may_unicast_at_once(fs: FreeSwitchDouble,
                                                                  inbound: InboundConnection,
                                                                  serve: Callable[..., OutboundServer]) -> None:
    got: dict[str, Any] = {}
    ports = free_pool(1).allocate()

    def handler(call: OutboundCall) -> None:
        got["data"] = call.connect()
        call.unicast("127.0.0.1", ports.local, "127.0.0.1", ports.remote)  # no answer(): the loopback leg is up already
        got["ok"] = True
        for _ in call.events():
            pass
    server = serve(handler)
    inbound.originate("loopback/7000/voicebot", f"&socket('127.0.0.1:{server.port} async full')", uuid="bot-leg",
                      timeout=2)
    fs.wait_for(lambda: "ok" in got, timeout=3, what="unicast")
    assert got["data"].answered and fs.channel("bot-leg").unicast_active
    fs.assert_no_crash()


class ScriptedSwitch:
    """The FreeSWITCH end of one outbound socket, answering with events in a scripted order.

    It records a violation whenever ``sendmsg unicast`` arrives before it has sent
    both CHANNEL_ANSWER and the answer's CHANNEL_EXECUTE_COMPLETE.
    """

    UUID = "call-under-test"

    def __init__(self, sock: Any, order: list[str], gaps_ms: list[int]) -> None:
        self.sock, self.order, self.gaps_ms = sock, order, gaps_ms
        self.answered = self.completed = False
        self.unicasts: list[bool] = []  # for each unicast: was it safe?
        self.greenlets = [gevent.spawn(self._run)]

    def _pairs(self, name: str, uuid: str | None = None, extra: tuple[tuple[str, str], ...] = ()) -> list[Any]:
        state = "answered" if self.answered and uuid is None else "ringing"
        return [("Event-Name", name), ("Unique-ID", uuid or self.UUID), ("Answer-State", state), *extra]

    def _emit(self, token: str, app_uuid: str) -> None:
        events = {
            "ANSWER": lambda: self._pairs("CHANNEL_ANSWER"),
            "COMPLETE": lambda: self._pairs("CHANNEL_EXECUTE_COMPLETE", extra=(
                ("Application", "answer"), ("Application-UUID", app_uuid))),
            "EXECUTE": lambda: self._pairs("CHANNEL_EXECUTE", extra=(
                ("Application", "answer"), ("Application-UUID", app_uuid))),
            "OTHER_ANSWER": lambda: self._pairs("CHANNEL_ANSWER", uuid="someone-else"),
            "OTHER_COMPLETE": lambda: self._pairs("CHANNEL_EXECUTE_COMPLETE", extra=(
                ("Application", "answer"), ("Application-UUID", "not-ours"))),
            "PROGRESS": lambda: self._pairs("CHANNEL_PROGRESS_MEDIA"),
        }
        pairs = events[token]()
        self.answered = self.answered or token == "ANSWER"
        self.completed = self.completed or token == "COMPLETE"
        self.sock.sendall(format_event(pairs))

    def _answer(self, app_uuid: str) -> None:
        for token, gap in zip(self.order, self.gaps_ms, strict=True):
            gevent.sleep(gap / 1000)
            self._emit(token, app_uuid)

    def _run(self) -> None:
        buf = b""
        while data := self.sock.recv(65536):
            buf += data
            while b"\n\n" in buf:
                block, buf = buf.split(b"\n\n", 1)
                lines = block.decode().split("\n")
                self._command(lines[0], dict(line.split(": ", 1) for line in lines[1:]))

    def _command(self, line: str, headers: dict[str, str]) -> None:
        if line == "connect":
            self.sock.sendall(format_channel_data([("Event-Name", "CHANNEL_DATA"), ("Unique-ID", self.UUID),
                                                   ("Answer-State", "ringing")]))
            return
        command = headers.get("call-command", "")
        if command == "unicast":
            self.unicasts.append(self.answered and self.completed)
        self.sock.sendall(format_reply("+OK"))
        if command == "execute" and headers.get("execute-app-name") == "answer":
            self.greenlets.append(gevent.spawn(self._answer, headers["Event-UUID"]))


TOKENS = ["ANSWER", "COMPLETE", "EXECUTE", "OTHER_ANSWER", "OTHER_COMPLETE", "PROGRESS"]


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(TOKENS),
       gaps_ms=st.lists(st.sampled_from([0, 0, 1, 4]), min_size=len(TOKENS), max_size=len(TOKENS)),
       attempts_ms=st.lists(st.integers(0, 25), max_size=4),
       answer_after_ms=st.integers(0, 8))
def test_whatever_the_order_of_events_unicast_never_precedes_the_answer(order: list[str], gaps_ms: list[int],
                                                                          attempts_ms: list[int],
                                                                          answer_after_ms: int) -> None:
    ours, theirs = gevent.socket.socketpair()
    switch = ScriptedSwitch(theirs, list(order), gaps_ms)
    call = OutboundCall(ours, command_timeout_s=2)
    try:
        call.connect()
        refused: list[bool] = []

        def attempt() -> None:
            try:
                call.unicast("127.0.0.1", 1, "127.0.0.1", 2)
            except UnicastBeforeAnswer:
                refused.append(True)
        workers = [gevent.spawn_later(ms / 1000, attempt) for ms in attempts_ms]
        gevent.sleep(answer_after_ms / 1000)
        call.answer(timeout=2)
        assert call.answered and call.can_unicast
        call.unicast("127.0.0.1", 1, "127.0.0.1", 2)  # after answer() it always works
        gevent.joinall(workers, timeout=2)
        assert all(switch.unicasts), f"unicast reached the switch before the answer completed: {switch.unicasts}"
        assert len(switch.unicasts) + len(refused) == len(attempts_ms) + 1
    finally:
        call.close()
        gevent.killall(switch.greenlets)
        theirs.close()


def test_events_for_calls_that_hung_up_fail_waiters_and_end_the_iterator(fs: FreeSwitchDouble,
                                                                          serve: Callable[..., OutboundServer]) -> None:
    got: dict[str, Any] = {}

    def handler(call: OutboundCall) -> None:
        call.connect()
        call.subscribe()
        call.answer()
        waiter = call.expect_event(lambda e: e.name == "NEVER")
        fs.drop_connection(call.uuid)  # FreeSWITCH closes the socket under us
        with pytest.raises(CallGone):
            waiter.get(2)
        got["events"] = list(call.events())  # ends, does not hang
        with pytest.raises(CallGone):
            call.api("status")
        with pytest.raises(CallGone):
            call.next_event(1)
        got["done"] = True
    server = serve(handler)
    fs.place_call(server.port)
    wait(lambda: "done" in got, what="handler finished")
    assert set(CALL_EVENTS) >= {"PLAYBACK_START", "PLAYBACK_STOP", "DTMF"}
