"""Resampling among 8, 16, 22.05 and 24 kHz with libsoxr (the ``soxr`` package).

libsoxr is a resampler made for this: band-limited, fast (C, SIMD), and
streamable. Two entry points:

- :func:`resample` converts a whole buffer at once (TTS sentences, WAV files):
  high quality ("HQ"), no delay to worry about;
- :class:`StreamResampler` converts a stream chunk by chunk (live audio). soxr
  buffers internally: with the default "MQ" quality a chunk may come back
  empty or in bursts, adding a few tens of ms of delay; "LQ" delays ~20 ms and
  is fine for VAD. "QQ" answers at once but does no anti-aliasing at all: avoid
  it. Call ``flush()`` at the end to get the tail.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

SUPPORTED_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
Int16Array = npt.NDArray[np.int16]


def _check(rate: int) -> None:
    if rate not in SUPPORTED_RATES:
        raise ValueError(f"unsupported sample rate {rate} Hz; supported: {', '.join(map(str, SUPPORTED_RATES))}")


def resample(samples: Int16Array, src_rate: int, dst_rate: int) -> Int16Array:
    """A whole int16 buffer from ``src_rate`` to ``dst_rate`` Hz (HQ)."""
    _check(src_rate)
    _check(dst_rate)
    if src_rate == dst_rate or len(samples) == 0:
        return np.asarray(samples, dtype=np.int16)
    out = soxr.resample(np.asarray(samples, dtype=np.float32), src_rate, dst_rate, quality="HQ")
    return _to_int16(out)


def _to_int16(samples: npt.NDArray[np.float32]) -> Int16Array:
    """Round and clip float samples to int16 (soxr's own int16 output adds dither: digital silence would not stay silent)."""
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)


class StreamResampler:
    """Chunk-by-chunk resampling of one stream (one per call and direction)."""

    def __init__(self, src_rate: int, dst_rate: int, quality: str = "MQ") -> None:
        _check(src_rate)
        _check(dst_rate)
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self._stream = None
        if src_rate != dst_rate:
            self._stream = soxr.ResampleStream(src_rate, dst_rate, 1, dtype="float32", quality=quality)

    def process(self, chunk: Int16Array) -> Int16Array:
        """Resample the next chunk; the result may be shorter or empty while soxr buffers."""
        if self._stream is None:
            return np.asarray(chunk, dtype=np.int16)
        return _to_int16(self._stream.resample_chunk(np.asarray(chunk, dtype=np.float32)))

    def flush(self) -> Int16Array:
        """The buffered tail at the end of the stream."""
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        return _to_int16(self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
