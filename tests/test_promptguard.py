"""The prompt guard measured by bench/hearing_eval.py (voicebot.asr.promptguard): a turn's SNR estimated from its own
audio, and which decode's words a turn takes."""

from __future__ import annotations

import numpy as np
import pytest

from voicebot.asr import promptguard
from voicebot.asr.promptguard import AGREED, CLEAN, DROPPED, NO_HINTS, choose, turn_snr_db

RATE = 8000
HINTS = ("yes", "yeah that's me", "speaking", "wrong number", "not interested")


def _turn(snr_db: float | None, seconds: float = 2.0, seed: int = 1) -> np.ndarray:
    """0.4 s of quiet, a 1.2 s tone burst ("speech"), quiet to the end; white noise ``snr_db`` below the burst's
    power over the whole turn (None: digital silence)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    speech = np.where((t >= 0.4) & (t < 1.6), 8000.0 * np.sin(2 * np.pi * 440 * t), 0.0)
    noise = 0.0 if snr_db is None else rng.standard_normal(len(t)) * np.sqrt(8000.0**2 / 2 / 10 ** (snr_db / 10))
    return np.clip(speech + noise, -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("snr_db", [10.0, 15.0, 25.0, 40.0])
def test_the_estimate_follows_the_noise(snr_db: float) -> None:
    estimate = turn_snr_db(_turn(snr_db), RATE)
    assert abs(estimate - snr_db) <= 2.0, estimate
    assert promptguard.is_noisy(estimate) is (snr_db < promptguard.NOISY_SNR_DB)


def test_digital_silence_and_short_turns_are_clean() -> None:
    assert turn_snr_db(_turn(None), RATE) >= 50.0
    assert turn_snr_db(np.zeros(RATE, dtype=np.int16), RATE) == 0.0  # nothing at all: no speech over no noise
    assert turn_snr_db(_turn(5.0)[: 3 * RATE // 50], RATE) == promptguard.MAX_SNR_DB  # 3 frames: not measured


def test_a_clean_turn_keeps_the_prompted_words_without_a_second_decode() -> None:
    assert choose(35.0, "yes please", None, HINTS) == promptguard.Choice("yes please", True, CLEAN)


def test_no_hints_means_no_prompt_to_doubt() -> None:
    assert choose(5.0, "mister john dashwood", None, ()) == promptguard.Choice("mister john dashwood", True, NO_HINTS)


def test_a_noisy_turn_drops_hint_words_the_prompt_put_there() -> None:
    """At 10 dB the prompt wrote "yes" into a Librivox sentence; without the prompt it is not there: no yes."""
    got = choose(9.0, "yes mister john dashwood", "mister john dashwood had", HINTS)
    assert got == promptguard.Choice("mister john dashwood had", False, DROPPED)


def test_a_noisy_turn_keeps_prompted_words_heard_without_the_prompt_too() -> None:
    got = choose(9.0, "yeah that's me", "yeah that's me", HINTS)
    assert got == promptguard.Choice("yeah that's me", True, AGREED)
    got = choose(9.0, "yes, speaking.", "Yes speaking", HINTS)  # case and punctuation do not matter
    assert got.prompted and got.why == AGREED


def test_words_that_are_not_hints_need_no_agreement() -> None:
    got = choose(9.0, "yes i'm driving", "yes im driving", HINTS)
    assert got.prompted and got.why == AGREED  # "i'm" is no hint word: only "yes" had to be heard twice


def test_a_noisy_turn_without_the_second_decode_is_an_error() -> None:
    with pytest.raises(ValueError, match="without the prompt"):
        choose(9.0, "yes", None, HINTS)


def test_the_threshold_is_the_callers() -> None:
    assert choose(25.0, "yes sir", "sir", HINTS, threshold_db=30.0).why == DROPPED
    assert choose(25.0, "yes sir", None, HINTS, threshold_db=20.0).why == CLEAN
