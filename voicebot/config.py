"""Engine configuration (``voicebot.yaml``) -> frozen dataclasses; every problem at once with file:line:col.

Every key is optional; the defaults run against a FreeSWITCH on the same box. The keys, their types, defaults
and meanings are in one table, :data:`voicebot.configkeys.SETTINGS`, which gives both the JSON Schema this
module validates with and the reference ``docs/configuration.md`` (``python -m voicebot.config --markdown``).
Relative paths are relative to the config file.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]

from voicebot.configkeys import ACCURATE_MODELS, SETTINGS, json_schema, markdown
from voicebot.handoff.agents import AgentDirectory, AgentError, parse_agents
from voicebot.notify.settings import NotificationsConfig, NotificationsError, parse_notifications
from voicebot.schemacheck import check_schema
from voicebot.yamldoc import Doc, KeyPath, Problem, read_yaml

SECTIONS = tuple(dict.fromkeys(s.key.split(".")[0] for s in SETTINGS))
HANDOFF_MODES = ("talk", "bridge")
_DEFAULTS = {s.key: s.default for s in SETTINGS}


class ConfigError(ValueError):
    """A configuration problem; ``problems`` lists every one (file:line:col, key path, message, hint)."""

    def __init__(self, problems: list[Problem] | str) -> None:
        """Keep ``problems``; the message lists them one per line (a plain message has no problem list)."""
        self.problems = [] if isinstance(problems, str) else problems
        super().__init__(problems if isinstance(problems, str) else "\n".join(str(p) for p in problems))


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


DEFAULT_DIAL = "sofia/gateway/trunk/{number}"  # a campaign box's dial string when the config names none


@dataclass(frozen=True)
class DialBoxConfig:
    """A FreeSWITCH box campaigns dial through (``campaigns.boxes``): its inbound ESL and its dial string."""

    name: str
    host: str = "127.0.0.1"
    port: int = 8021
    password: str = "ClueCon"
    dial: str = DEFAULT_DIAL


@dataclass(frozen=True)
class CampaignsConfig:
    """``campaigns:``: present means the engine runs campaigns (docs/campaigns.md). ``boxes`` empty: the
    ``freeswitch`` section's box."""

    db: str = "voicebot-campaigns.sqlite"
    boxes: tuple[DialBoxConfig, ...] = ()
    owner: str = ""
    lease_s: float = 60.0
    poll_s: float = 2.0


@dataclass(frozen=True)
class EngineConfig:
    """Everything ``voicebot serve`` needs. See the module docstring for the YAML."""

    esl_host: str = "127.0.0.1"
    esl_port: int = 8021
    esl_password: str = "ClueCon"
    command_timeout_s: float = 5.0
    esl_connect_timeout_s: float = 3.0
    esl_reconnect_initial_s: float = 0.25  # voicebot.esl.inbound.BACKOFF_INITIAL_S
    esl_reconnect_max_s: float = 1.5  # voicebot.esl.inbound.BACKOFF_MAX_S
    outbound_host: str = "127.0.0.1"
    outbound_port: int = 8084
    media_ip: str = "127.0.0.1"
    media_ports: tuple[int, int] = (40000, 40999)
    media_stall_s: float = 0.2  # voicebot.esl.stall.STALL_S; the rearm_* defaults are its REARM_* constants
    rearm_backoff_initial_s: float = 0.25
    rearm_backoff_max_s: float = 2.0
    rearm_max_failed: int = 5
    rearm_max_per_window: int = 10
    rearm_window_s: float = 60.0
    default_flow: Path | None = None
    flows_by_destination: dict[str, Path] = field(default_factory=dict)
    asr_backend: str = "pocketsphinx-pool"  # one worker process per core (voicebot.asr.procpool); "pocketsphinx": in-process
    asr_model: Path | None = None
    asr_accurate: str | None = "base"  # the accurate pass's Whisper model (a packaged name or a directory); None: off
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
    notifications: NotificationsConfig = field(default_factory=NotificationsConfig)  # docs/notifications.md
    campaigns: CampaignsConfig | None = None  # None: no `campaigns:` section, no campaigns run
    source: str = ""


def load_config(path: Path) -> EngineConfig:
    """Read ``path``; ConfigError lists every problem with its file, line, column and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([Problem(str(path), 1, 1, "", f"cannot read the config file: {reason}")]) from None
    doc = read_yaml(text, str(path), empty=None)
    if doc.parsed:
        doc.data = {} if doc.data is None else doc.data
        _numbers_as_text(doc)
        check_schema(doc, _validator())
        _check_values(doc)
        _check_model_paths(doc, path.parent.resolve())
    agents = _agents(doc)
    notifications = _notifications(doc, path.parent.resolve())
    _check_outbox(doc, notifications, path.parent.resolve())
    if doc.problems:
        raise ConfigError(sorted(dict.fromkeys(doc.problems), key=lambda p: (p.line, p.column)))
    config = _build(doc.data, path.parent.resolve(), str(path), agents)
    return replace(config, notifications=notifications)


def _notifications(doc: Doc, base: Path) -> NotificationsConfig:
    """The ``notifications:`` section (voicebot.notify.settings); its problems join the document's."""
    if not doc.parsed:
        return NotificationsConfig()
    try:
        return parse_notifications(doc, base)
    except NotificationsError:  # its problems are already in doc.problems
        return NotificationsConfig()


@functools.cache
def _validator() -> Any:
    """The Draft 2020-12 validator for the config schema (built once from the table)."""
    return jsonschema.Draft202012Validator(json_schema())


_TEXT_KINDS = ("text", "host", "choice", "db", "path", "model")


def _numbers_as_text(doc: Doc) -> None:
    """A number where the table wants text (``password: 1234``, ``takeover_digit: 3``) is read as written."""
    for setting in SETTINGS:
        if setting.kind not in _TEXT_KINDS or (setting.choices and not all(c.isdigit() for c in setting.choices)):
            continue
        path: KeyPath = tuple(setting.key.split("."))
        parent = _get(doc.data, path[:-1])
        if isinstance(parent, dict) and isinstance(parent.get(path[-1]), int | float) and not isinstance(parent[path[-1]], bool):
            parent[path[-1]] = doc.raw.get(path, str(parent[path[-1]]))


def _get(data: Any, path: KeyPath) -> Any:
    """The value at ``path`` in ``data`` (None when absent)."""
    for part in path:
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _value(data: dict[str, Any], key: str) -> Any:
    """The value of config key ``key`` (dotted), or its default from the table."""
    value = _get(data, tuple(key.split(".")))
    return _DEFAULTS[key] if value is None and key not in ("agents", "notifications") else value


def _check_outbox(doc: Doc, notifications: NotificationsConfig, base: Path) -> None:
    """With campaigns the outbox is the campaign database: an attempt and its messages commit together."""
    if not doc.parsed or not isinstance(doc.data, dict) or "campaigns" not in doc.data or not notifications.db:
        return
    db = str(_value(doc.data, "campaigns.db"))
    if notifications.db != (db if "://" in db else str(_path(base, db))):
        doc.at(("notifications", "db"), "with campaigns, the outbox must be the campaign database",
               "remove notifications.db, or set it to campaigns.db")


def _check_values(doc: Doc) -> None:
    """What the schema can't say: a port range low < high, a screen-pop url needs a secret (other errors or not)."""
    ports = _value(doc.data, "media.ports")
    low, _, high = str(ports).partition("-")
    if isinstance(ports, str) and low.strip().isdigit() and high.strip().isdigit() and not 1024 <= int(low) < int(high) <= 65535:
        doc.at(("media", "ports"), f"expected a range LOW-HIGH with 1024 <= LOW < HIGH <= 65535, got '{ports}'",
               "two ports per call: e.g. 40000-40999")
    for first, most in (("freeswitch.reconnect_initial_s", "freeswitch.reconnect_max_s"),
                        ("media.rearm_backoff_initial_s", "media.rearm_backoff_max_s")):
        low_s, high_s = _value(doc.data, first), _value(doc.data, most)
        if _number(low_s) and _number(high_s) and low_s > high_s:
            doc.at(tuple(first.split(".")), f"{low_s:g} s is more than {most.split('.')[1]} ({high_s:g} s)",
                   f"the first wait grows up to {most.split('.')[1]}: make it no longer")
    url, secret = _value(doc.data, "handoff.screen_pop.url"), _value(doc.data, "handoff.screen_pop.secret")
    if isinstance(url, str) and url and not secret:
        doc.at(("handoff", "screen_pop", "url"), "a url needs a secret to sign the posts with",
               "add handoff.screen_pop.secret")


MODEL_PATHS = ("asr.model", "asr.accurate", "voice_pack")  # keys naming a model directory: it must exist at load


def _check_model_paths(doc: Doc, base: Path) -> None:
    """A model directory the config names must exist now, not fail at the first call (packaged names pass)."""
    for key in MODEL_PATHS:
        value = _get(doc.data, tuple(key.split(".")))
        if not isinstance(value, str) or not value or (key == "asr.accurate" and value in ACCURATE_MODELS):
            continue
        target = _path(base, value)
        if target is not None and not target.is_dir():
            named = " or ".join(ACCURATE_MODELS)
            hint = f"a packaged model ({named}) or a directory" if key == "asr.accurate" else "the model's directory"
            doc.at(tuple(key.split(".")), f"no such directory: {target}",
                   f"give {hint}, relative to the config file or absolute (see models/README.md)")


def _accurate(data: dict[str, Any], base: Path) -> str | None:
    """``asr.accurate``: a packaged name as written, a directory made absolute, None when set to null (off)."""
    asr = data.get("asr")
    if not isinstance(asr, dict) or "accurate" not in asr:
        return str(_DEFAULTS["asr.accurate"])
    value = asr["accurate"]
    return None if value is None else value if value in ACCURATE_MODELS else str(_path(base, value))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _agents(doc: Doc) -> AgentDirectory:
    """The ``agents:`` section; its problem (one) is added at the key it names."""
    section = _get(doc.data, ("agents",)) if doc.parsed else None
    try:
        return parse_agents(section, doc.file)
    except AgentError as exc:
        match = re.match(r"^.*?: (agents[^\s:]*): (.*)$", str(exc))
        where = _key_path(match.group(1)) if match else ("agents",)
        doc.at(where, match.group(2) if match else str(exc), key=True)
        return parse_agents(None)


def _key_path(dotted: str) -> KeyPath:
    """``agents.list[0].id`` -> ``("agents", "list", 0, "id")``."""
    return tuple(int(part) if part.isdigit() else part for part in re.findall(r"[^.\[\]]+", dotted))


def _path(base: Path, value: Any) -> Path | None:
    if value in (None, ""):
        return None
    p = Path(str(value))
    return p if p.is_absolute() else base / p


def _db(base: Path, value: Any) -> str:
    """A database setting: a URL as written, a path relative to the config file made absolute."""
    text = str(value)
    return text if "://" in text else str(_path(base, text))


def _build(data: dict[str, Any], base: Path, source: str, agents: AgentDirectory) -> EngineConfig:
    """The :class:`EngineConfig` for valid ``data`` (absent keys take the table's defaults)."""
    def v(key: str) -> Any:
        return _value(data, key)

    low, _, high = str(v("media.ports")).partition("-")
    db = str(v("records.db"))
    return EngineConfig(
        esl_host=v("freeswitch.host"), esl_port=v("freeswitch.port"), esl_password=v("freeswitch.password"),
        command_timeout_s=float(v("freeswitch.command_timeout_s")),
        esl_connect_timeout_s=float(v("freeswitch.connect_timeout_s")),
        esl_reconnect_initial_s=float(v("freeswitch.reconnect_initial_s")),
        esl_reconnect_max_s=float(v("freeswitch.reconnect_max_s")),
        outbound_host=v("outbound.host"), outbound_port=v("outbound.port"),
        media_ip=v("media.ip"), media_ports=(int(low), int(high)), media_stall_s=float(v("media.stall_s")),
        rearm_backoff_initial_s=float(v("media.rearm_backoff_initial_s")),
        rearm_backoff_max_s=float(v("media.rearm_backoff_max_s")), rearm_max_failed=v("media.rearm_max_failed"),
        rearm_max_per_window=v("media.rearm_max_per_window"), rearm_window_s=float(v("media.rearm_window_s")),
        default_flow=_path(base, v("flows.default")),
        flows_by_destination={str(k): _path(base, f) or Path() for k, f in (v("flows.by_destination") or {}).items()},
        asr_backend=v("asr.backend"), asr_model=_path(base, v("asr.model")),
        asr_offscript_rejection=v("asr.offscript_rejection"), asr_accurate=_accurate(data, base),
        vad=v("vad.name"), vad_aggressiveness=v("vad.aggressiveness"),
        voice_pack=_path(base, v("voice_pack")), cache_dir=_path(base, v("cache_dir")) or base / ".voicebot-cache",
        records_db=_db(base, db),
        recordings_dir=_path(base, v("records.recordings")) or base / "recordings",
        max_calls=v("limits.max_calls"), busy_prompt=v("limits.busy_prompt"), busy_action=v("limits.busy_action").strip(),
        http_host=v("http.host"), http_port=v("http.port"),
        shutdown_deadline_s=float(v("shutdown_deadline_s")), source=source, handoff=_handoff(v, base), agents=agents,
        campaigns=_campaigns(data, v, base),
    )


def _campaigns(data: dict[str, Any], v: Any, base: Path) -> CampaignsConfig | None:
    """``campaigns:`` (None when the file has no such section)."""
    if "campaigns" not in data:
        return None
    db = _db(base, v("campaigns.db"))
    boxes = tuple(DialBoxConfig(str(b["name"]), str(b["host"]), int(b.get("port", 8021)), str(b.get("password", "ClueCon")),
                                str(b.get("dial", DEFAULT_DIAL))) for b in v("campaigns.boxes") or ())
    return CampaignsConfig(db=db, boxes=boxes, owner=str(v("campaigns.owner")),
                           lease_s=float(v("campaigns.lease_s")), poll_s=float(v("campaigns.poll_s")))


def _handoff(v: Any, base: Path) -> HandoffConfig:
    """``handoff:``: mode, keys, timeouts, whisper and screen-pop."""
    return HandoffConfig(
        mode=v("handoff.mode"), takeover_digit=v("handoff.takeover_digit"),
        ring_timeout_s=float(v("handoff.ring_timeout_s")), max_attempts=v("handoff.max_attempts"),
        whisper=v("handoff.whisper"), whisper_dir=_path(base, v("handoff.whisper_dir")) or HandoffConfig().whisper_dir,
        screen_pop_url=v("handoff.screen_pop.url"), screen_pop_secret=v("handoff.screen_pop.secret"),
        screen_pop_retries=v("handoff.screen_pop.retries"),
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m voicebot.config --markdown``: print docs/configuration.md."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["--markdown"]:
        print("usage: python -m voicebot.config --markdown > docs/configuration.md", file=sys.stderr)
        return 2
    print(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
