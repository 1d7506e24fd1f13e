"""The handoff's small parts: the hub inbox, the whisper, figures, setup decisions, the config section."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import gevent
import numpy as np
import pytest

from tests.dialog_fixtures import screening_flow
from voicebot.audio.wav import read_wav
from voicebot.config import ConfigError, load_config
from voicebot.esl.handoff import HandoffFigures, _cause
from voicebot.esl.hub import HubInbox
from voicebot.handoff.agents import parse_agents
from voicebot.handoff.setup import agent_voices, handoff_group
from voicebot.handoff.whisper import whisper_text, write_whisper

AGENTS = {
    "list": [{"id": "sam", "name": "Sam", "endpoint": "user/1001", "voice": "voices/sam"},
             {"id": "ana", "name": "Ana", "endpoint": "user/1002"}],
    "groups": {"sales": {"agents": ["sam", "ana"]}},
}


def test_hub_inbox_wakes_a_greenlet_from_a_native_thread_at_once() -> None:
    inbox: HubInbox[float] = HubInbox()
    got: list[tuple[float | None, float]] = []

    def take() -> None:
        item = inbox.get(timeout=5)
        got.append((item, time.monotonic()))

    waiter = gevent.spawn(take)
    gevent.sleep(0.05)
    threading.Thread(target=lambda: inbox.put(time.monotonic())).start()
    waiter.join(timeout=5)
    assert got and got[0][0] is not None
    assert got[0][1] - got[0][0] < 0.02, "woken within 20 ms, not on a poll"
    assert inbox.get(timeout=0.01) is None
    inbox.close()
    inbox.put(1.0)
    assert inbox.get(timeout=0.01) is None, "closed: puts are dropped"


def test_whisper_text_says_who_level_tags_and_the_last_words() -> None:
    snapshot = {"level": "A", "tags": ["hot_lead", "whatsapp"], "transcript": ["yes speaking", "", "I want the plan"],
                "variables": {"customer_name": "Alex"}}
    text = whisper_text(snapshot)
    assert text == "Lead: Alex. level A. tags: hot lead, whatsapp. they said: yes speaking; I want the plan."
    assert whisper_text({}) == "New lead."
    assert whisper_text({"level": "B"}, "zh") == "新客户。意向等级B。"


def test_whisper_is_written_as_a_wav_at_the_rate_asked(tmp_path: Path) -> None:
    def render(template: str, values: dict[str, str], rate: int) -> list[np.ndarray]:
        assert template == "{{whisper}}" and values == {"whisper": "hello"}
        return [np.full(rate // 10, 1000, np.int16), np.full(rate // 10, -1000, np.int16)]

    path = tmp_path / "sub" / "w.wav"
    write_whisper(render, "hello", path, 8000)  # type: ignore[arg-type]
    audio, rate = read_wav(path)
    assert rate == 8000 and len(audio) == 1600 and audio[0] == 1000 and audio[-1] == -1000


def test_figures_are_empty_without_a_handoff_and_measure_decision_to_connect() -> None:
    assert HandoffFigures().to_dict() == {}
    figures = HandoffFigures(group="sales", prepare_at=1.0, transfer_at=10.0, connected_at=10.027)
    data = figures.to_dict()
    assert data["handoff_ms"] == 27.0 and data["group"] == "sales"


def test_originate_errors_name_their_cause() -> None:
    assert _cause("originate: -ERR USER_BUSY") == "USER_BUSY"
    assert _cause("job x: -ERR NO_ANSWER\n") == "NO_ANSWER"
    assert _cause("timed out") == "originate_failed"


def test_the_flows_group_and_the_voices_to_render() -> None:
    flow = screening_flow()
    assert handoff_group(flow) == "sales"  # from the transfer node
    directory = parse_agents(AGENTS)
    assert agent_voices(directory, flow) == [Path("voices/sam")]
    assert agent_voices(parse_agents(None), flow) == []


def test_handoff_config_section(tmp_path: Path) -> None:
    path = tmp_path / "voicebot.yaml"
    path.write_text("handoff: {mode: bridge, takeover_digit: '3', screen_pop: {url: 'http://127.0.0.1:9/x', secret: s}}\n"
                    "agents:\n  list: [{id: sam, name: Sam, endpoint: user/1001}]\n  groups: {sales: {agents: [sam]}}\n")
    config = load_config(path)
    handoff = config.handoff
    assert (handoff.mode, handoff.takeover_digit, handoff.screen_pop_url) == ("bridge", "3", "http://127.0.0.1:9/x")
    assert list(config.agents.groups) == ["sales"]
    path.write_text("\n\nhandoff: {mode: transfer}\n")
    with pytest.raises(ConfigError, match=r"voicebot.yaml:3:17: error: handoff.mode: must be one of: talk, bridge"):
        load_config(path)
    path.write_text("handoff: {screen_pop: {url: 'http://127.0.0.1:9/x'}}\n")
    with pytest.raises(ConfigError, match="a url needs a secret"):
        load_config(path)


def test_the_bot_speaks_as_the_agent_the_call_will_most_likely_reach() -> None:
    from voicebot.config import EngineConfig
    from voicebot.engine import Engine
    from voicebot.handoff.agents import AgentPool

    directory = parse_agents(AGENTS)
    engine = Engine(EngineConfig(agents=directory))
    engine.agents = AgentPool(directory, 0.0)
    flow = screening_flow()
    assert engine._voice_agent(flow) == ("sam", Path("voices/sam"))
    engine.agents.reserve("sales", "other-call", 1.0)  # sam is busy: ana (no pack of her own) is next
    assert engine._voice_agent(flow) == ("ana", None)
