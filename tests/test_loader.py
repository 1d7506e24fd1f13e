"""Tests for the YAML flow loader: exact problems for every bad file, the dataclasses of good ones, the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.dialog import loader
from voicebot.dialog.flow import (
    LANGUAGES,
    LEVELS,
    VARIABLE_TYPES,
    BargeIn,
    BargeInAction,
    BargeInMode,
    Flow,
    Listen,
    Retry,
    Say,
    Transfer,
    Utterance,
    Variable,
)
from voicebot.dialog.loader import SCHEMA_PATH, FlowError, Problem, load_flow, load_flow_text, validate_file

FLOWS = Path(__file__).parent / "flows"
GOOD_DIR = FLOWS / "good"
BAD_DIR = FLOWS / "bad"
GOOD = sorted(p.name for p in GOOD_DIR.glob("*.yaml"))
BAD = sorted(p.name for p in BAD_DIR.glob("*.yaml"))

MINIMAL = """\
flow: {id: t, version: 1, language: en, start: greet}
nodes:
  greet:
    say: {prompt: hello_01}
    hangup: done
"""


def say(*texts: str) -> Say:
    """A Say with one text variant per argument."""
    return Say(tuple(Utterance(t) for t in texts))


def expected_lines(name: str) -> list[str]:
    """The lines of ``NAME.expected`` beside the bad flow ``name``."""
    return (BAD_DIR / name).with_suffix(".expected").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def en() -> Flow:
    return load_flow(GOOD_DIR / "lead_screening_en.yaml")


@pytest.fixture(scope="module")
def zh() -> Flow:
    return load_flow(GOOD_DIR / "lead_screening_zh.yaml")


@pytest.fixture(scope="module")
def every() -> Flow:
    return load_flow(GOOD_DIR / "every_key.yaml")


# --- bad flows: the exact problems ----------------------------------------------


@pytest.mark.parametrize("name", BAD)
def test_bad_flow_gives_exactly_the_expected_problems(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BAD_DIR)
    assert [str(p) for p in validate_file(name)] == expected_lines(name)


@pytest.mark.parametrize("name", BAD)
def test_load_flow_raises_exactly_when_there_is_an_error(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BAD_DIR)
    problems = validate_file(name)
    if any(p.severity == "error" for p in problems):
        with pytest.raises(FlowError) as caught:
            load_flow(name)
        assert caught.value.problems == problems
        assert str(caught.value) == "\n".join(expected_lines(name))
    else:
        assert isinstance(load_flow(name), Flow)


def test_bad_files_come_with_expected_files_and_one_problem_each() -> None:
    expected = sorted(p.with_suffix(".yaml").name for p in BAD_DIR.glob("*.expected"))
    assert expected == BAD
    assert len(BAD) >= 14
    multi = [name for name in BAD if len(expected_lines(name)) != 1]
    assert multi == []


def test_unused_intent_is_only_a_warning() -> None:
    problems = validate_file(BAD_DIR / "unused_intent.yaml")
    assert [p.severity for p in problems] == ["warning"]
    assert "busy" in load_flow(BAD_DIR / "unused_intent.yaml").intents


def test_retry_on_a_node_that_does_not_listen_is_only_a_warning() -> None:
    [problem] = validate_file(BAD_DIR / "retry_on_silent_node.yaml")
    assert problem.severity == "warning"
    assert load_flow(BAD_DIR / "retry_on_silent_node.yaml").nodes["greet"].listen is None


# --- good flows -------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD)
def test_good_flow_has_no_problems(name: str) -> None:
    assert validate_file(GOOD_DIR / name) == []
    flow = load_flow(GOOD_DIR / name)
    assert flow.source == str(GOOD_DIR / name)
    assert flow.start in flow.nodes


def test_there_are_english_chinese_and_every_key_flows(en: Flow, zh: Flow, every: Flow) -> None:
    assert (en.language, zh.language, every.language) == ("en", "zh", "en")


def test_english_flow_metadata(en: Flow) -> None:
    assert (en.id, en.version, en.voice, en.start) == ("lead_screening_en", "1.0", "agent_joe", "greet")
    assert (en.max_duration_s, en.max_turns, en.on_limit, en.min_intent_score) == (300.0, 20, "goodbye_limit", 0.5)
    assert en.hangup_notify == ("call_outcome",)
    assert en.global_routes == {"ask_robot": "robot_answer", "say_again": "repeat", "stop": "goodbye_blocklist"}


def test_variables_long_form_and_shorthand(en: Flow) -> None:
    assert en.variables == {
        "customer_name": Variable("customer_name", "string", "there", True),
        "company": Variable("company", "string", "Acme", False),
        "phone": Variable("phone", "phone", None, True),
    }


def test_yaml_12_scalars_keep_yes_no_on_off_as_strings(en: Flow) -> None:
    assert list(en.nodes["greet"].routes) == ["yes", "no", "busy"]
    assert en.intents["yes"].keywords == ("yes", "yeah", "speaking", "sure")
    assert en.intents["no"].keywords == ("no", "nope", "wrong number")
    assert en.nodes["robot_answer"].barge_in.mode is BargeInMode.OFF


def test_defaults_are_merged_key_by_key(en: Flow) -> None:
    greet = en.nodes["greet"]
    assert greet.listen == Listen(no_input_ms=5000, max_speech_ms=15000, end_silence_ms=700)
    assert greet.barge_in == BargeIn(BargeInMode.PROTECTED, protect_ms=2500, min_speech_ms=300, min_words=1)
    assert greet.no_input == Retry(2, say("Hello, are you there?"), "goodbye_no_answer")
    assert greet.no_match == Retry(1, say("Sorry, could you say that again?"), "goodbye_no_answer")
    assert en.nodes["purpose"].listen == Listen(6000, 15000, 700)


def test_dtmf_integer_keys_become_strings(en: Flow, every: Flow) -> None:
    assert en.nodes["greet"].dtmf == {"1": "purpose", "2": "wrong_person"}
    assert every.nodes["confirm"].dtmf == {"1": "offer", "2": "callback", "*": "repeat", "#": "agent", "0": "agent"}


def test_listening_is_inferred(en: Flow, every: Flow) -> None:
    listening = {node_id for node_id, node in en.nodes.items() if node.listen is not None}
    assert listening == {"greet", "purpose", "pitch", "offer_callback"}
    assert every.nodes["welcome"].listen is None
    assert every.nodes["callback"].listen == Listen(7000, 20000, 800)


def test_capture_with_next_becomes_the_default_target(en: Flow, every: Flow) -> None:
    node = en.nodes["offer_callback"]
    assert (node.capture, node.default, node.next) == ({"callback_time": "time"}, "goodbye_callback", "")
    assert every.nodes["callback"].default == "callback_confirmed"


def test_say_forms(en: Flow, every: Flow) -> None:
    assert len(en.nodes["purpose"].say.variants) == 2
    pitch = en.nodes["pitch"].say.variants
    assert [(u.prompt, u.text[:10]) for u in pitch] == [("pitch_01", "We can cut")]
    assert en.nodes["pitch"].no_match.reprompt == say("Sorry?", "Would you like to talk to an advisor, yes or no?")
    confirm = every.nodes["confirm"].say.variants
    assert [u.prompt for u in confirm] == ["", "", "confirm_03"]
    assert every.nodes["offer"].say.order == "in_turn"
    assert every.nodes["confirm"].no_input.reprompt == say("Hello?")
    assert every.nodes["offer"].no_match.reprompt == Say((Utterance("Sorry?"), Utterance("Pardon?")), "random")
    assert every.nodes["bye"].say == say("Thank you, {{customer_name}}. Goodbye.\n")


def test_node_effects_and_endings(en: Flow) -> None:
    handoff = en.nodes["handoff"]
    assert handoff.transfer == Transfer("sales", say("Please hold on."), 20.0, "offer_callback", "offer_callback")
    assert (handoff.tags, handoff.level, handoff.notify, handoff.listen) == (("interested",), "A", ("sms_invite",), None)
    assert en.nodes["pitch"].prepare == "sales"
    assert en.nodes["robot_answer"].next == "return"
    assert en.nodes["goodbye_limit"].hangup == "limit"
    assert en.nodes["greet"].globals_enabled


def test_chinese_flow_picks_its_language_section(zh: Flow) -> None:
    assert zh.version == "2"
    assert zh.intents["yes"].keywords == ("是的", "对", "是我", "嗯")
    assert zh.intents["yes"].examples == ("我就是",)
    assert zh.intents["busy"].keywords == ("在忙", "没空", "晚点再打")
    assert zh.intents["ask_robot"].regex == ("^你是(不是)?机器人",)
    assert zh.min_intent_score == 0.6
    assert zh.nodes["handoff"].transfer == Transfer("sales_zh", say("请稍等。"))
    assert zh.nodes["greet"].listen == Listen()
    assert zh.nodes["greet"].no_match.then == "goodbye_no_answer"


def test_every_key_flow(every: Flow) -> None:
    assert (every.id, every.version, every.voice) == ("every-key_1", "1.10", "agent_amy")
    assert (every.max_duration_s, every.max_turns) == (120.5, 12)
    assert (every.on_limit, every.min_intent_score, every.hangup_notify) == ("limit_reached", 0.4, ("call_outcome",))
    assert every.global_routes == {"agent": "agent", "again": "repeat", "back": "return"}
    assert every.intents["no"].keywords == ("no",)
    assert every.intents["again"].regex == ("again|repeat",)
    assert every.intents["later"].keywords == ("later", "call me later")
    assert every.intents["agent"].examples == ("let me talk to a person",)
    assert every.nodes["offer"].globals_enabled is False
    assert every.nodes["welcome"].tags == ("called", "greeted")
    assert every.nodes["welcome"].notify == ("call_started",)
    hold = say("Please hold.", "Still connecting you, thanks for waiting.")
    assert every.nodes["agent"].transfer == Transfer("sales", hold, 25.0, "callback", "bye")


def test_every_key_barge_in_forms(every: Flow) -> None:
    defaults = BargeIn(BargeInMode.ON, 0, 250, 2, BargeInAction.REPEAT)
    assert every.nodes["offer"].barge_in == defaults  # barge_in: on
    assert every.nodes["welcome"].barge_in == BargeIn(BargeInMode.OFF, 0, 250, 2, BargeInAction.REPEAT)
    assert every.nodes["agent"].barge_in.mode is BargeInMode.OFF  # mode: false
    assert every.nodes["confirm"].barge_in == BargeIn(BargeInMode.PROTECTED, 1500, 250, 2, BargeInAction.REPEAT)


def test_every_key_variables_keep_their_text(every: Flow) -> None:
    found = {name: (v.type, v.default) for name, v in every.variables.items()}
    assert found == {
        "customer_name": ("string", "there"),
        "amount": ("int", "1500"),
        "rate": ("float", "2.50"),
        "vip": ("bool", "false"),
        "phone": ("phone", None),
        "due": ("date", "2025-01-31"),
        "company": ("string", "Acme"),
        "retries_left": ("int", "3"),
        "opted_in": ("bool", "true"),
        "agent_name": ("string", None),
    }


def test_every_key_retries_merge_with_defaults(every: Flow) -> None:
    confirm = every.nodes["confirm"]
    assert confirm.no_input == Retry(3, say("Hello?"), "no_answer")
    assert confirm.no_match == Retry(2, say("Sorry, yes or no?", "Please say yes or no."), "agent")
    assert every.nodes["welcome"].no_input == Retry(1, say("Are you still there?"), "no_answer")


# --- the schema --------------------------------------------------------------------


def schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return data


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema())


@pytest.mark.parametrize("name", GOOD)
def test_good_flows_validate_against_the_schema(name: str) -> None:
    doc = loader._read_yaml((GOOD_DIR / name).read_text(encoding="utf-8"), name)
    assert doc.problems == []
    jsonschema.Draft202012Validator(schema()).validate(doc.data)


def test_schema_enums_match_the_model() -> None:
    defs = schema()["$defs"]
    assert tuple(defs["meta"]["properties"]["language"]["enum"]) == LANGUAGES
    assert tuple(defs["node"]["properties"]["level"]["enum"]) == LEVELS
    assert tuple(defs["variable"]["properties"]["type"]["enum"]) == VARIABLE_TYPES
    assert defs["bargeInMode"]["then"]["enum"] == [m.value for m in BargeInMode]
    assert defs["bargeIn"]["properties"]["action"]["enum"] == [a.value for a in BargeInAction]
    assert set(defs["intent"]["properties"]) >= set(LANGUAGES)


# --- API details ---------------------------------------------------------------------


def test_problem_format() -> None:
    problem = Problem("f.yaml", 3, 5, "nodes.a", "bad", "fix it")
    assert str(problem) == "f.yaml:3:5: error: nodes.a: bad (hint: fix it)"
    assert str(Problem("f.yaml", 1, 1, "", "empty", severity="warning")) == "f.yaml:1:1: warning: empty"


def test_flow_error_lists_every_problem() -> None:
    error = FlowError([Problem("f", 1, 1, "a", "one"), Problem("f", 2, 1, "b", "two")])
    assert str(error) == "f:1:1: error: a: one\nf:2:1: error: b: two"
    assert len(error.problems) == 2


def test_load_flow_text_uses_source_and_skips_recordings_by_default() -> None:
    flow = load_flow_text(MINIMAL, "mem.yaml")
    assert (flow.source, flow.version, flow.nodes["greet"].say) == ("mem.yaml", "1", Say((Utterance("", "hello_01"),)))


def test_recordings_are_looked_up_beside_the_flow(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    with pytest.raises(FlowError, match=r"no recording prompts/hello_01.wav"):
        load_flow(path)
    assert load_flow(path, check_recordings=False).nodes["greet"].say.variants[0].prompt == "hello_01"
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "hello_01.wav").write_bytes(b"RIFF")
    assert validate_file(path) == []
    assert load_flow_text(MINIMAL, str(path), check_recordings=True).source == str(path)


def test_prompts_dir_is_relative_to_the_flow(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(MINIMAL.replace("start: greet}", "start: greet, prompts_dir: rec}"), encoding="utf-8")
    assert [p.message for p in validate_file(path)] == ["prompt 'hello_01' has no text and no recording rec/hello_01.wav"]
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "hello_01.wav").write_bytes(b"RIFF")
    assert validate_file(path) == []


def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    [problem] = validate_file(missing)
    assert (problem.file, problem.line, problem.column) == (str(missing), 1, 1)
    assert problem.message == "cannot read the flow file: No such file or directory"
    with pytest.raises(FlowError):
        load_flow(missing)


def test_structural_errors_are_all_reported_and_sorted() -> None:
    text = MINIMAL.replace("version: 1", "version: [1]").replace("hangup: done", "hangup: done\n    levl: A\n    level: Z")
    with pytest.raises(FlowError) as caught:
        load_flow_text(text)
    found = [(p.line, p.path, p.message) for p in caught.value.problems]
    assert found == [
        (1, "flow.version", "expected a string or a number, got a list"),
        (6, "nodes.greet.levl", "unknown key 'levl'"),
        (7, "nodes.greet.level", "must be one of: A, B, C, D (got 'Z')"),
    ]
    assert caught.value.problems[1].hint == "did you mean 'level'?"


BOTH_KINDS = """\
flow: {id: t, version: 1, language: en, start: greet}
intents:
  yes: {keywords: [yes]}
nodes:
  greet:
    say: Hello {{nmae}}
    on: {yes: pitch, maybe: pitch}
    default: bye
  pitch:
    say: {text: [1]}
    levl: A
    level: Z
    next: endng
  bye:
    say: bye
    hangup: done
  ending:
    say: 42
    hangup: [done]
"""


def test_one_pass_reports_structural_and_reference_errors_together() -> None:
    found = [(p.line, p.path, p.message) for p in _problems(BOTH_KINDS)]
    assert found == [
        (6, "nodes.greet.say", "undeclared variable 'nmae' in template"),
        (7, "nodes.greet.on.maybe", "intent 'maybe' is not defined"),
        (10, "nodes.pitch.say.text", "expected a string, got a list"),
        (11, "nodes.pitch.levl", "unknown key 'levl'"),
        (12, "nodes.pitch.level", "must be one of: A, B, C, D (got 'Z')"),
        (13, "nodes.pitch.next", "unknown node 'endng'"),
        (18, "nodes.ending.say", "expected a string, a list or a mapping, got number 42"),
        (19, "nodes.ending.hangup", "expected a string, got a list"),
    ]
    assert _problems(BOTH_KINDS)[5].hint == "did you mean 'ending'?"


def test_a_broken_node_still_counts_as_a_target_and_is_not_called_a_dead_end() -> None:
    text = MINIMAL.replace("hangup: done", "next: other\n  other:\n    say: [1]\n    next: nowhere")
    found = [(p.path, p.message) for p in _problems(text)]
    assert found == [("nodes.other.say[0]", "expected a string or a mapping, got number 1"),
                     ("nodes.other.next", "unknown node 'nowhere'")]


def test_a_missing_start_does_not_hide_other_errors() -> None:
    text = MINIMAL.replace(", start: greet", "").replace("hangup: done", "next: nowhere")
    assert [p.message for p in _problems(text)] == ["missing required key 'start'", "unknown node 'nowhere'"]


def test_a_broken_top_level_leaves_nothing_to_check() -> None:
    text = "flow: {id: t, version: 1, language: en, start: greet}\nnodes: [greet]\n"
    assert [p.message for p in _problems(text)] == ["expected a mapping, got a list"]


def test_missing_required_key_points_at_the_parent_key() -> None:
    text = MINIMAL.replace("hangup: done", "transfer: {hold: hi}")
    [problem] = _problems(text)
    assert (problem.line, problem.column, problem.path) == (5, 5, "nodes.greet.transfer")
    assert problem.message == "missing required key 'group'"


def test_yaml_aliases_anchors_and_odd_tags() -> None:
    text = MINIMAL.replace("nodes:", "x: !!binary aGk=\nnodes:")
    assert [p.message for p in _problems(text)][-1] == "unsupported YAML tag !!binary"
    assert [p.message for p in _problems("a: &x [*x]\n")][-1] == "an alias refers to a node that contains it"


def test_merge_keys_are_reported_not_silently_ignored() -> None:
    text = MINIMAL.replace("nodes:", "x: &base {say: hi}\nnodes:").replace("  greet:\n", "  greet:\n    <<: *base\n")
    messages = [p.message for p in _problems(text)]
    assert "YAML merge keys ('<<') are not supported" in messages


def test_non_finite_numbers_are_rejected() -> None:
    text = MINIMAL.replace("start: greet}", "start: greet, max_duration_s: .inf}")
    assert [p.message for p in _problems(text)] == ["'.inf' is not a finite number"]


def _problems(text: str) -> list[Problem]:
    """The problems load_flow_text reports for ``text`` (it must fail)."""
    with pytest.raises(FlowError) as caught:
        load_flow_text(text)
    return caught.value.problems


# --- robustness --------------------------------------------------------------------


@st.composite
def mangled_flow(draw: st.DrawFn) -> str:
    """A good flow with some lines dropped, duplicated or cut short."""
    lines = (GOOD_DIR / draw(st.sampled_from(GOOD))).read_text(encoding="utf-8").splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "dup", "cut"]))
        if action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        else:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    return "\n".join(lines)


@settings(max_examples=150, deadline=None)
@given(mangled_flow())
def test_mangled_flows_give_problems_not_crashes(text: str) -> None:
    try:
        flow = load_flow_text(text)
    except FlowError as exc:
        assert exc.problems
        assert all(p.line >= 1 and p.column >= 1 for p in exc.problems)
    else:
        assert flow.start in flow.nodes


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_problems_not_crashes(text: str) -> None:
    with pytest.raises(FlowError):
        load_flow_text(text)


# --- handoff settings ------------------------------------------------------------------

HANDOFF = """\
flow: {id: t, version: 1, language: en, start: greet, handoff: {group: advisors, prepare_at_level: A, after_agent: back}}
nodes:
  greet:
    say: hi
    transfer: {group: advisors, after_agent: back}
  back:
    say: welcome back
    hangup: done
"""


def test_handoff_settings_are_loaded_and_after_agent_makes_a_node_reachable() -> None:
    flow = load_flow_text(HANDOFF.replace("transfer: {group: advisors, after_agent: back}", "transfer: {group: advisors}"))
    assert (flow.handoff.group, flow.handoff.prepare_at_level, flow.handoff.after_agent) == ("advisors", "A", "back")
    assert flow.nodes["greet"].transfer is not None and flow.nodes["greet"].transfer.after_agent == ""
    assert load_flow_text(HANDOFF).nodes["greet"].transfer.after_agent == "back"  # type: ignore[union-attr]


def test_handoff_problems_name_line_and_key() -> None:
    text = HANDOFF.replace("group: advisors, prepare_at_level", "prepare_at_level")
    text = text.replace("after_agent: back}}", "after_agent: bak}}")
    with pytest.raises(FlowError) as caught:
        load_flow_text(text, "h.yaml")
    found = sorted((p.line, p.path, p.message) for p in caught.value.problems)
    assert found == [
        (1, "flow.handoff.after_agent", "unknown node 'bak'"),
        (1, "flow.handoff.prepare_at_level", "prepare_at_level needs an agent group to prepare"),
    ]
