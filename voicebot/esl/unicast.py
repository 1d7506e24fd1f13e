"""Unicast media over UDP: caller frames in, bot frames out on a media clock, one port pair per call.

Rules
1. Ports: each call takes a :class:`PortPair` from a :class:`PortPool` over a
   configured range: ``local`` is FreeSWITCH's side (the ``local-port`` of
   ``sendmsg unicast``: FreeSWITCH binds it and sends from it), ``remote`` is
   ours (``remote-port``: :class:`UnicastMedia` binds it). Released pairs go to
   the back of the line, so a port is reused as late as possible (a stray
   datagram of the last call does not land in the next one). :meth:`UnicastMedia.close`
   releases its pair; call it on hang-up.
2. Format: the frame size comes from the channel (:class:`ChannelMedia`: s16le at
   the read rate, or G.711 bytes with ``flags: native``) and is checked against
   what arrives. A datagram of another size that is a whole frame at a usual
   ptime (10-60 ms) counts as ``mismatched``; three in a row of one such size
   are adopted (``unicast.frame_size_mismatch`` with expected/seen, e.g. 480
   bytes = 30 ms at 8 kHz), and the sender follows. Any other size is
   ``garbage`` and dropped, as is anything not from FreeSWITCH's port (``foreign``).
3. What raw unicast lets us see: datagrams carry no sequence number or
   timestamp. A *duplicate* is detected only as the same payload as the previous
   datagram arriving within a quarter frame of it (copies travel back to back;
   real frames are a frame apart, so a repeated silence or a steady tone is not
   mistaken for one). *Reordering* cannot be detected: frames pass in arrival
   order. *Loss* cannot be told from late arrival: a gap over 1.5 frames counts
   in ``gaps`` and ``est_lost``, and no silence is invented. Arrival times are
   the kernel's (SO_TIMESTAMPNS, Linux) so a busy event loop does not bunch them.
4. Sending: :meth:`UnicastMedia.send_loop` asks ``next_frame(t)`` for one frame
   per ptime on an absolute schedule ``t_k = t0 + k·ptime`` (no drift), and sends
   it at once: nothing is queued ahead in the engine, so when the bot stops
   (barge-in) the caller stops hearing it within a frame. Late by more than a
   frame, it skips the missed slots (``late_frames``). ``None`` sends silence:
   FreeSWITCH expects a steady stream, and an eavesdropping agent is heard only
   while the bot keeps sending (docs/freeswitch.md). Every stream of the
   process is paced by one :class:`SendClock`, a native thread (not the gevent
   hub: a busy hub no longer delays any call's frames), on a shared 20 ms grid
   (one wake per tick for all calls); it sends on its own duplicate of the
   stream's socket, so sending needs nothing of the hub. :data:`SEND_LATENESS`
   counts how late each frame left, over the process.
5. Stalls: unicast dies silently (a ptime change, a media app). :meth:`stalled`
   is true when nothing *arrived* for ``threshold`` s since the last packet or
   the last (re-)arm: arrival times are the kernel's, and a datagram waiting
   unread in the socket (:meth:`waiting`) means the engine is behind, not the
   stream, so a busy engine never takes itself for a stalled FreeSWITCH.
   :func:`voicebot.esl.stall.watch_stall` re-arms with backoff and a cap.
"""

from __future__ import annotations

import _socket
import contextlib
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import gevent.socket
import numpy as np

from voicebot.audio.codecs import decode, encode
from voicebot.audio.frame import AudioFrame
from voicebot.esl.ports import PortPair as PortPair
from voicebot.esl.ports import PortPool as PortPool
from voicebot.esl.ports import PortsExhausted as PortsExhausted
from voicebot.esl.protocol import ChannelMedia, media_format
from voicebot.esl.sendclock import SEND_LATENESS, SendClock
from voicebot.logs import get_logger

PLAUSIBLE_PTIMES_MS = (10, 20, 30, 40, 60)
ADOPT_AFTER = 3  # datagrams in a row of one new, plausible size before it is adopted
_SO_TIMESTAMPNS = 35  # Linux (asm-generic); the socket module does not export it
_RECV_BYTES = 8192  # larger than any frame (60 ms of 48 kHz s16le is 5,760 bytes); bigger datagrams are garbage anyway
_JITTER_WINDOW = 3000  # send lateness samples kept for percentiles (one minute at 20 ms)


def _log() -> Any:
    return get_logger("unicast")


# ---------------------------------------------------------------- metrics


@dataclass(frozen=True, slots=True)
class UnicastStats:
    """Counters of one unicast stream (rule 3 says what each can and cannot see)."""

    packets_in: int
    frames_in: int
    garbage: int
    foreign: int
    mismatched: int
    duplicates: int
    gaps: int
    est_lost: int
    packets_out: int
    silence_out: int
    resized_out: int
    late_frames: int
    stalls: int
    max_send_jitter_ms: float
    p95_send_jitter_ms: float


def _plausible_ptime(size: int, media: ChannelMedia) -> int | None:
    """The ptime (ms) for which ``size`` bytes is one whole frame of ``media``'s format, if a usual one."""
    width = 1 if media.wire_codec in ("PCMU", "PCMA") else 2
    per_ms = media.rate * width // 1000
    if per_ms <= 0 or size <= 0 or size % per_ms:
        return None
    ptime = size // per_ms
    return ptime if ptime in PLAUSIBLE_PTIMES_MS else None


def _kernel_timestamps(sock: Any) -> bool:
    """Ask for SO_TIMESTAMPNS arrival times (Linux only); False if unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


# ---------------------------------------------------------------- one stream


class UnicastMedia:
    """One call's unicast UDP stream (a gevent socket): receive caller frames, send bot frames.

    ``media``: the channel's frame format; ``bind_port``: ours (remote-port);
    ``peer_port``: FreeSWITCH's (local-port). ``pool``/``ports``: given by
    :meth:`open`, released by :meth:`close`.
    """

    def __init__(self, media: ChannelMedia, bind_port: int, peer_port: int, *, host: str = "127.0.0.1",
                 peer_host: str | None = None, pool: PortPool | None = None, ports: PortPair | None = None,
                 label: str = "") -> None:
        self.media = media
        self.peer = (peer_host or host, peer_port)
        self.label = label
        self.closed = False
        self.pool, self.ports = pool, ports
        self.last_packet_at: float | None = None  # monotonic s of the last accepted frame
        self.armed_at = time.monotonic()
        self._sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((host, bind_port))
        except OSError:
            self._sock.close()
            raise
        self._kernel_ts = _kernel_timestamps(self._sock)
        self._closed_event: gevent.event.Event | None = None  # wakes deliver() on close
        self._seq = 0
        self._last_payload = b""
        self._last_at = -1.0
        self._candidate = (0, 0)  # (size, datagrams in a row) of a plausible size other than the expected one
        self.odd_frame: tuple[int, int] | None = None  # (bytes, ptime ms) of the last such datagram, until adopted
        self._jitter: deque[float] = deque(maxlen=_JITTER_WINDOW)
        self._max_jitter = 0.0
        self._counts = dict.fromkeys(("packets_in", "frames_in", "garbage", "foreign", "mismatched", "duplicates",
                                      "gaps", "est_lost", "packets_out", "silence_out", "resized_out",
                                      "late_frames", "stalls"), 0)

    @classmethod
    def open(cls, pool: PortPool, media: ChannelMedia, *, host: str = "127.0.0.1", label: str = "",
             attempts: int = 8) -> UnicastMedia:
        """Take a pair from ``pool`` and bind ours; a pair whose port is taken goes back and the next is tried."""
        error: OSError | None = None
        for _ in range(max(1, attempts)):
            pair = pool.allocate()
            try:
                return cls(media, pair.remote, pair.local, host=host, pool=pool, ports=pair, label=label)
            except OSError as err:
                pool.release(pair)
                error = err
        raise PortsExhausted(f"no bindable unicast port after {attempts} tries: {error}")

    # ------------------------------------------------------------ state

    @property
    def bound_port(self) -> int:
        """Our UDP port."""
        return int(self._sock.getsockname()[1])

    def stats(self) -> UnicastStats:
        """A snapshot of the counters."""
        jitter = list(self._jitter)  # one C call: the clock's thread may append meanwhile
        p95 = float(np.percentile(np.asarray(jitter), 95)) * 1000 if jitter else 0.0
        return UnicastStats(**self._counts, max_send_jitter_ms=self._max_jitter * 1000, p95_send_jitter_ms=p95)

    def armed(self, now: float | None = None) -> None:
        """Unicast was (re-)armed now: the stall clock restarts."""
        self.armed_at = time.monotonic() if now is None else now

    def stalled(self, now: float | None = None, threshold: float = 0.2) -> bool:
        """True if nothing arrived for ``threshold`` s since the last frame or the last arm, and nothing waits
        unread in the socket (rule 5)."""
        now = time.monotonic() if now is None else now
        since = max(self.armed_at, self.last_packet_at or 0.0)
        return not self.closed and now - since > threshold and not self.waiting()

    def waiting(self) -> bool:
        """True if a datagram has arrived and waits unread in the socket (a peek: nothing is consumed)."""
        if self.closed:
            return False
        try:
            self._sock._sock.recv(1, socket.MSG_PEEK)
        except OSError:  # empty (EAGAIN), or an ICMP error reported (and cleared): nothing is known to wait
            return False
        return True

    def count_stall(self) -> None:
        """One more stall (for :meth:`stats`)."""
        self._counts["stalls"] += 1

    def close(self) -> None:
        """Close the socket (ends :meth:`frames`, :meth:`deliver` and :meth:`send_loop`) and release the port pair."""
        if self.closed:
            return
        self.closed = True
        if self._closed_event is not None:
            self._closed_event.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        if self.pool is not None and self.ports is not None:
            self.pool.release(self.ports)

    # ------------------------------------------------------------ receiving

    def recv(self, timeout: float | None = None) -> AudioFrame | None:
        """The caller's next frame; None after ``timeout`` s or once closed."""
        timer = gevent.Timeout(timeout) if timeout is not None else None
        if timer is not None:
            timer.start()
        try:
            while not self.closed:
                data, addr, at = self._read()
                if data is None:
                    continue
                frame = self.ingest(data, addr, at)
                if frame is not None:
                    return frame
            return None
        except gevent.Timeout as err:
            if err is not timer:
                raise
            return None
        finally:
            if timer is not None:
                timer.close()

    def frames(self) -> Iterator[AudioFrame]:
        """Caller frames as they arrive, until :meth:`close`."""
        while (frame := self.recv()) is not None:
            yield frame

    def deliver(self, on_frame: Callable[[AudioFrame], None]) -> None:
        """Hand each caller frame to ``on_frame`` as it arrives, until :meth:`close`; the alternative to :meth:`frames`.

        The datagrams are read by an I/O watcher callback on the hub's loop: no
        greenlet wakes per frame (with 50 calls, 2,500 switches a second fewer).
        ``on_frame`` runs on the hub: it must not block (``SessionThread.caller``
        only queues). Run this in its own greenlet (it waits there); killing that
        greenlet stops the delivery. What ``on_frame`` raises is raised here.
        """
        done = gevent.event.Event()
        failure: list[BaseException] = []
        watcher = gevent.get_hub().loop.io(self._sock.fileno(), 1)  # 1: EV_READ / UV_READABLE

        def readable() -> None:
            try:
                while not self.closed and (got := self._read_nowait()) is not None:
                    frame = self.ingest(*got)
                    if frame is not None:
                        on_frame(frame)
            except Exception as err:  # the consumer failed: stop delivering, report it in deliver()
                failure.append(err)
                done.set()
            if self.closed:
                done.set()

        self._closed_event = done
        watcher.start(readable)
        try:
            readable()  # what arrived before the watcher started
            done.wait()
        finally:
            watcher.stop()
            watcher.close()
        if failure:
            raise failure[0]

    def _read_nowait(self) -> tuple[bytes, Any, float] | None:
        """One waiting datagram (data, sender, arrival), or None when none is waiting or the socket is gone.

        Reads the OS socket under gevent's (non-blocking, so an empty queue raises at once).
        """
        raw = self._sock._sock
        for _ in range(4):  # an ICMP error queued on the socket is reported once: read again
            try:
                if self._kernel_ts:
                    data, ancillary, _, addr = raw.recvmsg(_RECV_BYTES, socket.CMSG_SPACE(16))
                    return data, addr, _arrival(ancillary)
                data, addr = raw.recvfrom(_RECV_BYTES)
                return data, addr, time.monotonic()
            except (BlockingIOError, InterruptedError):
                return None
            except OSError:
                if self.closed:
                    return None
        return None

    def _read(self) -> tuple[bytes | None, Any, float]:
        try:
            if self._kernel_ts:
                data, ancillary, _, addr = self._sock.recvmsg(_RECV_BYTES, socket.CMSG_SPACE(16))
                return data, addr, _arrival(ancillary)
            data, addr = self._sock.recvfrom(_RECV_BYTES)
            return data, addr, time.monotonic()
        except OSError:  # closed under us, or an ICMP error reported on the socket
            if not self.closed:
                gevent.sleep(0)
            return None, None, 0.0

    def ingest(self, data: bytes, addr: Any, at: float) -> AudioFrame | None:
        """One datagram that arrived at ``at`` (monotonic s) → a caller frame, or None if dropped (rules 2, 3)."""
        counts = self._counts
        counts["packets_in"] += 1
        if tuple(addr) != self.peer:
            counts["foreign"] += 1
            return None
        if not self._size_ok(len(data)):
            return None
        if data == self._last_payload and at - self._last_at < self.media.ptime_ms / 4000:
            counts["duplicates"] += 1
            return None
        self._note_gap(at)
        self._last_payload, self._last_at, self.last_packet_at = data, at, at
        frame = AudioFrame(decode(data, self.media.wire_codec), self.media.rate, self._seq, at)
        self._seq += 1
        counts["frames_in"] += 1
        return frame

    def _size_ok(self, size: int) -> bool:
        if size == self.media.frame_bytes:
            self._candidate = (0, 0)
            return True
        ptime = _plausible_ptime(size, self.media)
        if ptime is None:
            self._counts["garbage"] += 1
            return False
        self._counts["mismatched"] += 1
        self.odd_frame = (size, ptime)
        seen = self._candidate[1] + 1 if self._candidate[0] == size else 1
        self._candidate = (size, seen)
        if seen < ADOPT_AFTER:
            return False
        self._adopt(size, ptime)
        return True

    def _adopt(self, size: int, ptime: int) -> None:
        old = self.media
        self.media = media_format(old.codec, old.rate, ptime, native=old.native)
        self._candidate, self.odd_frame = (0, 0), None
        _log().warning("unicast.frame_size_mismatch", stream=self.label, expected=old.frame_bytes, seen=size,
                       ptime_ms=ptime, adapted=True)

    def _note_gap(self, at: float) -> None:
        if self._last_at < 0:
            return
        frames = (at - self._last_at) * 1000 / self.media.ptime_ms
        if frames > 1.5:
            self._counts["gaps"] += 1
            self._counts["est_lost"] += max(0, round(frames) - 1)

    # ------------------------------------------------------------ sending

    def send_loop(self, next_frame: Callable[[float], bytes | None], *, start_at: float | None = None) -> None:
        """Send one frame per ptime until :meth:`close` (rule 4); run it in its own greenlet.

        ``next_frame(t)`` is called once per frame with its scheduled time ``t``
        (monotonic s) and returns s16le at ``media.rate``, ``media.samples_per_frame``
        samples (shorter is padded, longer cut and counted), or None for silence.
        It runs on the :class:`SendClock`'s native thread: it must not block nor
        touch gevent objects (hand results to the hub with a
        :class:`~voicebot.esl.sendclock.HubSignal`). This greenlet only waits;
        killing it stops the stream's sending (``next_frame`` is not called once
        it has died). ``start_at``: the first slot (default: the clock's next
        20 ms tick, shared by every stream). What ``next_frame`` raises is raised here.
        """
        if self.closed:
            return
        SendClock.process().run(_Sender(self, next_frame, start_at))

    def _outgoing(self, pcm: bytes | None, media: ChannelMedia) -> bytes:
        want = 2 * media.samples_per_frame
        if pcm is None:
            self._counts["silence_out"] += 1
            pcm = bytes(want)
        elif len(pcm) != want:
            self._counts["resized_out"] += 1
            if self._counts["resized_out"] == 1:
                _log().warning("unicast.send_frame_size", stream=self.label, expected=want, got=len(pcm))
            pcm = pcm[:want].ljust(want, b"\0")
        return encode(pcm, media.wire_codec)

    def _send_socket(self) -> Any:
        """A duplicate of our socket for the send clock's thread: a plain ``_socket`` (never gevent's), the same
        port, non-blocking (the flag is shared with the hub's socket). Closing either leaves the other open."""
        sock = _socket.socket(fileno=_socket.dup(self._sock.fileno()))
        sock.setblocking(False)
        return sock

    def _send(self, sock: Any, payload: bytes, late: float) -> None:
        """(The send clock's thread) one frame out now; a full send buffer or a closed peer drops it."""
        try:
            sock.sendto(payload, self.peer)
        except OSError:
            return
        self._counts["packets_out"] += 1
        self._jitter.append(late)
        self._max_jitter = max(self._max_jitter, late)
        SEND_LATENESS.add(late)


class _Sender:
    """One stream's schedule on the shared clock: slot k is due at ``t0 + k·ptime``."""

    def __init__(self, media: UnicastMedia, next_frame: Callable[[float], bytes | None], t0: float | None) -> None:
        self.media, self.next_frame, self.fmt = media, next_frame, media.media
        self.t0, self.k = t0, 0  # t0 None: placed on the clock's grid when added
        self.sock = media._send_socket()

    @property
    def target(self) -> float:
        """When the next slot is due (monotonic s)."""
        assert self.t0 is not None
        return self.t0 + self.k * self.fmt.ptime_ms / 1000

    @property
    def period(self) -> float:
        """Seconds between slots (the stream's ptime)."""
        return self.fmt.ptime_ms / 1000

    @property
    def closed(self) -> bool:
        """True once the stream is closed."""
        return self.media.closed

    def fire(self) -> None:
        """Send the slot that is due (skipping slots missed by more than a frame)."""
        media = self.media
        if media.media is not self.fmt:  # adopted a new ptime: restart the schedule from here
            self.t0, self.k, self.fmt = self.target, 0, media.media
        period = self.fmt.ptime_ms / 1000
        target = self.target
        late = time.monotonic() - target
        if late > period:
            skipped = int(late // period)
            media._counts["late_frames"] += skipped
            SEND_LATENESS.skip(skipped)
            self.k += skipped
            target = self.target
            late = time.monotonic() - target
        media._send(self.sock, media._outgoing(self.next_frame(target), self.fmt), late)
        self.k += 1

    def release(self) -> None:
        """The clock is done with this stream: close the sending socket."""
        with contextlib.suppress(OSError):
            self.sock.close()


def _arrival(ancillary: list[tuple[int, int, bytes]]) -> float:
    """A kernel timestamp (CLOCK_REALTIME) as monotonic seconds; now if there is none."""
    mono, real = time.monotonic(), time.time()
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return min(mono, mono - (real - (float(sec) + float(nsec) / 1e9)))
    return mono
