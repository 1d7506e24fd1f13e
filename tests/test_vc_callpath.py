"""Voice conversion in the call path: an enabled conversion (PACK/vc/model.npz) reshapes every piece the pack's
neural voice synthesizes (static prompts, live values, pre-rendered fill-in), and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from voicebot.tts.pack import load_pack
from voicebot.tts.piper_voice import default_voice
from voicebot.tts.render import PromptCache
from voicebot.tts.vc import world
from voicebot.tts.vc.mapping import MAPPED_DIMS, F0Transform, ShiftMap, VoiceConversion

TEXT = "Good morning, this is a short test of the agent's voice."


def octave_up() -> VoiceConversion:
    """A conversion that keeps the envelope (no shift, no GV) and doubles F0: easy to see, exact to check."""
    d = MAPPED_DIMS
    spectral = ShiftMap(np.ones(1), np.zeros((1, d)), np.eye(d)[None], np.zeros((1, d)), np.ones(d), gv_weight=0.0)
    return VoiceConversion(spectral, F0Transform(float(np.log(100.0)), 1.0, float(np.log(200.0)), 1.0))


@contextmanager
def steady_takes() -> Iterator[None]:
    """Piper with its noise off: the same take every time, so converted and stock compare sample for sample."""
    voice = default_voice()  # the voice every English pack here shares
    scales = voice.scales.copy()
    voice.scales[0] = voice.scales[2] = 0.0  # noise_scale, noise_w
    try:
        yield
    finally:
        voice.scales = scales


def median_f0(audio16k: np.ndarray) -> float:
    f0 = world.analyze(audio16k).f0
    return float(np.median(f0[f0 > 0]))


def test_an_enabled_conversion_reshapes_synthesized_pieces_and_keys_the_cache(tmp_path: Path) -> None:
    with steady_takes():
        check_conversion(tmp_path)


def check_conversion(tmp_path: Path) -> None:
    root = tmp_path / "pack"
    root.mkdir()
    (root / "voice.yaml").write_text("name: agent\nlanguage: en\n")
    stock = PromptCache(load_pack(root), tmp_path / "cache")
    plain = stock.synthesize(TEXT, 16000)
    (root / "vc").mkdir()
    octave_up().save(root / "vc" / "model.npz")

    converted_cache = PromptCache(load_pack(root), tmp_path / "cache")
    converted = converted_cache.synthesize(TEXT, 16000)
    assert 1.85 < median_f0(converted) / median_f0(plain) < 2.15  # an octave up
    assert converted_cache.cache_path(TEXT, 8000) != stock.cache_path(TEXT, 8000), "a converted take must not be served stock"
    assert converted_cache.voice_key != stock.voice_key, "pre-rendered pieces are shared by voice key"
    assert converted_cache.converted_audio_s > 0 and converted_cache.convert_seconds > 0

    live = converted_cache.synthesize_live("Dana", 8000)  # a value said on a call goes through it too
    assert len(live) and converted_cache.converted_audio_s > len(converted) / 16000

    trainer_view = PromptCache(load_pack(root), convert=False)  # voice train renders the stock voice
    assert trainer_view.conversion is None
    assert np.array_equal(trainer_view.synthesize(TEXT, 16000), plain)


def test_a_pack_without_a_model_is_not_converted(tmp_path: Path) -> None:
    (tmp_path / "voice.yaml").write_text("name: agent\nlanguage: en\n")
    (tmp_path / "vc").mkdir()
    octave_up().save(tmp_path / "vc" / "refused.npz")  # what voice train writes when its guard refuses
    cache = PromptCache(load_pack(tmp_path))
    assert cache.conversion is None
    cache.synthesize("Hello there.", 8000)
    assert cache.converted_audio_s == 0
