"""The ESL and media tuning keys (``freeswitch.connect_timeout_s``, ``freeswitch.reconnect_*``, ``media.stall_s``,
``media.rearm_*``): their defaults are the modules' constants, and a value set in ``voicebot.yaml`` reaches the
component that uses it (the inbound connection's backoff, each call's stall watch, through the FreeSWITCH double)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fsdouble.double import ArrayAudio, FreeSwitchDouble
from tests.engine_support import EngineSetup
from tests.engine_support import wait as gevent_wait
from voicebot.config import ConfigError, EngineConfig, load_config
from voicebot.engine import Engine, inbound_connection, rearm_settings
from voicebot.esl import inbound, stall
from voicebot.esl.inbound import backoff_delay
from voicebot.esl.stall import Decision, RearmSettings

ENGINE = EngineSetup((44460, 44499), {"rearm_max_failed": 2, "rearm_backoff_initial_s": 0.05, "rearm_backoff_max_s": 0.1})
TUNED = """\
freeswitch:
  connect_timeout_s: 1.5
  reconnect_initial_s: 0.1
  reconnect_max_s: 0.4
media:
  stall_s: 0.5
  rearm_backoff_initial_s: 0.1
  rearm_backoff_max_s: 0.3
  rearm_max_failed: 3
  rearm_max_per_window: 7
  rearm_window_s: 30
"""


def load(tmp_path: Path, text: str) -> EngineConfig:
    path = tmp_path / "voicebot.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def test_the_defaults_are_the_modules_constants(tmp_path: Path) -> None:
    config = load(tmp_path, "# nothing set\n")
    connection = inbound_connection(config)
    assert (connection.backoff_initial_s, connection.backoff_max_s) == (inbound.BACKOFF_INITIAL_S, inbound.BACKOFF_MAX_S)
    assert connection.connect_timeout_s == 3.0 == inbound.InboundConnection("h", 1, "p").connect_timeout_s
    assert rearm_settings(config) == RearmSettings()
    assert RearmSettings() == RearmSettings(stall.STALL_S, stall.REARM_BACKOFF_INITIAL_S, stall.REARM_BACKOFF_MAX_S,
                                            stall.REARM_MAX_FAILED, stall.REARM_MAX_PER_WINDOW, stall.REARM_WINDOW_S)


def test_the_reconnect_keys_reach_the_inbound_connection(tmp_path: Path) -> None:
    connection = inbound_connection(load(tmp_path, TUNED))
    assert (connection.connect_timeout_s, connection.backoff_initial_s, connection.backoff_max_s) == (1.5, 0.1, 0.4)
    waits = [backoff_delay(n, initial_s=connection.backoff_initial_s, max_s=connection.backoff_max_s, rand=lambda: 1.0)
             for n in range(1, 8)]
    assert waits == [0.1, 0.2, 0.4, 0.4, 0.4, 0.4, 0.4]


def test_the_rearm_keys_reach_each_calls_policy(tmp_path: Path) -> None:
    settings = rearm_settings(load(tmp_path, TUNED))
    assert settings == RearmSettings(0.5, 0.1, 0.3, 3, 7, 30.0)
    policy, now, waits = settings.policy(), 0.0, []
    while (decision := policy.on_stall(now, flowed=False)) is not Decision.GIVE_UP:
        if decision is Decision.REARM:
            policy.rearmed(now)
            waits.append(round(policy.next_at - now, 3))
        now += 0.01
    assert waits == [0.1, 0.2, 0.3] and "3 re-arms in a row" in policy.reason


@pytest.mark.parametrize(("text", "says"), [
    ("freeswitch: {reconnect_initial_s: 2, reconnect_max_s: 1}", "freeswitch.reconnect_initial_s: 2 s is more than"),
    ("media: {rearm_backoff_initial_s: 3}", "media.rearm_backoff_initial_s: 3 s is more than rearm_backoff_max_s (2 s)"),
    ("media: {rearm_max_failed: 0}", "media.rearm_max_failed"),
    ("media: {stall_s: 0}", "media.stall_s"),
])
def test_a_wrong_value_is_a_problem_at_its_key(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text + "\n")
    assert says in str(caught.value)


def test_a_call_whose_stream_never_comes_back_is_given_up_after_the_configured_rearms(fs: FreeSwitchDouble,
                                                                                     engine: Engine) -> None:
    """``media.rearm_max_failed: 2`` (the module's engine): two re-arms, not the default five, then media_lost."""
    assert engine.config.rearm_max_failed == 2 != stall.REARM_MAX_FAILED
    uuid = fs.place_call(engine.server.port, codec="PCMU", rate=8000, caller=ArrayAudio(np.zeros(8000, np.int16), 8000))
    fs.wait_for(lambda: len(fs.channel(uuid).packets_heard()) > 25, timeout=15, what="the greeting plays")
    fs.cut_media(uuid)
    fs.wait_for(lambda: fs.channel(uuid).hung_up, timeout=20, what="the engine gives the call up")
    assert fs.channel(uuid).cause == "MEDIA_TIMEOUT"
    rearms = [c for c in fs.commands if c == f"api uuid_transfer {uuid} park inline"]
    assert len(rearms) == 2, rearms
    gevent_wait(lambda: engine.metrics.active_calls == 0, 10, "the call released")
