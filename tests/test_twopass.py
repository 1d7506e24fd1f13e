"""The two-pass policy: the rule (which turns wait for Whisper), the call core's request and answer on a fake clock,
and the flow key ``listen: {asr: ...}`` through the loader and the validator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tests.call_fakes import FRAME_S, RATE, Drive, LevelVad, ScriptedAsr, tone_speaker
from tests.dialog_fixtures import screening_flow
from tests.test_callcore import Harness
from voicebot.call import CallSession
from voicebot.callcore import CallCore, CallSettings, CoreCommand, Synthesize
from voicebot.dialog.flow import AsrPass, Flow, Listen
from voicebot.dialog.loader import FlowError, load_flow_text, validate_file
from voicebot.dialog.machine import DialogMachine, build_matcher
from voicebot.dialog.twopass import (
    ACCURATE_TIMEOUT_S,
    AMBIGUOUS,
    CAPTURE,
    NO_INTENT,
    POLICY,
    UNSURE,
    RecogniseTurn,
    Scorer,
    TurnRecognised,
    accurate_reason,
    allowed_intents,
)


def with_policy(flow: Flow, node_id: str, asr: AsrPass) -> Flow:
    nodes = dict(flow.nodes)
    node = nodes[node_id]
    nodes[node_id] = replace(node, listen=replace(node.listen or Listen(), asr=asr))
    return replace(flow, nodes=nodes)


def scorer(flow: Flow) -> Scorer:
    matcher = build_matcher(flow)

    def scores(text: str, allowed: list[str]) -> list[tuple[str, float]]:
        return [(m.intent, m.score) for m in matcher.match(text, allowed)]
    return scores


# ------------------------------------------------------------------ the rule


@pytest.mark.parametrize(("node", "asr", "text", "reason"), [
    ("greet", AsrPass.AUTO, "yes", ""),  # a sure intent on a yes/no node answers at once
    ("greet", AsrPass.AUTO, "no", ""),
    ("greet", AsrPass.AUTO, "well i think that yes could be it maybe", NO_INTENT),  # a weak keyword hit
    ("greet", AsrPass.AUTO, "you know what", NO_INTENT),
    ("greet", AsrPass.AUTO, "yeah not interested", AMBIGUOUS),  # two intents at once: the fast words are suspect
    ("pitch", AsrPass.AUTO, "yes sure", ""),  # one intent twice
    ("greet", AsrPass.AUTO, "yes stop calling", AMBIGUOUS),  # a node intent and a global one that lead elsewhere
    ("greet", AsrPass.AUTO, "yes [unk] [unk]", UNSURE),
    ("greet", AsrPass.AUTO, "", UNSURE),
    ("greet", AsrPass.FAST, "you know what", ""),
    ("greet", AsrPass.ACCURATE, "yes", POLICY),
    ("callback", AsrPass.AUTO, "tomorrow at three", CAPTURE),  # a slot needs every word right
    ("robot", AsrPass.ACCURATE, "anything", ""),  # a node that does not listen never waits
])
def test_the_rule_says_when_whisper_decodes(node: str, asr: AsrPass, text: str, reason: str) -> None:
    flow = screening_flow()
    if flow.nodes[node].listen is not None:
        flow = with_policy(flow, node, asr)
    assert accurate_reason(flow, flow.nodes[node], text, scorer(flow)) == reason


def test_allowed_intents_are_the_nodes_then_the_globals() -> None:
    flow = screening_flow()
    assert allowed_intents(flow, flow.nodes["greet"]) == ["yes", "no", "robot", "stop", "again"]
    assert allowed_intents(flow, replace(flow.nodes["greet"], globals_enabled=False)) == ["yes", "no"]


# ------------------------------------------------------------ the call core

WRONG = "know [unk] is [unk] of"  # what the streaming pass made of "yes, this is me"


@dataclass
class TwoPassHarness(Harness):
    """Answers each :class:`RecogniseTurn` ``delay`` s later with ``accurate`` (or ``error``)."""

    accurate: str = ""
    error: str | None = None
    delay: float = 0.8
    requests: list[RecogniseTurn] = field(default_factory=list)
    waiting: list[RecogniseTurn] = field(default_factory=list)

    def _answer(self, command: CoreCommand, now: float) -> None:
        if isinstance(command, RecogniseTurn):
            self.requests.append(command)
            self.waiting.append(command)
            return
        super()._answer(command, now)

    def run_with_answers(self, until: float) -> None:
        """Run frame by frame; each request's answer arrives ``delay`` s after it, before that frame."""
        for i in range(round(until / FRAME_S)):
            t = round(i * FRAME_S, 6)
            for request in [r for r in self.waiting if r.at + self.delay <= t + 1e-9]:
                self.waiting.remove(request)
                at = round(request.at + self.delay, 6)
                self.send(TurnRecognised(at, request.turn, self.accurate, self.error, 0.9, 700), t)
            self.run(t + FRAME_S, start=t)
            if self.core.ended:
                return


def two_pass_core(asr: AsrPass, accurate_pass: bool = True) -> CallCore:
    flow = with_policy(screening_flow(), "greet", asr)
    return CallCore(DialogMachine(flow), CallSettings(rate=RATE, accurate_pass=accurate_pass))


def greet_then_answer(asr: AsrPass, *, accurate: str = "yes this is me", error: str | None = None,
                      accurate_pass: bool = True, words: str = WRONG, delay: float = 0.8) -> TwoPassHarness:
    h = TwoPassHarness(two_pass_core(asr, accurate_pass), speech=[(1.4, 2.0)], words={1.6: words}, accurate=accurate,
                       error=error, delay=delay)
    h.run_with_answers(8.0)
    return h


def test_auto_waits_for_whisper_when_the_fast_final_is_wrong_and_takes_its_words() -> None:
    h = greet_then_answer(AsrPass.AUTO)
    outcome = h.core.machine.outcome
    assert outcome.path[:2] == ["greet", "pitch"], outcome.path  # Whisper's "yes this is me" answered the greeting
    [fast] = h.core.timeline.of("fast_final")
    [final] = h.core.timeline.of("final")
    assert fast["text"] == WRONG and fast["reason"] == UNSURE
    assert final["text"] == "yes this is me" and final["asr"] == "accurate" and final["fast_text"] == WRONG
    assert final["accurate_ms"] == 800 and final["t"] == pytest.approx(fast["t"] + 0.8)
    [turn] = h.core.timeline.turns()
    assert turn["text"] == "yes this is me" and turn["asr_final_ms"] >= 800


def test_the_request_carries_the_whole_turn_with_its_preroll_and_the_nodes_hints() -> None:
    h = greet_then_answer(AsrPass.ACCURATE, words="yes", accurate="yes")
    [request] = h.requests
    seconds = len(request.audio) / 2 / request.rate
    assert request.rate == RATE and request.language == "en" and request.reason == POLICY
    assert 0.6 + 0.3 - 1e-6 <= seconds <= 0.6 + 0.3 + 0.7 + 0.05, seconds  # speech + pre-roll (+ end silence)
    assert "yes" in request.hints


def assert_asked_again(h: TwoPassHarness) -> None:
    """The wrong words matched nothing: no-match asks the greeting again, the call stays at greet."""
    assert h.core.machine.outcome.path == ["greet"], h.core.machine.outcome.path
    plays = [c.play.text for _, c in h.of(Synthesize)]
    assert plays[1:2] == ["Sorry, is this there?"], plays


def test_with_fast_the_wrong_words_stand_and_the_greeting_is_asked_again() -> None:
    h = greet_then_answer(AsrPass.FAST)
    assert_asked_again(h)
    assert not h.core.timeline.of("fast_final") and h.core.timeline.of("final")[0]["asr"] == "fast"


def test_a_failed_accurate_pass_keeps_the_fast_final() -> None:
    h = greet_then_answer(AsrPass.ACCURATE, error="the Whisper worker process died")
    [final] = h.core.timeline.of("final")
    assert final["asr"] == "fast" and final["text"] == WRONG and final["accurate_error"].startswith("the Whisper")
    assert_asked_again(h)


def test_a_driver_without_an_accurate_pass_is_never_asked() -> None:
    h = greet_then_answer(AsrPass.ACCURATE, accurate_pass=False)
    assert not [c for _, c in h.commands if isinstance(c, RecogniseTurn)]
    assert h.core.timeline.of("final")[0]["asr"] == "fast"


def test_an_answer_for_another_turn_is_ignored() -> None:
    core = two_pass_core(AsrPass.ACCURATE)
    assert core.handle(TurnRecognised(1.0, 7, "yes")) == []
    assert not core.timeline.of("final")


# -------------------------------------------------------- the flow key

FLOW = """\
flow: {id: t, version: 1, language: en, start: greet}
defaults:
  listen: {asr: fast}
intents:
  yes: {keywords: [yes]}
nodes:
  greet:
    say: Hello
    listen: {asr: accurate}
    on: {yes: ask}
  ask:
    say: Again?
    on: {yes: bye}
  bye:
    say: Bye
    hangup: done
"""


def test_the_key_and_its_flow_default_load() -> None:
    flow = load_flow_text(FLOW)
    assert flow.nodes["greet"].listen == Listen(asr=AsrPass.ACCURATE)
    assert flow.nodes["ask"].listen is not None and flow.nodes["ask"].listen.asr is AsrPass.FAST
    default = load_flow_text(FLOW.replace("defaults:\n  listen: {asr: fast}\n", ""))
    assert default.nodes["ask"].listen is not None and default.nodes["ask"].listen.asr is AsrPass.AUTO


def test_a_misspelt_value_is_reported_where_it_is_with_a_did_you_mean(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(FLOW.replace("asr: accurate", "asr: acurate"), encoding="utf-8")
    [problem] = validate_file(path)
    assert (problem.file, problem.line, problem.column) == (str(path), 9, 19)
    assert problem.message == "must be one of: fast, accurate, auto (got 'acurate')"
    assert problem.hint == "did you mean 'accurate'?"


def test_a_misspelt_key_is_reported_with_a_did_you_mean() -> None:
    with pytest.raises(FlowError) as caught:
        load_flow_text(FLOW.replace("{asr: accurate}", "{asrr: accurate}"))
    [problem] = caught.value.problems
    assert problem.path == "nodes.greet.listen.asrr" and problem.hint == "did you mean 'asr'?"


# ------------------------------------------------------------ the session edge


@dataclass
class StampedAccurate:
    """An accurate pass that answers at once, stamped ``spent`` s later (compute charged to a virtual clock)."""

    text: str
    spent: float = 1.0

    def start(self, request: RecogniseTurn, deliver: Callable[[TurnRecognised], None]) -> None:
        deliver(TurnRecognised(round(request.at + self.spent, 6), request.turn, self.text, None, 0.9, 1000))

    def bind(self, post: Callable[[Callable[[], None]], None]) -> None:
        """Runs on the caller's thread."""


def test_a_session_takes_a_charged_answer_when_the_calls_clock_reaches_it() -> None:
    """The simulator's inline Whisper answers at once with a later stamp: the call takes it when its clock gets
    there, so the timeline never goes back in time (the demo's turns were taken over prompts that had not started)."""
    flow = with_policy(screening_flow(), "greet", AsrPass.ACCURATE)
    session = CallSession(DialogMachine(flow), vad=LevelVad(), asr=ScriptedAsr({1.6: WRONG}),  # type: ignore[arg-type]
                          speaker=tone_speaker(1.0), settings=CallSettings(rate=RATE),
                          accurate=StampedAccurate("yes this is me"))
    Drive(session, speech=[(1.4, 2.0), (3.2, 3.5)]).until(5.0)  # speaks again while Whisper decodes
    times = [e["t"] for e in session.timeline.entries if e["kind"] != "speech_end"]  # speech_end: stamped when speech stopped
    assert times == sorted(times), "the timeline went back in time"
    fast, final = session.timeline.of("fast_final")[0], session.timeline.of("final")[0]
    assert final["asr"] == "accurate" and final["t"] == pytest.approx(fast["t"] + 1.0, abs=FRAME_S)
    assert session.machine.outcome.path[:2] == ["greet", "pitch"]


def test_a_new_turn_before_the_answer_takes_the_waiting_turns_fast_words_then_and_ignores_its_late_answer() -> None:
    h = TwoPassHarness(two_pass_core(AsrPass.ACCURATE), speech=[(1.4, 2.0), (3.2, 3.5)], words={1.6: WRONG, 3.3: "no"},
                       accurate="yes this is me", delay=2.5)
    h.run_with_answers(10.0)
    finals = h.core.timeline.of("final")
    fast_finals = h.core.timeline.of("fast_final")
    assert finals[0]["accurate"] == "superseded" and finals[0]["text"] == WRONG
    assert finals[0]["t"] == fast_finals[1]["t"] > fast_finals[0]["t"], (finals, fast_finals)  # taken when turn 2 ended
    assert [f["asr"] for f in finals] == ["fast", "accurate"] and len(h.requests) == 2  # turn 1's late answer: ignored


def test_a_late_accurate_pass_gives_way_to_the_fast_words_after_the_timeout() -> None:
    h = greet_then_answer(AsrPass.ACCURATE, words="yes", accurate="no", delay=ACCURATE_TIMEOUT_S + 1.0)
    [fast] = h.core.timeline.of("fast_final")
    [final] = h.core.timeline.of("final")
    assert final["asr"] == "fast" and final["accurate"] == "timeout" and final["text"] == "yes"
    assert final["t"] == pytest.approx(fast["t"] + ACCURATE_TIMEOUT_S, abs=FRAME_S)
    assert h.core.machine.outcome.path[:2] == ["greet", "pitch"]  # the late "no" changed nothing
