"""``originate`` in the FreeSWITCH test double: loopback pairs, dialplan routes, and agent phones that ring.

- ``loopback/EXT[/CONTEXT]``: leg A (the originate's uuid, runs the app after the dial string) and leg B
  (runs extension EXT). Unrouted extensions answer and park (check2, check4, check6); the reply comes
  ~22 ms later. A routed extension (``dialplan=`` / ``route()``) runs its apps; without ``answer`` the
  originate waits for whoever answers B (the engine, over the socket app) and returns 20 ms after (check3).
- any other dial string (``user/1001``, ``sofia/gateway/...``) is an agent's phone, behaving as its
  :class:`~fsdouble.config.Endpoint` says: at once, or ringing ``ring_s`` (CHANNEL_PROGRESS), then
  answering (``+OK <uuid>``) or failing (``-ERR USER_BUSY``...). ``error/<cause>`` fails at once, as
  FreeSWITCH's error endpoint does.
- the app: ``&park()``, ``&socket('host:port async full')`` (unquoted, split as FreeSWITCH does:
  fsdouble.args), ``&eavesdrop(uuid)``, any other ``&app(arg)``,
  an extension, or an inline dialplan ``'playback:/x.wav,eavesdrop:UUID' inline`` (apps in order, then the
  leg hangs up).
"""

from __future__ import annotations

import functools
import socket

from fsdouble.args import SocketTarget, parse_originate, parse_socket_arg
from fsdouble.audio import CallerAudio, Tone
from fsdouble.channel import Channel
from fsdouble.config import (
    ANSWER,
    CODEC_SPEC_RE,
    ORIGINATE_USAGE,
    SIP_FOR_CAUSE,
    Endpoint,
    match_endpoint,
    parse_inline_dialplan,
    split_var,
)
from fsdouble.core import DoubleCore, new_uuid
from fsdouble.wire import ApiResult, Conn, Outcome
from voicebot.esl.protocol import ChannelMedia, media_format

DEFAULT_ORIGINATE_TIMEOUT_S = 60.0  # FreeSWITCH's originate_timeout default


def _agent_voice(spec: Endpoint, agent: bool) -> CallerAudio | None:
    """The leg's agent audio: the endpoint's, else (for a leg taken as an agent's) a 1000 Hz tone.

    Agent legs: non-loopback legs, and loopback A legs, except where an engine drives one side of the pair
    (the A leg runs ``&socket()``, or the B leg's route does: ``voicebot call``): those say nothing of their
    own unless an endpoint gives them ``agent_audio``."""
    if spec.agent_audio is not None:
        return spec.agent_audio
    return Tone() if agent else None


def _split_aleg(aleg: str) -> tuple[str, str]:
    """``{a=1,b=2}ENDPOINT`` → ("a=1,b=2", "ENDPOINT")."""
    if aleg.startswith("{") and "}" in aleg:
        variables, _, endpoint = aleg[1:].partition("}")
        return variables, endpoint
    return "", aleg


class AgentsMixin(DoubleCore):
    """``originate``: loopback pairs, dialplan routes, agent endpoints that ring, answer or fail."""

    def _api_originate(self, args: str) -> str | ApiResult:
        parsed = parse_originate(args)  # split on spaces as FreeSWITCH does: quote the socket app's argument
        if parsed is None:
            return ORIGINATE_USAGE
        vars_text, endpoint = _split_aleg(parsed.aleg)
        variables = dict(split_var(v) for v in vars_text.split(",") if "=" in v)
        app = (parsed.app, parsed.arg)
        try:
            if app[0] == "socket":
                parse_socket_arg(app[1])
            if app[0] == "inline":
                parse_inline_dialplan(app[1])
        except ValueError:
            return "-ERR DESTINATION_OUT_OF_ORDER\n"
        uuid = variables.get("origination_uuid") or new_uuid()
        if uuid in self._channels:  # FreeSWITCH 1.11.1 places the call anyway, under a fresh uuid (dial_outcomes)
            uuid = new_uuid()
            variables["origination_uuid"] = uuid
        return self._originate_to(endpoint, uuid, variables, app)

    def _originate_to(self, endpoint: str, uuid: str, variables: dict[str, str], app: tuple[str, str]) -> str | ApiResult:
        parts = endpoint.split("/")
        if parts[0] == "error":  # mod_dptools' error endpoint: no channel, the cause at once
            return f"-ERR {(parts[1] if len(parts) > 1 else 'DESTINATION_OUT_OF_ORDER').upper()}\n"
        spec = match_endpoint(self._endpoints, endpoint)
        loopback = parts[0] == "loopback" and len(parts) > 1
        route = self._dialplan.get(parts[1]) if loopback else None
        if route is not None:
            return self._originate_routed(uuid, variables, endpoint, app, route, spec)
        if loopback or spec.immediate:
            return ApiResult(f"+OK {uuid}\n", self.timing.originate_s,
                             lambda: self._originate(uuid, variables, endpoint, app, spec))
        return self._originate_ringing(uuid, variables, endpoint, app, spec)

    def _originate_media(self, variables: dict[str, str], loopback: bool = True) -> ChannelMedia:
        """absolute_codec_string, else (loopback) the global loopback_initial_codec, else L16 (loopback) or PCMU."""
        spec = variables.get("absolute_codec_string") or \
            (self._globals.get("loopback_initial_codec", "") if loopback else "PCMU@8000h@20i")
        m = CODEC_SPEC_RE.search(spec)
        if m is None:
            return media_format("L16", 8000, 20)
        return media_format(m["codec"], int(m["rate"]), int(m["ptime"] or 20))

    def _new_outcome(self) -> Outcome:
        outcome = Outcome()
        self._outcomes = [o for o in self._outcomes if not o.done.is_set()] + [outcome]
        return outcome

    def _originate(self, uuid: str, variables: dict[str, str], endpoint: str, app: tuple[str, str],
                   spec: Endpoint) -> None:
        """Answering at once: the leg (and, for loopback/, its B leg running answer + park), then ``app``."""
        parts = endpoint.split("/")
        if parts[0] == "loopback" and len(parts) > 1:
            a, b = self._loopback_legs(uuid, variables, endpoint)
            a.agent_audio = _agent_voice(spec, app[0] != "socket")
            self._answer_b_leg(a, b)
        else:
            a = self._agent_leg(uuid, variables, endpoint, spec)
            self._mark_answered(a)
        self._run_originate_app(a, *app)

    def _agent_leg(self, uuid: str, variables: dict[str, str], endpoint: str, spec: Endpoint) -> Channel:
        """An agent's phone (any non-loopback dial string): one outbound leg, G.711 unless told otherwise."""
        number = variables.get("origination_caller_id_number", "0000000000")
        a = self._new_leg(uuid, endpoint, "outbound", self._originate_media(variables, loopback=False), number,
                          endpoint.split("/")[-1], "default")
        a.variables.update(variables)
        a.agent_audio = _agent_voice(spec, True)
        self._emit(a, "CHANNEL_CREATE")
        return a

    def _originate_ringing(self, uuid: str, variables: dict[str, str], endpoint: str, app: tuple[str, str],
                           spec: Endpoint) -> ApiResult:
        """A phone that rings ``spec.ring_s`` (cut at ``originate_timeout``), then answers or fails."""
        outcome = self._new_outcome()
        a = self._agent_leg(uuid, variables, endpoint, spec)
        a.originating, a.originate_app, a.call_state = outcome, app, "RINGING"
        self._emit(a, "CHANNEL_PROGRESS")
        timeout = float(variables.get("originate_timeout") or DEFAULT_ORIGINATE_TIMEOUT_S)
        if spec.early_media is not None and spec.early_media < min(spec.ring_s, timeout):
            self._later(spec.early_media, functools.partial(self._early_media, a))
        if spec.ring_s > timeout:
            self._later(timeout, functools.partial(self._ring_failed, a, "NO_ANSWER"))
        elif spec.result.lower() == ANSWER:
            self._later(spec.ring_s, functools.partial(self._ring_answered, a))
        else:
            self._later(spec.ring_s, functools.partial(self._ring_failed, a, spec.result.upper()))
        return ApiResult("", outcome=outcome)

    def _ring_answered(self, a: Channel) -> None:
        if a.early_app and not a.hung_up:  # the originate already returned at early media; now the far end answers
            self._mark_answered(a)
            return
        if a.originating is not None and not a.hung_up:
            self._mark_answered(a)
            self._later(self.timing.originate_answered_s, functools.partial(self._originate_answered, a))

    def _early_media(self, a: Channel) -> None:
        """183 Session Progress with SDP: ringback or an announcement plays before any answer. As FreeSWITCH
        1.11.1 does (capture dial_early_media), the originate succeeds here and runs its app on the unanswered
        leg unless ``ignore_early_media=true``; the leg's fate (answer or cause) comes later either way."""
        if a.originating is None or a.hung_up:
            return
        a.call_state, a.answer_state = "EARLY", "early"
        self._emit(a, "CHANNEL_PROGRESS_MEDIA")
        if a.variables.get("ignore_early_media") != "true":
            outcome, a.originating = a.originating, None
            outcome.resolve(f"+OK {a.uuid}\n")
            a.early_app = True
            self._run_originate_app(a, *a.originate_app)

    def _ring_failed(self, a: Channel, cause: str) -> None:
        if (a.originating is not None or a.early_app) and not a.hung_up:
            if a.name.startswith("sofia/"):  # a SIP leg says which response ended it
                spec = match_endpoint(self._endpoints, a.name)
                status = spec.sip_status or SIP_FOR_CAUSE.get(cause, "")
                if status:
                    a.variables["sip_term_status"] = status
                a.variables["sip_hangup_disposition"] = "send_cancel" if cause == "NO_ANSWER" else "recv_refuse"
            self._hangup_now(a, cause)  # the originate replies -ERR <cause>

    def _loopback_legs(self, uuid: str, variables: dict[str, str], endpoint: str) -> tuple[Channel, Channel]:
        """``loopback/DEST[/CONTEXT]``: leg A (``uuid``, runs the originate's app) and leg B (runs the dialplan)."""
        parts = endpoint.split("/")
        dest, context = parts[1], parts[2] if len(parts) > 2 else "default"
        media = self._originate_media(variables)
        number = variables.get("origination_caller_id_number", "0000000000")
        a = self._new_leg(uuid, f"loopback/{dest}-a", "outbound", media, number, dest, context)
        a.variables.update(variables)
        b = self._new_leg(new_uuid(), f"loopback/{dest}-b", "inbound", media, number, dest, context)
        b.variables.update({k: v for k, v in variables.items() if k != "origination_uuid"})  # mod_loopback's loopback vars
        for leg in (a, b):
            self._emit(leg, "CHANNEL_CREATE")
        a.peer, b.peer = b.uuid, a.uuid
        a.variables["other_loopback_leg_uuid"] = b.uuid
        b.variables["other_loopback_leg_uuid"] = a.uuid
        return a, b

    def _originate_routed(self, uuid: str, variables: dict[str, str], endpoint: str, app: tuple[str, str],
                          route: list[tuple[str, str]], spec: Endpoint) -> ApiResult:
        """A loopback call whose B leg runs a routed extension; the reply waits for B's answer (check3)."""
        outcome = self._new_outcome()
        a, b = self._loopback_legs(uuid, variables, endpoint)
        a.originating, a.originate_app = outcome, app
        a.agent_audio = _agent_voice(spec, app[0] != "socket" and all(name != "socket" for name, _ in route))
        timeout = float(variables.get("originate_timeout") or DEFAULT_ORIGINATE_TIMEOUT_S)
        self._later(timeout, functools.partial(self._ring_failed, a, "NO_ANSWER"))
        self._later(self.timing.route_s, functools.partial(self._run_dialplan, b, route))
        return ApiResult("", outcome=outcome)

    def _run_dialplan(self, ch: Channel, apps: list[tuple[str, str]]) -> None:
        """The extension's apps in order: answer/set run and go on; socket/park hold the channel; then hang up."""
        for app, arg in apps:
            if app == "socket":
                self._start_socket_app(ch, parse_socket_arg(arg))
                return
            if app == "park":
                self._start_park(ch)
                return
            if app == "hangup":
                self._later(self.timing.hangup_s, functools.partial(self._hangup_now, ch, arg or "NORMAL_CLEARING"))
                return
            app_uuid = new_uuid()
            self._emit(ch, "CHANNEL_EXECUTE", self._app_pairs(app, arg, app_uuid))
            if app == ANSWER:
                self._mark_answered(ch)
            elif app in ("set", "export"):
                name, _, value = arg.partition("=")
                ch.variables[name.strip()] = value.strip()
            self._emit(ch, "CHANNEL_EXECUTE_COMPLETE", self._app_pairs(app, arg, app_uuid, "_none_"))
        self._later(self.timing.hangup_s, functools.partial(self._hangup_now, ch, "NORMAL_CLEARING"))  # ran out

    def _originate_answered(self, a: Channel) -> None:
        """The originate returns +OK (20 ms after the answer, check3) and leg A runs its app."""
        outcome, a.originating = a.originating, None
        if outcome is None or a.hung_up:
            return
        outcome.resolve(f"+OK {a.uuid}\n")
        self._run_originate_app(a, *a.originate_app)

    def _answer_b_leg(self, a: Channel, b: Channel) -> None:
        """Loopback B leg's dialplan: answer (which answers A), then park (check2, check4, check6)."""
        app_uuid = new_uuid()
        self._emit(b, "CHANNEL_EXECUTE", self._app_pairs("answer", "", app_uuid))
        a.call_state, b.call_state = "DOWN", "RINGING"
        self._mark_answered(a)
        self._mark_answered(b)
        self._emit(b, "CHANNEL_EXECUTE_COMPLETE", self._app_pairs("answer", "", app_uuid, "_none_"))
        self._start_park(b)

    def _run_originate_app(self, a: Channel, app: str, arg: str) -> None:
        """park, socket and eavesdrop hold the leg; other apps (an inline dialplan: each in turn) run through
        the app queue, then the leg hangs up."""
        if a.peer and not a.cid_flipped:  # the originate is done: leg A's profile swaps caller and callee (check2)
            a.cid_flipped = True
            a.variables.update({"is_outbound": "true", "originate_early_media": "true", "originate_endpoint": "loopback",
                                "loopback_leg": "A", "endpoint_disposition": "ANSWER",
                                "pre_transfer_caller_id_number": a.number, "channel_cid_flipped": "yes"})
        if app == "park":
            self._start_park(a)
        elif app == "socket":
            a.variables.update({"current_application_data": arg, "current_application": "socket"})
            self._start_socket_app(a, parse_socket_arg(arg))
        elif app == "eavesdrop":
            self._start_eavesdrop(a, arg)
        else:
            a.hangup_when_done = True
            for name, value in parse_inline_dialplan(arg) if app == "inline" else [(app, arg)]:
                self._execute(a, name, value, "")

    def _start_socket_app(self, ch: Channel, target: SocketTarget) -> None:
        """``socket host:port [async] [full]``: FreeSWITCH connects out to the engine; with ``async`` the channel
        parks; without ``full`` the socket serves only a few commands (fsdouble.args)."""
        host, port = target.host, target.port
        ch.app, ch.app_uuid, ch.parked = "socket", new_uuid(), target.asynchronous
        ch.variables.update({"current_application_data": target.data,
                             "current_application": "socket", "socket_host": host})
        if ch.direction == "outbound":
            self._emit(ch, "CHANNEL_EXECUTE", self._app_pairs("socket", target.data, ch.app_uuid))
        try:
            sock = socket.create_connection((host, port), timeout=2.0)
        except OSError:
            if ch.direction == "inbound" and not ch.peer:  # place_call: its caller learns at once
                del self._channels[ch.uuid]
                raise
            self._later(self.timing.hangup_s, functools.partial(self._hangup_now, ch, "NORMAL_CLEARING"))
            return
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ch.conn = Conn(sock, self._on_command, self._on_gone, session=ch.uuid, authed=True)
        ch.conn.socket_mode, ch.conn.control = target.socket_mode, target.control
        self._conns.append(ch.conn)
        ch.conn.start()
        if ch.flavour == "sofia":  # parked at once, before the engine can subscribe (check5, check6b)
            self._emit(ch, "CHANNEL_PARK")

    def _start_eavesdrop(self, agent: Channel, target_uuid: str) -> None:
        """``&eavesdrop(uuid)`` as the originate's app: when it ends, the leg hangs up."""
        agent.app, agent.app_uuid = "eavesdrop", new_uuid()
        agent.variables.update({"current_application": "eavesdrop", "current_application_data": target_uuid})
        self._emit(agent, "CHANNEL_EXECUTE", self._app_pairs("eavesdrop", target_uuid, agent.app_uuid))
        target = self._live(target_uuid)
        if target is None:
            self._end_long_app(agent)
            self._later(self.timing.hangup_s, functools.partial(self._hangup_now, agent, "NORMAL_CLEARING"))
            return
        self._attach_eavesdrop(agent, target)
