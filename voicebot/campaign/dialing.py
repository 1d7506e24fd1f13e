"""Outbound dials on FreeSWITCH, sans-I/O: the originate command, hangup causes → dispositions, and the tracker
that turns what FreeSWITCH reports about each dial into the scheduler's :class:`Answered` / :class:`Ended`.

Rules:

1. An attempt's ``origination_uuid`` is its idempotency key (:func:`attempt_uuid`: the same campaign, lead and
   attempt number always give the same UUID). FreeSWITCH 1.11.1 does NOT refuse a duplicate
   ``origination_uuid``: it places a second call under a fresh UUID and answers ``+OK <that uuid>`` (capture
   ``dial_outcomes`` in tests/fixtures/esl). So the dialer never originates a UUID it tracks or has finished, and
   asks ``uuid_exists`` first; a ``+OK`` naming another UUID is a stray call, reported so the edge kills it.
2. The originate: ``originate {vars}ENDPOINT &socket('HOST:PORT async full')``: the socket app's argument is
   single-quoted (voicebot.esl.socketapp), values with spaces too; ``ignore_early_media=true``, because without
   it the originate succeeds at early media and runs the socket app on an unanswered leg (capture
   ``dial_early_media``; unicast before the answer crashes FreeSWITCH); the variables carry the caller ID, the ring
   time (``originate_timeout``, s), the campaign, lead and attempt ids (``vb_campaign_id``, ``vb_lead_id``,
    ``vb_attempt_id``, ``vb_attempt``), the lead's zone and the campaign's flow (``vb_tz``, ``vb_flow``, when set),
    the flow's variables (``vb_var_NAME``) and the campaign's answering-machine policy (``vb_amd``,
    ``vb_amd_message``, ``vb_amd_message_node``: voicebot.campaign.amdgate).
3. An attempt ends at the first of: ``CHANNEL_HANGUP`` / ``CHANNEL_HANGUP_COMPLETE`` for its UUID (cause and SIP
   status read from it), a ``BACKGROUND_JOB`` with ``-ERR CAUSE`` (``error/...`` endpoints make no channel at
   all), or its deadline (ring time + ``margin_s``) without an answer: ``no_answer`` when it was heard ringing,
   else ``network_error``. An attempt is never lost.
4. Before the answer the cause decides (:func:`classify_hangup`, replaceable by a :class:`HangupClassifier`);
   after the answer the call's own outcome does (the engine's record), supplied with :meth:`DialTracker.settle`.
   Times are epoch seconds.
"""

from __future__ import annotations

import uuid as uuidlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from voicebot.campaign.scheduler import Answered, Dial, Ended
from voicebot.esl.socketapp import originate_socket_app, originate_vars

RING_S = 30.0  # default ring time before FreeSWITCH gives up (originate_timeout, s)
MARGIN_S = 15.0  # how long past the ring time a silent dial waits before it is ended by the dialer (s)
OUTCOME_WAIT_S = 30.0  # after an answered call hangs up, how long its record may take before "dropped" (s)
FINISHED_KEEP = 100_000  # ended attempts remembered for rule 1 (the store remembers the rest)
_NAMESPACE = uuidlib.UUID("5b0c4f3e-2f6b-4e0c-9c1e-7a64a1d0b7c1")

# FreeSWITCH hangup causes (switch_types.h names) → dispositions of voicebot.campaign.model.
CAUSES: dict[str, str] = {
    "USER_BUSY": "busy", "NORMAL_CIRCUIT_CONGESTION": "network_error",
    "NO_ANSWER": "no_answer", "NO_USER_RESPONSE": "no_answer", "ALLOTTED_TIMEOUT": "no_answer",
    "PROGRESS_TIMEOUT": "no_answer", "ORIGINATOR_CANCEL": "no_answer",
    "UNALLOCATED_NUMBER": "invalid_number", "NO_ROUTE_DESTINATION": "invalid_number",
    "INVALID_NUMBER_FORMAT": "invalid_number", "NUMBER_CHANGED": "invalid_number",
    "CALL_REJECTED": "rejected", "USER_NOT_REGISTERED": "switched_off", "SUBSCRIBER_ABSENT": "switched_off",
}
# SIP final responses (variable_sip_term_status) win over the cause when present.
SIP_STATUSES: dict[str, str] = {
    "486": "busy", "600": "busy", "408": "no_answer", "487": "no_answer", "480": "switched_off",
    "404": "invalid_number", "484": "invalid_number", "410": "invalid_number", "604": "invalid_number",
    "603": "rejected", "403": "rejected",
}


def classify_hangup(cause: str, sip_status: str = "", early_media: bool = False) -> str:
    """The disposition of a dial that ended before the answer (rule 4); anything unknown is ``network_error``
    (retried soon, never final). ``early_media`` is for classifiers that listen to it (preanswer); unused here."""
    return SIP_STATUSES.get(sip_status.strip()) or CAUSES.get(cause.strip().upper(), "network_error")


class HangupClassifier(Protocol):
    """What decides a pre-answer disposition (the preanswer module plugs in here)."""

    def __call__(self, cause: str, sip_status: str = "", early_media: bool = False) -> str: ...


def attempt_uuid(campaign_id: str, lead_id: str, attempt: int) -> str:
    """The idempotency key of attempt ``attempt`` of ``lead_id`` in ``campaign_id`` (rule 1)."""
    return str(uuidlib.uuid5(_NAMESPACE, f"{campaign_id}\x1f{lead_id}\x1f{attempt}"))


@dataclass(frozen=True)
class Originate:
    """One dial as FreeSWITCH will see it (rule 2). ``ring_s``: seconds it may ring."""

    uuid: str
    endpoint: str
    caller_id: str
    socket_address: str
    campaign_id: str
    lead_id: str
    attempt: int
    ring_s: float = RING_S
    variables: Mapping[str, str] = field(default_factory=dict)
    amd: Mapping[str, str] = field(default_factory=dict)  # AmdCall.channel_vars(): empty when AMD is off
    tz: str = ""  # the lead's zone (vb_tz): the call's reference for date slots
    flow: str = ""  # the campaign's flow file (vb_flow): the engine answers with it

    def command(self) -> str:
        """The ``originate`` arguments (what follows ``bgapi``); ValueError naming a variable it cannot carry."""
        call_vars = {"origination_uuid": self.uuid, "origination_caller_id_number": self.caller_id,
                     "originate_timeout": str(max(1, round(self.ring_s))), "ignore_early_media": "true",
                     "vb_campaign_id": self.campaign_id,
                     "vb_lead_id": self.lead_id, "vb_attempt_id": self.uuid, "vb_attempt": str(self.attempt),
                     **({"vb_tz": self.tz} if self.tz else {}), **({"vb_flow": self.flow} if self.flow else {}),
                     **{f"vb_var_{k}": v for k, v in self.variables.items()}, **self.amd}
        return f"originate {{{originate_vars(call_vars)}}}{self.endpoint} {originate_socket_app(self.socket_address)}"


@dataclass
class Attempt:
    """One dial in flight, and what is known of it (what the attempt row keeps)."""

    uuid: str
    dial: Dial
    box: str
    started_at: float
    deadline: float
    job: str = ""
    ringing: bool = False
    early_media: bool = False
    answered_at: float | None = None
    hung_up_at: float | None = None
    cause: str = ""
    sip_status: str = ""
    sip_disposition: str = ""
    disposition: str = ""

    @property
    def lead_id(self) -> str:
        return self.dial.lead_id


Report = Answered | Ended


class DialTracker:
    """The dials in flight and their outcomes (rules 3 and 4). ``classify``: pre-answer causes → dispositions."""

    def __init__(self, classify: HangupClassifier = classify_hangup, *, margin_s: float = MARGIN_S,
                 outcome_wait_s: float = OUTCOME_WAIT_S) -> None:
        self.classify = classify
        self.margin_s, self.outcome_wait_s = margin_s, outcome_wait_s
        self.active: dict[str, Attempt] = {}
        self.finished: OrderedDict[str, Attempt] = OrderedDict()  # uuid → ended attempt (rule 1's memory)
        self._by_job: dict[str, str] = {}

    def known(self, uuid: str) -> bool:
        """Rule 1: this UUID was dialed by this tracker (in flight or ended)."""
        return uuid in self.active or uuid in self.finished

    def start(self, dial: Dial, uuid: str, box: str, ring_s: float, now: float, job: str = "") -> Attempt:
        """A dial went out (or was found already up on ``box``)."""
        if self.known(uuid):
            raise ValueError(f"attempt {uuid} was already dialed")
        attempt = Attempt(uuid, dial, box, now, now + ring_s + self.margin_s, job)
        self.active[uuid] = attempt
        if job:
            self._by_job[job] = uuid
        return attempt

    def channel_event(self, name: str, uuid: str, headers: Mapping[str, str], now: float) -> list[Report]:
        """A channel event from any box; events for UUIDs not in flight are ignored."""
        attempt = self.active.get(uuid)
        if attempt is None:
            return []
        if name == "CHANNEL_PROGRESS":
            attempt.ringing = True
        elif name == "CHANNEL_PROGRESS_MEDIA":
            attempt.ringing = attempt.early_media = True
        elif name == "CHANNEL_ANSWER" and attempt.answered_at is None:
            attempt.answered_at = now
            return [Answered(now, attempt.lead_id)]
        elif name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE") and attempt.hung_up_at is None:
            attempt.hung_up_at = now
            attempt.cause = headers.get("Hangup-Cause") or headers.get("variable_hangup_cause") or ""
            attempt.sip_status = headers.get("variable_sip_term_status", "")
            attempt.sip_disposition = headers.get("variable_sip_hangup_disposition", "")
            if attempt.answered_at is None:
                return self._end(attempt, self.classify(attempt.cause, attempt.sip_status, attempt.early_media), now)
            attempt.deadline = now + self.outcome_wait_s  # the call's record says how it ended (settle)
        return []

    def job_result(self, job: str, text: str, now: float) -> tuple[list[Report], str | None]:
        """A BACKGROUND_JOB body for ``job``: (reports, the UUID of a stray call to kill, rule 1)."""
        uuid = self._by_job.pop(job, None)
        attempt = self.active.get(uuid or "")
        if attempt is None:
            return [], None
        reply = text.strip()
        if reply.startswith("-ERR") and attempt.answered_at is None:
            attempt.cause = attempt.cause or reply[4:].strip() or "DESTINATION_OUT_OF_ORDER"
            return self._end(attempt, self.classify(attempt.cause, attempt.sip_status, attempt.early_media), now), None
        placed = reply[3:].strip() if reply.startswith("+OK") else ""
        return [], (placed if placed and placed != attempt.uuid else None)

    def settle(self, uuid: str, disposition: str, now: float, callback_at: float | None = None,
               handed_off: bool = False) -> list[Report]:
        """An answered call's outcome (from its record), once it hung up."""
        attempt = self.active.get(uuid)
        if attempt is None or attempt.answered_at is None:
            return []
        return self._end(attempt, disposition, now, callback_at, handed_off)

    def bind_job(self, job: str, uuid: str) -> None:
        """The bgapi of ``uuid`` got Job-UUID ``job`` (its BACKGROUND_JOB comes later)."""
        if uuid in self.active:
            self.active[uuid].job = job
            self._by_job[job] = uuid

    def end_now(self, uuid: str, disposition: str, now: float) -> list[Report]:
        """End ``uuid`` at once (a dial that could not go out)."""
        attempt = self.active.get(uuid)
        return self._end(attempt, disposition, now) if attempt is not None else []

    def awaiting_outcome(self) -> list[Attempt]:
        """Answered attempts that hung up and wait for their call's outcome."""
        return [a for a in self.active.values() if a.answered_at is not None and a.hung_up_at is not None]

    def tick(self, now: float) -> list[Report]:
        """Rule 3's deadline: dials that never reported back, and answered calls whose outcome never came."""
        out: list[Report] = []
        for attempt in [a for a in self.active.values() if now >= a.deadline]:
            if attempt.answered_at is None:
                attempt.cause = attempt.cause or "DIALER_TIMEOUT"
                out += self._end(attempt, "no_answer" if attempt.ringing else "network_error", now)
            elif attempt.hung_up_at is not None:
                out += self._end(attempt, "dropped", now)
        return out

    def next_deadline(self) -> float | None:
        """The earliest moment :meth:`tick` can end something (None: nothing can time out)."""
        waits = [a.deadline for a in self.active.values() if a.answered_at is None or a.hung_up_at is not None]
        return min(waits) if waits else None

    def _end(self, attempt: Attempt, disposition: str, now: float, callback_at: float | None = None,
             handed_off: bool = False) -> list[Report]:
        attempt.disposition = disposition
        self.active.pop(attempt.uuid, None)
        self._by_job = {j: u for j, u in self._by_job.items() if u != attempt.uuid}
        self.finished[attempt.uuid] = attempt
        while len(self.finished) > FINISHED_KEEP:
            self.finished.popitem(last=False)
        return [Ended(now, attempt.lead_id, disposition, callback_at, handed_off)]
