"""The campaign store: campaigns, leads, attempts, blocklist, caller IDs. SQLite by default, PostgreSQL by URL.

``open_campaign_store("campaigns.db")`` or ``open_campaign_store("postgresql://…")``
gives a :class:`CampaignStore`; the SQL is the same for both (:mod:`voicebot.campaign.db`),
the schema is migrated at open (:mod:`voicebot.campaign.schema`).

The runner's loop, for one campaign::

    leads = store.claim_due(campaign_id, owner, now, limit=50, lease_s=60)   # leased to owner
    commands = scheduler.handle(Offered(now, tuple(leads)), now)
    applied = store.apply(commands, now, owner=owner)                         # Dial -> attempt row + UUID
    ... originate with applied.dials[lead_id] as the origination UUID ...
    with store.transaction() as tx:                                           # one commit for the end of a call
        store.end_attempt(uuid, AttemptEnd(...), now)
        store.apply(scheduler.handle(Ended(...), now), now, owner=owner)
        outbox.enqueue(tx.connection, ...)                                    # side effects, same transaction

The notification outbox (``voicebot.notify.outbox``) lives in the same database: run its ``migrate(tx.connection)``
once inside ``store.transaction()`` at start, then ``enqueue(tx.connection, messages)`` as above; both take the
driver's connection in an open transaction, and both schemas are versioned in the same ``schema_versions`` table.

An engine renews its leases while it works (:meth:`CampaignStore.renew`); if it
dies they expire and another engine's claim takes the leads back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from voicebot.campaign import claims, stats
from voicebot.campaign.claims import Applied
from voicebot.campaign.db import CampaignStoreError, Database, Tx
from voicebot.campaign.model import CampaignPolicy, Pacing, RetryRule
from voicebot.campaign.scheduler import Command, Lead
from voicebot.campaign.windows import CallingWindow

__all__ = ["Applied", "AttemptEnd", "Campaign", "CampaignStore", "CampaignStoreError", "LeadRow", "NewLead",
           "open_campaign_store"]

STATUSES = ("running", "paused", "stopped")
DEFAULT_LEASE_S = 60.0  # how long a claim or a call holds a lead before another engine may take it back


@dataclass(frozen=True)
class Campaign:
    """A campaign as stored. ``window`` is :meth:`CallingWindow.parse`'s spec (``{"mon-fri": ["08:00-21:00"]}``),
    ``holidays`` ISO dates, ``retries`` a rule per disposition, ``total_cap`` attempts per number across campaigns
    (0: no cap). ``amd_policy``: ``hang_up`` or ``leave_message`` (then ``amd_message`` is what the bot says after
    the beep; rows written before that name may hold ``hangup``, the same). ``settings``: what the definition file
    says beyond these (``time_zone``: ``region`` and ``column`` for imports; ``source``: the file)."""

    id: str
    name: str = ""
    flow_path: str = ""
    window: Mapping[str, Sequence[str]] = field(default_factory=lambda: {"all": ["08:00-21:00"]})
    holidays: tuple[str, ...] = ()
    retries: Mapping[str, RetryRule] = field(default_factory=dict)
    max_attempts: int = 5
    min_gap_s: float = 600.0
    daily_cap: int = 3
    total_cap: int = 0
    pacing: Pacing = field(default_factory=Pacing)
    caller_id_pool: str = ""
    agent_group: str = ""
    amd_policy: str = "hang_up"
    status: str = "paused"
    amd_message: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)

    def policy(self) -> CampaignPolicy:
        """What the scheduler applies (the window parsed; :class:`WindowError` if it cannot be)."""
        return CampaignPolicy(self.id, CallingWindow.parse(self.window, self.holidays), dict(self.retries),
                              self.max_attempts, self.min_gap_s, self.daily_cap, self.pacing, self.agent_group)


@dataclass(frozen=True)
class NewLead:
    """A lead to add: ``number`` in E.164 with its ``region`` and ``tz`` (see :mod:`voicebot.campaign.numbers`)."""

    number: str
    tz: str
    region: str = ""
    priority: int = 0
    variables: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LeadRow:
    """A stored lead, for reports and tests."""

    id: str
    campaign_id: str
    number: str
    status: str
    finish_reason: str
    attempts: int
    next_at: float
    lease_owner: str | None
    lease_until: float | None
    retries: dict[str, int]
    variables: dict[str, Any]


@dataclass(frozen=True)
class AttemptEnd:
    """How one dial ended (what the dialer, AMD and the call learned). Empty strings: not known."""

    disposition: str
    box: str = ""
    caller_id: str = ""
    sip_cause: str = ""
    early_media: str = ""
    amd: str = ""
    grade: str = ""
    tags: tuple[str, ...] = ()
    handoff: str = ""
    call_id: str = ""


_CAMPAIGN_COLUMNS = ("id", "name", "flow_path", "window_spec", "retry_policy", "max_attempts", "min_gap_s", "daily_cap",
                     "total_cap", "pacing", "caller_id_pool", "agent_group", "amd_policy", "status", "created_at",
                     "amd_message", "settings")
_LEAD_COLUMNS = ("id", "campaign_id", "number", "status", "finish_reason", "attempts", "next_at", "lease_owner",
                 "lease_until", "retries", "variables")


class CampaignStore:
    """Campaigns, leads and attempts in one database (one connection; one thread or greenlet, or a shared lock)."""

    def __init__(self, location: str, *, lock: AbstractContextManager[Any] | None = None) -> None:
        """``lock``: a re-entrant lock when threads or greenlets share this store (see :class:`Database`)."""
        self.db = Database(location, lock=lock)

    @property
    def backend(self) -> str:
        return self.db.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One transaction for several calls: every store method called inside joins it, and so can code that
        writes through ``tx.connection`` (the notification outbox). All commit together or none."""
        with self.db.transaction() as tx:
            yield tx

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> CampaignStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ campaigns

    def create_campaign(self, campaign: Campaign, now: float) -> None:
        """Add a campaign; :class:`CampaignStoreError` when the id exists or a field cannot be right."""
        campaign.policy()  # the window parses
        if campaign.status not in STATUSES:
            raise CampaignStoreError(f"campaign status {campaign.status!r}: use one of {', '.join(STATUSES)}")
        values = (campaign.id, campaign.name, campaign.flow_path,
                  json.dumps({"weekly": {k: list(v) for k, v in campaign.window.items()}, "holidays": list(campaign.holidays)}),
                  json.dumps({k: asdict(v) for k, v in campaign.retries.items()}), campaign.max_attempts, campaign.min_gap_s,
                  campaign.daily_cap, campaign.total_cap, json.dumps(asdict(campaign.pacing)), campaign.caller_id_pool,
                  campaign.agent_group, campaign.amd_policy, campaign.status, now, campaign.amd_message,
                  json.dumps(dict(campaign.settings)))
        with self.transaction() as tx:
            if tx.execute("SELECT 1 FROM campaign WHERE id = ?", (campaign.id,)).fetchone():
                raise CampaignStoreError(f"campaign {campaign.id!r} exists already")
            tx.execute(f"INSERT INTO campaign ({', '.join(_CAMPAIGN_COLUMNS)}) "
                       f"VALUES ({', '.join('?' for _ in _CAMPAIGN_COLUMNS)})", values)

    def campaign(self, campaign_id: str) -> Campaign:
        """The stored campaign; :class:`CampaignStoreError` when there is none."""
        with self.transaction() as tx:
            row = tx.execute(f"SELECT {', '.join(_CAMPAIGN_COLUMNS)} FROM campaign WHERE id = ?", (campaign_id,)).fetchone()
        if row is None:
            raise CampaignStoreError(f"no campaign {campaign_id!r}")
        return _campaign(row)

    def campaigns(self) -> list[tuple[Campaign, float]]:
        """Every campaign with its creation time (epoch s), oldest first."""
        with self.transaction() as tx:
            rows = tx.rows(f"SELECT {', '.join(_CAMPAIGN_COLUMNS)} FROM campaign ORDER BY created_at, id")
        return [(_campaign(row), float(row[_CAMPAIGN_COLUMNS.index("created_at")])) for row in rows]

    def set_status(self, campaign_id: str, status: str) -> None:
        """Run, pause or stop a campaign."""
        if status not in STATUSES:
            raise CampaignStoreError(f"campaign status {status!r}: use one of {', '.join(STATUSES)}")
        with self.transaction() as tx:
            if tx.execute("UPDATE campaign SET status = ? WHERE id = ?", (status, campaign_id)).rowcount != 1:
                raise CampaignStoreError(f"no campaign {campaign_id!r}")

    # ------------------------------------------------------------------ leads

    def add_leads(self, campaign_id: str, leads: Sequence[NewLead], now: float) -> None:
        """Insert leads due at ``now`` (one statement per lead, in the caller's or a new transaction)."""
        rows = [(campaign_id, lead.number, lead.region, lead.tz, lead.priority, json.dumps(dict(lead.variables)), now)
                for lead in leads]
        with self.transaction() as tx:
            tx.executemany("INSERT INTO lead (campaign_id, number, region, tz, priority, variables, next_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def numbers_in(self, campaign_id: str) -> set[str]:
        """Every number the campaign holds."""
        with self.transaction() as tx:
            return {str(r[0]) for r in tx.rows("SELECT number FROM lead WHERE campaign_id = ?", (campaign_id,))}

    def lead(self, lead_id: str) -> LeadRow:
        with self.transaction() as tx:
            row = tx.execute(f"SELECT {', '.join(_LEAD_COLUMNS)} FROM lead WHERE id = ?", (int(lead_id),)).fetchone()
        if row is None:
            raise CampaignStoreError(f"no lead {lead_id}")
        return _lead_row(row)

    def leads(self, campaign_id: str) -> list[LeadRow]:
        with self.transaction() as tx:
            rows = tx.rows(f"SELECT {', '.join(_LEAD_COLUMNS)} FROM lead WHERE campaign_id = ? ORDER BY id", (campaign_id,))
        return [_lead_row(row) for row in rows]

    def counts(self, campaign_id: str) -> dict[str, int]:
        """Leads per status."""
        with self.transaction() as tx:
            rows = tx.rows("SELECT status, COUNT(*) FROM lead WHERE campaign_id = ? GROUP BY status", (campaign_id,))
        return {str(status): int(n) for status, n in rows}

    # ------------------------------------------------------------------ claiming and the scheduler's commands

    def claim_due(self, campaign_id: str, owner: str, now: float, limit: int = 50,
                  lease_s: float = DEFAULT_LEASE_S) -> list[Lead]:
        """Lease up to ``limit`` due leads to ``owner`` until ``now + lease_s`` (see :mod:`voicebot.campaign.claims`);
        ``attempts_today`` and ``last_attempt_at`` count the number's attempts across campaigns. None unless the
        campaign is running."""
        with self.transaction() as tx:
            row = tx.execute("SELECT total_cap, status FROM campaign WHERE id = ?", (campaign_id,)).fetchone()
            if row is None:
                raise CampaignStoreError(f"no campaign {campaign_id!r}")
            if row[1] != "running":  # paused or stopped: nothing is due
                return []
            return claims.claim_due(tx, campaign_id, owner, now, limit, lease_s, int(row[0]))

    def apply(self, commands: Iterable[Command], now: float, *, owner: str, lease_s: float = DEFAULT_LEASE_S) -> Applied:
        """Write the scheduler's commands: a Dial leases the lead for the call (``lease_s``) and creates its attempt."""
        with self.transaction() as tx:
            return claims.apply(tx, commands, now, owner, lease_s)

    def renew(self, owner: str, now: float, lease_s: float = DEFAULT_LEASE_S) -> int:
        """Keep ``owner``'s leases (claimed and in-call leads) alive for ``lease_s`` more; call it well within ``lease_s``."""
        with self.transaction() as tx:
            return claims.renew(tx, owner, now, lease_s)

    def release(self, owner: str) -> int:
        """Return ``owner``'s claimed, undialed leads to the pool (a clean stop)."""
        with self.transaction() as tx:
            return claims.release(tx, owner)

    # ------------------------------------------------------------------ attempts

    def record_answer(self, attempt_uuid: str, now: float) -> None:
        with self.transaction() as tx:
            tx.execute("UPDATE attempt SET answered_at = ? WHERE uuid = ? AND answered_at IS NULL", (now, attempt_uuid))

    def end_attempt(self, attempt_uuid: str, end: AttemptEnd, now: float) -> bool:
        """Write how a dial ended; idempotent by origination UUID (a second end of one attempt changes nothing).
        False when the attempt is unknown or was ended already."""
        with self.transaction() as tx:
            changed = tx.execute(
                "UPDATE attempt SET ended_at = ?, disposition = ?, box = ?, caller_id = ?, sip_cause = ?, early_media = ?, "
                "amd = ?, grade = ?, tags = ?, handoff = ?, call_id = ? WHERE uuid = ? AND ended_at IS NULL",
                (now, end.disposition, end.box, end.caller_id, end.sip_cause, end.early_media, end.amd, end.grade,
                 json.dumps(list(end.tags)), end.handoff, end.call_id, attempt_uuid)).rowcount
        return int(changed) == 1

    def attempts(self, campaign_id: str) -> list[dict[str, Any]]:
        """Every attempt of the campaign, oldest first (columns by name)."""
        names = ("uuid", "lead_id", "number", "attempt_no", "owner", "disposition", "amd", "started_at", "answered_at",
                 "ended_at")
        with self.transaction() as tx:
            rows = tx.rows(f"SELECT {', '.join(names)} FROM attempt WHERE campaign_id = ? ORDER BY started_at, uuid",
                           (campaign_id,))
        return [dict(zip(names, row, strict=True)) for row in rows]

    # ------------------------------------------------------------------ what operators read (voicebot.campaign.stats)

    def report_facts(self, campaign_id: str, day: str = "") -> list[stats.Fact]:
        """The campaign's attempts for the funnel report (``day``: an ISO date, local to each lead)."""
        self.campaign(campaign_id)
        with self.transaction() as tx:
            return stats.facts(tx, campaign_id, day)

    def progress(self, campaign_id: str, now: float) -> stats.Progress:
        """Leads per status, attempts in flight, answer rates and the recent dial rate."""
        self.campaign(campaign_id)
        with self.transaction() as tx:
            return stats.progress(tx, campaign_id, now)

    def export_rows(self, campaign_id: str) -> list[dict[str, Any]]:
        """Every lead with its last attempt's outcome (:data:`voicebot.campaign.stats.EXPORT_COLUMNS`)."""
        self.campaign(campaign_id)
        with self.transaction() as tx:
            return stats.export_rows(tx, campaign_id)

    def put_runtime(self, campaign_id: str, owner: str, snapshot: Mapping[str, Any], now: float) -> None:
        """An engine's pacing snapshot for the campaign (dial budget, answer rate, ringing, talking, free bots);
        the latest per engine is kept."""
        with self.transaction() as tx:
            stats.put_runtime(tx, campaign_id, owner, snapshot, now)

    def runtime(self, campaign_id: str, now: float, max_age_s: float = 30) -> list[dict[str, Any]]:
        """One row per engine that reported within ``max_age_s``: ``{"owner", "updated_at", "snapshot"}``."""
        with self.transaction() as tx:
            return stats.runtime(tx, campaign_id, now, max_age_s)

    # ------------------------------------------------------------------ blocklist

    def block(self, numbers: Sequence[str], now: float, *, scope: str = "", reason: str = "",
              expires_at: float | None = None) -> None:
        """Blocklist E.164 ``numbers`` (``scope`` '' = every campaign, else one campaign id); waiting leads with
        them are finished ``blocked`` at once and no claim returns them while the entry lasts."""
        with self.transaction() as tx:
            claims.block(tx, list(numbers), scope, reason, now, expires_at)

    def blocked(self, numbers: Sequence[str], campaign_id: str, now: float) -> set[str]:
        """Which of ``numbers`` may not be called for ``campaign_id`` at ``now``."""
        with self.transaction() as tx:
            return claims.blocked_among(tx, list(numbers), campaign_id, now)

    # ------------------------------------------------------------------ caller-ID pool

    def add_caller_ids(self, pool: str, numbers: Mapping[str, str]) -> None:
        """Add numbers the operator holds (E.164 -> region) to ``pool``."""
        with self.transaction() as tx:
            tx.executemany("INSERT INTO caller_id (number, pool, region) VALUES (?, ?, ?) ON CONFLICT (number) "
                           "DO UPDATE SET pool = excluded.pool, region = excluded.region",
                           [(n, pool, region) for n, region in numbers.items()])

    def pick_caller_id(self, pool: str, region: str, now: float, *, daily_limit: int = 0) -> str | None:
        """The pool's number to show: of the callee's ``region`` when the pool has one, not cooling down, under
        ``daily_limit`` calls today (0: no limit), healthiest then least used; counted as used. None: none fits."""
        today = datetime.fromtimestamp(now, UTC).date().isoformat()
        with self.transaction() as tx:
            rows = tx.rows("SELECT number, region, CASE WHEN day = ? THEN daily_count ELSE 0 END, answer_rate FROM caller_id "
                           "WHERE pool = ? AND (cooldown_until IS NULL OR cooldown_until <= ?)", (today, pool, now))
            usable = [r for r in rows if not daily_limit or int(r[2]) < daily_limit]
            if not usable:
                return None
            best = min(usable, key=lambda r: (r[1] != region, -float(r[3]), int(r[2]), str(r[0])))
            tx.execute("UPDATE caller_id SET day = ?, daily_count = ? WHERE number = ?", (today, int(best[2]) + 1, best[0]))
        return str(best[0])

    def caller_id_outcome(self, number: str, answered: bool, now: float, *, alpha: float = 0.1,
                          cooldown_below: float = 0.05, cooldown_s: float = 3600.0) -> None:
        """Update a caller ID's answer-rate health; one answered too rarely (flagged as spam?) cools down."""
        with self.transaction() as tx:
            row = tx.execute("SELECT answer_rate FROM caller_id WHERE number = ?", (number,)).fetchone()
            if row is None:
                return
            rate = float(row[0]) + alpha * (float(answered) - float(row[0]))
            tx.execute("UPDATE caller_id SET answer_rate = ?, cooldown_until = ? WHERE number = ?",
                       (rate, now + cooldown_s if rate < cooldown_below else None, number))


def _campaign(row: Sequence[Any]) -> Campaign:
    data = dict(zip(_CAMPAIGN_COLUMNS, row, strict=True))
    window = json.loads(data["window_spec"])
    return Campaign(data["id"], data["name"], data["flow_path"], window["weekly"], tuple(window["holidays"]),
                    {k: RetryRule(**v) for k, v in json.loads(data["retry_policy"]).items()}, int(data["max_attempts"]),
                    float(data["min_gap_s"]), int(data["daily_cap"]), int(data["total_cap"]),
                    Pacing(**json.loads(data["pacing"])), data["caller_id_pool"], data["agent_group"],
                    data["amd_policy"], data["status"], data["amd_message"], json.loads(data["settings"]))


def _lead_row(row: Sequence[Any]) -> LeadRow:
    data = dict(zip(_LEAD_COLUMNS, row, strict=True))
    return LeadRow(str(data["id"]), data["campaign_id"], data["number"], data["status"], data["finish_reason"],
                   int(data["attempts"]), float(data["next_at"]), data["lease_owner"],
                   None if data["lease_until"] is None else float(data["lease_until"]), json.loads(data["retries"]),
                   json.loads(data["variables"]))


def open_campaign_store(location: str, *, lock: AbstractContextManager[Any] | None = None) -> CampaignStore:
    """The store at a file path, ``sqlite:///PATH`` or ``postgresql://…`` (created and migrated as needed)."""
    return CampaignStore(str(location), lock=lock)
