"""`voicebot simulate` hands a call to an agent through the same HandoffMachine as FreeSWITCH.

The flow (tests/flows/handoff/handoff.yaml) prepares an agent as the call starts and transfers on key 1. The
simulated agent answers the machine's commands; the call's timeline shows each state the machine entered, and the
bot is silent from the moment the agent has the caller.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.engine_support import ROOT
from voicebot.cli import main
from voicebot.dialog.loader import load_flow
from voicebot.sim.text import AgentSim, CallerAction, TextCall

FLOW = ROOT / "tests" / "flows" / "handoff" / "handoff.yaml"


def simulate(tmp_path: Path, *extra: str) -> tuple[list[dict[str, object]], str]:
    """Run `voicebot simulate` on the handoff flow with a caller who presses 1 after the greeting."""
    script = tmp_path / "caller.yaml"
    script.write_text("- dtmf: 1\n- wait: 8000\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["simulate", str(FLOW), "--caller", str(script), "-o", str(out), *extra]) == 0
    entries = json.loads((out / "timeline.json").read_text(encoding="utf-8"))["entries"]
    return entries, (out / "transcript.txt").read_text(encoding="utf-8")


def states(entries: list[dict[str, object]]) -> list[object]:
    return [e["state"] for e in entries if e["kind"] == "handoff" and "state" in e]


def test_simulate_runs_the_handoff_machine_to_a_talk_mode_transfer(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    entries, transcript = simulate(tmp_path)
    assert states(entries) == ["reserving", "ringing", "answered", "listening", "transferring", "connected", "done"]
    agent_events = [e["event"] for e in entries if e["kind"] == "agent"]
    assert agent_events == ["AgentReady"], "the dialog hears the agent from the machine"
    connected = next(e["t"] for e in entries if e.get("state") == "connected")
    assert isinstance(connected, float)
    with wave.open(str(tmp_path / "out" / "call.wav"), "rb") as wav:  # left: the caller, right: the bot
        rate, frames = wav.getframerate(), wav.readframes(wav.getnframes())
    bot = np.frombuffer(frames, dtype="<i2").reshape(-1, 2)[:, 1]
    assert np.any(bot[: int(connected * rate)]), "the bot spoke before the transfer"
    assert not np.any(bot[int(connected * rate) + rate // 50:]), "the bot is silent once the agent has the caller"
    assert "disposition=transferred" in transcript and "state=connected" in transcript
    assert "handoff: mode=talk outcome=connected" in capsys.readouterr().out


def test_simulate_without_an_agent_gives_up_after_the_attempts_and_takes_the_fallback(tmp_path: Path) -> None:
    entries, transcript = simulate(tmp_path, "--no-agent")
    seen = states(entries)
    assert seen[:4] == ["reserving", "ringing", "reserving", "ringing"] and "connected" not in seen
    assert next(e["event"] for e in entries if e["kind"] == "agent") == "AgentFailed"
    assert "path=greet > connect > callback" in transcript and "disposition=callback" in transcript


@pytest.mark.parametrize(("agent", "outcome", "path"), [
    (AgentSim(1500), ("talk", "connected"), ["greet", "connect"]),
    (AgentSim(None), ("", "agent_failed"), ["greet", "connect", "callback"]),
])
def test_the_text_simulator_runs_the_same_machine(agent: AgentSim, outcome: tuple[str, str], path: list[str]) -> None:
    """`voicebot chat` and `voicebot test-flow` hand off through the HandoffMachine too (no models needed)."""
    call = TextCall(load_flow(FLOW), agent=agent)
    list(call.start())
    list(call.act(CallerAction("dtmf", "1")))
    list(call.finish())
    figures = call.handoff.figures
    assert call.handoff.done and (figures.mode, figures.outcome) == outcome
    assert call.machine.outcome.path == path
    if agent.ready_ms is None:  # every attempt rang out: max_attempts (3) for the greeting's prepare, 3 for the transfer
        assert {a["result"] for a in figures.attempts} == {"NO_ANSWER"} and len(figures.attempts) == 6
