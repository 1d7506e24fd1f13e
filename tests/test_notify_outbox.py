"""The notification outbox and its sender, against a real gateway on 127.0.0.1 and real SQLite and PostgreSQL.

Node and hang-up SMS arrive exactly once; a gateway that is down, then up, gets everything; a sender that dies
mid-way (with messages claimed, or posted but not marked) is replaced and everything arrives once; a slow
gateway never holds up the call's thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.notify_support import SECRET, Db, Gateway
from tests.test_records import PgServer, pg_server  # noqa: F401  (the session's PostgreSQL)
from voicebot.dialog import events as ev
from voicebot.dialog.loader import load_flow
from voicebot.notify.notifier import CallInfo, Notifier
from voicebot.notify.outbox import Claimed, Message, Outbox, OutboxError, enqueue, message_id, migrate
from voicebot.notify.sender import Endpoint, Sender, SenderConfig
from voicebot.notify.settings import NotificationsConfig, SmsTemplate
from voicebot.records.model import CallRecord
from voicebot.sim.text import CallerAction, TextCall
from voicebot.timeline import Timeline

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
CALLER = "+14155550100"
FAST = SenderConfig(backoff_s=0.05, max_backoff_s=0.2, lease_s=1.0, poll_s=0.05)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path, pg_server: PgServer) -> Iterator[Db]:  # noqa: F811
    d = Db(request.param, tmp_path, pg_server)
    yield d
    d.cleanup()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    g = Gateway()
    yield g
    g.close()


def msg(n: int, endpoint: str = "sms", at: float = 1000.0) -> Message:
    mid = message_id(f"call-{n}", "sms_invite", endpoint)
    return Message(mid, "sms", endpoint, CALLER, {"id": mid, "to": CALLER, "text": f"Hi {n} – 你好"}, at + n)


class Clock:
    """Wall time plus an offset the test moves forward (leases and backoff without sleeping)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


# ------------------------------------------------------------------ the table


def test_enqueue_is_idempotent(db: Db) -> None:
    box = Outbox(db.location())
    try:
        assert box.enqueue([msg(1), msg(2)]) == 2
        assert box.enqueue([msg(1), msg(2), msg(3)]) == 1, "a retried write makes no duplicate"
        rows = box.rows()
        assert [r.message.id for r in rows] == [msg(n).id for n in (1, 2, 3)]
        assert rows[0].message.payload["text"] == "Hi 1 – 你好" and rows[0].attempts == 0 and rows[0].delivered_at is None
        assert box.pending() == 3
    finally:
        box.close()


def test_enqueue_inside_the_callers_transaction(db: Db) -> None:
    Outbox(db.location()).close()  # migrated
    conn = db.connect()
    try:
        if db.kind == "sqlite":
            conn.execute("BEGIN IMMEDIATE")
        migrate(conn)  # idempotent, in the caller's transaction
        assert enqueue(conn, [msg(1)]) == 1
        conn.rollback() if db.kind == "postgres" else conn.execute("ROLLBACK")
        if db.kind == "sqlite":
            conn.execute("BEGIN IMMEDIATE")
        assert enqueue(conn, [msg(2)]) == 1
        conn.commit() if db.kind == "postgres" else conn.execute("COMMIT")
    finally:
        conn.close()
    box = Outbox(db.location())
    try:
        assert [r.message.id for r in box.rows()] == [msg(2).id], "the rolled-back message is not there"
    finally:
        box.close()


def test_claims_lease_fence_and_mark_delivered_once(db: Db) -> None:
    box = Outbox(db.location())
    try:
        box.enqueue([msg(1)])
        (first,) = box.claim(now=2000.0, limit=10, lease_s=30)
        assert first.attempts == 1 and box.claim(now=2010.0, limit=10, lease_s=30) == [], "leased"
        (second,) = box.claim(now=2031.0, limit=10, lease_s=30)  # the lease ran out: the first sender is taken for dead
        assert second.attempts == 2
        assert not box.retry_at(first, 2100.0, "late answer"), "a stale claim cannot reschedule"
        assert box.delivered(first, 2032.0), "a late success still counts, once"
        assert not box.delivered(second, 2033.0), "delivered_at is set once"
        row = box.get(msg(1).id)
        assert row is not None and row.delivered_at == 2032.0 and box.pending() == 0
        assert box.claim(now=9999.0, limit=10, lease_s=30) == []
    finally:
        box.close()


def test_a_newer_outbox_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    Outbox(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_versions SET version = 99 WHERE component = 'outbox'")
    with pytest.raises(OutboxError, match="v99 is newer"):
        Outbox(str(path))


def test_the_outbox_shares_a_database_with_the_call_records(tmp_path: Path) -> None:
    from voicebot.records.store import open_store

    path = tmp_path / "calls.sqlite"
    store = open_store(path)
    box = Outbox(str(path))
    try:
        assert store.save(CallRecord("c1")) and box.enqueue([msg(1)]) == 1
        assert store.get("c1") is not None and box.pending() == 1
    finally:
        box.close()
        store.close()
    assert open_store(path).get("c1") is not None  # the records schema (PRAGMA user_version) is untouched


# ------------------------------------------------------------------ the sender


def test_gateway_down_then_up_gets_everything_after_backoff(db: Db, tmp_path: Path) -> None:
    probe = Gateway()
    port = probe.port
    probe.close()  # nothing listens there now: connection refused
    box = Outbox(db.location())
    box.enqueue([msg(n) for n in range(5)])
    # a 5 s answer timeout: under load a 1 s one expired on a post the gateway had taken, and the retry posted it again
    # (at least once is the sender's contract: the idempotency key lets a gateway drop the second; not this test's point)
    sender = Sender(box, {"sms": Endpoint(f"http://127.0.0.1:{port}/send", SECRET, 5.0)}, FAST).start()
    try:
        deadline = time.monotonic() + 10
        while sender.stats["retried"] < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sender.stats["retried"] >= 10 and sender.stats["sent"] == 0
        assert all(r.last_error and r.attempts >= 1 for r in box.rows())
        gateway = Gateway(port=port)
        try:
            gateway.wait(lambda g: len(g.accepted) == 5, what="all five once the gateway is up")
            deadline = time.monotonic() + 5
            while box.pending() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert box.pending() == 0 and all(r.delivered_at for r in box.rows())
            assert sorted(gateway.keys()) == sorted(msg(n).id for n in range(5)), "each posted once after the outage"
        finally:
            gateway.close()
    finally:
        sender.close()
        box.close()


def test_signature_and_idempotency_key_headers(gateway: Gateway, tmp_path: Path) -> None:
    box = Outbox(str(tmp_path / "o.sqlite"))
    box.enqueue([msg(1)])
    sender = Sender(box, {"sms": Endpoint(gateway.url, SECRET)}, FAST)
    try:
        assert sender.run_once() == 1
        (post,) = gateway.posts
        assert post.signed, "the HMAC-SHA256 signature verifies with the shared secret"
        assert post.headers["Idempotency-Key"] == msg(1).id and post.headers["X-Voicebot-Event"] == "sms"
        assert json.loads(post.body) == dict(msg(1).payload)
        tampered = {**post.headers, "X-Voicebot-Signature": post.headers["X-Voicebot-Signature"][:-2] + "00"}
        from voicebot.notify.signed import verify

        assert not verify(SECRET, tampered, post.body, time.time())
        assert not verify("wrong secret", post.headers, post.body, time.time())
        assert not verify(SECRET, post.headers, post.body + b" ", time.time())
    finally:
        box.close()


def test_a_final_refusal_is_given_up_and_never_resent(gateway: Gateway, tmp_path: Path) -> None:
    gateway.statuses = [400]
    box = Outbox(str(tmp_path / "o.sqlite"))
    box.enqueue([msg(1)])
    clock = Clock()
    sender = Sender(box, {"sms": Endpoint(gateway.url, SECRET)}, FAST, clock)
    try:
        assert sender.run_once() == 1
        clock.offset += 3600
        assert sender.run_once() == 0 and len(gateway.posts) == 1
        row = box.get(msg(1).id)
        assert row is not None and row.failed_at is not None and row.delivered_at is None and "400" in row.last_error
    finally:
        box.close()


class DiesAfterPosting(Outbox):
    """An outbox whose process 'dies' between the gateway's 200 and marking the message delivered."""

    def delivered(self, claim: Claimed, now: float) -> bool:
        raise RuntimeError("engine killed")


def test_restart_mid_way_delivers_everything_exactly_once(db: Db, gateway: Gateway) -> None:
    box = Outbox(db.location())
    box.enqueue([msg(n) for n in range(6)])
    box.claim(time.time(), limit=2, lease_s=FAST.lease_s)  # 0, 1: claimed by an engine that then died
    box.close()
    dying = DiesAfterPosting(db.location())
    doomed = Sender(dying, {"sms": Endpoint(gateway.url, SECRET)}, SenderConfig(batch=1, lease_s=FAST.lease_s))
    with pytest.raises(RuntimeError):
        doomed.run_once()  # message 2: posted, the gateway took it, never marked
    dying.close()
    assert len(gateway.accepted) == 1
    clock = Clock()
    box = Outbox(db.location())
    sender = Sender(box, {"sms": Endpoint(gateway.url, SECRET)}, FAST, clock).start()  # the engine starts again
    try:
        gateway.wait(lambda g: len(g.accepted) >= 4, what="the three never claimed (3, 4, 5)")
        clock.offset += FAST.lease_s + 0.1  # the dead engine's leases run out
        sender.wake()
        deadline = time.monotonic() + 10
        while box.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert box.pending() == 0
        assert sorted(gateway.accepted) == sorted(msg(n).id for n in range(6)), "each one exactly once"
        keys = gateway.keys()
        assert keys.count(msg(2).id) == 2, "the one posted when the engine died is posted again (at least once)"
        assert all(keys.count(msg(n).id) == 1 for n in (0, 1, 3, 4, 5))
        posts = len(keys)
        clock.offset += 3600
        sender.wake()
        time.sleep(0.2)
        assert len(gateway.keys()) == posts, "nothing delivered is sent again"
    finally:
        sender.close()
        box.close()


# ------------------------------------------------------------------ notify: from the dialog to the gateway


def notifications(url: str) -> NotificationsConfig:
    return NotificationsConfig(
        sms_gateway=Endpoint(url, SECRET), retry=FAST,
        sms={"sms_invite": SmsTemplate("{{caller}}", "Hi {{customer_name}}, here is the link: https://x.test/{{call_id}}"),
             "call_outcome": SmsTemplate("{{caller}}", "Thanks {{customer_name}} ({{disposition}}, {{tags}})")})


def sms_call(notifier: Notifier, call: CallInfo, listener_times: list[float] | None = None) -> TextCall:
    """The flow test "SMS link, then no advisor" as a text call, with the timeline entries CallSession writes."""
    text_call = TextCall(load_flow(FLOW), {"customer_name": "Zoë"})
    timeline = Timeline()
    handle = text_call.machine.handle

    def recording(event: ev.Event, now: float) -> list[ev.Command]:
        commands = handle(event, now)
        for command in commands:
            if isinstance(command, ev.Notify):  # what CallSession._execute writes for a Notify
                started = time.perf_counter()
                timeline.add(now, "command", command="Notify", name=command.name)
                if listener_times is not None:
                    listener_times.append(time.perf_counter() - started)
        return commands

    text_call.machine.handle = recording  # type: ignore[method-assign]
    notifier.watch(SimpleNamespace(timeline=timeline, machine=text_call.machine), call)
    text_call.start()
    for line in ("yes", "yes", "send me a text message", "no thanks"):
        text_call.act(CallerAction("say", line))
    text_call.finish()
    return text_call


def record_of(call: CallInfo, text_call: TextCall) -> CallRecord:
    o = text_call.machine.outcome
    return CallRecord(call.call_id, flow_id=call.flow_id, caller=call.caller, disposition=o.disposition,
                      tags=tuple(o.tags), level=o.level, path=tuple(o.path), variables=dict(o.variables))


def test_node_and_hangup_sms_reach_the_gateway_exactly_once(db: Db, gateway: Gateway) -> None:
    notifier = Notifier(notifications(gateway.url), Outbox(db.location())).start()
    call = CallInfo("9f1c-call", CALLER, "7000", "lead_screening_en")
    try:
        text_call = sms_call(notifier, call)
        assert notifier.flush() and notifier.written == 1, "only the node SMS while the call runs"
        gateway.wait(lambda g: len(g.accepted) == 1, what="the node SMS, during the call")
        notifier.call_ended(record_of(call, text_call), text_call.flow.hangup_notify, text_call.machine.outcome.notifications)
        notifier.call_ended(record_of(call, text_call), text_call.flow.hangup_notify, text_call.machine.outcome.notifications)
        assert notifier.flush()
        gateway.wait(lambda g: len(g.accepted) == 2, what="the hang-up SMS")
        bodies = {json.loads(p.body)["notification"]: json.loads(p.body) for p in gateway.accepted.values()}
        assert bodies["sms_invite"]["to"] == CALLER and bodies["sms_invite"]["text"] == (
            "Hi Zoë, here is the link: https://x.test/9f1c-call")
        assert bodies["call_outcome"]["text"] == "Thanks Zoë (sms_only, contacted, interested, sms_sent)"
        assert all(p.signed for p in gateway.posts)
        notifier.sender.wake()
        time.sleep(0.3)
        assert len(gateway.posts) == 2, "delivered messages are not sent again, the record's second write added none"
        assert notifier.written == 2 and notifier.outbox.pending() == 0
    finally:
        notifier.close()


def test_engine_restart_with_undelivered_notifications(db: Db, gateway: Gateway) -> None:
    """The engine stops while the gateway refuses; the next start delivers both SMS, once each."""
    gateway.statuses = [503] * 1000
    notifier = Notifier(notifications(gateway.url), Outbox(db.location())).start()
    call = CallInfo("restart-call", CALLER, "7000", "lead_screening_en")
    text_call = sms_call(notifier, call)
    notifier.call_ended(record_of(call, text_call), text_call.flow.hangup_notify, text_call.machine.outcome.notifications)
    assert notifier.flush()
    gateway.wait(lambda g: len(g.posts) >= 2, what="both tried and refused")
    notifier.close()
    assert len(gateway.accepted) == 0
    gateway.statuses = []
    again = Notifier(notifications(gateway.url), Outbox(db.location())).start()
    try:
        gateway.wait(lambda g: len(g.accepted) == 2, what="both delivered after the restart")
        deadline = time.monotonic() + 5
        while again.outbox.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert again.outbox.pending() == 0
        accepted = list(gateway.accepted)
        time.sleep(0.3)
        assert sorted({json.loads(p.body)["notification"] for p in gateway.accepted.values()}) == ["call_outcome", "sms_invite"]
        assert list(gateway.accepted) == accepted
        assert [p.headers['Idempotency-Key'] for p in gateway.posts].count(accepted[0]) >= 2, "refused, then resent"
    finally:
        again.close()


def test_a_slow_gateway_never_holds_up_the_call(tmp_path: Path) -> None:
    release = threading.Event()
    slow = Gateway(hold=release)  # answers nothing until released
    notifier = Notifier(notifications(slow.url), Outbox(str(tmp_path / "o.sqlite"))).start()
    try:
        sms_call(notifier, CallInfo("slow-1", CALLER))
        slow.wait(lambda g: g.arrived == 1, timeout=5, what="the sender is stuck inside a POST")
        times: list[float] = []
        for n in range(5):  # more calls while the sender waits on the gateway
            sms_call(notifier, CallInfo(f"slow-call-{n}", CALLER), times)
        assert len(times) == 10 and max(times) < 0.05, f"a Notify held the call's thread up: {max(times):.3f} s"
        assert notifier.flush() and notifier.written == 6, "every call's SMS is in the outbox meanwhile"
        assert slow.arrived == 1 and not slow.posts, "... while the first POST still hangs"
        assert notifier.sender._thread is not None and notifier.sender._thread.name == "outbox-sender"
        release.set()
        slow.wait(lambda g: len(g.accepted) == 6, timeout=20, what="the node SMS of all six calls")
    finally:
        release.set()
        notifier.close(timeout=0.5)
        slow.close()


def test_unconfigured_names_send_nothing(gateway: Gateway, tmp_path: Path) -> None:
    config = NotificationsConfig(sms_gateway=Endpoint(gateway.url, SECRET), retry=FAST,
                                 sms={"other": SmsTemplate("{{caller}}", "x")})
    notifier = Notifier(config, Outbox(str(tmp_path / "o.sqlite")))
    call = CallInfo("c", CALLER)
    assert notifier.messages(call, "sms_invite", "node", {}, {}, {}) == []
    assert notifier.messages(CallInfo("c", ""), "other", "node", {}, {}, {}) == [], "no recipient: nothing to send"
    (m,) = notifier.messages(call, "other", "node", {}, {}, {})
    assert m.id == message_id("c", "other", "sms", "node") != message_id("c", "other", "sms", "hangup")
    notifier.outbox.close()



def test_postgres_down_at_start_is_not_fatal(pg_server: PgServer) -> None:  # noqa: F811
    import socket

    import psycopg

    pg_server.require()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"postgresql://voicebot@127.0.0.1:{s.getsockname()[1]}/voicebot"
    box = Outbox(dead, timeout_s=1)  # the engine starts; the database is away
    with pytest.raises(psycopg.OperationalError):
        box.enqueue([msg(1)])
    box.close()


def test_two_engines_share_one_outbox_and_post_each_message_once(db: Db, gateway: Gateway) -> None:
    config = SenderConfig(backoff_s=0.05, max_backoff_s=0.2, lease_s=30, poll_s=0.02, batch=3)
    boxes = [Outbox(db.location()), Outbox(db.location())]
    boxes[0].enqueue([msg(n) for n in range(40)])
    senders = [Sender(box, {"sms": Endpoint(gateway.url, SECRET)}, config).start() for box in boxes]
    try:
        gateway.wait(lambda g: len(g.accepted) == 40, what="all forty")
        deadline = time.monotonic() + 5
        while boxes[0].pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert boxes[0].pending() == 0
        assert len(gateway.posts) == 40, "no message was claimed by both engines"
        assert senders[0].stats["sent"] + senders[1].stats["sent"] == 40
    finally:
        for sender, box in zip(senders, boxes, strict=True):
            sender.close()
            box.close()


def test_webhooks_carry_the_outcome_signed_with_their_own_secret(tmp_path: Path, gateway: Gateway) -> None:
    hook = Gateway()
    config = NotificationsConfig(
        sms_gateway=Endpoint(gateway.url, SECRET), webhooks={"crm": Endpoint(hook.url, SECRET)}, retry=FAST,
        sms={"call_outcome": SmsTemplate("{{caller}}", "bye")}, webhook={"call_outcome": ("crm",), "sms_invite": ("crm",)})
    notifier = Notifier(config, Outbox(str(tmp_path / "o.sqlite"))).start()
    call = CallInfo("hook-call", CALLER, "7000", "lead_screening_en")
    try:
        text_call = sms_call(notifier, call)
        notifier.call_ended(record_of(call, text_call), text_call.flow.hangup_notify, text_call.machine.outcome.notifications)
        hook.wait(lambda g: len(g.accepted) == 2, what="sms_invite and call_outcome to the CRM")
        gateway.wait(lambda g: len(g.accepted) == 1, what="the hang-up SMS")
        bodies = {json.loads(p.body)["notification"]: json.loads(p.body) for p in hook.accepted.values()}
        assert all(p.signed and p.headers["X-Voicebot-Event"] == "webhook" for p in hook.posts)
        outcome = bodies["call_outcome"]["outcome"]
        assert outcome["disposition"] == "sms_only" and outcome["path"][-1] == "goodbye_sms" and "transcript" not in outcome
        assert bodies["sms_invite"]["outcome"]["path"] == ["greet", "disclosure", "pitch", "sms_sent"]
        assert bodies["sms_invite"]["variables"]["customer_name"] == "Zoë" and bodies["sms_invite"]["caller"] == CALLER
    finally:
        notifier.close()
        hook.close()
