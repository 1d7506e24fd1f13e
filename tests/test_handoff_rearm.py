"""After a bridge to an agent, exactly one part of the engine re-arms the caller's unicast.

On a real FreeSWITCH the handoff's re-arm (on the caller's CHANNEL_PARK, park_after_bridge) and the stall
watch's re-arm (``uuid_transfer park inline`` + unicast) once fired at the same moment: the caller parked twice
and the second unicast was refused (FreeSWITCH keeps the first stream: probe check9, tests/test_double_fidelity.py).
The double parks the caller 0.1 ms after CHANNEL_UNBRIDGE, as the real switch does; here it waits 300 ms instead,
so that the window in which both could act is wide and the test is deterministic.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import gevent
import pytest

from fsdouble.double import FreeSwitchDouble, Timing
from tests.engine_support import PASSWORD
from tests.test_handoff_e2e import AGENTS, finished_record, handoff_engine, wait_listening
from voicebot.config import HandoffConfig
from voicebot.engine import Engine
from voicebot.esl.connection import InboundConnection, OutboundCall
from voicebot.esl.handoff import CallHandoff, HandoffContext
from voicebot.esl.protocol import EslEvent
from voicebot.handoff.agents import AgentPool, AgentState, parse_agents
from voicebot.handoff.machine import State
from voicebot.handoff.protocol import (
    AgentAnswered,
    AgentHungUp,
    AgentListening,
    CallerBridged,
    HandoffRequested,
    TransferRequested,
)

GAP_S = 0.3  # CHANNEL_UNBRIDGE → CHANNEL_PARK on the caller (real: 0.1 ms)


@pytest.fixture
def fs() -> Iterator[FreeSwitchDouble]:
    with FreeSwitchDouble(password=PASSWORD, timing=dataclasses.replace(Timing(), unbridge_park_s=GAP_S)) as double:
        double.set_endpoint("user/1001", ring_s=0.3)
        double.set_endpoint("user/1002", ring_s=0.3)
        yield double


@pytest.fixture
def bridge(fs: FreeSwitchDouble, tmp_path: Path) -> Iterator[Engine]:
    with handoff_engine(fs, tmp_path, (42700, 42799), mode="bridge") as engine:
        yield engine


def test_one_rearm_after_the_agent_leaves_a_bridge(fs: FreeSwitchDouble, bridge: Engine) -> None:
    caller = fs.place_call(bridge.server.port)
    agent = wait_listening(fs, caller)
    fs.press(caller, "1")
    fs.wait_for(lambda: fs.channel(caller).bridged_to == agent.uuid, timeout=15, what="bridged to the agent")
    fs.wait_for(lambda: fs.first_heard(caller, "agent") is not None, timeout=5, what="the caller hears the agent")
    ch = fs.channel(caller)
    log_before, commands_before = len(ch.unicast_log), len(fs.commands)
    left = time.monotonic()
    fs.hangup(agent.uuid)
    fs.wait_for(lambda: "CHANNEL_UNBRIDGE" in ch.events, timeout=5, what="the caller leaves the bridge")
    fs.wait_for(lambda: ch.events[ch.events.index("CHANNEL_UNBRIDGE"):].count("CHANNEL_PARK") >= 1, timeout=5,
                what="park_after_bridge parks the caller")
    fs.wait_for(lambda: any(e.startswith("started") for e in ch.unicast_log[log_before:]), timeout=5,
                what="the caller's stream is re-armed")
    fs.wait_for(lambda: time.monotonic() - left > GAP_S + 0.5 or len(ch.unicast_log) > log_before + 1, timeout=5,
                what="time for a second re-arm to show")
    after = ch.unicast_log[log_before:]
    transfers = [c for c in fs.commands[commands_before:] if c.startswith(f"api uuid_transfer {caller}")]
    assert [e for e in after if not e.startswith("stopped")] == [after[0]] and after[0].startswith("started"), after
    assert transfers == [], "the stall watch transferred the caller while the handoff re-arms it"
    assert ch.events[ch.events.index("CHANNEL_UNBRIDGE"):].count("CHANNEL_PARK") == 1, ch.events
    fs.hangup(caller)
    record = finished_record(fs, bridge, caller)
    assert record.path[-1] == "welcome_back" and record.disposition == "after_agent"
    fs.assert_no_crash()


# ------------------------------------------------------------------ the handoff's side, event orders by hand


class FakeEsl:
    """The caller's socket and the inbound connection, as far as a bridge needs them: every api call is kept."""

    def __init__(self) -> None:
        self.apis: list[str] = []
        self.originated: list[str] = []

    def api(self, command: str, timeout: float | None = None) -> str:
        self.apis.append(command)
        return "+OK"

    def originate(self, dial_string: str, app: str, *, uuid: str | None = None, timeout: float = 30.0) -> str:
        self.originated.append(uuid or "")
        return uuid or ""


class Harness:
    """The FreeSWITCH executor and its HandoffMachine, fed directly, bridged to an agent: what it re-arms."""

    def __init__(self, tmp: Path, fail: bool = False) -> None:
        self.pool = AgentPool(parse_agents(AGENTS), time.monotonic())
        self.esl = FakeEsl()
        ctx = HandoffContext(self.pool, cast(InboundConnection, self.esl), HandoffConfig(whisper_dir=tmp, mode="bridge"), "")
        self.rearms = 0
        self.fail = fail
        self.handoff = CallHandoff(ctx, cast(OutboundCall, self.esl), call_id="caller", caller_codec="PCMU",
                                   clock=time.monotonic, post=None, mute=lambda on: None, rearm=self.rearm)
        feed, now = self.handoff.feed, time.monotonic
        feed(HandoffRequested(now(), "advisors"))
        self.leg = self.handoff.machine.leg
        gevent.sleep(0.01)  # the originate greenlet
        assert self.esl.originated == [self.leg]
        feed(AgentAnswered(now(), self.leg))
        gevent.sleep(0.01)  # the whisper greenlet (no whisper: done at once)
        feed(AgentListening(now(), self.leg))
        feed(TransferRequested(now()))
        assert self.esl.apis[-1] == f"uuid_bridge caller {self.leg}" and self.handoff.owns_rearm
        feed(CallerBridged(now()))
        assert self.handoff.machine.state is State.CONNECTED and self.handoff.owns_rearm

    def rearm(self) -> None:
        self.rearms += 1
        if self.fail:
            raise RuntimeError("re-arm timed out")

    def back_with_the_bot(self) -> bool:
        agent = self.handoff.figures.agent_id
        return self.handoff.machine.state is State.IDLE and self.pool.state(agent, time.monotonic()) is AgentState.AVAILABLE


def test_the_caller_parks_before_the_agents_hang_up_is_seen(tmp_path: Path) -> None:
    """Two sockets, no order between them: the caller's CHANNEL_PARK may come before the agent's hang-up."""
    h = Harness(tmp_path)
    h.handoff.on_caller_event(EslEvent("CHANNEL_PARK"))
    assert h.rearms == 0 and h.handoff.owns_rearm, "the agent is still on: nothing to re-arm yet"
    h.handoff.feed(AgentHungUp(time.monotonic(), h.leg))
    assert h.rearms == 1 and not h.handoff.owns_rearm and h.back_with_the_bot()


def test_the_agents_hang_up_then_the_park(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.handoff.feed(AgentHungUp(time.monotonic(), h.leg))
    assert h.rearms == 0 and h.handoff.owns_rearm, "the stall watch stands down until the park"
    h.handoff.on_caller_event(EslEvent("CHANNEL_PARK"))
    assert h.rearms == 1 and not h.handoff.owns_rearm and h.back_with_the_bot()


def test_a_failed_rearm_hands_the_stream_to_the_stall_watch(tmp_path: Path) -> None:
    h = Harness(tmp_path, fail=True)
    h.handoff.feed(AgentHungUp(time.monotonic(), h.leg))
    h.handoff.on_caller_event(EslEvent("CHANNEL_PARK"))
    assert h.rearms == 1 and not h.handoff.owns_rearm and h.back_with_the_bot()
