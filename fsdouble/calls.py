"""Applications and calls in the FreeSWITCH test double: sendmsg execute, DTMF, hangup, bridge and transfer.

Apps queued by ``sendmsg execute`` run one after another, each ``app_start_s`` after the previous one:
answer, playback (a WAV plays for its length), park, set/export, sleep, eavesdrop (as ``&eavesdrop()``
does, until the target leaves, the leg is bridged or transferred; then the socket's park goes on); others
complete at once. DTMF reaches ESL as events; while eavesdropping, 2/1/3/0 switch eavesdrop's talk mode.
``uuid_bridge`` unparks both legs at 20 ms and bridges at 61 ms (check6, check8); the agent's audio reaches
the caller's ear from 89 ms (fsdouble.ear). ``park_after_bridge=true`` parks the survivor ~21 ms after a hangup.
"""

from __future__ import annotations

import functools
import re
import time
import wave
from collections import deque
from collections.abc import Callable

from fsdouble.channel import App, Channel, Pairs, now_us
from fsdouble.config import Q850, STATE_NUMBERS, TONE_RE
from fsdouble.core import DoubleCore, new_uuid
from fsdouble.wire import Conn
from voicebot.esl.protocol import format_disconnect_notice, format_linger_notice


class CallsMixin(DoubleCore):
    """sendmsg execute apps, uuid_broadcast/uuid_break, DTMF, hangup, uuid_bridge and uuid_transfer."""

    def _execute(self, ch: Channel, name: str, arg: str, app_uuid: str) -> None:
        """Queue an app; apps run one after another, each ``app_start_s`` after the previous one."""
        name = name.lower()
        if name == "hangup":
            self._later(self.timing.hangup_s, lambda: self._hangup_now(ch, arg or "NORMAL_CLEARING"))
            return
        ch.queue.append(App(name, arg, app_uuid or new_uuid()))
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
        starters: dict[str, Callable[[Channel, App], None]] = {
            "answer": self._app_answer, "playback": self._app_playback, "park": self._app_park,
            "set": self._app_set, "export": self._app_set, "sleep": self._app_sleep,
            "eavesdrop": self._app_eavesdrop}
        starters.get(app.name, self._app_done_now)(ch, app)

    def _finish_app(self, ch: Channel, app: App, response: str = "_none_") -> None:
        if ch.running is not app:
            return
        ch.running = None
        ch.variables["current_application_response"] = response
        self._emit(ch, "CHANNEL_EXECUTE_COMPLETE", self._app_pairs(app.name, app.arg, app.app_uuid, response))
        if ch.queue:
            self._later(self.timing.app_start_s, lambda: self._next_app(ch))
        elif ch.hangup_when_done:  # an originate's app or inline dialplan ran out: the leg hangs up
            self._later(self.timing.hangup_s, functools.partial(self._hangup_now, ch, "NORMAL_CLEARING"))

    def _app_done_now(self, ch: Channel, app: App) -> None:
        self._finish_app(ch, app)

    def _app_set(self, ch: Channel, app: App) -> None:
        name, _, value = app.arg.partition("=")
        ch.variables[name.strip()] = value.strip()
        self._finish_app(ch, app)

    def _app_sleep(self, ch: Channel, app: App) -> None:
        ms = int(app.arg) if app.arg.isdigit() else 0
        app.timer = self._later(ms / 1000, lambda: self._finish_app(ch, app))

    def _app_park(self, ch: Channel, app: App) -> None:
        ch.running = None
        ch.app, ch.app_uuid, ch.parked = "park", app.app_uuid, True
        self._emit(ch, "CHANNEL_PARK")
        if ch.queue:  # apps sent later run inside the park loop
            self._later(self.timing.app_start_s, lambda: self._next_app(ch))

    def _app_eavesdrop(self, ch: Channel, app: App) -> None:
        """``eavesdrop <uuid>``: listen until the target leaves (or a bridge or transfer ends it)."""
        target = self._live(app.arg)
        if target is None or target is ch:
            self._finish_app(ch, app)
            return
        ch.variables["current_application_data"] = target.uuid
        self._attach_eavesdrop(ch, target)

    def _app_answer(self, ch: Channel, app: App) -> None:
        if ch.answered:
            self._finish_app(ch, app)
            return

        def answered() -> None:
            if not ch.hung_up:
                self._mark_answered(ch)
                self._finish_app(ch, app)
        app.timer = self._later(self.timing.answer_s - self.timing.app_start_s, answered)

    def _app_playback(self, ch: Channel, app: App) -> None:
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

    def _end_playback(self, ch: Channel, app: App, status: str, response: str) -> None:
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
            total = sum(int(m["on"]) + int(m["off"]) for m in TONE_RE.finditer(path))
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
        ch.queue.append(App("playback", parts[1], new_uuid()))
        self._later(self.timing.broadcast_unicast_stop_s, lambda: self._leave_park_for_broadcast(ch))
        self._later(self.timing.broadcast_start_s, lambda: self._next_app(ch))
        return "+OK Message sent\n"

    def _leave_park_for_broadcast(self, ch: Channel) -> None:
        """The park loop sees the broadcast at its next frame: unicast stops there, long before PLAYBACK_START
        (probe check9: the last caller packet +9..17 ms, PLAYBACK_START +202 ms), and a unicast meanwhile
        does nothing."""
        if ch.hung_up or ch.bridged_to or ch.running is not None:
            return
        self._stop_unicast(ch, "broadcast")
        ch.parked = False

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
            self._eavesdrop_dtmf(ch, digit)
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
        ch.hung_up, ch.cause, ch.hangup_us = True, cause, now_us()
        ch.answer_state = "hangup"
        ch.variables.update({"hangup_cause": cause, "hangup_cause_q850": Q850.get(cause, "16")})
        self._emit(ch, "CHANNEL_HANGUP", lead=[("Hangup-Cause", cause)])
        outcome, ch.originating = ch.originating, None
        if outcome is not None:  # hung up before the answer: the originate fails with the cause
            outcome.resolve(f"-ERR {cause}\n")
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
        if app.name == "eavesdrop":
            self._leave_eavesdrop(ch)
        response = "PLAYBACK ERROR" if app.name == "playback" else "_none_"
        self._emit(ch, "CHANNEL_EXECUTE_COMPLETE", self._app_pairs(app.name, app.arg, app.app_uuid, response))

    def _release_partners(self, ch: Channel, cause: str) -> None:
        """Bridge partner: park (park_after_bridge) or hang up; eavesdrop ends (an ``&eavesdrop()`` leg hangs
        up, a socket-driven one goes back to its park); the loopback peer hangs up."""
        self._stop_bridge_media(ch)
        partner = self._live(ch.bridged_to)
        ch.bridged_to = ""
        if partner is not None:
            partner.bridged_to = ""
            self._later(self.timing.park_after_bridge_s, lambda: self._after_bridge(partner, ch, cause))
        for uuid in sorted(ch.eavesdroppers):
            agent = self._live(uuid)
            app = agent.running if agent is not None else None
            if agent is not None and app is not None and app.name == "eavesdrop":
                self._leave_eavesdrop(agent)
                self._finish_app(agent, app)
            elif agent is not None:
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
        if survivor.variables.get("park_after_bridge") != "true":
            self._hangup_now(survivor, cause)
        elif self.timing.unbridge_park_s > 0.001:  # a test widening the gap (the real one is 0.1 ms)
            self._later(self.timing.unbridge_park_s, functools.partial(self._park_after_bridge, survivor))
        else:
            self._park_after_bridge(survivor)

    def _park_after_bridge(self, survivor: Channel) -> None:
        """Back in park ~21 ms after the agent left (check6): CHANNEL_STATE CS_PARK, then CHANNEL_PARK (check9)."""
        if survivor.hung_up or survivor.bridged_to:
            return
        if survivor.app != "park":  # not parked meanwhile by a uuid_transfer
            survivor.app, survivor.app_uuid, survivor.parked = "park", new_uuid(), True
        self._enter_states(survivor, "CS_PARK")
        self._emit(survivor, "CHANNEL_PARK")

    def _complete_hangup(self, ch: Channel) -> None:
        ch.run_state = "CS_HANGUP"
        self._emit(ch, "CHANNEL_STATE", variables=False)
        ch.complete, ch.call_state = True, "HANGUP"
        self._emit(ch, "CHANNEL_STATE", variables=False)
        self._emit(ch, "CHANNEL_HANGUP_COMPLETE", lead=[("Hangup-Cause", ch.cause)])
        conn = ch.conn
        if conn is None or conn.closed or conn.linger is None:
            return
        conn.send(format_linger_notice(ch.uuid, ch.name, conn.linger))
        if conn.linger >= 0:
            self._later(conn.linger + self.timing.linger_extra_s, lambda: self._close_conn_quietly(conn, ch))

    def _close_conn_quietly(self, conn: Conn, ch: Channel) -> None:
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
        audio_at = time.monotonic() + self.timing.bridge_audio_s
        self._later(self.timing.bridge_unpark_s, lambda: self._bridge_unpark(a, b, audio_at))
        self._later(self.timing.bridge_s, lambda: self._bridge_up(a, b))
        return f"+OK {b.uuid}\n"

    def _bridge_unpark(self, a: Channel, b: Channel, audio_at: float) -> None:
        """Both legs leave what they were doing; unicast stops (check6: CHANNEL_UNPARK ~20 ms); the ears
        hear silence, then each other from ``audio_at`` (fsdouble.ear)."""
        for leg in (a, b):  # first, while an eavesdropper is still attached (the L16 trap)
            self._stop_unicast(leg, "bridge")
        for leg, other in ((a, b), (b, a)):
            if leg.hung_up:
                continue
            leg.other_leg, leg.bridge_a = other.uuid, a.uuid
            self._abort_app(leg)
            if leg.stuck:  # the L16 eavesdrop trap: CHANNEL_UNPARK, then nothing (check8 bridge_l16)
                self._emit(leg, "CHANNEL_UNPARK")
                leg.app, leg.parked = "", False
                continue
            leg.state_number = STATE_NUMBERS["CS_HIBERNATE"]  # UNPARK already says 8 (check9)
            self._end_long_app(leg)
            # both legs, socket app or park (check6b socket side, check9 caller)
            self._enter_states(leg, "CS_HIBERNATE", "CS_RESET", "CS_SOFT_EXECUTE")
        if not (a.hung_up or b.hung_up or a.stuck or b.stuck):
            self._start_bridge_media(a, b, audio_at)

    def _bridge_up(self, a: Channel, b: Channel) -> None:
        """CHANNEL_EXECUTE uuid_bridge on both legs, CHANNEL_BRIDGE on A (check6: ~61 ms)."""
        if a.hung_up or b.hung_up or a.stuck or b.stuck:
            return
        for leg, other in ((a, b), (b, a)):
            leg.bridged_to, leg.app, leg.bridged_us = other.uuid, "uuid_bridge", now_us()
            leg.variables.update({"bridge_uuid": other.uuid, "signal_bond": other.uuid})
            self._emit(leg, "CHANNEL_EXECUTE", self._app_pairs("uuid_bridge", "", ""))
        self._enter_states(b, "CS_EXCHANGE_MEDIA")  # the B leg only; A stays in CS_SOFT_EXECUTE (probe check9)
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
        self._stop_bridge_media(ch)
        partner = self._live(ch.bridged_to)
        if partner is not None:
            ch.bridged_to = partner.bridged_to = ""
            self._later(self.timing.park_after_bridge_s, lambda: self._after_bridge(partner, ch, "NORMAL_CLEARING"))
        self._abort_app(ch)
        ch.state_number = STATE_NUMBERS["CS_ROUTING"]  # UNPARK already says 2 (check9)
        self._end_long_app(ch)
        self._enter_states(ch, "CS_ROUTING", "CS_EXECUTE")  # before EXECUTE park (check9)
        if not park_inline:
            app_uuid = new_uuid()
            self._emit(ch, "CHANNEL_EXECUTE", self._app_pairs("answer", "", app_uuid))
            self._mark_answered(ch)
            self._emit(ch, "CHANNEL_EXECUTE_COMPLETE", self._app_pairs("answer", "", app_uuid, "_none_"))
        self._start_park(ch)
