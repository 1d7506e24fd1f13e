"""``voicebot campaign …`` end to end on a real SQLite file: the definition file, create, import (CSV, XLSX, bad rows,
progress bar), import-dnc, start/pause/resume/stop, list, status (with an engine's pacing), report (table, CSV, PNG,
per day) against hand-counted seeds (tests/campaign_seed.py), export with and without the numbers."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest

from tests import campaign_seed as seeds
from tests.campaign_support import PgServer, campaign_db, pg_server
from voicebot.campaign.cli import ProgressBar
from voicebot.campaign.definition import DefinitionError, load_definition
from voicebot.campaign.store import CampaignStore
from voicebot.cli import main

__all__ = ["PgServer", "campaign_db", "pg_server"]  # fixtures used by name

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "campaigns" / "spring_offer_en.yaml"
LEADS = ROOT / "examples" / "campaigns" / "leads_en.csv"
OK, FAILED, USAGE = 0, 1, 2


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "campaigns.sqlite")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "unexpected error" not in err, err
    return status, out, err


def created(capsys: pytest.CaptureFixture[str], db: str, name: str = "spring-offer") -> str:
    status, out, _ = run(capsys, "campaign", "create", str(EXAMPLE), "--db", db, "--name", name)
    assert status == OK and f"created campaign {name}" in out
    return name


# ------------------------------------------------------------------ the definition file


def test_the_example_definition_loads_with_every_key() -> None:
    definition = load_definition(EXAMPLE)
    c = definition.campaign
    assert (c.id, c.status, c.amd_policy, c.agent_group, c.caller_id_pool) == \
        ("spring-offer", "paused", "leave_message", "advisors", "spring")
    assert c.window == {"mon-fri": ["09:00-12:00", "13:30-20:00"], "sat": ["10:00-16:00"]}
    assert c.holidays == ("2026-12-25", "2027-01-01") and c.retries["busy"].max_retries == 3
    assert (c.max_attempts, c.min_gap_s, c.daily_cap, c.total_cap, c.pacing.max_cps) == (5, 600.0, 3, 10, 2.0)
    assert c.settings == {"time_zone": {"region": "US", "column": "tz"}} and "spring savings offer" in c.amd_message
    assert dict(definition.caller_ids) == {"+12125550100": "US", "+13125550100": "US", "+14155550100": "US"}
    assert definition.flow == ROOT / "examples" / "flows" / "lead_screening_en.yaml"


BAD = """\
campaign: spring offer
flow: nowhere.yaml
windw: {mon-fri: ["09:00-12:00"]}
window:
  mon-fry: ["09:00-12:00"]
  sat: ["16:00-10:00"]
holidays: [2026-13-01]
pacing: {max_cps: 0, max_dial_levl: 3}
retries:
  bussy: {delay_s: 600, max_retries: 3}
  completed: {delay_s: 600, max_retries: 3}
caller_ids: {numbers: ["+1212"]}
answering_machine: {policy: leave_message}
"""

BAD_PROBLEMS = [
    "1:11: error: campaign: bad value 'spring offer'",
    "2:7: error: flow: no flow file at",
    "3:1: error: windw: unknown key 'windw' (hint: did you mean 'window'?)",
    "5:3: error: window.mon-fry: weekdays 'mon-fry'",
    "6:9: error: window.sat[0]: calling hours '16:00-10:00' end before they start",
    "7:12: error: holidays[0]: '2026-13-01' is not a date",
    "8:19: error: pacing.max_cps: must be greater than 0, got 0",
    "8:22: error: pacing.max_dial_levl: unknown key 'max_dial_levl' (hint: did you mean 'max_dial_level'?)",
    "10:3: error: retries.bussy: unknown disposition 'bussy' (hint: did you mean 'busy'?)",
    "11:3: error: retries.completed: 'completed' is final",
    "12:24: error: caller_ids.numbers[0]: caller ID '+1212': impossible length",
    "13:29: error: answering_machine.policy: leave_message needs the message to leave",
]


def test_every_problem_of_a_definition_at_its_line_column_and_key(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD, encoding="utf-8")
    with pytest.raises(DefinitionError) as caught:
        load_definition(bad)
    lines = [str(p).removeprefix(f"{bad}:") for p in caught.value.problems]
    assert len(lines) == len(BAD_PROBLEMS)
    for line, want in zip(lines, BAD_PROBLEMS, strict=True):
        assert line.startswith(want), (line, want)
    status, out, err = run(capsys, "campaign", "validate", str(bad), str(EXAMPLE))
    assert status == FAILED and "2 campaign file(s) checked: 1 with problems" in out
    assert err.count(f"{bad}:") == len(BAD_PROBLEMS)
    status, _, err = run(capsys, "campaign", "create", str(bad), "--db", str(tmp_path / "c.sqlite"))
    assert status == USAGE and f"voicebot: {bad}: {len(BAD_PROBLEMS)} problem(s) in the campaign file" in err
    assert not (tmp_path / "c.sqlite").exists() or CampaignStore(str(tmp_path / "c.sqlite")).campaigns() == []


def test_a_flow_with_errors_is_a_problem_of_the_definition(tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text("flow: {id: x}\nnodes: {}\n", encoding="utf-8")
    (tmp_path / "c.yaml").write_text("campaign: c\nflow: flow.yaml\n", encoding="utf-8")
    with pytest.raises(DefinitionError, match=r"c.yaml:2:7: error: flow: the flow has \d+ error\(s\)"):
        load_definition(tmp_path / "c.yaml")


# ------------------------------------------------------------------ create, import, status changes, list


def test_create_import_and_the_status_changes(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    cid = created(capsys, db)
    status, out, _ = run(capsys, "campaign", "import", cid, str(LEADS), "--db", db, "--var", "name=customer_name",
                         "--priority-column", "priority")
    assert status == OK and "imported 3 of 3 row(s)" in out
    with CampaignStore(db) as store:
        leads = {lead.number: lead for lead in store.leads(cid)}
        assert store.campaign(cid).status == "paused"
        with store.transaction() as tx:
            zones = dict(tx.rows("SELECT number, tz FROM lead"))
        pool = store.pick_caller_id("spring", "US", seeds.T0)
    assert leads["+12125550142"].variables == {"customer_name": "Alex Doe"}
    assert zones == {"+12125550142": "America/New_York", "+13125550199": "America/Chicago",
                     "+14155550123": "America/Los_Angeles"}
    assert pool in ("+12125550100", "+13125550100", "+14155550100")
    steps = [("start", "paused -> running"), ("start", "running already"), ("pause", "running -> paused"),
             ("resume", "paused -> running"), ("stop", "running -> stopped")]
    for action, words in steps:
        status, out, _ = run(capsys, "campaign", action, cid, "--db", db)
        assert status == OK and words in out, (action, out)
    status, _, err = run(capsys, "campaign", "resume", cid, "--db", db)
    assert status == USAGE and "it is stopped, and resume applies to a paused one" in err
    status, out, _ = run(capsys, "campaign", "list", "--db", db)
    assert status == OK and out.splitlines()[1].split()[:4] == [cid, "stopped", "3", "3"]


def test_a_campaign_id_is_created_once(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    created(capsys, db)
    status, _, err = run(capsys, "campaign", "create", str(EXAMPLE), "--db", db, "--name", "spring-offer")
    assert status == USAGE and "campaign spring-offer: exists already" in err


def test_bad_rows_refuse_the_import_unless_skipped(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cid = created(capsys, db)
    leads = tmp_path / "leads.csv"
    leads.write_text("phone,name\n2125550142,Alex\n12,Bad\n,Empty\n3125550199,Sam\n2125550142,Again\n", encoding="utf-8")
    status, _, err = run(capsys, "campaign", "import", cid, str(leads), "--db", db)
    assert status == FAILED and "2 bad row(s) of 5, nothing imported" in err
    assert f"{leads}: row 3, column phone: invalid number" in err and f"{leads}: row 4, column phone: missing number" in err
    with CampaignStore(db) as store:
        assert store.leads(cid) == []
    status, out, err = run(capsys, "campaign", "import", cid, str(leads), "--db", db, "--skip-bad-rows")
    assert status == OK and "imported 2 of 5 row(s)" in out and "row 6, column phone: duplicate of row 2" in err
    with CampaignStore(db) as store:
        assert sorted(lead.number for lead in store.leads(cid)) == ["+12125550142", "+13125550199"]


def test_an_xlsx_import_and_a_dnc_list(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import openpyxl

    cid = created(capsys, db)
    dnc = tmp_path / "dnc.csv"
    dnc.write_text("number\n+1 212 555 0142\nnot a number\n", encoding="utf-8")
    status, out, err = run(capsys, "campaign", "import-dnc", str(dnc), "--db", db)
    assert status == OK and "blocklisted 1 number(s) for every campaign; 1 bad row(s) of 2 skipped" in out
    assert "row 3, column number: invalid number" in err
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in (("tel", "who"), (2125550142, "Alex"), (4155550123, "Kim")):
        sheet.append(row)
    book.save(tmp_path / "leads.xlsx")
    status, out, err = run(capsys, "campaign", "import", cid, str(tmp_path / "leads.xlsx"), "--db", db,
                           "--number-column", "tel", "--region", "US", "--var", "who=customer_name")
    assert status == OK and "imported 1 of 2 row(s)" in out and "row 2, column tel: number on the blocklist" in err
    assert "note: the file has no column 'tz'" in err  # the campaign's time_zone.column, absent here


def test_the_progress_bar_draws_on_a_terminal_only() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Tty(), io.StringIO()
    for stream in (terminal, pipe):
        bar = ProgressBar(stream, width=10)
        bar(500, 1000)
        bar(1000, 1000)
    assert terminal.getvalue() == "\rrows [#####.....] 500/1000\rrows [##########] 1000/1000\n"
    assert pipe.getvalue() == ""


def test_the_database_comes_from_the_engine_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "etc" / "voicebot.yaml"
    config.parent.mkdir()
    config.write_text("campaigns: {db: data/camp.sqlite}\n", encoding="utf-8")
    (tmp_path / "etc" / "data").mkdir()
    status, _, _ = run(capsys, "campaign", "create", str(EXAMPLE), "--config", str(config))
    assert status == OK and (tmp_path / "etc" / "data" / "camp.sqlite").is_file()
    status, out, _ = run(capsys, "campaign", "list", "--config", str(config))
    assert status == OK and "spring-offer" in out


# ------------------------------------------------------------------ status, report, export on the seeded attempts


@pytest.fixture
def seeded(db: str, capsys: pytest.CaptureFixture[str]) -> str:
    cid = created(capsys, db, "c1")
    with CampaignStore(db) as store:
        store.set_status(cid, "running")
        seeds.seed(store, cid)
    return cid


def test_status_shows_progress_and_the_engines_pacing(db: str, seeded: str, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("voicebot.campaign.cli_show.time.time", lambda: seeds.NOW)
    with CampaignStore(db) as store:
        store.put_runtime(seeded, "engine-a", {"free_bots": 3, "dial_budget": 4, "answer_rate": 0.42, "ringing": 2,
                                               "talking": 5}, seeds.NOW - 2)
    status, out, _ = run(capsys, "campaign", "status", seeded, "--db", db)
    assert status == OK
    assert "leads: 10 · pending 1 · in call 1 · done 8" in out
    assert "attempts: 9 ended, 1 in flight; answer rate 77.8% (last 10 min: -)" in out
    assert "ETA 10m00s for one more dial of every pending lead" in out
    assert "engine engine-a (2 s ago): dial budget 4, answer rate 0.42, ringing 2, talking 5, free bots 3" in out
    status, out, _ = run(capsys, "campaign", "status", seeded, "--db", db, "--watch", "0.01", "--count", "2")
    assert status == OK and out.count("campaign c1 (Spring savings offer): running") == 2


def test_the_report_table_and_csv_hold_the_hand_counts(db: str, seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "campaign", "report", seeded, "--db", db, "--format", "csv")
    assert status == OK
    rows = list(csv.DictReader(io.StringIO(out)))

    def section(scope: str, name: str) -> dict[str, int]:
        return {r["item"]: int(r["count"]) for r in rows if r["scope"] == scope and r["section"] == name}
    assert section("all", "funnel") == seeds.FUNNEL_ALL and section("2026-12-08", "funnel") == seeds.FUNNEL_DAY2
    assert section("all", "disposition") == seeds.DISPOSITIONS and section("all", "tag") == seeds.TAGS
    assert section("all", "grade") == seeds.GRADES
    hours = {int(r["item"]): (int(r["of"]), int(r["count"])) for r in rows
             if r["scope"] == "all" and r["section"] == "connected_by_hour"}
    assert hours == seeds.BY_HOUR
    status, out, _ = run(capsys, "campaign", "report", seeded, "--db", db)
    assert status == OK and "campaign c1 (Spring savings offer): 10 dial(s)" in out
    lines = {line.split()[0] + (" " + line.split()[1] if line.startswith("  agent") else ""): line.split()
             for line in out.splitlines() if line.strip()}
    assert lines["agent answered"] == ["agent", "answered", "2", "66.7%", "20.0%"]  # 2 of 3 passed, of 10 dialed
    assert lines["10:00"] == ["10:00", "4/6", "66.7%"] and lines["2026-12-08"] == ["2026-12-08", "3", "2", "2", "1", "1", "1"]
    status, out, _ = run(capsys, "campaign", "report", seeded, "--db", db, "--day", "2026-12-08")
    assert status == OK and ": 3 dial(s)" in out and "2026-12-07" not in out


def test_the_report_writes_decodable_png_charts(db: str, seeded: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import matplotlib.image

    status, _, err = run(capsys, "campaign", "report", seeded, "--db", db, "--png", str(tmp_path / "charts"))
    assert status == OK
    names = sorted(p.name for p in (tmp_path / "charts").iterdir())
    assert names == ["connect_by_hour.png", "dispositions.png", "funnel.png", "grades.png"]
    for name in names:
        path = tmp_path / "charts" / name
        assert str(path) in err and path.stat().st_size > 1000
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[:2] == (450, 800) and pixels.std() > 0  # an 8x4.5 in figure at 100 dpi, not blank


def test_export_masks_numbers_unless_asked(db: str, seeded: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "leads.csv"
    status, out, err = run(capsys, "campaign", "export", seeded, "--db", db, "--out", str(out_file))
    assert status == OK and "wrote 10 lead(s) of c1" in out and "phone numbers are masked" in err
    text = out_file.read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert all(n not in text for n, _ in seeds.LEADS) and "Lead 0" not in text
    assert rows[0]["number"] == "+1212****101" and "var_name" not in rows[0]
    assert (rows[0]["attempts"], rows[0]["last_disposition"], rows[0]["last_grade"], rows[0]["last_tags"]) == \
        ("2", "completed", "A", "interested,vip")
    assert rows[0]["last_attempt_at"] == "2026-12-08T15:00:00Z"
    status, _, err = run(capsys, "campaign", "export", seeded, "--db", db, "--out", str(out_file), "--include-numbers")
    rows = list(csv.DictReader(io.StringIO(out_file.read_text(encoding="utf-8"))))
    assert status == OK and "masked" not in err
    assert [r["number"] for r in rows] == [n for n, _ in seeds.LEADS] and rows[0]["var_name"] == "Lead 0"


def test_the_example_folder_is_self_contained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The documented commands run on a copy of examples/ (the flow path is relative to the campaign file)."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    db = str(tmp_path / "c.sqlite")
    assert run(capsys, "campaign", "create", str(tmp_path / "examples/campaigns/spring_offer_en.yaml"), "--db", db)[0] == OK
    with CampaignStore(db) as store:
        assert store.campaign("spring-offer").flow_path == str(tmp_path / "examples/flows/lead_screening_en.yaml")


def test_the_commands_run_on_sqlite_and_postgresql(campaign_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The same commands on a database URL: create, import, start, report, export."""
    cid = created(capsys, campaign_db, "pg1")
    assert run(capsys, "campaign", "start", cid, "--db", campaign_db)[0] == OK
    with CampaignStore(campaign_db) as store:
        seeds.seed(store, cid)  # ten leads and their attempts
    assert run(capsys, "campaign", "import", cid, str(LEADS), "--db", campaign_db)[:2] == \
        (OK, "imported 3 of 3 row(s) into pg1: 0 skipped (duplicates, already in the campaign, blocklisted), 0 bad row(s) "
         "left out\n")
    status, out, _ = run(capsys, "campaign", "report", cid, "--db", campaign_db, "--format", "csv")
    funnel = {r["item"]: int(r["count"]) for r in csv.DictReader(io.StringIO(out)) if r["scope"] == "all"
              and r["section"] == "funnel"}
    assert status == OK and funnel == seeds.FUNNEL_ALL
    status, out, _ = run(capsys, "campaign", "list", "--db", campaign_db)
    assert status == OK and out.splitlines()[1].split()[:4] == [cid, "running", "13", "4"]
