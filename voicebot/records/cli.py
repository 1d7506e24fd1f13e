"""``voicebot calls``: list call records, ``voicebot calls show CALL_ID`` prints one.

Phone numbers are masked (``+1415****100``) and call variables hidden unless
``--show-pii``; ``show`` prints the transcript, which is what it is for.
The database is ``--db``, else ``$VOICEBOT_DB``, else ``./voicebot-calls.sqlite``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from voicebot.cli_errors import EXIT_USAGE
from voicebot.records.model import CallRecord, TranscriptLine
from voicebot.records.store import SpooledStore, StoreError, open_store, redact_url, sqlite_path

DB_ENV = "VOICEBOT_DB"
DEFAULT_DB = "voicebot-calls.sqlite"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``calls`` (and ``calls show``) to the ``voicebot`` command's subparsers."""
    p = subparsers.add_parser("calls", help="list call records (newest first); 'calls show CALL_ID' prints one")
    _db_option(p, None)
    p.add_argument("--limit", type=int, default=50, help="at most this many calls (default 50)")
    p.add_argument("--disposition", help="only calls that ended with this disposition")
    p.add_argument("--tag", help="only calls with this tag")
    p.add_argument("--since", help="only calls started at or after this ISO 8601 time (UTC unless it has an offset)")
    p.add_argument("--show-pii", action="store_true", help="show phone numbers unmasked")
    p.set_defaults(run=cmd_list)
    actions = p.add_subparsers(metavar="ACTION")
    s = actions.add_parser("show", help="print one call record: transcript with timings, latency figures")
    s.add_argument("call_id", metavar="CALL_ID", help="the call id, or a unique start of it")
    _db_option(s, argparse.SUPPRESS)
    s.add_argument("--json", action="store_true", help="print the record as JSON")
    s.add_argument("--show-pii", action="store_true", default=argparse.SUPPRESS,
                   help="show phone numbers and call variables unmasked")
    s.set_defaults(run=cmd_show)


def _db_option(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument("--db", metavar="URL", default=default,
                   help=f"records database: a path, sqlite:///PATH or postgresql://... (default ${DB_ENV} or ./{DEFAULT_DB})")


# ------------------------------------------------------------------ commands


def cmd_list(args: argparse.Namespace) -> int:
    """Print one line per call, newest first."""
    store = _open(args)
    if store is None:
        return EXIT_USAGE
    with store:
        try:
            records = store.list(limit=args.limit, since=args.since, disposition=args.disposition, tag=args.tag)
        except (StoreError, ValueError) as exc:
            print(f"voicebot calls: {redact_url(_location(args))}: {exc}; check --db and the filters", file=sys.stderr)
            return EXIT_USAGE
        _note_pending(store)
    if not records:
        print("no calls")
        return 0
    print(f"{'STARTED (UTC)':<19}  {'CALL':<8}  {'CALLER':<16} {'DURATION':>8}  {'DISPOSITION':<18} {'LEVEL':<5}  TAGS")
    for record in records:
        print(list_line(record, show_pii=args.show_pii))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print one record in full (or as JSON)."""
    store = _open(args)
    if store is None:
        return EXIT_USAGE
    with store:
        try:
            record = _find(store, args.call_id)
        except LookupError as exc:
            print(f"voicebot calls show: {exc}; list the calls with `voicebot calls`", file=sys.stderr)
            return EXIT_USAGE
        except StoreError as exc:
            print(f"voicebot calls show: {redact_url(_location(args))}: {exc}; check --db", file=sys.stderr)
            return EXIT_USAGE
    show_pii = bool(getattr(args, "show_pii", False))
    if args.json:
        print(json.dumps(masked(record, show_pii).to_dict(), ensure_ascii=False, indent=2))
    else:
        print("\n".join(show_lines(record, show_pii=show_pii)))
    return 0


def _location(args: argparse.Namespace) -> str:
    return str(getattr(args, "db", None) or os.environ.get(DB_ENV) or DEFAULT_DB)


def _open(args: argparse.Namespace) -> SpooledStore | None:
    location = _location(args)
    path = sqlite_path(location)
    if path is not None and (not path.exists() or path.is_dir()):
        what = "a directory, not a records database" if path.is_dir() else "no records database there"
        print(f"voicebot calls: {path}: {what}; name the engine's database with --db or ${DB_ENV}", file=sys.stderr)
        return None
    try:
        return open_store(location, recover=False)
    except (StoreError, ValueError, ImportError, OSError) as exc:
        print(f"voicebot calls: {redact_url(location)}: {exc}; check --db (a records database the engine wrote)",
              file=sys.stderr)
        return None


def _find(store: SpooledStore, call_id: str) -> CallRecord:
    record = store.get(call_id)
    if record is not None:
        return record
    ids = store.find_ids(call_id, limit=5) if call_id else []
    if len(ids) == 1:
        found = store.get(ids[0])
        if found is not None:
            return found
    if len(ids) > 1:
        raise LookupError(f"{call_id!r} is the start of several call ids: {', '.join(ids)}")
    raise LookupError(f"no call {call_id!r}")


def _note_pending(store: SpooledStore) -> None:
    waiting = store.pending()
    if waiting:
        print(f"note: {waiting} record(s) wait in the spool {store.spool.file} until the database takes them",
              file=sys.stderr)


# ------------------------------------------------------------------ formatting


def mask_number(number: str) -> str:
    """``+14155550100`` → ``+1415****100``: the start and end of a number stay, the middle goes."""
    if not number:
        return "-"
    if len(number) <= 4:
        return "*" * len(number)
    if len(number) <= 8:
        return number[:2] + "****" + number[-2:]
    return number[:5] + "****" + number[-3:]


def masked(record: CallRecord, show_pii: bool) -> CallRecord:
    """The record with phone numbers masked and variable values hidden, unless ``show_pii``."""
    if show_pii:
        return record
    data = record.to_dict()
    data.update(caller=mask_number(record.caller), callee=mask_number(record.callee),
                variables={name: "***" for name in record.variables})
    return CallRecord.from_dict(data)


def list_line(record: CallRecord, *, show_pii: bool = False) -> str:
    """One line of ``voicebot calls``."""
    started = (record.started_at or "-")[:19].replace("T", " ")
    caller = record.caller if show_pii else mask_number(record.caller)
    return (f"{started:<19}  {record.call_id[:8]:<8}  {caller:<16} {_duration(record.duration_s):>8}  "
            f"{record.disposition or '-':<18} {record.level or '-':<5}  {','.join(record.tags) or '-'}")


def show_lines(record: CallRecord, *, show_pii: bool = False) -> list[str]:
    """``voicebot calls show``: the record, its transcript with timings and its latency figures."""
    shown = masked(record, show_pii)
    lines = [
        f"call          {record.call_id}",
        f"flow          {record.flow_id or '-'}" + (f" v{record.flow_version}" if record.flow_version else ""),
        f"caller        {shown.caller}",
        f"callee        {shown.callee}",
        f"started       {record.started_at or '-'}",
        f"answered      {record.answered_at or '-'}",
        f"ended         {record.ended_at or '-'}",
        f"duration      {_duration(record.duration_s)} ({record.duration_s:g} s)",
        f"disposition   {record.disposition or '-'}" + (f" (hangup cause {record.hangup_cause})" if record.hangup_cause else ""),
        f"level         {record.level or '-'}",
        f"tags          {', '.join(record.tags) or '-'}",
        f"path          {' > '.join(record.path) or '-'}",
        f"slots         {_pairs(record.slots)}",
        f"variables     {_pairs(shown.variables)}",
        f"recording     {record.recording_path or '-'}",
        f"engine        voicebot {record.engine_version}",
    ]
    lines += ["", "transcript (s since answer)", *([transcript_line(t) for t in record.transcript] or ["  -"])]
    lines += ["", "latency (ms)", *latency_lines(record.latency)]
    if record.handoff:
        lines += ["", "handoff", *handoff_lines(record.handoff)]
    if record.extras:
        lines += ["", "extras", *(f"  {k}: {json.dumps(v, ensure_ascii=False)}" for k, v in sorted(record.extras.items()))]
    return lines


def handoff_lines(handoff: dict[str, Any]) -> list[str]:
    """The handoff block: who, how, the outcome, then each time (s since answer) and the agents tried."""
    head = (f"  agent {handoff.get('agent_id') or '-'} ({handoff.get('group') or '-'}), mode {handoff.get('mode') or '-'}, "
            f"outcome {handoff.get('outcome') or '-'}, decision to connected {_ms(handoff.get('handoff_ms'))} ms")
    times = [f"{k.removesuffix('_at')} {v:.3f}" for k, v in handoff.items() if k.endswith("_at") and v is not None]
    tried = [f"{a.get('agent')}: {a.get('result')}" for a in handoff.get("attempts", [])]
    return [head, "  at " + (", ".join(times) or "-"), *(["  tried " + ", ".join(tried)] if tried else [])]


def transcript_line(line: TranscriptLine) -> str:
    """``[  12.34s] CALLER yes  (yes 0.92, barge-in)``."""
    who = "BOT   " if line.speaker == "bot" else "CALLER"
    text = f"[DTMF {line.dtmf}]" if line.dtmf else line.text
    notes = []
    if line.speaker == "caller" and not line.dtmf:
        notes.append(f"{line.intent} {line.score:.2f}" if line.intent else "no intent")
    if line.barge_in:
        notes.append("cut short" + (f" after {line.heard_ms} ms" if line.heard_ms is not None else "")
                     if line.speaker == "bot" else "barge-in")
    if line.ignored:
        notes.append("ignored: prompt could not be interrupted")
    if line.confirm:
        notes.append("confirmation " + line.confirm)
    return f"  [{line.t:8.2f}s] {who} {text}" + (f"  ({', '.join(notes)})" if notes else "")


def latency_lines(latency: dict[str, Any]) -> list[str]:
    """Per figure: p50/p95/max over the call and the per-turn values."""
    summary = latency.get("summary", {})
    lines = []
    for name, values in latency.items():
        if name == "summary" or not isinstance(values, list):
            continue
        s = summary.get(name) or {}
        per = ", ".join("-" if v is None else f"{v:g}" for v in values) or "-"
        lines.append(f"  {name:<13} p50 {_ms(s.get('p50'))}  p95 {_ms(s.get('p95'))}  max {_ms(s.get('max'))}  "
                     f"(n={s.get('n', 0)})  each: {per}")
    return lines or ["  -"]


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:g}"


def _duration(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "-"
