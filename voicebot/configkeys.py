"""Every key of the engine config (``voicebot.yaml``) in one table: its type, default, meaning and an example.

The table is the one source: :func:`json_schema` turns it into the JSON Schema that
:func:`voicebot.config.load_config` validates with, and :func:`markdown` into ``docs/configuration.md``
(``python -m voicebot.config --markdown > docs/configuration.md``; a test fails when the two drift apart).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ACCURATE_MODELS", "ASR_BACKENDS", "KINDS", "SECTIONS", "SETTINGS", "VAD_NAMES", "Setting", "json_schema", "markdown"]

ASR_BACKENDS = ("pocketsphinx", "pocketsphinx-pool", "vosk", "none")  # voicebot.asr.registry.BACKENDS
VAD_NAMES = ("webrtc", "silero")  # voicebot.asr.vad.VAD_NAMES
ACCURATE_MODELS = ("tiny.en", "base")  # voicebot.asr.whisper.PACKAGED: Whisper models installed as packages

# kind -> (JSON Schema, the type in words)
KINDS: dict[str, tuple[dict[str, Any], str]] = {
    "text": ({"type": "string"}, "text"),
    "host": ({"type": "string", "minLength": 1}, "host name or IP address"),
    "port": ({"type": "integer", "minimum": 1, "maximum": 65535}, "port number, 1-65535"),
    "listen_port": ({"type": "integer", "minimum": 0, "maximum": 65535}, "port number, 1-65535; 0: any free port"),
    "count": ({"type": "integer", "minimum": 1}, "whole number, 1 or more"),
    "whole": ({"type": "integer", "minimum": 0}, "whole number, 0 or more"),
    "seconds": ({"type": "number", "exclusiveMinimum": 0}, "seconds, more than 0"),
    "flag": ({"type": "boolean"}, "true or false"),
    "path": ({"type": ["string", "null"]}, "path, relative to the config file; null: not set"),
    "model": ({"type": ["string", "null"], "minLength": 1},
              "a packaged model's name, or a directory relative to the config file; null: off"),
    "db": ({"type": "string", "minLength": 1}, "SQLite file (relative to the config file) or a postgresql:// URL"),
    "choice": ({}, "one of"),
    "ports": ({"type": "string", "pattern": r"^\s*[0-9]+\s*-\s*[0-9]+\s*$",
               "patternErrorMessage": "expected a range like 40000-40999"}, "port range LOW-HIGH"),
    "busy_action": ({"type": "string", "pattern": r"^(prompt|hangup|transfer:\s*\S.*)$",
                     "patternErrorMessage": "expected prompt, hangup or transfer:<extension>"},
                    "prompt, hangup or transfer:EXTENSION"),
    "destinations": ({"type": "object", "additionalProperties": {"type": "string", "minLength": 1}},
                     "mapping of destination number to flow file"),
    "agents": ({"type": "object"}, "mapping: wrap_up_s, list, groups (see below)"),
    "notifications": ({"type": ["object", "null"]}, "mapping: db, sms_gateway, webhooks, retry, sms, webhook"),
    "boxes": ({"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": ["name", "host"],
        "properties": {"name": {"type": "string", "minLength": 1}, "host": {"type": "string", "minLength": 1},
                       "port": {"type": "integer", "minimum": 1, "maximum": 65535}, "password": {"type": "string"},
                       "dial": {"type": "string", "pattern": "[{]number[}]",
                                "patternErrorMessage": "the dial string needs {number}"}}}},
              "list of FreeSWITCH boxes: name, host, port, password, dial"),
}


@dataclass(frozen=True)
class Setting:
    """One config key: ``key`` is its dotted path; ``default`` as YAML shows it (None: not set)."""

    key: str
    kind: str
    default: Any
    meaning: str
    example: str = ""
    choices: tuple[str, ...] = ()
    limits: dict[str, Any] = field(default_factory=dict)  # extra JSON Schema keywords (maximum, ...)

    def schema(self) -> dict[str, Any]:
        """This key's JSON Schema."""
        base, _ = KINDS[self.kind]
        out: dict[str, Any] = {**base, **self.limits, "description": self.meaning}
        if self.choices:
            out["enum"] = list(self.choices)
        return out

    def type_words(self) -> str:
        """The type in words, for the reference."""
        words = KINDS[self.kind][1]
        return f"{words} {', '.join(self.choices)}" if self.choices else words


SECTIONS: dict[str, str] = {
    "freeswitch": "Inbound ESL: how the engine reaches FreeSWITCH's event socket (`event_socket.conf.xml`).",
    "outbound": "Outbound ESL: where FreeSWITCH connects for each call (the dialplan's `socket HOST:PORT async full`).",
    "media": "Where FreeSWITCH and the engine exchange the calls' audio (unicast UDP, two ports per call).",
    "flows": "Which call flow answers a call.",
    "asr": "Speech recognition.",
    "vad": "Voice activity detection (when the caller speaks).",
    "records": "Call records and recordings.",
    "limits": "How many calls at once, and what callers over the limit hear.",
    "http": "The HTTP endpoint with `/health` and `/metrics` (Prometheus).",
    "handoff": "How calls reach human agents.",
    "handoff.screen_pop": "The signed POST that shows the caller's details on the agent's screen.",
    "campaigns": "Outbound campaigns run inside `voicebot serve` when this section is present (docs/campaigns.md).",
}

_BUSY = "All our advisors are busy right now. We will call you back. Goodbye."
SETTINGS: tuple[Setting, ...] = (
    Setting("freeswitch.host", "host", "127.0.0.1", "FreeSWITCH's inbound event socket host.", "10.0.0.5"),
    Setting("freeswitch.port", "port", 8021, "FreeSWITCH's inbound event socket port.", "8021"),
    Setting("freeswitch.password", "text", "ClueCon", "The event socket password, the same as in event_socket.conf.xml.",
            "s3cret-pass"),
    Setting("freeswitch.command_timeout_s", "seconds", 5.0, "How long an ESL command may take before it fails.", "5"),
    Setting("freeswitch.connect_timeout_s", "seconds", 3.0, "How long one attempt to connect to the event socket may take.",
            "3"),
    Setting("freeswitch.reconnect_initial_s", "seconds", 0.25,
            "After the connection is lost, the wait before the first reconnect attempt; it doubles on each failed "
            "attempt up to reconnect_max_s, each wait jittered into its second half.", "0.5"),
    Setting("freeswitch.reconnect_max_s", "seconds", 1.5,
            "The longest wait between reconnect attempts; calls FreeSWITCH sends meanwhile are lost, so keep it short.",
            "2"),
    Setting("outbound.host", "host", "127.0.0.1", "The address the engine listens on for FreeSWITCH's outbound connections.",
            "127.0.0.1"),
    Setting("outbound.port", "listen_port", 8084, "The port for FreeSWITCH's outbound connections.", "8084"),
    Setting("media.ip", "host", "127.0.0.1", "The engine's address for the calls' unicast UDP audio.", "127.0.0.1"),
    Setting("media.ports", "ports", "40000-40999", "UDP ports for audio (1024-65535); two per call.", "40000-40999"),
    Setting("media.stall_s", "seconds", 0.2,
            "A call's stream is taken for stalled (and re-armed) when no caller audio arrived for this long.", "0.5"),
    Setting("media.rearm_backoff_initial_s", "seconds", 0.25,
            "After a re-arm that did not bring the stream back, the wait before the next; it doubles up to "
            "rearm_backoff_max_s.", "0.5"),
    Setting("media.rearm_backoff_max_s", "seconds", 2.0, "The longest wait between re-arms of a stalled stream.", "4"),
    Setting("media.rearm_max_failed", "count", 5,
            "Re-arms in a row that brought no audio before the call is hung up (cause media_lost).", "3"),
    Setting("media.rearm_max_per_window", "count", 10,
            "Re-arms within rearm_window_s before the call is hung up, even if each briefly worked.", "20"),
    Setting("media.rearm_window_s", "seconds", 60.0, "The window rearm_max_per_window counts in.", "120"),
    Setting("flows.default", "path", None, "The flow for calls whose destination has no flow of its own.",
            "flows/lead_screening_en.yaml"),
    Setting("flows.by_destination", "destinations", {}, "A flow per destination number.",
            '{"7000": flows/lead_screening_en.yaml}'),
    Setting("asr.backend", "choice", "pocketsphinx-pool",
            "The recognizer. pocketsphinx-pool decodes in one worker process per core, warmed before the first call; "
            "pocketsphinx decodes in the engine's process, where it holds the GIL (8 calls already stall each other's audio). "
            "Both hear English only: a flow in another language gets none (no streaming words; turns end on silence and "
            "the accurate pass hears them) unless vosk with a model of that language is set.",
            "pocketsphinx",
            choices=ASR_BACKENDS),
    Setting("asr.model", "path", None, "The ASR model directory (null: the backend's default model).", "models/vosk-en"),
    Setting("asr.accurate", "model", "base",
            "The accurate pass (a second, Whisper hearing of a turn) for nodes with listen.asr accurate or auto, run in "
            "worker processes: base (multilingual, the default), tiny.en (English, faster), or a CTranslate2 Whisper "
            "model directory; null: off, every turn is heard by the streaming recognizer alone.",
            "models/whisper-small-ct2"),
    Setting("asr.offscript_rejection", "flag", True,
            "Reject off-script speech with a phone loop (pocketsphinx); false halves the ASR CPU but forces more "
            "off-script speech onto an intent.", "false"),
    Setting("vad.name", "choice", "webrtc", "The voice activity detector.", "silero", choices=VAD_NAMES),
    Setting("vad.aggressiveness", "whole", 2, "webrtc only: 0 (lenient) to 3 (strict about what is speech).", "3",
            limits={"maximum": 3}),
    Setting("voice_pack", "path", None, "The agent's voice pack directory (null: the default Piper voice).", "voices/sam"),
    Setting("cache_dir", "path", ".voicebot-cache", "Where rendered prompts are cached.", "/var/cache/voicebot"),
    Setting("records.db", "db", "voicebot-calls.sqlite", "Where call records go.",
            "postgresql://voicebot@127.0.0.1/voicebot"),
    Setting("records.recordings", "path", "recordings", "The folder for call recordings.", "/var/lib/voicebot/recordings"),
    Setting("limits.max_calls", "count", 20, "Calls handled at once; more get the busy action.", "40"),
    Setting("limits.busy_prompt", "text", _BUSY, "What a caller over the limit hears (busy_action prompt).",
            '"Please call back later."'),
    Setting("limits.busy_action", "busy_action", "prompt",
            "prompt: say busy_prompt, then USER_BUSY; hangup: USER_BUSY at once; transfer:EXT: send the call to EXT.",
            "transfer:7999"),
    Setting("http.host", "host", "127.0.0.1", "The address of /health and /metrics.", "127.0.0.1"),
    Setting("http.port", "listen_port", 8090, "The port of /health and /metrics.", "8090"),
    Setting("agents", "agents", None, "Human agents and their groups.", "{list: [{id: sam, endpoint: user/1001}]}"),
    Setting("handoff.mode", "choice", "talk",
            "talk: the agent listens in, then takes over gap-free (eavesdrop); bridge: uuid_bridge, frees the bot's media.",
            "bridge", choices=("talk", "bridge")),
    Setting("handoff.takeover_digit", "choice", "2",
            "The key a listening agent presses to take the call (eavesdrop: 2 talk, 3 three-way).", '"3"',
            choices=("2", "3")),
    Setting("handoff.ring_timeout_s", "seconds", 20.0, "How long an agent's phone rings before the next agent is tried.",
            "15"),
    Setting("handoff.max_attempts", "count", 3, "Agents tried per handoff.", "5"),
    Setting("handoff.whisper", "flag", True, "Play the agent a spoken summary before they listen in.", "false"),
    Setting("handoff.whisper_dir", "path", "/tmp/voicebot-whisper",
            "Where whisper WAVs go; FreeSWITCH must be able to read them.", "/var/lib/voicebot/whisper"),
    Setting("handoff.screen_pop.url", "text", "", "Where to POST the caller's details (empty: no screen pop).",
            '"http://127.0.0.1:9000/lead"'),
    Setting("handoff.screen_pop.secret", "text", "", "The key that signs each post; needed with a url.", "CHANGE-ME"),
    Setting("handoff.screen_pop.retries", "whole", 4, "How often a failed post is retried.", "4"),
    Setting("notifications", "notifications", None,
            "What a flow's notify: sends (SMS gateway, webhooks, message templates): see docs/notifications.md.",
            '{sms_gateway: {url: "http://127.0.0.1:9100/sms", secret: CHANGE-ME}, '
            'sms: {call_outcome: {to: "{{caller}}", text: "Thanks"}}}'),
    Setting("campaigns.db", "db", "voicebot-campaigns.sqlite",
            "The campaign database (campaigns, leads, attempts); `voicebot campaign` commands use it too.",
            "postgresql://voicebot@127.0.0.1/voicebot"),
    Setting("campaigns.boxes", "boxes", [],
            "FreeSWITCH boxes to dial through (the one with the most free sessions first); empty: the freeswitch "
            "section's, dialing sofia/gateway/trunk/{number}.",
            '[{name: fs1, host: 10.0.0.5, port: 8021, password: s3cret, dial: "sofia/gateway/trunk/{number}"}]'),
    Setting("campaigns.owner", "text", "", "This engine's name in leads' leases (a per-start suffix is added); "
            "empty: host name and process id.", "engine-a"),
    Setting("campaigns.lease_s", "seconds", 60.0, "How long a lead stays leased to this engine without renewal; "
            "a dead engine's leads return to the others after this.", "30"),
    Setting("campaigns.poll_s", "seconds", 2.0, "How often campaign statuses are read and due leads claimed.", "5"),
    Setting("shutdown_deadline_s", "seconds", 30.0, "On stop, how long calls in progress may go on before they are ended.",
            "60"),
)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of ``voicebot.yaml``, built from :data:`SETTINGS`."""
    root: dict[str, Any] = _object("The engine configuration (voicebot.yaml).")
    root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    for setting in SETTINGS:
        node = root
        parts = setting.key.split(".")
        for depth, part in enumerate(parts[:-1]):
            section = ".".join(parts[: depth + 1])
            node = node["properties"].setdefault(part, _object(SECTIONS.get(section, "")))
        node["properties"][parts[-1]] = setting.schema()
    return root


def _object(description: str) -> dict[str, Any]:
    """A mapping with known keys only (an empty value counts as an empty mapping)."""
    return {"type": ["object", "null"], "description": description, "additionalProperties": False, "properties": {}}


def markdown() -> str:
    """``docs/configuration.md``: every key with its type, default, meaning and an example."""
    out = [
        "# Configuration reference (`voicebot.yaml`)",
        "",
        "<!-- Generated from voicebot/configkeys.py by `python -m voicebot.config --markdown > docs/configuration.md`;",
        "     tests/test_config.py fails when this file and the table differ. Edit the table, not this file. -->",
        "",
        "`voicebot serve --config voicebot.yaml` reads this file. Every key is optional: the defaults run against a",
        "FreeSWITCH on the same machine. Relative paths are relative to the config file. Problems are reported all at",
        "once, each as `file:line:column: error: key.path: message (hint: ...)`, with a did-you-mean for unknown keys.",
        "",
        "```yaml",
        "freeswitch:",
        "  host: 127.0.0.1",
        "  password: s3cret-pass",
        "flows:",
        "  default: flows/lead_screening_en.yaml",
        "limits: {max_calls: 40, busy_action: hangup}",
        "```",
    ]
    groups: dict[str, list[Setting]] = {}
    for setting in SETTINGS:
        groups.setdefault(setting.key.rsplit(".", 1)[0] if "." in setting.key else "", []).append(setting)
    for section, settings in groups.items():
        out += ["", f"## `{section}`" if section else "## Top-level keys", ""]
        if section in SECTIONS:
            out += [SECTIONS[section], ""]
        out += ["| key | type | default | meaning | example |", "| --- | --- | --- | --- | --- |"]
        out += [_row(setting) for setting in settings]
    out += ["", "## The `agents` section", "", "```yaml", *_AGENTS_EXAMPLE, "```", ""]
    return "\n".join(out)


def _row(setting: Setting) -> str:
    """One table row of the reference."""
    return (f"| `{setting.key}` | {setting.type_words()} | {_yaml(setting.default)} | {setting.meaning} | "
            f"`{setting.key.rsplit('.', 1)[-1]}: {setting.example}` |")


def _yaml(value: Any) -> str:
    """A default as YAML shows it, in code style."""
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, dict):
        return "`{}`"
    if isinstance(value, str):
        return f'`"{value}"`' if value == "" or not value.replace("-", "").replace(".", "").isalnum() else f"`{value}`"
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


_AGENTS_EXAMPLE = [
    "agents:",
    "  wrap_up_s: 5                 # seconds an agent stays in WRAP_UP after a talk ends (default 5)",
    "  list:                        # id, name (default: the id), endpoint (a FreeSWITCH dial string),",
    "                               # voice (voice pack directory), skills, available (default true)",
    "    - {id: sam, name: Sam Lee, endpoint: user/1001, voice: voices/sam, skills: [en, mortgages]}",
    '    - {id: ana, name: Ana, endpoint: "sofia/gateway/pbx/2002"}',
    "  groups:                      # strategy: longest_idle (default), round_robin or skill",
    "    advisors: {agents: [sam, ana], strategy: longest_idle}",
    "    spanish: {agents: [ana], strategy: skill, skills: [es]}",
]
