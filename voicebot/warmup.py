"""Warming a loaded pipeline, so the first call after a start sounds like every other one.

What was cold (measured with the example flow, models loaded, prompt cache
warm): the Piper voice is loaded lazily, on the first live synthesis; that
came about 1 s into the first call's greeting (``{{agent_name}}`` after "Hi,
this is"), 0.4-4 s on a busy 2-core machine, and the default values of a
flow's variables were synthesized live on that first call too (warm calls
take them from the dynamic cache). :func:`warm_pipeline` loads the voice and
runs one silent session on a virtual clock, start to hang-up, through the
same code a call runs: the greeting with default values (filling the dynamic
cache), the player, VAD, turn-taking and the ASR stream.
"""

from __future__ import annotations

import time

import numpy as np

from voicebot.audio.frame import AudioFrame
from voicebot.logs import get_logger
from voicebot.pipeline import Pipeline

WARM_SESSION_S = 5.0  # virtual seconds of a silent call run through each pipeline at load (a greeting)

log = get_logger("engine.warmup")


def warm_pipeline(pipeline: Pipeline, seconds: float = WARM_SESSION_S) -> float:
    """Load the voice and run one silent call of ``seconds`` through ``pipeline`` as fast as it goes; wall s taken."""
    started = time.perf_counter()
    rate = pipeline.config.rate
    pipeline.cache.synthesize("ready", rate)  # loads the voice; runs the model and the resampler to this rate once
    session = pipeline.session()
    frame_ms = session.settings.frame_ms
    silence = np.zeros(rate * frame_ms // 1000, dtype=np.int16).tobytes()
    try:
        session.start(0.0)
        for i in range(int(seconds * 1000 / frame_ms)):
            now = i * frame_ms / 1000
            session.caller_frame(AudioFrame(silence, rate, i, now))
            session.bot_frame(now)
            if session.ended:
                break
        if not session.ended:
            session.hang_up(seconds, "warmup")
    finally:
        session.asr.close()
    took = time.perf_counter() - started
    log.info("engine.warmed", flow=pipeline.flow.id, rate=rate, seconds=round(took, 3))
    return took
