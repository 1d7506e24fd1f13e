"""The campaign store's schema, as an ordered list of migrations (SQLite and PostgreSQL alike).

``MIGRATIONS[i]`` takes the schema from version ``i`` to ``i + 1``; the version
reached is kept in ``schema_versions`` (component ``campaign``). Append a step,
never edit one that shipped. ``{id}``, ``{real}``, ``{bigint}`` and ``{text}`` are
the backend's column types (literal braces are doubled).

Times are epoch seconds (UTC) in ``{real}`` columns; JSON is kept as text.
"""

from __future__ import annotations

V1 = (
    """CREATE TABLE campaign (
        id             TEXT PRIMARY KEY,
        name           TEXT NOT NULL DEFAULT '',
        flow_path      TEXT NOT NULL DEFAULT '',
        window_spec    TEXT NOT NULL,                  -- JSON: {{"weekly": {{"mon-fri": ["08:00-21:00"]}}, "holidays": []}}
        retry_policy   TEXT NOT NULL DEFAULT '{{}}',   -- JSON: {{"busy": {{"delay_s": 600, "max_retries": 2}}}}
        max_attempts   INTEGER NOT NULL,
        min_gap_s      {real} NOT NULL,
        daily_cap      INTEGER NOT NULL,               -- attempts per number per local day, across campaigns
        total_cap      INTEGER NOT NULL DEFAULT 0,     -- attempts per number ever, across campaigns (0: none)
        pacing         TEXT NOT NULL DEFAULT '{{}}',   -- JSON: the fields of model.Pacing
        caller_id_pool TEXT NOT NULL DEFAULT '',
        agent_group    TEXT NOT NULL DEFAULT '',
        amd_policy     TEXT NOT NULL DEFAULT 'hangup',
        status         TEXT NOT NULL DEFAULT 'paused' CHECK (status IN ('running', 'paused', 'stopped')),
        created_at     {real} NOT NULL
    )""",
    """CREATE TABLE lead (
        id              {id},
        campaign_id     TEXT NOT NULL REFERENCES campaign (id),
        number          TEXT NOT NULL,                 -- E.164
        region          TEXT NOT NULL DEFAULT '',
        tz              TEXT NOT NULL,
        priority        INTEGER NOT NULL DEFAULT 0,
        variables       TEXT NOT NULL DEFAULT '{{}}',  -- JSON object: the flow's variables
        status          TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'in_call', 'done', 'blocked', 'exhausted')),
        finish_reason   TEXT NOT NULL DEFAULT '',
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_at         {real} NOT NULL,
        last_attempt_at {real},
        retries         TEXT NOT NULL DEFAULT '{{}}',  -- JSON: disposition -> times it happened
        lease_owner     TEXT,
        lease_until     {real},
        UNIQUE (campaign_id, number)
    )""",
    # claims scan this in their ORDER BY (no sort of every due lead), checking next_at and the lease in the index
    "CREATE INDEX lead_claim ON lead (campaign_id, status, priority DESC, next_at, id, lease_until)",
    "CREATE INDEX lead_number ON lead (number)",
    "CREATE INDEX lead_lease ON lead (lease_owner)",
    """CREATE TABLE attempt (
        uuid          TEXT PRIMARY KEY,                -- the origination UUID: the idempotency key of a dial
        lead_id       {bigint} NOT NULL REFERENCES lead (id),
        campaign_id   TEXT NOT NULL,
        number        TEXT NOT NULL,
        attempt_no    INTEGER NOT NULL,
        owner         TEXT NOT NULL DEFAULT '',        -- the engine that dialed
        box           TEXT NOT NULL DEFAULT '',        -- the FreeSWITCH box
        caller_id     TEXT NOT NULL DEFAULT '',
        sip_cause     TEXT NOT NULL DEFAULT '',
        early_media   TEXT NOT NULL DEFAULT '',
        amd           TEXT NOT NULL DEFAULT '',
        disposition   TEXT NOT NULL DEFAULT '',
        grade         TEXT NOT NULL DEFAULT '',
        tags          TEXT NOT NULL DEFAULT '[]',      -- JSON array
        handoff       TEXT NOT NULL DEFAULT '',
        started_at    {real} NOT NULL,
        answered_at   {real},
        ended_at      {real},
        call_id       TEXT NOT NULL DEFAULT ''         -- the call record's id
    )""",
    "CREATE INDEX attempt_lead ON attempt (lead_id, started_at)",
    "CREATE INDEX attempt_number ON attempt (number, started_at)",
    "CREATE INDEX attempt_campaign ON attempt (campaign_id, started_at)",
    """CREATE TABLE blocklist (
        number     TEXT NOT NULL,
        scope      TEXT NOT NULL DEFAULT '',           -- '' global, else a campaign id
        reason     TEXT NOT NULL DEFAULT '',
        added_at   {real} NOT NULL,
        expires_at {real},                             -- NULL: never
        PRIMARY KEY (number, scope)
    )""",
    """CREATE TABLE caller_id (
        number         TEXT PRIMARY KEY,               -- E.164, a number the operator holds
        pool           TEXT NOT NULL,
        region         TEXT NOT NULL DEFAULT '',
        day            TEXT NOT NULL DEFAULT '',       -- UTC date daily_count counts
        daily_count    INTEGER NOT NULL DEFAULT 0,
        cooldown_until {real},
        answer_rate    {real} NOT NULL DEFAULT 1.0     -- running share of its calls answered (EWMA)
    )""",
    "CREATE INDEX caller_id_pool ON caller_id (pool, region)",
    """CREATE TABLE number_day (
        number          TEXT PRIMARY KEY,              -- attempts to one number across every campaign
        day             TEXT NOT NULL,                 -- the local date (in the lead's zone) of the last attempt
        day_attempts    INTEGER NOT NULL,              -- attempts on that day
        total_attempts  INTEGER NOT NULL,
        last_attempt_at {real} NOT NULL
    )""",
)

V2 = (
    # what a campaign definition file says beyond V1's columns (voicebot.campaign.definition)
    "ALTER TABLE campaign ADD COLUMN amd_message TEXT NOT NULL DEFAULT ''",  # the prompt left on a machine
    "ALTER TABLE campaign ADD COLUMN settings TEXT NOT NULL DEFAULT '{{}}'",  # JSON: time-zone rules, source file
    """CREATE TABLE engine_runtime (
        campaign_id TEXT NOT NULL,
        owner       TEXT NOT NULL,                     -- the engine (its lease owner name)
        snapshot    TEXT NOT NULL,                     -- JSON: dial budget, answer rate, ringing, talking, free bots
        updated_at  {real} NOT NULL,
        PRIMARY KEY (campaign_id, owner)
    )""",
)

MIGRATIONS: list[tuple[str, ...]] = [V1, V2]
