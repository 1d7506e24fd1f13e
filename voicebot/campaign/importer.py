"""Importing leads (CSV or XLSX) and do-not-call lists into the campaign store: all or nothing.

The first row names the columns. A :class:`ColumnMapping` says which column is
the number, which (optional) the priority and the time-zone override, and which
columns become flow variables. Numbers are normalized to E.164 with
:func:`voicebot.campaign.numbers.normalize` against a default region.

Every problem is reported with its row (as a spreadsheet numbers it: the header
is row 1), column and reason. *Errors* (invalid number, missing value, bad
priority, unknown zone) refuse the whole import unless ``skip_bad_rows`` is set,
which imports the good rows and reports the rest. *Skips* (a number twice in the
file, already in the campaign, or blocklisted) never refuse it: they are
reported and left out. The rows go in within one transaction: nothing is ever
half-imported.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.campaign.numbers import NumberError, normalize
from voicebot.campaign.store import CampaignStore, NewLead
from voicebot.campaign.windows import WindowError, zone

Progress = Callable[[int, int], None]  # (rows checked, rows in the file); the last call comes after the commit
CHUNK = 1000  # rows per insert batch and per progress report


class TableError(ValueError):
    """The file cannot be read as a table (missing, unreadable, no header, unknown column in the mapping)."""


@dataclass(frozen=True)
class ColumnMapping:
    """Which column holds what. ``variables`` maps a column to the flow variable it fills (same name if you like)."""

    number: str
    priority: str = ""
    tz: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)

    def columns(self) -> list[str]:
        return [c for c in (self.number, self.priority, self.tz, *self.variables) if c]


@dataclass(frozen=True)
class RowProblem:
    """``row`` as a spreadsheet numbers it (header = 1), the ``column`` it is about and the ``reason``."""

    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did: ``imported`` rows, ``errors`` (bad rows), ``skipped`` (duplicates, blocklisted),
    ``refused`` when errors stopped it (then nothing was written)."""

    total: int = 0
    imported: int = 0
    errors: list[RowProblem] = field(default_factory=list)
    skipped: list[RowProblem] = field(default_factory=list)
    refused: bool = False


def read_table(path: Path) -> tuple[list[str], Iterator[list[Any]]]:
    """The header and the data rows of a CSV (UTF-8, BOM allowed) or XLSX file (first sheet, read-only mode)."""
    if not path.is_file():
        raise TableError(f"{path}: no such file")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return _read_xlsx(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise TableError(f"{path}: not UTF-8 text (save the sheet as CSV UTF-8): {err.reason}") from err
    sample = "\n".join(lines[:5])
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = csv.reader(lines, dialect)
    header = next(rows, None)
    if not header:
        raise TableError(f"{path}: empty file (the first row must name the columns)")
    return [h.strip() for h in header], (list(r) for r in rows)


def _read_xlsx(path: Path) -> tuple[list[str], Iterator[list[Any]]]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises many kinds for a file that is no workbook
        raise TableError(f"{path}: not a readable XLSX workbook ({type(err).__name__})") from err
    rows = book.worksheets[0].iter_rows(values_only=True)
    header = next(rows, None)
    if not header:
        book.close()
        raise TableError(f"{path}: empty sheet (the first row must name the columns)")

    def data() -> Iterator[list[Any]]:
        try:
            yield from (list(r) for r in rows)
        finally:
            book.close()
    return ["" if h is None else str(h).strip() for h in header], data()


def _text(value: Any) -> str:
    """A cell as text: an integer-valued float (XLSX numbers) without its ``.0``."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _parse_row(cells: Mapping[str, Any], mapping: ColumnMapping, region: str, row: int,
               errors: list[RowProblem]) -> NewLead | None:
    raw = _text(cells.get(mapping.number))
    before = len(errors)
    info = None
    if not raw:
        errors.append(RowProblem(row, mapping.number, "missing number"))
    else:
        try:
            info = normalize(raw, region)
        except NumberError as err:
            errors.append(RowProblem(row, mapping.number, f"invalid number: {err}"))
    priority = 0
    if mapping.priority and _text(cells.get(mapping.priority)):
        try:
            priority = int(float(_text(cells.get(mapping.priority))))
        except ValueError:
            errors.append(RowProblem(row, mapping.priority, "priority is not a whole number"))
    tz = _text(cells.get(mapping.tz)) if mapping.tz else ""
    if tz:
        try:
            zone(tz)
        except WindowError:
            errors.append(RowProblem(row, mapping.tz, f"unknown time zone {tz!r}"))
    if len(errors) > before or info is None:
        return None
    variables = {var: _text(cells.get(col)) for col, var in mapping.variables.items()}
    return NewLead(info.e164, tz or info.tz, info.region, priority, variables)


def import_leads(store: CampaignStore, campaign_id: str, path: str | Path, mapping: ColumnMapping, *,
                 default_region: str = "", skip_bad_rows: bool = False, progress: Progress | None = None,
                 now: float | None = None) -> ImportReport:
    """Import a CSV/XLSX file's rows as leads of ``campaign_id`` (all or nothing; see the module docstring)."""
    header, data = read_table(Path(path))
    missing = [c for c in mapping.columns() if c not in header]
    if missing:
        raise TableError(f"{path}: no column {', '.join(map(repr, missing))} (the file has {', '.join(header)})")
    rows = list(data)
    report = ImportReport(total=len(rows))
    store.campaign(campaign_id)  # exists
    existing = store.numbers_in(campaign_id)
    seen: dict[str, int] = {}
    good: list[tuple[int, NewLead]] = []
    for index, values in enumerate(rows):
        row = index + 2
        if progress is not None and index and index % CHUNK == 0:
            progress(index, len(rows))
        lead = _parse_row(dict(zip(header, values, strict=False)), mapping, default_region, row, report.errors)
        if lead is None:
            continue
        if lead.number in seen:
            report.skipped.append(RowProblem(row, mapping.number, f"duplicate of row {seen[lead.number]}"))
        elif lead.number in existing:
            report.skipped.append(RowProblem(row, mapping.number, "already in the campaign"))
        else:
            seen[lead.number] = row
            good.append((row, lead))
    if report.errors and not skip_bad_rows:
        report.refused = True
        return report
    at = time.time() if now is None else now
    with store.transaction():
        blocked = store.blocked([lead.number for _, lead in good], campaign_id, at)
        added = store.numbers_in(campaign_id) - existing  # by another import while this file was checked
        keep = [lead for _, lead in good if lead.number not in blocked and lead.number not in added]
        report.skipped += [RowProblem(row, mapping.number, "number on the blocklist") for row, lead in good
                           if lead.number in blocked]
        report.skipped += [RowProblem(row, mapping.number, "already in the campaign") for row, lead in good
                           if lead.number in added and lead.number not in blocked]
        for start in range(0, len(keep), CHUNK):
            store.add_leads(campaign_id, keep[start:start + CHUNK], at)
    if progress is not None:
        progress(len(rows), len(rows))
    report.imported = len(keep)
    report.skipped.sort(key=lambda p: p.row)
    return report


def import_dnc(store: CampaignStore, path: str | Path, *, column: str = "", default_region: str = "",
               scope: str = "", reason: str = "dnc list", now: float | None = None) -> ImportReport:
    """Blocklist every number of a CSV/XLSX do-not-call list (``column``: the number's; default the first).
    Bad rows are reported and skipped: a DNC list is applied with every number that can be read."""
    header, data = read_table(Path(path))
    name = column or header[0]
    if name not in header:
        raise TableError(f"{path}: no column {name!r} (the file has {', '.join(header)})")
    report = ImportReport()
    numbers: set[str] = set()
    for index, values in enumerate(data):
        report.total += 1
        raw = _text(dict(zip(header, values, strict=False)).get(name))
        try:
            numbers.add(normalize(raw, default_region).e164)
        except NumberError as err:
            report.errors.append(RowProblem(index + 2, name, f"invalid number: {err}"))
    store.block(sorted(numbers), time.time() if now is None else now, scope=scope, reason=reason)
    report.imported = len(numbers)
    return report
