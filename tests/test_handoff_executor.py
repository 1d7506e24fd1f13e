"""The FreeSWITCH executor of the handoff machine at the end of a call: what it frees, and when it cannot ask the
machine (a stuck session thread holds it). ESL is faked (every api call is kept); the greenlets are real."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import gevent

from tests.test_handoff_e2e import AGENTS
from tests.test_handoff_rearm import FakeEsl
from voicebot.config import HandoffConfig
from voicebot.esl.connection import InboundConnection, OutboundCall
from voicebot.esl.handoff import CallHandoff, HandoffContext
from voicebot.handoff.agents import AgentPool, AgentState, parse_agents
from voicebot.handoff.protocol import HandoffRequested, RecordOutcome, ReserveAgent


def ringing(tmp: Path, posted: list[object] | None = None) -> tuple[CallHandoff, FakeEsl, AgentPool]:
    """A call whose agent's phone rings (the originate is faked: it never answers)."""
    pool = AgentPool(parse_agents(AGENTS), time.monotonic())
    esl = FakeEsl()
    ctx = HandoffContext(pool, cast(InboundConnection, esl), HandoffConfig(whisper_dir=tmp), "")
    handoff = CallHandoff(ctx, cast(OutboundCall, esl), call_id="caller", caller_codec="PCMU", clock=time.monotonic,
                          post=None, mute=lambda on: None, rearm=lambda: None)
    handoff.feed(HandoffRequested(time.monotonic(), "advisors"))
    gevent.sleep(0.01)
    if posted is not None:  # from now on the machine is the session's (a thread that may be stuck)
        handoff._post = posted.append
    return handoff, esl, pool


def agent_states(pool: AgentPool) -> set[AgentState]:
    return {pool.state(a, time.monotonic()) for a in ("sam", "ana")}


def test_the_call_ends_while_the_agent_rings_the_leg_is_killed_and_the_agent_freed(tmp_path: Path) -> None:
    handoff, esl, pool = ringing(tmp_path)
    leg = handoff.machine.leg
    assert AgentState.RESERVED in agent_states(pool)
    handoff.finish("caller_hangup", session_stopped=True)
    assert f"uuid_kill {leg} NORMAL_CLEARING" in esl.apis and agent_states(pool) == {AgentState.AVAILABLE}
    assert handoff.recorded and handoff.figures.to_dict()["outcome"] == "caller_gone"
    assert not handoff.ctx.legs, "no leg of the call is left to attach"


def test_a_stuck_session_still_frees_the_leg_and_the_agent(tmp_path: Path) -> None:
    posted: list[object] = []
    handoff, esl, pool = ringing(tmp_path, posted)
    leg = handoff.machine.leg
    handoff.finish("caller_hangup", session_stopped=False)  # the machine is the stuck thread's: not touched
    assert not handoff.machine.done and not handoff.recorded
    assert f"uuid_kill {leg} NORMAL_CLEARING" in esl.apis and agent_states(pool) == {AgentState.AVAILABLE}


def test_no_agent_is_reserved_once_the_outcome_is_recorded(tmp_path: Path) -> None:
    """The session's last commands may ask for an agent after the machine closed: nobody is held for a dead call."""
    posted: list[object] = []
    handoff, _, pool = ringing(tmp_path, posted)
    other = "ana" if handoff.figures.agent_id == "sam" else "sam"
    handoff.command(RecordOutcome(handoff.figures))
    handoff.command(ReserveAgent("advisors"))
    handoff._drain()
    assert posted == [] and pool.state(other, time.monotonic()) is AgentState.AVAILABLE
