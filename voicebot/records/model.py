"""The call record: what is kept of a call after hang-up, built from the dialog outcome and the call's timeline.

Times of day (``started_at``, ``answered_at``, ``ended_at``) are UTC ISO 8601
strings with milliseconds and a ``Z`` (``2025-01-31T09:15:02.120Z``): fixed
width, so text order is time order in any database. Times inside the call
(transcript lines) are seconds since the call was answered.

Personal data: ``caller``, ``callee``, ``variables``, ``slots`` and the
transcript. Records go to the records database only, never to logs.

Extensible: ``extras`` is free-form JSON (agent, handoff figures...);
:meth:`CallRecord.from_json` fills fields missing in older records with
defaults and ignores keys it does not know.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from voicebot import __version__
from voicebot.dialog.outcome import Outcome, PromptRecord, Turn
from voicebot.timeline import Timeline

RECORD_VERSION = 1
UNFINISHED = "unfinished"  # disposition of a call whose dialog never ended (engine stopped, FreeSWITCH died)
SPEAKERS = ("caller", "bot")


@dataclass(frozen=True)
class TranscriptLine:
    """One line of the conversation. ``t``: seconds since answer (bot: first audio; caller: final transcript).

    Caller lines carry the matched ``intent`` and ``score``; ``barge_in`` means the
    caller spoke over a prompt and cut it, ``ignored`` that it could not be cut.
    Bot lines use ``barge_in`` for "this prompt was cut short" and ``heard_ms``
    for how much of it was played. ``dtmf`` is a key the caller pressed.
    """

    t: float
    speaker: str
    text: str
    intent: str = ""
    score: float = 0.0
    barge_in: bool = False
    ignored: bool = False
    node: str = ""
    dtmf: str = ""
    heard_ms: int | None = None
    confirm: str = ""  # caller lines: "asked" (an unsure hearing of ``intent`` was questioned), "confirmed", "denied"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TranscriptLine:
        """Read a line written by :meth:`to_dict` (unknown keys ignored)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class CallRecord:
    """Everything kept of one call. See the module docstring for time formats and personal data."""

    call_id: str
    flow_id: str = ""
    flow_version: str = ""
    caller: str = ""
    callee: str = ""
    started_at: str = ""
    answered_at: str | None = None
    ended_at: str | None = None
    duration_s: float = 0.0  # answer to end (talk time); 0 when never answered
    disposition: str = ""
    hangup_cause: str = ""  # from the telephony side, e.g. NORMAL_CLEARING
    path: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    level: str = ""
    slots: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    transcript: tuple[TranscriptLine, ...] = ()
    latency: dict[str, Any] = field(default_factory=dict)
    recording_path: str = ""
    extras: dict[str, Any] = field(default_factory=dict)
    handoff: dict[str, Any] = field(default_factory=dict)  # agent, prepare/bridge times (s since answer), figures, outcome
    amd: dict[str, Any] = field(default_factory=dict)  # answering-machine detection (campaign calls): see amd_summary
    engine_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists and dicts), with ``record_version``."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["path"], data["tags"] = list(self.path), list(self.tags)
        data["transcript"] = [line.to_dict() for line in self.transcript]
        return {"record_version": RECORD_VERSION, **data}

    def to_json(self) -> str:
        """One line of JSON (UTF-8 text kept as is)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallRecord:
        """Read :meth:`to_dict` output; missing fields take defaults, unknown keys are ignored."""
        if not data.get("call_id"):
            raise ValueError("a call record needs a call_id")
        known = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        known["path"] = tuple(known.get("path", ()))
        known["tags"] = tuple(known.get("tags", ()))
        known["transcript"] = tuple(TranscriptLine.from_dict(line) for line in known.get("transcript", ()))
        return cls(**known)

    @classmethod
    def from_json(cls, text: str | bytes) -> CallRecord:
        """Read :meth:`to_json` output."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a call record is a JSON object")
        return cls.from_dict(data)


# ------------------------------------------------------------------ building


def iso_utc(when: float | datetime) -> str:
    """Epoch seconds or an aware datetime as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (naive datetimes are taken as UTC)."""
    if isinstance(when, datetime):
        moment = when if when.tzinfo else when.replace(tzinfo=UTC)
    else:
        moment = datetime.fromtimestamp(round(when, 3), UTC)  # to the nearest millisecond
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """An ISO 8601 time (``Z`` or offset; naive is UTC) as an aware datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def record_from_call(
    call_id: str,
    outcome: Outcome,
    timeline: Timeline | None,
    *,
    flow_id: str,
    caller: str,
    callee: str,
    started_wall: float,
    recording_path: str = "",
    answered_wall: float | None = None,
    ended_wall: float | None = None,
    flow_version: str = "",
    hangup_cause: str = "",
    extras: Mapping[str, Any] | None = None,
    handoff: Mapping[str, Any] | None = None,
) -> CallRecord:
    """Build the record of a call from the dialog machine's outcome and the session's timeline.

    Wall-clock times are epoch seconds. ``started_wall``: the engine got the
    call; ``answered_wall``: media flowed (the machine's ``CallStarted``),
    default ``started_wall``. The call clock is mapped onto the wall clock at
    the answer. ``ended_wall`` is needed only when the dialog has not ended (the
    engine stopped mid-call): such a call gets disposition ``unfinished``.
    Bot lines come from the timeline's ``play`` entries (or the outcome's
    prompts without a timeline), caller lines from the outcome's turns plus
    any timeline ``final`` the dialog did not take.
    """
    origin = outcome.started_at if outcome.started_at is not None else 0.0
    answered = answered_wall if answered_wall is not None else started_wall
    ended = _ended_wall(outcome, origin, answered, ended_wall)
    timeline = timeline or Timeline()
    extra = dict(extras or {})
    if outcome.agent_id:
        extra.setdefault("agent_id", outcome.agent_id)
    if outcome.notifications:
        extra.setdefault("notifications", list(outcome.notifications))
    return CallRecord(
        call_id=call_id, flow_id=flow_id, flow_version=flow_version, caller=caller, callee=callee,
        started_at=iso_utc(started_wall),
        answered_at=iso_utc(answered) if outcome.started_at is not None else None,
        ended_at=iso_utc(ended),
        duration_s=round(max(0.0, ended - answered), 3) if outcome.started_at is not None else 0.0,
        disposition=outcome.disposition or UNFINISHED, hangup_cause=hangup_cause,
        path=tuple(outcome.path), tags=tuple(outcome.tags), level=outcome.level,
        slots=dict(outcome.slots), variables=dict(outcome.variables),
        transcript=tuple(transcript_lines(outcome, timeline)),
        latency=latency_figures(timeline), recording_path=recording_path, extras=extra, handoff=dict(handoff or {}),
        amd=amd_summary(timeline),
    )


def amd_summary(timeline: Timeline) -> dict[str, Any]:
    """The call's answering-machine detection (voicebot.campaign.amdgate), from its last ``amd`` timeline entry;
    empty when the call had none. Fields: ``policy`` (hang_up, leave_message), ``verdict`` (human, machine,
    notsure; None when the callee hung up first), ``reason`` (app_amd's cause, PHRASE or HUMANPHRASE), ``detail``,
    ``verdict_ms`` (ms after the answer), ``revised`` (a voicemail phrase overturned a HUMAN/NOTSURE verdict),
    ``action`` (flow, hang_up, message, callee_hung_up), ``flow_started_ms``, ``beep_ms``, ``message_started_ms``
    (ms after the answer, None when it did not happen), ``message_trigger`` (beep, silence, max_wait) and
    ``message_left`` (the message played to its end)."""
    entries = timeline.of("amd")
    if not entries:
        return {}
    return {k: v for k, v in entries[-1].items() if k not in ("t", "kind")}


def _ended_wall(outcome: Outcome, origin: float, answered: float, ended_wall: float | None) -> float:
    if outcome.ended_at is not None and outcome.started_at is not None:
        return answered + (outcome.ended_at - origin)
    return ended_wall if ended_wall is not None else answered


def transcript_lines(outcome: Outcome, timeline: Timeline) -> list[TranscriptLine]:
    """Bot and caller lines in time order; ``t`` in seconds since answer."""
    origin = outcome.started_at if outcome.started_at is not None else 0.0
    lines = _bot_lines(outcome.prompts, timeline) + _caller_lines(outcome.turns, timeline)
    shifted = [_shift(line, origin) for line in lines]
    return sorted(shifted, key=lambda line: (line.t, SPEAKERS.index(line.speaker)))


def _shift(line: TranscriptLine, origin: float) -> TranscriptLine:
    return replace(line, t=round(line.t - origin, 3))


def _bot_lines(prompts: Sequence[PromptRecord], timeline: Timeline) -> list[TranscriptLine]:
    by_id = {p.play_id: p for p in prompts}
    plays = timeline.of("play")
    if not plays:
        plays = [{"t": p.started_at or 0.0, "play_id": p.play_id, "node": p.node, "text": p.text} for p in prompts]
    lines = []
    for play in plays:
        prompt = by_id.get(play.get("play_id", -1))
        started = prompt.started_at if prompt is not None and prompt.started_at is not None else play["t"]
        lines.append(TranscriptLine(
            t=started, speaker="bot", text=str(play.get("text", "")), node=str(play.get("node", "")),
            barge_in=bool(prompt and prompt.interrupted),
            heard_ms=prompt.heard_ms if prompt is not None and prompt.finished_at is not None else None,
        ))
    return lines


def _caller_lines(turns: Sequence[Turn], timeline: Timeline) -> list[TranscriptLine]:
    lines = [
        TranscriptLine(t=turn.at, speaker="caller", text=turn.text, intent=turn.intent, score=round(turn.score, 3),
                       barge_in=turn.barge_in, ignored=turn.ignored, node=turn.node, dtmf=turn.dtmf,
                       confirm=turn.confirm)
        for turn in turns if turn.text or turn.dtmf
    ]
    for final in timeline.of("final"):
        text = str(final.get("text", ""))
        if text and not any(turn.text == text and abs(turn.at - final["t"]) < 0.005 for turn in turns):
            lines.append(TranscriptLine(t=final["t"], speaker="caller", text=text))  # heard, not taken by the dialog
    return lines


def latency_figures(timeline: Timeline) -> dict[str, Any]:
    """The call's latency figures (ms): per caller turn, per barge-in, per synthesized prompt, with p50/p95.

    Per-turn lists stay aligned with the caller's turns: ``None`` where a turn
    got no final transcript or no reply. Summaries skip the ``None`` values.
    """
    turns = timeline.turns()
    figures: dict[str, Any] = {
        "response_ms": [t["response_ms"] for t in turns],
        "asr_final_ms": [t["asr_final_ms"] for t in turns],
        "barge_in_ms": [b["reaction_ms"] for b in timeline.barge_ins()],
        "tts_first_ms": [p["tts_first_ms"] for p in timeline.of("play") if "tts_first_ms" in p and not p.get("cached")],
        "accurate_ms": [t["accurate_ms"] for t in turns],  # None where the fast final stood
    }
    figures["summary"] = {name: summarize(values) for name, values in figures.items()}
    return figures


def summarize(values: Sequence[float | int | None]) -> dict[str, float | int | None]:
    """Count, p50, p95 and max of the values that are not None (None figures when there are none)."""
    present = sorted(float(v) for v in values if v is not None)
    if not present:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    return {"n": len(present), "p50": _round(percentile(present, 50)), "p95": _round(percentile(present, 95)),
            "max": _round(present[-1])}


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of sorted values, interpolating linearly between ranks (as numpy does by default)."""
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _round(value: float) -> float | int:
    return int(value) if value == int(value) else round(value, 1)
