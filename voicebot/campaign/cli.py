"""``voicebot campaign …``: the operators' commands (create, validate, import, import-dnc, start, pause, resume,
stop, list, status, report, export). Thin: each parses, checks, and calls the store.

The database is ``--db URL``, else ``campaigns.db`` of ``--config FILE`` (or of ``./voicebot.yaml`` when there is
one), else ``./voicebot-campaigns.sqlite``. ``start`` only marks the campaign running in the database: the
engines (``voicebot serve``) pick running campaigns up. Mistakes end as one line, ``voicebot: <what>: <cause>;
<fix>``, with the exit status of docs/cli.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from voicebot.campaign import cli_show
from voicebot.campaign.cli_db import Sub, find, opened
from voicebot.campaign.cli_db import action as _action
from voicebot.campaign.definition import ID_PATTERN, DefinitionError, load_definition
from voicebot.campaign.importer import ColumnMapping, TableError, import_dnc, import_leads, read_table
from voicebot.campaign.store import Campaign
from voicebot.cli_checks import check_text_file
from voicebot.cli_errors import EXIT_FAILED, EXIT_OK, UsageError

CAMPAIGN_FILE_FIX = "write it as in examples/campaigns/spring_offer_en.yaml (docs/campaigns.md, 'The campaign file')"
# action -> (statuses it applies to, the status it sets)
TRANSITIONS = {"start": (("paused",), "running"), "resume": (("paused",), "running"),
               "pause": (("running",), "paused"), "stop": (("running", "paused"), "stopped")}


def register(subparsers: Sub) -> None:
    """Add ``campaign`` and its actions to the ``voicebot`` command."""
    p = subparsers.add_parser("campaign", help="outbound campaigns: create, import leads, start, status, report, export",
                              description="Outbound campaigns (docs/campaigns.md).")
    p.set_defaults(run=_no_action)
    actions = p.add_subparsers(metavar="ACTION")
    _register_setup(actions)
    for name, (_, target) in TRANSITIONS.items():
        a = _action(actions, name, f"mark the campaign {target} (engines running `voicebot serve` follow)")
        a.add_argument("campaign", metavar="CAMPAIGN")
        a.set_defaults(run=cmd_transition, action=name)
    a = _action(actions, "list", "list the campaigns with their status and leads")
    a.set_defaults(run=cmd_list)
    cli_show.register(actions)


def _register_setup(actions: Sub) -> None:
    a = _action(actions, "create", "create a campaign from its definition file (YAML); it starts paused")
    a.add_argument("file", type=Path, metavar="FILE")
    a.add_argument("--name", metavar="ID", help="create it under this id instead of the file's `campaign:`")
    a.set_defaults(run=cmd_create)
    a = actions.add_parser("validate", help="check campaign definition files; every problem with file:line:col")
    a.add_argument("files", nargs="+", type=Path, metavar="FILE")
    a.set_defaults(run=cmd_validate)
    a = _action(actions, "import", "import leads from a CSV or XLSX file (all or nothing)")
    a.add_argument("campaign", metavar="CAMPAIGN")
    a.add_argument("file", type=Path, metavar="FILE")
    a.add_argument("--number-column", default="phone", metavar="COL", help="the column with the number (default phone)")
    a.add_argument("--region", default=None, help="country of national numbers, e.g. US, CN (default: the campaign's)")
    a.add_argument("--tz-column", default=None, metavar="COL", help="a column of IANA zones overriding the numbers' zones")
    a.add_argument("--priority-column", default="", metavar="COL", help="a column of whole numbers: higher dials first")
    a.add_argument("--var", action="append", default=[], metavar="COL=NAME", help="column COL fills flow variable NAME")
    a.add_argument("--skip-bad-rows", action="store_true", help="import the good rows even when some are bad")
    a.set_defaults(run=cmd_import)
    a = _action(actions, "import-dnc", "blocklist the numbers of a do-not-call list (CSV or XLSX)")
    a.add_argument("file", type=Path, metavar="FILE")
    a.add_argument("--column", default="", metavar="COL", help="the column with the number (default: the first)")
    a.add_argument("--region", default="", help="country of national numbers, e.g. US, CN")
    a.add_argument("--campaign", default="", metavar="CAMPAIGN", help="block for this campaign only (default: all)")
    a.add_argument("--reason", default="dnc list", help="why (kept with each entry; default 'dnc list')")
    a.set_defaults(run=cmd_import_dnc)


def _no_action(args: argparse.Namespace) -> int:
    raise UsageError("campaign: no action given; write e.g. `voicebot campaign list` (see `voicebot campaign --help`)")


# ------------------------------------------------------------------ create, validate


def _definition(path: Path) -> Any:
    check_text_file(path, "campaign file", CAMPAIGN_FILE_FIX)
    try:
        return load_definition(path)
    except DefinitionError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise UsageError(f"{path}: {len(exc.problems)} problem(s) in the campaign file; fix them and run again") from None


def cmd_create(args: argparse.Namespace) -> int:
    """Store a campaign from its definition file (paused) and load its caller IDs."""
    import re

    definition = _definition(args.file)
    campaign = definition.campaign
    if args.name is not None:
        if not re.match(ID_PATTERN, args.name):
            raise UsageError(f"--name {args.name}: not a campaign id; use 1-64 letters, digits, '.', '_' or '-'")
        campaign = replace(campaign, id=args.name)
    with opened(args, create=True) as store:
        if campaign.id in {c.id for c, _ in store.campaigns()}:
            raise UsageError(f"campaign {campaign.id}: exists already in {store.db.location}; give another id with "
                             "--name, or see it with `voicebot campaign status " + campaign.id + "`")
        with store.transaction():
            store.create_campaign(campaign, time.time())
            if definition.caller_ids:
                store.add_caller_ids(campaign.caller_id_pool, definition.caller_ids)
    print(f"created campaign {campaign.id} ({campaign.name}), paused, with {len(definition.caller_ids)} caller ID(s); "
          f"next: `voicebot campaign import {campaign.id} LEADS.csv`, then `voicebot campaign start {campaign.id}`")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Print every problem of the given campaign files; 1 when any has one."""
    bad = 0
    for path in args.files:
        try:
            check_text_file(path, "campaign file", CAMPAIGN_FILE_FIX)
            load_definition(path)
        except UsageError as exc:
            print(f"voicebot: {exc}", file=sys.stderr)
            bad += 1
        except DefinitionError as exc:
            print("\n".join(str(p) for p in exc.problems), file=sys.stderr)
            bad += 1
    print(f"{len(args.files)} campaign file(s) checked: {bad} with problems")
    return EXIT_FAILED if bad else EXIT_OK


# ------------------------------------------------------------------ import


class ProgressBar:
    """``rows [#####.....] 5000/10000`` on a terminal's stderr, redrawn in place; nothing elsewhere."""

    def __init__(self, stream: Any, width: int = 30) -> None:
        self.stream, self.width = stream, width
        self.on = bool(getattr(stream, "isatty", lambda: False)())

    def __call__(self, done: int, total: int) -> None:
        if not self.on or not total:
            return
        filled = self.width * done // total
        self.stream.write(f"\rrows [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _mapping(args: argparse.Namespace, campaign: Campaign, header: list[str]) -> ColumnMapping:
    """The column mapping from the flags, the campaign's time-zone rules filling what they leave out."""
    variables: dict[str, str] = {}
    for pair in args.var:
        column, sep, name = pair.partition("=")
        if not sep or not column.strip() or not name.strip():
            raise UsageError(f"--var {pair}: expects COLUMN=NAME; write e.g. --var name=customer_name")
        variables[column.strip()] = name.strip()
    _check_variables(campaign, variables)
    tz_column = args.tz_column
    if tz_column is None:
        tz_column = str(campaign.settings.get("time_zone", {}).get("column", ""))
        if tz_column and tz_column not in header:
            print(f"note: the file has no column {tz_column!r} (the campaign's time_zone.column): time zones come "
                  "from the numbers", file=sys.stderr)
            tz_column = ""
    return ColumnMapping(args.number_column, args.priority_column, tz_column, variables)


def _check_variables(campaign: Campaign, variables: dict[str, str]) -> None:
    """Each NAME of ``--var COL=NAME`` is a variable of the campaign's flow (when the flow can be read)."""
    from voicebot.cli_checks import flow_variable_names, parse_variables
    from voicebot.dialog.loader import FlowError, load_flow

    try:
        flow = load_flow(Path(campaign.flow_path))
    except (FlowError, OSError):
        return
    parse_variables([f"{name}=" for name in variables.values()], flow_variable_names(flow), f"flow {flow.id}")


def cmd_import(args: argparse.Namespace) -> int:
    """Import leads; every bad row with its row, column and reason; nothing imported when any is bad."""
    with opened(args) as store:
        campaign = find(store, args.campaign)
        try:
            header, rows = read_table(args.file)
            getattr(rows, "close", lambda: None)()  # only the header was needed here
            mapping = _mapping(args, campaign, header)
            region = args.region if args.region is not None else str(campaign.settings.get("time_zone", {}).get("region", ""))
            report = import_leads(store, campaign.id, args.file, mapping, default_region=region,
                                  skip_bad_rows=args.skip_bad_rows, progress=ProgressBar(sys.stderr))
        except TableError as exc:
            raise UsageError(f"{exc}; check the file and the column flags (--number-column, --tz-column, --var)") from None
    for problem in report.errors + report.skipped:
        print(f"{args.file}: {problem}", file=sys.stderr)
    if report.refused:
        print(f"voicebot: {args.file}: {len(report.errors)} bad row(s) of {report.total}, nothing imported; fix them, "
              "or pass --skip-bad-rows to import the good rows", file=sys.stderr)
        return EXIT_FAILED
    print(f"imported {report.imported} of {report.total} row(s) into {campaign.id}: {len(report.skipped)} skipped "
          f"(duplicates, already in the campaign, blocklisted), {len(report.errors)} bad row(s) left out")
    return EXIT_OK


def cmd_import_dnc(args: argparse.Namespace) -> int:
    """Blocklist a do-not-call list's numbers (bad rows are reported and skipped)."""
    with opened(args, create=True) as store:
        if args.campaign:
            find(store, args.campaign)
        try:
            report = import_dnc(store, args.file, column=args.column, default_region=args.region, scope=args.campaign,
                                reason=args.reason)
        except TableError as exc:
            raise UsageError(f"{exc}; check the file and --column") from None
    for problem in report.errors:
        print(f"{args.file}: {problem}", file=sys.stderr)
    scope = f"campaign {args.campaign}" if args.campaign else "every campaign"
    print(f"blocklisted {report.imported} number(s) for {scope}; {len(report.errors)} bad row(s) of {report.total} skipped")
    return EXIT_OK


# ------------------------------------------------------------------ start, pause, resume, stop, list


def cmd_transition(args: argparse.Namespace) -> int:
    """Set the campaign's status, if the action applies to the status it has."""
    allowed, target = TRANSITIONS[args.action]
    with opened(args) as store:
        campaign = find(store, args.campaign)
        if campaign.status == target:
            print(f"campaign {campaign.id} is {target} already")
            return EXIT_OK
        if campaign.status not in allowed:
            raise UsageError(f"campaign {campaign.id}: it is {campaign.status}, and {args.action} applies to a "
                             f"{' or '.join(allowed)} one; a stopped campaign stays stopped: create a new one "
                             "(`voicebot campaign create FILE --name NEW`)")
        store.set_status(campaign.id, target)
        pending = store.counts(campaign.id).get("pending", 0)
    print(f"campaign {campaign.id}: {campaign.status} -> {target}")
    if target == "running" and not pending:
        print(f"note: no lead waits to be dialed; import some with `voicebot campaign import {campaign.id} FILE`",
              file=sys.stderr)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    """One line per campaign."""
    with opened(args) as store:
        rows = [(c, created, store.counts(c.id)) for c, created in store.campaigns()]
    if not rows:
        print("no campaigns")
        return EXIT_OK
    print(f"{'CAMPAIGN':<20} {'STATUS':<8} {'LEADS':>7} {'PENDING':>7} {'CREATED (UTC)':<16}  NAME")
    for campaign, created, counts in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(created))
        print(f"{campaign.id:<20} {campaign.status:<8} {sum(counts.values()):>7} {counts.get('pending', 0):>7} "
              f"{stamp:<16}  {campaign.name}")
    return EXIT_OK

