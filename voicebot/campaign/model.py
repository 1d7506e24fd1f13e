"""What a campaign is: dispositions, retry rules, pacing and the policy the scheduler applies. Plain data, no I/O.

A *disposition* is how one attempt ended (``busy``, ``no_answer``, ``machine``,
``not_interested``…). The catalogue says, for each, whether a human answered,
whether the lead was contacted, whether it is final, and whether (and when) it
is retried. A campaign's :class:`RetryRule` per disposition overrides the
catalogue's default delay and caps how many times that disposition is retried
(VICIdial's "recycling rules"). ``max_attempts`` caps a lead's attempts overall.

Times are epoch seconds (UTC) unless a name says otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from voicebot.campaign.windows import CallingWindow


@dataclass(frozen=True)
class Disposition:
    """How an attempt ended, and what that means for the lead.

    ``human``: a person answered. ``contacted``: the bot spoke with the right person.
    ``final``: never dial this lead again. ``retry_s``: default delay before a retry (None: no retry).
    ``block``: the number goes on the blocklist (a refusal: "stop calling me").
    """

    name: str
    human: bool = False
    contacted: bool = False
    final: bool = False
    retry_s: float | None = None
    block: bool = False


MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0

# The catalogue. Pre-answer outcomes come from SIP causes and early media; after answer, from the bot.
CATALOGUE: dict[str, Disposition] = {d.name: d for d in (
    Disposition("busy", retry_s=10 * MINUTE),
    Disposition("no_answer", retry_s=2 * HOUR),
    Disposition("rejected", retry_s=4 * HOUR),  # the callee declined the call (SIP 603/CALL_REJECTED)
    Disposition("network_error", retry_s=5 * MINUTE),  # trunk or switch trouble: not the lead's fault
    Disposition("switched_off", retry_s=4 * HOUR),  # operator announcement: phone off / out of reach
    Disposition("invalid_number", final=True),  # vacant number: never redial (SIP 404/UNALLOCATED_NUMBER, 空号)
    Disposition("machine", retry_s=3 * HOUR),  # answering machine detected
    Disposition("dropped", human=True, retry_s=30 * MINUTE),  # answered, then lost before the bot could talk
    Disposition("callback", human=True, contacted=True, retry_s=DAY),  # "call me later": the caller's time wins
    Disposition("completed", human=True, contacted=True, final=True),  # the flow ran to its end
    Disposition("transferred", human=True, contacted=True, final=True),  # passed to an agent
    Disposition("not_interested", human=True, contacted=True, final=True),
    Disposition("wrong_person", human=True, final=True),
    Disposition("do_not_call", human=True, contacted=True, final=True, block=True),  # a refusal stops all calls
    Disposition("no_response", human=True, retry_s=DAY),  # answered but silent throughout
)}


def disposition(name: str) -> Disposition:
    """The catalogue entry for ``name``; an unknown name is a retryable network-like failure (never final)."""
    return CATALOGUE.get(name) or Disposition(name, retry_s=HOUR)


@dataclass(frozen=True)
class RetryRule:
    """Retry ``disposition`` after ``delay_s``, at most ``max_retries`` times (then the lead is finished)."""

    delay_s: float
    max_retries: int


@dataclass(frozen=True)
class Pacing:
    """How fast the dialer goes.

    ``max_cps``: new dials per second (trunk and carrier limit).
    ``max_dial_level``: at most this many lines dialing per free bot (power dialing: the bot takes every answer).
    ``min_answer_rate``: the answer-rate estimate never drops below this (so the dialer never floods).
    ``answer_rate_alpha``: weight of the newest outcome in the running answer rate (EWMA).
    ``handoff_rate``: expected share of answered calls passed to an agent before any was seen.
    """

    max_cps: float = 2.0
    max_dial_level: float = 3.0
    min_answer_rate: float = 0.2
    answer_rate_alpha: float = 0.1
    handoff_rate: float = 0.1


@dataclass(frozen=True)
class CampaignPolicy:
    """Everything the scheduler needs to decide for one campaign.

    ``window``: calling hours in each lead's own time zone. ``min_gap_s``: minimum time between two attempts to
    one number. ``daily_cap``: attempts per number per local day (across campaigns: the store counts them).
    ``agent_group``: hot leads go to this group; empty when the campaign hands nothing to agents.
    """

    campaign_id: str
    window: CallingWindow
    retries: Mapping[str, RetryRule] = field(default_factory=dict)
    max_attempts: int = 5
    min_gap_s: float = 10 * MINUTE
    daily_cap: int = 3
    pacing: Pacing = field(default_factory=Pacing)
    agent_group: str = ""

    def retry_after(self, name: str, times_before: int) -> float | None:
        """Seconds until the next attempt after a ``name`` outcome that happened ``times_before`` times already;
        None when the lead is finished (final, refusal, or that disposition's retries used up)."""
        entry = disposition(name)
        if entry.final or entry.block:
            return None
        rule = self.retries.get(name)
        if rule is None:
            return entry.retry_s
        return rule.delay_s if times_before < rule.max_retries else None
