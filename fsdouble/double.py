"""A FreeSWITCH test double: ESL and unicast media as FreeSWITCH 1.11.1 does them.

Everything it says on the wire follows the captures in ``tests/fixtures/esl``
(reply strings, event order, header layout, URL encoding) and the timings of
docs/freeswitch.md (:class:`Timing` names the capture of every delay). It listens
and sends on 127.0.0.1 only, on ephemeral ports.

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
    ``FreeSwitchDouble(password, *, port, timing, hostname, playback_seconds, dialplan, endpoints)``;
    ``start()``, ``stop()`` (FreeSWITCH down), ``restart()`` (back on the same port), context manager.
    ``inbound_port``; ``place_call(engine_port, codec, rate, ptime, caller, ...)`` (a
    caller dials in; the double connects out to the engine's outbound socket);
    ``channel(uuid)``, ``channels()``, ``wait_for(predicate, timeout, what)``;
    ``press(uuid, digits)`` (caller or agent), ``hangup(uuid, cause)`` (caller or agent, ringing or up),
    ``set_caller_audio(uuid, audio)``, ``set_agent_audio(uuid, audio)``; ``change_ptime(uuid, ptime)``;
    dialplan and agents: ``route(extension, app, arg)``, ``set_endpoint(pattern, ring_s, result, agent_audio,
    early_media, sip_status)``; ``heartbeat(session_count, max_sessions)`` (a HEARTBEAT event);
    ears: ``ear_timeline(uuid)``, ``first_heard(uuid, source, after, min_dbfs)``;
    faults: ``cut_media(uuid)``, ``drop_connection(uuid)``, ``send_garbage(uuid, data)``, ``send_udp(uuid, data)``,
    ``set_media_faults(uuid, faults)``; checks: ``fatal_errors``, ``assert_no_crash()``, ``commands``.
    :class:`Channel`: ``state``, ``answered``, ``codec``, ``rate``, ``ptime_ms``,
    ``unicast_active``, ``media``, ``packets_heard()``, ``heard_audio()``, ``ear_timeline()``,
    ``first_heard()``, ``packets_sent``, ``dtmf``, ``events``, ``variables``, ``unicast_log``,
    ``agent_audio``, ``eavesdrop_target``, ``eavesdrop_mode``, ``bridged_to``.
    Audio: :class:`Silence`, :class:`Tone`, :class:`ArrayAudio` (array or WAV from a moment),
    :class:`CallbackAudio` (``frame_for(t) -> bytes``, a reactive caller); :class:`Packet` (``source``).

Loopback calls through a dialplan (``voicebot call --caller``)
    ``FreeSwitchDouble(dialplan={"7000": "socket:127.0.0.1:8084 async full"})`` or ``fs.route("7000",
    "socket", "127.0.0.1:8084 async full")`` (FreeSWITCH's inline dialplan syntax ``app:arg,app:arg``).
    ``originate {origination_uuid=A}loopback/7000/voicebot &park()`` makes leg A (runs park) and leg B
    (``loopback/7000-b``, runs the route: the socket app connects out to the engine, ringing, like
    ``place_call``). As in ``freeswitch_conf`` the route has no ``answer``: the engine answers B, that
    answers A, and the originate returns ``+OK A`` 20 ms later (check3); ``api originate`` holds its
    connection until then (bgapi does not). Engine not listening: ``-ERR NORMAL_CLEARING``; no answer within
    ``{originate_timeout=N}`` (60 s): ``-ERR NO_ANSWER``. Media: once A is answered a client arms unicast on A
    (``sendmsg A`` + ``call-command: unicast`` on its inbound connection); what it sends into A is B's caller
    audio towards the engine, and what the engine sends on B comes out of A's unicast to the client.

Agents (handoff)
    Any non-loopback dial string (``user/1001``) is an agent's phone: by default it answers at once; with
    ``endpoints={"user/1001": Endpoint(ring_s=2)}`` or ``set_endpoint("user/10*", ring_s=2, result="USER_BUSY")``
    it rings (CHANNEL_CREATE, CHANNEL_PROGRESS) for ``ring_s``, then answers and runs its app, or hangs up with
    the cause, and ``originate`` replies ``-ERR USER_BUSY`` (BACKGROUND_JOB for bgapi). ``error/user_busy``
    fails at once. Agent legs say ``agent_audio`` (default :class:`Tone` 1000 Hz at -12 dBFS): non-loopback
    legs, and loopback A legs unless an engine drives the pair (``&socket()`` on A, or in B's route). On an
    agent leg connected by ``&socket(...)``, ``sendmsg execute playback <wav>`` plays for the WAV's length
    and ``sendmsg execute eavesdrop <caller>`` listens as ``&eavesdrop()`` does (DTMF reaches that socket);
    the inline form ``originate {...}user/1001 'playback:/x.wav,eavesdrop:CALLER' inline`` runs its apps in
    order, then the leg hangs up.

The ear (``Channel.packets_heard()``, ``ear_timeline``, ``first_heard``; see ``fsdouble.ear``)
    A caller hears what the engine sends ("engine"). From ``uuid_bridge`` it hears silence frames, then the
    agent from 89 ms on the double's media clock (``Timing.bridge_audio_s``, check8), until the bridge ends.
    In eavesdrop talk mode (the agent's DTMF 2 or 3, ~20 ms after ``uuid_recv_dtmf``) each frame the engine
    sends is heard mixed with the agent ("engine+agent"); when the engine sends nothing, nothing is heard.
    An eavesdropping agent hears the caller mixed with the bot ("caller+engine", from 38 ms).

Rules (what the double enforces, docs/freeswitch.md)
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
an engine running as greenlets in the test's thread keeps running. The class is
composed of mixins, one module each: ``fsdouble.core`` (state, events),
``fsdouble.esl`` (ESL commands), ``fsdouble.agents`` (originate), ``fsdouble.calls``
(apps, DTMF, hangup, bridge), ``fsdouble.ear`` (unicast and the ears).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fsdouble.agents import AgentsMixin
from fsdouble.args import SocketTarget
from fsdouble.audio import (
    ArrayAudio,
    CallbackAudio,
    CallerAudio,
    Packet,
    Silence,
    Tone,
    as_caller_audio,
)
from fsdouble.calls import CallsMixin
from fsdouble.channel import Channel, ChannelState, FatalError, MediaFaults
from fsdouble.config import (
    CRASH_UNICAST,
    LOOPBACK_HOSTS,
    STUCK_L16,
    Endpoint,
    Timing,
    parse_inline_dialplan,
    require_loopback,
)
from fsdouble.core import new_uuid
from fsdouble.ear import EarMixin
from fsdouble.esl import EslMixin
from fsdouble.wire import ApiResult, Command
from voicebot.esl.protocol import media_format

__all__ = ["CRASH_UNICAST", "LOOPBACK_HOSTS", "STUCK_L16", "ArrayAudio", "CallbackAudio", "CallerAudio", "Channel",
           "ChannelState", "Command", "Endpoint", "FatalError", "FreeSwitchDouble", "MediaFaults", "Packet",
           "Silence", "Timing", "Tone", "as_caller_audio", "parse_inline_dialplan"]


class FreeSwitchDouble(EslMixin, AgentsMixin, CallsMixin, EarMixin):
    """A FreeSWITCH stand-in on 127.0.0.1 for tests: inbound ESL, outbound sockets, unicast UDP, agents.

    ``password``: the inbound ESL password; ``port``: 0 for an ephemeral port;
    ``timing``: delays from the captures; ``playback_seconds``: how long a file plays
    (default: tone_stream/silence_stream lengths, WAV headers, else ``timing.default_playback_s``);
    ``dialplan``: extension → inline dialplan for loopback B legs; ``endpoints``: dial string or glob →
    :class:`Endpoint` (agent phones that ring, answer or fail).
    """

    def place_call(self, engine_port: int | None, *, codec: str = "PCMU", rate: int = 8000, ptime: int = 20,
                   caller: CallerAudio | Callable[[float], bytes] | None = None, number: str = "1000",
                   destination: str = "7000", context: str = "default", flavour: str = "sofia",
                   uuid: str | None = None, host: str = "127.0.0.1", variables: dict[str, str] | None = None) -> str:
        """A caller dials in; FreeSWITCH runs ``socket host:engine_port async full`` and connects out.

        ``variables``: channel variables the dialplan set before the socket app (e.g. ``vb_var_<name>``).
        ``flavour`` "sofia" (a SIP caller: no codec headers before answer) or "loopback".
        ``engine_port=None`` leaves the call ringing in park with no socket (check4b).
        Returns the channel's uuid; ConnectionRefusedError if nothing listens there.
        """
        require_loopback(host)
        with self._lock:
            self._require_up()
            ch = self._new_caller(uuid or new_uuid(), media_format(codec, rate, ptime), number, destination,
                                  context, flavour)
            ch.caller = as_caller_audio(caller)
            ch.variables.update(variables or {})
            self._emit(ch, "CHANNEL_CREATE")
            if engine_port is None:
                self._start_park(ch)
                return ch.uuid
            self._start_socket_app(ch, SocketTarget(host, engine_port, asynchronous=True, full=True))
            return ch.uuid

    def press(self, uuid: str, digits: str, gap_s: float = 0.1) -> None:
        """The party on leg ``uuid`` (caller or agent) presses ``digits``: DTMF events on the channel, ``gap_s``
        apart; an eavesdropping agent's 2, 1, 3 or 0 switches eavesdrop's talk mode, as ``uuid_recv_dtmf`` does."""
        with self._lock:
            ch = self._require_live(uuid)
            self._dtmf(ch, digits, 0.0, gap_s, "RTP" if ch.flavour == "sofia" else "UNKNOWN")

    def hangup(self, uuid: str, cause: str = "NORMAL_CLEARING") -> None:
        """The party on leg ``uuid`` hangs up (a BYE): hangup events, then linger or disconnect on the socket.
        A ringing agent leg that hangs up fails its originate with ``-ERR <cause>``."""
        with self._lock:
            ch = self._require_live(uuid)
            self._later(0.0, lambda: self._hangup_now(ch, cause))

    def set_caller_audio(self, uuid: str, audio: CallerAudio | Callable[[float], bytes] | None) -> None:
        """Change what the caller says from now on."""
        with self._lock:
            self.channel(uuid).caller = as_caller_audio(audio)

    def route(self, extension: str, app: str, arg: str = "") -> None:
        """Dialplan: the B leg of ``originate loopback/EXTENSION/...`` runs ``app arg``.

        E.g. ``route("7000", "socket", "127.0.0.1:8084 async full")`` (as freeswitch_conf's extension 7000: no
        answer, the engine answers; the originate returns 20 ms after that answer). With ``arg`` empty, ``app``
        may be an inline dialplan: ``route("7000", "answer,socket:127.0.0.1:8084 async full")``.
        """
        apps = [(app.strip().lower(), arg.strip())] if arg else parse_inline_dialplan(app)
        with self._lock:
            self._dialplan[extension] = apps

    def set_agent_audio(self, uuid: str, audio: CallerAudio | Callable[[float], bytes] | None) -> None:
        """Change what the agent on leg ``uuid`` says from now on (None: silence)."""
        with self._lock:
            self.channel(uuid).agent_audio = as_caller_audio(audio)

    def set_endpoint(self, pattern: str, *, ring_s: float = 0.0, result: str = "answer",
                     agent_audio: CallerAudio | None = None, early_media: float | None = None,
                     sip_status: str = "") -> None:
        """Originates to dial strings matching ``pattern`` (exact, or a glob like ``user/10*``) ring ``ring_s``
        s, then ``result``: "answer" or a hangup cause (USER_BUSY, NO_ANSWER, CALL_REJECTED, ...);
        ``early_media``: s into the ring when early media starts; ``sip_status``: a failing sofia leg's SIP code."""
        with self._lock:
            self._endpoints[pattern] = Endpoint(ring_s, result, agent_audio, early_media, sip_status)

    def heartbeat(self, session_count: int | None = None, max_sessions: int = 1000) -> None:
        """A HEARTBEAT event as FreeSWITCH sends every 20 s (capture dial_outcomes): ``Session-Count`` (default:
        the live channels) and ``Max-Sessions``."""
        with self._lock:
            count = len(self.channels(live_only=True)) if session_count is None else session_count
            up_ms = int((time.monotonic() - self._started_at) * 1000)
            self._emit(None, "HEARTBEAT", [
                ("Event-Info", "System Ready"), ("Up-Time", f"0 years, 0 days, 0 hours, 0 minutes, {up_ms // 1000} "
                                                            f"seconds, {up_ms % 1000} milliseconds, 0 microseconds"),
                ("FreeSWITCH-Version", "1.11.1-release~64bit"), ("Uptime-msec", str(up_ms)),
                ("Session-Count", str(count)), ("Max-Sessions", str(max_sessions)), ("Session-Per-Sec", "30"),
                ("Session-Per-Sec-Last", "0"), ("Session-Per-Sec-Max", "0"), ("Session-Per-Sec-FiveMin", "0"),
                ("Session-Since-Startup", str(len(self._channels))), ("Session-Peak-Max", str(count)),
                ("Session-Peak-FiveMin", str(count)), ("Idle-CPU", "0.000000")])

    def ear_timeline(self, uuid: str) -> list[tuple[float, str, float]]:
        """What leg ``uuid`` heard: ``(monotonic s, source, dBFS)`` per frame (see :meth:`Channel.ear_timeline`)."""
        return self.channel(uuid).ear_timeline()

    def first_heard(self, uuid: str, source: str, after: float = 0.0, min_dbfs: float | None = None) -> float | None:
        """When leg ``uuid`` first heard ``source`` ("agent", "engine", "silence", ...) at or after ``after``."""
        return self.channel(uuid).first_heard(source, after, min_dbfs)

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
        """The SIP peer switches packet time (e.g. 20 → 30 ms): unicast dies silently (docs/freeswitch.md)."""
        with self._lock:
            ch = self._require_live(uuid)
            old, ch.ptime_ms = ch.ptime_ms, ptime
            ch.variables["rtp_h_X-Broken-PTIME"] = f"Adv={old};Sent={ptime}"
            ch.set_media_variables()
            self._stop_unicast(ch, f"ptime change {old}->{ptime} ms")

    def cut_media(self, uuid: str) -> None:
        """The caller's stream stops for good: unicast is torn down now, and every later ``unicast`` on the
        channel replies +OK and does nothing, so no re-arm brings it back (a trap the engine cannot undo)."""
        with self._lock:
            ch = self._require_live(uuid)
            ch.media_cut = True
            self._stop_unicast(ch, "media cut")

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

    # ------------------------------------------------------------ the API command table

    def _api_handlers(self) -> dict[str, Callable[[str], str | ApiResult]]:
        return {"originate": self._api_originate, "uuid_bridge": self._api_uuid_bridge,
                "uuid_transfer": self._api_uuid_transfer, "uuid_kill": self._api_uuid_kill,
                "uuid_break": self._api_uuid_break, "uuid_broadcast": self._api_uuid_broadcast,
                "uuid_recv_dtmf": self._api_uuid_recv_dtmf, "uuid_send_dtmf": self._api_uuid_send_dtmf,
                "uuid_getvar": self._api_uuid_getvar, "uuid_setvar": self._api_uuid_setvar,
                "uuid_dump": self._api_uuid_dump, "uuid_exists": self._api_uuid_exists, "show": self._api_show,
                "status": self._api_status, "global_setvar": self._api_global_setvar,
                "global_getvar": self._api_global_getvar, "version": self._api_version}
