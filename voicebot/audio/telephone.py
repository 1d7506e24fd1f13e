"""The telephone channel a caller's voice goes through before the engine hears it.

:func:`telephone_channel`: any rate → 8 kHz, 300-3400 Hz band, G.711 (µ-law or A-law) encoded and decoded, as
FreeSWITCH hands a PSTN/SIP call's audio to the engine. :func:`to_rate` converts between any two rates (soxr HQ),
not only the engine's call rates. :func:`mix_at_snr` adds noise at a signal-to-noise ratio in dB.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from voicebot.audio import codecs

Int16Array = npt.NDArray[np.int16]
PHONE_RATE = 8000  # Hz, G.711
BAND_HZ = (300.0, 3400.0)  # the telephone voice band (ITU-T G.712)
EDGE_HZ = 100.0  # width of the raised-cosine skirts of the band-pass


def to_rate(samples: npt.ArrayLike, src_rate: int, dst_rate: int) -> Int16Array:
    """int16 samples from ``src_rate`` to ``dst_rate`` Hz, any two positive rates (soxr HQ, rounded and clipped)."""
    data = np.asarray(samples, dtype=np.int16)
    if src_rate == dst_rate or len(data) == 0:
        return data
    out: npt.NDArray[np.float32] = soxr.resample(data.astype(np.float32), src_rate, dst_rate, quality="HQ")
    return _int16(out)


def band_pass(samples: npt.ArrayLike, rate: int, band: tuple[float, float] = BAND_HZ) -> npt.NDArray[np.float64]:
    """``samples`` with everything outside ``band`` (Hz) removed (FFT mask with ``EDGE_HZ`` raised-cosine skirts)."""
    data = np.asarray(samples, dtype=np.float64)
    if len(data) == 0:
        return data
    spectrum = np.fft.rfft(data)
    freqs = np.fft.rfftfreq(len(data), 1.0 / rate)
    low, high = band
    gain = np.clip((freqs - (low - EDGE_HZ)) / EDGE_HZ, 0.0, 1.0) * np.clip(((high + EDGE_HZ) - freqs) / EDGE_HZ, 0.0, 1.0)
    gain = 0.5 - 0.5 * np.cos(np.pi * gain)
    return np.fft.irfft(spectrum * gain, n=len(data))


def telephone_channel(samples: npt.ArrayLike, rate: int, codec: str = "PCMU") -> Int16Array:
    """What the engine receives of ``samples`` (at ``rate`` Hz) over a G.711 call: 8 kHz int16, band-limited, and
    quantised by ``codec`` ("PCMU" µ-law, "PCMA" A-law, "L16" none)."""
    narrow = band_pass(to_rate(samples, rate, PHONE_RATE), PHONE_RATE)
    pcm = np.clip(np.rint(narrow), -32768, 32767).astype("<i2").tobytes()
    return np.frombuffer(codecs.decode(codecs.encode(pcm, codec), codec), dtype="<i2").astype(np.int16)


def mix_at_snr(speech: npt.ArrayLike, noise: npt.ArrayLike, snr_db: float) -> Int16Array:
    """``speech`` plus ``noise`` (looped or cut to its length) scaled to ``snr_db`` dB below the speech's power.

    Power is measured over the speech's active part (samples above 1 % of its peak), so leading and trailing
    silence does not flatter the ratio."""
    clean = np.asarray(speech, dtype=np.float64)
    if len(clean) == 0:
        return np.asarray(speech, dtype=np.int16)
    bed = np.resize(np.asarray(noise, dtype=np.float64), len(clean))
    active = clean[np.abs(clean) > 0.01 * max(1.0, float(np.max(np.abs(clean))))]
    speech_power = float(np.mean(active**2)) if len(active) else 0.0
    noise_power = float(np.mean(bed**2)) or 1.0
    scale = np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    return _int16(clean + scale * bed)


def _int16(samples: npt.NDArray[np.floating[Any]]) -> Int16Array:
    """Rounded and clipped to int16."""
    out: Int16Array = np.clip(np.rint(samples), -32768, 32767).astype(np.int16)
    return out
