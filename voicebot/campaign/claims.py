"""Claiming due leads with leases, and writing the scheduler's commands back (run inside a store transaction).

A lead is *claimable* when it is ``pending``, ``next_at <= now`` and nobody
holds a live lease on it. Claiming leases it to an owner until ``now + lease_s``;
PostgreSQL selects with ``FOR UPDATE SKIP LOCKED`` so engines claiming at once
take different rows without waiting; SQLite's ``BEGIN IMMEDIATE`` serializes
claims. A lease that expires returns the lead: a pending lead is simply
claimable again; a lead left ``in_call`` by a dead engine has its open attempt
closed as ``worker_lost`` and goes back to ``pending``.

Every write of a lead names its owner (``lease_owner = owner``): an engine whose
lease expired and was taken over cannot dial, book or finish that lead any more
(the command is reported in :attr:`Applied.lost`). Blocklisting always applies.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from voicebot.campaign.db import Tx
from voicebot.campaign.scheduler import BlockNumber, Book, Command, Defer, Dial, Finish, Lead
from voicebot.campaign.windows import zone

LOST = "worker_lost"  # disposition of an attempt whose engine died (its lease expired while in a call)
NEVER_S = 86400.0  # a Defer without a time ("not within two weeks") looks again a day later


@dataclass
class Applied:
    """What :func:`apply` did: the origination UUID of each dial (lead id -> UUID) and the lead ids whose
    commands were refused because this owner no longer holds them (or the number is in a call elsewhere)."""

    dials: dict[str, str] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)


def local_day(at: float, tz: str) -> str:
    """The ISO date of epoch second ``at`` in zone ``tz``."""
    return datetime.fromtimestamp(at, zone(tz)).date().isoformat()


def recover_expired(tx: Tx, campaign_id: str, now: float) -> int:
    """Return the campaign's leads left in a call by a dead engine to the pool; the number of leads recovered."""
    orphans = [int(r[0]) for r in tx.rows("SELECT id FROM lead WHERE campaign_id = ? AND status = 'in_call' "
                                          "AND lease_until < ?", (campaign_id, now))]
    for lead_id in orphans:
        tx.execute("UPDATE attempt SET ended_at = ?, disposition = ? WHERE lead_id = ? AND ended_at IS NULL",
                   (now, LOST, lead_id))
        tx.execute("UPDATE lead SET status = 'pending', lease_owner = NULL, lease_until = NULL, next_at = ? "
                   "WHERE id = ? AND status = 'in_call'", (now, lead_id))
    return len(orphans)


def claim_due(tx: Tx, campaign_id: str, owner: str, now: float, limit: int, lease_s: float,
              total_cap: int = 0) -> list[Lead]:
    """Lease up to ``limit`` due leads of ``campaign_id`` to ``owner`` and return them as the scheduler sees them.

    Leads whose number is blocklisted (globally or for this campaign) are finished ``blocked`` and leads whose
    number reached ``total_cap`` attempts across campaigns are finished ``exhausted``; neither is returned.
    """
    recover_expired(tx, campaign_id, now)
    rows = tx.rows("SELECT id, number, tz, priority, attempts, retries FROM lead "
                   "WHERE campaign_id = ? AND status = 'pending' AND next_at <= ? "
                   "AND (lease_until IS NULL OR lease_until < ?) "
                   "ORDER BY priority DESC, next_at, id LIMIT ?" + tx.dialect.skip_locked,
                   (campaign_id, now, now, max(0, int(limit))))
    if not rows:
        return []
    numbers = sorted({str(r[1]) for r in rows})
    blocked = blocked_among(tx, numbers, campaign_id, now)
    stats = _number_stats(tx, numbers)
    leads: list[Lead] = []
    for lead_id, number, tz, priority, attempts, retries in rows:
        day, day_attempts, total, last_at = stats.get(number, ("", 0, 0, None))
        if number in blocked:
            _finish(tx, int(lead_id), "blocked", "number on the blocklist")
        elif total_cap and total >= total_cap:
            _finish(tx, int(lead_id), "exhausted", f"{total_cap} attempts to the number across campaigns")
        else:
            today = day_attempts if day and day == local_day(now, tz) else 0
            leads.append(Lead(str(lead_id), number, tz, int(priority), int(attempts), today, last_at, json.loads(retries)))
    _lease(tx, [int(lead.lead_id) for lead in leads], owner, now + lease_s)
    return leads


def _lease(tx: Tx, ids: Sequence[int], owner: str, until: float) -> None:
    for chunk in _chunks(ids, 500):
        marks = ", ".join("?" for _ in chunk)
        tx.execute(f"UPDATE lead SET lease_owner = ?, lease_until = ? WHERE id IN ({marks})", (owner, until, *chunk))


def blocked_among(tx: Tx, numbers: Sequence[str], campaign_id: str, now: float) -> set[str]:
    """Which of ``numbers`` are on the blocklist for ``campaign_id`` (global entries count) at ``now``."""
    out: set[str] = set()
    for chunk in _chunks(numbers, 500):
        marks = ", ".join("?" for _ in chunk)
        out.update(str(r[0]) for r in tx.rows(
            f"SELECT number FROM blocklist WHERE number IN ({marks}) AND scope IN ('', ?) "
            "AND (expires_at IS NULL OR expires_at > ?)", (*chunk, campaign_id, now)))
    return out


def _number_stats(tx: Tx, numbers: Sequence[str]) -> dict[str, tuple[str, int, int, float | None]]:
    out: dict[str, tuple[str, int, int, float | None]] = {}
    for chunk in _chunks(numbers, 500):
        marks = ", ".join("?" for _ in chunk)
        for number, day, day_attempts, total, last_at in tx.rows(
                f"SELECT number, day, day_attempts, total_attempts, last_attempt_at FROM number_day "
                f"WHERE number IN ({marks})", chunk):
            out[str(number)] = (str(day), int(day_attempts), int(total), float(last_at))
    return out


def apply(tx: Tx, commands: Iterable[Command], now: float, owner: str, lease_s: float) -> Applied:
    """Write the scheduler's commands (``WakeAt`` is the runner's business and ignored here)."""
    done = Applied()
    for command in commands:
        match command:
            case Dial():
                attempt_uuid = _dial(tx, command, now, owner, lease_s)
                if attempt_uuid is None:
                    done.lost.append(command.lead_id)
                else:
                    done.dials[command.lead_id] = attempt_uuid
            case Book():
                if not _book(tx, command, owner):
                    done.lost.append(command.lead_id)
            case Finish(lead_id=lead_id, status=status, reason=reason):
                if not _finish(tx, int(lead_id), status, reason, owner):
                    done.lost.append(lead_id)
            case Defer(lead_id=lead_id, until=until):
                if not _release(tx, int(lead_id), owner, until if until is not None else now + NEVER_S):
                    done.lost.append(lead_id)
            case BlockNumber(number=number, reason=reason):
                block(tx, [number], "", reason, now, None)
    return done


def _dial(tx: Tx, dial: Dial, now: float, owner: str, lease_s: float) -> str | None:
    """Mark the lead in a call, count the attempt for its number and create the attempt row; None when refused."""
    row = tx.execute("SELECT tz, attempts FROM lead WHERE id = ? AND lease_owner = ? AND status = 'pending'",
                     (int(dial.lead_id), owner)).fetchone()
    if row is None:
        return None
    tz, attempts = str(row[0]), int(row[1])
    tx.execute("SAVEPOINT dial")
    # counting first takes the number's row lock (PostgreSQL): a dial of the same number elsewhere waits, then sees ours
    tx.execute("INSERT INTO number_day (number, day, day_attempts, total_attempts, last_attempt_at) VALUES (?, ?, 1, 1, ?) "
               "ON CONFLICT (number) DO UPDATE SET day_attempts = CASE WHEN number_day.day = excluded.day "
               "THEN number_day.day_attempts + 1 ELSE 1 END, day = excluded.day, "
               "total_attempts = number_day.total_attempts + 1, last_attempt_at = excluded.last_attempt_at",
               (dial.number, local_day(now, tz), now))
    marked = tx.execute("UPDATE lead SET status = 'in_call', attempts = attempts + 1, last_attempt_at = ?, "
                        "lease_until = ? WHERE id = ? AND lease_owner = ? AND status = 'pending' AND NOT EXISTS "
                        "(SELECT 1 FROM lead other WHERE other.number = ? AND other.status = 'in_call')",
                        (now, now + lease_s, int(dial.lead_id), owner, dial.number)).rowcount
    if marked != 1:
        tx.execute("ROLLBACK TO SAVEPOINT dial")
        tx.execute("RELEASE SAVEPOINT dial")
        return None
    attempt_uuid = str(uuid.uuid4())
    tx.execute("INSERT INTO attempt (uuid, lead_id, campaign_id, number, attempt_no, owner, started_at) "
               "SELECT ?, id, campaign_id, number, ?, ?, ? FROM lead WHERE id = ?",
               (attempt_uuid, attempts + 1, owner, now, int(dial.lead_id)))
    tx.execute("RELEASE SAVEPOINT dial")
    return attempt_uuid


def _book(tx: Tx, book: Book, owner: str) -> bool:
    row = tx.execute("SELECT retries FROM lead WHERE id = ? AND lease_owner = ?", (int(book.lead_id), owner)).fetchone()
    if row is None:
        return False
    retries: dict[str, int] = json.loads(row[0])
    retries[book.disposition] = retries.get(book.disposition, 0) + 1
    tx.execute("UPDATE lead SET status = 'pending', next_at = ?, retries = ?, lease_owner = NULL, lease_until = NULL "
               "WHERE id = ?", (book.next_at, json.dumps(retries, sort_keys=True), int(book.lead_id)))
    return True


def _finish(tx: Tx, lead_id: int, status: str, reason: str, owner: str | None = None) -> bool:
    sql = ("UPDATE lead SET status = ?, finish_reason = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?"
           + (" AND lease_owner = ?" if owner is not None else ""))
    params: tuple[Any, ...] = (status, reason, lead_id) + ((owner,) if owner is not None else ())
    return int(tx.execute(sql, params).rowcount) == 1


def _release(tx: Tx, lead_id: int, owner: str, next_at: float) -> bool:
    return int(tx.execute("UPDATE lead SET next_at = ?, lease_owner = NULL, lease_until = NULL "
                          "WHERE id = ? AND lease_owner = ? AND status = 'pending'", (next_at, lead_id, owner)).rowcount) == 1


def block(tx: Tx, numbers: Sequence[str], scope: str, reason: str, now: float, expires_at: float | None) -> None:
    """Put ``numbers`` on the blocklist (``scope`` '' = every campaign) and finish their waiting leads at once."""
    rows = [(n, scope, reason, now, expires_at) for n in numbers]
    tx.executemany("INSERT INTO blocklist (number, scope, reason, added_at, expires_at) VALUES (?, ?, ?, ?, ?) "
                   "ON CONFLICT (number, scope) DO UPDATE SET reason = excluded.reason, added_at = excluded.added_at, "
                   "expires_at = excluded.expires_at", rows)
    where = "" if not scope else " AND campaign_id = ?"
    for chunk in _chunks(numbers, 500):
        marks = ", ".join("?" for _ in chunk)
        tx.execute(f"UPDATE lead SET status = 'blocked', finish_reason = ?, lease_owner = NULL, lease_until = NULL "
                   f"WHERE status = 'pending' AND number IN ({marks}){where}",
                   ("number on the blocklist", *chunk, *((scope,) if scope else ())))


def renew(tx: Tx, owner: str, now: float, lease_s: float) -> int:
    """Extend every live lease ``owner`` holds to ``now + lease_s``; the number of leads renewed."""
    return int(tx.execute("UPDATE lead SET lease_until = ? WHERE lease_owner = ? AND lease_until >= ?",
                          (now + lease_s, owner, now)).rowcount)


def release(tx: Tx, owner: str) -> int:
    """Give back ``owner``'s leases on leads not in a call (a clean stop); the number released."""
    return int(tx.execute("UPDATE lead SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ? "
                          "AND status = 'pending'", (owner,)).rowcount)


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
