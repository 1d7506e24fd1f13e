"""The FreeSWITCH test double's media clock: unicast UDP sessions and socketless tickers, paced by one thread.

A :class:`Unicast` is FreeSWITCH's side of one ``unicast`` session: every ptime it sends what the channel
reads (its caller, its loopback peer) and it records what the engine sends back. A :class:`Ticker` is a
media clock without a socket (a bridge feeding both ears). :class:`MediaLoop` paces them all on the
double's own clock (``time.monotonic``), whatever the test process is doing.
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from fsdouble.audio import Packet
from fsdouble.channel import Channel
from voicebot.audio.codecs import encode
from voicebot.esl.protocol import ChannelMedia

SO_TIMESTAMPNS = 35  # Linux (asm-generic): the kernel stamps each datagram's arrival; the socket module lacks it


def kernel_timestamps(sock: socket.socket) -> bool:
    """Ask the kernel for each datagram's arrival time (Linux); False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def realtime_offset() -> float:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC (s), read between two realtime reads: the tightest of three brackets,
    so a preemption between the reads cannot skew it."""
    width, offset = float("inf"), 0.0
    for _ in range(3):
        before, mono, after = time.time(), time.monotonic(), time.time()
        if after - before < width:
            width, offset = after - before, (before + after) / 2 - mono
        if width < 20e-6:
            break
    return offset


def arrival(ancillary: list[tuple[int, int, bytes]]) -> float:
    """When a datagram reached the socket (monotonic s): the kernel's stamp (CLOCK_REALTIME, moved onto the
    monotonic clock), else now. A busy media loop then does not bunch or delay what the ear records."""
    mono = time.monotonic()
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return min(mono, float(sec) + float(nsec) / 1e9 - realtime_offset())
    return mono


class Paced(Protocol):
    """What the media loop runs: due at ``next_at``, with a socket to read from (or None)."""

    @property
    def active(self) -> bool:
        """False once stopped."""

    @property
    def next_at(self) -> float:
        """When it is next due (monotonic s)."""

    @property
    def sock(self) -> socket.socket | None:
        """The UDP socket to watch, if any."""

    def send_due(self, now: float) -> None:
        """Do everything due by ``now``."""

    def receive(self) -> None:
        """Read one datagram from ``sock``."""

    def stop(self, reason: str) -> None:
        """Stop for good."""


class Ticker:
    """A media clock with no socket: ``tick(ticker, at)`` every ``period`` s from ``first_at`` (``at`` on the grid)."""

    sock: socket.socket | None = None

    def __init__(self, first_at: float, period: float, tick: Callable[[Ticker, float], None]) -> None:
        self.next_at = first_at
        self.period = period
        self.active = True
        self._tick = tick

    def send_due(self, now: float) -> None:
        """Every tick due by ``now``, in order."""
        while self.active and self.next_at <= now:
            self._tick(self, self.next_at)
            self.next_at += self.period

    def receive(self) -> None:
        """Nothing to read."""

    def stop(self, reason: str = "") -> None:
        """No more ticks."""
        self.active = False


class Unicast:
    """One ``unicast`` session: FreeSWITCH's side of the UDP pair (it binds ``local-port``)."""

    def __init__(self, channel: Channel, sock: socket.socket, remote: tuple[str, int], media: ChannelMedia,
                 first_at: float, read: Callable[[Channel, float, int], bytes],
                 heard: Callable[[Channel, Packet], None]) -> None:
        self.channel = channel
        self.sock = sock
        self.remote = remote
        self.media = media
        self.next_at = first_at
        self._read = read  # (channel, at, samples) → s16le to send: what the channel reads at ``at``
        self._heard = heard  # a datagram from the remote end: record it (mix, pass over a loopback pair)
        self.seq = 0
        self.active = True
        self.reason = ""
        self._held: bytes | None = None  # a datagram held back to reorder
        self._rng = random.Random(channel.faults.seed)
        self._stamped = kernel_timestamps(sock)

    def stop(self, reason: str) -> None:
        """Tear down silently, as FreeSWITCH does (no event)."""
        if self.active:
            self.active, self.reason = False, reason
            with contextlib.suppress(OSError):
                self.sock.close()

    def caller_frame(self) -> bytes:
        """The caller's next datagram, in the wire format."""
        media, ch = self.media, self.channel
        pcm = bytes(2 * media.samples_per_frame) if ch.faults.silence else \
            self._read(ch, self.next_at, media.samples_per_frame)
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
            data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(16) if self._stamped else 0)
        except OSError:
            return
        media = self.media
        self._heard(self.channel, Packet(arrival(ancillary), data, media.wire_codec, media.rate))


class MediaLoop:
    """One thread for every unicast session and ticker: select() for arrivals, a shared clock for departures."""

    def __init__(self, lock: threading.RLock, changed: threading.Condition,
                 on_error: Callable[[BaseException], None]) -> None:
        self._lock = lock
        self._changed = changed
        self._on_error = on_error
        self._sessions: list[Paced] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._running = True
        self._thread = threading.Thread(target=self._run, name="fsdouble-media", daemon=True)
        self._thread.start()

    def add(self, session: Paced) -> None:
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

    def _snapshot(self) -> list[Paced]:
        with self._lock:
            self._sessions = [s for s in self._sessions if s.active]
            return list(self._sessions)

    def _run(self) -> None:
        while self._running:
            sessions = self._snapshot()
            now = time.monotonic()
            timeout = max(0.0, min((s.next_at for s in sessions), default=now + 0.5) - now)
            socks = {s.sock: s for s in sessions if s.sock is not None}
            try:
                readable, _, _ = select.select([self._wake_r, *socks], [], [], timeout)
            except (OSError, ValueError):  # a session closed under us: take a new snapshot
                continue
            try:
                self._service(readable, socks, sessions)
            except Exception as err:  # e.g. a caller-audio callback failed: report it, keep the clock
                for session in sessions:
                    session.stop("error")
                self._on_error(err)

    def _service(self, readable: list[Any], socks: dict[socket.socket, Paced], sessions: list[Paced]) -> None:
        with self._lock:
            for sock in readable:
                if sock is self._wake_r:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                elif socks[sock].active:
                    socks[sock].receive()
            now = time.monotonic()
            for session in sessions:
                session.send_due(now)
            self._changed.notify_all()
