"""A stalled unicast stream: when to re-arm it, when to give up, and which trap most likely killed it.

Rules
1. A stream is stalled when nothing *arrived* for ``threshold`` s on a live
   channel (:meth:`~voicebot.esl.unicast.UnicastMedia.stalled`: arrival times
   are the kernel's, and a datagram still waiting unread in the socket means
   the engine is behind, not FreeSWITCH).
   The operator's settings (config ``media.stall_s`` and ``media.rearm_*``,
   docs/configuration.md) reach the watch as one :class:`RearmSettings`.
2. :class:`RearmPolicy` (sans-I/O: ``now`` in, a decision out) re-arms at
   once on a first stall, then backs off (0.25 s doubling to 2 s, counted from
   the last re-arm) while re-arms do not bring the stream back. It gives up
   after :data:`REARM_MAX_FAILED` re-arms in a row that brought no packet, or
   :data:`REARM_MAX_PER_WINDOW` re-arms within :data:`REARM_WINDOW_S` (a trap
   that fires again after every re-arm). A stream that flowed again since the
   last re-arm resets the backoff.
3. Giving up hangs the call up (the driver: cause ``media_lost``) with one log
   line, ``unicast.media_lost``, that names the likely trap from what the
   engine can see (:func:`likely_trap`): a media application run on the
   channel (CHANNEL_EXECUTE of playback...), a codec change (the channel's
   codec headers), a ptime change (FreeSWITCH's ``rtp_h_X-Broken-PTIME``, or
   datagrams of another plausible frame size before the stall). docs/freeswitch.md
   tells the traps.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

import gevent

from voicebot.esl.protocol import ChannelMedia
from voicebot.logs import get_logger

if TYPE_CHECKING:
    from voicebot.esl.outbound import OutboundCall
    from voicebot.esl.unicast import UnicastMedia

STALL_S = 0.2  # nothing arrived for this long on a live channel: the stream is stalled (s; config media.stall_s)
REARM_BACKOFF_INITIAL_S = 0.25  # wait after a re-arm that did not bring the stream back, doubling...
REARM_BACKOFF_MAX_S = 2.0  # ...up to this
REARM_MAX_FAILED = 5  # re-arms in a row with no packet after them before the call is given up (~4 s of silence)
REARM_MAX_PER_WINDOW = 10  # re-arms within REARM_WINDOW_S before giving up, even if each briefly worked
REARM_WINDOW_S = 60.0
# Applications that tear unicast down when they run on the channel (docs/freeswitch.md)
MEDIA_APPS = frozenset({"playback", "speak", "say", "record", "record_session", "displace_session", "gentones",
                        "play_and_get_digits", "playback_and_detect_speech", "endless_playback", "broadcast"})
_PTIME_VARIABLE = "rtp_h_X-Broken-PTIME"  # FreeSWITCH sets it when the peer sends another ptime than advertised


def _log() -> Any:
    return get_logger("unicast")


class Decision(Enum):
    """What to do about a stall now."""

    REARM = "rearm"
    WAIT = "wait"  # backing off
    GIVE_UP = "give_up"


@dataclass
class RearmPolicy:
    """Backoff and caps of re-arms for one call (rule 2). Times are monotonic seconds."""

    max_failed: int = REARM_MAX_FAILED
    max_per_window: int = REARM_MAX_PER_WINDOW
    window_s: float = REARM_WINDOW_S
    backoff_initial_s: float = REARM_BACKOFF_INITIAL_S
    backoff_max_s: float = REARM_BACKOFF_MAX_S
    failed: int = 0  # re-arms since the stream last flowed
    recent: deque[float] = field(default_factory=deque)  # when the re-arms of the window were made
    next_at: float = 0.0
    reason: str = ""  # why it gave up

    def on_stall(self, now: float, flowed: bool) -> Decision:
        """The stream is stalled at ``now``; ``flowed``: packets arrived after the last re-arm."""
        if flowed:
            self.failed, self.next_at = 0, 0.0
        while self.recent and now - self.recent[0] > self.window_s:
            self.recent.popleft()
        if self.failed >= self.max_failed:
            self.reason = f"{self.failed} re-arms in a row brought no packet"
            return Decision.GIVE_UP
        if len(self.recent) >= self.max_per_window:
            self.reason = f"{len(self.recent)} re-arms within {self.window_s:g} s"
            return Decision.GIVE_UP
        return Decision.WAIT if now < self.next_at else Decision.REARM

    def rearmed(self, now: float) -> None:
        """A re-arm was made (or tried) at ``now``: it counts as failed until packets flow again."""
        self.recent.append(now)
        self.failed += 1
        self.next_at = now + min(self.backoff_max_s, self.backoff_initial_s * 2 ** (self.failed - 1))


@dataclass(frozen=True)
class RearmSettings:
    """The stall watch's settings for every call (config ``media.*``; the defaults are this module's constants)."""

    stall_s: float = STALL_S
    backoff_initial_s: float = REARM_BACKOFF_INITIAL_S
    backoff_max_s: float = REARM_BACKOFF_MAX_S
    max_failed: int = REARM_MAX_FAILED
    max_per_window: int = REARM_MAX_PER_WINDOW
    window_s: float = REARM_WINDOW_S

    def policy(self) -> RearmPolicy:
        """A fresh policy for one call."""
        return RearmPolicy(max_failed=self.max_failed, max_per_window=self.max_per_window, window_s=self.window_s,
                           backoff_initial_s=self.backoff_initial_s, backoff_max_s=self.backoff_max_s)


# ---------------------------------------------------------------- which trap


@dataclass(frozen=True, slots=True)
class StallEvidence:
    """What the engine saw around a stall (rule 3)."""

    stream: ChannelMedia  # the format the stream had
    channel: ChannelMedia | None = None  # the channel's codec now, from its events' headers
    media_app: str = ""  # a media application run on the channel since the stream last flowed
    odd_frame: tuple[int, int] | None = None  # (bytes, ptime ms) of datagrams of another plausible size
    broken_ptime: str = ""  # FreeSWITCH's rtp_h_X-Broken-PTIME ("Adv=20;Sent=30"), if set


def likely_trap(seen: StallEvidence) -> tuple[str, str]:
    """(trap, explanation): ``media_app``, ``codec_change``, ``ptime_change`` or ``unknown``."""
    stream, channel = seen.stream, seen.channel
    if seen.media_app:
        return "media_app", (f"{seen.media_app} ran on the channel: a media application tears unicast down "
                             "(keep media apps off calls the engine streams)")
    if channel is not None and (channel.codec, channel.rate) != (stream.codec, stream.rate):
        return "codec_change", (f"the channel's codec changed from {stream.codec}@{stream.rate} to "
                                f"{channel.codec}@{channel.rate} (a re-INVITE): unicast does not survive it")
    if seen.broken_ptime or seen.odd_frame or (channel is not None and channel.ptime_ms != stream.ptime_ms):
        sent = seen.broken_ptime or (f"{seen.odd_frame[1]} ms frames arrived" if seen.odd_frame else
                                     f"the channel now runs at {channel.ptime_ms if channel else '?'} ms")
        return "ptime_change", (f"the SIP peer changed ptime from {stream.ptime_ms} ms ({sent}): set a=ptime on "
                                "the trunk (docs/freeswitch.md)")
    return "unknown", "no media application, codec or ptime change seen: check FreeSWITCH's log for the channel"


def stall_evidence(call: OutboundCall, media: UnicastMedia, timeout: float = 1.0) -> StallEvidence:
    """Gather the evidence of one stall from the call's state, the stream, and one ``uuid_getvar``."""
    flowed_at = media.last_packet_at or 0.0
    app = call.last_media_app
    broken = ""
    try:
        value = call.api(f"uuid_getvar {call.uuid} {_PTIME_VARIABLE}", timeout).strip()
        broken = "" if value in ("", "_undef_") else value
    except Exception:  # gone, refused, timed out: that piece of evidence is missing, nothing more
        pass
    return StallEvidence(stream=media.media, channel=call.media,
                         media_app=app[0] if app is not None and app[1] >= flowed_at - 1.0 else "",
                         odd_frame=media.odd_frame, broken_ptime=broken)


# ---------------------------------------------------------------- the watch


def watch_stall(media: UnicastMedia, rearm: Callable[[], None], *, threshold_s: float = STALL_S,
                poll_s: float = 0.05, live: Callable[[], bool] = lambda: True, policy: RearmPolicy | None = None,
                give_up: Callable[[str], None] | None = None,
                diagnose: Callable[[], StallEvidence] | None = None) -> None:
    """Until ``media`` closes: when the stream stalls while ``live()``, call ``rearm()`` as ``policy`` says.

    ``live`` must be false while no stream is expected (bridged, hung up):
    re-arming would transfer the call out of its bridge. The watch pauses
    meanwhile and re-arms as soon as the stream is expected again. A failed
    re-arm counts as one that brought nothing. When the policy gives up, logs
    ``unicast.media_lost`` with the trap ``diagnose()`` points at, calls
    ``give_up(reason)`` and returns (rule 3); without ``give_up`` it only
    stops re-arming.
    """
    policy = policy or RearmPolicy()
    last_rearm = media.armed_at
    while not media.closed:
        gevent.sleep(poll_s)
        if media.closed or not live() or not media.stalled(threshold=threshold_s):
            continue
        now = time.monotonic()
        decision = policy.on_stall(now, flowed=(media.last_packet_at or 0.0) > last_rearm)
        if decision is Decision.WAIT:
            continue
        if decision is Decision.GIVE_UP:
            _lost(media, policy.reason, diagnose, give_up)
            return
        media.count_stall()
        silent_ms = round((now - max(media.armed_at, media.last_packet_at or 0.0)) * 1000)
        _log().warning("unicast.stalled", stream=media.label, silent_ms=silent_ms, rearms_in_a_row=policy.failed)
        try:
            rearm()
        except Exception as err:
            _log().warning("unicast.rearm_failed", stream=media.label, error=repr(err))
        else:
            _log().info("unicast.rearmed", stream=media.label)
        last_rearm = time.monotonic()
        policy.rearmed(last_rearm)
        media.armed(last_rearm)


def _lost(media: UnicastMedia, reason: str, diagnose: Callable[[], StallEvidence] | None,
          give_up: Callable[[str], None] | None) -> None:
    trap, why = "unknown", "no diagnosis available"
    if diagnose is not None:
        try:
            trap, why = likely_trap(diagnose())
        except Exception as err:  # a diagnosis must never keep the call from ending
            why = f"diagnosis failed: {err!r}"
    _log().error("unicast.media_lost", stream=media.label, reason=reason, trap=trap, why=why)
    if give_up is not None:
        give_up(f"{reason}; likely {trap}: {why}")
