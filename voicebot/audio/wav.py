"""Reading and writing WAV files and slicing arrays into frames.

Reads the WAVs people have: integer PCM of 8 (unsigned), 16, 24 or 32 bits,
32/64-bit IEEE float, G.711 µ-law and A-law, plain or WAVE_FORMAT_EXTENSIBLE,
mono or stereo (stereo is averaged to mono); returns int16 mono (wider samples
are rounded to 16 bits, floats scaled from [-1, 1] and clipped). The RIFF chunks
are parsed here because Python 3.11's :mod:`wave` reads integer PCM only and
soundfile (libsndfile) is not a dependency. Writes 16-bit PCM. Used for caller
recordings, test fixtures, prompts and recordings.
"""

from __future__ import annotations

import os
import struct
import wave

import numpy as np
import numpy.typing as npt

from voicebot.audio.codecs import alaw_to_linear, ulaw_to_linear
from voicebot.audio.frame import AudioFrame
from voicebot.audio.resample import resample

Int16Array = npt.NDArray[np.int16]
PathLike = str | os.PathLike[str]

PCM, IEEE_FLOAT, ALAW, MULAW, EXTENSIBLE = 0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE
SUPPORTED = "expected a WAV of integer PCM (8/16/24/32-bit), 32/64-bit float, or G.711 µ-law/A-law, mono or stereo"
KNOWN_TAGS = {0x0002: "MS ADPCM", 0x0011: "IMA ADPCM", 0x0031: "GSM 6.10", 0x0050: "MPEG", 0x0055: "MP3",
              0x0064: "G.726 ADPCM", 0x0092: "Dolby AC3", 0x1610: "AAC", 0xF1AC: "FLAC"}


class WavFormatError(ValueError):
    """A file that is not a WAV this module reads; the message names the file, the cause and what is expected."""


def _riff_chunks(data: bytes, name: str) -> tuple[bytes, bytes]:
    """(fmt chunk, data chunk) of a RIFF/WAVE file; a data chunk cut short by truncation is kept as far as it goes."""
    if not data:
        raise WavFormatError(f"{name}: empty file (0 bytes); {SUPPORTED}")
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavFormatError(f"{name}: not a WAV file (no RIFF/WAVE header); {SUPPORTED}")
    fmt: bytes | None = None
    payload: bytes | None = None
    pos = 12
    while pos + 8 <= len(data) and (fmt is None or payload is None):
        chunk_id, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8:pos + 8 + size]
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            payload = body
        pos += 8 + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise WavFormatError(f"{name}: a WAV file without a valid 'fmt ' chunk (damaged?); {SUPPORTED}")
    if payload is None:
        raise WavFormatError(f"{name}: a WAV file without a 'data' chunk (damaged or cut short?); {SUPPORTED}")
    return fmt, payload


def _format_of(fmt: bytes) -> tuple[int, int, int, int]:
    """(format tag, channels, rate in Hz, bytes per sample) from a fmt chunk; EXTENSIBLE resolved to its sub-format."""
    tag, channels, rate, _, block_align, _bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # the first two bytes of the SubFormat GUID are the format tag
    width = block_align // channels if channels else 0
    return tag, channels, rate, width


def _to_int32_left_aligned(raw: bytes, width: int) -> npt.NDArray[np.int64]:
    """Interleaved integer samples of ``width`` bytes as int64 scaled to the 32-bit range."""
    if width == 1:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 128) << 24
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.int64) << 16
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int64)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return (value - ((value & 0x800000) << 1)) << 8
    return np.frombuffer(raw, dtype="<i4").astype(np.int64)


def _decode(raw: bytes, tag: int, width: int) -> npt.NDArray[np.int64] | None:
    """Interleaved samples in the 32-bit range, or None for a format/width this module does not read."""
    if tag == PCM and width in (1, 2, 3, 4):
        return _to_int32_left_aligned(raw, width)
    if tag == IEEE_FLOAT and width in (4, 8):
        floats = np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float64)
        floats = np.nan_to_num(floats, nan=0.0, posinf=1.0, neginf=-1.0)
        return np.clip(np.round(floats * 2147483648.0), -2147483648, 2147483647).astype(np.int64)
    if tag in (MULAW, ALAW) and width == 1:
        linear = (ulaw_to_linear if tag == MULAW else alaw_to_linear)(raw)
        return np.frombuffer(linear, dtype="<i2").astype(np.int64) << 16
    return None


def _mix_to_int16(samples: npt.NDArray[np.int64], channels: int) -> Int16Array:
    """Average ``channels`` interleaved 32-bit-range channels and round to int16."""
    total: npt.NDArray[np.int64] = samples.reshape(-1, channels).sum(axis=1)
    scale = channels << 16
    mixed = (total + scale // 2) // scale  # round half up
    return np.clip(mixed, -32768, 32767).astype(np.int16)


def _describe(tag: int, width: int) -> str:
    names = {PCM: "integer PCM", IEEE_FLOAT: "float", MULAW: "µ-law", ALAW: "A-law"}
    if tag in names:
        return f"{8 * width}-bit {names[tag]}"
    return f"{KNOWN_TAGS.get(tag, 'format')} (WAV format tag 0x{tag:04x})"


def read_wav(path: PathLike) -> tuple[Int16Array, int]:
    """(int16 mono samples, rate in Hz) from a WAV file; :class:`WavFormatError` naming the file otherwise.

    A missing file is :class:`FileNotFoundError` (OSError), as for ``open``.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        data = f.read()
    fmt, raw = _riff_chunks(data, name)
    tag, channels, rate, width = _format_of(fmt)
    if channels not in (1, 2) or rate <= 0:
        raise WavFormatError(f"{name}: {channels} channel(s) at {rate} Hz; {SUPPORTED}")
    usable = len(raw) - len(raw) % (width * channels) if width else 0  # a truncated file may end mid-frame
    samples = _decode(raw[:usable], tag, width)
    if samples is None:
        raise WavFormatError(f"{name}: {_describe(tag, width)} is not supported; {SUPPORTED}")
    if channels == 1 and tag == PCM and width == 2:
        return np.frombuffer(raw[:usable], dtype="<i2").astype(np.int16), rate
    return _mix_to_int16(samples, channels), rate


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
