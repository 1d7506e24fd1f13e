"""``voicebot campaign status|report|export``: what a campaign did and is doing, for people and for spreadsheets.

``status`` shows leads by status, attempts in flight, the answer rate, an ETA and the engines' pacing (their
latest snapshots, :meth:`CampaignStore.runtime`); ``--watch`` redraws it. ``report`` is the funnel report
(:mod:`voicebot.campaign.report`). ``export`` writes one CSV row per lead; phone numbers are personal data, so
they are masked and the flow variables left out unless ``--include-numbers``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from voicebot.campaign import report as reports
from voicebot.campaign.cli_db import Sub, action, find, opened
from voicebot.campaign.stats import EXPORT_COLUMNS, RECENT_S, Progress, tally
from voicebot.campaign.store import CampaignStore
from voicebot.cli_errors import EXIT_OK, UsageError
from voicebot.records.cli import mask_number

RUNTIME_MAX_AGE_S = 30.0  # an engine's snapshot older than this is not shown (the engine stopped or lost the campaign)
PACING_KEYS = ("dial_budget", "answer_rate", "ringing", "talking", "free_bots")  # shown first, in this order


def register(actions: Sub) -> None:
    a = action(actions, "status", "progress, calls in flight, answer rate, ETA and the engines' pacing")
    a.add_argument("campaign", metavar="CAMPAIGN")
    a.add_argument("--watch", nargs="?", type=float, const=2.0, default=None, metavar="SECONDS",
                   help="redraw every SECONDS (default 2) until Ctrl-C")
    a.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)  # with --watch: stop after this many
    a.set_defaults(run=cmd_status)
    a = action(actions, "report", "the funnel report: table, CSV or PNG charts, per campaign and per day")
    a.add_argument("campaign", metavar="CAMPAIGN")
    a.add_argument("--day", default="", metavar="YYYY-MM-DD", help="only that day (each lead's local date)")
    a.add_argument("--format", default="table", choices=("table", "csv"), help="table (default) or csv")
    a.add_argument("--png", type=Path, default=None, metavar="DIR", help="also write the charts as PNG files into DIR")
    a.set_defaults(run=cmd_report)
    a = action(actions, "export", "one CSV row per lead with its outcome (numbers masked unless --include-numbers)")
    a.add_argument("campaign", metavar="CAMPAIGN")
    a.add_argument("--out", type=Path, required=True, metavar="FILE.csv", help="the CSV file to write")
    a.add_argument("--include-numbers", action="store_true",
                   help="export phone numbers and flow variables as they are (personal data)")
    a.set_defaults(run=cmd_export)


# ------------------------------------------------------------------ status


def cmd_status(args: argparse.Namespace) -> int:
    """Print the campaign's live figures (once, or every --watch seconds)."""
    if args.watch is not None and args.watch <= 0:
        raise UsageError(f"--watch {args.watch:g}: the interval must be more than 0 seconds; write e.g. --watch 2")
    with opened(args) as store:
        find(store, args.campaign)
        shown = 0
        try:
            while True:
                text = status_text(store, args.campaign, time.time())
                clear = "\x1b[H\x1b[2J" if args.watch is not None and sys.stdout.isatty() else ""
                print(clear + text, flush=True)
                shown += 1
                if args.watch is None or (args.count and shown >= args.count):
                    return EXIT_OK
                time.sleep(args.watch)
        except KeyboardInterrupt:
            return EXIT_OK


def status_text(store: CampaignStore, campaign_id: str, now: float) -> str:
    """The status screen at ``now``."""
    campaign = store.campaign(campaign_id)
    progress = store.progress(campaign_id, now)
    leads = progress.leads
    total = sum(leads.values())
    by_status = " · ".join(f"{s.replace('_', ' ')} {leads[s]}" for s in ("pending", "in_call", "done", "exhausted", "blocked")
                           if leads.get(s))
    lines = [f"campaign {campaign.id} ({campaign.name}): {campaign.status}",
             f"leads: {total}" + (f" · {by_status}" if by_status else ""),
             f"attempts: {progress.ended} ended, {progress.in_flight} in flight; answer rate {_rate(progress)}",
             _eta_line(progress)]
    engines = store.runtime(campaign_id, now, RUNTIME_MAX_AGE_S)
    if not engines:
        lines.append(f"engines: none reported in the last {RUNTIME_MAX_AGE_S:g} s (pacing shows while an engine runs "
                     "this campaign)")
    for engine in engines:
        lines.append(f"engine {engine['owner']} ({now - engine['updated_at']:.0f} s ago): {_pacing(engine['snapshot'])}")
    return "\n".join(lines)


def _rate(progress: Progress) -> str:
    overall = f"{100.0 * progress.answered / progress.ended:.1f}%" if progress.ended else "-"
    recent = (f"{100.0 * progress.recent_answered / progress.recent_ended:.1f}%" if progress.recent_ended else "-")
    return f"{overall} (last 10 min: {recent})"


def _eta_line(progress: Progress) -> str:
    eta = progress.eta_s()
    rate = progress.recent_dials / RECENT_S
    if eta is None:
        return "dial rate: none in the last 10 min; ETA unknown"
    return (f"dial rate: {rate:.2f}/s over the last 10 min; ETA {_duration(eta)} for one more dial of every pending lead "
            "(retries add more)")


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{int(seconds % 60):02d}s"


def _pacing(snapshot: dict[str, Any]) -> str:
    keys = [k for k in PACING_KEYS if k in snapshot] + sorted(k for k in snapshot if k not in PACING_KEYS)
    return ", ".join(f"{k.replace('_', ' ')} {_value(snapshot[k])}" for k in keys) or "(empty snapshot)"


def _value(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------ report


def cmd_report(args: argparse.Namespace) -> int:
    """Print the funnel report; write its charts with --png."""
    if args.day:
        try:
            date.fromisoformat(args.day)
        except ValueError:
            raise UsageError(f"--day {args.day}: not a date; write it as YYYY-MM-DD, e.g. --day 2026-12-07") from None
    if args.png is not None and args.png.exists() and not args.png.is_dir():
        raise UsageError(f"--png {args.png}: a file, not a folder; name a folder for the charts")
    with opened(args) as store:
        campaign = find(store, args.campaign)
        facts = store.report_facts(campaign.id, args.day)
    total, days = tally(facts)
    title = f"campaign {campaign.id} ({campaign.name})" + (f", {args.day}" if args.day else "") + f": {len(facts)} dial(s)"
    print(reports.to_csv(total, days) if args.format == "csv" else reports.table(title, total, days), end="")
    if args.png is not None:
        written = reports.charts(total, campaign.id + (f" {args.day}" if args.day else ""), args.png)
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return EXIT_OK


# ------------------------------------------------------------------ export


def cmd_export(args: argparse.Namespace) -> int:
    """Write the leads as CSV; numbers masked and variables left out unless --include-numbers (and say so)."""
    if args.out.is_dir():
        raise UsageError(f"--out {args.out}: a directory; name the CSV file to write, e.g. --out leads.csv")
    if not args.out.parent.is_dir():
        raise UsageError(f"--out {args.out}: no folder {args.out.parent}; create it or write elsewhere")
    with opened(args) as store:
        campaign = find(store, args.campaign)
        leads = store.export_rows(campaign.id)
    names = sorted({name for lead in leads for name in lead["variables"]}) if args.include_numbers else []
    with args.out.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([c for c in EXPORT_COLUMNS if c != "variables"] + [f"var_{n}" for n in names])
        writer.writerows(_export_row(lead, names, args.include_numbers) for lead in leads)
    print(f"wrote {len(leads)} lead(s) of {campaign.id} to {args.out}")
    if not args.include_numbers:
        print("note: phone numbers are masked and flow variables left out (personal data); --include-numbers "
              "exports them", file=sys.stderr)
    return EXIT_OK


def _export_row(lead: dict[str, Any], names: list[str], include: bool) -> list[Any]:
    row = []
    for column in EXPORT_COLUMNS:
        value = lead[column]
        if column == "variables":
            continue
        if column == "number" and not include:
            value = mask_number(str(value))
        elif column in ("next_at", "last_attempt_at"):
            value = _iso(value)
        elif column == "last_tags":
            value = ",".join(value)
        row.append("" if value is None else value)
    return row + [lead["variables"].get(n, "") for n in names]


def _iso(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(float(at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

