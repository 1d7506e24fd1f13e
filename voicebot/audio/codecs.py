"""G.711 µ-law and A-law, bit-exact with the ITU-T reference (Sun's ``g711.c``).

FreeSWITCH's unicast with ``flags: native`` sends 8 kHz G.711 bytes (160 per
20 ms frame) instead of s16le. Conversion is a numpy table lookup: the 256-entry
decode tables and the 65536-entry encode tables (indexed by the sample's bit
pattern as uint16) are built once at import with vectorised segment math, so a
20 ms frame costs one ``np.take`` (about a microsecond plus call overhead).

This is the algorithm of Python's old ``audioop`` (``ulaw2lin``/``lin2ulaw``/
``alaw2lin``/``lin2alaw`` with width 2), which is gone from Python 3.13.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

CODECS = ("L16", "PCMU", "PCMA")

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159
_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype("<i2")


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = ((a & 0x0F) << 4) + np.where(seg == 0, 8, 0x108)
    t = t << np.maximum(seg - 1, 0)
    table: npt.NDArray[np.int16] = np.where(a & 0x80, t, -t).astype("<i2")
    return table


def _all_samples() -> npt.NDArray[np.int32]:
    """Every int16 value, ordered by its bit pattern read as uint16 (the encode-table index)."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = _all_samples() >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, mag, side="left")  # first segment with mag <= end
    uval = (seg << 4) | ((mag >> (seg + 1)) & 0x0F)
    return (np.where(seg >= 8, 0x7F, uval) ^ mask).astype(np.uint8)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = _all_samples() >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_ALAW_SEG_END, mag, side="left")
    aval = (seg << 4) | ((mag >> np.maximum(seg, 1)) & 0x0F)
    return (np.where(seg >= 8, 0x7F, aval) ^ mask).astype(np.uint8)


ULAW_DECODE = _ulaw_decode_table()
ALAW_DECODE = _alaw_decode_table()
ULAW_ENCODE = _ulaw_encode_table()
ALAW_ENCODE = _alaw_encode_table()
for _table in (ULAW_DECODE, ALAW_DECODE, ULAW_ENCODE, ALAW_ENCODE):
    _table.flags.writeable = False


def _pcm_index(pcm: bytes) -> npt.NDArray[np.uint16]:
    if len(pcm) % 2:
        raise ValueError(f"s16le audio needs an even number of bytes, got {len(pcm)}")
    return np.frombuffer(pcm, dtype="<u2")


def ulaw_to_linear(data: bytes) -> bytes:
    """G.711 µ-law bytes (one per sample) to s16le bytes (twice as long)."""
    return ULAW_DECODE.take(np.frombuffer(data, dtype=np.uint8)).tobytes()


def alaw_to_linear(data: bytes) -> bytes:
    """G.711 A-law bytes (one per sample) to s16le bytes (twice as long)."""
    return ALAW_DECODE.take(np.frombuffer(data, dtype=np.uint8)).tobytes()


def linear_to_ulaw(pcm: bytes) -> bytes:
    """s16le bytes to G.711 µ-law bytes (half as long); ValueError for an odd length."""
    return ULAW_ENCODE.take(_pcm_index(pcm)).tobytes()


def linear_to_alaw(pcm: bytes) -> bytes:
    """s16le bytes to G.711 A-law bytes (half as long); ValueError for an odd length."""
    return ALAW_ENCODE.take(_pcm_index(pcm)).tobytes()


def _normalise(codec: str) -> str:
    name = codec.upper()
    if name not in CODECS:
        raise ValueError(f"unsupported audio codec {codec!r}; supported: {', '.join(CODECS)}")
    return name


def decode(payload: bytes, codec: str) -> bytes:
    """Payload in ``codec`` ("L16" = s16le as FreeSWITCH sends it, "PCMU", "PCMA"; any case) to s16le."""
    if codec == "L16" and not len(payload) % 2:  # the media path's common cases first: a frame per 20 ms per call
        return bytes(payload)
    if codec == "PCMU":
        return ULAW_DECODE.take(np.frombuffer(payload, dtype=np.uint8)).tobytes()
    name = _normalise(codec)
    if name == "PCMU":
        return ulaw_to_linear(payload)
    if name == "PCMA":
        return alaw_to_linear(payload)
    if len(payload) % 2:
        raise ValueError(f"L16 (s16le) payload needs an even number of bytes, got {len(payload)}")
    return bytes(payload)


def encode(pcm: bytes, codec: str) -> bytes:
    """s16le bytes to ``codec`` ("L16", "PCMU", "PCMA"; any case)."""
    if not len(pcm) % 2 and codec in ("L16", "PCMU"):  # the media path's common cases first
        return bytes(pcm) if codec == "L16" else ULAW_ENCODE.take(np.frombuffer(pcm, dtype="<u2")).tobytes()
    name = _normalise(codec)
    if name == "PCMU":
        return linear_to_ulaw(pcm)
    if name == "PCMA":
        return linear_to_alaw(pcm)
    _pcm_index(pcm)
    return bytes(pcm)
