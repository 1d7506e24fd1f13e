"""CallCore end to end on a fake clock: VAD facts, partials, finals, prompt audio and agent events in, commands out.

The harness answers the core's commands the way a driver does (a scripted recogniser, audio ready at once) but
never runs a model: every input is an explicit, time-stamped event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.call_fakes import BOT_LEVEL, CALLER_LEVEL, FRAME, FRAME_S, RATE
from tests.dialog_fixtures import PROTECTED, screening_flow
from voicebot.asr.base import AsrResult
from voicebot.audio.frame import AudioFrame
from voicebot.callcore import (
    AudioReady,
    CallCore,
    CallerAudio,
    CallSettings,
    CoreCommand,
    CoreEvent,
    Finalised,
    FinishRecognition,
    Recognise,
    Recognised,
    SendFrame,
    SendSlot,
    Synthesize,
)
from voicebot.dialog import events as ev
from voicebot.dialog.flow import BargeIn
from voicebot.dialog.machine import DialogMachine
from voicebot.handoff.protocol import (
    AgentAnswered,
    AgentKey,
    AgentListening,
    AgentReserved,
    Bridge,
    CallerBridged,
    Eavesdrop,
    OriginateAgent,
    PlayWhisper,
    RecordOutcome,
    ReserveAgent,
    SendTalkKey,
    StopBotAudio,
    WhisperDone,
)
from voicebot.player import LazyAudio

PROMPT_S = 1.0  # every prompt is this long
C = TypeVar("C")


@dataclass
class Harness:
    """Drives one CallCore: ``speech`` intervals are loud, ``words`` maps a time to the partial from then on."""

    core: CallCore
    speech: Sequence[tuple[float, float]] = ()
    words: Mapping[float, str] = field(default_factory=dict)
    agent_at: float | None = None  # the agent answers this long after their phone rings
    commands: list[tuple[float, CoreCommand]] = field(default_factory=list)
    sent: list[tuple[float, bool]] = field(default_factory=list)  # (slot, carried audio)
    said: str = ""

    def send(self, event: CoreEvent, now: float) -> None:
        for command in self.core.handle(event):
            self.commands.append((now, command))
            self._answer(command, now)

    def _answer(self, command: CoreCommand, now: float) -> None:
        match command:
            case Synthesize(at=at, play=play):
                tone = np.full(int(RATE * PROMPT_S), BOT_LEVEL, dtype=np.int16)
                self.send(AudioReady(at, play.play_id, LazyAudio(iter([tone])), at, True), now)
            case Recognise(frame=frame):
                due = [t for t in self.words if t <= frame.captured_at + 1e-9]
                text = self.words[max(due)] if due else ""
                if text and text != self.said:
                    self.said = text
                    self.send(Recognised(frame.captured_at + FRAME_S, AsrResult(text, False, 0.9)), now)
            case FinishRecognition(at=at):
                text, self.said = self.said, ""
                self.send(Finalised(at, AsrResult(text, True, 0.9 if text else 0.0)), now)
            case ReserveAgent():  # the handoff machine's executor: an agent is free, answers after agent_at
                self.send(AgentReserved(now, "agent-7", "Seven", "user/1007"), now)
            case OriginateAgent(leg=leg) if self.agent_at is not None:
                self.core.schedule(now + self.agent_at, AgentAnswered(now + self.agent_at, leg))
            case PlayWhisper(leg=leg):
                self.core.schedule(now, WhisperDone(now, leg))
            case Eavesdrop(leg=leg):
                self.core.schedule(now + FRAME_S, AgentListening(now + FRAME_S, leg))
            case SendTalkKey(leg=leg, digit=digit):
                self.core.schedule(now + FRAME_S, AgentKey(now + FRAME_S, leg, digit))
            case Bridge():
                self.core.schedule(now + 0.06, CallerBridged(now + 0.06))
            case SendFrame(at=at, audio=audio):
                self.sent.append((at, audio is not None))

    def run(self, until: float, start: float = 0.0, extra: Mapping[float, ev.Event] | None = None) -> None:
        if start == 0.0:
            self.send(ev.CallStarted(0.0, {}, "", ""), 0.0)
        for i in range(round(start / FRAME_S), round(until / FRAME_S)):
            t = round(i * FRAME_S, 6)
            for at, event in (extra or {}).items():
                if abs(at - t) < 1e-9:
                    self.send(event, t)
            if self.core.ended:
                return
            loud = any(a - 1e-9 <= t < b - 1e-9 for a, b in self.speech)
            samples = np.full(FRAME, CALLER_LEVEL if loud else 0, dtype=np.int16)
            self.send(CallerAudio(AudioFrame(samples.tobytes(), RATE, i, t), 1.0 if loud else 0.0), t)
            self.send(SendSlot(t), t)

    def of(self, kind: type[C]) -> list[tuple[float, C]]:
        return [(t, c) for t, c in self.commands if isinstance(c, kind)]

    def times(self, kind: str) -> list[float]:
        return [e["t"] for e in self.core.timeline.of(kind)]


def core(barge_in: BargeIn | None = None) -> CallCore:
    return CallCore(DialogMachine(screening_flow(greet_barge_in=barge_in)), CallSettings(rate=RATE))


@pytest.mark.parametrize(("agent_at", "mode"), [(1.5, "bridge"), (0.5, "talk")])
def test_a_whole_call_answer_barge_in_and_handoff(agent_at: float, mode: str) -> None:
    """Greet, answer "yes", barge into the pitch with "yes please", the call is transferred to the agent: bridged
    when the caller waits for the agent (hold), through eavesdrop's talk key when the agent already listens."""
    h = Harness(core(), speech=[(1.4, 1.8), (2.6, 3.2)], words={1.6: "yes", 2.8: "yes", 2.9: "yes please"},
                agent_at=agent_at)
    h.run(8.0, extra={7.0: ev.HungUp(7.0, "agent_call_ended")})
    plays = [c.play.node for _, c in h.of(Synthesize)]
    assert plays[:3] == ["greet", "pitch", "hot"], plays
    assert h.times("prompt_start")[0] == 0.0 and h.core.machine.outcome.path[:3] == ["greet", "pitch", "hot"]
    pause, stop = h.times("pause"), h.times("stop")
    assert pause and 2.6 < pause[0] <= 2.6 + 0.08 + FRAME_S, pause  # 80 ms of speech pauses the pitch
    assert stop and stop[0] == 2.92, stop  # two key words confirm the barge-in
    assert h.core.machine.outcome.turns[1].barge_in
    prepare = h.of(ev.PrepareHandoff)
    transfer = h.of(ev.TransferCall)
    assert len(prepare) == 1 and len(transfer) == 1
    assert transfer[0][0] >= prepare[0][0] + agent_at and transfer[0][1].agent_id == "agent-7"
    assert not [t for t, audio in h.sent if audio and t >= transfer[0][0]], "the bot is silent once transferred"
    assert h.core.ended and h.core.machine.outcome.disposition == "transferred"
    # the handoff went through the call's HandoffMachine: its states, the dialog told by it, one outcome
    states = [e["state"] for e in h.core.timeline.of("handoff") if "state" in e]
    listening = ["listening"] if mode == "talk" else []  # held callers are bridged as soon as the agent answers
    assert states == ["reserving", "ringing", "answered", *listening, "transferring", "connected", "done"]
    assert [e["event"] for e in h.core.timeline.of("agent")] == ["AgentReady"]
    assert len(h.of(StopBotAudio)) == (mode == "talk") and h.core.bot_muted == (mode == "talk")
    [(_, record)] = h.of(RecordOutcome)
    assert (record.figures.mode, record.figures.outcome, record.figures.agent_id) == (mode, "connected", "agent-7")


def test_a_cough_over_a_protected_prompt_resumes_it_and_speech_past_the_window_pauses_at_once() -> None:
    h = Harness(core(BargeIn(PROTECTED.mode, protect_ms=500, min_speech_ms=80, min_words=2)),
                speech=[(0.6, 0.7), (1.5, 1.9)])
    h.run(1.9)
    pauses, resumes = h.times("pause"), h.times("resume")
    assert pauses == [0.68, 1.58], pauses
    assert resumes and pauses[0] < resumes[0] < 1.5


# ------------------------------------------------------------- properties

EVENT_KINDS = ("speech", "dtmf", "agent_ready", "agent_failed", "took_over", "agent_left", "hang_up")
WORDS = ("", "uh-huh", "yes", "no", "yes sure", "stop calling", "the", "robot", "wrong number thanks")


@st.composite
def call_script(draw: st.DrawFn) -> tuple[list[tuple[float, str, str]], float]:
    """Random caller and agent events at random 20 ms slots, and when the call is forced to end."""
    n = draw(st.integers(0, 12))
    events = [(round(draw(st.integers(1, 399)) * FRAME_S, 6), draw(st.sampled_from(EVENT_KINDS)),
               draw(st.sampled_from(WORDS))) for _ in range(n)]
    return sorted(events), round(draw(st.integers(50, 400)) * FRAME_S, 6)


def run_script(events: list[tuple[float, str, str]], end: float) -> Harness:
    speech = [(t, t + 0.4) for t, kind, _ in events if kind == "speech"]
    words = {round(t + 0.2, 6): text for t, kind, text in events if kind == "speech" and text}
    h = Harness(core(PROTECTED), speech=speech, words=words)
    agent: dict[str, Callable[[float], ev.Event]] = {
        "agent_ready": lambda t: ev.AgentReady(t, "a1"), "agent_failed": lambda t: ev.AgentFailed(t, "busy"),
        "took_over": lambda t: ev.AgentTookOver(t, "a1"), "agent_left": lambda t: ev.AgentLeft(t, "a1"),
        "dtmf": lambda t: ev.Dtmf(t, "1"), "hang_up": lambda t: ev.HungUp(t, "caller_hangup")}
    extra = {t: agent[kind](t) for t, kind, _ in events if kind in agent}
    h.run(end, extra=extra)
    if not h.core.ended:
        h.send(ev.HungUp(end, "caller_hangup"), end)
    return h


def bridged_spans(h: Harness, events: list[tuple[float, str, str]]) -> list[tuple[float, float]]:
    """When the caller was with an agent: from a TransferCall or a takeover until the agent failed (or the end)."""
    marks = [(t, "on") for t, _ in h.of(ev.TransferCall)]
    marks += [(t, "on") for t, kind, _ in events if kind == "took_over" and t > 0]
    marks += [(t, "off") for t, kind, _ in events if kind == "agent_failed"]
    spans, since = [], None
    for t, mark in sorted(marks):
        if mark == "on" and since is None:
            since = t
        elif mark == "off" and since is not None:
            spans.append((since, t))
            since = None
    return spans + ([(since, float("inf"))] if since is not None else [])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call_script())
def test_invariants_over_random_event_orders(script: tuple[list[tuple[float, str, str]], float]) -> None:
    h = run_script(*script)
    timeline, outcome = h.core.timeline, h.core.machine.outcome
    assert h.core.ended and outcome.disposition and outcome.ended_at is not None, "exactly one disposition"
    assert len(timeline.of("hangup")) <= 1
    talking = [t for t, audio in h.sent if audio]
    assert not [t for t in talking if t > outcome.ended_at], "never plays after the call ended"
    for start, end in bridged_spans(h, script[0]):  # never plays while the caller is with an agent
        assert not [t for t in talking if start < t < end], (start, end)
    starts = {e["play_id"]: e["t"] for e in timeline.of("prompt_start")}
    greet = {c.play.play_id for _, c in h.of(Synthesize) if c.play.node == "greet"}
    for pause in timeline.of("pause"):  # a protected window is never shortened (nor restarted)
        if pause["play_id"] in greet:
            assert pause["t"] - starts[pause["play_id"]] >= PROTECTED.protect_ms / 1000 - 1e-9, pause
        after = [e for e in timeline.entries if e["t"] >= pause["t"] and e.get("play_id") == pause["play_id"]
                 and e["kind"] in ("resume", "prompt_end")]
        assert after, f"pause at {pause['t']} never resumed or stopped"  # every pause ends in resume or stop
