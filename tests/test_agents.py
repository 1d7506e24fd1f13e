"""Agents and groups: the `agents:` config section, and the live pool (strategies, call ownership, wrap-up, threads)."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from voicebot import yamlutil
from voicebot.handoff.agents import (
    Agent,
    AgentDirectory,
    AgentError,
    AgentPool,
    AgentState,
    Group,
    located,
    parse_agents,
)

# block style, so that every key has its own line: agents is line 1, the ana item line 9, groups line 12
CONFIG = """\
agents:
  wrap_up_s: 5
  list:
    - id: sam
      name: Sam Lee
      endpoint: user/1001
      voice: voices/sam
      skills: [en, mortgages]
    - id: ana
      name: Ana
      endpoint: "sofia/gateway/pbx/2002"
  groups:
    advisors:
      agents: [sam, ana]
      strategy: longest_idle
    spanish:
      agents: [ana]
      strategy: skill
      skills: [es]
"""


def load_section(path: Path) -> Any:
    """The `agents:` section as the engine config reads it: yamlutil.load for values, yamlutil.compose for lines."""
    text = path.read_text(encoding="utf-8")
    return located(yamlutil.load(text), yamlutil.compose(text))["agents"]


def parse_file(tmp_path: Path, text: str) -> tuple[Path, AgentDirectory]:
    path = tmp_path / "voicebot.yaml"
    path.write_text(text, encoding="utf-8")
    return path, parse_agents(load_section(path), str(path))


def make_pool(strategy: str = "longest_idle", wrap_up_s: float = 0.0, skills: list[str] | None = None,
              agents: list[dict[str, Any]] | None = None, now: float = 0.0) -> AgentPool:
    """A pool with agents a, b, c (or ``agents``) in one group ``g``."""
    specs = agents or [{"id": name, "endpoint": f"user/10{i}"} for i, name in enumerate("abc")]
    group: dict[str, Any] = {"agents": [s["id"] for s in specs], "strategy": strategy}
    if skills:
        group["skills"] = skills
    return AgentPool(parse_agents({"wrap_up_s": wrap_up_s, "list": specs, "groups": {"g": group}}), now)


def reserve_id(pool: AgentPool, call: str, now: float, group: str = "g", prefer: str = "") -> str:
    agent = pool.reserve(group, call, now, prefer=prefer)
    return agent.id if agent else ""


# --- config ---------------------------------------------------------------------------------


def test_the_documented_example_parses(tmp_path: Path) -> None:
    example = """\
agents:
  wrap_up_s: 5
  list:
    - {id: sam, name: Sam Lee, endpoint: user/1001, voice: voices/sam, skills: [en, mortgages]}
    - {id: ana, name: Ana, endpoint: "sofia/gateway/pbx/2002"}
  groups:
    advisors: {agents: [sam, ana], strategy: longest_idle}
    spanish: {agents: [ana], strategy: skill, skills: [es]}
"""
    _, directory = parse_file(tmp_path, example)
    assert directory == AgentDirectory(
        agents={"sam": Agent("sam", "Sam Lee", "user/1001", "voices/sam", ("en", "mortgages")),
                "ana": Agent("ana", "Ana", "sofia/gateway/pbx/2002")},
        groups={"advisors": Group("advisors", ("sam", "ana")), "spanish": Group("spanish", ("ana",), "skill", ("es",))},
        wrap_up_s=5.0)
    assert list(directory.agents) == ["sam", "ana"]
    _, block = parse_file(tmp_path, CONFIG)
    assert block == directory


def test_defaults_and_empty_section() -> None:
    assert parse_agents(None) == AgentDirectory(agents={}, groups={}, wrap_up_s=5.0)
    directory = parse_agents({"list": [{"id": 1001, "endpoint": "user/1001", "available": False}]})
    assert directory.agents["1001"] == Agent("1001", "1001", "user/1001", available=False)
    assert directory.wrap_up_s == 5.0 and directory.groups == {}


BAD_CONFIGS = [
    ("endpoint: user/1001", "endpont: user/1001",
     "6: agents.list[0].endpont: unknown key; did you mean 'endpoint'? known: id, name, endpoint, voice, skills, available"),
    ("  groups:", "  grups:", "12: agents.grups: unknown key; did you mean 'groups'? known: wrap_up_s, list, groups"),
    ("endpoint: user/1001", "endpoint: 'user/10 01'",
     "6: agents.list[0].endpoint: 'user/10 01' contains a space, which would break the originate dial string; "
     "spaces, quotes, braces, brackets, commas and '|' are refused"),
    ("endpoint: user/1001", 'endpoint: "user/10\'01"', "6: agents.list[0].endpoint: \"user/10'01\" contains a quote"),
    ("endpoint: user/1001", "endpoint: '{x=1}user/1001'", "6: agents.list[0].endpoint: '{x=1}user/1001' contains a brace"),
    ("endpoint: user/1001", "endpoint: 'user/1,user/2'", "6: agents.list[0].endpoint: 'user/1,user/2' contains a comma"),
    ("endpoint: user/1001", "endpoint: 1001", "6: agents.list[0].endpoint: '1001' is not a dial string; expected TYPE/..."),
    ('endpoint: "sofia/gateway/pbx/2002"', 'endpoint: ""',
     "11: agents.list[1].endpoint: empty; give a FreeSWITCH dial string like user/1001 or sofia/gateway/NAME/NUMBER"),
    ('      endpoint: "sofia/gateway/pbx/2002"\n', "", "9: agents.list[1].endpoint: missing"),
    ("id: ana", "id: sam", "9: agents.list[1].id: duplicate agent id 'sam' (first at agents.list[0])"),
    ("id: sam", "id: sam lee", "4: agents.list[0].id: agent id 'sam lee' may use only letters, digits and _ . - @"),
    ("      name: Ana\n", "      name: Ana\n      available: yes\n",
     "11: agents.list[1].available: expected true or false, got 'yes' (a string)"),
    ("skills: [en, mortgages]", "skills: en", "8: agents.list[0].skills: expected a list, got 'en' (a string)"),
    ("agents: [sam, ana]", "agents: [sam, anna]",
     "14: agents.groups.advisors.agents[1]: unknown agent 'anna'; did you mean 'ana'? (agents: sam, ana)"),
    ("agents: [sam, ana]", "agents: [sam, sam]", "14: agents.groups.advisors.agents[1]: agent 'sam' is listed twice"),
    ("agents: [sam, ana]", "agents: []", "14: agents.groups.advisors.agents: empty; list at least one agent id"),
    ("strategy: longest_idle", "strategy: longest-idle",
     "15: agents.groups.advisors.strategy: unknown strategy 'longest-idle'; did you mean 'longest_idle'? "
     "known: longest_idle, round_robin, skill"),
    ("      skills: [es]\n", "", "18: agents.groups.spanish.skills: strategy 'skill' needs skills, like skills: [es]"),
    ("strategy: skill", "strategy: round_robin",
     "19: agents.groups.spanish.skills: apply only with strategy: skill (this group uses round_robin)"),
    ("wrap_up_s: 5", "wrap_up_s: soon", "2: agents.wrap_up_s: expected seconds ≥ 0, got 'soon' (a string)"),
    ("wrap_up_s: 5", "wrap_up_s: -1", "2: agents.wrap_up_s: expected seconds ≥ 0, got -1 (a number)"),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD_CONFIGS, ids=[m.split(":")[1].strip() for *_, m in BAD_CONFIGS])
def test_config_errors_name_file_line_and_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in CONFIG
    with pytest.raises(AgentError) as info:
        parse_file(tmp_path, CONFIG.replace(old, new, 1))
    assert str(info.value).startswith(f"{tmp_path / 'voicebot.yaml'}:{message}")


def test_config_errors_without_positions_name_the_key_path() -> None:
    data = yamlutil.load(CONFIG.replace("agents: [sam, ana]", "agents: [sam, anna]"))["agents"]
    with pytest.raises(AgentError) as info:
        parse_agents(data)
    assert str(info.value) == "agents.groups.advisors.agents[1]: unknown agent 'anna'; did you mean 'ana'? (agents: sam, ana)"
    with pytest.raises(AgentError) as info:
        parse_agents({"list": {"id": "sam"}}, "voicebot.yaml")
    assert str(info.value) == "voicebot.yaml: agents.list: expected a list of agents, got a mapping"
    with pytest.raises(AgentError, match=r"^agents: expected a mapping, got a list$"):
        parse_agents([{"id": "sam"}])  # type: ignore[arg-type]


def test_unknown_key_without_a_close_match_lists_the_known_ones() -> None:
    with pytest.raises(AgentError) as info:
        parse_agents({"list": [{"id": "sam", "endpoint": "user/1", "zzz": 1}]})
    assert str(info.value) == "agents.list[0].zzz: unknown key; known: id, name, endpoint, voice, skills, available"


# --- strategies -------------------------------------------------------------------------------


def test_longest_idle_is_fair_over_many_reservations() -> None:
    pool = make_pool("longest_idle")
    picks = []
    for i in range(300):
        agent = reserve_id(pool, f"call-{i}", now=float(i))
        assert pool.release(agent, f"call-{i}", float(i) + 0.5, wrap_up=False)
        picks.append(agent)
    assert picks[:6] == ["a", "b", "c", "a", "b", "c"]  # ties at start by config order, then the longest idle
    assert Counter(picks) == {"a": 100, "b": 100, "c": 100}


def test_longest_idle_counts_from_release_or_the_end_of_wrap_up() -> None:
    pool = make_pool("longest_idle", wrap_up_s=5.0)
    assert [reserve_id(pool, f"c{i}", float(i)) for i in (1, 2, 3)] == ["a", "b", "c"]
    assert pool.release("c", "c3", 4.0, wrap_up=False)  # idle since 4
    assert pool.release("a", "c1", 5.0, wrap_up=True)  # wrap-up until 10: idle since 10
    assert pool.release("b", "c2", 6.0, wrap_up=False)  # idle since 6
    assert pool.peek("g", 7.0) is not None and pool.peek("g", 7.0) == pool.directory.agents["c"]
    assert reserve_id(pool, "c4", 7.0) == "c"
    assert pool.state("a", 9.9) is AgentState.WRAP_UP
    assert reserve_id(pool, "c5", 11.0) == "b"  # b idle since 6 beats a, idle since 10 (not since its release at 5)
    assert reserve_id(pool, "c6", 12.0) == "a"
    assert reserve_id(pool, "c7", 12.0) == ""


def test_round_robin_cycles_in_config_order_after_the_last_pick() -> None:
    pool = make_pool("round_robin")
    order = []
    for i in range(7):
        agent = reserve_id(pool, f"c{i}", float(i))
        pool.release(agent, f"c{i}", float(i), wrap_up=False)
        order.append(agent)
    assert order == ["a", "b", "c", "a", "b", "c", "a"]
    assert reserve_id(pool, "hold-b", 10.0) == "b"  # b stays busy from here
    assert reserve_id(pool, "x1", 11.0) == "c"
    pool.release("c", "x1", 11.0, wrap_up=False)
    assert pool.peek("g", 12.0) == pool.peek("g", 12.0) == pool.directory.agents["a"]  # peek does not advance
    assert [reserve_id(pool, "x2", 12.0), reserve_id(pool, "x3", 12.0), reserve_id(pool, "x4", 12.0)] == ["a", "c", ""]


def test_skill_picks_only_agents_with_every_skill_longest_idle_first() -> None:
    specs = [{"id": "en1", "endpoint": "user/1", "skills": ["en"]},
             {"id": "both", "endpoint": "user/2", "skills": ["en", "es"]},
             {"id": "es1", "endpoint": "user/3", "skills": ["es", "fr"]}]
    pool = make_pool("skill", skills=["es"], agents=specs)
    assert reserve_id(pool, "c1", 1.0) == "both"  # tie at start: config order among the skilled
    assert reserve_id(pool, "c2", 2.0) == "es1"
    assert reserve_id(pool, "c3", 3.0) == ""  # en1 is free but lacks es
    assert pool.state("en1", 3.0) is AgentState.AVAILABLE
    pool.release("es1", "c2", 4.0, wrap_up=False)
    pool.release("both", "c1", 5.0, wrap_up=False)
    assert reserve_id(pool, "c4", 6.0) == "es1"  # idle since 4, longer than both (5)
    strict = make_pool("skill", skills=["en", "es"], agents=specs)
    assert [reserve_id(strict, "d1", 1.0), reserve_id(strict, "d2", 1.0)] == ["both", ""]


def test_prefer_wins_only_when_available_and_in_the_group() -> None:
    directory = parse_agents({"list": [{"id": n, "endpoint": f"user/{n}"} for n in ("a", "b", "c", "z")],
                              "groups": {"g": {"agents": ["a", "b", "c"]}}})
    pool = AgentPool(directory, 0.0)
    assert reserve_id(pool, "c1", 1.0, prefer="c") == "c"  # a is idle as long, but c is preferred
    assert reserve_id(pool, "c2", 1.0, prefer="c") == "a"  # c is busy: the strategy decides
    assert reserve_id(pool, "c3", 1.0, prefer="z") == "b"  # z is not in the group
    assert reserve_id(pool, "c4", 1.0, prefer="nobody") == ""
    assert pool.state("z", 1.0) is AgentState.AVAILABLE


# --- ownership, transitions, wrap-up, offline ------------------------------------------------------


def test_stale_or_foreign_call_ids_change_nothing() -> None:
    pool = make_pool(wrap_up_s=5.0)
    assert reserve_id(pool, "call-1", 1.0) == "a"
    assert not pool.listening("a", "call-2", 1.1)
    assert not pool.talking("a", "call-2", 1.1)
    assert not pool.release("a", "call-2", 1.1, wrap_up=False)
    assert not pool.listening("a", "", 1.1)
    assert pool.state("a", 1.2) is AgentState.RESERVED and pool.holder("a") == "call-1"
    assert pool.listening("a", "call-1", 2.0)
    assert not pool.listening("a", "call-1", 2.1)  # already listening
    assert pool.talking("a", "call-1", 3.0)
    assert not pool.listening("a", "call-1", 3.1)  # no way back from talking
    assert pool.release("a", "call-1", 4.0, wrap_up=False)
    assert pool.state("a", 4.0) is AgentState.AVAILABLE and pool.holder("a") == ""
    assert not pool.release("a", "call-1", 4.1, wrap_up=True)  # stale: the call let go already
    assert not pool.talking("a", "call-1", 4.1)
    assert pool.reserve("g", "call-3", 5.0, prefer="a") is not None
    assert not pool.release("a", "call-1", 5.1, wrap_up=False)  # an old call cannot free the new call's agent
    assert pool.holder("a") == "call-3" and pool.state("a", 5.2) is AgentState.RESERVED
    assert not pool.talking("nobody", "call-3", 5.3) and pool.holder("nobody") == ""


def test_talking_straight_from_reserved_and_wrap_up_expires_by_now() -> None:
    pool = make_pool(wrap_up_s=5.0)
    reserve_id(pool, "call-1", 0.0, prefer="b")
    assert pool.talking("b", "call-1", 1.0)
    assert pool.release("b", "call-1", 10.0, wrap_up=True)
    assert pool.state("b", 14.999) is AgentState.WRAP_UP and pool.holder("b") == ""
    assert reserve_id(pool, "call-2", 14.999, prefer="b") != "b"
    assert pool.state("b", 15.0) is AgentState.AVAILABLE
    snap = {row["id"]: row for row in pool.snapshot(16.0)}
    assert snap["b"] == {"id": "b", "name": "b", "state": "available", "call": "", "since_s": 1.0}
    assert not pool.talking("b", "call-1", 16.0)


def test_offline_agents_are_never_picked_and_logout_waits_for_release() -> None:
    specs: list[dict[str, Any]] = [{"id": "a", "endpoint": "user/1", "available": False}, {"id": "b", "endpoint": "user/2"}]
    pool = make_pool(agents=specs, wrap_up_s=2.0)
    assert pool.state("a", 0.0) is AgentState.OFFLINE
    assert reserve_id(pool, "c1", 1.0, prefer="a") == "b"
    assert reserve_id(pool, "c2", 1.0) == ""
    pool.set_available("b", False, 2.0)  # b is busy: still reserved until released
    assert pool.state("b", 2.0) is AgentState.RESERVED and pool.talking("b", "c1", 2.5)
    assert pool.release("b", "c1", 3.0, wrap_up=True)
    assert pool.state("b", 4.9) is AgentState.WRAP_UP and pool.state("b", 5.0) is AgentState.OFFLINE
    pool.set_available("a", True, 6.0)
    assert pool.peek("g", 6.0) == pool.directory.agents["a"]
    pool.set_available("a", False, 7.0)
    assert pool.peek("g", 7.0) is None
    pool.set_available("b", True, 8.0)
    assert reserve_id(pool, "c3", 8.0) == "b"
    pool.set_available("b", False, 9.0)
    assert pool.release("b", "c3", 9.5, wrap_up=False) and pool.state("b", 9.5) is AgentState.OFFLINE
    with pytest.raises(KeyError):
        pool.set_available("nobody", True, 10.0)


def test_snapshot_rows_and_bad_arguments() -> None:
    pool = make_pool(now=100.0)
    reserve_id(pool, "call-9", 101.0, prefer="c")
    pool.listening("c", "call-9", 102.0)
    assert pool.snapshot(104.5) == [
        {"id": "a", "name": "a", "state": "available", "call": "", "since_s": 4.5},
        {"id": "b", "name": "b", "state": "available", "call": "", "since_s": 4.5},
        {"id": "c", "name": "c", "state": "listening", "call": "call-9", "since_s": 2.5},
    ]
    with pytest.raises(KeyError, match="unknown agent group 'nope'; known: g"):
        pool.reserve("nope", "call-1", 105.0)
    with pytest.raises(KeyError):
        pool.peek("nope", 105.0)
    with pytest.raises(ValueError, match="call_id"):
        pool.reserve("g", "", 105.0)


def test_threads_never_double_reserve_an_agent() -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, so that a missing lock shows
    try:
        _hammer(make_pool("round_robin"))
    finally:
        sys.setswitchinterval(interval)


def _hammer(pool: AgentPool) -> None:
    """8 threads reserve, listen, talk and release; an agent must never be held by two calls."""
    held: set[str] = set()
    guard = threading.Lock()
    problems: list[str] = []
    served = Counter[str]()
    start = threading.Barrier(8)

    def caller(worker: int) -> None:
        start.wait()
        for i in range(2000):
            call = f"w{worker}-{i}"
            agent = pool.reserve("g", call, time.monotonic())
            if agent is None:
                continue
            with guard:
                if agent.id in held:
                    problems.append(f"{agent.id} double-reserved by {call}")
                held.add(agent.id)
                served[agent.id] += 1
            if pool.holder(agent.id) != call or not pool.listening(agent.id, call, time.monotonic()):
                problems.append(f"{call} lost {agent.id}")
            pool.talking(agent.id, call, time.monotonic())
            with guard:
                held.discard(agent.id)
            if not pool.release(agent.id, call, time.monotonic(), wrap_up=bool(i % 2)):
                problems.append(f"{call} could not release {agent.id}")

    threads = [threading.Thread(target=caller, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    assert sum(served.values()) > 0 and set(served) == {"a", "b", "c"}
    assert all(row["state"] == "available" and row["call"] == "" for row in pool.snapshot(time.monotonic()))
