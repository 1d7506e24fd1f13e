"""Shared by the engine tests: an engine config pointed at a test double, and a started engine."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gevent
import numpy as np

from voicebot.config import CampaignsConfig, EngineConfig
from voicebot.engine import Engine
from voicebot.tts.render import PromptCache

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
PASSWORD = "test-pw"


@dataclass(frozen=True)
class EngineSetup:
    """A test module's shared engine (tests/conftest.py's ``engine``): its media port range, ``EngineConfig`` overrides,
    and whether starting waits (up to 10 s) for the engine to connect to the double."""

    media_ports: tuple[int, int]
    options: dict[str, Any] = field(default_factory=dict)
    wait_up: bool = True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def engine_config(esl_port: int, tmp: Path, media_ports: tuple[int, int], **overrides: Any) -> EngineConfig:
    """The example flow, records and recordings under ``tmp``, the shared prompt cache, ephemeral ports.

    PocketSphinx decodes in the engine's process here (``asr_backend="pocketsphinx"``): these engines serve a few
    calls each, and a pool of worker processes per engine would add seconds to every module. ``voicebot serve``'s
    default, the pool, is tested end to end in tests/test_engine_pool.py."""
    values: dict[str, Any] = dict(
        esl_port=esl_port, esl_password=PASSWORD, outbound_port=0, http_port=0, default_flow=FLOW,
        records_db=str(tmp / "calls.sqlite"), recordings_dir=tmp / "rec", cache_dir=ROOT / ".voicebot-cache",
        media_ports=media_ports, shutdown_deadline_s=2, asr_backend="pocketsphinx")
    values.update(overrides)
    return EngineConfig(**values)


def steady_speech(cache: PromptCache, text: str, rate: int = 8000) -> np.ndarray:
    """``text`` synthesized with Piper's noise off: the same take every run, so tests do not hang on a lucky take."""
    voice = cache.pack.voice
    scales = voice.scales.copy()
    voice.scales[0] = voice.scales[2] = 0.0  # noise_scale, noise_w
    try:
        return cache.synthesize(text, rate)
    finally:
        voice.scales = scales


@contextmanager
def running_engine(config: EngineConfig, *, wait_up: bool = True) -> Iterator[Engine]:
    """A loaded and started engine, shut down afterwards."""
    engine = Engine(config)
    engine.load()
    engine.start()
    try:
        if wait_up:
            assert engine.inbound.wait_up(10), "the engine connects to the double"
        yield engine
    finally:
        engine.shutdown()


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 10 ms while yielding to the hub (the engine runs on it); TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        gevent.sleep(0.01)


def campaign_engine(config: EngineConfig, campaigns: CampaignsConfig, notifications: Any = None) -> Engine:
    """A started engine that runs campaigns (``notifications``: a NotificationsConfig), returned once its campaign
    service is up; the dial timings suit a loaded 2-core box (ring 2 s, ESL answers up to 8 s late)."""
    engine = Engine(replace(config, campaigns=campaigns), notifications=notifications)
    engine.load()
    engine.start()
    assert engine.inbound.wait_up(10)
    deadline = time.monotonic() + 10
    while engine.campaigns is None:  # the campaign database opens off the hub
        assert time.monotonic() < deadline, "the campaigns start"
        gevent.sleep(0.01)
    engine.campaigns.ring_s, engine.campaigns.margin_s = 2.0, 8.0
    return engine


def answer_the_question(fs: Any, uuid: str, reply: np.ndarray, after_s: float, *, rate: int = 8000,
                        timeout_s: float = 45.0) -> None:
    """Say ``reply`` (int16 at ``rate``) once the bot, ``after_s`` s or more into the call, went quiet for 0.3 s,
    spoke for 1 s or more and went quiet again for 0.8 s: the question it asks after a barge-in (the flow
    confirming an unsure "stop calling me"). Timed on what the caller heard, so a loaded machine that makes the
    bot late does not make the caller answer over the question. Returns at once if the call ended first (a sure
    hearing asks nothing: the goodbye then ends the call, and the reply is never heard)."""
    from fsdouble.audio import ArrayAudio

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        channel = fs.channel(uuid)
        if channel.hung_up:
            return
        answered = channel.answered_at
        if answered is not None and _asked(channel.ear_timeline(), answered + after_s):
            fs.set_caller_audio(uuid, ArrayAudio(reply, rate, start_at=time.monotonic() - answered + 0.2))
            return
        gevent.sleep(0.05)
    raise AssertionError(f"the bot asked nothing {after_s} s or more into the call within {timeout_s} s")


def _asked(ear: list[tuple[float, str, float]], after: float, speech_dbfs: float = -40.0) -> bool:
    """Whether the frames heard after ``after`` (monotonic s) go quiet >= 0.3 s, loud >= 1 s (pauses under 0.25 s
    inside it count as speech), then quiet >= 0.8 s."""
    runs: list[list[Any]] = []  # [loud, seconds]
    last = None
    for at, _source, dbfs in ear:
        if at < after:
            continue
        loud = dbfs > speech_dbfs
        step = 0.02 if last is None else min(0.1, max(0.0, at - last))
        last = at
        if runs and runs[-1][0] == loud:
            runs[-1][1] += step
        else:
            runs.append([loud, step])
    merged: list[list[Any]] = []
    for i, (loud, seconds) in enumerate(runs):
        inside = 0 < i < len(runs) - 1 and not loud and seconds < 0.25  # a pause between words
        loud = loud or inside
        if merged and merged[-1][0] == loud:
            merged[-1][1] += seconds
        else:
            merged.append([loud, seconds])
    return any(not a[0] and a[1] >= 0.3 and b[0] and b[1] >= 1.0 and not c[0] and c[1] >= 0.8
               for a, b, c in zip(merged, merged[1:], merged[2:], strict=False))
