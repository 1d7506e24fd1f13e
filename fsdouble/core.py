"""The FreeSWITCH test double's core: its state, lifecycle, channel creation and event emission.

:class:`DoubleCore` is the base of ``FreeSwitchDouble`` (``fsdouble/double.py``); the mixins in the
other ``fsdouble`` modules add ESL commands, originate and agent endpoints, applications and calls, and the media
and ear model. Everything mutable is guarded by one re-entrant lock (``_lock``); timers and the media loop
take it before they touch a channel. The hooks at the end of the class are implemented by the mixins.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import sys
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Mapping, Sequence
from typing import Self

from fsdouble.channel import Channel, FatalError, Pairs, now_us
from fsdouble.config import CALLING, STATE_NUMBERS, Endpoint, Timing, parse_inline_dialplan
from fsdouble.media import MediaLoop
from fsdouble.wire import ApiResult, Command, Conn, Outcome, Scheduler, Timer
from voicebot.esl.protocol import ChannelMedia, format_event


def new_uuid() -> str:
    """A fresh channel or job uuid."""
    return str(uuidlib.uuid4())


def cooperative_sleep() -> Callable[[float], None] | None:
    """gevent.sleep when gevent is loaded (an engine may be running as greenlets in this thread)."""
    gevent = sys.modules.get("gevent")
    sleep = getattr(gevent, "sleep", None)
    return sleep if callable(sleep) else None


class DoubleCore:
    """State, lifecycle, channels and events of the FreeSWITCH double (see ``FreeSwitchDouble`` for the API).

    ``password``: the inbound ESL password; ``port``: 0 for an ephemeral port; ``timing``: delays from the
    captures; ``playback_seconds``: how long a file plays (default: tone_stream/silence_stream lengths, WAV
    headers, else ``timing.default_playback_s``); ``dialplan``: extension → inline dialplan run by the B leg of
    ``originate loopback/EXTENSION/...``; ``endpoints``: dial string or glob → :class:`Endpoint`.
    """

    def __init__(self, password: str = "ClueCon", *, port: int = 0, timing: Timing | None = None,
                 hostname: str = "fsdouble", playback_seconds: Callable[[str], float] | None = None,
                 dialplan: Mapping[str, str] | None = None, endpoints: Mapping[str, Endpoint] | None = None) -> None:
        self.password = password
        self.timing = timing or Timing()
        self.hostname = hostname
        self.core_uuid = new_uuid()
        self._playback_seconds = playback_seconds or self._default_playback_seconds
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._port = port
        self._listener: socket.socket | None = None
        self._conns: list[Conn] = []
        self._channels: dict[str, Channel] = {}
        self._globals: dict[str, str] = {"loopback_initial_codec": "L16@8000h@20i"}
        self._fatal: list[FatalError] = []
        self._commands: list[str] = []
        self._event_seq = itertools.count(1)
        self._sessions_total = 0
        self._started_at = time.monotonic()
        self._up = False
        self._crashed = False
        self._scheduler: Scheduler | None = None
        self._media: MediaLoop | None = None
        self._outcomes: list[Outcome] = []
        self._dialplan = {ext: parse_inline_dialplan(apps) for ext, apps in (dialplan or {}).items()}
        self._endpoints: dict[str, Endpoint] = dict(endpoints or {})

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Self:
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
                self._scheduler = Scheduler(self._on_internal_error)
                self._media = MediaLoop(self._lock, self._changed, self._on_internal_error)
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

    def _shutdown(self) -> list[Conn]:
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
        outcomes, self._outcomes = self._outcomes, []
        for outcome in outcomes:  # release connections waiting on an originate
            outcome.resolve("-ERR SYSTEM_SHUTDOWN\n")
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
            conn = Conn(sock, self._on_command, self._on_gone)
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

    # ------------------------------------------------------------ read by tests

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
        sleep = cooperative_sleep()
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

    def _later(self, delay: float, fn: Callable[[], None]) -> Timer:
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
        ch.answered_us, ch.answered_at = now_us(), time.monotonic()
        ch.answer_state = "answered"

    # ------------------------------------------------------------ events

    def _core_pairs(self, name: str, calling: tuple[str, str, str] | None = None) -> Pairs:
        now = time.time()
        file, function, line = calling or CALLING.get(name, ("switch_event.c", "switch_event_fire_detailed", "0"))
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

    def _channel_pairs(self, ch: Channel, variables: bool = True) -> Pairs:
        pairs = ch.state_pairs() + ch.profile_pairs("Caller") + self._other_leg_pairs(ch)
        return pairs + ch.variable_pairs() if variables else pairs

    def _enter_states(self, ch: Channel, *states: str) -> None:
        """CHANNEL_STATE for each running state ``ch`` enters, in order; it carries no ``variable_*`` headers
        (capture check9_caller_states_plain)."""
        for state in states:
            ch.run_state, ch.state_number = state, STATE_NUMBERS[state]
            self._emit(ch, "CHANNEL_STATE", variables=False)

    def _emit(self, ch: Channel | None, name: str, extra: Sequence[tuple[str, str]] = (), *,
              lead: Sequence[tuple[str, str]] = (), body: bytes = b"", variables: bool = True) -> None:
        """Fire event ``name`` (about ``ch``) to every connection that wants it."""
        pairs = self._core_pairs(name) + list(lead) + (self._channel_pairs(ch, variables) if ch else []) + list(extra)
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
    def _wants(conn: Conn, name: str, ch: Channel | None, pairs: Pairs) -> bool:
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


    # ------------------------------------------------------------ shared by the mixins

    def _mark_answered(self, ch: Channel) -> None:
        """CHANNEL_ANSWER (a SIP call: CHANNEL_PROGRESS_MEDIA first, check5); the channel has media from now.

        A loopback B leg's answer answers its A leg, whose pending originate then returns (check3)."""
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
        peer = self._live(ch.peer)
        if peer is not None and peer.originating is not None:
            self._mark_answered(peer)
            self._later(self.timing.originate_answered_s, lambda: self._originate_answered(peer))

    def _start_park(self, ch: Channel, app_uuid: str = "") -> None:
        ch.app, ch.app_uuid, ch.parked = "park", app_uuid or new_uuid(), True
        ch.variables["current_application"] = "park"
        self._emit(ch, "CHANNEL_EXECUTE", self._app_pairs("park", "", ch.app_uuid))
        self._emit(ch, "CHANNEL_PARK")

    def _end_long_app(self, ch: Channel, response: str = "_none_") -> None:
        """The park/socket/eavesdrop/bridge the channel sat in ends (transfer, bridge, hangup)."""
        if ch.app in ("park", "socket"):
            self._emit(ch, "CHANNEL_UNPARK")
        if ch.app:
            arg = ch.variables.get("current_application_data", "") if ch.app == "socket" else \
                ch.eavesdrop_target if ch.app == "eavesdrop" else ""
            self._emit(ch, "CHANNEL_EXECUTE_COMPLETE", self._app_pairs(ch.app, arg, ch.app_uuid, response))
        self._leave_eavesdrop(ch)
        ch.app, ch.app_uuid, ch.parked = "", "", False

    # ------------------------------------------------------------ hooks (implemented by the mixins)

    def _originate_answered(self, a: Channel) -> None:
        raise NotImplementedError  # fsdouble.agents

    def _attach_eavesdrop(self, agent: Channel, target: Channel) -> None:
        raise NotImplementedError  # fsdouble.ear

    def _leave_eavesdrop(self, agent: Channel) -> None:
        raise NotImplementedError  # fsdouble.ear

    def _on_command(self, conn: Conn, cmd: Command) -> None:
        raise NotImplementedError  # fsdouble.esl

    def _on_gone(self, conn: Conn) -> None:
        raise NotImplementedError  # fsdouble.esl

    def _default_playback_seconds(self, path: str) -> float:
        raise NotImplementedError  # fsdouble.calls

    def _hangup_now(self, ch: Channel, cause: str) -> None:
        raise NotImplementedError  # fsdouble.calls

    def _stop_unicast(self, ch: Channel, reason: str) -> None:
        raise NotImplementedError  # fsdouble.ear

    def _api_handlers(self) -> dict[str, Callable[[str], str | ApiResult]]:
        raise NotImplementedError  # double (the composed class)

    def _execute(self, ch: Channel, name: str, arg: str, app_uuid: str) -> None:
        raise NotImplementedError  # fsdouble.calls

    def _unicast(self, ch: Channel, cmd: Command) -> None:
        raise NotImplementedError  # fsdouble.ear

    def _eavesdrop_dtmf(self, agent: Channel, digit: str) -> None:
        raise NotImplementedError  # fsdouble.ear

    def _start_bridge_media(self, a: Channel, b: Channel, audio_at: float) -> None:
        raise NotImplementedError  # fsdouble.ear

    def _stop_bridge_media(self, ch: Channel) -> None:
        raise NotImplementedError  # fsdouble.ear
