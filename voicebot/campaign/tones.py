"""Tone measurement for call-progress and beep detection: a Goertzel filter bank in numpy. No I/O, no clocks.

Why Goertzel and not an FFT: call-progress tones sit at exact frequencies that are
not FFT bins (440, 480, 913.8, 1370.6 Hz…); Goertzel measures the DFT at any
frequency exactly, costs O(N) per frequency and needs no extra dependency (scipy is
not one of ours). We need a dozen frequencies per 20-40 ms window, so it is tiny.

:func:`goertzel_recurrence` is the textbook second-order recurrence (one
frequency, a Python loop: the reference). :class:`GoertzelBank` computes the same
quantity for many frequencies at once as one matrix product with precomputed
twiddles (``|Σ x[n]·e^{-jωn}|²`` is exactly what the recurrence's final state
yields); the tests check the two agree.

Powers are *normalised*: :meth:`GoertzelBank.fractions` divides each power by
``N/2 · Σx²``, so a pure sine at a bank frequency reads 1.0 (within the small
error of its negative-frequency image), two equal sines read 0.5 each, and
speech or noise reads little at any single frequency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

RATE = 8000  # Hz: telephone audio
FloatArray = npt.NDArray[np.float64]


def goertzel_recurrence(samples: Sequence[float] | FloatArray, freq_hz: float, rate: int = RATE) -> float:
    """|X(f)|² of ``samples`` at ``freq_hz`` by the Goertzel recurrence (the slow reference)."""
    omega = 2.0 * math.pi * freq_hz / rate
    coeff = 2.0 * math.cos(omega)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = float(x) + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


class GoertzelBank:
    """Goertzel powers at fixed ``freqs_hz`` over windows of exactly ``size`` samples at ``rate`` Hz."""

    def __init__(self, freqs_hz: Sequence[float], size: int, rate: int = RATE) -> None:
        if size <= 0 or len(freqs_hz) == 0:
            raise ValueError("a Goertzel bank needs frequencies and a positive window size")
        self.freqs = tuple(float(f) for f in freqs_hz)
        self.size = size
        self.rate = rate
        n = np.arange(size, dtype=np.float64)
        omega = 2.0 * np.pi * np.asarray(self.freqs)[:, None] / rate
        # the recurrence's final value equals |X(ω)|² up to a unit-modulus factor, so the phase origin does not matter
        self._cos = np.cos(omega * n)
        self._sin = np.sin(omega * n)

    def powers(self, samples: FloatArray) -> FloatArray:
        """|X(f)|² for each bank frequency; ``samples`` must hold exactly ``size`` values."""
        if len(samples) != self.size:
            raise ValueError(f"the bank measures windows of {self.size} samples, got {len(samples)}")
        re = self._cos @ samples
        im = self._sin @ samples
        out: FloatArray = re * re + im * im
        return out

    def fractions(self, samples: FloatArray) -> FloatArray:
        """Each power as a share of the window's energy: 1.0 for a pure sine at that frequency, 0 for silence."""
        energy = float(samples @ samples)
        if energy <= 0.0:
            return np.zeros(len(self.freqs))
        out: FloatArray = self.powers(samples) / (energy * self.size / 2.0)
        return out


def rms_dbfs(samples: FloatArray) -> float:
    """RMS level of int16-scaled ``samples`` in dBFS (-120 for digital silence)."""
    if not len(samples):
        return -120.0
    ms = float(samples @ samples) / len(samples)
    return 10.0 * math.log10(ms / (32768.0 * 32768.0)) if ms > 0 else -120.0


# ----------------------------------------------------------------- beep (answering machine: "after the tone")

BEEP_MIN_HZ = 400.0
BEEP_MAX_HZ = 2000.0
BEEP_STEP_HZ = 25.0  # bank spacing: a 40 ms window resolves 25 Hz, so a beep between two bins still reads > 0.4
BEEP_MIN_MS = 150.0  # a steady tone at least this long is the beep
BEEP_PURITY = 0.6  # share of the window's energy at the best frequency (after the 2-bin neighbourhood)
BEEP_MIN_DBFS = -45.0
BEEP_MAX_DRIFT_HZ = 50.0  # the tone's frequency may wander this much (cheap machines) and still be one beep


class BeepDetector:
    """Finds "the tone" of a voicemail: a steady single tone, 400-2000 Hz, for at least ``min_ms``.

    Fed 20 ms frames of 8 kHz int16 audio with their end time (s); analyses the last
    40 ms (two frames). :attr:`beep_at` is the time (s) the tone was confirmed, None until then;
    :attr:`beep_hz` its frequency.
    """

    def __init__(self, min_ms: float = BEEP_MIN_MS, frame_samples: int = 160) -> None:
        self.min_ms = min_ms
        self._frame = frame_samples
        freqs = np.arange(BEEP_MIN_HZ, BEEP_MAX_HZ + 1, BEEP_STEP_HZ).tolist()
        self._bank = GoertzelBank(freqs, 2 * frame_samples)
        self._prev = np.zeros(frame_samples)
        self._run_ms = 0.0
        self._run_hz = 0.0
        self.beep_at: float | None = None
        self.beep_hz: float | None = None

    def feed(self, samples: npt.NDArray[np.int16] | FloatArray, end_s: float) -> bool:
        """One frame ending at ``end_s``; True once the beep is confirmed (and from then on)."""
        frame = np.asarray(samples, dtype=np.float64)
        if len(frame) != self._frame:
            raise ValueError(f"the beep detector takes frames of {self._frame} samples, got {len(frame)}")
        window = np.concatenate((self._prev, frame))
        self._prev = frame
        if self.beep_at is not None:
            return True
        hz = self._tone_hz(window)
        if hz is None or (self._run_ms and abs(hz - self._run_hz) > BEEP_MAX_DRIFT_HZ):
            self._run_ms = 0.0 if hz is None else 1000.0 * self._frame / RATE
            self._run_hz = hz or 0.0
            return False
        self._run_ms += 1000.0 * self._frame / RATE
        self._run_hz = hz
        if self._run_ms >= self.min_ms:
            self.beep_at, self.beep_hz = end_s, hz
            return True
        return False

    def _tone_hz(self, window: FloatArray) -> float | None:
        if rms_dbfs(window) < BEEP_MIN_DBFS:
            return None
        share = self._bank.fractions(window)
        best = int(np.argmax(share))
        # a tone between two bins splits its energy over both: count the best bin and its stronger neighbour
        left = share[best - 1] if best > 0 else 0.0
        right = share[best + 1] if best + 1 < len(share) else 0.0
        if share[best] + max(left, right) < BEEP_PURITY:
            return None
        return self._bank.freqs[best]
