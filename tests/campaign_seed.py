"""A campaign's attempts written through the store as an engine writes them (claim, dial, answer, end, book or
finish), with every figure of its report counted by hand below.

Ten leads: seven in New York, two in Los Angeles, one in Shanghai. ``T0`` is Monday 2026-12-07 15:00 UTC (10:00 in
New York, 07:00 in Los Angeles, 23:00 in Shanghai).

| # | lead | started (UTC) | local | answered | disposition | grade | tags | handoff |
|---|---|---|---|---|---|---|---|---|
| 1 | NY1 | T0 | 12-07 10:00 | no | busy (booked for a retry) | | | |
| 2 | NY2 | T0+60 | 12-07 10:01 | no | no_answer | | | |
| 3 | NY3 | T0+120 | 12-07 10:02 | yes | machine | | | |
| 4 | NY4 | T0+180 | 12-07 10:03 | yes | completed | A | interested | connected |
| 5 | NY5 | T0+240 | 12-07 10:04 | yes | not_interested | D | not_interested | |
| 6 | LA1 | T0+300 | 12-07 07:05 | yes | transferred | B | | no_agent |
| 7 | LA2 | T0+360 | 12-07 07:06 | yes | callback | C | callback | |
| 8 | SH1 | T0+3600 | 12-08 00:00 | yes | do_not_call | | dnc | |
| 9 | NY1 | T0+86400 | 12-08 10:00 | yes | completed | A | interested, vip | agent_left |
| 10 | NY6 | T0+90000 | 12-08 11:00 | in flight | | | | |

NY7 is never dialed (pending).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from voicebot.campaign.scheduler import Book, Dial, Finish
from voicebot.campaign.store import AttemptEnd, CampaignStore, NewLead

T0 = datetime(2026, 12, 7, 15, 0, tzinfo=ZoneInfo("UTC")).timestamp()
NOW = T0 + 90030  # just after the in-flight dial
OWNER = "engine-a"
NY, LA, SH = "America/New_York", "America/Los_Angeles", "Asia/Shanghai"
LEADS = [("+12125550101", NY), ("+12125550102", NY), ("+12125550103", NY), ("+12125550104", NY),
         ("+12125550105", NY), ("+13105550101", LA), ("+13105550102", LA), ("+8613812345678", SH),
         ("+12125550106", NY), ("+12125550107", NY)]


@dataclass(frozen=True)
class Planned:
    at: float
    answered: bool
    disposition: str = ""  # '' : still in flight
    grade: str = ""
    tags: tuple[str, ...] = ()
    handoff: str = ""
    retry_at: float | None = None


PLAN = [
    Planned(T0, False, "busy", retry_at=T0 + 86400),
    Planned(T0 + 60, False, "no_answer"),
    Planned(T0 + 120, True, "machine"),
    Planned(T0 + 180, True, "completed", "A", ("interested",), "connected"),
    Planned(T0 + 240, True, "not_interested", "D", ("not_interested",)),
    Planned(T0 + 300, True, "transferred", "B", (), "no_agent"),
    Planned(T0 + 360, True, "callback", "C", ("callback",)),
    Planned(T0 + 3600, True, "do_not_call", "", ("dnc",)),
    Planned(T0 + 86400, True, "completed", "A", ("interested", "vip"), "agent_left"),
    Planned(T0 + 90000, False),
]

# the report, counted by hand from the table above
FUNNEL_ALL = {"dialed": 10, "connected": 7, "human": 6, "intent": 3, "passed_to_agent": 3, "agent_answered": 2}
FUNNEL_DAY2 = {"dialed": 3, "connected": 2, "human": 2, "intent": 1, "passed_to_agent": 1, "agent_answered": 1}
DISPOSITIONS = {"busy": 1, "no_answer": 1, "machine": 1, "completed": 2, "not_interested": 1, "transferred": 1,
                "callback": 1, "do_not_call": 1, "in_progress": 1}
GRADES = {"A": 2, "B": 1, "C": 1, "D": 1}
TAGS = {"interested": 2, "not_interested": 1, "callback": 1, "dnc": 1, "vip": 1}
BY_HOUR = {0: (1, 1), 7: (2, 2), 10: (6, 4), 11: (1, 0)}  # local hour -> (dialed, connected)
DAYS = {"2026-12-07": 7, "2026-12-08": 3}


def seed(store: CampaignStore, campaign_id: str) -> None:
    """Add the leads (in the order above, first highest priority) and run the plan through the store."""
    store.add_leads(campaign_id, [NewLead(n, tz, "CN" if tz == SH else "US", priority=-i, variables={"name": f"Lead {i}"})
                                  for i, (n, tz) in enumerate(LEADS)], T0)
    for step in PLAN:
        lead = store.claim_due(campaign_id, OWNER, step.at, limit=1)[0]
        uuid = store.apply([Dial(lead.lead_id, lead.number, lead.attempts + 1)], step.at, owner=OWNER).dials[lead.lead_id]
        if step.answered:
            store.record_answer(uuid, step.at + 5)
        if not step.disposition:
            continue
        store.end_attempt(uuid, AttemptEnd(step.disposition, grade=step.grade, tags=step.tags, handoff=step.handoff),
                          step.at + 60)
        after = (Book(lead.lead_id, step.retry_at, step.disposition) if step.retry_at is not None
                 else Finish(lead.lead_id, "done", step.disposition))
        assert not store.apply([after], step.at + 60, owner=OWNER).lost
