"""A pack's trained conversion, applied where its synthesized speech is made (voicebot.tts.render.PromptCache).

``voicebot voice train`` writes ``PACK/vc/model.npz`` only when its guard lets the conversion be enabled
(voicebot.tts.vc.train); every piece the pack's neural voice synthesizes then goes through it (WORLD analysis at
16 kHz, the spectral map and the log-F0 transform, WORLD synthesis) before it is joined to the agent's
recordings: static prompts when a flow loads, a campaign lead's fill-in while the lead waits
(voicebot.tts.prerender), and live values on the call's synthesis worker, never on the gevent hub.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from voicebot.tts.base import VoiceError
from voicebot.tts.pack import VoicePack
from voicebot.tts.vc import world
from voicebot.tts.vc.mapping import VoiceConversion

Int16Array = npt.NDArray[np.int16]
VC_DIR = "vc"
MODEL_FILE = "model.npz"
RATE = world.RATE  # Hz: conversion works on 16 kHz speech


def convert(model: VoiceConversion, samples16k: Int16Array) -> Int16Array:
    """``samples16k`` (int16, 16 kHz) in the agent's voice: analyse, map, synthesise."""
    if len(samples16k) == 0:
        return np.asarray(samples16k, dtype=np.int16)
    return world.synthesize(model.convert_features(world.analyze(samples16k)), level_like=samples16k)


def load_model(pack: VoicePack) -> VoiceConversion | None:
    """The pack's enabled conversion (``vc/model.npz``), or None when it has none; VoiceError if it is unreadable."""
    path = pack.root / VC_DIR / MODEL_FILE
    if not path.is_file():
        return None
    try:
        return VoiceConversion.load(path)
    except (OSError, ValueError, KeyError) as e:
        raise VoiceError(f"{path}: not a voice conversion model ({e}); run voice train again") from e
