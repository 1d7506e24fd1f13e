"""A call leg of the FreeSWITCH test double, as tests read it: state, media, events, and what its ear heard."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from fsdouble.audio import CallerAudio, Packet, Silence, dbfs
from voicebot.esl.protocol import ChannelMedia, media_format

if TYPE_CHECKING:
    from fsdouble.media import Ticker, Unicast
    from fsdouble.wire import Conn, Outcome, Timer

Pairs = list[tuple[str, str]]


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


@dataclass(slots=True)
class App:
    """An application queued on a channel by sendmsg execute (or uuid_broadcast)."""

    name: str
    arg: str = ""
    app_uuid: str = ""
    timer: Timer | None = None  # its completion, while it runs


def now_us() -> int:
    """Wall-clock microseconds (FreeSWITCH's *-Time headers)."""
    return int(time.time() * 1_000_000)


class Channel:
    """One call leg of the double. Read it from tests; the double mutates it under its lock."""

    def __init__(self, lock: threading.RLock, uuid: str, name: str, *, direction: str, flavour: str,
                 media: ChannelMedia, number: str, destination: str, context: str) -> None:
        self._lock = lock
        self.uuid, self.name, self.direction, self.flavour = uuid, name, direction, flavour
        self.codec, self.rate, self.ptime_ms = media.codec, media.rate, media.ptime_ms
        self.number, self.destination, self.context = number, destination, context
        self.created_us = now_us()
        self.answered_us = 0
        self.hangup_us = 0
        self.bridged_us = 0
        self.answered = False
        self.answered_at: float | None = None  # monotonic s
        self.call_state = "DOWN"  # Channel-Call-State: DOWN, RINGING, EARLY, ACTIVE, HANGUP
        self.run_state = "CS_EXECUTE"  # Channel-State: the running state (CS_SOFT_EXECUTE bridged, CS_PARK after)
        self.state_number = 4  # Channel-State-Number: the state being entered (2 routing, 8 hibernate, ...)
        self.answer_state = "ringing"  # Answer-State: ringing, early, answered, hangup
        self.has_media = flavour == "loopback"
        self.cid_flipped = False  # an originated loopback A leg once its app runs: caller and callee ids swap
        self.app = ""  # the long-running app: socket, park, eavesdrop, uuid_bridge
        self.app_uuid = ""
        self.parked = False  # in a fresh park: unicast can run
        self.running: App | None = None
        self.queue: deque[App] = deque()
        self.peer = ""  # the other loopback leg
        self.bridged_to = ""
        self.other_leg = ""  # the bridge partner named in Other-Leg-* headers (kept after the bridge ends)
        self.bridge_a = ""  # the A leg of the bridge (first uuid of uuid_bridge): it gets CHANNEL_UNBRIDGE
        self.eavesdrop_target = ""
        self.eavesdroppers: set[str] = set()
        self.eavesdrop_mode = ""  # the last eavesdrop DTMF: 2 talk to the caller, 1 to the bot, 3 both, 0 listen
        self.eavesdrop_since = 0.0  # monotonic s the eavesdrop began (the agent hears from eavesdrop_ear_s later)
        self.talk_since: float | None = None  # monotonic s the agent's voice is mixed in (DTMF 1, 2 or 3)
        self.talk_pos = 0  # samples of the agent's voice mixed into the engine's frames so far
        self.agent_audio: CallerAudio | None = None  # what the agent says (agent legs: originated, loopback A)
        self.ticker: Ticker | None = None  # a bridge's media clock (both legs share it)
        self.last_written = b""  # s16le of the last frame the engine sent here, for an eavesdropper's ear
        self.hangup_when_done = False  # an originate's app or inline dialplan: hang up when its apps are done
        self.hung_up = False
        self.complete = False
        self.stuck = False
        self.cause = ""
        self.conn: Conn | None = None
        self.caller: CallerAudio = Silence()
        self.faults = MediaFaults()
        self.unicast: Unicast | None = None
        self.media_cut = False  # set by cut_media(): unicast never runs again on this channel
        self.packets_sent = 0
        self.unicast_log: list[str] = []  # "started 320 B/20 ms", "ignored: bridged", "stopped: playback", ...
        self.dtmf: list[str] = []
        self.events: list[str] = []
        self.variables: dict[str, str] = {}
        self.wire: deque[bytes] = deque()  # s16le frames written here, waiting to be read by the loopback peer
        self.originating: Outcome | None = None  # an originate waiting for this leg's answer
        self.early_app = False  # the originate returned at early media and its app runs on the unanswered leg
        self.originate_app: tuple[str, str] = ("park", "")  # what it runs once that originate returns
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
        """Every frame this leg's ear got, in order: datagrams the engine sent to its unicast ports (arrival
        times), and while bridged or eavesdropped the double's own frames (media-clock times); see ``source``."""
        with self._lock:
            return list(self._heard)

    def heard_audio(self) -> bytes:
        """What this leg's ear heard, decoded to s16le, frames in order."""
        return b"".join(p.pcm() for p in self.packets_heard())

    def ear_timeline(self) -> list[tuple[float, str, float]]:
        """``(at, source, dBFS)`` per frame heard (monotonic s; "engine", "agent", "silence", "engine+agent", ...)."""
        return [(p.at, p.source, dbfs(p.pcm())) for p in self.packets_heard()]

    def first_heard(self, source: str, after: float = 0.0, min_dbfs: float | None = None) -> float | None:
        """Time (monotonic s) of the first frame at or after ``after`` carrying ``source`` ("agent" matches
        "engine+agent"), at least ``min_dbfs`` loud if given; None if there is none yet."""
        for packet in self.packets_heard():
            if packet.at >= after and packet.has(source) and (min_dbfs is None or dbfs(packet.pcm()) >= min_dbfs):
                return packet.at
        return None

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
        if self.cid_flipped:  # check2 CHANNEL_PARK of leg A, probe check9's connect reply
            pairs += [(f"{p}-Caller-ID-Name", "Outbound Call"), (f"{p}-Caller-ID-Number", "voicebot"),
                      (f"{p}-Orig-Caller-ID-Number", self.number), (f"{p}-Callee-ID-Number", self.number)]
        else:
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
            # hanging up: the running state stays until CHANNEL_STATE CS_HANGUP (check3, check6b, check9)
            cs, number = self.run_state, "10" if self.hung_up else str(self.state_number)
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
