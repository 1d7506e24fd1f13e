"""Engine configuration (``voicebot.yaml``) → frozen dataclasses, with file:line errors.

Every key is optional; the defaults run against a FreeSWITCH on the same box::

    freeswitch:
      host: 127.0.0.1          # inbound ESL (event_socket.conf.xml)
      port: 8021
      password: CHANGE-ME      # the same as in event_socket.conf.xml
      command_timeout_s: 5
    outbound: {host: 127.0.0.1, port: 8084}   # the dialplan's `socket 127.0.0.1:8084 async full`
    media:
      ip: 127.0.0.1            # where FreeSWITCH and the engine exchange unicast UDP
      ports: 40000-40999       # two ports per call
    flows:
      default: examples/flows/lead_screening_en.yaml
      by_destination: {"7000": examples/flows/lead_screening_en.yaml}
    asr: {backend: pocketsphinx, model: null, offscript_rejection: true}
                               # backend pocketsphinx-pool: decoding in one worker process per core (more calls)
                               # offscript_rejection false: about half the ASR CPU, more off-script speech forced
                               # onto an intent (bench/README.md, capacity)
    vad: {name: webrtc, aggressiveness: 2}
    voice_pack: null           # the agent's voice pack directory (default: the default Piper voice)
    cache_dir: .voicebot-cache
    records: {db: voicebot-calls.sqlite, recordings: recordings}
    limits: {max_calls: 20, busy_prompt: "All our advisors are busy, we will call you back.", busy_action: prompt}
                               # busy_action: prompt (say busy_prompt, then USER_BUSY) | hangup (USER_BUSY) | transfer:<ext>
    http: {host: 127.0.0.1, port: 8090}       # /health and /metrics (Prometheus)
    agents: {...}              # agents and groups: see voicebot/handoff/agents.py
    handoff:
      mode: talk               # talk: eavesdrop's talk mode, gap-free | bridge: uuid_bridge, frees the bot's media
      takeover_digit: "2"      # the key a listening agent presses to take the call (eavesdrop: 2 talk, 3 three-way)
      ring_timeout_s: 20       # an agent's phone rings this long before the next agent is tried
      max_attempts: 3          # agents tried per handoff
      whisper: true            # play the agent a spoken summary before they listen in
      whisper_dir: /tmp/voicebot-whisper   # where whisper WAVs go: FreeSWITCH must be able to read them
      screen_pop: {url: "http://127.0.0.1:9000/lead", secret: CHANGE-ME, retries: 4}
    shutdown_deadline_s: 30

Relative paths are relative to the config file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voicebot import yamlutil
from voicebot.handoff.agents import AgentDirectory, AgentError, located, parse_agents

SECTIONS = ("freeswitch", "outbound", "media", "flows", "asr", "vad", "voice_pack", "cache_dir", "records", "limits",
            "http", "shutdown_deadline_s", "agents", "handoff")
HANDOFF_MODES = ("talk", "bridge")


class ConfigError(ValueError):
    """A configuration problem; the message names the file, line and key."""


@dataclass(frozen=True)
class HandoffConfig:
    """How calls reach agents (``handoff:``). See the module docstring."""

    mode: str = "talk"
    takeover_digit: str = "2"
    ring_timeout_s: float = 20.0
    max_attempts: int = 3
    whisper: bool = True
    whisper_dir: Path = Path("/tmp/voicebot-whisper")
    screen_pop_url: str = ""
    screen_pop_secret: str = ""
    screen_pop_retries: int = 4


@dataclass(frozen=True)
class EngineConfig:
    """Everything ``voicebot serve`` needs. See the module docstring for the YAML."""

    esl_host: str = "127.0.0.1"
    esl_port: int = 8021
    esl_password: str = "ClueCon"
    command_timeout_s: float = 5.0
    outbound_host: str = "127.0.0.1"
    outbound_port: int = 8084
    media_ip: str = "127.0.0.1"
    media_ports: tuple[int, int] = (40000, 40999)
    default_flow: Path | None = None
    flows_by_destination: dict[str, Path] = field(default_factory=dict)
    asr_backend: str = "pocketsphinx"
    asr_model: Path | None = None
    asr_offscript_rejection: bool = True  # pocketsphinx: reject off-script speech with a phone loop (~2x ASR CPU)
    vad: str = "webrtc"
    vad_aggressiveness: int = 2
    voice_pack: Path | None = None
    cache_dir: Path = Path(".voicebot-cache")
    records_db: str = "voicebot-calls.sqlite"
    recordings_dir: Path = Path("recordings")
    max_calls: int = 20
    busy_prompt: str = "All our advisors are busy right now. We will call you back. Goodbye."
    busy_action: str = "prompt"  # prompt | hangup | transfer:<extension>
    http_host: str = "127.0.0.1"
    http_port: int = 8090
    shutdown_deadline_s: float = 30.0
    handoff: HandoffConfig = field(default_factory=HandoffConfig)
    agents: AgentDirectory = field(default_factory=lambda: parse_agents(None))
    source: str = ""


def load_config(path: Path) -> EngineConfig:
    """Read ``path``; ConfigError names the file, line and key of any problem."""
    text = path.read_text(encoding="utf-8")
    try:
        root = yamlutil.compose(text)
        data = located(yamlutil.load(text) or {}, root)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the config must be a mapping of sections")
    lines = _key_lines(root)
    unknown = [k for k in data if k not in SECTIONS]
    if unknown:
        raise ConfigError(f"{path}:{lines.get(str(unknown[0]), 1)}: unknown section {unknown[0]!r}; known: {', '.join(SECTIONS)}")
    try:
        return _build(data, path.parent.resolve(), str(path))
    except AgentError as exc:
        raise ConfigError(str(exc)) from None
    except (TypeError, ValueError, KeyError) as exc:
        key = str(exc.args[0]).split(":", 1)[0] if exc.args else ""
        raise ConfigError(f"{path}:{lines.get(key.split('.')[0], 1)}: {exc}") from None


def _key_lines(root: yaml.Node | None) -> dict[str, int]:
    if not isinstance(root, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in root.value}


def _section(data: dict[str, Any], name: str, known: tuple[str, ...]) -> dict[str, Any]:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise ValueError(f"{name}: expected a mapping")
    unknown = [k for k in value if k not in known]
    if unknown:
        raise ValueError(f"{name}.{unknown[0]}: unknown key; known: {', '.join(known)}")
    return value


def _path(base: Path, value: Any) -> Path | None:
    if value in (None, ""):
        return None
    p = Path(str(value))
    return p if p.is_absolute() else base / p


def _flag(section: dict[str, Any], key: str, default: bool) -> bool:
    """A true/false setting of ``section`` (``key`` is ``section.name``); anything else is a ValueError naming it."""
    value = section.get(key.split(".")[-1], default)
    if not isinstance(value, bool):
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    return value


def _ports(value: Any) -> tuple[int, int]:
    low, _, high = str(value).partition("-")
    lo, hi = int(low), int(high or low)
    if not 1024 <= lo < hi <= 65535 or (hi - lo + 1) < 2:
        raise ValueError(f"media.ports: expected a range like 40000-40999, got {value!r}")
    return lo, hi


def _build(data: dict[str, Any], base: Path, source: str) -> EngineConfig:
    fs = _section(data, "freeswitch", ("host", "port", "password", "command_timeout_s"))
    out = _section(data, "outbound", ("host", "port"))
    media = _section(data, "media", ("ip", "ports"))
    flows = _section(data, "flows", ("default", "by_destination"))
    asr = _section(data, "asr", ("backend", "model", "offscript_rejection"))
    vad = _section(data, "vad", ("name", "aggressiveness"))
    records = _section(data, "records", ("db", "recordings"))
    limits = _section(data, "limits", ("max_calls", "busy_prompt", "busy_action"))
    http = _section(data, "http", ("host", "port"))
    d = EngineConfig()
    db = str(records.get("db", d.records_db))
    return EngineConfig(
        esl_host=str(fs.get("host", d.esl_host)), esl_port=int(fs.get("port", d.esl_port)),
        esl_password=str(fs.get("password", d.esl_password)),
        command_timeout_s=float(fs.get("command_timeout_s", d.command_timeout_s)),
        outbound_host=str(out.get("host", d.outbound_host)), outbound_port=int(out.get("port", d.outbound_port)),
        media_ip=str(media.get("ip", d.media_ip)), media_ports=_ports(media.get("ports", "40000-40999")),
        default_flow=_path(base, flows.get("default")),
        flows_by_destination={str(k): _path(base, v) or Path() for k, v in (flows.get("by_destination") or {}).items()},
        asr_backend=str(asr.get("backend", d.asr_backend)), asr_model=_path(base, asr.get("model")),
        asr_offscript_rejection=_flag(asr, "asr.offscript_rejection", d.asr_offscript_rejection),
        vad=str(vad.get("name", d.vad)), vad_aggressiveness=int(vad.get("aggressiveness", d.vad_aggressiveness)),
        voice_pack=_path(base, data.get("voice_pack")), cache_dir=_path(base, data.get("cache_dir")) or base / d.cache_dir,
        records_db=db if "://" in db else str(_path(base, db)),
        recordings_dir=_path(base, records.get("recordings")) or base / d.recordings_dir,
        max_calls=int(limits.get("max_calls", d.max_calls)), busy_prompt=str(limits.get("busy_prompt", d.busy_prompt)),
        busy_action=_busy_action(limits.get("busy_action", d.busy_action)),
        http_host=str(http.get("host", d.http_host)), http_port=int(http.get("port", d.http_port)),
        shutdown_deadline_s=float(data.get("shutdown_deadline_s", d.shutdown_deadline_s)), source=source,
        handoff=_handoff(data, base), agents=parse_agents(data.get("agents"), source),
    )


def _handoff(data: dict[str, Any], base: Path) -> HandoffConfig:
    """``handoff:``: mode, keys, timeouts, whisper and screen-pop."""
    spec = _section(data, "handoff", ("mode", "takeover_digit", "ring_timeout_s", "max_attempts", "whisper",
                                      "whisper_dir", "screen_pop"))
    pop = spec.get("screen_pop") or {}
    if not isinstance(pop, dict) or any(k not in ("url", "secret", "retries") for k in pop):
        raise ValueError("handoff.screen_pop: expected a mapping with url, secret and retries")
    d = HandoffConfig()
    mode, digit = str(spec.get("mode", d.mode)), str(spec.get("takeover_digit", d.takeover_digit))
    if mode not in HANDOFF_MODES:
        raise ValueError(f"handoff.mode: expected talk or bridge, got {mode!r}")
    if digit not in ("2", "3"):
        raise ValueError(f"handoff.takeover_digit: expected 2 (talk) or 3 (three-way), got {digit!r}")
    if pop.get("url") and not pop.get("secret"):
        raise ValueError("handoff.screen_pop: a url needs a secret to sign the posts with")
    return HandoffConfig(
        mode=mode, takeover_digit=digit, ring_timeout_s=float(spec.get("ring_timeout_s", d.ring_timeout_s)),
        max_attempts=int(spec.get("max_attempts", d.max_attempts)), whisper=bool(spec.get("whisper", d.whisper)),
        whisper_dir=_path(base, spec.get("whisper_dir")) or d.whisper_dir,
        screen_pop_url=str(pop.get("url", "")), screen_pop_secret=str(pop.get("secret", "")),
        screen_pop_retries=int(pop.get("retries", d.screen_pop_retries)),
    )


def _busy_action(value: Any) -> str:
    """``limits.busy_action``: prompt, hangup or transfer:<extension>."""
    action = str(value).strip()
    if action in ("prompt", "hangup") or (action.startswith("transfer:") and action[len("transfer:"):].strip()):
        return action
    raise ValueError(f"limits.busy_action: expected prompt, hangup or transfer:<extension>, got {value!r}")
