"""Synthesized telephone signals for the campaign detectors' tests: tones, cadences, speech-like babble, noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

RATE = 8000
FRAME = 160
Signal = npt.NDArray[np.float64]


def tone(freqs: Sequence[float], ms: float, dbfs: float = -20.0, phase: float = 0.3) -> Signal:
    """A sum of equal sines at ``freqs`` whose total RMS is ``dbfs``."""
    t = np.arange(int(RATE * ms / 1000)) / RATE
    amp = 32768 * 10 ** (dbfs / 20) * np.sqrt(2 / len(freqs))
    out: Signal = sum((amp * np.sin(2 * np.pi * f * t + phase * (i + 1)) for i, f in enumerate(freqs)),
                      np.zeros(len(t)))
    return out


def silence(ms: float) -> Signal:
    return np.zeros(int(RATE * ms / 1000))


def cadence(freqs: Sequence[float], on_ms: float, off_ms: float, cycles: int) -> Signal:
    return np.concatenate([np.concatenate((tone(freqs, on_ms), silence(off_ms))) for _ in range(cycles)])


def babble(ms: float, dbfs: float = -20.0, seed: int = 0) -> Signal:
    """Speech-like sound: a harmonic voice with a gliding pitch (90-220 Hz), formant-ish tilt and 4 Hz syllables."""
    rng = np.random.default_rng(seed)
    n = int(RATE * ms / 1000)
    t = np.arange(n) / RATE
    f0 = 150 + 60 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + 10 * rng.standard_normal()
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 20))
    syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))
    x = voice * syllables + 0.05 * rng.standard_normal(n)
    out: Signal = x / np.sqrt(np.mean(x * x)) * 32768 * 10 ** (dbfs / 20)
    return out


def add_noise(x: Signal, snr_db: float, seed: int = 1, signal_dbfs: float = -20.0) -> Signal:
    """White noise ``snr_db`` below a ``signal_dbfs`` signal."""
    rng = np.random.default_rng(seed)
    out: Signal = x + rng.normal(0.0, 32768 * 10 ** ((signal_dbfs - snr_db) / 20), len(x))
    return out


def frames(x: Signal) -> list[npt.NDArray[np.int16]]:
    """``x`` as 20 ms int16 frames (the tail that does not fill a frame is dropped)."""
    clipped = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    return [clipped[i:i + FRAME] for i in range(0, len(clipped) - FRAME + 1, FRAME)]
