"""A FreeSWITCH test double: ESL and unicast media as FreeSWITCH 1.11.1 does them.

Everything it says on the wire follows the captures in ``shared/fixtures/esl``
(reply strings, event order, header layout, URL encoding) and the timings of
DESIGN.md section 2. It listens and sends on 127.0.0.1 only, on ephemeral ports.

    with FreeSwitchDouble(password="ClueCon") as fs:
        fs.inbound_port                                    # inbound ESL (auth, api, bgapi, events)
        uuid = fs.place_call(engine_port=8084, codec="PCMU", rate=8000,
                             caller=ArrayAudio(samples, 8000, start_at=1.0))
        fs.wait_for(lambda: fs.channel(uuid).unicast_active, timeout=5, what="unicast armed")
        fs.press(uuid, "1")                                # the caller presses 1
        fs.hangup(uuid)                                    # the caller hangs up
        bot = fs.channel(uuid).heard_audio()               # s16le the caller heard
        fs.assert_no_crash()

Public API
    ``FreeSwitchDouble(password, *, timing, hostname, playback_seconds)``; ``start()``,
    ``stop()`` (FreeSWITCH down), ``restart()`` (back on the same port), context manager.
    ``inbound_port``; ``place_call(engine_port, codec, rate, ptime, caller, ...)`` (a
    caller dials in; the double connects out to the engine's outbound socket);
    ``channel(uuid)``, ``channels()``, ``wait_for(predicate, timeout, what)``;
    ``press(uuid, digits)``, ``hangup(uuid, cause)``, ``set_caller_audio(uuid, audio)``;
    ``change_ptime(uuid, ptime)``; faults: ``drop_connection(uuid)``,
    ``send_garbage(uuid, data)``, ``send_udp(uuid, data)``, ``set_media_faults(uuid, faults)``;
    checks: ``fatal_errors``, ``assert_no_crash()``, ``commands``.
    :class:`Channel`: ``state``, ``answered``, ``codec``, ``rate``, ``ptime_ms``,
    ``unicast_active``, ``media``, ``packets_heard()``, ``heard_audio()``, ``packets_sent``,
    ``dtmf``, ``events``, ``variables``, ``unicast_log``.
    Caller audio: :class:`Silence`, :class:`ArrayAudio` (array or WAV from a moment),
    :class:`CallbackAudio` (``frame_for(t) -> bytes``, a reactive caller).

Rules (what the double enforces, DESIGN.md section 2)
1. ``unicast`` on a channel that is not answered, or has no media yet, crashes
   FreeSWITCH: the double replies ``+OK`` (as captured), records a fatal error,
   and drops every connection and stops listening until ``restart()``.
   ``assert_no_crash()`` raises.
2. unicast runs only while the channel is parked: a media app (playback,
   uuid_broadcast), a bridge, a transfer, a hangup or a ptime change tears it
   down; while bridged, or after a media app, ``unicast`` replies ``+OK`` and does
   nothing. A fresh park (``uuid_transfer <uuid> park inline``, park after
   bridge) makes it work again.
3. An L16 channel being eavesdropped whose unicast is torn down is stuck for
   good (never bridges, never completes its hangup): a fatal error too.
4. Events go to a connection if subscribed (``event``/``myevents``), passing its
   filters; ``myevents`` limits an outbound socket to its own channel.
5. Each connection is served in order, like FreeSWITCH's listener thread: an
   ``api originate`` holds later commands on that connection until it returns.

Design: plain OS threads and blocking sockets, not gevent. The double must work
whether or not the test process uses gevent or monkey-patches it, and its
media clock must keep its own pace while the engine's hub is busy, as a real
FreeSWITCH process does. ``wait_for`` yields to gevent when gevent is loaded, so
an engine running as greenlets in the test's thread keeps running.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import os
import queue
import random
import re
import select
import socket
import sys
import threading
import time
import uuid as uuidlib
import wave
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from voicebot.audio.codecs import decode, encode
from voicebot.esl.protocol import (
    ChannelMedia,
    format_api_response,
    format_channel_data,
    format_disconnect_notice,
    format_event,
    format_linger_notice,
    format_reply,
    media_format,
    serialize_json,
    serialize_plain,
)

Pairs = list[tuple[str, str]]
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

CRASH_UNICAST = "unicast before answer would have crashed FreeSWITCH (DESIGN.md section 2)"
STUCK_L16 = ("L16 eavesdrop + unicast teardown left the caller stuck; FreeSWITCH had to be restarted "
             "(DESIGN.md section 2)")


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class Timing:
    """Delays (s) between a command and what FreeSWITCH does, measured in the captures."""

    app_start_s: float = 0.020  # sendmsg execute → CHANNEL_EXECUTE (check3 20.1 ms, check5 20.2 ms)
    answer_s: float = 0.040  # sendmsg answer → CHANNEL_ANSWER + EXECUTE_COMPLETE (check3 40.5, check5 40.4 ms)
    park_s: float = 0.020  # connect → CHANNEL_PARK of a loopback caller (check3 plain 20.1 ms)
    broadcast_start_s: float = 0.200  # uuid_broadcast → PLAYBACK_START (check7 200.7 ms)
    break_s: float = 0.020  # uuid_break → PLAYBACK_STOP, Playback-Status: break (check7 20.3 ms)
    hangup_s: float = 0.020  # uuid_kill / sendmsg hangup → CHANNEL_HANGUP (check2 20.3, check3 20.3 ms)
    hangup_complete_s: float = 0.0005  # CHANNEL_HANGUP → CHANNEL_HANGUP_COMPLETE (check3 0.55 ms)
    originate_s: float = 0.022  # api originate loopback → +OK <uuid> (check4/6/7 22.3-22.4 ms; check2 2.6 ms)
    bridge_unpark_s: float = 0.020  # uuid_bridge → CHANNEL_UNPARK (check6 20.5 ms)
    bridge_s: float = 0.061  # uuid_bridge → CHANNEL_BRIDGE (check6 61.0 ms)
    park_after_bridge_s: float = 0.001  # agent CHANNEL_HANGUP → caller UNBRIDGE + PARK (check6: 21.0 ms after uuid_kill)
    transfer_s: float = 0.020  # uuid_transfer park inline → CHANNEL_UNPARK ... CHANNEL_PARK (check4 20.6-20.9 ms)
    dtmf_s: float = 0.020  # uuid_recv_dtmf → first DTMF event, and between digits (check7 20.1 ms)
    unicast_first_s: float = 0.035  # sendmsg unicast → first UDP packet (DESIGN.md section 2)
    crash_s: float = 0.020  # unicast before answer: +OK, then the process dies (check4b, check4c)
    linger_extra_s: float = 0.3  # linger N closes N s + part of a second after hangup (check5: 5.07-5.6 s for 5)
    default_playback_s: float = 1.0  # a file whose length the double cannot know


# ---------------------------------------------------------------- caller audio


class CallerAudio(Protocol):
    """What the caller says: ``frame_for(t, rate, samples)`` → s16le, ``t`` in s since answer."""

    def frame_for(self, t: float, rate: int, samples: int) -> bytes:
        """``samples`` samples of s16le at ``rate`` Hz starting ``t`` s after the call was answered."""
        ...


class Silence:
    """A caller who says nothing (digital silence)."""

    def frame_for(self, t: float, rate: int, samples: int) -> bytes:
        """Zeros."""
        return bytes(2 * samples)


class ArrayAudio:
    """int16 samples at ``rate`` Hz, heard from ``start_at`` s after answer (then silence, or looped)."""

    def __init__(self, samples: npt.ArrayLike, rate: int, start_at: float = 0.0, loop: bool = False) -> None:
        self.samples = np.asarray(samples, dtype=np.int16)
        self.rate = rate
        self.start_at = start_at
        self.loop = loop
        self._at_rate: dict[int, npt.NDArray[np.int16]] = {rate: self.samples}

    @classmethod
    def from_wav(cls, path: str | os.PathLike[str], start_at: float = 0.0, loop: bool = False) -> ArrayAudio:
        """A WAV file (any integer PCM, mono or stereo)."""
        from voicebot.audio.wav import read_wav

        samples, rate = read_wav(path)
        return cls(samples, rate, start_at, loop)

    def _resampled(self, rate: int) -> npt.NDArray[np.int16]:
        if rate not in self._at_rate:
            from voicebot.audio.resample import resample

            self._at_rate[rate] = resample(self.samples, self.rate, rate)
        return self._at_rate[rate]

    def frame_for(self, t: float, rate: int, samples: int) -> bytes:
        """The slice under ``t``; zeros before ``start_at`` and after the end (unless looping)."""
        data = self._resampled(rate)
        start = round((t - self.start_at) * rate)
        if self.loop and len(data):
            idx = np.arange(start, start + samples) % len(data)
            out = np.where(np.arange(start, start + samples) >= 0, data[idx], 0)
            return np.asarray(out, dtype="<i2").tobytes()
        frame = np.zeros(samples, dtype="<i2")
        lo, hi = max(start, 0), min(start + samples, len(data))
        if hi > lo:
            frame[lo - start: hi - start] = data[lo:hi]
        return frame.tobytes()


class CallbackAudio:
    """A reactive caller: ``fn(t)`` returns s16le for the frame at ``t`` (padded or cut to size)."""

    def __init__(self, fn: Callable[[float], bytes]) -> None:
        self.fn = fn

    def frame_for(self, t: float, rate: int, samples: int) -> bytes:
        """``fn(t)`` fitted to ``samples`` samples."""
        data = bytes(self.fn(t))[: 2 * samples]
        return data + bytes(2 * samples - len(data))


def as_caller_audio(audio: CallerAudio | Callable[[float], bytes] | None) -> CallerAudio:
    """None → silence; a bare callable → :class:`CallbackAudio`."""
    if audio is None:
        return Silence()
    if hasattr(audio, "frame_for"):
        return audio
    return CallbackAudio(audio)


# ---------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Packet:
    """One UDP datagram: ``at`` monotonic s, payload, and its encoding (L16 = s16le, PCMU, PCMA) and rate (Hz)."""

    at: float
    data: bytes
    codec: str = "L16"
    rate: int = 8000


@dataclass(frozen=True, slots=True)
class MediaFaults:
    """UDP faults on the caller's stream to the engine: probabilities per packet, or all-silence."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    silence: bool = False
    seed: int = 0


@dataclass(frozen=True, slots=True)
class FatalError:
    """Something that would have taken the real FreeSWITCH down (or wedged a call for good)."""

    message: str
    uuid: str
    at: float  # monotonic s


class ChannelState(StrEnum):
    """Where a channel is, as a test sees it."""

    RINGING = "ringing"  # not answered (parked by the socket app, or waiting)
    PARKED = "parked"  # answered, in a fresh park: unicast works
    ACTIVE = "active"  # answered, running an app, or parked after a media app (unicast does not work)
    BRIDGED = "bridged"
    EAVESDROPPING = "eavesdropping"
    STUCK = "stuck"  # the L16 eavesdrop trap
    HUNG_UP = "hung up"


# ---------------------------------------------------------------- timers


class _Timer:
    """A scheduled call; ``cancel()`` before it runs and it never does."""

    __slots__ = ("cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run."""
        self.cancelled = True


class _Scheduler:
    """One thread running timed callbacks in time order (ties in the order scheduled)."""

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self._heap: list[tuple[float, int, _Timer]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._on_error = on_error
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="fsdouble-timers", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> _Timer:
        """Run ``fn`` in ``delay`` s."""
        timer = _Timer(time.monotonic() + max(0.0, delay), fn)
        with self._cond:
            heapq.heappush(self._heap, (timer.when, next(self._seq), timer))
            self._cond.notify()
        return timer

    def cancel_all(self) -> None:
        """Drop every pending callback."""
        with self._cond:
            for _, _, timer in self._heap:
                timer.cancel()
            self._heap.clear()

    def stop(self) -> None:
        """Cancel everything and end the thread."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self.cancel_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)

    def _next_due(self) -> _Timer | None:
        with self._cond:
            while not self._stopped:
                if self._heap and self._heap[0][0] <= time.monotonic():
                    return heapq.heappop(self._heap)[2]
                wait = self._heap[0][0] - time.monotonic() if self._heap else None
                self._cond.wait(wait)
            return None

    def _run(self) -> None:
        while (timer := self._next_due()) is not None:
            if timer.cancelled:
                continue
            try:
                timer.fn()
            except Exception as err:  # a bug in the double must not kill its clock
                self._on_error(err)


# ---------------------------------------------------------------- ESL connections


@dataclass(frozen=True, slots=True)
class Command:
    """One command as the double received it: first line, headers (names as sent), body."""

    line: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def get(self, name: str, default: str = "") -> str:
        """Header ``name`` (any case)."""
        folded = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == folded), default)


class _CommandReader:
    """Splits a client's byte stream into commands: a block ended by a blank line, then a body if any."""

    def __init__(self, limit: int = 1 << 20) -> None:
        self._buf = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> list[Command]:
        """Commands completed by ``data``; ValueError if a command grows past the limit."""
        self._buf += data
        out: list[Command] = []
        while (command := self._next()) is not None:
            out.append(command)
        if len(self._buf) > self._limit:
            raise ValueError(f"command over {self._limit} bytes")
        return out

    def _next(self) -> Command | None:
        end = self._buf.find(b"\n\n")
        if end < 0:
            return None
        lines = bytes(self._buf[:end]).decode("utf-8", "replace").replace("\r", "").split("\n")
        headers = dict(_split_header(line) for line in lines[1:] if ":" in line)
        length = int(headers.get("Content-Length", "0") or 0) if headers.get("Content-Length", "0").isdigit() else 0
        if len(self._buf) < end + 2 + length:
            return None
        body = bytes(self._buf[end + 2: end + 2 + length])
        del self._buf[: end + 2 + length]
        return Command(lines[0].strip(), headers, body)


def _split_header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip(), value.strip()


_CLOSE = object()


class _Conn:
    """One ESL connection: a reader thread feeding the double, a writer thread draining a queue."""

    _ids = itertools.count(1)

    def __init__(self, sock: socket.socket, handle: Callable[[_Conn, Command], None],
                 gone: Callable[[_Conn], None], *, session: str = "", authed: bool = False) -> None:
        self.id = next(self._ids)
        self.sock = sock
        self.session = session  # the channel an outbound socket controls
        self.authed = authed
        self.events: set[str] = set()
        self.fmt = "plain"
        self.myevents = False
        self.linger: int | None = None  # None: no linger; -1: until we close; N: N s
        self.filters: list[tuple[str, str]] = []
        self.resume = False
        self.closed = False
        self._handle, self._gone = handle, gone
        self._out: queue.Queue[object] = queue.Queue()
        self._reader = _CommandReader()
        self._threads = [threading.Thread(target=self._read_loop, name=f"fsdouble-esl-r{self.id}", daemon=True),
                         threading.Thread(target=self._write_loop, name=f"fsdouble-esl-w{self.id}", daemon=True)]

    def start(self) -> None:
        """Start serving."""
        for thread in self._threads:
            thread.start()

    def send(self, data: bytes) -> None:
        """Queue bytes for the peer."""
        if not self.closed:
            self._out.put(data)

    def close_after_flush(self) -> None:
        """Close once everything queued is sent (FreeSWITCH's orderly close)."""
        if not self.closed:
            self.closed = True
            self._out.put(_CLOSE)

    def abort(self) -> None:
        """Close now, dropping whatever is queued (the process died, or the socket was cut)."""
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        self._out.put(_CLOSE)

    def join(self) -> None:
        """Wait for both threads (after a close)."""
        for thread in self._threads:
            if thread is not threading.current_thread() and thread.ident is not None:
                thread.join(timeout=2)

    def _write_loop(self) -> None:
        while (item := self._out.get()) is not _CLOSE:
            try:
                self.sock.sendall(item)  # type: ignore[arg-type]
            except OSError:
                break
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.closed = True

    def _read_loop(self) -> None:
        try:
            while data := self.sock.recv(65536):
                for command in self._reader.feed(data):
                    self._handle(self, command)
        except (OSError, ValueError):
            pass
        self._gone(self)


# ---------------------------------------------------------------- unicast media


class _Unicast:
    """One ``unicast`` session: FreeSWITCH's side of the UDP pair (it binds ``local-port``)."""

    def __init__(self, channel: Channel, sock: socket.socket, remote: tuple[str, int], media: ChannelMedia,
                 first_at: float) -> None:
        self.channel = channel
        self.sock = sock
        self.remote = remote
        self.media = media
        self.next_at = first_at
        self.seq = 0
        self.active = True
        self.reason = ""
        self._held: bytes | None = None  # a datagram held back to reorder
        self._rng = random.Random(channel.faults.seed)

    def stop(self, reason: str) -> None:
        """Tear down silently, as FreeSWITCH does (no event)."""
        if self.active:
            self.active, self.reason = False, reason
            with contextlib.suppress(OSError):
                self.sock.close()

    def caller_frame(self) -> bytes:
        """The caller's next datagram, in the wire format."""
        media, ch = self.media, self.channel
        t = self.next_at - (ch.answered_at or self.next_at)
        pcm = bytes(2 * media.samples_per_frame) if ch.faults.silence else \
            ch.caller.frame_for(t, media.rate, media.samples_per_frame)
        return encode(pcm, media.wire_codec)

    def send_due(self, now: float) -> None:
        """Send every datagram due by ``now`` (paced on the double's own clock)."""
        while self.active and self.next_at <= now:
            self._send(self.caller_frame())
            self.seq += 1
            self.channel.packets_sent += 1
            self.next_at += self.media.ptime_ms / 1000

    def _send(self, data: bytes) -> None:
        faults = self.channel.faults
        if faults.loss and self._rng.random() < faults.loss:
            return
        if faults.reorder and self._held is None and self._rng.random() < faults.reorder:
            self._held = data
            return
        copies = 2 if faults.duplicate and self._rng.random() < faults.duplicate else 1
        for payload in [data] * copies + ([self._held] if self._held is not None else []):
            self.sendto(payload)
        self._held = None

    def sendto(self, data: bytes) -> None:
        """One datagram to the engine (errors ignored, as UDP would)."""
        with contextlib.suppress(OSError):
            self.sock.sendto(data, self.remote)

    def receive(self) -> None:
        """Record what the engine sent: the bot audio the caller hears."""
        try:
            data, _ = self.sock.recvfrom(65536)
        except OSError:
            return
        media = self.media
        self.channel.record_heard(Packet(time.monotonic(), data, media.wire_codec, media.rate))


class _MediaLoop:
    """One thread for every unicast session: select() for arrivals, a shared clock for departures."""

    def __init__(self, lock: threading.RLock, changed: threading.Condition,
                 on_error: Callable[[BaseException], None]) -> None:
        self._lock = lock
        self._changed = changed
        self._on_error = on_error
        self._sessions: list[_Unicast] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._running = True
        self._thread = threading.Thread(target=self._run, name="fsdouble-media", daemon=True)
        self._thread.start()

    def add(self, session: _Unicast) -> None:
        """Start pacing ``session``."""
        with self._lock:
            self._sessions.append(session)
        self._wake()

    def stop(self) -> None:
        """End the thread and every session."""
        self._running = False
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2)
        with self._lock:
            for session in self._sessions:
                session.stop("double stopped")
            self._sessions.clear()
        for sock in (self._wake_r, self._wake_w):
            sock.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _snapshot(self) -> list[_Unicast]:
        with self._lock:
            self._sessions = [s for s in self._sessions if s.active]
            return list(self._sessions)

    def _run(self) -> None:
        while self._running:
            sessions = self._snapshot()
            now = time.monotonic()
            timeout = max(0.0, min((s.next_at for s in sessions), default=now + 0.5) - now)
            socks = {s.sock: s for s in sessions}
            try:
                readable, _, _ = select.select([self._wake_r, *socks], [], [], timeout)
            except (OSError, ValueError):  # a session closed under us: take a new snapshot
                continue
            try:
                self._service(readable, socks)
            except Exception as err:  # e.g. a caller-audio callback failed: report it, keep the clock
                for session in sessions:
                    session.stop("error")
                self._on_error(err)

    def _service(self, readable: list[Any], socks: dict[socket.socket, _Unicast]) -> None:
        with self._lock:
            for sock in readable:
                if sock is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                elif socks[sock].active:
                    socks[sock].receive()
            now = time.monotonic()
            for session in socks.values():
                session.send_due(now)
            self._changed.notify_all()


# ---------------------------------------------------------------- channels


@dataclass(slots=True)
class _App:
    """An application queued on a channel by sendmsg execute (or uuid_broadcast)."""

    name: str
    arg: str = ""
    app_uuid: str = ""
    timer: _Timer | None = None  # its completion, while it runs


def _now_us() -> int:
    return int(time.time() * 1_000_000)


class Channel:
    """One call leg of the double. Read it from tests; the double mutates it under its lock."""

    def __init__(self, lock: threading.RLock, uuid: str, name: str, *, direction: str, flavour: str,
                 media: ChannelMedia, number: str, destination: str, context: str) -> None:
        self._lock = lock
        self.uuid, self.name, self.direction, self.flavour = uuid, name, direction, flavour
        self.codec, self.rate, self.ptime_ms = media.codec, media.rate, media.ptime_ms
        self.number, self.destination, self.context = number, destination, context
        self.created_us = _now_us()
        self.answered_us = 0
        self.hangup_us = 0
        self.bridged_us = 0
        self.answered = False
        self.answered_at: float | None = None  # monotonic s
        self.call_state = "DOWN"  # Channel-Call-State: DOWN, RINGING, EARLY, ACTIVE, HANGUP
        self.answer_state = "ringing"  # Answer-State: ringing, early, answered, hangup
        self.has_media = flavour == "loopback"
        self.app = ""  # the long-running app: socket, park, eavesdrop, uuid_bridge
        self.app_uuid = ""
        self.parked = False  # in a fresh park: unicast can run
        self.running: _App | None = None
        self.queue: deque[_App] = deque()
        self.peer = ""  # the other loopback leg
        self.bridged_to = ""
        self.other_leg = ""  # the bridge partner named in Other-Leg-* headers (kept after the bridge ends)
        self.bridge_a = ""  # the A leg of the bridge (first uuid of uuid_bridge): it gets CHANNEL_UNBRIDGE
        self.eavesdrop_target = ""
        self.eavesdroppers: set[str] = set()
        self.eavesdrop_mode = ""  # the last eavesdrop DTMF (2: talk to the caller, 3: three-way)
        self.hung_up = False
        self.complete = False
        self.stuck = False
        self.cause = ""
        self.conn: _Conn | None = None
        self.caller: CallerAudio = Silence()
        self.faults = MediaFaults()
        self.unicast: _Unicast | None = None
        self.packets_sent = 0
        self.unicast_log: list[str] = []  # "started 320 B/20 ms", "ignored: bridged", "stopped: playback", ...
        self.dtmf: list[str] = []
        self.events: list[str] = []
        self.variables: dict[str, str] = {}
        self._heard: list[Packet] = []

    # ------------------------------------------------------------ read by tests

    @property
    def state(self) -> ChannelState:
        """Where the channel is (see :class:`ChannelState`)."""
        with self._lock:
            if self.hung_up:
                return ChannelState.STUCK if self.stuck else ChannelState.HUNG_UP
            if self.stuck:
                return ChannelState.STUCK
            if self.bridged_to:
                return ChannelState.BRIDGED
            if self.eavesdrop_target:
                return ChannelState.EAVESDROPPING
            if not self.answered:
                return ChannelState.RINGING
            return ChannelState.PARKED if self.parked and self.running is None else ChannelState.ACTIVE

    @property
    def unicast_active(self) -> bool:
        """True while a unicast session is sending and receiving."""
        with self._lock:
            return self.unicast is not None and self.unicast.active

    @property
    def media(self) -> ChannelMedia:
        """The read codec's frame format (without ``flags: native``)."""
        return media_format(self.codec, self.rate, self.ptime_ms)

    def packets_heard(self) -> list[Packet]:
        """Every datagram the engine sent to this channel's unicast ports, with arrival times."""
        with self._lock:
            return list(self._heard)

    def heard_audio(self) -> bytes:
        """What the caller heard from the engine, decoded to s16le, datagrams in arrival order."""
        return b"".join(decode(p.data, p.codec) for p in self.packets_heard() if _decodable(p))

    def record_heard(self, packet: Packet) -> None:
        """(The media loop) a datagram arrived from the engine."""
        with self._lock:
            self._heard.append(packet)

    # ------------------------------------------------------------ event headers

    def profile_pairs(self, prefix: str) -> Pairs:
        """The caller profile as FreeSWITCH prints it (``Caller-*``, or ``Channel-*`` in CHANNEL_DATA)."""
        sofia = self.flavour == "sofia"
        p = prefix
        pairs: Pairs = [(f"{p}-Direction", self.direction), (f"{p}-Logical-Direction", self.direction)]
        pairs += [(f"{p}-Username", self.number)] if sofia else []
        pairs += [(f"{p}-Dialplan", "XML" if sofia else "xml")]
        pairs += [(f"{p}-Caller-ID-Name", self.number)] if sofia else []
        pairs += [(f"{p}-Caller-ID-Number", self.number)]
        pairs += [(f"{p}-Orig-Caller-ID-Name", self.number)] if sofia else []
        pairs += [(f"{p}-Orig-Caller-ID-Number", self.number)]
        pairs += [(f"{p}-Network-Addr", "127.0.0.1")] if sofia else \
            [(f"{p}-Callee-ID-Name", "Outbound Call"), (f"{p}-Callee-ID-Number", "voicebot")]
        pairs += [(f"{p}-ANI", self.number), (f"{p}-Destination-Number", self.destination),
                  (f"{p}-Unique-ID", self.uuid), (f"{p}-Source", "mod_sofia" if sofia else "mod_loopback"),
                  (f"{p}-Context", self.context), (f"{p}-Channel-Name", self.name)]
        return pairs + self._profile_times(p)

    def _profile_times(self, p: str) -> Pairs:
        created = str(self.created_us)
        return [(f"{p}-Profile-Index", "1"), (f"{p}-Profile-Created-Time", created),
                (f"{p}-Channel-Created-Time", created), (f"{p}-Channel-Answered-Time", str(self.answered_us)),
                (f"{p}-Channel-Progress-Time", "0"), (f"{p}-Channel-Progress-Media-Time", "0"),
                (f"{p}-Channel-Hangup-Time", str(self.hangup_us)), (f"{p}-Channel-Transfer-Time", "0"),
                (f"{p}-Channel-Resurrect-Time", "0"), (f"{p}-Channel-Bridged-Time", str(self.bridged_us)),
                (f"{p}-Channel-Last-Hold", "0"), (f"{p}-Channel-Hold-Accum", "0"), (f"{p}-Screen-Bit", "true"),
                (f"{p}-Privacy-Hide-Name", "false"), (f"{p}-Privacy-Hide-Number", "false")]

    def state_pairs(self) -> Pairs:
        """Channel state, answer state and (once it has media) the codec headers."""
        if self.complete:
            cs, number = "CS_REPORTING", "11"
        else:
            cs, number = ("CS_HANGUP", "10") if self.hung_up else ("CS_EXECUTE", "4")
        pairs: Pairs = [("Channel-State", cs), ("Channel-Call-State", self.call_state),
                        ("Channel-State-Number", number), ("Channel-Name", self.name), ("Unique-ID", self.uuid),
                        ("Call-Direction", self.direction), ("Presence-Call-Direction", self.direction),
                        ("Channel-HIT-Dialplan", "true" if self.direction == "inbound" else "false"),
                        ("Channel-Call-UUID", self.uuid), ("Answer-State", self.answer_state)]
        pairs += [("Hangup-Cause", self.cause)] if self.hung_up else []
        return pairs + (self.codec_pairs() if self.has_media else [])

    def codec_pairs(self) -> Pairs:
        """``Channel-Read-Codec-*`` and ``Channel-Write-Codec-*``."""
        bits = str(self.rate * (8 if self.codec in ("PCMU", "PCMA") else 16))
        return [(f"Channel-{d}-Codec-{k}", v) for d in ("Read", "Write")
                for k, v in (("Name", self.codec), ("Rate", str(self.rate)), ("Bit-Rate", bits))]

    def variable_pairs(self) -> Pairs:
        """``variable_*`` headers, in the order the variables were set."""
        return [(f"variable_{k}", v) for k, v in self.variables.items()]

    def set_media_variables(self) -> None:
        """Variables a channel gets once it has media (what ``channel_media`` reads)."""
        v = self.variables
        if self.flavour == "sofia":
            v.update({"rtp_use_codec_name": self.codec, "rtp_use_codec_rate": str(self.rate),
                      "rtp_use_codec_ptime": str(self.ptime_ms), "rtp_use_codec_channels": "1",
                      "rtp_last_audio_codec_string": f"{self.codec}@{self.rate}h@{self.ptime_ms}i@1c"})
        v.update({"read_codec": self.codec, "read_rate": str(self.rate),
                  "write_codec": self.codec, "write_rate": str(self.rate)})


def _decodable(packet: Packet) -> bool:
    return packet.codec != "L16" or len(packet.data) % 2 == 0


# ---------------------------------------------------------------- the switch

# Event-Calling-File/-Function/-Line-Number per event, as captured.
_CALLING: dict[str, tuple[str, str, str]] = {
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", "1569"),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", "3848"),
    "CHANNEL_BRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1689"),
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", "626"),
    "CHANNEL_DATA": ("mod_event_socket.c", "parse_command", "2018"),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", "2949"),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", "2972"),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", "3447"),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", "943"),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", "1002"),
    "CHANNEL_PROGRESS_MEDIA": ("switch_channel.c", "switch_channel_perform_mark_pre_answered", "3562"),
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", "2409"),
    "CHANNEL_UNBRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1879"),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", "1213"),
    "DTMF": ("switch_channel.c", "switch_channel_dequeue_dtmf", "678"),
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", "1649"),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", "2023"),
}

# What `myevents` subscribes to (mod_event_socket.c): no PLAYBACK_* or RECORD_* (DESIGN.md section 2).
MYEVENTS = frozenset({
    "CHANNEL_ANSWER", "CHANNEL_APPLICATION", "CHANNEL_BRIDGE", "CHANNEL_CREATE", "CHANNEL_DATA",
    "CHANNEL_DESTROY", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_ORIGINATE", "CHANNEL_UUID", "CHANNEL_OUTGOING", "CHANNEL_PARK",
    "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_STATE", "CHANNEL_UNBRIDGE", "CHANNEL_UNPARK",
    "DETECTED_SPEECH", "DTMF", "NOTALK", "TALK",
})

EVENT_NAMES = MYEVENTS | frozenset({
    "ALL", "CUSTOM", "CLONE", "CHANNEL_CALLSTATE", "CHANNEL_HOLD", "CHANNEL_UNHOLD", "API", "LOG", "INBOUND_CHAN",
    "OUTBOUND_CHAN", "STARTUP", "SHUTDOWN", "PUBLISH", "UNPUBLISH", "SESSION_CRASH", "MODULE_LOAD",
    "MODULE_UNLOAD", "MESSAGE", "PRESENCE_IN", "NOTIFY_IN", "PRESENCE_OUT", "PRESENCE_PROBE",
    "MESSAGE_WAITING", "MESSAGE_QUERY", "ROSTER", "CODEC", "BACKGROUND_JOB", "DETECTED_TONE",
    "PRIVATE_COMMAND", "HEARTBEAT", "TRAP", "ADD_SCHEDULE", "DEL_SCHEDULE", "EXE_SCHEDULE", "RE_SCHEDULE",
    "RELOADXML", "NOTIFY", "PHONE_FEATURE", "PHONE_FEATURE_SUBSCRIBE", "SEND_MESSAGE", "RECV_MESSAGE",
    "REQUEST_PARAMS", "GENERAL", "COMMAND", "SESSION_HEARTBEAT", "CLIENT_DISCONNECTED",
    "SERVER_DISCONNECTED", "SEND_INFO", "RECV_INFO", "RECV_RTCP_MESSAGE", "SEND_RTCP_MESSAGE", "CALL_SECURE",
    "NAT", "RECORD_START", "RECORD_STOP", "PLAYBACK_START", "PLAYBACK_STOP", "CALL_UPDATE", "FAILURE",
    "SOCKET_DATA", "MEDIA_BUG_START", "MEDIA_BUG_STOP", "CALL_SETUP_REQ", "CALL_SETUP_RESULT", "CALL_DETAIL",
    "DEVICE_STATE", "TEXT", "SHUTDOWN_REQUESTED", "DTMF",
})

_SHOW_CHANNELS_HEADER = (
    "uuid,direction,created,created_epoch,name,state,cid_name,cid_num,ip_addr,dest,application,application_data,"
    "dialplan,context,read_codec,read_rate,read_bit_rate,write_codec,write_rate,write_bit_rate,secure,hostname,"
    "presence_id,presence_data,accountcode,callstate,callee_name,callee_num,callee_direction,call_uuid,"
    "sent_callee_name,sent_callee_num,initial_cid_name,initial_cid_num,initial_ip_addr,initial_dest,"
    "initial_dialplan,initial_context")
_ORIGINATE = re.compile(r"^(?:\{(?P<vars>[^}]*)\})?(?P<endpoint>\S+)\s+(?P<app>.+)$")
_APP_SPEC = re.compile(r"^&(?P<name>[\w-]+)(?:\((?P<arg>.*)\))?")
_CODEC_SPEC = re.compile(r"(?P<codec>[A-Za-z0-9]+)@(?P<rate>\d+)h(?:@(?P<ptime>\d+)i)?")
_TONE = re.compile(r"%\((?P<on>\d+),(?P<off>\d+)")
_ORIGINATE_USAGE = ("-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] "
                    "[<cid_name>] [<cid_num>] [<timeout_sec>]\n")
_LOG_LEVELS = {"console": 0, "alert": 1, "crit": 2, "err": 3, "error": 3, "warning": 4, "notice": 5, "info": 6,
               "debug": 7}

_Delayed = tuple[float, Callable[[], None]] | None


@dataclass(slots=True)
class _ApiResult:
    """An API reply: ``body`` after ``delay`` s, then ``then()`` (e.g. the originated call's events)."""

    body: str
    delay: float = 0.0
    then: Callable[[], None] | None = None


def _new_uuid() -> str:
    return str(uuidlib.uuid4())


def _require_loopback(host: str) -> None:
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the FreeSWITCH double only talks to 127.0.0.1, not {host!r}")


def _cooperative_sleep() -> Callable[[float], None] | None:
    """gevent.sleep when gevent is loaded (an engine may be running as greenlets in this thread)."""
    gevent = sys.modules.get("gevent")
    sleep = getattr(gevent, "sleep", None)
    return sleep if callable(sleep) else None


def _split_var(item: str) -> tuple[str, str]:
    name, _, value = item.partition("=")
    return name.strip(), value.strip()


def _parse_socket_arg(arg: str) -> tuple[str, int]:
    """``127.0.0.1:8084 async full`` → (host, port); ValueError unless the host is loopback."""
    address = arg.split()[0] if arg.split() else ""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"bad socket address {arg!r}")
    _require_loopback(host)
    return host, int(port)


class FreeSwitchDouble:
    """A FreeSWITCH stand-in on 127.0.0.1 for tests: inbound ESL, outbound sockets, unicast UDP.

    ``password``: the inbound ESL password; ``port``: 0 for an ephemeral port;
    ``timing``: delays from the captures; ``playback_seconds``: how long a file plays
    (default: tone_stream/silence_stream lengths, WAV headers, else ``timing.default_playback_s``).
    """

    def __init__(self, password: str = "ClueCon", *, port: int = 0, timing: Timing | None = None,
                 hostname: str = "fsdouble", playback_seconds: Callable[[str], float] | None = None) -> None:
        self.password = password
        self.timing = timing or Timing()
        self.hostname = hostname
        self.core_uuid = _new_uuid()
        self._playback_seconds = playback_seconds or self._default_playback_seconds
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._port = port
        self._listener: socket.socket | None = None
        self._conns: list[_Conn] = []
        self._channels: dict[str, Channel] = {}
        self._globals: dict[str, str] = {"loopback_initial_codec": "L16@8000h@20i"}
        self._fatal: list[FatalError] = []
        self._commands: list[str] = []
        self._event_seq = itertools.count(1)
        self._sessions_total = 0
        self._started_at = time.monotonic()
        self._up = False
        self._crashed = False
        self._scheduler: _Scheduler | None = None
        self._media: _MediaLoop | None = None

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> FreeSwitchDouble:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Listen for inbound ESL (on the same port after a restart)."""
        with self._lock:
            if self._up:
                return
            if self._scheduler is None:
                self._scheduler = _Scheduler(self._on_internal_error)
                self._media = _MediaLoop(self._lock, self._changed, self._on_internal_error)
            self._listener = self._listen()
            self._up, self._crashed = True, False
            self._started_at = time.monotonic()
            threading.Thread(target=self._accept_loop, args=(self._listener,), name="fsdouble-accept",
                             daemon=True).start()

    def _listen(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        sock.listen(16)
        self._port = sock.getsockname()[1]
        return sock

    def stop(self) -> None:
        """FreeSWITCH goes down: every connection drops, calls vanish, the port closes."""
        with self._lock:
            conns = self._shutdown()
        for conn in conns:
            conn.join()

    def restart(self) -> None:
        """Down and back up on the same port (fatal errors are kept)."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and end every thread of the double."""
        self.stop()
        if self._scheduler is not None and self._media is not None:
            self._scheduler.stop()
            self._media.stop()
            self._scheduler = self._media = None

    def _shutdown(self) -> list[_Conn]:
        self._up = False
        if self._listener is not None:
            with contextlib.suppress(OSError):  # shutdown wakes the thread blocked in accept()
                self._listener.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        conns, self._conns = self._conns, []
        for conn in conns:
            conn.abort()
        for ch in self._channels.values():
            self._vanish(ch)
        if self._scheduler is not None:
            self._scheduler.cancel_all()
        self._changed.notify_all()
        return conns

    def _vanish(self, ch: Channel) -> None:
        """The process is gone: the channel ends without a word."""
        if ch.unicast is not None:
            ch.unicast.stop("FreeSWITCH down")
        ch.hung_up = ch.complete = True
        ch.cause = ch.cause or "CRASH"

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, self._on_command, self._on_gone)
            with self._lock:
                if not self._up:
                    sock.close()
                    continue
                self._conns.append(conn)
                conn.send(b"Content-Type: auth/request\n\n")
                conn.start()

    def _on_internal_error(self, err: BaseException) -> None:
        with self._lock:
            self._fatal.append(FatalError(f"FreeSWITCH double internal error: {err!r}", "", time.monotonic()))

    # ------------------------------------------------------------ public API

    @property
    def inbound_port(self) -> int:
        """The inbound ESL port on 127.0.0.1."""
        return self._port

    @property
    def up(self) -> bool:
        """True while listening (false after stop() or a crash)."""
        return self._up

    @property
    def crashed(self) -> bool:
        """True once a crash rule fired (until restart())."""
        return self._crashed

    @property
    def fatal_errors(self) -> list[FatalError]:
        """Everything that would have crashed or wedged the real FreeSWITCH."""
        with self._lock:
            return list(self._fatal)

    @property
    def commands(self) -> list[str]:
        """First lines of every command received, all connections, in order."""
        with self._lock:
            return list(self._commands)

    def assert_no_crash(self) -> None:
        """Raise AssertionError if anything would have crashed or wedged FreeSWITCH."""
        errors = self.fatal_errors
        if errors:
            err = AssertionError("; ".join(dict.fromkeys(e.message for e in errors)))
            for e in errors:
                err.add_note(f"channel {e.uuid or '-'}: {e.message}")
            raise err

    def channel(self, uuid: str) -> Channel:
        """The channel ``uuid`` (live or hung up); KeyError if the double never had it."""
        with self._lock:
            try:
                return self._channels[uuid]
            except KeyError:
                raise KeyError(f"the FreeSWITCH double has no channel {uuid}") from None

    def channels(self, live_only: bool = False) -> list[Channel]:
        """Every channel ever created (or only those not hung up)."""
        with self._lock:
            return [c for c in self._channels.values() if not (live_only and c.hung_up)]

    def wait_for(self, predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
        """Block until ``predicate()`` is true; TimeoutError after ``timeout`` s. Yields to gevent if loaded."""
        deadline = time.monotonic() + timeout
        sleep = _cooperative_sleep()
        if sleep is None:
            with self._changed:  # checked under the lock: no wake-up is lost between check and wait
                while not predicate():
                    self._changed.wait(self._left(deadline, timeout, what))
            return
        while not predicate():
            sleep(min(self._left(deadline, timeout, what), 0.002))

    @staticmethod
    def _left(deadline: float, timeout: float, what: str) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"FreeSWITCH double: timed out after {timeout} s waiting for {what}")
        return left

    def place_call(self, engine_port: int | None, *, codec: str = "PCMU", rate: int = 8000, ptime: int = 20,
                   caller: CallerAudio | Callable[[float], bytes] | None = None, number: str = "1000",
                   destination: str = "7000", context: str = "default", flavour: str = "sofia",
                   uuid: str | None = None, host: str = "127.0.0.1") -> str:
        """A caller dials in; FreeSWITCH runs ``socket host:engine_port async full`` and connects out.

        ``flavour`` "sofia" (a SIP caller: no codec headers before answer) or "loopback".
        ``engine_port=None`` leaves the call ringing in park with no socket (check4b).
        Returns the channel's uuid; ConnectionRefusedError if nothing listens there.
        """
        _require_loopback(host)
        with self._lock:
            self._require_up()
            ch = self._new_caller(uuid or _new_uuid(), media_format(codec, rate, ptime), number, destination,
                                  context, flavour)
            ch.caller = as_caller_audio(caller)
            self._emit(ch, "CHANNEL_CREATE")
            if engine_port is None:
                self._start_park(ch)
                return ch.uuid
            self._start_socket_app(ch, host, engine_port)
            return ch.uuid

    def press(self, uuid: str, digits: str, gap_s: float = 0.1) -> None:
        """The caller presses ``digits`` (RFC 2833 DTMF events on the channel, ``gap_s`` apart)."""
        with self._lock:
            ch = self._require_live(uuid)
            self._dtmf(ch, digits, 0.0, gap_s, "RTP" if ch.flavour == "sofia" else "UNKNOWN")

    def hangup(self, uuid: str, cause: str = "NORMAL_CLEARING") -> None:
        """The caller hangs up (a BYE): hangup events, then linger or disconnect on the socket."""
        with self._lock:
            ch = self._require_live(uuid)
            self._later(0.0, lambda: self._hangup_now(ch, cause))

    def set_caller_audio(self, uuid: str, audio: CallerAudio | Callable[[float], bytes] | None) -> None:
        """Change what the caller says from now on."""
        with self._lock:
            self.channel(uuid).caller = as_caller_audio(audio)

    def set_media_faults(self, uuid: str, faults: MediaFaults) -> None:
        """Loss, duplication, reordering or silence on the caller's UDP stream."""
        with self._lock:
            self.channel(uuid).faults = faults

    def send_udp(self, uuid: str, data: bytes) -> None:
        """One raw datagram (e.g. garbage) from the channel's unicast port to the engine."""
        with self._lock:
            session = self.channel(uuid).unicast
            if session is None or not session.active:
                raise RuntimeError(f"channel {uuid} has no active unicast")
            session.sendto(data)

    def change_ptime(self, uuid: str, ptime: int) -> None:
        """The SIP peer switches packet time (e.g. 20 → 30 ms): unicast dies silently (DESIGN.md section 2)."""
        with self._lock:
            ch = self._require_live(uuid)
            old, ch.ptime_ms = ch.ptime_ms, ptime
            ch.variables["rtp_h_X-Broken-PTIME"] = f"Adv={old};Sent={ptime}"
            ch.set_media_variables()
            self._stop_unicast(ch, f"ptime change {old}->{ptime} ms")

    def drop_connection(self, uuid: str) -> None:
        """FreeSWITCH closes the channel's outbound socket mid-call (no notice; the call stays up)."""
        with self._lock:
            conn = self._require_live(uuid).conn
            if conn is not None:
                conn.resume = True  # keep the call: this fault is about the socket only
                conn.abort()

    def send_garbage(self, uuid: str, data: bytes) -> None:
        """Raw bytes on the channel's outbound socket, as if FreeSWITCH went mad."""
        with self._lock:
            conn = self._require_live(uuid).conn
            if conn is None:
                raise RuntimeError(f"channel {uuid} has no outbound socket")
            conn.send(data)

    # ------------------------------------------------------------ helpers

    def _require_up(self) -> None:
        if not self._up:
            raise ConnectionRefusedError("the FreeSWITCH double is down (stopped or crashed)")

    def _require_live(self, uuid: str) -> Channel:
        ch = self.channel(uuid)
        if ch.hung_up:
            raise RuntimeError(f"channel {uuid} has hung up")
        return ch

    def _live(self, uuid: str) -> Channel | None:
        ch = self._channels.get(uuid)
        return ch if ch is not None and not ch.hung_up else None

    def _later(self, delay: float, fn: Callable[[], None]) -> _Timer:
        assert self._scheduler is not None

        def run() -> None:
            with self._lock:
                if self._up:
                    fn()
        return self._scheduler.call_later(delay, run)

    def _fatal_error(self, message: str, uuid: str) -> None:
        self._fatal.append(FatalError(message, uuid, time.monotonic()))
        self._changed.notify_all()

    # ------------------------------------------------------------ channel creation

    def _add_channel(self, ch: Channel) -> Channel:
        self._channels[ch.uuid] = ch
        self._sessions_total += 1
        ch.variables.update({"direction": ch.direction, "uuid": ch.uuid, "session_id": str(self._sessions_total),
                             "channel_name": ch.name, "call_uuid": ch.uuid})
        return ch

    def _new_caller(self, uuid: str, media: ChannelMedia, number: str, destination: str, context: str,
                    flavour: str) -> Channel:
        """An inbound call, ringing, as a SIP phone (``sofia``) or a loopback leg makes it."""
        if flavour not in ("sofia", "loopback"):
            raise ValueError(f"flavour must be 'sofia' or 'loopback', not {flavour!r}")
        name = f"sofia/internal/{number}@127.0.0.1:5070" if flavour == "sofia" else f"loopback/{destination}-b"
        ch = self._add_channel(Channel(self._lock, uuid, name, direction="inbound", flavour=flavour, media=media,
                                       number=number, destination=destination, context=context))
        ch.call_state = "RINGING"
        bits = 8 * media.rate if media.codec in ("PCMU", "PCMA") else 16 * media.rate
        if flavour == "sofia":
            ch.variables.update({
                "sip_from_user": number, "sip_from_uri": f"{number}@127.0.0.1:5070", "sip_from_host": "127.0.0.1",
                "sip_to_user": destination, "sip_req_user": destination, "sofia_profile_name": "internal",
                "rtp_use_codec_string": "PCMU,PCMA",
                "ep_codec_string": f"CORE_PCM_MODULE.{media.codec}@{media.rate}h@{media.ptime_ms}i@{bits}b",
                "endpoint_disposition": "DELAYED NEGOTIATION"})
        else:
            ch.set_media_variables()
        return ch

    def _new_leg(self, uuid: str, name: str, direction: str, media: ChannelMedia, number: str,
                 destination: str, context: str) -> Channel:
        """A loopback leg made by originate: it has media (L16 or the loopback_initial_codec) from the start."""
        ch = self._add_channel(Channel(self._lock, uuid, name, direction=direction, flavour="loopback",
                                       media=media, number=number, destination=destination, context=context))
        ch.set_media_variables()
        return ch

    def _answer_quietly(self, ch: Channel) -> None:
        ch.answered, ch.has_media = True, True
        ch.answered_us, ch.answered_at = _now_us(), time.monotonic()
        ch.answer_state = "answered"

    # ------------------------------------------------------------ events

    def _core_pairs(self, name: str, calling: tuple[str, str, str] | None = None) -> Pairs:
        now = time.time()
        file, function, line = calling or _CALLING.get(name, ("switch_event.c", "switch_event_fire_detailed", "0"))
        return [("Event-Name", name), ("Core-UUID", self.core_uuid), ("FreeSWITCH-Hostname", self.hostname),
                ("FreeSWITCH-Switchname", self.hostname), ("FreeSWITCH-IPv4", "127.0.0.1"),
                ("FreeSWITCH-IPv6", "::1"),
                ("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))),
                ("Event-Date-GMT", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))),
                ("Event-Date-Timestamp", str(int(now * 1_000_000))), ("Event-Calling-File", file),
                ("Event-Calling-Function", function), ("Event-Calling-Line-Number", line),
                ("Event-Sequence", str(next(self._event_seq)))]

    def _other_leg_pairs(self, ch: Channel) -> Pairs:
        other = self._channels.get(ch.bridged_to or ch.other_leg)
        if other is None:
            return []
        pairs = [("Other-Type", "originatee" if ch.direction == "inbound" else "originator")]
        return pairs + [(k.replace("Caller-", "Other-Leg-", 1), v) for k, v in other.profile_pairs("Caller")]

    def _channel_pairs(self, ch: Channel) -> Pairs:
        return ch.state_pairs() + ch.profile_pairs("Caller") + self._other_leg_pairs(ch) + ch.variable_pairs()

    def _emit(self, ch: Channel | None, name: str, extra: Sequence[tuple[str, str]] = (), *,
              lead: Sequence[tuple[str, str]] = (), body: bytes = b"") -> None:
        """Fire event ``name`` (about ``ch``) to every connection that wants it."""
        pairs = self._core_pairs(name) + list(lead) + (self._channel_pairs(ch) if ch else []) + list(extra)
        if ch is not None:
            ch.events.append(name)
        encoded: dict[str, bytes] = {}
        for conn in self._conns:
            if self._wants(conn, name, ch, pairs):
                fmt = "json" if conn.fmt == "json" else "plain"  # xml is not spoken: plain instead
                if fmt not in encoded:
                    encoded[fmt] = format_event(pairs, body, fmt)
                conn.send(encoded[fmt])
        self._changed.notify_all()

    @staticmethod
    def _wants(conn: _Conn, name: str, ch: Channel | None, pairs: Pairs) -> bool:
        if conn.closed or not conn.authed:
            return False
        if conn.myevents and conn.session and (ch is None or ch.uuid != conn.session):
            return False
        if "ALL" not in conn.events and name not in conn.events:
            return False
        return not conn.filters or any((h, v) in pairs for h, v in conn.filters)

    def _app_pairs(self, name: str, arg: str, app_uuid: str, response: str | None = None) -> Pairs:
        pairs = [("Application", name)] + ([("Application-Data", arg)] if arg else [])
        pairs += [("Application-Response", response)] if response is not None else []
        return pairs + ([("Application-UUID", app_uuid)] if app_uuid else [])

    # ------------------------------------------------------------ ESL commands

    def _on_command(self, conn: _Conn, cmd: Command) -> None:
        """(A connection's reader thread) one command, served in order as FreeSWITCH's listener does."""
        with self._lock:
            if not self._up or conn.closed:
                return
            self._commands.append(cmd.line)
            delayed = self._dispatch(conn, cmd)
        if delayed is not None:
            delay, finish = delayed
            time.sleep(delay)  # `api` runs in the listener thread: this connection's next command waits
            with self._lock:
                if self._up and not conn.closed:
                    finish()

    def _on_gone(self, conn: _Conn) -> None:
        """(A reader thread) the peer closed, or we did."""
        with self._lock:
            if conn in self._conns:
                self._conns.remove(conn)
            conn.closed = True
            ch = self._live(conn.session) if conn.session else None
            if ch is not None and ch.conn is conn and not conn.resume and self._up:
                self._later(self.timing.hangup_s, lambda: self._hangup_now(ch, "NORMAL_CLEARING"))
            self._changed.notify_all()
        conn._out.put(_CLOSE)  # end the writer thread too
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _dispatch(self, conn: _Conn, cmd: Command) -> _Delayed:
        word = cmd.line.split(" ", 1)[0].lower()
        if word in ("exit", "..."):
            self._close_conn(conn, "+OK bye")
            return None
        if not conn.authed:
            self._auth(conn, cmd.line)
            return None
        handler = self._esl_handlers().get(word)
        if handler is None or (word in ("connect", "getvar", "resume") and not conn.session):
            conn.send(format_reply("-ERR command not found"))
            return None
        return handler(conn, cmd)

    def _esl_handlers(self) -> dict[str, Callable[[_Conn, Command], _Delayed]]:
        return {"connect": self._esl_connect, "myevents": self._esl_myevents, "event": self._esl_event,
                "nixevent": self._esl_nixevent, "noevents": self._esl_noevents, "linger": self._esl_linger,
                "nolinger": self._esl_nolinger, "filter": self._esl_filter, "sendmsg": self._esl_sendmsg,
                "api": self._esl_api, "bgapi": self._esl_bgapi, "getvar": self._esl_getvar,
                "resume": self._esl_resume, "divert_events": self._esl_divert, "log": self._esl_log,
                "nolog": self._esl_nolog, "sendevent": self._esl_sendevent}

    def _auth(self, conn: _Conn, line: str) -> None:
        if not line.lower().startswith("auth "):
            conn.send(format_reply("-ERR command not found"))
        elif line[5:] == self.password:
            conn.authed = True
            conn.send(format_reply("+OK accepted"))
        else:
            self._close_conn(conn, "-ERR invalid")

    def _close_conn(self, conn: _Conn, reply: str) -> None:
        """Reply, then the goodbye notice, then close (exit, a wrong password)."""
        conn.send(format_reply(reply))
        conn.send(format_disconnect_notice(conn.session or None))
        conn.close_after_flush()

    def _esl_connect(self, conn: _Conn, cmd: Command) -> _Delayed:
        ch = self._channels[conn.session]
        pairs = self._core_pairs("CHANNEL_DATA") + ch.profile_pairs("Channel") + self._channel_pairs(ch)
        conn.send(format_channel_data(pairs))
        if ch.flavour == "loopback" and not ch.answered and ch.app == "socket":
            self._later(self.timing.park_s, lambda: self._emit(ch, "CHANNEL_PARK"))
        return None

    def _esl_myevents(self, conn: _Conn, cmd: Command) -> _Delayed:
        args = cmd.line.split()[1:]
        if conn.myevents:
            conn.send(format_reply("-ERR aready enabled."))  # sic, as FreeSWITCH spells it
            return None
        if not conn.session:
            if not args or (self._live(args[0]) is None):
                conn.send(format_reply("-ERR invalid uuid" if args else "-ERR command not found"))
                return None
            conn.session = args[0]
        conn.myevents = True
        conn.events |= MYEVENTS
        lowered = cmd.line.lower()
        conn.fmt = "json" if "json" in lowered else "xml" if "xml" in lowered else conn.fmt
        conn.send(format_reply("+OK Events Enabled"))
        return None

    def _event_names(self, conn: _Conn, tokens: list[str]) -> set[str] | None:
        """Event names in ``tokens`` (after CUSTOM: subclass names); None if none is known."""
        names: set[str] = set()
        custom = False
        for i, token in enumerate(tokens):
            if i == 0 and token.lower() in ("plain", "json", "xml"):
                conn.fmt = token.lower()
            elif custom:
                names.add(token)
            elif token.upper() in EVENT_NAMES:
                names.add(token.upper())
                custom = custom or token.upper() == "CUSTOM"
        return names if any(n in EVENT_NAMES for n in names) else None

    def _esl_event(self, conn: _Conn, cmd: Command) -> _Delayed:
        names = self._event_names(conn, cmd.line.split()[1:])
        if names is None:
            conn.send(format_reply("-ERR no keywords supplied"))
            return None
        conn.events |= names
        conn.send(format_reply(f"+OK event listener enabled {conn.fmt}"))
        return None

    def _esl_nixevent(self, conn: _Conn, cmd: Command) -> _Delayed:
        fmt = conn.fmt
        names = self._event_names(conn, cmd.line.split()[1:])
        conn.fmt = fmt
        if names is None:
            conn.send(format_reply("-ERR no keywords supplied"))
            return None
        conn.events = set() if "ALL" in names else (conn.events - names)
        conn.send(format_reply("+OK events nixed"))
        return None

    def _esl_noevents(self, conn: _Conn, cmd: Command) -> _Delayed:
        listening = bool(conn.events)
        conn.events, conn.myevents = set(), False
        conn.send(format_reply("+OK no longer listening for events" if listening else "-ERR not listening for events"))
        return None

    def _esl_linger(self, conn: _Conn, cmd: Command) -> _Delayed:
        if not conn.session:
            conn.send(format_reply("-ERR not controlling a session"))
            return None
        arg = cmd.line[6:].strip()
        conn.linger = int(arg) if arg.lstrip("-").isdigit() else -1
        text = "+OK will linger" if conn.linger == -1 else f"+OK will linger {conn.linger} seconds"
        conn.send(format_reply(text))
        return None

    def _esl_nolinger(self, conn: _Conn, cmd: Command) -> _Delayed:
        if not conn.session:
            conn.send(format_reply("-ERR not controlling a session"))
            return None
        conn.linger = None
        conn.send(format_reply("+OK will not linger"))
        return None

    def _esl_filter(self, conn: _Conn, cmd: Command) -> _Delayed:
        parts = cmd.line.split(None, 3)[1:]
        if len(parts) >= 2 and parts[0].lower() == "delete":
            header, value = parts[1], parts[2] if len(parts) > 2 else ""
            conn.filters = [] if header.lower() == "all" else \
                [(h, v) for h, v in conn.filters if not (h == header and (not value or v == value))]
            conn.send(format_reply(f"+OK filter deleted. [{header}][{value}]"))
        elif len(parts) >= 2:
            if parts[0].lower() == "add" and len(parts) > 2:
                parts = parts[1:]
            header, value = parts[0], " ".join(parts[1:])
            conn.filters.append((header, value))
            conn.send(format_reply(f"+OK filter added. [{header}]=[{value}]"))
        else:
            conn.send(format_reply("-ERR invalid syntax"))
        return None

    def _esl_getvar(self, conn: _Conn, cmd: Command) -> _Delayed:
        name = cmd.line[6:].strip()
        conn.send(format_reply(self._channels[conn.session].variables.get(name, "")))
        return None

    def _esl_resume(self, conn: _Conn, cmd: Command) -> _Delayed:
        conn.resume = True
        self._channels[conn.session].variables["socket_resume"] = "true"
        conn.send(format_reply("+OK"))
        return None

    def _esl_divert(self, conn: _Conn, cmd: Command) -> _Delayed:
        on = cmd.line[13:].strip().lower()
        if not conn.session:
            text = "-ERR not controlling a session."
        else:
            text = "-ERR missing value." if not on else \
                "+OK events diverted" if on == "on" else "+OK events not diverted"
        conn.send(format_reply(text))
        return None

    def _esl_log(self, conn: _Conn, cmd: Command) -> _Delayed:
        level = cmd.line[3:].strip()
        number = int(level) if level.isdigit() else _LOG_LEVELS.get(level.lower() or "debug", -1)
        conn.send(format_reply(f"+OK log level {level} [{number}]" if 0 <= number <= 7 else "-ERR invalid log level"))
        return None

    def _esl_nolog(self, conn: _Conn, cmd: Command) -> _Delayed:
        conn.send(format_reply("-ERR not loging"))  # sic; the double never streams logs
        return None

    def _esl_sendevent(self, conn: _Conn, cmd: Command) -> _Delayed:
        conn.send(format_reply(f"+OK {_new_uuid()}"))
        return None

    def _esl_sendmsg(self, conn: _Conn, cmd: Command) -> _Delayed:
        uuid = cmd.line[7:].strip() or cmd.get("session-id")
        target = uuid or conn.session
        ch = self._channels.get(target) if target else None
        if ch is None or (ch.complete and target != conn.session):
            conn.send(format_reply(f"-ERR invalid session id [{uuid}]"))
            return None
        conn.send(format_reply("+OK"))
        if ch.hung_up:
            return None
        command = cmd.get("call-command").lower()
        if command == "execute":
            app = cmd.get("execute-app-name")
            arg = cmd.get("execute-app-arg") or cmd.body.decode("utf-8", "replace")
            self._execute(ch, app, arg, cmd.get("Event-UUID"))
        elif command == "hangup":
            self._later(self.timing.hangup_s, lambda: self._hangup_now(ch, cmd.get("hangup-cause") or
                                                                      "NORMAL_CLEARING"))
        elif command == "unicast":
            self._unicast(ch, cmd)
        return None

    def _esl_api(self, conn: _Conn, cmd: Command) -> _Delayed:
        result = self._api(cmd.line[4:].strip())

        def finish() -> None:
            conn.send(format_api_response(result.body))
            if result.then is not None:
                result.then()
        if result.delay <= 0:
            finish()
            return None
        return result.delay, finish

    def _esl_bgapi(self, conn: _Conn, cmd: Command) -> _Delayed:
        line = cmd.line[6:].strip()
        name, _, arg = line.partition(" ")
        job = cmd.get("Job-UUID") or _new_uuid()
        conn.send(format_reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)]))
        result = self._api(line)
        extra = [("Job-UUID", job), ("Job-Command", name)] + ([("Job-Command-Arg", arg)] if arg else [])

        def finish() -> None:
            if result.then is not None:
                result.then()  # the call's events, then the job's result (as an originate returns)
            self._emit(None, "BACKGROUND_JOB", extra, body=result.body.encode("utf-8"))
        self._later(result.delay, finish)
        return None

    # ------------------------------------------------------------ api commands

    def _api(self, line: str) -> _ApiResult:
        name, _, args = line.partition(" ")
        handler = self._api_handlers().get(name.lower())
        if handler is None:
            return _ApiResult(f"-ERR {name} Command not found!\n")
        result = handler(args.strip())
        return result if isinstance(result, _ApiResult) else _ApiResult(result or "-ERR no reply\n")

    def _api_handlers(self) -> dict[str, Callable[[str], str | _ApiResult]]:
        return {"originate": self._api_originate, "uuid_bridge": self._api_uuid_bridge,
                "uuid_transfer": self._api_uuid_transfer, "uuid_kill": self._api_uuid_kill,
                "uuid_break": self._api_uuid_break, "uuid_broadcast": self._api_uuid_broadcast,
                "uuid_recv_dtmf": self._api_uuid_recv_dtmf, "uuid_send_dtmf": self._api_uuid_send_dtmf,
                "uuid_getvar": self._api_uuid_getvar, "uuid_setvar": self._api_uuid_setvar,
                "uuid_dump": self._api_uuid_dump, "uuid_exists": self._api_uuid_exists, "show": self._api_show,
                "status": self._api_status, "global_setvar": self._api_global_setvar,
                "global_getvar": self._api_global_getvar, "version": self._api_version}

    def _api_uuid_kill(self, args: str) -> str:
        uuid, _, cause = args.partition(" ")
        ch = self._live(uuid)
        if ch is None:
            return "-ERR No such channel!\n"
        self._later(self.timing.hangup_s, lambda: self._hangup_now(ch, cause.strip() or "NORMAL_CLEARING"))
        return "+OK\n"

    def _api_uuid_getvar(self, args: str) -> str:
        uuid, _, name = args.partition(" ")
        ch = self._live(uuid)
        if ch is None:
            return "-ERR No such channel!\n"
        return ch.variables.get(name.strip(), "_undef_")

    def _api_uuid_setvar(self, args: str) -> str:
        parts = args.split(" ", 2)
        ch = self._live(parts[0])
        if ch is None or len(parts) < 2:
            return "-ERR No such channel!\n" if ch is None else "-USAGE: <uuid> <var> [value]\n"
        if len(parts) == 3:
            ch.variables[parts[1]] = parts[2]
        else:
            ch.variables.pop(parts[1], None)
        return "+OK\n"

    def _api_uuid_exists(self, args: str) -> str:
        return "true" if self._live(args.split(" ")[0]) is not None else "false"

    def _api_uuid_dump(self, args: str) -> str:
        uuid, _, fmt = args.partition(" ")
        ch = self._live(uuid)
        if ch is None:
            return "-ERR No such channel!\n"
        calling = ("mod_commands.c", "uuid_dump_function", "6495")
        pairs = self._core_pairs("CHANNEL_DATA", calling) + self._channel_pairs(ch)
        data = serialize_json(pairs) if fmt.strip() == "json" else serialize_plain(pairs)
        return data.decode("utf-8")

    def _api_show(self, args: str) -> str:
        words = args.lower().split()
        live = [c for c in self._channels.values() if not c.complete]
        if words[-1:] == ["count"]:
            return f"\n{len(live)} total.\n"
        if words[:1] in (["channels"], ["calls"]):
            if not live:
                return "\n0 total.\n"
            rows = "".join(self._show_row(c) + "\n" for c in live)
            return f"{_SHOW_CHANNELS_HEADER}\n{rows}\n{len(live)} total.\n"
        return "-USAGE: codec|endpoint|application|api|dialplan|file|timer|calls [count]|channels [count|like <match string>]|calls|detailed_calls|bridged_calls|detailed_bridged_calls|aliases|complete|chat|management|modules|nat_map|say|interfaces|interface_types|tasks|limits|status\n"  # noqa: E501

    def _show_row(self, ch: Channel) -> str:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ch.created_us / 1e6))
        bits = str(ch.rate * (8 if ch.codec in ("PCMU", "PCMA") else 16))
        fields = [ch.uuid, ch.direction, created, str(ch.created_us // 1_000_000), ch.name, "CS_EXECUTE",
                  "", ch.number, "", ch.destination, ch.app, ch.variables.get("current_application_data", ""),
                  "XML", ch.context, ch.codec, str(ch.rate), bits, ch.codec, str(ch.rate), bits, "",
                  self.hostname, "", "", "", ch.call_state, "", "", "", ch.uuid, "", "", "", ch.number, "",
                  ch.destination, "XML", ch.context]
        return ",".join(fields)

    def _api_status(self, args: str) -> str:
        up = time.monotonic() - self._started_at
        live = sum(1 for c in self._channels.values() if not c.complete)
        return (f"UP 0 years, 0 days, 0 hours, {int(up // 60)} minutes, {int(up % 60)} seconds, "
                f"{int(up * 1000) % 1000} milliseconds, 0 microseconds\n"
                "FreeSWITCH (Version 1.11.1-release  64bit) is ready\n"
                f"{self._sessions_total} session(s) since startup\n"
                f"{live} session(s) - peak {live}, last 5min {live} \n"
                "0 session(s) per Sec out of max 30, peak 2, last 5min 2 \n"
                "1000 session(s) max\nmin idle cpu 0.00/98.60\nCurrent Stack Size/Max 240K/8192K\n")

    def _api_version(self, args: str) -> str:
        return "FreeSWITCH Version 1.11.1-release~64bit (-release 64bit)\n"

    def _api_global_setvar(self, args: str) -> str:
        name, sep, value = args.partition("=")
        if not sep:
            name, _, value = args.partition(" ")
        self._globals[name.strip()] = value.strip()
        return "+OK"

    def _api_global_getvar(self, args: str) -> str:
        return self._globals.get(args.strip(), "")

    # ------------------------------------------------------------ originate

    def _api_originate(self, args: str) -> str | _ApiResult:
        m = _ORIGINATE.match(args.strip())
        if m is None:
            return _ORIGINATE_USAGE
        variables = dict(_split_var(v) for v in (m["vars"] or "").split(",") if "=" in v)
        app = _APP_SPEC.match(m["app"].strip())
        name, arg = (app["name"], app["arg"] or "") if app else ("transfer", m["app"].split()[0])
        if name == "socket":
            try:
                _parse_socket_arg(arg)
            except ValueError:
                return "-ERR DESTINATION_OUT_OF_ORDER\n"
        uuid = variables.get("origination_uuid") or _new_uuid()
        if uuid in self._channels:
            return "-ERR INVALID_UUID\n"
        endpoint = m["endpoint"]
        return _ApiResult(f"+OK {uuid}\n", self.timing.originate_s,
                          lambda: self._originate(uuid, variables, endpoint, name, arg))

    def _originate_media(self, variables: dict[str, str]) -> ChannelMedia:
        spec = variables.get("absolute_codec_string") or self._globals.get("loopback_initial_codec", "")
        m = _CODEC_SPEC.search(spec)
        if m is None:
            return media_format("L16", 8000, 20)
        return media_format(m["codec"], int(m["rate"]), int(m["ptime"] or 20))

    def _originate(self, uuid: str, variables: dict[str, str], endpoint: str, app: str, arg: str) -> None:
        """The originated leg (and, for loopback/, its B leg running answer + park) answers, then runs ``app``."""
        media = self._originate_media(variables)
        parts = endpoint.split("/")
        loopback = parts[0] == "loopback" and len(parts) > 1
        dest, context = (parts[1], parts[2] if len(parts) > 2 else "default") if loopback else (parts[-1], "default")
        number = variables.get("origination_caller_id_number", "0000000000")
        name = f"loopback/{dest}-a" if loopback else endpoint
        a = self._new_leg(uuid, name, "outbound", media, number, dest, context)
        a.variables.update(variables)
        b = self._new_leg(_new_uuid(), f"loopback/{dest}-b", "inbound", media, number, dest, context) \
            if loopback else None
        for leg in (a, b):
            if leg is not None:
                self._emit(leg, "CHANNEL_CREATE")
        if b is not None:
            a.peer, b.peer = b.uuid, a.uuid
            a.variables["other_loopback_leg_uuid"] = b.uuid
            b.variables["other_loopback_leg_uuid"] = a.uuid
            self._answer_b_leg(a, b)
        else:
            self._mark_answered(a)
        self._run_originate_app(a, app, arg)

    def _answer_b_leg(self, a: Channel, b: Channel) -> None:
        """Loopback B leg's dialplan: answer (which answers A), then park (check2, check4, check6)."""
        app_uuid = _new_uuid()
        self._emit(b, "CHANNEL_EXECUTE", self._app_pairs("answer", "", app_uuid))
        a.call_state, b.call_state = "DOWN", "RINGING"
        self._mark_answered(a)
        self._mark_answered(b)
        self._emit(b, "CHANNEL_EXECUTE_COMPLETE", self._app_pairs("answer", "", app_uuid, "_none_"))
        self._start_park(b)

    def _run_originate_app(self, a: Channel, app: str, arg: str) -> None:
        if app == "park":
            self._start_park(a)
        elif app == "socket":
            host, port = _parse_socket_arg(arg)
            a.variables.update({"current_application_data": arg, "current_application": "socket"})
            self._start_socket_app(a, host, port)
        elif app == "eavesdrop":
            self._start_eavesdrop(a, arg)
        else:  # any other app (or a dialplan extension) runs, then the leg hangs up
            app_uuid = _new_uuid()
            self._emit(a, "CHANNEL_EXECUTE", self._app_pairs(app, arg, app_uuid))
            self._emit(a, "CHANNEL_EXECUTE_COMPLETE", self._app_pairs(app, arg, app_uuid, "_none_"))
            self._later(self.timing.hangup_s, lambda: self._hangup_now(a, "NORMAL_CLEARING"))

    def _start_socket_app(self, ch: Channel, host: str, port: int) -> None:
        """``socket host:port async full``: the channel parks and FreeSWITCH connects out to the engine."""
        _require_loopback(host)
        ch.app, ch.app_uuid, ch.parked = "socket", _new_uuid(), True
        ch.variables.update({"current_application_data": f"{host}:{port} async full",
                             "current_application": "socket", "socket_host": host})
        if ch.direction == "outbound":
            self._emit(ch, "CHANNEL_EXECUTE", self._app_pairs("socket", f"{host}:{port} async full", ch.app_uuid))
        try:
            sock = socket.create_connection((host, port), timeout=2.0)
        except OSError:
            if ch.direction == "inbound":  # place_call: its caller learns at once
                del self._channels[ch.uuid]
                raise
            self._later(self.timing.hangup_s, lambda: self._hangup_now(ch, "NORMAL_CLEARING"))
            return
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ch.conn = _Conn(sock, self._on_command, self._on_gone, session=ch.uuid, authed=True)
        self._conns.append(ch.conn)
        ch.conn.start()
        if ch.flavour == "sofia":  # parked at once, before the engine can subscribe (check5, check6b)
            self._emit(ch, "CHANNEL_PARK")

    def _start_park(self, ch: Channel, app_uuid: str = "") -> None:
        ch.app, ch.app_uuid, ch.parked = "park", app_uuid or _new_uuid(), True
        ch.variables["current_application"] = "park"
        self._emit(ch, "CHANNEL_EXECUTE", self._app_pairs("park", "", ch.app_uuid))
        self._emit(ch, "CHANNEL_PARK")

    def _start_eavesdrop(self, agent: Channel, target_uuid: str) -> None:
        agent.app, agent.app_uuid = "eavesdrop", _new_uuid()
        agent.variables["current_application"] = "eavesdrop"
        self._emit(agent, "CHANNEL_EXECUTE", self._app_pairs("eavesdrop", target_uuid, agent.app_uuid))
        target = self._live(target_uuid)
        if target is None:
            self._end_long_app(agent)
            self._later(self.timing.hangup_s, lambda: self._hangup_now(agent, "NORMAL_CLEARING"))
            return
        agent.eavesdrop_target = target.uuid
        target.eavesdroppers.add(agent.uuid)

    def _end_long_app(self, ch: Channel, response: str = "_none_") -> None:
        """The park/socket/eavesdrop/bridge the channel sat in ends (transfer, bridge, hangup)."""
        if ch.app in ("park", "socket"):
            self._emit(ch, "CHANNEL_UNPARK")
        if ch.app:
            arg = ch.variables.get("current_application_data", "") if ch.app == "socket" else \
                ch.eavesdrop_target if ch.app == "eavesdrop" else ""
            self._emit(ch, "CHANNEL_EXECUTE_COMPLETE", self._app_pairs(ch.app, arg, ch.app_uuid, response))
        target = self._channels.get(ch.eavesdrop_target)
        if target is not None:
            target.eavesdroppers.discard(ch.uuid)
        ch.app, ch.app_uuid, ch.parked, ch.eavesdrop_target = "", "", False, ""


    # ------------------------------------------------------------ applications (sendmsg execute)

    def _execute(self, ch: Channel, name: str, arg: str, app_uuid: str) -> None:
        """Queue an app; apps run one after another, each ``app_start_s`` after the previous one."""
        name = name.lower()
        if name == "hangup":
            self._later(self.timing.hangup_s, lambda: self._hangup_now(ch, arg or "NORMAL_CLEARING"))
            return
        ch.queue.append(_App(name, arg, app_uuid or _new_uuid()))
        self._later(self.timing.app_start_s, lambda: self._next_app(ch))

    def _next_app(self, ch: Channel) -> None:
        if ch.hung_up or ch.running is not None or not ch.queue:
            return
        app = ch.queue.popleft()
        ch.running = app
        ch.variables["current_application"] = app.name
        if app.arg:
            ch.variables["current_application_data"] = app.arg
        self._emit(ch, "CHANNEL_EXECUTE", self._app_pairs(app.name, app.arg, app.app_uuid))
        starters: dict[str, Callable[[Channel, _App], None]] = {
            "answer": self._app_answer, "playback": self._app_playback, "park": self._app_park,
            "set": self._app_set, "export": self._app_set, "sleep": self._app_sleep}
        starters.get(app.name, self._app_done_now)(ch, app)

    def _finish_app(self, ch: Channel, app: _App, response: str = "_none_") -> None:
        if ch.running is not app:
            return
        ch.running = None
        ch.variables["current_application_response"] = response
        self._emit(ch, "CHANNEL_EXECUTE_COMPLETE", self._app_pairs(app.name, app.arg, app.app_uuid, response))
        if ch.queue:
            self._later(self.timing.app_start_s, lambda: self._next_app(ch))

    def _app_done_now(self, ch: Channel, app: _App) -> None:
        self._finish_app(ch, app)

    def _app_set(self, ch: Channel, app: _App) -> None:
        name, _, value = app.arg.partition("=")
        ch.variables[name.strip()] = value.strip()
        self._finish_app(ch, app)

    def _app_sleep(self, ch: Channel, app: _App) -> None:
        ms = int(app.arg) if app.arg.isdigit() else 0
        app.timer = self._later(ms / 1000, lambda: self._finish_app(ch, app))

    def _app_park(self, ch: Channel, app: _App) -> None:
        ch.running = None
        ch.app, ch.app_uuid, ch.parked = "park", app.app_uuid, True
        self._emit(ch, "CHANNEL_PARK")
        if ch.queue:  # apps sent later run inside the park loop
            self._later(self.timing.app_start_s, lambda: self._next_app(ch))

    def _app_answer(self, ch: Channel, app: _App) -> None:
        if ch.answered:
            self._finish_app(ch, app)
            return

        def answered() -> None:
            if not ch.hung_up:
                self._mark_answered(ch)
                self._finish_app(ch, app)
        app.timer = self._later(self.timing.answer_s - self.timing.app_start_s, answered)

    def _mark_answered(self, ch: Channel) -> None:
        """CHANNEL_ANSWER (a SIP call: CHANNEL_PROGRESS_MEDIA first, check5); the channel has media from now."""
        if ch.answered:
            return
        ch.has_media = True
        ch.set_media_variables()
        if ch.flavour == "sofia":
            ch.answer_state = "early"
            self._emit(ch, "CHANNEL_PROGRESS_MEDIA")
            ch.call_state = "EARLY"
        self._answer_quietly(ch)
        self._emit(ch, "CHANNEL_ANSWER")
        ch.call_state = "ACTIVE"

    def _app_playback(self, ch: Channel, app: _App) -> None:
        """A media app: it tears unicast down for good (until a fresh park)."""
        self._stop_unicast(ch, "playback")
        ch.parked = False
        self._emit(ch, "PLAYBACK_START", self._playback_pairs(app.arg))
        seconds = self._playback_seconds(app.arg)
        app.timer = self._later(seconds, lambda: self._end_playback(ch, app, "done", "FILE PLAYED"))

    @staticmethod
    def _playback_pairs(path: str, status: str = "") -> Pairs:
        pairs = [("Playback-File-Type", "tone_stream")] if path.startswith("tone_stream://") else []
        return pairs + [("Playback-File-Path", path)] + ([("Playback-Status", status)] if status else [])

    def _end_playback(self, ch: Channel, app: _App, status: str, response: str) -> None:
        if ch.running is not app:
            return
        if app.timer is not None:
            app.timer.cancel()
        self._emit(ch, "PLAYBACK_STOP", self._playback_pairs(app.arg, status))
        self._finish_app(ch, app, response)

    def _default_playback_seconds(self, path: str) -> float:
        """tone_stream ``%(on,off,...)`` × loops, silence_stream ms, a local WAV's length, else the default."""
        if path.startswith("tone_stream://"):
            loops = re.search(r"loops=(\d+)", path)
            total = sum(int(m["on"]) + int(m["off"]) for m in _TONE.finditer(path))
            return total / 1000 * (int(loops[1]) if loops else 1)
        if path.startswith("silence_stream://"):
            ms = path[len("silence_stream://"):].split(",")[0]
            return int(ms) / 1000 if ms.isdigit() else self.timing.default_playback_s
        try:
            with wave.open(path, "rb") as w:
                return w.getnframes() / w.getframerate()
        except (OSError, wave.Error, EOFError):
            return self.timing.default_playback_s

    def _api_uuid_broadcast(self, args: str) -> str:
        parts = args.split()
        ch = self._live(parts[0]) if parts else None
        if ch is None or len(parts) < 2:
            return "-ERR No such channel!\n" if parts else "-USAGE: <uuid> <path> [aleg|bleg|both]\n"
        ch.queue.append(_App("playback", parts[1], _new_uuid()))
        self._later(self.timing.broadcast_start_s, lambda: self._next_app(ch))
        return "+OK Message sent\n"

    def _api_uuid_break(self, args: str) -> str:
        parts = args.split()
        ch = self._live(parts[0]) if parts else None
        if ch is None:
            return "-ERR No such channel!\n"
        app = ch.running
        if "all" in parts[1:]:
            ch.queue = deque(a for a in ch.queue if a.name != "playback")
        if app is not None and app.name == "playback":
            if app.timer is not None:
                app.timer.cancel()
            self._later(self.timing.break_s, lambda: self._end_playback(ch, app, "break", "FILE PLAYED"))
        return "+OK\n"

    # ------------------------------------------------------------ DTMF

    def _dtmf(self, ch: Channel, digits: str, first: float, gap: float, source: str) -> None:
        for i, digit in enumerate(digits):
            self._later(first + i * gap, functools.partial(self._dtmf_digit, ch, digit, source))

    def _dtmf_digit(self, ch: Channel, digit: str, source: str) -> None:
        if ch.hung_up:
            return
        ch.dtmf.append(digit)
        if ch.eavesdrop_target:
            ch.eavesdrop_mode = digit  # 2: the agent talks to the caller, 3: three-way (not mixed here)
        self._emit(ch, "DTMF", [("DTMF-Digit", digit), ("DTMF-Duration", "2000"), ("DTMF-Source", source)])
        app = ch.running
        if app is not None and app.name == "playback" and digit in ch.variables.get("playback_terminators", ""):
            self._end_playback(ch, app, "break", "FILE PLAYED")

    def _api_uuid_recv_dtmf(self, args: str) -> str:
        uuid, _, digits = args.partition(" ")
        ch = self._live(uuid)
        if ch is None:
            return "-ERR No such channel!\n"
        self._dtmf(ch, digits.strip(), self.timing.dtmf_s, self.timing.dtmf_s, "APP")
        return f"+OK {uuid} received DTMF {digits.strip()}.\n"

    def _api_uuid_send_dtmf(self, args: str) -> str:
        uuid, _, digits = args.partition(" ")
        ch = self._live(uuid)
        if ch is None:
            return "-ERR No such channel!\n"
        far = self._live(ch.peer or ch.bridged_to)  # the digits come out at the other end
        if far is not None:
            self._dtmf(far, digits.strip(), self.timing.dtmf_s, self.timing.dtmf_s, "UNKNOWN")
        return f"+OK {uuid} sent DTMF {digits.strip()}.\n"

    # ------------------------------------------------------------ hangup

    def _hangup_now(self, ch: Channel, cause: str) -> None:
        """CHANNEL_HANGUP, the app ends, partners are released; HANGUP_COMPLETE follows (check2, check3)."""
        if ch.hung_up:
            return
        self._stop_unicast(ch, "hangup")
        ch.hung_up, ch.cause, ch.hangup_us = True, cause, _now_us()
        ch.answer_state = "hangup"
        ch.variables.update({"hangup_cause": cause, "hangup_cause_q850": "16"})
        self._emit(ch, "CHANNEL_HANGUP", lead=[("Hangup-Cause", cause)])
        if ch.stuck:  # the L16 eavesdrop trap: the call never finishes hanging up
            return
        self._abort_app(ch)
        self._end_long_app(ch)
        self._later(self.timing.hangup_complete_s, lambda: self._complete_hangup(ch))
        if ch.conn is not None and ch.conn.linger is None and not ch.conn.closed:
            ch.conn.send(format_disconnect_notice(ch.uuid))
            ch.conn.close_after_flush()
        self._release_partners(ch, cause)

    def _abort_app(self, ch: Channel) -> None:
        app, ch.running = ch.running, None
        ch.queue.clear()
        if app is None:
            return
        if app.timer is not None:
            app.timer.cancel()
        if app.name == "playback":
            self._emit(ch, "PLAYBACK_STOP", self._playback_pairs(app.arg, "done"))
        response = "PLAYBACK ERROR" if app.name == "playback" else "_none_"
        self._emit(ch, "CHANNEL_EXECUTE_COMPLETE", self._app_pairs(app.name, app.arg, app.app_uuid, response))

    def _release_partners(self, ch: Channel, cause: str) -> None:
        """Bridge partner: park (park_after_bridge) or hang up; eavesdroppers and the loopback peer hang up."""
        partner = self._live(ch.bridged_to)
        ch.bridged_to = ""
        if partner is not None:
            partner.bridged_to = ""
            self._later(self.timing.park_after_bridge_s, lambda: self._after_bridge(partner, ch, cause))
        for uuid in sorted(ch.eavesdroppers):
            agent = self._live(uuid)
            if agent is not None:  # eavesdrop ends with its target, and so does the agent's leg
                self._hangup_now(agent, cause)
        peer = self._live(ch.peer)
        if peer is not None:
            self._hangup_now(peer, cause)

    def _after_bridge(self, survivor: Channel, gone: Channel, cause: str) -> None:
        if survivor.hung_up:
            return
        a_leg = self._channels.get(survivor.bridge_a) or survivor
        bridge = [("Bridge-A-Unique-ID", survivor.bridge_a), ("Bridge-B-Unique-ID",
                  gone.uuid if survivor.bridge_a == survivor.uuid else survivor.uuid)]
        self._emit(a_leg, "CHANNEL_UNBRIDGE", lead=bridge)
        survivor.app = ""
        if survivor.variables.get("park_after_bridge") == "true":
            survivor.app, survivor.app_uuid, survivor.parked = "park", _new_uuid(), True
            self._emit(survivor, "CHANNEL_PARK")  # back in park ~21 ms after the agent left (check6)
        else:
            self._hangup_now(survivor, cause)

    def _complete_hangup(self, ch: Channel) -> None:
        self._emit(ch, "CHANNEL_STATE")
        ch.complete, ch.call_state = True, "HANGUP"
        self._emit(ch, "CHANNEL_STATE")
        self._emit(ch, "CHANNEL_HANGUP_COMPLETE", lead=[("Hangup-Cause", ch.cause)])
        conn = ch.conn
        if conn is None or conn.closed or conn.linger is None:
            return
        conn.send(format_linger_notice(ch.uuid, ch.name, conn.linger))
        if conn.linger >= 0:
            self._later(conn.linger + self.timing.linger_extra_s, lambda: self._close_conn_quietly(conn, ch))

    def _close_conn_quietly(self, conn: _Conn, ch: Channel) -> None:
        if not conn.closed:
            conn.send(format_disconnect_notice(ch.uuid))
            conn.close_after_flush()

    # ------------------------------------------------------------ bridge and transfer

    def _api_uuid_bridge(self, args: str) -> str:
        parts = args.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> <other_uuid>\n"
        a, b = self._live(parts[0]), self._live(parts[1])
        if a is None or b is None or a is b:
            return "-ERR Invalid uuid\n"
        self._later(self.timing.bridge_unpark_s, lambda: self._bridge_unpark(a, b))
        self._later(self.timing.bridge_s, lambda: self._bridge_up(a, b))
        return f"+OK {b.uuid}\n"

    def _bridge_unpark(self, a: Channel, b: Channel) -> None:
        """Both legs leave what they were doing; unicast stops (check6: CHANNEL_UNPARK ~20 ms)."""
        for leg, other in ((a, b), (b, a)):
            if leg.hung_up:
                continue
            leg.other_leg, leg.bridge_a = other.uuid, a.uuid
            self._stop_unicast(leg, "bridge")
            if leg.stuck:  # the L16 eavesdrop trap: CHANNEL_UNPARK, then nothing (check8 bridge_l16)
                self._emit(leg, "CHANNEL_UNPARK")
                leg.app, leg.parked = "", False
                continue
            was_socket = leg.app == "socket"
            self._end_long_app(leg)
            for _ in range(3 if was_socket else 0):  # the socket app returns (check6b socket side)
                self._emit(leg, "CHANNEL_STATE")

    def _bridge_up(self, a: Channel, b: Channel) -> None:
        """CHANNEL_EXECUTE uuid_bridge on both legs, CHANNEL_BRIDGE on A (check6: ~61 ms)."""
        if a.hung_up or b.hung_up or a.stuck or b.stuck:
            return
        for leg, other in ((a, b), (b, a)):
            leg.bridged_to, leg.app, leg.bridged_us = other.uuid, "uuid_bridge", _now_us()
            leg.variables.update({"bridge_uuid": other.uuid, "signal_bond": other.uuid})
            self._emit(leg, "CHANNEL_EXECUTE", self._app_pairs("uuid_bridge", "", ""))
        self._emit(a, "CHANNEL_BRIDGE", lead=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)])

    def _api_uuid_transfer(self, args: str) -> str:
        parts = [p for p in args.split() if p not in ("-bleg", "-both")]
        if len(parts) < 2:
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
        ch = self._live(parts[0])
        if ch is None:
            return "-ERR No such channel!\n"
        inline = parts[1] == "park" and parts[2:3] == ["inline"]
        self._later(self.timing.transfer_s, lambda: self._transfer(ch, inline))
        return "+OK\n"

    def _transfer(self, ch: Channel, park_inline: bool) -> None:
        """Leave the current app; park (inline) or run the dialplan's answer + park (check4 behaviour)."""
        if ch.hung_up:
            return
        self._stop_unicast(ch, "transfer")
        if ch.stuck:
            self._emit(ch, "CHANNEL_UNPARK")
            return
        partner = self._live(ch.bridged_to)
        if partner is not None:
            ch.bridged_to = partner.bridged_to = ""
            self._later(self.timing.park_after_bridge_s, lambda: self._after_bridge(partner, ch, "NORMAL_CLEARING"))
        self._abort_app(ch)
        self._end_long_app(ch)
        if not park_inline:
            app_uuid = _new_uuid()
            self._emit(ch, "CHANNEL_EXECUTE", self._app_pairs("answer", "", app_uuid))
            self._mark_answered(ch)
            self._emit(ch, "CHANNEL_EXECUTE_COMPLETE", self._app_pairs("answer", "", app_uuid, "_none_"))
        self._start_park(ch)

    # ------------------------------------------------------------ unicast

    def _unicast(self, ch: Channel, cmd: Command) -> None:
        """``sendmsg`` unicast, after its +OK: crash before answer, no-op when it cannot run, else start."""
        if not ch.answered or not ch.has_media:
            ch.unicast_log.append("crash: not answered")
            self._fatal_error(CRASH_UNICAST, ch.uuid)
            self._later(self.timing.crash_s, self._die)
            return
        reason = self._unicast_refusal(ch, cmd)
        if reason:
            ch.unicast_log.append(f"ignored: {reason}")
            return
        local = (cmd.get("local-ip", "127.0.0.1"), int(cmd.get("local-port")))
        remote = (cmd.get("remote-ip", "127.0.0.1"), int(cmd.get("remote-port")))
        media = media_format(ch.codec, ch.rate, ch.ptime_ms, native="native" in cmd.get("flags").lower())
        self._stop_unicast(ch, "replaced")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(local)
        except OSError as err:
            sock.close()
            ch.unicast_log.append(f"failed: cannot bind {local[0]}:{local[1]} ({err.strerror})")
            return
        ch.unicast = _Unicast(ch, sock, remote, media, time.monotonic() + self.timing.unicast_first_s)
        ch.unicast_log.append(f"started: {media.frame_bytes} B / {media.ptime_ms} ms to {remote[0]}:{remote[1]}")
        assert self._media is not None
        self._media.add(ch.unicast)

    def _unicast_refusal(self, ch: Channel, cmd: Command) -> str:
        """Why a unicast on an answered channel does nothing ("" if it runs)."""
        if cmd.get("transport", "udp").lower() != "udp":
            return f"transport {cmd.get('transport')} (only udp works)"
        if ch.bridged_to:
            return "bridged"
        if ch.stuck or not ch.parked or ch.running is not None or ch.app not in ("park", "socket"):
            return "not in a fresh park (after a media app, re-arm with uuid_transfer <uuid> park inline)"
        ports = (cmd.get("local-port"), cmd.get("remote-port"))
        if not all(p.isdigit() for p in ports):
            return f"bad ports {ports}"
        hosts = (cmd.get("local-ip", "127.0.0.1"), cmd.get("remote-ip", "127.0.0.1"))
        if any(h not in LOOPBACK_HOSTS for h in hosts):
            return f"the double only uses 127.0.0.1, not {hosts}"
        return ""

    def _stop_unicast(self, ch: Channel, reason: str) -> None:
        """Tear unicast down; on an eavesdropped L16 channel this wedges the call (DESIGN.md section 2)."""
        session = ch.unicast
        if session is None or not session.active:
            return
        if ch.codec == "L16" and any(self._live(u) is not None for u in ch.eavesdroppers):
            ch.stuck = True
            self._fatal_error(STUCK_L16, ch.uuid)
        session.stop(reason)
        ch.unicast_log.append(f"stopped: {reason}")
        self._changed.notify_all()

    def _die(self) -> None:
        """FreeSWITCH aborts (assert in switch_ivr_park / SIGSEGV in switch_ivr_activate_unicast)."""
        self._crashed = True
        self._shutdown()
