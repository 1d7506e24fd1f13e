"""Handing calls to agents, end to end through the FreeSWITCH test double (real sockets, UDP, ASR, TTS).

The flow (tests/flows/handoff/handoff.yaml) prepares an agent as the call starts and transfers on key 1; the
agent's phone is a double endpoint that rings, answers, rejects or stays silent as each test needs, and says
a 1 kHz tone, so the caller's ear timeline tells bot frames from agent audio.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import gevent
import pytest

from fsdouble.double import Channel, FreeSwitchDouble
from tests.engine_support import PASSWORD, ROOT, engine_config, running_engine
from voicebot.config import HandoffConfig
from voicebot.engine import Engine
from voicebot.handoff.agents import AgentState, parse_agents
from voicebot.notify.screenpop import verify
from voicebot.records.model import CallRecord

FLOW = ROOT / "tests" / "flows" / "handoff" / "handoff.yaml"
AGENTS = {
    "wrap_up_s": 0,
    "list": [{"id": "sam", "name": "Sam", "endpoint": "user/1001"},
             {"id": "ana", "name": "Ana", "endpoint": "user/1002"}],
    "groups": {"advisors": {"agents": ["sam", "ana"], "strategy": "longest_idle"}},
}
SECRET = "test-secret"


@pytest.fixture(scope="module")
def fs() -> Iterator[FreeSwitchDouble]:
    with FreeSwitchDouble(password=PASSWORD) as double:
        double.set_endpoint("user/1001", ring_s=0.3)
        double.set_endpoint("user/1002", ring_s=0.3)
        yield double


class Hooks(http.server.BaseHTTPRequestHandler):
    """A CRM that refuses the first post of each event with 503, then accepts."""

    posts: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    refused: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        event = self.headers["X-Voicebot-Event"]
        if event not in Hooks.refused:
            Hooks.refused.add(event)
            self.send_response(503)
        else:
            Hooks.posts.append(({k: v for k, v in self.headers.items()}, body))
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def crm() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/lead"
    server.shutdown()


@contextmanager
def handoff_engine(fs: FreeSwitchDouble, tmp: Path, ports: tuple[int, int], **handoff: Any) -> Iterator[Engine]:
    settings = HandoffConfig(whisper_dir=tmp / "whisper", **handoff)
    config = engine_config(fs.inbound_port, tmp, ports, default_flow=FLOW, agents=parse_agents(AGENTS),
                           handoff=settings)
    with running_engine(config) as engine:
        yield engine


@pytest.fixture(scope="module")
def talk(fs: FreeSwitchDouble, crm: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with handoff_engine(fs, tmp_path_factory.mktemp("talk"), (42400, 42499), mode="talk",
                        screen_pop_url=crm, screen_pop_secret=SECRET) as engine:
        yield engine


@pytest.fixture(scope="module")
def bridge(fs: FreeSwitchDouble, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with handoff_engine(fs, tmp_path_factory.mktemp("bridge"), (42500, 42599), mode="bridge") as engine:
        yield engine


def agent_leg(fs: FreeSwitchDouble, caller: str) -> Channel | None:
    """The newest agent leg originated for ``caller``."""
    legs = [c for c in fs.channels() if c.variables.get("vb_call") == caller]
    return legs[-1] if legs else None


def wait_listening(fs: FreeSwitchDouble, caller: str) -> Channel:
    fs.wait_for(lambda: (leg := agent_leg(fs, caller)) is not None and leg.eavesdrop_target == caller,
                timeout=15, what="the agent listens in")
    leg = agent_leg(fs, caller)
    assert leg is not None
    return leg


def finished_record(fs: FreeSwitchDouble, engine: Engine, caller: str) -> CallRecord:
    fs.wait_for(lambda: fs.channel(caller).hung_up, timeout=30, what="the call ends")
    fs.wait_for(lambda: engine.metrics.active_calls == 0, timeout=5, what="the engine lets the call go")
    assert engine.flush_records(), "the record writer saved the records"
    [record] = [r for r in engine.store.list(limit=20) if r.call_id == caller]
    return record


def all_available(engine: Engine) -> None:
    engine.agents.set_available("sam", True, time.monotonic())
    engine.agents.set_available("ana", True, time.monotonic())
    fs_wait(lambda: {engine.agents.state(a, time.monotonic()) for a in ("sam", "ana")} == {AgentState.AVAILABLE},
            "every agent released")


def fs_wait(predicate: Any, what: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        gevent.sleep(0.02)


def test_talk_mode_listening_agent_then_transfer_then_back_to_the_bot(fs: FreeSwitchDouble, talk: Engine) -> None:
    caller = fs.place_call(talk.server.port)
    agent = wait_listening(fs, caller)
    fs.wait_for(lambda: len(agent.heard_audio()) > 16000, timeout=5, what="the agent hears the call (1 s)")
    fs.press(caller, "1")
    fs.wait_for(lambda: fs.first_heard(caller, "agent") is not None, timeout=15, what="the caller hears the agent")
    assert agent.eavesdrop_mode == "2" and not fs.channel(caller).bridged_to, "talk mode: no bridge"
    fs.hangup(agent.uuid)
    record = finished_record(fs, talk, caller)
    handoff = record.handoff
    assert (handoff["mode"], handoff["outcome"], handoff["agent_id"]) == ("talk", "connected", "sam")
    assert handoff["handoff_ms"] is not None and handoff["handoff_ms"] < 100
    assert handoff["listening_at"] < handoff["transfer_at"] < handoff["connected_at"] < handoff["agent_left_at"]
    assert record.path[-1] == "welcome_back" and record.disposition == "after_agent", record.path
    assert record.extras["agent"] == "sam"
    fs.assert_no_crash()
    all_available(talk)


def test_talk_mode_caller_hears_agent_without_a_gap(fs: FreeSwitchDouble, talk: Engine) -> None:
    caller = fs.place_call(talk.server.port)
    agent = wait_listening(fs, caller)
    fs.press(caller, "1")
    fs.wait_for(lambda: fs.first_heard(caller, "agent") is not None, timeout=15, what="the caller hears the agent")
    first_agent = fs.first_heard(caller, "agent")
    assert first_agent is not None
    frames = [(t, source) for t, source, _ in fs.ear_timeline(caller) if t <= first_agent + 0.2]
    before = [t for t, source in frames if t < first_agent]
    assert before and first_agent - before[-1] <= 0.045, "at most one frame between bot and agent"
    fs.hangup(caller)
    record = finished_record(fs, talk, caller)
    assert record.handoff["outcome"] == "connected" and record.disposition == "transferred"
    fs.wait_for(lambda: agent.hung_up, timeout=5, what="the agent's leg ends with the call")
    all_available(talk)


def test_agent_takes_over_by_pressing_2(fs: FreeSwitchDouble, talk: Engine) -> None:
    caller = fs.place_call(talk.server.port)
    agent = wait_listening(fs, caller)
    fs.press(agent.uuid, "2")
    fs.wait_for(lambda: fs.first_heard(caller, "agent") is not None, timeout=10, what="the caller hears the agent")
    fs.hangup(caller)
    record = finished_record(fs, talk, caller)
    assert (record.handoff["mode"], record.handoff["outcome"]) == ("takeover", "connected")
    assert record.disposition == "transferred" and record.path == ("greet",)
    all_available(talk)


def test_screen_pops_are_signed_and_retried(fs: FreeSwitchDouble, talk: Engine) -> None:
    fs.wait_for(lambda: {json.loads(b)["event"] for _, b in Hooks.posts} >= {"prepare", "bridge"}, timeout=10,
                what="prepare and bridge posts delivered")
    for headers, body in Hooks.posts:
        assert verify(SECRET, headers, body, time.time()), "signed with the shared secret"
    first = json.loads(next(b for _, b in Hooks.posts if json.loads(b)["event"] == "prepare"))
    assert first["attempt"] == 2, "the CRM refused the first post: it was retried"
    assert first["data"]["agent"]["id"] in ("sam", "ana") and first["data"]["group"] == "advisors"
    assert "transcript" in first["data"] and "variables" in first["data"]


def test_bridge_mode_then_the_agent_hangs_up_and_the_bot_is_back(fs: FreeSwitchDouble, bridge: Engine) -> None:
    caller = fs.place_call(bridge.server.port)
    agent = wait_listening(fs, caller)
    fs.press(caller, "1")
    fs.wait_for(lambda: fs.channel(caller).bridged_to == agent.uuid, timeout=15, what="bridged to the agent")
    fs.wait_for(lambda: fs.first_heard(caller, "agent") is not None, timeout=5, what="the caller hears the agent")
    fs.hangup(agent.uuid)
    fs.wait_for(lambda: fs.channel(caller).unicast_active, timeout=5, what="unicast re-armed after the bridge")
    record = finished_record(fs, bridge, caller)
    assert (record.handoff["mode"], record.handoff["outcome"]) == ("bridge", "connected")
    assert 40 < record.handoff["handoff_ms"] < 200, "CHANNEL_BRIDGE comes ~61 ms after uuid_bridge"
    assert record.path[-1] == "welcome_back" and record.disposition == "after_agent"
    fs.assert_no_crash()
    all_available(bridge)


def test_no_agent_ready_holds_then_bridges_when_one_answers(fs: FreeSwitchDouble, bridge: Engine) -> None:
    for agent in ("sam", "ana"):
        bridge.agents.set_available(agent, False, time.monotonic())
    caller = fs.place_call(bridge.server.port)
    fs.wait_for(lambda: fs.channel(caller).unicast_active, timeout=10, what="media up")
    gevent.sleep(0.5)
    fs.press(caller, "1")
    gevent.sleep(2.5)  # "Connecting you now", then the hold prompt
    assert agent_leg(fs, caller) is None, "nobody free: nobody rung"
    bridge.agents.set_available("ana", True, time.monotonic())
    fs.wait_for(lambda: (leg := agent_leg(fs, caller)) is not None and fs.channel(caller).bridged_to == leg.uuid,
                timeout=10, what="bridged the moment an agent answers")
    fs.wait_for(lambda: fs.first_heard(caller, "agent") is not None, timeout=5, what="the caller hears the agent")
    gevent.sleep(0.1)
    fs.hangup(caller)
    record = finished_record(fs, bridge, caller)
    assert (record.handoff["agent_id"], record.handoff["mode"]) == ("ana", "bridge")
    assert any(line.text.startswith("Please hold") for line in record.transcript if line.speaker == "bot"), record.to_json()
    all_available(bridge)


def test_nobody_within_the_limit_goes_to_the_fallback(fs: FreeSwitchDouble, bridge: Engine) -> None:
    for agent in ("sam", "ana"):
        bridge.agents.set_available(agent, False, time.monotonic())
    caller = fs.place_call(bridge.server.port)
    fs.wait_for(lambda: fs.channel(caller).unicast_active, timeout=10, what="media up")
    fs.press(caller, "1")
    record = finished_record(fs, bridge, caller)
    assert record.path[-2:] == ("connect", "callback") and record.disposition == "callback"
    assert record.handoff["outcome"] == "no_agent"
    all_available(bridge)


def test_caller_hangs_up_while_the_agent_rings(fs: FreeSwitchDouble, bridge: Engine) -> None:
    fs.set_endpoint("user/1001", ring_s=5.0)
    try:
        caller = fs.place_call(bridge.server.port)
        fs.wait_for(lambda: agent_leg(fs, caller) is not None, timeout=10, what="the agent's phone rings")
        leg = agent_leg(fs, caller)
        assert leg is not None
        fs.hangup(caller)
        fs.wait_for(lambda: leg.hung_up, timeout=5, what="the ringing agent leg is cancelled")
        record = finished_record(fs, bridge, caller)
        assert record.handoff["outcome"] == "caller_gone"
        all_available(bridge)
    finally:
        fs.set_endpoint("user/1001", ring_s=0.3)


def test_a_busy_agent_is_skipped_for_the_next(fs: FreeSwitchDouble, bridge: Engine) -> None:
    first = bridge.agents.peek("advisors", time.monotonic())
    assert first is not None
    other = "ana" if first.id == "sam" else "sam"
    fs.set_endpoint(first.endpoint, ring_s=0.1, result="USER_BUSY")
    try:
        caller = fs.place_call(bridge.server.port)
        agent = wait_listening(fs, caller)
        assert agent.variables.get("vb_agent") == other
        fs.hangup(caller)
        record = finished_record(fs, bridge, caller)
        assert record.handoff["attempts"] == [{"agent": first.id, "result": "USER_BUSY"}]
        all_available(bridge)
    finally:
        fs.set_endpoint(first.endpoint, ring_s=0.3)


def test_agent_leg_failing_while_listening_tells_the_flow(fs: FreeSwitchDouble, bridge: Engine) -> None:
    caller = fs.place_call(bridge.server.port)
    agent = wait_listening(fs, caller)
    fs.hangup(agent.uuid)  # before any transfer: the dialog hears AgentFailed and asks again at the transfer
    fs.wait_for(lambda: (leg := agent_leg(fs, caller)) is not None and leg.uuid != agent.uuid
                and leg.eavesdrop_target == caller, timeout=15, what="another agent prepared")
    fs.hangup(caller)
    record = finished_record(fs, bridge, caller)
    assert {"agent": agent.variables["vb_agent"], "result": "agent_hangup"} in record.handoff["attempts"]
    all_available(bridge)
