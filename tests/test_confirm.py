"""Confirming an unsure hearing of an intent that ends the call: the machine on a fake clock, the flow syntax, the
caller scripts that mishear, and the example flows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.dialog_fixtures import say, screening_flow
from voicebot.dialog import events as ev
from voicebot.dialog.flow import Flow, IntentDef
from voicebot.dialog.loader import FlowError, load_flow, load_flow_text
from voicebot.dialog.machine import DialogMachine
from voicebot.records.cli import transcript_line
from voicebot.records.model import TranscriptLine, transcript_lines
from voicebot.sim.script import ScriptError, action_from_item
from voicebot.sim.text import CallerAction, run_script
from voicebot.timeline import Timeline
from voicebot.tts.render import static_prompts

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "flows"
ASK_NO = "Sorry, did you say this isn't {{name}}?"


def confirming_flow(**changes: object) -> Flow:
    """The screening flow with ``no`` (greet: wrong person) and the global ``stop`` confirmed when heard unsure."""
    flow = screening_flow()
    intents = dict(flow.intents)
    intents["no"] = replace(intents["no"], confirm=say(ASK_NO))
    intents["stop"] = replace(intents["stop"], confirm=say("You'd like us to stop calling?"))
    return replace(flow, intents=intents, **changes)  # type: ignore[arg-type]


class Call:
    """A machine on a fake clock: the caller answers each prompt once it has played."""

    def __init__(self, flow: Flow) -> None:
        self.m = DialogMachine(flow)
        self.now = 0.0
        self.commands: list[ev.Command] = []
        self.send(ev.CallStarted(0.0, {"name": "Dana"}))

    def send(self, event: ev.Event) -> list[ev.Command]:
        self.now = max(self.now, event.at)
        out = self.m.handle(event, self.now)
        self.commands += out
        return out

    def heard(self, text: str, confidence: float = 1.0) -> list[ev.Command]:
        """Let the last prompt play out, then the caller speaks for 1 s and the recogniser hears ``text``."""
        play = [c for c in self.commands if isinstance(c, ev.Play)][-1]
        self.send(ev.PromptStarted(self.now, play.play_id))
        self.send(ev.PromptFinished(self.now + 2.0, play.play_id, False, 2000))
        self.send(ev.SpeechStarted(self.now + 0.5))
        return self.send(ev.Transcript(self.now + 1.0, text, final=True, confidence=confidence))

    def said(self, out: list[ev.Command]) -> list[str]:
        return [c.text for c in out if isinstance(c, ev.Play)]

    def confirmations(self) -> list[tuple[str, str, str]]:
        return [(c.node, c.intent, c.state) for c in self.commands if isinstance(c, ev.Confirmation)]


def test_an_unsure_wrong_person_is_asked_about_and_a_yes_applies_the_route() -> None:
    call = Call(confirming_flow())
    out = call.heard("nope", confidence=0.42)
    assert call.said(out) == ["Sorry, did you say this isn't Dana?"]
    assert not any(isinstance(c, ev.HangUp) for c in out) and call.m.outcome.path == ["greet"]
    assert any(isinstance(c, ev.Listen) and c.node == "greet" for c in out)
    out = call.heard("yes")
    assert call.m.outcome.path == ["greet", "wrong_person"]
    assert call.confirmations() == [("greet", "no", "asked"), ("greet", "no", "confirmed")]
    assert [(t.intent, t.confirm) for t in call.m.outcome.turns] == [("no", "asked"), ("yes", "confirmed")]


def test_a_denial_goes_back_to_the_node_without_a_no_match_retry() -> None:
    call = Call(confirming_flow())
    call.heard("nope", confidence=0.42)
    out = call.heard("no no, I said yes")
    assert call.said(out) == ["Hi, is this Dana?"]  # the node's own prompt, not its no-match re-prompt
    assert call.m.outcome.path == ["greet"] and not call.m.ended
    assert call.confirmations()[-1] == ("greet", "no", "denied")
    call.heard("yes speaking")
    assert call.m.outcome.path == ["greet", "pitch"]


@pytest.mark.parametrize("answer", ["hmm what", "yes no", "nope"])
def test_anything_but_a_clear_yes_is_a_denial(answer: str) -> None:
    call = Call(confirming_flow())
    call.heard("nope", confidence=0.3)
    call.heard(answer)
    assert call.m.outcome.path == ["greet"] and call.confirmations()[-1][2] == "denied"


def test_silence_after_the_question_drops_it_and_the_node_asks_again() -> None:
    call = Call(confirming_flow())
    call.heard("nope", confidence=0.3)
    play = [c for c in call.commands if isinstance(c, ev.Play)][-1]
    call.send(ev.PromptStarted(call.now, play.play_id))
    call.send(ev.PromptFinished(call.now + 2.0, play.play_id, False, 2000))
    timer = next(t for t in call.m.live_timers if t.startswith("no_input"))
    out = call.send(ev.TimerFired(call.now + 5.0, timer))
    assert call.said(out) == ["Hello, are you there?"]  # the node's no-input re-prompt
    call.heard("yes")  # answers the node, not the dropped question
    assert call.m.outcome.path == ["greet", "pitch"]


def test_the_caller_may_barge_into_the_question_as_into_any_prompt_of_the_node() -> None:
    call = Call(confirming_flow())
    call.heard("nope", confidence=0.3)
    play = [c for c in call.commands if isinstance(c, ev.Play)][-1]
    call.send(ev.PromptStarted(call.now, play.play_id))
    call.send(ev.SpeechStarted(call.now + 0.3))
    out = call.send(ev.Transcript(call.now + 0.5, "yes that is right", final=True))
    assert ev.StopPlayback(out[0].at, play.play_id) in out
    assert call.m.outcome.path == ["greet", "wrong_person"]


def test_a_confident_hearing_or_an_intent_without_confirm_acts_at_once() -> None:
    call = Call(confirming_flow())
    call.heard("no", confidence=0.95)  # a whole-utterance keyword (score 1.0), confident recogniser
    assert call.m.outcome.path == ["greet", "wrong_person"] and call.confirmations() == []
    call = Call(confirming_flow())
    call.heard("yes", confidence=0.2)  # `yes` has no confirm prompt
    assert call.m.outcome.path == ["greet", "pitch"] and call.confirmations() == []


@pytest.mark.parametrize(("text", "confidence"), [("well no I guess", 1.0), ("no [unk]", 1.0), ("no", 0.89)])
def test_a_low_score_an_unsure_word_or_a_low_confidence_each_make_a_hearing_unsure(text: str, confidence: float) -> None:
    call = Call(confirming_flow())
    call.heard(text, confidence)
    assert call.confirmations() == [("greet", "no", "asked")]


def test_confirm_below_is_the_flows_to_set() -> None:
    call = Call(confirming_flow(confirm_below=0.4))
    call.heard("well no I guess", confidence=0.5)
    assert call.confirmations() == [] and call.m.outcome.path == ["greet", "wrong_person"]


def test_a_global_intent_is_confirmed_too_and_its_route_applies() -> None:
    call = Call(confirming_flow())
    call.heard("please stop calling me", confidence=0.5)
    call.heard("yes")
    assert call.m.outcome.path == ["greet", "bye_blocklist"]


def test_repeated_unsure_hearings_are_each_confirmed_and_the_turn_limit_ends_them() -> None:
    call = Call(confirming_flow(max_turns=6, on_limit="bye_limit"))
    for _ in range(3):
        call.heard("nope", confidence=0.4)
        call.heard("no")
    assert [s for _, _, s in call.confirmations()] == ["asked", "denied"] * 3
    call.heard("nope", confidence=0.4)  # the seventh turn: over the limit
    assert call.m.outcome.path == ["greet", "bye_limit"]


# ---------------------------------------------------------------- flow syntax

FLOW = """\
flow: {{id: t, version: 1, language: en, start: greet{meta}}}
variables: {{name: {{default: Dana}}}}
intents:
  yes: {{keywords: [yes]}}
  no:
{no}
  spare: {{keywords: [spare], confirm: "Unused, and fine"}}
nodes:
  greet:
    say: "Is this {{{{name}}}}?"
    on: {{yes: bye, no: bye}}
  bye: {{say: Bye, hangup: done}}
"""


def flow_text(no: str, meta: str = "") -> str:
    return FLOW.format(no=no, meta=meta)


def test_confirm_prompts_and_confirm_below_load() -> None:
    flow = load_flow_text(flow_text('    keywords: [no]\n    confirm: "Did you say this isn\'t {{name}}?"',
                                    ", confirm_below: 0.75"))
    assert flow.intents["no"].confirm == say("Did you say this isn't {{name}}?")
    assert flow.confirm_below == 0.75 and flow.intents["yes"].confirm == say()
    assert load_flow_text(flow_text("    keywords: [no]")).confirm_below == 0.9


def test_a_per_language_confirm_prompt_is_the_flows_language() -> None:
    text = flow_text('    en: {keywords: [no], confirm: "Was that a no?"}\n    zh: {keywords: [不是], confirm: "您是说不是吗？"}')
    assert load_flow_text(text).intents["no"].confirm == say("Was that a no?")


@pytest.mark.parametrize(("no", "meta", "expected"), [
    ('    keywords: [no]\n    confrim: "Was that a no?"', "", ["7:5", "confrim", "did you mean 'confirm'?"]),
    ("    keywords: [no]\n    confirm: 3", "", ["7:14", "intents.no.confirm"]),
    ('    keywords: [no]\n    confirm: "Was that {{nme}}?"', "", ["7:14", "undeclared variable 'nme'", "did you mean 'name'?"]),
    ("    keywords: [no]", ", confirm_below: 1.5", ["1:", "confirm_below"]),
    ("    keywords: [no]", ", confirm_belo: 0.5", ["1:", "confirm_belo", "did you mean 'confirm_below'?"]),
])
def test_bad_confirm_syntax_is_reported_at_its_line(no: str, meta: str, expected: list[str]) -> None:
    with pytest.raises(FlowError) as caught:
        load_flow_text(flow_text(no, meta), "f.yaml")
    errors = [str(p) for p in caught.value.problems if p.severity == "error"]
    assert len(errors) == 1 and all(part in errors[0] for part in expected), errors


def test_a_confirm_prompt_on_an_unused_intent_is_no_error() -> None:
    flow = load_flow_text(flow_text("    keywords: [no]"))
    assert flow.intents["spare"].confirm == say("Unused, and fine")


# ----------------------------------------------- misheard caller lines and the examples


def test_a_caller_script_line_can_be_misheard() -> None:
    action = action_from_item({"say": "yes, speaking", "heard": "not really", "confidence": 0.42})
    assert action == CallerAction("say", "yes, speaking", 0, "not really", 0.42)
    for bad in ({"say": "yes", "confidence": 2}, {"say": "yes", "confidence": "high"}, {"dtmf": "1", "heard": "one"}):
        with pytest.raises(ScriptError):
            action_from_item(bad)


def test_the_example_confirms_a_misheard_not_really_at_the_greeting_and_a_no_keeps_the_call() -> None:
    flow = load_flow(EXAMPLES / "lead_screening_en.yaml")
    script = [CallerAction("say", "yes, speaking", heard="not really", confidence=0.42),
              CallerAction("say", "no, I said yes"), CallerAction("say", "yes, speaking")]
    entries = list(run_script(flow, script, {"customer_name": "Dana"}))
    bot = [e.text for e in entries if e.kind == "bot"]
    assert bot[1] == "Sorry, was that a no?" and bot[2] == bot[0]
    assert [e.text for e in entries if e.kind == "confirm"] == ["no: asked", "no: denied"]
    assert [e.text for e in entries if e.kind == "node"][:2] == ["greet", "disclosure"]
    assert "wrong_person" not in [e.text for e in entries if e.kind in ("node", "hangup")]


@pytest.mark.parametrize("name", ["lead_screening_en", "lead_screening_zh", "appointment_reminder_en"])
def test_the_examples_confirm_their_call_ending_intents(name: str) -> None:
    flow = load_flow(EXAMPLES / f"{name}.yaml")
    confirmed = {n for n, i in flow.intents.items() if i.confirm.variants}
    assert {"no", "wrong_person"} <= confirmed and "yes" not in confirmed
    if name.startswith("lead"):
        assert {"not_interested", "stop_calling"} <= confirmed


def test_intent_def_default_has_no_confirm() -> None:
    assert IntentDef("x").confirm.variants == ()


def test_the_call_record_shows_the_question_and_the_answer() -> None:
    call = Call(confirming_flow())
    call.heard("nope", confidence=0.4)
    call.heard("no")
    lines = [line for line in transcript_lines(call.m.outcome, Timeline()) if line.speaker == "caller"]
    assert [(line.intent, line.confirm) for line in lines] == [("no", "asked"), ("no", "denied")]
    assert transcript_line(lines[0]).endswith("(no 1.00, confirmation asked)")
    assert TranscriptLine.from_dict(lines[1].to_dict()) == lines[1]


def test_confirm_prompts_are_rendered_before_the_call_like_every_prompt() -> None:
    specs = {s.prompt_id: s for s in static_prompts(load_flow(EXAMPLES / "lead_screening_en.yaml"))}
    assert specs["no.confirm.1"].text == "Sorry, was that a no?" and not specs["no.confirm.1"].dynamic
    assert specs["wrong_person.confirm.1"].template_vars == ("customer_name",)
