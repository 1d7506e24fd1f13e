"""WORLD analysis and synthesis (pyworld) at 16 kHz, with a 5 ms frame.

A clip becomes :class:`Features`: F0 (Hz, 0 where unvoiced), the spectral envelope coded as
:data:`DIMS` mel-cepstrum-like coefficients (``pyworld.code_spectral_envelope``; coefficient 0 carries
the level), and band aperiodicity (``pyworld.code_aperiodicity``). Synthesis decodes them back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Float64Array = npt.NDArray[np.float64]
Int16Array = npt.NDArray[np.int16]
RATE = 16000  # Hz: analysis and synthesis rate (the speaker embedder's rate)
FRAME_MS = 5.0  # WORLD frame period
DIMS = 40  # coded spectral envelope coefficients
F0_FLOOR, F0_CEIL = 60.0, 500.0  # Hz: the F0 search range (men and women)
PEAK_DBFS = -1.0  # converted speech never peaks above this
LIMIT_KNEE = 0.7  # of the peak limit: samples above it are soft-limited (tanh), those below untouched


@dataclass(frozen=True)
class Features:
    """One clip's WORLD parameters, one row per 5 ms frame."""

    f0: Float64Array  # (T,) Hz, 0 = unvoiced
    mcep: Float64Array  # (T, DIMS) coded spectral envelope
    bap: Float64Array  # (T, bands) coded aperiodicity

    @property
    def frames(self) -> int:
        """Number of frames."""
        return len(self.f0)


def fft_size() -> int:
    """WORLD's FFT size at :data:`RATE` (for the F0 floor WORLD uses by default)."""
    import pyworld

    return int(pyworld.get_cheaptrick_fft_size(RATE))


def analyze(samples: Int16Array) -> Features:
    """WORLD parameters of int16 audio at :data:`RATE` (DIO + StoneMask F0, CheapTrick, D4C)."""
    import pyworld

    x = np.asarray(samples, dtype=np.float64) / 32768.0
    f0, times = pyworld.dio(x, RATE, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=FRAME_MS)
    f0 = pyworld.stonemask(x, f0, times, RATE)
    sp = pyworld.cheaptrick(x, f0, times, RATE)
    ap = pyworld.d4c(x, f0, times, RATE)
    mcep = pyworld.code_spectral_envelope(sp, RATE, DIMS)
    bap = pyworld.code_aperiodicity(ap, RATE)
    return Features(np.asarray(f0, dtype=np.float64), np.asarray(mcep, dtype=np.float64), np.asarray(bap, dtype=np.float64))


def synthesize(features: Features, level_like: Int16Array | None = None) -> Int16Array:
    """int16 audio at :data:`RATE` from WORLD parameters.

    ``level_like``: bring the speech level (active RMS, ``voicebot.tts.pack.active_dbfs``) to that clip's, peaks
    soft-limited to -1 dBFS (a converted envelope can be several dB louder than its source, and clipping ruins the
    words).
    """
    import pyworld

    from voicebot.tts.pack import active_dbfs

    size = fft_size()
    sp = pyworld.decode_spectral_envelope(np.ascontiguousarray(features.mcep), RATE, size)
    ap = pyworld.decode_aperiodicity(np.ascontiguousarray(features.bap), RATE, size)
    y = pyworld.synthesize(np.ascontiguousarray(features.f0), sp, ap, RATE, FRAME_MS)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if level_like is not None and peak > 0:
        y = y * (0.9 / peak)  # headroom first; the level is set below
    out: Int16Array = np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)
    if level_like is not None and len(level_like) and len(out):
        out = _at_level(y, active_dbfs(out, RATE), active_dbfs(level_like, RATE))
    return out


def _at_level(y: Float64Array, level_dbfs: float, target_dbfs: float) -> Int16Array:
    """``y`` (float, full scale 1) at ``target_dbfs`` speech level, peaks soft-limited to :data:`PEAK_DBFS`.

    A low voice resynthesised by WORLD can have a crest factor above 24 dB (one sharp pulse per period); a plain
    peak cap then leaves it over 1 dB quieter than its source, a step a listener hears at the join. The few
    samples above the knee are bent (tanh) instead.
    """
    from voicebot.tts.pack import SILENCE_DBFS

    if level_dbfs <= SILENCE_DBFS:
        return np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)
    x = y * 10.0 ** ((target_dbfs - level_dbfs) / 20.0)
    limit = 10.0 ** (PEAK_DBFS / 20.0)
    knee = LIMIT_KNEE * limit
    size = np.abs(x)
    over = size > knee
    x[over] = np.sign(x[over]) * (knee + (limit - knee) * np.tanh((size[over] - knee) / (limit - knee)))
    out: Int16Array = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    return out


def voiced_log_f0(f0: Float64Array) -> Float64Array:
    """log F0 of the voiced frames."""
    return np.log(f0[f0 > 0])


def speech_frames(samples: Int16Array, frames: int, below_peak_db: float = 35.0) -> npt.NDArray[np.bool_]:
    """Which of ``frames`` 5 ms frames (centred as WORLD's) are within ``below_peak_db`` dB of the loudest 1 %."""
    hop = int(RATE * FRAME_MS / 1000)
    x = np.pad(np.asarray(samples, dtype=np.float64), (hop, hop + frames * hop))
    power = np.array([np.mean(x[i * hop: i * hop + 2 * hop] ** 2) for i in range(frames)])
    level = 10.0 * np.log10(power + 1e-3)
    if frames == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray(level > float(np.percentile(level, 99)) - below_peak_db, dtype=bool)
