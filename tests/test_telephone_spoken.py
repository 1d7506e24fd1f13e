"""The telephone channel (band, codecs, SNR mixing) and Whisper's written English back to spoken words."""

from __future__ import annotations

import numpy as np
import pytest

from voicebot.asr.spoken import number_words, ordinal_words, spoken_form
from voicebot.audio.telephone import mix_at_snr, telephone_channel, to_rate


def tone(freq: float, rate: int = 16000, seconds: float = 1.0, amplitude: float = 8000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def level(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_the_voice_band_passes_and_the_rest_does_not(codec: str) -> None:
    inside = telephone_channel(tone(1000), 16000, codec)
    assert len(inside) == 8000 and inside.dtype == np.int16
    assert level(inside) == pytest.approx(level(tone(1000)), rel=0.05)
    for freq in (100, 3800):  # below 300 Hz and above 3400 Hz (within the 8 kHz Nyquist)
        assert level(telephone_channel(tone(freq), 16000, codec)) < 0.02 * level(tone(1000))


def test_g711_quantisation_is_applied() -> None:
    quiet = telephone_channel(tone(1000, amplitude=3), 16000, "PCMU")  # µ-law's finest steps near zero are 2
    assert set(np.unique(np.abs(quiet))) <= {0, 2, 4, 6, 8}


def test_any_rate_converts() -> None:
    assert len(to_rate(tone(440, rate=11025), 11025, 8000)) == 8000
    assert len(to_rate(np.zeros(0, dtype=np.int16), 44100, 8000)) == 0


@pytest.mark.parametrize("snr_db", [20.0, 10.0, 0.0])
def test_noise_is_mixed_at_the_asked_snr(snr_db: float) -> None:
    speech = tone(500)
    noise = np.random.default_rng(1).standard_normal(4000) * 1000
    mixed = mix_at_snr(speech, noise, snr_db).astype(np.float64)
    added = mixed - speech
    measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(added**2))
    assert measured == pytest.approx(snr_db, abs=0.3)


@pytest.mark.parametrize(("written", "spoken"), [
    ("Mr. John Dashwood had then leisure.", "mister john dashwood had then leisure"),
    ("go forward 10 meters", "go forward ten meters"),
    ("See you at 3:30 p.m. on the 15th.", "see you at three thirty p m on the fifteenth"),
    ("Tomorrow at 3 PM", "tomorrow at three p m"),
    ("at 2:05am", "at two oh five a m"),
    ("I am 7.", "i am seven"),
    ("It costs $5, or 20%.", "it costs five dollars or twenty percent"),
    ("In 1995 and the 1990s", "in nineteen ninety five and the nineteen nineties"),
    ("OK, I'm not interested!", "okay i'm not interested"),
    ("1,200", "one thousand two hundred"),
    ("明天下午三点，好的。", "明天下午三点 好的"),
    ("", ""),
])
def test_spoken_form(written: str, spoken: str) -> None:
    assert spoken_form(written) == spoken


def test_number_and_ordinal_words() -> None:
    assert number_words(0) == "zero" and number_words(40) == "forty" and number_words(101) == "one hundred one"
    assert number_words(2_000_005) == "two million five"
    assert [ordinal_words(n) for n in (1, 2, 3, 12, 20, 22, 100)] == [
        "first", "second", "third", "twelfth", "twentieth", "twenty second", "one hundredth"]
