"""The campaign dialer: caller-ID picking, box selection, cause classification, the dial tracker (sans-I/O), and
dials through the FreeSWITCH double (mixed outcomes, duplicate UUIDs, a box going down)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import gevent
import pytest

from fsdouble.double import FreeSwitchDouble, Silence
from tests.engine_support import PASSWORD, engine_config, running_engine
from voicebot.campaign.boxes import Boxes
from voicebot.campaign.callerid import CallerId, CallerIdPool
from voicebot.campaign.dialing import DialTracker, Originate, Report, attempt_uuid, classify_hangup
from voicebot.campaign.model import CampaignPolicy, Pacing
from voicebot.campaign.scheduler import Answered, Book, Capacity, Command, Dial, Ended, Finish, Lead, Offered, Scheduler
from voicebot.campaign.windows import CallingWindow
from voicebot.esl.connection import InboundConnection
from voicebot.esl.dialer import DialBox, Dialer, DialTarget, record_outcomes
from voicebot.esl.protocol import parse_event, parse_messages

FIXTURES = Path(__file__).parent / "fixtures" / "esl"
TRUNK = "sofia/gateway/trunk/{number}"


def wait(pred: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        gevent.sleep(0.005)


# ------------------------------------------------------------------ sans-I/O


def test_caller_id_prefers_the_callee_region_and_skips_capped_and_cooling_numbers() -> None:
    now = 1_800_000_000.0
    day = int(now // 86400)
    pool = CallerIdPool([CallerId("+861000000001", "CN"), CallerId("+12125550001", "US", daily_cap=2),
                         CallerId("+12125550002", "US", cool_until=now + 60),
                         CallerId("+442000000001", "GB")])
    assert pool.pick("US", now) == "+12125550001"
    assert pool.pick("cn", now) == "+861000000001"
    pool.used("+12125550001", now)
    pool.used("+12125550001", now)  # at its daily cap of 2: the cooling US number is not usable either
    assert pool.numbers["+12125550001"].today(now) == 2 and pool.numbers["+12125550001"].day == day
    assert pool.pick("US", now) in {"+861000000001", "+442000000001"}  # no usable US number: any other
    assert pool.pick("US", now + 61) == "+12125550002"  # the cool-down is over
    assert pool.numbers["+12125550001"].usable(now + 86400)  # a new UTC day: the cap starts again
    assert pool.pick("FR", now) in {"+861000000001", "+442000000001"}
    with pytest.raises(KeyError):
        pool.used("+19999999999", now)  # never a number the operator does not hold


def test_caller_id_pool_with_nothing_usable_picks_none() -> None:
    pool = CallerIdPool([CallerId("+12125550001", "US", daily_cap=1)])
    pool.used("+12125550001", 100.0)
    assert pool.pick("US", 200.0) is None


def test_boxes_pick_the_most_free_sessions_and_skip_a_box_that_is_down() -> None:
    boxes = Boxes(("fs1", "fs2", "fs3"), unknown_free=1)
    for name in boxes.names:
        boxes.connection(name, True)
    boxes.heartbeat("fs1", {"Session-Count": "90", "Max-Sessions": "100"}, 10.0)
    boxes.heartbeat("fs2", {"Session-Count": "10", "Max-Sessions": "100"}, 10.0)
    boxes.heartbeat("fs3", {"Session-Count": "5", "Max-Sessions": "20"}, 10.0)
    assert boxes.pick(11.0) == "fs2"
    for _ in range(76):  # dials since the heartbeat count against the box
        boxes.placed("fs2")
    assert boxes.pick(11.0) == "fs3"  # fs2 has 14 left, fs3 15
    boxes.connection("fs3", False)
    assert boxes.pick(11.0) == "fs2"
    boxes.connection("fs2", False)
    boxes.heartbeat("fs1", {"Session-Count": "100", "Max-Sessions": "100"}, 12.0)
    assert boxes.pick(12.0) is None  # the only box up is full
    assert boxes.pick(12.0 + 70) == "fs1"  # its heartbeat went stale: one dial at a time
    boxes.heartbeat("fs1", {"Session-Count": "x"}, 90.0)  # garbage is ignored


def test_a_status_reply_counts_as_a_heartbeat() -> None:
    real = ("UP 0 years, 0 days, 0 hours, 41 minutes, 33 seconds, 29 milliseconds, 751 microseconds\n"
            "FreeSWITCH (Version 1.11.1-release  64bit) is ready\n164 session(s) since startup\n"
            "7 session(s) - peak 6, last 5min 0 \n0 session(s) per Sec out of max 30, peak 4, last 5min 0 \n"
            "1000 session(s) max\nmin idle cpu 0.00/0.07\nCurrent Stack Size/Max 240K/8192K\n")  # FreeSWITCH 1.11.1
    boxes = Boxes(("fs",))
    boxes.connection("fs", True)
    assert boxes.needs_status("fs", 0.0)
    assert boxes.status("fs", real, 0.0) and boxes.states["fs"].free(0.0) == 993
    assert not boxes.needs_status("fs", 1.0) and boxes.needs_status("fs", 100.0)
    assert not boxes.status("fs", "-ERR no", 1.0)


def test_the_captured_heartbeat_gives_the_box_its_free_sessions() -> None:
    raw = (FIXTURES / "dial_outcomes.recv.raw.txt").read_bytes()
    beats = [e for e in (parse_event(m) for m in parse_messages(raw) if m.content_type == "text/event-plain")
             if e.name == "HEARTBEAT"]
    assert beats, "the capture holds a HEARTBEAT"
    boxes = Boxes(("real",))
    boxes.connection("real", True)
    boxes.heartbeat("real", beats[0].headers, 1.0)
    assert boxes.states["real"].free(1.0) == 1000 - 2


@pytest.mark.parametrize(("cause", "sip", "expected"), [
    ("USER_BUSY", "", "busy"), ("NO_ANSWER", "", "no_answer"), ("UNALLOCATED_NUMBER", "", "invalid_number"),
    ("CALL_REJECTED", "", "rejected"), ("NORMAL_CLEARING", "486", "busy"), ("NORMAL_CLEARING", "404", "invalid_number"),
    ("NORMAL_TEMPORARY_FAILURE", "", "network_error"), ("", "", "network_error"), ("SUBSCRIBER_ABSENT", "", "switched_off"),
    ("CALL_REJECTED", "603", "rejected"),
])
def test_classify_hangup(cause: str, sip: str, expected: str) -> None:
    assert classify_hangup(cause, sip) == expected


def test_the_captured_causes_classify() -> None:
    raw = (FIXTURES / "dial_outcomes.recv.raw.txt").read_bytes()
    jobs = [parse_event(m).body_text.strip() for m in parse_messages(raw) if m.content_type == "text/event-plain"
            and parse_event(m).name == "BACKGROUND_JOB"]
    errors = [j[5:] for j in jobs if j.startswith("-ERR ")]
    assert [classify_hangup(c) for c in errors] == ["busy", "no_answer", "invalid_number", "rejected"]


def test_originate_quotes_the_socket_app_and_values_with_spaces() -> None:
    uuid = attempt_uuid("c1", "lead-1", 1)
    assert uuid == attempt_uuid("c1", "lead-1", 1) != attempt_uuid("c1", "lead-1", 2)
    cmd = Originate(uuid, "sofia/gateway/trunk/+12125550123", "+12125550001", "127.0.0.1:8084", "c1", "lead-1", 1,
                    25.0, {"name": "Ann Lee"}).command()
    assert cmd.startswith(f"originate {{origination_uuid={uuid},origination_caller_id_number=+12125550001,"
                          f"originate_timeout=25,ignore_early_media=true,vb_campaign_id=c1,vb_lead_id=lead-1,vb_attempt_id={uuid},vb_attempt=1,")
    assert "vb_var_name='Ann Lee'}sofia/gateway/trunk/+12125550123 &socket('127.0.0.1:8084 async full')" in cmd
    with pytest.raises(ValueError, match="vb_var_x"):
        Originate(uuid, "e", "1", "127.0.0.1:1", "c", "l", 1, 5.0, {"x": "a,b"}).command()


def test_tracker_ends_a_silent_dial_at_its_deadline_and_never_twice() -> None:
    tracker = DialTracker(margin_s=5.0)
    tracker.start(Dial("a", "1", 1), "u-a", "fs", 20.0, 100.0, job="j-a")
    tracker.start(Dial("b", "2", 1), "u-b", "fs", 20.0, 100.0, job="j-b")
    assert tracker.channel_event("CHANNEL_PROGRESS", "u-b", {}, 101.0) == []
    assert tracker.next_deadline() == 125.0
    assert tracker.tick(124.9) == []
    ended = tracker.tick(125.0)
    assert sorted((e.lead_id, e.disposition) for e in ended if isinstance(e, Ended)) == [
        ("a", "network_error"), ("b", "no_answer")]
    assert tracker.job_result("j-a", "-ERR NO_ANSWER\n", 126.0) == ([], None)  # late: already ended
    assert tracker.known("u-a") and not tracker.active
    with pytest.raises(ValueError):
        tracker.start(Dial("a", "1", 1), "u-a", "fs", 20.0, 130.0)


def test_tracker_answered_call_waits_for_its_outcome_then_drops() -> None:
    tracker = DialTracker(outcome_wait_s=10.0)
    tracker.start(Dial("a", "1", 1), "u-a", "fs", 20.0, 0.0, job="j")
    assert tracker.channel_event("CHANNEL_ANSWER", "u-a", {}, 1.0) == [Answered(1.0, "a")]
    assert tracker.job_result("j", "+OK u-a\n", 1.0) == ([], None)
    assert tracker.tick(100.0) == []  # up: no deadline while the call runs
    assert tracker.channel_event("CHANNEL_HANGUP", "u-a", {"Hangup-Cause": "NORMAL_CLEARING"}, 200.0) == []
    assert [a.uuid for a in tracker.awaiting_outcome()] == ["u-a"]
    assert tracker.tick(210.0) == [Ended(210.0, "a", "dropped")]


def test_tracker_reports_a_stray_call_for_a_duplicate_uuid() -> None:
    tracker = DialTracker()
    tracker.start(Dial("a", "1", 1), "u-a", "fs", 20.0, 0.0, job="j")
    assert tracker.job_result("j", "+OK other-uuid\n", 1.0) == ([], "other-uuid")


# ------------------------------------------------------------------ through the double


@pytest.fixture
def fs() -> Iterator[FreeSwitchDouble]:
    with FreeSwitchDouble(password="ClueCon") as double:
        yield double


def _inbound(fs: FreeSwitchDouble) -> InboundConnection:
    conn = InboundConnection("127.0.0.1", fs.inbound_port, "ClueCon", command_timeout_s=2, backoff_initial_s=0.05,
                             backoff_max_s=0.2)
    conn.start()
    assert conn.wait_up(3)
    return conn


def _dialer(boxes: list[DialBox], reports: list[Report], *, socket_address: str = "127.0.0.1:9",
            ring_s: float = 2.0, margin_s: float = 1.0) -> Dialer:
    pool = CallerIdPool([CallerId("+12125550001", "US"), CallerId("+861000000001", "CN")])
    dialer = Dialer(boxes, campaign_id="camp-1", socket_address=socket_address, caller_ids=pool,
                    leads=lambda lead: DialTarget("CN" if lead.startswith("cn") else "US", {"name": "Ann Lee"}),
                    outcomes=lambda uuid: None, report=reports.append, ring_s=ring_s, margin_s=margin_s)
    dialer.start()
    return dialer


def test_mixed_outcomes_become_the_right_scheduler_events(fs: FreeSwitchDouble) -> None:
    numbers = {"busy": "+12125550101", "ringout": "+12125550102", "vacant": "+12125550103",
               "rejected": "+12125550104", "announce": "+8613800000105"}
    fs.set_endpoint(f"sofia/gateway/trunk/{numbers['busy']}", ring_s=0.05, result="USER_BUSY")
    fs.set_endpoint(f"sofia/gateway/trunk/{numbers['ringout']}", ring_s=30.0)  # longer than originate_timeout
    fs.set_endpoint(f"sofia/gateway/trunk/{numbers['vacant']}", ring_s=0.05, result="UNALLOCATED_NUMBER")
    fs.set_endpoint(f"sofia/gateway/trunk/{numbers['rejected']}", ring_s=0.05, result="CALL_REJECTED")
    fs.set_endpoint(f"sofia/gateway/trunk/{numbers['announce']}", ring_s=0.2, early_media=0.05,
                    result="NORMAL_CLEARING", sip_status="404")  # "the number you dialed does not exist", then 404
    conn = _inbound(fs)
    reports: list[Report] = []
    dialer = _dialer([DialBox("fs", conn, TRUNK)], reports, ring_s=1.0)
    try:
        uuids = {name: dialer.dial(Dial(("cn-" if name == "announce" else "") + name, number, 1))
                 for name, number in numbers.items()}
        wait(lambda: len([r for r in reports if isinstance(r, Ended)]) == len(numbers), 5, "every dial ended")
    finally:
        dialer.stop()
        conn.stop()
    ended = {r.lead_id.removeprefix("cn-"): r.disposition for r in reports if isinstance(r, Ended)}
    assert ended == {"busy": "busy", "ringout": "no_answer", "vacant": "invalid_number", "rejected": "rejected",
                     "announce": "invalid_number"}
    assert not [r for r in reports if isinstance(r, Answered)]
    done = dialer.tracker.finished
    assert done[uuids["busy"]].sip_status == "486" and done[uuids["busy"]].cause == "USER_BUSY"
    assert done[uuids["announce"]].early_media and not done[uuids["busy"]].early_media
    sent = [c for c in fs.commands if c.startswith("bgapi originate")]
    assert len(sent) == len(numbers) and all("&socket('127.0.0.1:9 async full')" in c for c in sent)
    assert "origination_caller_id_number=+861000000001" in next(c for c in sent if numbers["announce"] in c)
    assert "origination_caller_id_number=+12125550001" in next(c for c in sent if numbers["busy"] in c)
    assert fs.channel(uuids["busy"]).variables["vb_lead_id"] == "busy"


def test_error_endpoints_end_from_the_background_job_alone(fs: FreeSwitchDouble) -> None:
    conn = _inbound(fs)
    reports: list[Report] = []
    dialer = _dialer([DialBox("fs", conn, "error/{number}")], reports)
    try:
        for cause in ("user_busy", "no_answer", "unallocated_number", "call_rejected"):
            dialer.dial(Dial(cause, cause, 1))
        wait(lambda: len(reports) == 4, 3, "four ends")
    finally:
        dialer.stop()
        conn.stop()
    assert {r.lead_id: r.disposition for r in reports if isinstance(r, Ended)} == {
        "user_busy": "busy", "no_answer": "no_answer", "unallocated_number": "invalid_number",
        "call_rejected": "rejected"}


def test_a_duplicate_dial_places_one_call_even_after_a_restart(fs: FreeSwitchDouble) -> None:
    fs.set_endpoint("sofia/gateway/trunk/*", ring_s=0.05, result="answer")
    conn = _inbound(fs)
    reports: list[Report] = []
    dialer = _dialer([DialBox("fs", conn, "loopback/{number}/voicebot")], reports, ring_s=5.0)
    restarted = _dialer([DialBox("fs", conn, "loopback/{number}/voicebot")], reports, ring_s=5.0)
    try:
        dial = Dial("lead-1", "7001", 1)
        first = dialer.dial(dial)
        assert dialer.dial(dial) == first  # a retried Dial: nothing new
        wait(lambda: any(isinstance(r, Answered) for r in reports), 3, "the answer")
        assert restarted.dial(dial) == first  # another engine instance: FreeSWITCH already has the call
        originates = [c for c in fs.commands if c.startswith("bgapi originate")]
        assert len(originates) == 1
        assert [r.lead_id for r in reports if isinstance(r, Answered)] == ["lead-1", "lead-1"]  # adopted: up
        fs.hangup(first)
        wait(lambda: restarted.tracker.awaiting_outcome(), 3, "the hangup of an answered call")
        assert not restarted.tracker.finished  # never taken for a dial that failed before the answer
    finally:
        dialer.stop()
        restarted.stop()
        conn.stop()


def test_a_box_that_goes_down_is_skipped(fs: FreeSwitchDouble) -> None:
    with FreeSwitchDouble(password="ClueCon") as fs2:
        conn1, conn2 = _inbound(fs), _inbound(fs2)
        reports: list[Report] = []
        dialer = _dialer([DialBox("fs1", conn1, "error/{number}"), DialBox("fs2", conn2, "error/{number}")],
                         reports)
        try:
            fs.heartbeat(session_count=900, max_sessions=1000)
            fs2.heartbeat(session_count=10, max_sessions=1000)
            wait(lambda: dialer.health.states["fs2"].max_sessions == 1000 and
                 dialer.health.states["fs1"].session_count == 900, 3, "both heartbeats")
            dialer.dial(Dial("a", "user_busy", 1))
            assert any(c.startswith("bgapi originate") for c in fs2.commands)
            fs2.stop()
            wait(lambda: not conn2.up, 3, "fs2 down")
            dialer.dial(Dial("b", "user_busy", 1))
            assert any(c.startswith("bgapi originate") for c in fs.commands)
            wait(lambda: len(reports) == 2, 3, "both dials ended")
            fs.stop()
            wait(lambda: not conn1.up, 3, "fs1 down")
            dialer.dial(Dial("c", "user_busy", 1))  # no box up: ended at once, never lost
            assert reports[-1] == Ended(reports[-1].at, "c", "network_error")
        finally:
            dialer.stop()
            conn1.stop()
            conn2.stop()


def test_a_dial_whose_box_dies_is_ended_at_its_deadline_never_lost(fs: FreeSwitchDouble) -> None:
    fs.set_endpoint("sofia/gateway/trunk/*", ring_s=30.0)
    conn = _inbound(fs)
    reports: list[Report] = []
    dialer = _dialer([DialBox("fs", conn, TRUNK)], reports, ring_s=0.5, margin_s=0.3)
    try:
        uuid = dialer.dial(Dial("lead-1", "+12125550123", 1))
        wait(lambda: dialer.tracker.active[uuid].ringing, 2, "ringing")
        fs.stop()  # FreeSWITCH dies: no BACKGROUND_JOB, no hangup will ever come
        wait(lambda: reports, 3, "the deadline")
    finally:
        dialer.stop()
        conn.stop()
    assert reports == [Ended(reports[0].at, "lead-1", "no_answer")]
    assert dialer.tracker.finished[uuid].cause == "DIALER_TIMEOUT"


def test_the_double_sends_heartbeats_as_the_capture_shows(fs: FreeSwitchDouble) -> None:
    conn = _inbound(fs)
    try:
        with conn.expect_event(lambda e: e.name == "HEARTBEAT") as beat:
            fs.heartbeat(session_count=3, max_sessions=50)
            event = beat.get(2)
    finally:
        conn.stop()
    raw = (FIXTURES / "dial_outcomes.recv.raw.txt").read_bytes()
    real = next(e for e in (parse_event(m) for m in parse_messages(raw) if m.content_type == "text/event-plain")
                if e.name == "HEARTBEAT")
    assert list(event.headers) == list(real.headers)
    assert (event.get("Session-Count"), event.get("Max-Sessions")) == ("3", "50")
    assert event.get("Event-Calling-Function") == "send_heartbeat"


def test_the_double_places_a_duplicate_uuid_under_a_fresh_one_as_freeswitch_does(fs: FreeSwitchDouble) -> None:
    conn = _inbound(fs)
    try:
        assert conn.bgapi_result("originate {origination_uuid=dup}loopback/7001/voicebot &park()", 2) == "+OK dup\n"
        again = conn.bgapi_result("originate {origination_uuid=dup}loopback/7001/voicebot &park()", 2).strip()
    finally:
        conn.stop()
    assert again.startswith("+OK ") and again != "+OK dup"
    assert fs.channel(again[4:]).state is not None


def test_an_answered_dial_runs_in_the_engine_and_its_record_links_back(tmp_path: Path) -> None:
    with FreeSwitchDouble(password=PASSWORD) as fs2:
        fs2.set_endpoint("sofia/gateway/trunk/*", ring_s=0.1, result="answer", agent_audio=Silence(), early_media=0.02)
        config = engine_config(fs2.inbound_port, tmp_path, (42400, 42499))
        with running_engine(config) as engine:
            reports: list[Report] = []
            pool = CallerIdPool([CallerId("+12125550001", "US")])
            dialer = Dialer([DialBox("fs", engine.inbound, TRUNK)], campaign_id="camp-9",
                            socket_address=f"127.0.0.1:{engine.server.port}", caller_ids=pool,
                            leads=lambda lead: DialTarget("US", {"customer_name": "Dana"}),
                            outcomes=record_outcomes(engine.store), report=reports.append, ring_s=5.0)
            dialer.start()
            try:
                uuid = dialer.dial(Dial("lead-7", "+12125550199", 3))
                fs2.wait_for(lambda: fs2.channel(uuid).unicast_active, timeout=15, what="the engine took the call")
                assert any(isinstance(r, Answered) and r.lead_id == "lead-7" for r in reports)
                fs2.press(uuid, "2")  # "wrong person": the flow says goodbye and hangs up
                wait(lambda: any(isinstance(r, Ended) for r in reports), 30, "the outcome from the record")
            finally:
                dialer.stop()
            fs2.assert_no_crash()
            record = engine.store.get(uuid)
    assert record is not None and record.extras["campaign"] == {
        "campaign_id": "camp-9", "lead_id": "lead-7", "attempt_id": uuid, "attempt": "3"}
    ended = [r for r in reports if isinstance(r, Ended)]
    assert ended == [Ended(ended[0].at, "lead-7", record.disposition)] and record.disposition == "wrong_person"


@pytest.mark.parametrize("ignore", [False, True])
def test_the_double_succeeds_an_originate_at_early_media_unless_told_to_ignore_it(fs: FreeSwitchDouble,
                                                                                   ignore: bool) -> None:
    """As FreeSWITCH 1.11.1 does (capture dial_early_media): +OK at early media, the app runs unanswered."""
    fs.set_endpoint("sofia/gateway/trunk/*", ring_s=0.3, early_media=0.05, result="UNALLOCATED_NUMBER")
    conn = _inbound(fs)
    extra = ",ignore_early_media=true" if ignore else ""
    try:
        started = time.monotonic()
        result = conn.bgapi_result(f"originate {{origination_uuid=em{extra}}}sofia/gateway/trunk/+1555 &park()", 3)
    except Exception as err:  # -ERR comes as EslError
        result = str(err)
    finally:
        conn.stop()
    took = time.monotonic() - started
    if ignore:
        assert "-ERR UNALLOCATED_NUMBER" in result and took >= 0.3
    else:
        assert result == "+OK em\n" and took < 0.3
        fs.wait_for(lambda: fs.channel("em").hung_up, 2, "the leg fails later")
        assert not fs.channel("em").answered and fs.channel("em").cause == "UNALLOCATED_NUMBER"
    assert "CHANNEL_PROGRESS_MEDIA" in fs.channel("em").events


def test_the_captured_early_media_dial_succeeds_unless_early_media_is_ignored() -> None:
    raw = (FIXTURES / "dial_early_media.recv.raw.txt").read_bytes()
    events = [parse_event(m) for m in parse_messages(raw) if m.content_type == "text/event-plain"]
    jobs = [e.body_text.strip() for e in events if e.name == "BACKGROUND_JOB"]
    assert jobs[0].startswith("+OK ") and jobs[1] == "-ERR UNALLOCATED_NUMBER"
    assert events[-1].name == "BACKGROUND_JOB"  # with ignore_early_media the result comes after the hangup


def test_a_scheduler_drives_the_dialer_and_books_each_outcome(fs: FreeSwitchDouble) -> None:
    """12 leads through Scheduler → Dialer → double → Scheduler: each outcome is booked or finished by policy."""
    kinds = {"1": ("USER_BUSY", 0.05), "2": ("UNALLOCATED_NUMBER", 0.05), "3": ("CALL_REJECTED", 0.05),
             "4": ("answer", 30.0)}  # 4: rings past originate_timeout
    for digit, (result, ring) in kinds.items():
        fs.set_endpoint(f"sofia/gateway/trunk/+1212555{digit}*", ring_s=ring, result=result)
    t0 = datetime(2026, 12, 9, 17, 0, tzinfo=UTC).timestamp()  # a Wednesday, 12:00 in New York
    started = time.monotonic()

    def clock() -> float:
        return t0 + (time.monotonic() - started)

    policy = CampaignPolicy("camp-1", CallingWindow.parse({"mon-sun": ["08:00-21:00"]}), pacing=Pacing(max_cps=100))
    scheduler = Scheduler(policy)
    leads = tuple(Lead(f"lead-{d}{i}", f"+1212555{d}00{i}", "America/New_York") for d in kinds for i in range(3))
    conn = _inbound(fs)
    reports: list[Report] = []
    dialer = _dialer([DialBox("fs", conn, TRUNK)], reports, ring_s=1.0)
    dialer.clock = clock
    outcomes: dict[str, Book | Finish] = {}

    def run(commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, Dial):
                dialer.dial(command)
            elif isinstance(command, Book | Finish):
                outcomes[command.lead_id] = command

    try:
        run(scheduler.handle(Capacity(clock(), free_bots=50), clock()))
        run(scheduler.handle(Offered(clock(), leads), clock()))
        assert len(scheduler.flights) == len(leads)
        deadline = time.monotonic() + 10
        while len(outcomes) < len(leads) and time.monotonic() < deadline:
            while reports:
                report = reports.pop(0)
                run(scheduler.handle(report, clock()))
            gevent.sleep(0.01)
    finally:
        dialer.stop()
        conn.stop()
    expected = {"1": ("Book", "busy"), "2": ("Finish", "invalid_number"), "3": ("Book", "rejected"),
                "4": ("Book", "no_answer")}
    got = {lead_id: (type(c).__name__, c.disposition if isinstance(c, Book) else c.reason)
           for lead_id, c in outcomes.items()}
    assert got == {lead.lead_id: expected[lead.lead_id[5]] for lead in leads}
    busy = outcomes["lead-10"]
    assert isinstance(busy, Book) and busy.next_at >= t0 + policy.min_gap_s
    assert not scheduler.flights


class _BlindToDuplicates:
    """An inbound connection whose ``uuid_exists`` always says false (as in a race between two engines)."""

    def __init__(self, conn: InboundConnection) -> None:
        self.conn = conn

    @property
    def up(self) -> bool:
        return self.conn.up

    def api(self, command: str, timeout: float | None = None) -> str:
        return "false\n" if command.startswith("uuid_exists") else self.conn.api(command, timeout)

    def bgapi(self, command: str, timeout: float | None = None) -> str:
        return self.conn.bgapi(command, timeout)

    def uuid_kill(self, uuid: str, cause: str = "NORMAL_CLEARING", timeout: float | None = None) -> str:
        return self.conn.uuid_kill(uuid, cause, timeout)

    def on_event(self, callback: Callable[..., None], names: object = None) -> object:
        return self.conn.on_event(callback, names)  # type: ignore[arg-type]


def test_a_second_call_placed_for_a_duplicate_uuid_is_killed(fs: FreeSwitchDouble) -> None:
    conn = _inbound(fs)
    reports: list[Report] = []
    engine = socket.socket()  # a listener that holds the socket apps' connections (the calls stay up)
    engine.bind(("127.0.0.1", 0))
    engine.listen(8)
    address = f"127.0.0.1:{engine.getsockname()[1]}"
    first = _dialer([DialBox("fs", conn, "loopback/{number}/voicebot")], reports, ring_s=5.0, socket_address=address)
    racing = _dialer([DialBox("fs", _BlindToDuplicates(conn), "loopback/{number}/voicebot")], reports, ring_s=5.0,
                     socket_address=address)
    try:
        uuid = first.dial(Dial("lead-1", "7001", 1))
        fs.wait_for(lambda: any(c.uuid == uuid and c.answered for c in fs.channels()), 3, "the first call up")
        assert racing.dial(Dial("lead-1", "7001", 1)) == uuid
        fs.wait_for(lambda: len([c for c in fs.channels() if c.name == "loopback/7001-a"]) == 2, 3, "the stray call")
        stray = next(c for c in fs.channels() if c.name == "loopback/7001-a" and c.uuid != uuid)
        fs.wait_for(lambda: stray.hung_up, 3, "the stray call killed")
        assert not fs.channel(uuid).hung_up  # the real call goes on
        assert f"api uuid_kill {stray.uuid} NORMAL_CLEARING" in fs.commands
    finally:
        first.stop()
        racing.stop()
        conn.stop()
        engine.close()
