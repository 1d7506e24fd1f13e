"""Helpers for tests/test_real_freeswitch.py: a loopback call on a real FreeSWITCH and the caller's ear on it.

A call is ``originate {...}loopback/7001/voicebot &socket('127.0.0.1:PORT async full')``:
leg A goes to the engine under test, leg B runs extension 7001 of ``freeswitch_conf/``
(answers and parks), and is the caller's phone. :class:`Ear` arms unicast on leg B
(only once it is answered and parked: unicast before the answer crashes FreeSWITCH),
keeps what the caller hears with the kernel's arrival time of each frame, and sends
a steady stream of silence as the caller's voice (FreeSWITCH expects one).

What the ear heard is told apart frame by frame (:func:`classify`): ``agent`` is the
test agent's 1 kHz tone (extension 7010), ``tone`` another pure tone (a broadcast),
``voice`` anything else loud (the bot), ``quiet`` below -45 dBFS.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import gevent
import numpy as np

from voicebot.esl.connection import EslFailure, InboundConnection
from voicebot.esl.protocol import ChannelMedia, EslEvent, media_format
from voicebot.esl.unicast import PortPool, UnicastMedia

AGENT_HZ = 1000.0  # extension 7010's tone (vb_freq unset)
LOUD_DBFS = -45.0
TONE_SHARE = 0.7  # a frame whose power is at least this share one frequency is that tone


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll while yielding to the hub (the engine runs on it); TimeoutError names ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        gevent.sleep(0.01)


# ---------------------------------------------------------------- what a frame is


def tone_share(samples: np.ndarray, freq: float, rate: int) -> float:
    """The share (0-1) of the frame's power at ``freq`` Hz (a least-squares sine fit)."""
    x = samples.astype(np.float64)
    power = float(np.mean(x * x))
    if power <= 0:
        return 0.0
    t = np.arange(len(x)) / rate
    c, s = np.cos(2 * np.pi * freq * t), np.sin(2 * np.pi * freq * t)
    a, b = 2 * float(np.dot(x, c)) / len(x), 2 * float(np.dot(x, s)) / len(x)
    return min(1.0, (a * a + b * b) / 2 / power)


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dBFS."""
    x = samples.astype(np.float64)
    return float(20 * np.log10(np.sqrt(np.mean(x * x)) / 32768 + 1e-12)) if len(x) else -240.0


def classify(samples: np.ndarray, rate: int, tones: tuple[float, ...] = ()) -> str:
    """``quiet``, ``agent`` (the 1 kHz tone), ``tone`` (one of ``tones`` Hz) or ``voice``."""
    if level_dbfs(samples) < LOUD_DBFS:
        return "quiet"
    if tone_share(samples, AGENT_HZ, rate) >= TONE_SHARE:
        return "agent"
    if any(tone_share(samples, f, rate) >= TONE_SHARE for f in tones):
        return "tone"
    return "voice"


# ---------------------------------------------------------------- events the test watches


@dataclass
class EventLog:
    """Every event of the watcher connection with its arrival time (monotonic s), for waits and figures."""

    entries: list[tuple[float, EslEvent]] = field(default_factory=list)

    def add(self, event: EslEvent) -> None:
        self.entries.append((time.monotonic(), event))

    def find(self, name: str, uuid: str, *, after: float = 0.0,
             where: Callable[[EslEvent], bool] = lambda e: True) -> float | None:
        """Arrival time of the first ``name`` event of channel ``uuid`` after ``after``, or None."""
        for at, event in self.entries:
            if at >= after and event.name == name and event.unique_id == uuid and where(event):
                return at
        return None

    def first(self, predicate: Callable[[EslEvent], bool], after: float = 0.0) -> tuple[float, EslEvent] | None:
        """(arrival time, event) of the first event matching ``predicate`` after ``after``, or None."""
        return next(((at, e) for at, e in self.entries if at >= after and predicate(e)), None)

    def names(self, uuid: str) -> list[str]:
        """The channel's events in order (for failure messages)."""
        return [e.name + (f"({e.get('Application')})" if e.get("Application") else "")
                for _, e in self.entries if e.unique_id == uuid]


# ---------------------------------------------------------------- the call and the caller's ear


@dataclass(frozen=True)
class Heard:
    """One frame the caller heard: kernel arrival time (monotonic s) and its samples."""

    at: float
    samples: np.ndarray


class Ear:
    """Unicast on the caller's phone (leg B): frames in with arrival times, silence out."""

    def __init__(self, inbound: InboundConnection, uuid: str, media: ChannelMedia, ports: tuple[int, int]) -> None:
        self.inbound, self.uuid, self.media = inbound, uuid, media
        self.heard: list[Heard] = []
        self._unicast = UnicastMedia.open(PortPool(*ports), media, label=f"ear {uuid}")
        self._greenlets: list[gevent.Greenlet] = []

    def start(self) -> None:
        """Arm unicast on leg B (answered and parked: checked by the caller) and start both directions."""
        pair = self._unicast.ports
        assert pair is not None
        self.inbound.unicast(self.uuid, "127.0.0.1", pair.local, "127.0.0.1", pair.remote)
        silence = bytes(self.media.frame_bytes)
        self._greenlets = [gevent.spawn(self._receive), gevent.spawn(self._unicast.send_loop, lambda _t: silence)]

    def _receive(self) -> None:
        for frame in self._unicast.frames():
            self.heard.append(Heard(frame.captured_at, frame.to_array()))

    def close(self) -> None:
        gevent.killall(self._greenlets, timeout=1)
        self._unicast.close()

    def kinds(self, tones: tuple[float, ...] = ()) -> list[tuple[float, str]]:
        """(arrival time, kind) of every frame heard so far (see :func:`classify`)."""
        return [(h.at, classify(h.samples, self.media.rate, tones)) for h in self.heard]

    def first(self, kind: str, after: float = 0.0, tones: tuple[float, ...] = ()) -> float | None:
        """Arrival time of the first frame of ``kind`` heard after ``after``."""
        return next((at for at, k in self.kinds(tones) if k == kind and at >= after), None)

    def max_interval(self, start: float, end: float) -> float:
        """The longest time (s) between two frames arriving within [start, end]: a hole in the stream."""
        times = [h.at for h in self.heard if start <= h.at <= end]
        return max(np.diff(times), default=float("inf")) if len(times) > 1 else float("inf")

    def share(self, kind: str, start: float, end: float, tones: tuple[float, ...] = ()) -> float:
        """The share of frames of ``kind`` among those that arrived within [start, end]."""
        kinds = [k for at, k in self.kinds(tones) if start <= at <= end]
        return kinds.count(kind) / len(kinds) if kinds else 0.0


@dataclass
class LoopbackCall:
    """A test call: ``a`` the engine's leg, ``b`` the caller's phone, ``ear`` on ``b``."""

    a: str
    b: str
    ear: Ear


def originate_socket_app(port: int) -> str:
    """The socket app of an originate, quoted so that FreeSWITCH does not split it (async full)."""
    return f"&socket('127.0.0.1:{port} async full')"


@contextlib.contextmanager
def loopback_call(inbound: InboundConnection, log: EventLog, engine_port: int, ear_ports: tuple[int, int],
                  variables: dict[str, str] | None = None) -> Iterator[LoopbackCall]:
    """Call the engine from loopback extension 7001 and put the ear on the caller's phone; hang up at the end."""
    a = str(uuidlib.uuid4())
    pairs = ["loopback_bowout=false", *(f"vb_var_{k}={v}" for k, v in (variables or {}).items())]
    inbound.originate("{" + ",".join(pairs) + "}loopback/7001/voicebot", originate_socket_app(engine_port), uuid=a)
    b = _getvar(inbound, a, "other_loopback_leg_uuid")
    assert b, f"leg A {a} names no other loopback leg"
    wait(lambda: log.find("CHANNEL_PARK", b) is not None, 5, f"the caller's phone {b} answers and parks")
    codec, rate = _getvar(inbound, b, "read_codec"), _getvar(inbound, b, "read_rate")
    assert codec in ("PCMU", "PCMA"), (
        f"the loopback legs run {codec or '?'}: eavesdrop with unicast is only safe on G.711; set "
        "loopback_initial_codec=PCMU@8000h@20i (freeswitch_conf/README.md)")
    ear = Ear(inbound, b, media_format(codec, int(rate), 20), ear_ports)
    try:
        ear.start()
        yield LoopbackCall(a, b, ear)
    finally:
        ear.close()
        for leg in (b, a):
            with contextlib.suppress(EslFailure):
                inbound.uuid_kill(leg, "NORMAL_CLEARING", timeout=2.0)


def _getvar(inbound: InboundConnection, uuid: str, name: str) -> str:
    value = inbound.api(f"uuid_getvar {uuid} {name}").strip()
    return "" if value in ("_undef_", "") or value.startswith("-ERR") else value
