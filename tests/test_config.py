"""Tests for the engine config: one table gives the schema, the defaults and docs/configuration.md; every problem at once."""

from __future__ import annotations

import dataclasses
import re
import tempfile
import textwrap
from pathlib import Path

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.config import (
    MODEL_PATHS,
    CampaignsConfig,
    ConfigError,
    DialBoxConfig,
    EngineConfig,
    HandoffConfig,
    load_config,
    main,
)
from voicebot.configkeys import ACCURATE_MODELS, ASR_BACKENDS, SETTINGS, VAD_NAMES, Setting, json_schema, markdown

ROOT = Path(__file__).resolve().parent.parent

# table key -> the EngineConfig (or HandoffConfig, "handoff.") field it sets
FIELDS = {
    "freeswitch.host": "esl_host", "freeswitch.port": "esl_port", "freeswitch.password": "esl_password",
    "freeswitch.command_timeout_s": "command_timeout_s", "freeswitch.connect_timeout_s": "esl_connect_timeout_s",
    "freeswitch.reconnect_initial_s": "esl_reconnect_initial_s", "freeswitch.reconnect_max_s": "esl_reconnect_max_s",
    "outbound.host": "outbound_host", "outbound.port": "outbound_port", "media.ip": "media_ip", "media.ports": "media_ports",
    "media.stall_s": "media_stall_s", "media.rearm_backoff_initial_s": "rearm_backoff_initial_s",
    "media.rearm_backoff_max_s": "rearm_backoff_max_s", "media.rearm_max_failed": "rearm_max_failed",
    "media.rearm_max_per_window": "rearm_max_per_window", "media.rearm_window_s": "rearm_window_s",
    "flows.default": "default_flow", "flows.by_destination": "flows_by_destination", "asr.backend": "asr_backend",
    "asr.model": "asr_model", "asr.accurate": "asr_accurate", "asr.offscript_rejection": "asr_offscript_rejection",
    "vad.name": "vad",
    "vad.aggressiveness": "vad_aggressiveness", "voice_pack": "voice_pack", "cache_dir": "cache_dir",
    "records.db": "records_db", "campaigns.db": "campaigns.db", "records.recordings": "recordings_dir",
    "limits.max_calls": "max_calls",
    "limits.busy_prompt": "busy_prompt", "limits.busy_action": "busy_action", "http.host": "http_host",
    "http.port": "http_port", "agents": "agents", "notifications": "notifications", "shutdown_deadline_s": "shutdown_deadline_s",
    "handoff.mode": "handoff.mode", "handoff.takeover_digit": "handoff.takeover_digit",
    "handoff.ring_timeout_s": "handoff.ring_timeout_s", "handoff.max_attempts": "handoff.max_attempts",
    "handoff.whisper": "handoff.whisper", "handoff.whisper_dir": "handoff.whisper_dir",
    "handoff.screen_pop.url": "handoff.screen_pop_url", "handoff.screen_pop.secret": "handoff.screen_pop_secret",
    "handoff.screen_pop.retries": "handoff.screen_pop_retries",
    "campaigns.boxes": "campaigns.boxes", "campaigns.owner": "campaigns.owner",
    "campaigns.lease_s": "campaigns.lease_s", "campaigns.poll_s": "campaigns.poll_s",
}


def problems(tmp_path: Path, text: str) -> list[str]:
    """The lines of the ConfigError for config ``text`` (it must fail), with the file name shortened."""
    path = tmp_path / "voicebot.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value).replace(str(path), "voicebot.yaml").splitlines()


# --- the messages --------------------------------------------------------------------------


def test_unknown_keys_get_a_did_you_mean_at_their_line_and_column(tmp_path: Path) -> None:
    assert problems(tmp_path, "freeswitch:\n  host: 127.0.0.1\n  pasword: x\noutbund: {port: 8084}\n") == [
        "voicebot.yaml:3:3: error: freeswitch.pasword: unknown key 'pasword' (hint: did you mean 'password'?)",
        "voicebot.yaml:4:1: error: outbund: unknown key 'outbund' (hint: did you mean 'outbound'?)",
    ]


def test_a_wrong_type_is_reported_in_plain_words_at_the_value(tmp_path: Path) -> None:
    assert problems(tmp_path, "\nfreeswitch:\n  port: five\n") == [
        "voicebot.yaml:3:9: error: freeswitch.port: expected a whole number, got string 'five'"]


def test_bad_yaml_names_the_file_and_the_place_in_plain_words(tmp_path: Path) -> None:
    [line] = problems(tmp_path, "freeswitch:\n  host: 127.0.0.1\n\tport: 8021\n")
    assert line.startswith("voicebot.yaml:3:1: error: invalid YAML: a tab is used for indentation")
    assert "<unicode string>" not in line
    [quote] = problems(tmp_path, 'limits:\n  busy_prompt: "Sorry, we are busy.\n  max_calls: 5\nhttp: {port: 8090}\n')
    assert quote.startswith('voicebot.yaml:2:16: error: invalid YAML: this quote (") is never closed')
    [duplicate] = problems(tmp_path, "http: {port: 8090}\nhttp: {port: 8091}\n")
    assert duplicate == "voicebot.yaml:2:1: error: http: duplicate key 'http' (hint: 'http' is already defined at line 1)"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = ("freeswitch: {port: five, pasword: x}\nmedia: {ports: 40999-40000}\nlimits: {busy_action: play}\n"
            "handoff: {mode: transfer, screen_pop: {url: 'http://127.0.0.1:9/x'}}\nagents: {list: [{id: sam}]}\n")
    found = [re.sub(r" \(hint: .*\)$", "", line) for line in problems(tmp_path, text)]
    assert found == [
        "voicebot.yaml:1:20: error: freeswitch.port: expected a whole number, got string 'five'",
        "voicebot.yaml:1:26: error: freeswitch.pasword: unknown key 'pasword'",
        "voicebot.yaml:2:16: error: media.ports: expected a range LOW-HIGH with 1024 <= LOW < HIGH <= 65535, got '40999-40000'",
        "voicebot.yaml:3:23: error: limits.busy_action: bad value 'play': expected prompt, hangup or transfer:<extension>",
        "voicebot.yaml:4:17: error: handoff.mode: must be one of: talk, bridge (got 'transfer')",
        "voicebot.yaml:4:45: error: handoff.screen_pop.url: a url needs a secret to sign the posts with",
        "voicebot.yaml:5:17: error: agents.list[0].endpoint: missing",
    ]


def test_a_model_directory_that_does_not_exist_is_named_at_its_key(tmp_path: Path) -> None:
    """At load, not at the first call: every missing model directory, with its line, key and the path looked for."""
    (tmp_path / "models" / "vosk-en").mkdir(parents=True)
    text = "asr:\n  model: models/vosk-en\n  accurate: models/whisper-small\nvoice_pack: voices/sam\n"
    found = [re.sub(r" \(hint: .*\)$", "", line) for line in problems(tmp_path, text)]
    assert found == [
        f"voicebot.yaml:3:13: error: asr.accurate: no such directory: {tmp_path.resolve()}/models/whisper-small",
        f"voicebot.yaml:4:13: error: voice_pack: no such directory: {tmp_path.resolve()}/voices/sam",
    ]


def test_the_accurate_pass_is_base_by_default_a_packaged_name_a_directory_or_off(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.yaml"
    (tmp_path / "models" / "whisper-small").mkdir(parents=True)
    for text, expected in (("", "base"), ("asr: {accurate: tiny.en}", "tiny.en"), ("asr: {accurate: null}", None),
                           ("asr: {accurate: models/whisper-small}", str(tmp_path.resolve() / "models" / "whisper-small"))):
        path.write_text(text + "\n", encoding="utf-8")
        assert load_config(path).asr_accurate == expected, text


def test_numbers_are_text_where_the_key_takes_text(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.yaml"
    path.write_text("freeswitch: {password: 0123}\nhandoff: {takeover_digit: 3}\n", encoding="utf-8")
    config = load_config(path)
    assert (config.esl_password, config.handoff.takeover_digit) == ("0123", "3")


def test_an_unreadable_config_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "voicebot.yaml").write_bytes(b"\xff\xfe\x00garbage")
    [line] = _unreadable(tmp_path)
    assert line.startswith("voicebot.yaml:1:1: error: cannot read the config file")


def _unreadable(tmp_path: Path) -> list[str]:
    path = tmp_path / "voicebot.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value).replace(str(path), "voicebot.yaml").splitlines()


# --- one table: the defaults, the schema and the reference -------------------------------------


def _field(config: EngineConfig, name: str) -> object:
    section, _, key = name.partition(".")
    if not key:
        return getattr(config, name)
    holder = getattr(config, section)
    return getattr(CampaignsConfig() if holder is None and section == "campaigns" else holder, key)


def test_every_table_key_sets_one_field_and_every_field_has_a_key() -> None:
    assert sorted(FIELDS) == sorted(s.key for s in SETTINGS)
    fields = {f.name for f in dataclasses.fields(EngineConfig)} - {"handoff", "source", "campaigns"}
    handoff = {"handoff." + f.name for f in dataclasses.fields(HandoffConfig)}
    campaigns = {"campaigns." + f.name for f in dataclasses.fields(CampaignsConfig)}
    assert sorted(FIELDS.values()) == sorted(fields | handoff | campaigns)


def test_an_empty_config_gives_the_dataclass_defaults(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.yaml"
    path.write_text("# nothing set\n", encoding="utf-8")
    loaded, default = load_config(path), EngineConfig()
    relative = {"cache_dir", "records_db", "recordings_dir"}  # relative to the config file once loaded
    assert loaded.campaigns is None  # no campaigns: section, no campaigns run (its keys read as the defaults)
    for key, name in FIELDS.items():
        want = _field(default, name)
        want = str(tmp_path / str(want)) if name in relative else want
        got = _field(loaded, name)
        assert (str(got) if name in relative else got) == want, key


def test_the_table_defaults_are_the_dataclass_defaults() -> None:
    default = EngineConfig()
    as_yaml: dict[str, object] = {"media_ports": "40000-40999", "agents": None, "notifications": None,
                                  "flows_by_destination": {}, "campaigns.boxes": []}
    for setting in SETTINGS:
        name = FIELDS[setting.key]
        want = as_yaml.get(name, _field(default, name))
        got = setting.default
        assert str(got) == str(want) if isinstance(want, Path) else got == want, setting.key


def test_the_schema_is_a_valid_draft_2020_12_schema_with_every_key() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    for setting in SETTINGS:
        node = schema
        for part in setting.key.split("."):
            node = node["properties"][part]
        assert node["description"] == setting.meaning


def test_the_choices_match_the_engine() -> None:
    from voicebot.asr.registry import BACKENDS
    from voicebot.asr.vad import VAD_NAMES as ENGINE_VADS
    from voicebot.asr.whisper import PACKAGED

    assert sorted(ASR_BACKENDS) == sorted(BACKENDS)
    assert VAD_NAMES == ENGINE_VADS
    assert sorted(ACCURATE_MODELS) == sorted(PACKAGED)


def test_docs_configuration_md_is_generated_from_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == markdown() + "\n", "regenerate: python -m voicebot.config --markdown > docs/configuration.md"
    assert main(["--markdown"]) == 0
    assert capsys.readouterr().out == committed
    for setting in SETTINGS:
        assert f"| `{setting.key}` |" in committed


def test_the_config_examples_in_the_docs_load(tmp_path: Path) -> None:
    blocks = []
    for doc in ("README.md", "docs/freeswitch.md", "docs/configuration.md"):
        text = (ROOT / doc).read_text(encoding="utf-8")
        found = re.findall(r"```yaml\n(.*?)```", text, re.S)
        blocks += [b for b in found if re.search(r"^\s*(freeswitch|handoff|agents):", b, re.M)]
    assert blocks
    for block in blocks:
        path = tmp_path / "voicebot.yaml"
        path.write_text(textwrap.dedent(block), encoding="utf-8")
        load_config(path)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.key)
def test_every_example_in_the_reference_is_valid(setting: Setting, tmp_path: Path) -> None:
    parts = setting.key.split(".")
    text = "".join(f"{'  ' * depth}{part}:\n" for depth, part in enumerate(parts[:-1]))
    text += f"{'  ' * (len(parts) - 1)}{parts[-1]}: {setting.example}\n"
    if setting.key == "handoff.screen_pop.url":
        text += "    secret: s\n"
    if setting.key in MODEL_PATHS and setting.example not in ACCURATE_MODELS:
        (tmp_path / setting.example).mkdir(parents=True)  # a model directory must exist
    path = tmp_path / "voicebot.yaml"
    path.write_text(text, encoding="utf-8")
    load_config(path)


_CONFIG_LINES = ["freeswitch:", "  host: 127.0.0.1", "  port: 8021", "media: {ports: 40000-40999}", "limits:",
                 "  max_calls: 5", "handoff: {mode: talk, screen_pop: {url: x, secret: y}}", "agents:", "  list:",
                 "    - {id: sam, endpoint: user/1001}", "\t", "'", '"', "[", "{", ": x", "- y", "  ", "#"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_CONFIG_LINES), max_size=12), st.text(max_size=40))
def test_any_config_text_gives_a_config_or_problems_never_a_traceback(lines: list[str], noise: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "voicebot.yaml"
        path.write_text("\n".join(lines) + noise, encoding="utf-8")
        try:
            load_config(path)
        except ConfigError as exc:
            assert exc.problems and all(p.line >= 1 and p.column >= 1 for p in exc.problems)


def test_a_campaigns_section_runs_campaigns_with_its_boxes(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.yaml"
    path.write_text("campaigns:\n  db: c.sqlite\n  owner: engine-a\n  boxes:\n"
                    "    - {name: fs1, host: 10.0.0.5, password: pw, dial: 'sofia/gateway/t1/{number}'}\n"
                    "    - {name: fs2, host: 10.0.0.6, port: 8022}\n", encoding="utf-8")
    campaigns = load_config(path).campaigns
    assert campaigns == CampaignsConfig(db=str(tmp_path / "c.sqlite"), owner="engine-a", boxes=(
        DialBoxConfig("fs1", "10.0.0.5", 8021, "pw", "sofia/gateway/t1/{number}"), DialBoxConfig("fs2", "10.0.0.6", 8022)))
    (tmp_path / "none.yaml").write_text("limits: {max_calls: 3}\n", encoding="utf-8")
    assert load_config(tmp_path / "none.yaml").campaigns is None  # no section: no campaigns run
    assert problems(tmp_path, "campaigns:\n  boxes: [{name: fs1, host: h, dial: sofia/gateway/t1}]\n") == [
        "voicebot.yaml:2:38: error: campaigns.boxes[0].dial: bad value 'sofia/gateway/t1': the dial string needs {number}"]


def test_with_campaigns_the_outbox_is_the_campaign_database(tmp_path: Path) -> None:
    assert problems(tmp_path, "campaigns: {db: c.sqlite}\nnotifications: {db: other.sqlite}\n") == [
        "voicebot.yaml:2:21: error: notifications.db: with campaigns, the outbox must be the campaign database "
        "(hint: remove notifications.db, or set it to campaigns.db)"]
    (tmp_path / "same.yaml").write_text("campaigns: {db: c.sqlite}\nnotifications: {db: c.sqlite}\n", encoding="utf-8")
    assert load_config(tmp_path / "same.yaml").notifications.db == str(tmp_path / "c.sqlite")


def test_the_campaign_database_is_found_beside_the_config(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.yaml"
    path.write_text("campaigns: {db: leads.sqlite}\n", encoding="utf-8")
    campaigns = load_config(path).campaigns
    assert campaigns is not None and campaigns.db == str(tmp_path / "leads.sqlite")
