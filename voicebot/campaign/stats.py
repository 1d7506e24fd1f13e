"""The numbers operators read: engines' pacing snapshots, live progress, and the funnel report's figures.

The SQL here runs inside a store transaction (:class:`voicebot.campaign.db.Tx`) and is the same on SQLite and
PostgreSQL; counting by local hour and day happens in Python (:func:`tally`), because each lead has its own
time zone. Times are epoch seconds (UTC).

The funnel, one attempt at a time (a lead dialed three times counts three dials):

- **dialed**: every attempt; **connected**: answered (``answered_at`` set);
- **human**: connected and ended with a disposition where a person answered (the catalogue's ``human``:
  not ``machine``, not a pre-answer outcome);
- **intent**: human, and the flow graded the lead ``A`` or ``B`` or passed it to an agent;
- **passed to agent**: a handoff was tried (``handoff`` set); **agent answered**: an agent took the call
  (handoff outcome ``connected`` or ``agent_left``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from voicebot.campaign.db import Tx
from voicebot.campaign.model import disposition
from voicebot.campaign.windows import zone

FUNNEL = ("dialed", "connected", "human", "intent", "passed_to_agent", "agent_answered")
GRADES = ("A", "B", "C", "D")
AGENT_ANSWERED = ("connected", "agent_left")  # handoff outcomes where an agent took the call
RECENT_S = 600.0  # the dial rate for the ETA is measured over the last 10 minutes
WIDEST_OFFSET_S = 14 * 3600.0  # time zones run from UTC-12 to UTC+14: a local day lies within its UTC day +-14 h


@dataclass(frozen=True)
class Fact:
    """One attempt as the report sees it: when it started (epoch s), the lead's zone, and how it went."""

    started_at: float
    tz: str
    answered: bool
    disposition: str
    grade: str
    tags: tuple[str, ...]
    handoff: str

    def local(self) -> datetime:
        return datetime.fromtimestamp(self.started_at, zone(self.tz))


@dataclass
class Figures:
    """The report for one scope (the whole campaign or one local day)."""

    funnel: Counter[str] = field(default_factory=Counter)
    dispositions: Counter[str] = field(default_factory=Counter)
    grades: Counter[str] = field(default_factory=Counter)
    tags: Counter[str] = field(default_factory=Counter)
    dialed_by_hour: Counter[int] = field(default_factory=Counter)  # local hour of day of the attempt's start
    connected_by_hour: Counter[int] = field(default_factory=Counter)

    def connect_rate(self, hour: int) -> float | None:
        """Share of the hour's dials that were answered; None without dials."""
        dialed = self.dialed_by_hour[hour]
        return self.connected_by_hour[hour] / dialed if dialed else None


def stages(fact: Fact) -> list[str]:
    """The funnel stages this attempt reached (see the module docstring)."""
    out = ["dialed"]
    if not fact.answered:
        return out
    out.append("connected")
    if not fact.disposition or not disposition(fact.disposition).human:
        return out
    out.append("human")
    if fact.grade in ("A", "B") or fact.handoff:
        out.append("intent")
    if fact.handoff:
        out.append("passed_to_agent")
    if fact.handoff in AGENT_ANSWERED:
        out.append("agent_answered")
    return out


def tally(facts: Iterable[Fact]) -> tuple[Figures, dict[str, Figures]]:
    """Figures for every attempt, and per local day (ISO date in each lead's zone), days in order."""
    total, days = Figures(), dict[str, Figures]()
    for fact in facts:
        local = fact.local()
        day = days.setdefault(local.date().isoformat(), Figures())
        for figures in (total, day):
            _count(figures, fact, local.hour)
    return total, dict(sorted(days.items()))


def _count(figures: Figures, fact: Fact, hour: int) -> None:
    figures.funnel.update(stages(fact))
    figures.dispositions[fact.disposition or "in_progress"] += 1
    if fact.grade:
        figures.grades[fact.grade] += 1
    figures.tags.update(fact.tags)
    figures.dialed_by_hour[hour] += 1
    figures.connected_by_hour[hour] += fact.answered


def facts(tx: Tx, campaign_id: str, day: str = "") -> list[Fact]:
    """The campaign's attempts (with their leads' zones); ``day``: only those started on that local date."""
    sql = ("SELECT a.started_at, l.tz, a.answered_at, a.disposition, a.grade, a.tags, a.handoff "
           "FROM attempt a JOIN lead l ON l.id = a.lead_id WHERE a.campaign_id = ?")
    params: list[Any] = [campaign_id]
    if day:
        start = datetime.combine(date.fromisoformat(day), time(), UTC).timestamp()  # the day's UTC midnight
        sql += " AND a.started_at >= ? AND a.started_at < ?"
        params += [start - WIDEST_OFFSET_S, start + 86400.0 + WIDEST_OFFSET_S]
    rows = tx.rows(sql + " ORDER BY a.started_at, a.uuid", params)
    out = [Fact(float(at), str(tz), answered is not None, str(disp), str(grade), tuple(json.loads(tags)), str(handoff))
           for at, tz, answered, disp, grade, tags, handoff in rows]
    return [f for f in out if f.local().date().isoformat() == day] if day else out


# ------------------------------------------------------------------ live progress


@dataclass(frozen=True)
class Progress:
    """What ``voicebot campaign status`` shows: leads per status, attempts in flight, answer rates and the dial rate."""

    leads: Mapping[str, int]
    in_flight: int
    ended: int
    answered: int
    recent_ended: int  # attempts ended in the last RECENT_S
    recent_answered: int
    recent_dials: int  # attempts started in the last RECENT_S

    def eta_s(self) -> float | None:
        """Seconds until every pending lead has had one more dial at the recent dial rate (a lower bound: retries
        add more); None when nothing was dialed lately."""
        pending = self.leads.get("pending", 0)
        if not pending:
            return 0.0
        return pending / (self.recent_dials / RECENT_S) if self.recent_dials else None


def progress(tx: Tx, campaign_id: str, now: float) -> Progress:
    """The campaign's live figures at ``now``."""
    leads = {str(s): int(n) for s, n in tx.rows("SELECT status, COUNT(*) FROM lead WHERE campaign_id = ? GROUP BY status",
                                                (campaign_id,))}
    since = now - RECENT_S
    row = tx.execute(
        "SELECT COUNT(CASE WHEN ended_at IS NULL THEN 1 END), COUNT(ended_at), "
        "COUNT(CASE WHEN ended_at IS NOT NULL AND answered_at IS NOT NULL THEN 1 END), "
        "COUNT(CASE WHEN ended_at >= ? THEN 1 END), COUNT(CASE WHEN ended_at >= ? AND answered_at IS NOT NULL THEN 1 END), "
        "COUNT(CASE WHEN started_at >= ? THEN 1 END) FROM attempt WHERE campaign_id = ?",
        (since, since, since, campaign_id)).fetchone()
    return Progress(leads, *(int(v) for v in row))


# ------------------------------------------------------------------ export


EXPORT_COLUMNS = ("lead_id", "number", "region", "tz", "priority", "status", "finish_reason", "attempts", "next_at",
                  "variables", "last_disposition", "last_grade", "last_tags", "last_attempt_at")


def export_rows(tx: Tx, campaign_id: str) -> list[dict[str, Any]]:
    """Every lead of the campaign with its last attempt's disposition, grade and tags (columns: EXPORT_COLUMNS)."""
    rows = tx.rows(
        "SELECT l.id, l.number, l.region, l.tz, l.priority, l.status, l.finish_reason, l.attempts, l.next_at, l.variables, "
        "a.disposition, a.grade, a.tags, a.started_at FROM lead l LEFT JOIN attempt a ON a.uuid = "
        "(SELECT x.uuid FROM attempt x WHERE x.lead_id = l.id ORDER BY x.started_at DESC, x.uuid DESC LIMIT 1) "
        "WHERE l.campaign_id = ? ORDER BY l.id", (campaign_id,))
    out = []
    for row in rows:
        data = dict(zip(EXPORT_COLUMNS, row, strict=True))
        data["variables"] = json.loads(data["variables"])
        data["last_tags"] = json.loads(data["last_tags"]) if data["last_tags"] else []
        out.append(data)
    return out


# ------------------------------------------------------------------ engines' pacing snapshots


def put_runtime(tx: Tx, campaign_id: str, owner: str, snapshot: Mapping[str, Any], now: float) -> None:
    """Keep ``owner``'s latest pacing snapshot for ``campaign_id`` (one row per engine, replaced each time)."""
    tx.execute("INSERT INTO engine_runtime (campaign_id, owner, snapshot, updated_at) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (campaign_id, owner) DO UPDATE SET snapshot = excluded.snapshot, updated_at = excluded.updated_at",
               (campaign_id, owner, json.dumps(dict(snapshot), sort_keys=True), now))


def runtime(tx: Tx, campaign_id: str, now: float, max_age_s: float) -> list[dict[str, Any]]:
    """The snapshots of engines that reported within ``max_age_s`` of ``now``, by owner:
    ``{"owner": ..., "updated_at": epoch s, "snapshot": {...}}``."""
    rows = tx.rows("SELECT owner, updated_at, snapshot FROM engine_runtime WHERE campaign_id = ? AND updated_at >= ? "
                   "ORDER BY owner", (campaign_id, now - max_age_s))
    return [{"owner": str(o), "updated_at": float(t), "snapshot": json.loads(s)} for o, t, s in rows]
