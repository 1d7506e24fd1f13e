"""Flow tests for script designers: caller lines in, expected path and outcome out.

A test file sits beside its flow (``NAME.tests.yaml``)::

    flow: lead_screening_en.yaml          # relative to this file
    tests:
      - name: hot lead goes to an agent
        vars: {customer_name: Alice}      # optional per-call variables
        agent: {ready_ms: 1500}           # optional; `agent: none` = nobody ever answers
        caller:                           # a caller script (see voicebot.sim.script)
          - yes, speaking
          - {barge: "yes please", at_ms: 900}
        expect:                           # every key optional
          path: [greet, pitch, hot]       # the exact node path
          path_includes: [pitch, hot]     # these nodes, in this order, among others
          intents: [yes, yes]             # intent matched per caller turn ("none" for no match)
          tags: [interested]              # the exact set of tags
          level: A
          slots: {callback_time: tomorrow 15:00}
          notifications: [sms_invite]     # the exact set
          disposition: transferred
          barge_ins: 1                    # how many caller turns interrupted the bot

Run with ``voicebot test-flow FILE...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.dialog.flow import Flow
from voicebot.dialog.loader import load_flow
from voicebot.dialog.machine import build_matcher
from voicebot.dialog.outcome import Outcome
from voicebot.sim.script import ScriptError, action_from_item
from voicebot.sim.testcheck import validate_tests
from voicebot.sim.text import AgentSim, Entry, TextCall
from voicebot.yamldoc import Doc, Problem

EXPECT_KEYS = ("path", "path_includes", "intents", "tags", "level", "slots", "notifications", "disposition", "barge_ins")


class FlowTestError(ValueError):
    """A test file that cannot be run; ``problems`` lists every problem (file:line:col, key path, hint)."""

    def __init__(self, problems: list[Problem] | str) -> None:
        """Keep ``problems``; the message lists them one per line (a plain message has no problem list)."""
        self.problems = [] if isinstance(problems, str) else problems
        super().__init__(problems if isinstance(problems, str) else "\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class FlowCase:
    """One test case of a test file."""

    name: str
    line: int
    caller: list[Any]
    expect: dict[str, Any]
    variables: dict[str, str] = field(default_factory=dict)
    agent: AgentSim = field(default_factory=AgentSim)


@dataclass(frozen=True)
class CaseResult:
    """What one case did: ``failures`` empty when it passed; ``log`` is the simulated call."""

    case: FlowCase
    failures: list[str]
    log: list[Entry]

    @property
    def passed(self) -> bool:
        """True when every expectation held."""
        return not self.failures


def load_cases(path: Path) -> tuple[Path, list[FlowCase]]:
    """Read a test file: the flow it tests and its cases; FlowTestError lists every problem (see testcheck)."""
    doc, _ = validate_tests(path)
    if any(p.severity == "error" for p in doc.problems):
        raise FlowTestError(doc.problems)
    cases = [_case(doc, i, item) for i, item in enumerate(doc.data["tests"])]
    return path.parent / str(doc.data["flow"]), cases


def _case(doc: Doc, i: int, item: dict[str, Any]) -> FlowCase:
    """Test case ``i`` of a checked file; variables are text as written."""
    agent = item.get("agent", {})
    ready = None if agent in ("none", None) else int(agent.get("ready_ms", 1500))
    variables = {str(k): doc.raw.get(("tests", i, "vars", k), str(v)) for k, v in (item.get("vars") or {}).items()}
    expect = dict(item.get("expect") or {})
    line = doc.position(("tests", i))[0]
    return FlowCase(str(item["name"]), line, list(item.get("caller") or []), expect, variables, AgentSim(ready))


def run_case(flow: Flow, case: FlowCase, **kwargs: Any) -> CaseResult:
    """Run one case through the text simulator and compare the outcome."""
    call = TextCall(flow, case.variables, agent=case.agent, **kwargs)
    log = call.start()
    for i, item in enumerate(case.caller):
        try:
            action = action_from_item(item, f"caller[{i}]")
        except ScriptError as exc:
            return CaseResult(case, [str(exc)], log)
        if call.ended:
            return CaseResult(case, [f"the call ended before caller[{i}] ({item!r}) could act"], log)
        log += call.act(action)
    log += call.finish()
    return CaseResult(case, compare(call.machine.outcome, case.expect), log)


def compare(outcome: Outcome, expect: dict[str, Any]) -> list[str]:
    """Every way ``outcome`` differs from ``expect`` (empty when it matches)."""
    turns = [t for t in outcome.turns if not t.ignored]
    actual: dict[str, Any] = {
        "path": outcome.path,
        "intents": [t.intent or ("dtmf " + t.dtmf if t.dtmf else "none") for t in turns],
        "tags": sorted(outcome.tags),
        "level": outcome.level,
        "notifications": sorted(outcome.notifications),
        "disposition": outcome.disposition,
        "barge_ins": sum(t.barge_in for t in turns),
    }
    failures = []
    for key, wanted in expect.items():
        if key == "path_includes":
            if not _is_subsequence([str(w) for w in wanted], outcome.path):
                failures.append(f"path {outcome.path} does not pass through {wanted} in that order")
        elif key == "slots":
            for name, value in (wanted or {}).items():
                if outcome.slots.get(name) != str(value):
                    failures.append(f"slot {name}: expected {value!r}, got {outcome.slots.get(name)!r}")
        else:
            want = sorted(map(str, wanted)) if key in ("tags", "notifications") else wanted
            if want != actual[key]:
                failures.append(f"{key}: expected {want!r}, got {actual[key]!r}")
    return failures


def _is_subsequence(wanted: list[str], path: list[str]) -> bool:
    it = iter(path)
    return all(node in it for node in wanted)


def run_file(path: Path) -> list[CaseResult]:
    """Load a test file and its flow, run every case."""
    flow_path, cases = load_cases(path)
    flow = load_flow(flow_path)
    matcher = build_matcher(flow)
    return [run_case(flow, case, matcher=matcher) for case in cases]
