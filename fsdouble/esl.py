"""ESL commands of the FreeSWITCH test double: auth, events, filters, linger, sendmsg, api/bgapi, info commands.

Replies and events are byte-exact to the captures (``voicebot.esl.protocol`` formats them). Each connection
is served in order, like FreeSWITCH's listener thread: an ``api`` that takes time (an originate that rings)
holds that connection's later commands until it returns; ``bgapi`` answers at once and reports by
BACKGROUND_JOB.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from fsdouble.args import NON_FULL_COMMANDS
from fsdouble.channel import Channel
from fsdouble.config import EVENT_NAMES, LOG_LEVELS, MYEVENTS, SHOW_CHANNELS_HEADER
from fsdouble.core import DoubleCore, new_uuid
from fsdouble.wire import ApiResult, Command, Conn, Delayed, Outcome
from voicebot.esl.protocol import (
    format_api_response,
    format_channel_data,
    format_disconnect_notice,
    format_reply,
    serialize_json,
    serialize_plain,
)


class EslMixin(DoubleCore):
    """The ESL command set (inbound and outbound connections) and the informational API commands."""

    def _on_command(self, conn: Conn, cmd: Command) -> None:
        """(A connection's reader thread) one command, served in order as FreeSWITCH's listener does."""
        with self._lock:
            if not self._up or conn.closed:
                return
            self._commands.append(cmd.line)
            delayed = self._dispatch(conn, cmd)
        if delayed is not None:
            wait, finish = delayed
            if isinstance(wait, Outcome):
                wait.done.wait()  # an originate that rings: resolved by the call, or by stop()
            else:
                time.sleep(wait)  # `api` runs in the listener thread: this connection's next command waits
            with self._lock:
                if self._up and not conn.closed:
                    finish()

    def _on_gone(self, conn: Conn) -> None:
        """(A reader thread) the peer closed, or we did."""
        with self._lock:
            if conn in self._conns:
                self._conns.remove(conn)
            conn.closed = True
            ch = self._live(conn.session) if conn.session else None
            if ch is not None and ch.conn is conn and not conn.resume and self._up:
                self._later(self.timing.hangup_s, lambda: self._hangup_now(ch, "NORMAL_CLEARING"))
            self._changed.notify_all()
        conn.end_writer()
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _dispatch(self, conn: Conn, cmd: Command) -> Delayed:
        word = cmd.line.split(" ", 1)[0].lower()
        if word in ("exit", "..."):
            self._close_conn(conn, "+OK bye")
            return None
        if not conn.authed:
            self._auth(conn, cmd.line)
            return None
        handler = self._esl_handlers().get(word)
        refused = conn.session and conn.control != "full" and word not in NON_FULL_COMMANDS
        if handler is None or refused or (word in ("connect", "getvar", "resume") and not conn.session):
            conn.send(format_reply("-ERR command not found"))
            return None
        return handler(conn, cmd)

    def _esl_handlers(self) -> dict[str, Callable[[Conn, Command], Delayed]]:
        return {"connect": self._esl_connect, "myevents": self._esl_myevents, "event": self._esl_event,
                "nixevent": self._esl_nixevent, "noevents": self._esl_noevents, "linger": self._esl_linger,
                "nolinger": self._esl_nolinger, "filter": self._esl_filter, "sendmsg": self._esl_sendmsg,
                "api": self._esl_api, "bgapi": self._esl_bgapi, "getvar": self._esl_getvar,
                "resume": self._esl_resume, "divert_events": self._esl_divert, "log": self._esl_log,
                "nolog": self._esl_nolog, "sendevent": self._esl_sendevent}

    def _auth(self, conn: Conn, line: str) -> None:
        if not line.lower().startswith("auth "):
            conn.send(format_reply("-ERR command not found"))
        elif line[5:] == self.password:
            conn.authed = True
            conn.send(format_reply("+OK accepted"))
        else:
            self._close_conn(conn, "-ERR invalid")

    def _close_conn(self, conn: Conn, reply: str) -> None:
        """Reply, then the goodbye notice, then close (exit, a wrong password)."""
        conn.send(format_reply(reply))
        conn.send(format_disconnect_notice(conn.session or None))
        conn.close_after_flush()

    def _esl_connect(self, conn: Conn, cmd: Command) -> Delayed:
        ch = self._channels[conn.session]
        pairs = self._core_pairs("CHANNEL_DATA") + ch.profile_pairs("Channel") + self._channel_pairs(ch)
        conn.send(format_channel_data(pairs, mode=conn.socket_mode, control=conn.control))
        if ch.flavour == "loopback" and not ch.answered and ch.app == "socket" and ch.parked:
            self._later(self.timing.park_s, lambda: self._emit(ch, "CHANNEL_PARK"))
        return None

    def _esl_myevents(self, conn: Conn, cmd: Command) -> Delayed:
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

    def _event_names(self, conn: Conn, tokens: list[str]) -> set[str] | None:
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

    def _esl_event(self, conn: Conn, cmd: Command) -> Delayed:
        names = self._event_names(conn, cmd.line.split()[1:])
        if names is None:
            conn.send(format_reply("-ERR no keywords supplied"))
            return None
        conn.events |= names
        conn.send(format_reply(f"+OK event listener enabled {conn.fmt}"))
        return None

    def _esl_nixevent(self, conn: Conn, cmd: Command) -> Delayed:
        fmt = conn.fmt
        names = self._event_names(conn, cmd.line.split()[1:])
        conn.fmt = fmt
        if names is None:
            conn.send(format_reply("-ERR no keywords supplied"))
            return None
        conn.events = set() if "ALL" in names else (conn.events - names)
        conn.send(format_reply("+OK events nixed"))
        return None

    def _esl_noevents(self, conn: Conn, cmd: Command) -> Delayed:
        listening = bool(conn.events)
        conn.events, conn.myevents = set(), False
        conn.send(format_reply("+OK no longer listening for events" if listening else "-ERR not listening for events"))
        return None

    def _esl_linger(self, conn: Conn, cmd: Command) -> Delayed:
        if not conn.session:
            conn.send(format_reply("-ERR not controlling a session"))
            return None
        arg = cmd.line[6:].strip()
        conn.linger = int(arg) if arg.lstrip("-").isdigit() else -1
        text = "+OK will linger" if conn.linger == -1 else f"+OK will linger {conn.linger} seconds"
        conn.send(format_reply(text))
        return None

    def _esl_nolinger(self, conn: Conn, cmd: Command) -> Delayed:
        if not conn.session:
            conn.send(format_reply("-ERR not controlling a session"))
            return None
        conn.linger = None
        conn.send(format_reply("+OK will not linger"))
        return None

    def _esl_filter(self, conn: Conn, cmd: Command) -> Delayed:
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

    def _esl_getvar(self, conn: Conn, cmd: Command) -> Delayed:
        name = cmd.line[6:].strip()
        conn.send(format_reply(self._channels[conn.session].variables.get(name, "")))
        return None

    def _esl_resume(self, conn: Conn, cmd: Command) -> Delayed:
        conn.resume = True
        self._channels[conn.session].variables["socket_resume"] = "true"
        conn.send(format_reply("+OK"))
        return None

    def _esl_divert(self, conn: Conn, cmd: Command) -> Delayed:
        on = cmd.line[13:].strip().lower()
        if not conn.session:
            text = "-ERR not controlling a session."
        else:
            text = "-ERR missing value." if not on else \
                "+OK events diverted" if on == "on" else "+OK events not diverted"
        conn.send(format_reply(text))
        return None

    def _esl_log(self, conn: Conn, cmd: Command) -> Delayed:
        level = cmd.line[3:].strip()
        number = int(level) if level.isdigit() else LOG_LEVELS.get(level.lower() or "debug", -1)
        conn.send(format_reply(f"+OK log level {level} [{number}]" if 0 <= number <= 7 else "-ERR invalid log level"))
        return None

    def _esl_nolog(self, conn: Conn, cmd: Command) -> Delayed:
        conn.send(format_reply("-ERR not loging"))  # sic; the double never streams logs
        return None

    def _esl_sendevent(self, conn: Conn, cmd: Command) -> Delayed:
        conn.send(format_reply(f"+OK {new_uuid()}"))
        return None

    def _esl_sendmsg(self, conn: Conn, cmd: Command) -> Delayed:
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

    def _esl_api(self, conn: Conn, cmd: Command) -> Delayed:
        result = self._api(cmd.line[4:].strip())
        outcome = result.outcome

        def finish() -> None:
            conn.send(format_api_response(outcome.body if outcome is not None else result.body))
            if result.then is not None:
                result.then()
        if outcome is not None:
            return outcome, finish
        if result.delay <= 0:
            finish()
            return None
        return result.delay, finish

    def _esl_bgapi(self, conn: Conn, cmd: Command) -> Delayed:
        line = cmd.line[6:].strip()
        name, _, arg = line.partition(" ")
        job = cmd.get("Job-UUID") or new_uuid()
        conn.send(format_reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)]))
        result = self._api(line)
        extra = [("Job-UUID", job), ("Job-Command", name)] + ([("Job-Command-Arg", arg)] if arg else [])

        def finish() -> None:
            if result.then is not None:
                result.then()  # the call's events, then the job's result (as an originate returns)
            self._emit(None, "BACKGROUND_JOB", extra, body=result.body.encode("utf-8"))
        if result.outcome is not None:
            result.outcome.on_done(lambda body: self._emit(None, "BACKGROUND_JOB", extra, body=body.encode("utf-8")))
        else:
            self._later(result.delay, finish)
        return None

    # ------------------------------------------------------------ api commands

    def _api(self, line: str) -> ApiResult:
        name, _, args = line.partition(" ")
        handler = self._api_handlers().get(name.lower())
        if handler is None:
            return ApiResult(f"-ERR {name} Command not found!\n")
        result = handler(args.strip())
        return result if isinstance(result, ApiResult) else ApiResult(result or "-ERR no reply\n")

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
            return f"{SHOW_CHANNELS_HEADER}\n{rows}\n{len(live)} total.\n"
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
