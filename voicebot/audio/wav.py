"""Reading and writing WAV files (stdlib :mod:`wave`) and slicing arrays into frames.

Reads integer PCM WAVs of 8 (unsigned), 16, 24 or 32 bits, mono or stereo
(stereo is averaged to mono), and returns int16 mono: wider samples are rounded
to 16 bits. Writes 16-bit PCM. Used for test fixtures, prompts and recordings.
"""

from __future__ import annotations

import os
import wave

import numpy as np
import numpy.typing as npt

from voicebot.audio.frame import AudioFrame
from voicebot.audio.resample import resample

Int16Array = npt.NDArray[np.int16]
PathLike = str | os.PathLike[str]


def _to_int32_left_aligned(raw: bytes, width: int) -> npt.NDArray[np.int64]:
    """Interleaved samples of ``width`` bytes as int64 scaled to the 32-bit range."""
    if width == 1:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 128) << 24
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.int64) << 16
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int64)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return (value - ((value & 0x800000) << 1)) << 8
    return np.frombuffer(raw, dtype="<i4").astype(np.int64)


def _mix_to_int16(samples: npt.NDArray[np.int64], channels: int) -> Int16Array:
    """Average ``channels`` interleaved 32-bit-range channels and round to int16."""
    total: npt.NDArray[np.int64] = samples.reshape(-1, channels).sum(axis=1)
    scale = channels << 16
    mixed = (total + scale // 2) // scale  # round half up
    return np.clip(mixed, -32768, 32767).astype(np.int16)


def read_wav(path: PathLike) -> tuple[Int16Array, int]:
    """(int16 mono samples, rate in Hz) from an integer PCM WAV; ValueError naming the file otherwise."""
    try:
        with wave.open(os.fspath(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{os.fspath(path)}: not a readable PCM WAV file ({exc}); expected integer PCM, "
                         "8/16/24/32-bit, mono or stereo") from exc
    if channels not in (1, 2) or width not in (1, 2, 3, 4):
        raise ValueError(f"{os.fspath(path)}: {channels} channel(s) of {8 * width}-bit audio; "
                         "expected integer PCM, 8/16/24/32-bit, mono or stereo")
    usable = len(raw) - len(raw) % (width * channels)  # a truncated file may end mid-frame
    if channels == 1 and width == 2:
        return np.frombuffer(raw[:usable], dtype="<i2").astype(np.int16), rate
    return _mix_to_int16(_to_int32_left_aligned(raw[:usable], width), channels), rate


def read_wav_at(path: PathLike, rate: int) -> Int16Array:
    """int16 mono samples of a WAV file resampled to ``rate`` Hz (soxr HQ)."""
    samples, src_rate = read_wav(path)
    return resample(samples, src_rate, rate)


def _as_int16(samples: npt.ArrayLike, what: str) -> Int16Array:
    array = np.asarray(samples)
    if array.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of samples, got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        array = np.clip(np.round(array * 32767.0), -32768, 32767)
    return array.astype("<i2")


def _write(path: PathLike, interleaved: Int16Array, channels: int, rate: int) -> None:
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(interleaved.astype("<i2").tobytes())


def write_wav(path: PathLike, samples: npt.ArrayLike, rate: int) -> None:
    """A 16-bit mono WAV from int16 samples (floats in [-1, 1] are scaled and clipped)."""
    _write(path, _as_int16(samples, "samples"), 1, rate)


def write_stereo_wav(path: PathLike, left: npt.ArrayLike, right: npt.ArrayLike, rate: int) -> None:
    """A 16-bit stereo WAV; the shorter channel is padded with silence."""
    a, b = _as_int16(left, "left"), _as_int16(right, "right")
    both = np.zeros((max(len(a), len(b)), 2), dtype="<i2")
    both[: len(a), 0] = a
    both[: len(b), 1] = b
    _write(path, both.reshape(-1), 2, rate)


def frames_from_array(samples: npt.ArrayLike, rate: int, frame_ms: int = 20,
                      start_at: float = 0.0) -> list[AudioFrame]:
    """``frame_ms`` frames (seq 0.., captured_at = start_at + offset in s); the last is padded with silence."""
    if (rate * frame_ms) % 1000 or frame_ms <= 0:
        raise ValueError(f"{frame_ms} ms at {rate} Hz is not a whole positive number of samples")
    array = _as_int16(samples, "samples")
    size = rate * frame_ms // 1000
    count = -(-len(array) // size)
    padded = np.zeros(count * size, dtype="<i2")
    padded[: len(array)] = array
    return [AudioFrame(padded[i * size:(i + 1) * size].tobytes(), rate, i, start_at + i * frame_ms / 1000)
            for i in range(count)]
