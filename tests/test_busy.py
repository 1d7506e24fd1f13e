"""The busy prompt as audio: a call over ``max_calls`` hears the prompt and is hung up with USER_BUSY."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fsdouble.double import FreeSwitchDouble, Silence
from tests.engine_support import EngineSetup
from voicebot.call import CallSession
from voicebot.config import ConfigError, EngineConfig, load_config
from voicebot.engine import Engine
from voicebot.esl.busy import MAX_PROMPT_S, BusyPrompt
from voicebot.esl.protocol import media_format

SPEECH_DBFS = -45.0  # a 20 ms frame louder than this is speech, not line silence

ENGINE = EngineSetup((42400, 42449), {"max_calls": 1}, wait_up=False)


def test_the_busy_prompt_is_the_default_busy_action(engine: Engine) -> None:
    assert engine.config.busy_action == "prompt"


def frame_levels(pcm: bytes, rate: int = 8000) -> np.ndarray:
    """dBFS of each 20 ms frame of s16le ``pcm``."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    n = len(samples) // (rate // 50)
    frames = samples[: n * (rate // 50)].reshape(n, rate // 50)
    return np.asarray(20 * np.log10(np.sqrt(np.mean(frames * frames, axis=1)) / 32768 + 1e-12))


def test_a_call_over_the_limit_hears_the_busy_prompt_and_the_first_call_goes_on(fs: FreeSwitchDouble,
                                                                                 engine: Engine) -> None:
    sessions: list[CallSession] = []
    engine.on_session = sessions.append
    prompt = engine.busy_prompt
    assert prompt is not None and 2.0 < prompt.duration_s <= MAX_PROMPT_S

    first = fs.place_call(engine.server.port, codec="PCMU", rate=8000, caller=Silence())
    fs.wait_for(lambda: fs.channel(first).unicast_active, timeout=10, what="the first call's unicast")
    second = fs.place_call(engine.server.port, codec="PCMU", rate=8000, caller=Silence())
    fs.wait_for(lambda: fs.channel(second).hung_up, timeout=15, what="the busy call is hung up")
    fs.assert_no_crash()

    busy = fs.channel(second)
    assert busy.cause == "USER_BUSY" and busy.answered
    assert any(line.startswith("started") for line in busy.unicast_log), busy.unicast_log
    levels = frame_levels(busy.heard_audio())
    loud_s = float(np.count_nonzero(levels > SPEECH_DBFS)) * 0.02
    heard_s = len(levels) * 0.02
    assert 0.6 * prompt.duration_s <= loud_s <= prompt.duration_s + 0.1, (loud_s, prompt.duration_s)
    assert heard_s <= prompt.duration_s + 0.5, "nothing but the prompt is sent"
    assert (busy.hangup_us - busy.answered_us) / 1e6 < prompt.duration_s + 1.5, "a busy call stays short"
    assert len(sessions) == 1, "no session (VAD, ASR, dialog) is made for the busy call"
    assert engine.metrics.rejected == 1

    caller = fs.channel(first)
    assert not caller.hung_up and caller.unicast_active, "the first call is unaffected"
    fs.press(first, "2")  # the first call still converses: wrong person, goodbye
    fs.wait_for(lambda: fs.channel(first).hung_up, timeout=30, what="the first call ends normally")
    fs.wait_for(lambda: engine.metrics.active_calls == 0, timeout=5, what="the first call is released")
    assert engine.flush_records(), "the record writer saved the records"
    record = next(r for r in engine.store.list(limit=5) if r.call_id == first)
    assert record.disposition == "wrong_person"
    assert fs.channel(first).cause != "USER_BUSY"
    fs.wait_for(lambda: engine.pool.in_use == 0, timeout=5, what="every port pair is back")


def test_a_caller_who_hangs_up_during_the_busy_prompt_ends_it_at_once(fs: FreeSwitchDouble, engine: Engine) -> None:
    first = fs.place_call(engine.server.port, codec="PCMU", rate=8000, caller=Silence())
    fs.wait_for(lambda: fs.channel(first).unicast_active, timeout=10, what="the first call's unicast")
    second = fs.place_call(engine.server.port, codec="PCMU", rate=8000, caller=Silence())
    fs.wait_for(lambda: fs.channel(second).unicast_active, timeout=10, what="the busy prompt starts")
    fs.hangup(second)
    fs.wait_for(lambda: engine.pool.in_use == 1, timeout=2, what="the busy call's ports are released at once")
    assert fs.channel(second).cause == "NORMAL_CLEARING"
    fs.hangup(first)
    fs.wait_for(lambda: engine.metrics.active_calls == 0 and engine.pool.in_use == 0, timeout=5, what="all released")
    fs.assert_no_crash()


def test_busy_prompt_is_cut_to_a_few_seconds_and_framed_at_the_channel_rate() -> None:
    tone = (8000 * np.sin(np.arange(8000 * 12) * 2 * np.pi * 440 / 8000)).astype(np.int16)  # 12 s
    prompt = BusyPrompt.render(tone, 8000)
    assert prompt.duration_s == pytest.approx(MAX_PROMPT_S)
    assert abs(int(prompt.samples[-1])) < 100, "faded out, not cut mid-wave"
    frames16 = prompt.frames(media_format("L16", 16000, 20))
    assert len(frames16) == 400 and all(len(f) == 640 for f in frames16)
    frames8 = prompt.frames(media_format("PCMU", 8000, 30))
    assert len(frames8) == 267 and {len(f) for f in frames8} == {480}
    assert prompt.frames(media_format("PCMU", 8000, 30)) is frames8, "made once per rate and ptime"


def test_busy_action_is_validated(tmp_path: Path) -> None:
    assert EngineConfig().busy_action == "prompt"
    path = tmp_path / "voicebot.yaml"
    path.write_text("limits:\n  max_calls: 2\n  busy_action: transfer:7999\n")
    assert load_config(path).busy_action == "transfer:7999"
    path.write_text("limits: {busy_action: hangup}\n")
    assert load_config(path).busy_action == "hangup"
    path.write_text("flows: {}\nlimits:\n  busy_action: play\n")
    with pytest.raises(ConfigError, match=r"voicebot.yaml:3:16: error: limits.busy_action: bad value 'play'"):
        load_config(path)
    path.write_text("limits: {busy_action: 'transfer:'}\n")
    with pytest.raises(ConfigError, match="busy_action"):
        load_config(path)
