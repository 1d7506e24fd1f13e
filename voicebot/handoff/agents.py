"""Human agents: who they are, how they are grouped, and who is free right now (sans-I/O).

The ``agents:`` section of ``voicebot.yaml``::

    agents:
      wrap_up_s: 5                 # seconds an agent stays in WRAP_UP after a talk ends (default 5)
      list:
        - {id: sam, name: Sam Lee, endpoint: user/1001, voice: voices/sam, skills: [en, mortgages]}
        - {id: ana, name: Ana, endpoint: "sofia/gateway/pbx/2002"}
      groups:
        advisors: {agents: [sam, ana], strategy: longest_idle}
        spanish: {agents: [ana], strategy: skill, skills: [es]}

An agent has an ``id`` (letters, digits, ``_ . - @``), a ``name`` (default: the id), an ``endpoint`` (the
FreeSWITCH dial string of the agent's phone, ``TYPE/...``; spaces, quotes, braces, brackets, commas and ``|``
are refused because they would break ``originate``), an optional ``voice`` (voice pack directory), ``skills``
and ``available`` (logged in at start, default true). A group lists agent ids and a ``strategy``:

- ``longest_idle`` (default): the available agent idle longest (since start, a release, or the end of wrap-up),
  ties by the group's order;
- ``round_robin``: the group's agents in order, starting after the last one picked;
- ``skill``: among the agents having all the group's ``skills``, the one idle longest.

:func:`parse_agents` turns the section into an :class:`AgentDirectory`; :class:`AgentError` names
``file:line`` when the section comes from :func:`located` (line numbers from :func:`voicebot.yamlutil.compose`),
else the key path. :class:`AgentPool` holds the live states; every method takes ``now`` (monotonic seconds)::

    AVAILABLE ─reserve→ RESERVED ─listening→ LISTENING ─talking→ TALKING ─release(wrap_up=True)→ WRAP_UP ─wrap_up_s→ AVAILABLE
                        RESERVED ─talking→ TALKING;   any busy state ─release(wrap_up=False)→ AVAILABLE
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from voicebot.suggest import did_you_mean

__all__ = ["STRATEGIES", "Agent", "AgentDirectory", "AgentError", "AgentPool", "AgentState", "Group", "LocatedDict",
           "LocatedList", "located", "parse_agents"]

STRATEGIES = ("longest_idle", "round_robin", "skill")
_SECTION_KEYS = ("wrap_up_s", "list", "groups")
_AGENT_KEYS = ("id", "name", "endpoint", "voice", "skills", "available")
_GROUP_KEYS = ("agents", "strategy", "skills")
_ID_RE = re.compile(r"[A-Za-z0-9_.@-]+")
_DIAL_BREAKERS = {" ": "a space", "\t": "a tab", "\n": "a line break", "'": "a quote", '"': "a quote", "{": "a brace",
                  "}": "a brace", "[": "a bracket", "]": "a bracket", ",": "a comma", "|": "a '|'"}


class AgentError(ValueError):
    """A problem in the ``agents:`` section; the message names ``file:line`` (when known) and the key path."""


class AgentState(StrEnum):
    """Where an agent stands right now."""

    AVAILABLE = "available"
    RESERVED = "reserved"
    LISTENING = "listening"
    TALKING = "talking"
    WRAP_UP = "wrap_up"
    OFFLINE = "offline"


_BUSY = (AgentState.RESERVED, AgentState.LISTENING, AgentState.TALKING)


@dataclass(frozen=True)
class Agent:
    """One human agent; ``endpoint`` is a FreeSWITCH dial string (``user/1001``)."""

    id: str
    name: str
    endpoint: str
    voice: str = ""
    skills: tuple[str, ...] = ()
    available: bool = True


@dataclass(frozen=True)
class Group:
    """Agents that take the same calls; ``strategy`` is one of :data:`STRATEGIES`."""

    name: str
    agents: tuple[str, ...]
    strategy: str = "longest_idle"
    skills: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentDirectory:
    """Every agent and group, in config order; ``wrap_up_s`` in seconds (default 5)."""

    agents: Mapping[str, Agent] = field(default_factory=dict)
    groups: Mapping[str, Group] = field(default_factory=dict)
    wrap_up_s: float = 5.0


# --- line numbers ----------------------------------------------------------------


class LocatedDict(dict[Any, Any]):
    """A YAML mapping that knows its line and each key's line (1-based)."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines: dict[str, int] = {}


class LocatedList(list[Any]):
    """A YAML sequence that knows its line and each item's line (1-based)."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines: list[int] = []


def located(data: Any, node: yaml.Node | None) -> Any:
    """``data`` (from ``yamlutil.load(text)``) with line numbers from ``node`` (``yamlutil.compose(text)``)."""
    if isinstance(data, dict) and isinstance(node, yaml.MappingNode):
        out = LocatedDict(node.start_mark.line + 1)
        children = {str(k.value): (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
        for key, value in data.items():
            key_node, value_node = children.get(str(key), (None, None))
            out[key] = located(value, value_node)
            out.lines[str(key)] = key_node.start_mark.line + 1 if key_node is not None else out.line
        return out
    if isinstance(data, list) and isinstance(node, yaml.SequenceNode) and len(data) == len(node.value):
        seq = LocatedList(node.start_mark.line + 1)
        for item, child in zip(data, node.value, strict=True):
            seq.append(located(item, child))
            seq.lines.append(child.start_mark.line + 1)
        return seq
    return data


def _line(container: object, key: str | int | None) -> int | None:
    if isinstance(container, LocatedDict):
        return container.lines.get(str(key), container.line) if key is not None else container.line
    if isinstance(container, LocatedList):
        return container.lines[key] if isinstance(key, int) and 0 <= key < len(container.lines) else container.line
    return None


# --- parsing ---------------------------------------------------------------------------


class _Parser:
    """Reads values out of the section; every failure is an :class:`AgentError` with file:line and key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, where: object, key: str | int | None, path: str, message: str) -> AgentError:
        line = _line(where, key)
        prefix = f"{self.source or 'line'}:{line}: " if line else (f"{self.source}: " if self.source else "")
        return AgentError(f"{prefix}{path}: {message}")

    def mapping(self, where: object, key: str | int | None, path: str, value: Any, known: tuple[str, ...]) -> Mapping[Any, Any]:
        if not isinstance(value, Mapping):
            raise self.error(where, key, path, f"expected a mapping, got {_describe(value)}")
        for name in value:
            if str(name) not in known:
                raise self.error(value, name, f"{path}.{name}", f"unknown key; {_choices(str(name), known)}")
        return value

    def text(self, where: Mapping[Any, Any], key: str, path: str, default: str | None = None) -> str:
        if key not in where or where[key] is None:
            if default is None:
                raise self.error(where, None, f"{path}.{key}", "missing")
            return default
        value = where[key]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(where, key, f"{path}.{key}", f"expected a string, got {_describe(value)}")
        return str(value)

    def words(self, where: Mapping[Any, Any], key: str, path: str) -> tuple[str, ...]:
        value = where.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.error(where, key, f"{path}.{key}", f"expected a list, got {_describe(value)}")
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, str | int) or not str(item):
                raise self.error(value, i, f"{path}.{key}[{i}]", f"expected a word, got {_describe(item)}")
        return tuple(str(item) for item in value)


def _choices(word: str, known: tuple[str, ...]) -> str:
    """``did you mean 'x'? known: a, b`` (the hint only when something is close)."""
    hint = did_you_mean(word, known)
    return f"{hint + ' ' if hint else ''}known: {', '.join(known)}"


def _describe(value: Any) -> str:
    """``'soon' (a string)``, ``a list``, ``nothing``: how a wrong value reads in a message."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (true/false)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    kind = "a string" if isinstance(value, str) else "a number"
    return f"{value!r} ({kind})"


def parse_agents(section: Mapping[str, Any] | None, source: str = "") -> AgentDirectory:
    """The ``agents:`` section (see the module docstring) as a directory; ``None`` gives an empty one."""
    if section is None:
        return AgentDirectory()
    p = _Parser(source)
    data = p.mapping(None, None, "agents", section, _SECTION_KEYS)
    wrap_up = data.get("wrap_up_s", 5.0)
    if isinstance(wrap_up, bool) or not isinstance(wrap_up, int | float) or wrap_up < 0:
        raise p.error(data, "wrap_up_s", "agents.wrap_up_s", f"expected seconds ≥ 0, got {_describe(wrap_up)}")
    agents = _parse_list(p, data)
    groups = _parse_groups(p, data, agents)
    return AgentDirectory(agents=agents, groups=groups, wrap_up_s=float(wrap_up))


def _parse_list(p: _Parser, data: Mapping[Any, Any]) -> dict[str, Agent]:
    items = data.get("list") or []
    if not isinstance(items, list):
        raise p.error(data, "list", "agents.list", f"expected a list of agents, got {_describe(items)}")
    agents: dict[str, Agent] = {}
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        path = f"agents.list[{i}]"
        spec = p.mapping(items, i, path, item, _AGENT_KEYS)
        agent = _parse_agent(p, spec, path)
        if agent.id in agents:
            raise p.error(spec, "id", f"{path}.id", f"duplicate agent id '{agent.id}' (first at agents.list[{first[agent.id]}])")
        agents[agent.id], first[agent.id] = agent, i
    return agents


def _parse_agent(p: _Parser, spec: Mapping[Any, Any], path: str) -> Agent:
    agent_id = p.text(spec, "id", path)
    if not _ID_RE.fullmatch(agent_id):
        raise p.error(spec, "id", f"{path}.id", f"agent id '{agent_id}' may use only letters, digits and _ . - @")
    endpoint = p.text(spec, "endpoint", path)
    _check_endpoint(p, spec, f"{path}.endpoint", endpoint)
    available = spec.get("available", True)
    if not isinstance(available, bool):
        raise p.error(spec, "available", f"{path}.available", f"expected true or false, got {_describe(available)}")
    return Agent(id=agent_id, name=p.text(spec, "name", path, agent_id), endpoint=endpoint, voice=p.text(spec, "voice", path, ""),
                 skills=p.words(spec, "skills", path), available=available)


def _check_endpoint(p: _Parser, spec: Mapping[Any, Any], path: str, endpoint: str) -> None:
    """Refuse dial strings that would break ``originate {vars}ENDPOINT &app()``."""
    if not endpoint.strip():
        raise p.error(spec, "endpoint", path, "empty; give a FreeSWITCH dial string like user/1001 or sofia/gateway/NAME/NUMBER")
    bad = next((c for c in endpoint if c in _DIAL_BREAKERS or not c.isprintable()), "")
    if bad:
        what = _DIAL_BREAKERS.get(bad, f"the control character {bad!r}")
        raise p.error(spec, "endpoint", path, f"{endpoint!r} contains {what}, which would break the originate dial string; "
                      "spaces, quotes, braces, brackets, commas and '|' are refused")
    if "/" not in endpoint.strip("/"):
        raise p.error(spec, "endpoint", path, f"{endpoint!r} is not a dial string; expected TYPE/..., like user/1001")


def _parse_groups(p: _Parser, data: Mapping[Any, Any], agents: Mapping[str, Agent]) -> dict[str, Group]:
    specs = data.get("groups") or {}
    if not isinstance(specs, Mapping):
        raise p.error(data, "groups", "agents.groups", f"expected a mapping of group names, got {_describe(specs)}")
    groups: dict[str, Group] = {}
    for name, raw in specs.items():
        path = f"agents.groups.{name}"
        spec = p.mapping(specs, name, path, raw, _GROUP_KEYS)
        members = _group_members(p, spec, path, agents)
        strategy, skills = _group_strategy(p, spec, path)
        groups[str(name)] = Group(name=str(name), agents=members, strategy=strategy, skills=skills)
    return groups


def _group_strategy(p: _Parser, spec: Mapping[Any, Any], path: str) -> tuple[str, tuple[str, ...]]:
    """The group's strategy and skills (skills go with ``strategy: skill`` and only with it)."""
    strategy = p.text(spec, "strategy", path, "longest_idle")
    if strategy not in STRATEGIES:
        raise p.error(spec, "strategy", f"{path}.strategy", f"unknown strategy '{strategy}'; {_choices(strategy, STRATEGIES)}")
    skills = p.words(spec, "skills", path)
    if strategy == "skill" and not skills:
        raise p.error(spec, "strategy", f"{path}.skills", "strategy 'skill' needs skills, like skills: [es]")
    if skills and strategy != "skill":
        raise p.error(spec, "skills", f"{path}.skills", f"apply only with strategy: skill (this group uses {strategy})")
    return strategy, skills


def _group_members(p: _Parser, spec: Mapping[Any, Any], path: str, agents: Mapping[str, Agent]) -> tuple[str, ...]:
    if "agents" not in spec:
        raise p.error(spec, None, f"{path}.agents", "missing; list the agent ids of the group")
    members = p.words(spec, "agents", path)
    if not members:
        raise p.error(spec, "agents", f"{path}.agents", "empty; list at least one agent id")
    where = spec["agents"]
    for i, member in enumerate(members):
        if member not in agents:
            hint = did_you_mean(member, agents)
            raise p.error(where, i, f"{path}.agents[{i}]", f"unknown agent '{member}'" + (f"; {hint}" if hint else "")
                          + f" (agents: {', '.join(agents) or 'none'})")
        if member in members[:i]:
            raise p.error(where, i, f"{path}.agents[{i}]", f"agent '{member}' is listed twice")
    return members


# --- live state -------------------------------------------------------------------------


@dataclass
class _Live:
    """One agent's live state (guarded by the pool's lock)."""

    agent: Agent
    state: AgentState
    logged_in: bool
    since: float  # when the current state began
    idle_since: float  # when the agent last became available (start, release, end of wrap-up)
    call: str = ""
    wrap_until: float = 0.0


class AgentPool:
    """Live agent states, thread-safe (one lock). ``now`` is monotonic seconds; wrap-up ends lazily by ``now``.

    A call moves only an agent it holds: a stale or foreign ``call_id`` returns False and changes nothing.
    Unknown agent ids give False (transitions) or ``""`` (:meth:`holder`); :meth:`state` and
    :meth:`set_available` raise KeyError for them, :meth:`peek` and :meth:`reserve` for an unknown group.
    """

    def __init__(self, directory: AgentDirectory, now: float) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._live = {aid: _Live(a, AgentState.AVAILABLE if a.available else AgentState.OFFLINE, a.available, now, now)
                      for aid, a in directory.agents.items()}
        self._last_pick: dict[str, int] = {}  # round_robin: group name -> index of the last agent picked

    def peek(self, group: str, now: float) -> Agent | None:
        """Who :meth:`reserve` would pick now (without ``prefer``), reserving nothing."""
        with self._lock:
            picked = self._pick(self._group(group), now)
            return self._live[picked[1]].agent if picked else None

    def reserve(self, group: str, call_id: str, now: float, prefer: str = "") -> Agent | None:
        """Reserve an available agent of ``group`` for ``call_id``; ``prefer`` wins when available and in the group."""
        if not call_id:
            raise ValueError("reserve: call_id must not be empty")
        with self._lock:
            g = self._group(group)
            if prefer in g.agents and self._free(prefer, now):
                picked: tuple[int, str] | None = (g.agents.index(prefer), prefer)
            else:
                picked = self._pick(g, now)
            if picked is None:
                return None
            self._last_pick[g.name] = picked[0]
            live = self._live[picked[1]]
            live.state, live.call, live.since = AgentState.RESERVED, call_id, now
            return live.agent

    def listening(self, agent_id: str, call_id: str, now: float) -> bool:
        """RESERVED → LISTENING: the agent's leg is up and eavesdropping on the call."""
        return self._move(agent_id, call_id, now, (AgentState.RESERVED,), AgentState.LISTENING)

    def talking(self, agent_id: str, call_id: str, now: float) -> bool:
        """RESERVED or LISTENING → TALKING: bridged to the caller, or took the call over."""
        return self._move(agent_id, call_id, now, (AgentState.RESERVED, AgentState.LISTENING), AgentState.TALKING)

    def release(self, agent_id: str, call_id: str, now: float, *, wrap_up: bool) -> bool:
        """Busy → WRAP_UP for ``wrap_up_s`` (``wrap_up=True``: the talk ended) or AVAILABLE at once (leg failed, caller gone)."""
        with self._lock:
            live = self._live.get(agent_id)
            if live is None or not call_id or live.call != call_id or live.state not in _BUSY:
                return False
            live.call, live.since = "", now
            if wrap_up and self.directory.wrap_up_s > 0:
                live.state, live.wrap_until = AgentState.WRAP_UP, now + self.directory.wrap_up_s
            else:
                live.state = AgentState.AVAILABLE if live.logged_in else AgentState.OFFLINE
                live.idle_since = now
            return True

    def set_available(self, agent_id: str, available: bool, now: float) -> None:
        """Log the agent in or out; logging out while busy takes effect at release (or the end of wrap-up)."""
        with self._lock:
            live = self._settled(agent_id, now)
            live.logged_in = available
            if available and live.state is AgentState.OFFLINE:
                live.state, live.since, live.idle_since = AgentState.AVAILABLE, now, now
            elif not available and live.state is AgentState.AVAILABLE:
                live.state, live.since = AgentState.OFFLINE, now

    def state(self, agent_id: str, now: float) -> AgentState:
        """The agent's state at ``now``."""
        with self._lock:
            return self._settled(agent_id, now).state

    def holder(self, agent_id: str) -> str:
        """The call id holding the agent, ``""`` if none."""
        with self._lock:
            live = self._live.get(agent_id)
            return live.call if live else ""

    def snapshot(self, now: float) -> list[dict[str, object]]:
        """Every agent for ``/health``: id, name, state, call, since_s (seconds in this state)."""
        with self._lock:
            out: list[dict[str, object]] = []
            for agent_id in self._live:
                live = self._settled(agent_id, now)
                out.append({"id": agent_id, "name": live.agent.name, "state": live.state.value, "call": live.call,
                            "since_s": round(max(0.0, now - live.since), 3)})
            return out

    # -- internals (called with the lock held) --

    def _group(self, name: str) -> Group:
        group = self.directory.groups.get(name)
        if group is None:
            raise KeyError(f"unknown agent group {name!r}; known: {', '.join(self.directory.groups) or 'none'}")
        return group

    def _settled(self, agent_id: str, now: float) -> _Live:
        """The agent's live state with an expired wrap-up turned into AVAILABLE (or OFFLINE)."""
        live = self._live[agent_id]
        if live.state is AgentState.WRAP_UP and now >= live.wrap_until:
            live.state = AgentState.AVAILABLE if live.logged_in else AgentState.OFFLINE
            live.since = live.idle_since = live.wrap_until
        return live

    def _free(self, agent_id: str, now: float) -> bool:
        return agent_id in self._live and self._settled(agent_id, now).state is AgentState.AVAILABLE

    def _pick(self, group: Group, now: float) -> tuple[int, str] | None:
        """(index in the group, agent id) by the group's strategy, or None."""
        free = [(i, aid) for i, aid in enumerate(group.agents) if self._free(aid, now)]
        if group.strategy == "skill":
            free = [(i, aid) for i, aid in free if set(group.skills) <= set(self._live[aid].agent.skills)]
        if not free:
            return None
        if group.strategy == "round_robin":
            after, size = self._last_pick.get(group.name, -1), len(group.agents)
            return min(free, key=lambda c: (c[0] - after - 1) % size)
        return min(free, key=lambda c: (self._live[c[1]].idle_since, c[0]))

    def _move(self, agent_id: str, call_id: str, now: float, sources: tuple[AgentState, ...], target: AgentState) -> bool:
        with self._lock:
            live = self._live.get(agent_id)
            if live is None or not call_id or live.call != call_id or live.state not in sources:
                return False
            live.state, live.since = target, now
            return True
