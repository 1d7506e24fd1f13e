"""Audio for the FreeSWITCH test double: what callers and agents say, and the datagrams their ears record.

What a party says is a :class:`CallerAudio`: ``frame_for(t, rate, samples)`` → s16le, ``t`` in s since the
leg was answered. :class:`Silence`, :class:`ArrayAudio` (an array or WAV, from a moment), :class:`CallbackAudio`
(``fn(t) -> bytes``, a reactive caller) and :class:`Tone` (a sine; agents say 1000 Hz at -12 dBFS by default,
so tests tell bot from agent frames as the check8 captures did).

What a party hears is a list of :class:`Packet` (arrival or media-clock time, payload, codec, rate, and
``source``: "engine" for datagrams the engine sent, "agent"/"caller" for a bridged partner's voice, "silence"
for the frames of a bridge before audio flows, "+"-joined when mixed, e.g. "engine+agent").
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from voicebot.audio.codecs import decode

AGENT_TONE_HZ = 1000.0  # an agent's default voice (check8: agent phones "talk" 1000 Hz)
AGENT_TONE_DBFS = -12.0
SILENCE_DBFS = -120.0  # the level given to digital silence


class CallerAudio(Protocol):
    """What a party says: ``frame_for(t, rate, samples)`` → s16le, ``t`` in s since answer."""

    def frame_for(self, t: float, rate: int, samples: int) -> bytes:
        """``samples`` samples of s16le at ``rate`` Hz starting ``t`` s after the call was answered."""
        ...


class Silence:
    """A caller who says nothing (digital silence)."""

    def frame_for(self, t: float, rate: int, samples: int) -> bytes:
        """Zeros."""
        return bytes(2 * samples)


class Tone:
    """A steady sine of ``hz`` Hz at ``dbfs`` dBFS (peak), phase-continuous in ``t``, from ``start_at`` s."""

    def __init__(self, hz: float = AGENT_TONE_HZ, dbfs: float = AGENT_TONE_DBFS, start_at: float = 0.0) -> None:
        self.hz, self.dbfs, self.start_at = hz, dbfs, start_at
        self.amplitude = 32767 * 10 ** (dbfs / 20)

    def frame_for(self, t: float, rate: int, samples: int) -> bytes:
        """The sine's samples under ``[t, t + samples/rate)``; zeros before ``start_at``."""
        first = round(t * rate)
        n = np.arange(first, first + samples)
        wave = self.amplitude * np.sin(2 * np.pi * self.hz * n / rate)
        wave[n < round(self.start_at * rate)] = 0
        return np.asarray(np.round(wave), dtype="<i2").tobytes()


class ArrayAudio:
    """int16 samples at ``rate`` Hz, heard from ``start_at`` s after answer (then silence, or looped)."""

    def __init__(self, samples: npt.ArrayLike, rate: int, start_at: float = 0.0, loop: bool = False) -> None:
        self.samples = np.asarray(samples, dtype=np.int16)
        self.rate = rate
        self.start_at = start_at
        self.loop = loop
        self._at_rate: dict[int, npt.NDArray[np.int16]] = {rate: self.samples}

    @classmethod
    def from_wav(cls, path: str | os.PathLike[str], start_at: float = 0.0, loop: bool = False) -> ArrayAudio:
        """A WAV file (any integer PCM, mono or stereo)."""
        from voicebot.audio.wav import read_wav

        samples, rate = read_wav(path)
        return cls(samples, rate, start_at, loop)

    def _resampled(self, rate: int) -> npt.NDArray[np.int16]:
        if rate not in self._at_rate:
            from voicebot.audio.resample import resample

            self._at_rate[rate] = resample(self.samples, self.rate, rate)
        return self._at_rate[rate]

    def frame_for(self, t: float, rate: int, samples: int) -> bytes:
        """The slice under ``t``; zeros before ``start_at`` and after the end (unless looping)."""
        data = self._resampled(rate)
        start = round((t - self.start_at) * rate)
        if self.loop and len(data):
            idx = np.arange(start, start + samples) % len(data)
            out = np.where(np.arange(start, start + samples) >= 0, data[idx], 0)
            return np.asarray(out, dtype="<i2").tobytes()
        frame = np.zeros(samples, dtype="<i2")
        lo, hi = max(start, 0), min(start + samples, len(data))
        if hi > lo:
            frame[lo - start: hi - start] = data[lo:hi]
        return frame.tobytes()


class CallbackAudio:
    """A reactive caller: ``fn(t)`` returns s16le for the frame at ``t`` (padded or cut to size)."""

    def __init__(self, fn: Callable[[float], bytes]) -> None:
        self.fn = fn

    def frame_for(self, t: float, rate: int, samples: int) -> bytes:
        """``fn(t)`` fitted to ``samples`` samples."""
        data = bytes(self.fn(t))[: 2 * samples]
        return data + bytes(2 * samples - len(data))


def as_caller_audio(audio: CallerAudio | Callable[[float], bytes] | None) -> CallerAudio:
    """None → silence; a bare callable → :class:`CallbackAudio`."""
    if audio is None:
        return Silence()
    if hasattr(audio, "frame_for"):
        return audio
    return CallbackAudio(audio)


@dataclass(frozen=True, slots=True)
class Packet:
    """One frame at an ear: ``at`` monotonic s, payload, encoding (L16 = s16le, PCMU, PCMA), rate (Hz), source.

    ``source``: "engine" (a datagram the engine sent), "agent"/"caller" (a bridged partner's voice), "silence"
    (a bridge's frames before audio flows), "+"-joined when mixed ("engine+agent", "caller+engine").
    """

    at: float
    data: bytes
    codec: str = "L16"
    rate: int = 8000
    source: str = "engine"

    def pcm(self) -> bytes:
        """The payload as s16le (b"" if it cannot be decoded: an odd-length L16 datagram)."""
        return decode(self.data, self.codec) if decodable(self) else b""

    def has(self, source: str) -> bool:
        """True if ``source`` is one of this frame's sources ("agent" is in "engine+agent")."""
        return source in self.source.split("+")


def decodable(packet: Packet) -> bool:
    """False for an odd-length L16 datagram (garbage a test sent)."""
    return packet.codec != "L16" or len(packet.data) % 2 == 0


def dbfs(pcm: bytes) -> float:
    """RMS level of s16le ``pcm`` in dBFS (full-scale sine ≈ -3 dB); :data:`SILENCE_DBFS` for silence."""
    x = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    rms = math.sqrt(float(np.mean(x * x))) if len(x) else 0.0
    return max(SILENCE_DBFS, 20 * math.log10(rms / 32768)) if rms > 0 else SILENCE_DBFS


def mix(*frames: bytes) -> bytes:
    """The sample-wise sum of s16le ``frames``, clipped to int16 (as FreeSWITCH mixes eavesdrop audio)."""
    size = max((len(f) for f in frames), default=0) // 2
    total = np.zeros(size, dtype=np.int32)
    for frame in frames:
        x = np.frombuffer(frame[: len(frame) // 2 * 2], dtype="<i2")
        total[: len(x)] += x
    return np.clip(total, -32768, 32767).astype("<i2").tobytes()
