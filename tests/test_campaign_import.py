"""Importing leads and DNC lists from real CSV and XLSX files (written here) into SQLite and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.campaign_support import campaign_db, pg_server
from voicebot.campaign import importer
from voicebot.campaign.importer import ColumnMapping, RowProblem, TableError, import_dnc, import_leads
from voicebot.campaign.scheduler import Defer
from voicebot.campaign.store import Campaign, CampaignStore, NewLead

__all__ = ["campaign_db", "pg_server"]

T0 = datetime(2026, 12, 7, 15, 0, tzinfo=ZoneInfo("UTC")).timestamp()
MAPPING = ColumnMapping(number="Phone", priority="Priority", tz="Zone", variables={"Name": "customer_name", "Plan": "plan"})
HEADER = ["Phone", "Name", "Priority", "Zone", "Plan"]


@pytest.fixture
def store(campaign_db: str) -> Iterator[CampaignStore]:
    s = CampaignStore(campaign_db)
    s.create_campaign(Campaign("c1", status="running"), T0)
    yield s
    s.close()


def write_csv(path: Path, rows: Sequence[Sequence[str]], header: Sequence[str] = HEADER, sep: str = ",") -> Path:
    path.write_text("\n".join(sep.join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    return path


def write_xlsx(path: Path, rows: Sequence[Sequence[Any]], header: Sequence[str] = HEADER) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in [header, *rows]:
        sheet.append(list(row))
    book.save(path)
    return path


GOOD = [["(212) 555-0100", "Ann Lee", "2", "", "gold"],
        ["+1 415 555 0101", "Bo Chen", "", "America/Chicago", "basic"],
        ["+86 138 1234 5678", "王芳", "1", "", "gold"]]


def test_a_csv_imports_normalized_numbers_zones_priorities_and_variables(store: CampaignStore, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importer, "CHUNK", 2)
    seen: list[tuple[int, int]] = []
    report = import_leads(store, "c1", write_csv(tmp_path / "leads.csv", GOOD), MAPPING, default_region="US",
                          progress=lambda done, total: seen.append((done, total)), now=T0)
    assert (report.total, report.imported, report.errors, report.skipped, report.refused) == (3, 3, [], [], False)
    assert seen == [(2, 3), (3, 3)]  # every CHUNK rows checked, then once written
    leads = {lead.number: lead for lead in store.claim_due("c1", "t", T0, limit=10)}
    assert set(leads) == {"+12125550100", "+14155550101", "+8613812345678"}
    assert leads["+12125550100"].tz == "America/New_York" and leads["+12125550100"].priority == 2
    assert leads["+14155550101"].tz == "America/Chicago"  # the zone column wins over the number's own
    assert leads["+8613812345678"].tz == "Asia/Shanghai"
    rows = {row.number: row for row in store.leads("c1")}
    assert rows["+8613812345678"].variables == {"customer_name": "王芳", "plan": "gold"}


def test_any_bad_row_refuses_the_whole_import_with_row_column_and_reason(store: CampaignStore, tmp_path: Path) -> None:
    rows = [*GOOD, ["12", "Too Short", "", "", ""], ["", "No Number", "", "", ""], ["2125550102", "Bad Prio", "high", "", ""],
            ["2125550103", "Bad Zone", "", "Mars/Base", ""], ["call me", "Text", "", "", ""]]
    report = import_leads(store, "c1", write_csv(tmp_path / "bad.csv", rows), MAPPING, default_region="US", now=T0)
    assert report.refused and report.imported == 0
    assert report.errors == [
        RowProblem(5, "Phone", "invalid number: impossible length"),
        RowProblem(6, "Phone", "missing number"),
        RowProblem(7, "Priority", "priority is not a whole number"),
        RowProblem(8, "Zone", "unknown time zone 'Mars/Base'"),
        RowProblem(9, "Phone", "invalid number: not a phone number"),
    ]
    assert str(report.errors[0]) == "row 5, column Phone: invalid number: impossible length"
    assert store.counts("c1") == {}  # nothing half-imported

    skipping = import_leads(store, "c1", tmp_path / "bad.csv", MAPPING, default_region="US", skip_bad_rows=True, now=T0)
    assert not skipping.refused and skipping.imported == 3 and len(skipping.errors) == 5
    assert store.counts("c1") == {"pending": 3}


def test_duplicates_and_blocklisted_numbers_are_reported_and_left_out(store: CampaignStore, tmp_path: Path) -> None:
    store.add_leads("c1", [NewLead("+12125550100", "America/New_York", "US")], T0)
    store.block(["+12125550104"], T0, reason="dnc")
    store.block(["+12125550105"], T0, scope="c2", reason="another campaign's list")  # not ours: imported
    rows = [["212-555-0100", "Old", "", "", ""], ["2125550101", "A", "", "", ""], ["+12125550101", "A again", "", "", ""],
            ["2125550104", "Blocked", "", "", ""], ["2125550105", "Fine", "", "", ""]]
    report = import_leads(store, "c1", write_csv(tmp_path / "dups.csv", rows, sep=";"), MAPPING, default_region="US", now=T0)
    assert not report.refused and report.errors == [] and report.imported == 2
    assert report.skipped == [RowProblem(2, "Phone", "already in the campaign"), RowProblem(4, "Phone", "duplicate of row 3"),
                              RowProblem(5, "Phone", "number on the blocklist")]
    assert sorted(r.number for r in store.leads("c1")) == ["+12125550100", "+12125550101", "+12125550105"]


def test_an_xlsx_sheet_with_numbers_as_numeric_cells(store: CampaignStore, tmp_path: Path) -> None:
    rows: list[list[Any]] = [[2125550100, "Ann", 3, None, "gold"], [4155550101.0, "Bo", 1.0, "America/Denver", None],
            [None, "Nobody", None, None, None]]
    path = write_xlsx(tmp_path / "leads.xlsx", rows)
    report = import_leads(store, "c1", path, MAPPING, default_region="US", now=T0)
    assert report.refused and report.errors == [RowProblem(4, "Phone", "missing number")]
    report = import_leads(store, "c1", path, MAPPING, default_region="US", skip_bad_rows=True, now=T0)
    assert report.imported == 2
    rows_by_number = {r.number: r for r in store.leads("c1")}
    assert rows_by_number["+12125550100"].variables == {"customer_name": "Ann", "plan": "gold"}
    assert {lead.number: (lead.priority, lead.tz) for lead in store.claim_due("c1", "t", T0, limit=5)} == {
        "+12125550100": (3, "America/New_York"), "+14155550101": (1, "America/Denver")}


def test_a_failure_while_writing_leaves_nothing_behind(store: CampaignStore, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [[f"212555{i:04d}", f"n{i}", "", "", ""] for i in range(100, 130)]
    original = CampaignStore.add_leads
    calls: list[int] = []

    def failing(self: CampaignStore, campaign_id: str, leads: Sequence[NewLead], now: float) -> None:
        calls.append(len(leads))
        if len(calls) == 3:
            raise OSError("disk full")
        original(self, campaign_id, leads, now)

    monkeypatch.setattr(importer, "CHUNK", 10)
    monkeypatch.setattr(CampaignStore, "add_leads", failing)
    with pytest.raises(OSError):
        import_leads(store, "c1", write_csv(tmp_path / "big.csv", rows), MAPPING, default_region="US", now=T0)
    assert calls == [10, 10, 10] and store.counts("c1") == {}


def test_files_that_cannot_be_read_get_plain_errors(store: CampaignStore, tmp_path: Path) -> None:
    with pytest.raises(TableError, match="no such file"):
        import_leads(store, "c1", tmp_path / "missing.csv", MAPPING)
    with pytest.raises(TableError, match="no column 'Phone'"):
        import_leads(store, "c1", write_csv(tmp_path / "other.csv", [["1"]], header=["Tel"]), MAPPING)
    (tmp_path / "latin1.csv").write_bytes("Phone,Name\n2125550100,Jos\xe9\n".encode("latin-1"))
    with pytest.raises(TableError, match="not UTF-8"):
        import_leads(store, "c1", tmp_path / "latin1.csv", ColumnMapping("Phone"))
    (tmp_path / "fake.xlsx").write_text("not a workbook")
    with pytest.raises(TableError, match="not a readable XLSX"):
        import_leads(store, "c1", tmp_path / "fake.xlsx", MAPPING)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(TableError, match="empty file"):
        import_leads(store, "c1", tmp_path / "empty.csv", MAPPING)


def test_a_dnc_list_imported_mid_campaign_stops_the_next_claim(store: CampaignStore, tmp_path: Path) -> None:
    numbers = [f"+1212555{i:04d}" for i in range(100, 106)]
    store.add_leads("c1", [NewLead(n, "America/New_York", "US") for n in numbers], T0)
    hopper = store.claim_due("c1", "engine", T0, limit=3)  # an engine holds three of them
    held = [lead.number for lead in hopper]
    dnc = write_csv(tmp_path / "dnc.csv", [[held[0][2:]], [numbers[5][2:]], ["not a number"]], header=["number"])
    report = import_dnc(store, dnc, default_region="US", now=T0 + 1)
    assert report.imported == 2 and report.errors == [RowProblem(4, "number", "invalid number: not a phone number")]
    store.apply([Defer(lead.lead_id, T0 + 2, "window") for lead in hopper], T0 + 1, owner="engine")
    claimed = {lead.number for lead in store.claim_due("c1", "engine", T0 + 2, limit=50)}
    assert claimed == set(numbers) - {held[0], numbers[5]}
    statuses = {row.number: row.status for row in store.leads("c1")}
    assert statuses[held[0]] == statuses[numbers[5]] == "blocked"
