"""Configuration of the FreeSWITCH test double: captured timings, agent endpoints, dialplan routes, wire tables.

Every delay in :class:`Timing` was measured in ``tests/fixtures/esl`` (the capture is named beside it).
:class:`Endpoint` says how an originated agent leg behaves (ring, answer or fail, what the agent says).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from fsdouble.audio import CallerAudio

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

CRASH_UNICAST = "unicast before answer would have crashed FreeSWITCH (docs/freeswitch.md)"
STUCK_L16 = ("L16 eavesdrop + unicast teardown left the caller stuck; FreeSWITCH had to be restarted "
             "(docs/freeswitch.md)")


@dataclass(frozen=True, slots=True)
class Timing:
    """Delays (s) between a command and what FreeSWITCH does, measured in the captures.

    "probe check9": measured on a real FreeSWITCH 1.11.1 (loopback legs, PCMU, an outbound socket per leg) by
    a probe that timed each event's arrival on the socket (its output: tests/fixtures/esl/check9_probe.results.txt);
    its raw event stream for the caller leg is the capture check9_caller_states_plain. The box was shared and
    busy, so the figures are those of the least-loaded runs.
    """

    app_start_s: float = 0.020  # sendmsg execute → CHANNEL_EXECUTE (check3 20.1 ms, check5 20.2 ms)
    answer_s: float = 0.040  # sendmsg answer → CHANNEL_ANSWER + EXECUTE_COMPLETE (check3 40.5, check5 40.4 ms)
    park_s: float = 0.020  # connect → CHANNEL_PARK of a loopback caller (check3 plain 20.1 ms)
    broadcast_start_s: float = 0.200  # uuid_broadcast → PLAYBACK_START (check7 200.7 ms; probe check9 202.3-202.5)
    broadcast_unicast_stop_s: float = 0.015  # uuid_broadcast → unicast stops: the park loop sees it at its next
    #                                           frame (probe check9: last caller packet +8.8, +11.8, +15, +16.6 ms)
    break_s: float = 0.020  # uuid_break → PLAYBACK_STOP, Playback-Status: break (check7 20.3 ms)
    hangup_s: float = 0.020  # uuid_kill / sendmsg hangup → CHANNEL_HANGUP (check2 20.3, check3 20.3 ms)
    hangup_complete_s: float = 0.0005  # CHANNEL_HANGUP → CHANNEL_HANGUP_COMPLETE (check3 0.55 ms)
    originate_s: float = 0.022  # api originate loopback → +OK <uuid> (check4/6/7 22.3-22.4 ms; check2 2.6 ms)
    route_s: float = 0.020  # a loopback B leg routes before its dialplan runs: originate loopback/7010 (set,
    #                         answer, ...) returns +OK at 43.1-44.8 ms (probe check9, 4 of 6; 26 ms in 2 of 6)
    originate_answered_s: float = 0.020  # B leg answered (by the engine) → originate's +OK (check3: BACKGROUND_JOB
    #                                      Event-Date-Timestamp 20.0 ms after the B leg's CHANNEL_ANSWER)
    bridge_unpark_s: float = 0.018  # uuid_bridge → CHANNEL_UNPARK (probe check9 18.7 ms, other runs 18; check6 20.5,
    #                                 check8 takeover_bridge 20.2-20.8 ms)
    bridge_s: float = 0.057  # uuid_bridge → CHANNEL_BRIDGE (probe check9 57.8 ms, other runs 57-58; check6 61.0 ms)
    bridge_audio_s: float = 0.0889  # uuid_bridge → first agent audio at the caller's ear (check8 takeover_bridge
    #                                 first_agent1000_at_human_ear_ms median 88.9, 86.6-89.8; check6 67-87 ms)
    park_after_bridge_s: float = 0.001  # agent CHANNEL_HANGUP → caller UNBRIDGE + PARK (check6: 21.0 ms after uuid_kill)
    unbridge_park_s: float = 0.0  # caller UNBRIDGE → its CHANNEL_PARK (park_after_bridge): the same ms (probe check9,
    #                               0.1 ms); a test may widen it to order the engine's re-arms deterministically
    transfer_s: float = 0.023  # uuid_transfer park inline → CHANNEL_UNPARK ... CHANNEL_PARK, all in the same ms
    #                            (probe check9 22.6, 23.1 ms; check4 20.6-20.9 ms)
    dtmf_s: float = 0.020  # uuid_recv_dtmf → first DTMF event, and between digits (check7 20.1 ms; check8 20.2-20.8)
    eavesdrop_ear_s: float = 0.038  # eavesdrop starts → first frame the agent hears (check8 listen: 61.4 ms after
    #                                 the originate, whose CHANNEL_EXECUTE eavesdrop came at 23.5 ms)
    unicast_first_s: float = 0.035  # sendmsg unicast → first UDP packet (docs/freeswitch.md)
    crash_s: float = 0.020  # unicast before answer: +OK, then the process dies (check4b, check4c)
    linger_extra_s: float = 0.3  # linger N closes N s + part of a second after hangup (check5: 5.07-5.6 s for 5)
    default_playback_s: float = 1.0  # a file whose length the double cannot know


ANSWER = "answer"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How an originated leg to a matching dial string behaves.

    ``ring_s``: seconds it rings (CHANNEL_PROGRESS) before the outcome (0: at once, as loopback legs);
    ``result``: "answer", or the hangup cause it fails with (USER_BUSY, NO_ANSWER, CALL_REJECTED, ...): the
    ``originate`` replies ``-ERR <cause>``; ``agent_audio``: what the agent says once up (None: a 1000 Hz
    tone at -12 dBFS); ``early_media``: seconds into the ring when the far end sends early media (ringback or
    an operator announcement: CHANNEL_PROGRESS_MEDIA); ``sip_status``: the SIP response a failing ``sofia/``
    leg records (default: the cause's usual one, :data:`SIP_FOR_CAUSE`). Loopback dial strings use only
    ``agent_audio`` (they answer as their dialplan says).
    """

    ring_s: float = 0.0
    result: str = ANSWER
    agent_audio: CallerAudio | None = None
    early_media: float | None = None  # seconds into the ring when early media starts (CHANNEL_PROGRESS_MEDIA)
    sip_status: str = ""  # the SIP final response of a failing sofia leg (variable_sip_term_status)

    def __post_init__(self) -> None:
        if self.ring_s < 0:
            raise ValueError(f"ring_s must be >= 0, not {self.ring_s}")
        if not re.fullmatch(r"[A-Za-z_]+", self.result):
            raise ValueError(f"result must be 'answer' or a hangup cause such as USER_BUSY, not {self.result!r}")

    @property
    def immediate(self) -> bool:
        """Answers at once (the double's behaviour for endpoints nobody configured)."""
        return self.ring_s == 0 and self.result.lower() == ANSWER


# The SIP response a sofia leg records for a cause (variable_sip_term_status), and Q.850 codes (hangup_cause_q850),
# as FreeSWITCH's sofia_glue/switch_channel cause tables pair them.
SIP_FOR_CAUSE = {"USER_BUSY": "486", "NO_ANSWER": "487", "UNALLOCATED_NUMBER": "404", "CALL_REJECTED": "603",
                 "NO_USER_RESPONSE": "408", "SUBSCRIBER_ABSENT": "480", "NORMAL_TEMPORARY_FAILURE": "503"}
Q850 = {"UNALLOCATED_NUMBER": "1", "NO_ROUTE_DESTINATION": "3", "NORMAL_CLEARING": "16", "USER_BUSY": "17",
        "NO_USER_RESPONSE": "18", "NO_ANSWER": "19", "SUBSCRIBER_ABSENT": "20", "CALL_REJECTED": "21",
        "DESTINATION_OUT_OF_ORDER": "27", "NORMAL_TEMPORARY_FAILURE": "41", "ORIGINATOR_CANCEL": "487"}


def match_endpoint(endpoints: dict[str, Endpoint], dial: str) -> Endpoint:
    """The :class:`Endpoint` for dial string ``dial``: an exact key, else the first glob (``user/*``) matching."""
    if dial in endpoints:
        return endpoints[dial]
    return next((spec for pattern, spec in endpoints.items() if fnmatch.fnmatchcase(dial, pattern)), Endpoint())


def parse_inline_dialplan(text: str) -> list[tuple[str, str]]:
    """FreeSWITCH's inline dialplan ``app:arg,app:arg`` → ``[(app, arg), ...]``; ValueError if empty."""
    apps = []
    for item in text.split(","):
        name, _, arg = item.strip().partition(":")
        if name.strip():
            apps.append((name.strip().lower(), arg.strip()))
    if not apps:
        raise ValueError(f"empty dialplan {text!r}")
    return apps


def require_loopback(host: str) -> None:
    """ValueError unless ``host`` is a loopback address (the double talks to 127.0.0.1 only)."""
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"the FreeSWITCH double only talks to 127.0.0.1, not {host!r}")


def split_var(item: str) -> tuple[str, str]:
    """``name=value`` → (name, value), stripped."""
    name, _, value = item.partition("=")
    return name.strip(), value.strip()


# ---------------------------------------------------------------- wire tables

# Event-Calling-File/-Function/-Line-Number per event, as captured (CHANNEL_PROGRESS: not in the captures).
CALLING: dict[str, tuple[str, str, str]] = {
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", "1569"),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", "3848"),
    "CHANNEL_BRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1689"),
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", "626"),
    "CHANNEL_DATA": ("mod_event_socket.c", "parse_command", "2018"),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", "2949"),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", "2972"),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", "3447"),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", "943"),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", "1002"),
    "CHANNEL_PROGRESS": ("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", "0"),
    "HEARTBEAT": ("switch_core.c", "send_heartbeat", "95"),  # capture dial_outcomes
    "CHANNEL_PROGRESS_MEDIA": ("switch_channel.c", "switch_channel_perform_mark_pre_answered", "3562"),
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", "2409"),
    "CHANNEL_UNBRIDGE": ("switch_ivr_bridge.c", "switch_ivr_multi_threaded_bridge", "1879"),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", "1213"),
    "DTMF": ("switch_channel.c", "switch_channel_dequeue_dtmf", "678"),
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", "1649"),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", "2023"),
}

# switch_channel_state_t (switch_types.h): Channel-State-Number of each running state.
STATE_NUMBERS = {"CS_NEW": 0, "CS_INIT": 1, "CS_ROUTING": 2, "CS_SOFT_EXECUTE": 3, "CS_EXECUTE": 4,
                 "CS_EXCHANGE_MEDIA": 5, "CS_PARK": 6, "CS_CONSUME_MEDIA": 7, "CS_HIBERNATE": 8, "CS_RESET": 9,
                 "CS_HANGUP": 10, "CS_REPORTING": 11, "CS_DESTROY": 12}

# What `myevents` subscribes to (mod_event_socket.c): no PLAYBACK_* or RECORD_* (capture check3 in tests/fixtures/esl).
MYEVENTS = frozenset({
    "CHANNEL_ANSWER", "CHANNEL_APPLICATION", "CHANNEL_BRIDGE", "CHANNEL_CREATE", "CHANNEL_DATA",
    "CHANNEL_DESTROY", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_ORIGINATE", "CHANNEL_UUID", "CHANNEL_OUTGOING", "CHANNEL_PARK",
    "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_STATE", "CHANNEL_UNBRIDGE", "CHANNEL_UNPARK",
    "DETECTED_SPEECH", "DTMF", "NOTALK", "TALK",
})

EVENT_NAMES = MYEVENTS | frozenset({
    "ALL", "CUSTOM", "CLONE", "CHANNEL_CALLSTATE", "CHANNEL_HOLD", "CHANNEL_UNHOLD", "API", "LOG", "INBOUND_CHAN",
    "OUTBOUND_CHAN", "STARTUP", "SHUTDOWN", "PUBLISH", "UNPUBLISH", "SESSION_CRASH", "MODULE_LOAD",
    "MODULE_UNLOAD", "MESSAGE", "PRESENCE_IN", "NOTIFY_IN", "PRESENCE_OUT", "PRESENCE_PROBE",
    "MESSAGE_WAITING", "MESSAGE_QUERY", "ROSTER", "CODEC", "BACKGROUND_JOB", "DETECTED_TONE",
    "PRIVATE_COMMAND", "HEARTBEAT", "TRAP", "ADD_SCHEDULE", "DEL_SCHEDULE", "EXE_SCHEDULE", "RE_SCHEDULE",
    "RELOADXML", "NOTIFY", "PHONE_FEATURE", "PHONE_FEATURE_SUBSCRIBE", "SEND_MESSAGE", "RECV_MESSAGE",
    "REQUEST_PARAMS", "GENERAL", "COMMAND", "SESSION_HEARTBEAT", "CLIENT_DISCONNECTED",
    "SERVER_DISCONNECTED", "SEND_INFO", "RECV_INFO", "RECV_RTCP_MESSAGE", "SEND_RTCP_MESSAGE", "CALL_SECURE",
    "NAT", "RECORD_START", "RECORD_STOP", "PLAYBACK_START", "PLAYBACK_STOP", "CALL_UPDATE", "FAILURE",
    "SOCKET_DATA", "MEDIA_BUG_START", "MEDIA_BUG_STOP", "CALL_SETUP_REQ", "CALL_SETUP_RESULT", "CALL_DETAIL",
    "DEVICE_STATE", "TEXT", "SHUTDOWN_REQUESTED", "DTMF",
})

SHOW_CHANNELS_HEADER = (
    "uuid,direction,created,created_epoch,name,state,cid_name,cid_num,ip_addr,dest,application,application_data,"
    "dialplan,context,read_codec,read_rate,read_bit_rate,write_codec,write_rate,write_bit_rate,secure,hostname,"
    "presence_id,presence_data,accountcode,callstate,callee_name,callee_num,callee_direction,call_uuid,"
    "sent_callee_name,sent_callee_num,initial_cid_name,initial_cid_num,initial_ip_addr,initial_dest,"
    "initial_dialplan,initial_context")
CODEC_SPEC_RE = re.compile(r"(?P<codec>[A-Za-z0-9]+)@(?P<rate>\d+)h(?:@(?P<ptime>\d+)i)?")
TONE_RE = re.compile(r"%\((?P<on>\d+),(?P<off>\d+)")
ORIGINATE_USAGE = ("-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] "
                   "[<cid_name>] [<cid_num>] [<timeout_sec>]\n")
LOG_LEVELS = {"console": 0, "alert": 1, "crit": 2, "err": 3, "error": 3, "warning": 4, "notice": 5, "info": 6,
              "debug": 7}
