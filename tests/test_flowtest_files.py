"""Tests for checking flow test files (NAME.tests.yaml): file:line:col, key path, did-you-mean, every problem at once."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.cli import main
from voicebot.sim.flowtest import EXPECT_KEYS, FlowTestError, load_cases
from voicebot.sim.testcheck import SCHEMA_PATH, validate_tests

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "flows"

BAD = """\
flow: lead_screening_en.yaml
tests:
  - name: typos everywhere
    vars: {customer_nme: Bob}
    caller:
      - yes, speaking
      - {bargee: "tell me more", at_ms: 900}
      - {dtmf: 12}
    expect:
      path: [greet, pich]
      intents: [yes, intrested, none, dtmf 1]
      tags: [hot_leed]
      level: Z
      slots: {callback: tomorrow}
      notifications: [sms_invite, email]
      barge_ins: many
  - name: an unknown key
    expct: {level: A}
    agent: {ready: 10}
"""


def check(tmp_path: Path, text: str, name: str = "my.tests.yaml") -> list[str]:
    """The problems for test file ``text`` beside a copy of the English example flow, file names shortened."""
    shutil.copy(EXAMPLES / "lead_screening_en.yaml", tmp_path)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    doc, _ = validate_tests(path)
    return [str(p).replace(str(tmp_path) + "/", "") for p in doc.problems]


def test_every_problem_in_a_test_file_is_reported_at_once_with_line_column_and_hint(tmp_path: Path) -> None:
    assert check(tmp_path, BAD) == [
        "my.tests.yaml:4:12: error: tests[0].vars.customer_nme: the flow has no variable 'customer_nme' "
        "(hint: did you mean 'customer_name'?)",
        "my.tests.yaml:7:10: error: tests[0].caller[1].bargee: unknown caller action 'bargee' (hint: did you mean 'barge'?)",
        "my.tests.yaml:8:9: error: tests[0].caller[2]: dtmf must be one key of 0-9, * or #, got 12",
        "my.tests.yaml:10:21: error: tests[0].expect.path[1]: unknown node 'pich' (hint: did you mean 'pitch'?)",
        "my.tests.yaml:11:22: error: tests[0].expect.intents[1]: unknown intent 'intrested' "
        "(hint: did you mean 'interested'?)",
        "my.tests.yaml:12:14: error: tests[0].expect.tags[0]: no node sets tag 'hot_leed' (hint: did you mean 'hot_lead'?)",
        "my.tests.yaml:13:14: error: tests[0].expect.level: must be one of: A, B, C, D (got 'Z')",
        "my.tests.yaml:14:15: error: tests[0].expect.slots.callback: no node captures slot 'callback' "
        "(hint: did you mean 'callback_time'?)",
        "my.tests.yaml:15:35: error: tests[0].expect.notifications[1]: the flow never sends 'email' "
        "(hint: the flow has: call_outcome, sms_invite, whatsapp_invite)",
        "my.tests.yaml:16:18: error: tests[0].expect.barge_ins: expected a whole number, got string 'many'",
        "my.tests.yaml:18:5: error: tests[1].expct: unknown key 'expct' (hint: did you mean 'expect'?)",
        "my.tests.yaml:19:12: error: tests[1].agent: expected `none` or a mapping like {ready_ms: 1500}",
    ]


def test_a_level_no_node_sets_and_an_unknown_expectation(tmp_path: Path) -> None:
    flow = (EXAMPLES / "lead_screening_en.yaml").read_text(encoding="utf-8").replace("level: C", "level: B")
    (tmp_path / "lead_screening_en.yaml").write_text(flow, encoding="utf-8")
    text = "flow: lead_screening_en.yaml\ntests:\n  - name: x\n    expect: {level: C, intent: [yes]}\n"
    path = tmp_path / "my.tests.yaml"
    path.write_text(text, encoding="utf-8")
    found = [str(p).replace(str(tmp_path) + "/", "") for p in validate_tests(path)[0].problems]
    assert found == [
        "my.tests.yaml:4:21: error: tests[0].expect.level: no node sets level 'C' (hint: levels the flow sets: A, B, D)",
        "my.tests.yaml:4:24: error: tests[0].expect.intent: unknown key 'intent' (hint: did you mean 'intents'?)",
    ]


def test_a_missing_or_broken_flow_is_reported_at_the_flow_key(tmp_path: Path) -> None:
    text = "# tests\nflow: lead_screening.yaml\ntests:\n  - name: x\n"
    assert check(tmp_path, text) == [
        "my.tests.yaml:2:7: error: flow: no flow file 'lead_screening.yaml' beside this test file "
        "(hint: did you mean 'lead_screening_en.yaml'?)"]
    (tmp_path / "broken.yaml").write_text("flow: {id: b}\nnodes: {}\n", encoding="utf-8")
    [line] = check(tmp_path, "flow: broken.yaml\ntests: [{name: x}]\n")
    assert line.startswith("my.tests.yaml:1:7: error: flow: the flow 'broken.yaml' has ")
    assert line.endswith("(hint: run: voicebot validate broken.yaml)")


def test_yaml_errors_in_a_test_file_are_in_plain_words(tmp_path: Path) -> None:
    text = 'flow: lead_screening_en.yaml\ntests:\n  - name: "unclosed\n    caller: [yes]\n  - name: b\n'
    assert check(tmp_path, text) == [
        'my.tests.yaml:3:11: error: invalid YAML: this quote (") is never closed (hint: end the value with " on this line)']
    assert check(tmp_path, "") == [
        "my.tests.yaml:1:1: error: the file is empty (hint: a test file needs `flow: FILE` and a `tests:` list)"]


def test_load_cases_raises_with_every_problem(tmp_path: Path) -> None:
    check(tmp_path, BAD)
    with pytest.raises(FlowTestError) as caught:
        load_cases(tmp_path / "my.tests.yaml")
    assert len(caught.value.problems) == 12
    assert str(caught.value).count("\n") == 11


def test_validate_reports_test_file_problems_and_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check(tmp_path, BAD)
    assert main(["validate", str(tmp_path / "my.tests.yaml")]) == 1
    captured = capsys.readouterr()
    assert "tests[0].expect.path[1]: unknown node 'pich'" in captured.err
    assert "1 file(s) checked: 12 error(s), 0 warning(s)" in captured.out
    assert main(["validate", str(EXAMPLES / "lead_screening_en.tests.yaml")]) == 0


def test_the_examples_validate_and_the_schema_is_valid() -> None:
    for path in sorted(EXAMPLES.glob("*.tests.yaml")):
        assert validate_tests(path)[0].problems == [], path
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert tuple(schema["$defs"]["case"]["properties"]["expect"]["properties"]) == EXPECT_KEYS


_TEST_LINES = ["flow: lead_screening_en.yaml", "flow: [x]", "tests:", "  - name: a", "    caller: [yes, {dtmf: 1}]",
               "    caller: {say: x}", "    expect: {path: [greet], level: A}", "    expect: [x]", "    vars: {offer: 1}",
               "    agent: none", "  - 5", "\t", "'", "[", ": x", "- y", "  "]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(_TEST_LINES), max_size=10), st.text(max_size=30))
def test_any_test_file_text_gives_cases_or_problems_never_a_traceback(lines: list[str], noise: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        shutil.copy(EXAMPLES / "lead_screening_en.yaml", folder)
        path = Path(folder) / "x.tests.yaml"
        path.write_text("\n".join(lines) + noise, encoding="utf-8")
        try:
            load_cases(path)
        except FlowTestError as exc:
            assert exc.problems and all(p.line >= 1 and p.column >= 1 for p in exc.problems)
