"""``notify:`` through the engine: a call on the FreeSWITCH test double sends its node SMS and hang-up SMS to a
local gateway, exactly once, across an engine restart; and the ``notifications:`` section's errors."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import numpy as np
import pytest

from fsdouble.double import ArrayAudio, FreeSwitchDouble
from tests.engine_support import PASSWORD, engine_config
from tests.notify_support import SECRET, Gateway
from voicebot.engine import Engine
from voicebot.notify.sender import Endpoint, SenderConfig
from voicebot.notify.settings import NotificationsConfig, NotificationsError, SmsTemplate, load_notifications

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "tests" / "flows" / "notify" / "notify.yaml"
CALLER = "+14155550123"


@pytest.fixture(scope="module")
def fs() -> Iterator[FreeSwitchDouble]:
    with FreeSwitchDouble(password=PASSWORD) as double:
        yield double


def notifications(url: str) -> NotificationsConfig:
    return NotificationsConfig(
        sms_gateway=Endpoint(url, SECRET), retry=SenderConfig(backoff_s=0.05, max_backoff_s=0.2, lease_s=2, poll_s=0.1),
        sms={"sms_invite": SmsTemplate("{{caller}}", "Hi {{customer_name}}, the link: https://x.test/{{call_id}}"),
             "call_outcome": SmsTemplate("{{caller}}", "Call {{disposition}}, tags {{tags}}")})


def started(config: object, url: str) -> Engine:
    engine = Engine(config, notifications=notifications(url))  # type: ignore[arg-type]
    engine.load()
    engine.start()
    assert engine.inbound.wait_up(10), "the engine connects to the double"
    return engine


def test_node_and_hangup_sms_reach_the_gateway_once_across_a_restart(fs: FreeSwitchDouble, tmp_path: Path) -> None:
    gateway = Gateway(statuses=[503] * 10_000)  # down for business until the restart
    config = engine_config(fs.inbound_port, tmp_path, (42400, 42499), default_flow=FLOW)
    engine = started(config, gateway.url)
    try:
        uuid = fs.place_call(engine.server.port, caller=ArrayAudio(np.zeros(8000, np.int16), 8000), number=CALLER)
        fs.wait_for(lambda: fs.channel(uuid).unicast_active, timeout=10, what="unicast armed")
        fs.press(uuid, "1")
        gateway.wait_green(lambda g: len(g.posts) >= 1, timeout=20, what="the node SMS, tried while the call runs")
        assert not fs.channel(uuid).hung_up, "the node SMS went out during the call"
        fs.wait_for(lambda: fs.channel(uuid).hung_up, timeout=30, what="the bot says goodbye and hangs up")
        fs.wait_for(lambda: engine.metrics.active_calls == 0, timeout=5, what="the call is released")
        gateway.wait_green(lambda g: len({p.headers["Idempotency-Key"] for p in g.posts}) == 2, timeout=10,
                     what="the hang-up SMS tried too")
    finally:
        engine.shutdown()
    assert gateway.accepted == {}, "nothing got through while the gateway refused"
    gateway.statuses = []
    engine = started(config, gateway.url)  # the same database: the outbox is there
    try:
        gateway.wait_green(lambda g: len(g.accepted) == 2, timeout=20, what="both SMS after the restart")
        deadline = time.monotonic() + 5
        while engine.notifier is not None and engine.notifier.outbox.pending() and time.monotonic() < deadline:
            gevent.sleep(0.05)
        assert engine.notifier is not None and engine.notifier.outbox.pending() == 0
    finally:
        engine.shutdown()
    bodies = {json.loads(p.body)["notification"]: json.loads(p.body) for p in gateway.accepted.values()}
    assert bodies["sms_invite"] == {**bodies["sms_invite"], "to": CALLER, "call_id": uuid,
                                    "text": f"Hi there, the link: https://x.test/{uuid}"}
    assert bodies["call_outcome"]["text"] == "Call texted, tags sms_sent" and bodies["call_outcome"]["to"] == CALLER
    assert all(p.signed for p in gateway.posts)
    gateway.close()


def test_notifications_section_parsed(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.yaml"
    path.write_text(
        "records: {db: calls.sqlite}\n"
        "notifications:\n"
        "  db: outbox.sqlite\n"
        "  sms_gateway: {url: 'http://127.0.0.1:9100/sms', secret: s3cret}\n"
        "  webhooks:\n"
        "    crm: {url: 'https://crm.example/hook', secret: k, timeout_s: 2}\n"
        "  retry: {backoff_s: 2, max_attempts: 10}\n"
        "  sms:\n"
        "    sms_invite: {to: '{{caller}}', text: 'Hi {{customer_name}}'}\n"
        "  webhook:\n"
        "    call_outcome: crm\n"
        "    sms_invite: [crm]\n", encoding="utf-8")
    config = load_notifications(path)
    assert config.db == str(tmp_path.resolve() / "outbox.sqlite")
    assert config.sms_gateway == Endpoint("http://127.0.0.1:9100/sms", "s3cret")
    assert config.webhooks["crm"].timeout_s == 2.0 and config.retry.backoff_s == 2.0 and config.retry.max_attempts == 10
    assert config.sms["sms_invite"] == SmsTemplate("{{caller}}", "Hi {{customer_name}}")
    assert config.webhook == {"call_outcome": ("crm",), "sms_invite": ("crm",)}
    assert set(config.endpoints()) == {"sms", "webhook:crm"}


def test_no_section_means_nothing_configured(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.yaml"
    path.write_text("records: {db: calls.sqlite}\n", encoding="utf-8")
    assert not load_notifications(path).configured


def test_notifications_section_errors_all_at_once_with_positions(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.yaml"
    path.write_text(
        "notifications:\n"                                      # 1
        "  webhooks:\n"                                         # 2
        "    crm: {url: 'ftp://x', secret: k}\n"                # 3
        "  retyr: {backoff_s: 1}\n"                             # 4
        "  sms:\n"                                              # 5
        "    sms_invite: {to: '{{caller}}', text: 'Hi {{ 1x }}'}\n"  # 6
        "  webhook:\n"                                          # 7
        "    call_outcome: [crn]\n", encoding="utf-8")          # 8
    with pytest.raises(NotificationsError) as err:
        load_notifications(path)
    lines = str(err.value).splitlines()
    expected = [
        ":3:", "notifications.webhooks.crm.url: bad value 'ftp://x': expected an http:// or https:// URL",
        ":4:", "unknown key 'retyr' (hint: did you mean 'retry'?)",
        ":5:", "notifications.sms: SMS need a gateway",
        ":6:", "bad template '{{ 1x }}'",
        ":8:", "no webhook named 'crn' under notifications.webhooks (hint: did you mean 'crm'?)",
    ]
    assert len(lines) == 5, lines
    for line, (where, what) in zip(lines, zip(expected[::2], expected[1::2], strict=True), strict=True):
        assert line.startswith(str(path) + where) and what in line, (line, where, what)
