"""Before answer: how an unanswered dial ended, from its hangup cause, SIP code, early media and announcement.

Sans-I/O: tables and pure functions for causes and announcements; :class:`EarlyMediaDetector`
is fed 20 ms frames (8 kHz int16) with their end time and says what the early media is.
Names are the dispositions of :mod:`voicebot.campaign.model`.

Precedence (:func:`preanswer_disposition`): an operator announcement whose words say
what happened wins (a vacant number must never be redialed, whatever the carrier's cause
says); then the SIT code; then a busy or congestion tone; then the SIP code; then the
FreeSWITCH (Q.850) cause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from voicebot.campaign.earlymedia import EarlyMedia, SitCode

# ----------------------------------------------------------------- hangup causes (FreeSWITCH names of Q.850 causes)

BUSY, NO_ANSWER, REJECTED, NETWORK, SWITCHED_OFF, INVALID = (
    "busy", "no_answer", "rejected", "network_error", "switched_off", "invalid_number")

# Q.850 cause value -> (FreeSWITCH name, disposition). Anything not listed is a network_error (retryable, never final).
Q850: dict[int, tuple[str, str]] = {
    1: ("UNALLOCATED_NUMBER", INVALID),
    2: ("NO_ROUTE_TRANSIT_NET", NETWORK),
    3: ("NO_ROUTE_DESTINATION", NETWORK),
    6: ("CHANNEL_UNACCEPTABLE", NETWORK),
    16: ("NORMAL_CLEARING", NO_ANSWER),  # cleared before answer: the far end gave up ringing
    17: ("USER_BUSY", BUSY),
    18: ("NO_USER_RESPONSE", NO_ANSWER),
    19: ("NO_ANSWER", NO_ANSWER),
    20: ("SUBSCRIBER_ABSENT", SWITCHED_OFF),
    21: ("CALL_REJECTED", REJECTED),
    22: ("NUMBER_CHANGED", INVALID),
    23: ("REDIRECTION_TO_NEW_DESTINATION", NETWORK),
    25: ("EXCHANGE_ROUTING_ERROR", NETWORK),
    27: ("DESTINATION_OUT_OF_ORDER", NETWORK),
    28: ("INVALID_NUMBER_FORMAT", INVALID),
    29: ("FACILITY_REJECTED", NETWORK),
    30: ("RESPONSE_TO_STATUS_ENQUIRY", NETWORK),
    31: ("NORMAL_UNSPECIFIED", NETWORK),
    34: ("NORMAL_CIRCUIT_CONGESTION", NETWORK),
    38: ("NETWORK_OUT_OF_ORDER", NETWORK),
    41: ("NORMAL_TEMPORARY_FAILURE", NETWORK),
    42: ("SWITCH_CONGESTION", NETWORK),
    43: ("ACCESS_INFO_DISCARDED", NETWORK),
    44: ("REQUESTED_CHAN_UNAVAIL", NETWORK),
    45: ("PRE_EMPTED", NETWORK),
    50: ("FACILITY_NOT_SUBSCRIBED", NETWORK),
    52: ("OUTGOING_CALL_BARRED", NETWORK),  # our side is barred: not the lead's fault
    54: ("INCOMING_CALL_BARRED", REJECTED),  # the callee bars incoming calls
    57: ("BEARERCAPABILITY_NOTAUTH", NETWORK),
    58: ("BEARERCAPABILITY_NOTAVAIL", NETWORK),
    63: ("SERVICE_UNAVAILABLE", NETWORK),
    65: ("BEARERCAPABILITY_NOTIMPL", NETWORK),
    66: ("CHAN_NOT_IMPLEMENTED", NETWORK),
    69: ("FACILITY_NOT_IMPLEMENTED", NETWORK),
    79: ("SERVICE_NOT_IMPLEMENTED", NETWORK),
    81: ("INVALID_CALL_REFERENCE", NETWORK),
    88: ("INCOMPATIBLE_DESTINATION", NETWORK),
    95: ("INVALID_MSG_UNSPECIFIED", NETWORK),
    96: ("MANDATORY_IE_MISSING", NETWORK),
    97: ("MESSAGE_TYPE_NONEXIST", NETWORK),
    98: ("WRONG_MESSAGE", NETWORK),
    99: ("IE_NONEXIST", NETWORK),
    100: ("INVALID_IE_CONTENTS", NETWORK),
    101: ("WRONG_CALL_STATE", NETWORK),
    102: ("RECOVERY_ON_TIMER_EXPIRE", NO_ANSWER),  # SIP 408: the far end never answered the INVITE in time
    103: ("MANDATORY_IE_LENGTH_ERROR", NETWORK),
    111: ("PROTOCOL_ERROR", NETWORK),
    127: ("INTERWORKING", NETWORK),
}
# FreeSWITCH's own causes (no Q.850 value, or 600+ in its enum)
FREESWITCH_CAUSES: dict[str, str] = {
    "ORIGINATOR_CANCEL": NETWORK,  # we cancelled: no_answer only after the ring timeout (see classify_cause)
    "ALLOTTED_TIMEOUT": NO_ANSWER,
    "PROGRESS_TIMEOUT": NETWORK,  # not even a 180/183 in time: the route is dead
    "USER_NOT_REGISTERED": SWITCHED_OFF,
    "SUBSCRIBER_ABSENT": SWITCHED_OFF,
    "GATEWAY_DOWN": NETWORK,
    "MEDIA_TIMEOUT": NETWORK,
    "LOSE_RACE": NETWORK,
    "MANAGER_REQUEST": NETWORK,
    "SYSTEM_SHUTDOWN": NETWORK,
    "CRASH": NETWORK,
}
CAUSES: dict[str, str] = {name: dispo for name, dispo in Q850.values()} | FREESWITCH_CAUSES

# SIP final responses (RFC 3261 and friends). 4xx/5xx/6xx not listed: network_error.
SIP_CODES: dict[int, str] = {
    404: INVALID, 604: INVALID, 410: INVALID, 484: INVALID, 485: INVALID,  # not found, gone, incomplete, ambiguous
    486: BUSY, 600: BUSY,  # busy here / everywhere
    480: NO_ANSWER, 408: NO_ANSWER, 487: NO_ANSWER,  # temporarily unavailable, timeout, cancelled while ringing
    603: REJECTED, 403: REJECTED, 607: REJECTED, 608: REJECTED,  # decline, forbidden, unwanted, rejected
    401: NETWORK, 407: NETWORK,  # our trunk's credentials: not the lead's fault
    500: NETWORK, 502: NETWORK, 503: NETWORK, 504: NETWORK,
}


def classify_cause(cause: str, rang_s: float = 0.0, ring_timeout_s: float | None = None) -> str:
    """The disposition of a FreeSWITCH hangup cause (its name, any case, or the Q.850 number as text).

    ORIGINATOR_CANCEL is ``no_answer`` when we cancelled at the ring timeout (``rang_s`` >= ``ring_timeout_s``),
    ``network_error`` otherwise (a cancel for another reason is not the lead's doing). Unknown causes: network_error.
    """
    name = cause.strip().upper()
    if name.isdigit():
        return Q850.get(int(name), ("", NETWORK))[1]
    if name == "ORIGINATOR_CANCEL" and ring_timeout_s is not None and rang_s >= ring_timeout_s:
        return NO_ANSWER
    return CAUSES.get(name, NETWORK)


def classify_sip(code: int) -> str | None:
    """The disposition of a SIP final response; None for 1xx-2xx-3xx (not a failure)."""
    if code < 400:
        return None
    return SIP_CODES.get(code, NETWORK)


# ----------------------------------------------------------------- operator announcements (the words)

# (disposition, phrases). First match wins, in this order: vacant, unreachable, a busy network, a busy callee, and
# last the network's generic "try again later" (which a busy callee's announcement also says).
ANNOUNCEMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (INVALID, ("not in service", "no longer in service", "has been disconnected", "cannot be completed as dialed",
               "could not be completed as dialed", "is not a working number", "does not exist", "is incorrect",
               "check the number and dial again", "空号", "不存在", "号码有误", "停机", "已暂停服务")),
    (SWITCHED_OFF, ("switched off", "turned off", "powered off", "out of the coverage area", "outside the coverage area",
                    "out of coverage", "is not available", "is unavailable", "cannot be reached", "not reachable",
                    "关机", "不在服务区", "无法接通", "暂时无法接通")),
    (NETWORK, ("all circuits are busy", "network is busy", "网络忙", "线路忙")),
    (BUSY, ("is busy", "on another call", "正在通话中", "通话中", "用户忙")),
    (NETWORK, ("try again later", "try your call again later", "稍后再拨", "稍后再试")),
)
_HAN = re.compile(r"[\u3400-\u9fff]")
_NOT_WORD = re.compile(r"[^\w\u3400-\u9fff']+")


def normalise(text: str) -> str:
    """Lower case, punctuation to spaces, British "dialled" to "dialed", no spaces between Chinese characters."""
    flat = " " + _NOT_WORD.sub(" ", text.lower().replace("dialled", "dialed")).strip() + " "
    return re.sub(r"(?<=[\u3400-\u9fff]) (?=[\u3400-\u9fff])", "", flat)


def phrase_in(phrase: str, text: str) -> bool:
    """``phrase`` in normalised ``text``: Chinese as a substring, English on word boundaries."""
    if _HAN.search(phrase):
        return phrase in text
    return f" {phrase} " in text


def classify_announcement(transcript: str) -> str | None:
    """invalid_number / switched_off / busy / network_error for an operator announcement's words; None if unknown.

    Checked in :data:`ANNOUNCEMENTS`' order, so "the number you have dialed is not in service, please try again
    later" is a vacant number and "all circuits are busy" the network, not the callee.
    """
    text = normalise(transcript)
    for name, phrases in ANNOUNCEMENTS:
        if any(phrase_in(p, text) for p in phrases):
            return name
    return None


# ----------------------------------------------------------------- everything together


class Evidence(Enum):
    """Which evidence decided a pre-answer disposition."""

    ANNOUNCEMENT = "announcement"
    SIT = "sit"
    TONE = "tone"
    SIP = "sip"
    CAUSE = "cause"


@dataclass(frozen=True)
class PreAnswerVerdict:
    """The disposition of an unanswered dial, and the evidence that decided it."""

    disposition: str
    evidence: Evidence


def preanswer_disposition(cause: str, sip_code: int | None = None, early: EarlyMedia | None = None,
                          announcement: str | None = None, rang_s: float = 0.0,
                          ring_timeout_s: float | None = None) -> PreAnswerVerdict:
    """How an unanswered dial ended; see the module doc for which evidence wins."""
    if announcement:
        said = classify_announcement(announcement)
        if said is not None:
            return PreAnswerVerdict(said, Evidence.ANNOUNCEMENT)
    if early is not None and early.sit is not None:
        return PreAnswerVerdict(INVALID if early.sit in (SitCode.IC, SitCode.VC) else NETWORK, Evidence.SIT)
    if early is not None and early.kind.value in ("busy", "congestion"):
        return PreAnswerVerdict(BUSY if early.kind.value == "busy" else NETWORK, Evidence.TONE)
    if sip_code is not None:
        by_sip = classify_sip(sip_code)
        if by_sip is not None:
            return PreAnswerVerdict(by_sip, Evidence.SIP)
    return PreAnswerVerdict(classify_cause(cause, rang_s, ring_timeout_s), Evidence.CAUSE)
