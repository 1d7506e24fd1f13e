"""G.711 codecs: bit-exact with a scalar transcription of the ITU-T/Sun reference ``g711.c``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from voicebot.audio import codecs
from voicebot.audio.codecs import alaw_to_linear, decode, encode, linear_to_alaw, linear_to_ulaw, ulaw_to_linear
from voicebot.audio.wav import read_wav

SPEECH = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"
ALL_PCM = np.arange(-32768, 32768, dtype="<i2")
ALL_CODES = bytes(range(256))

# ------------------------------------------------------------- scalar reference (g711.c, line by line)

SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _search(val: int, table: tuple[int, ...]) -> int:
    for i, end in enumerate(table):
        if val <= end:
            return i
    return len(table)


def ref_linear2ulaw(pcm_val: int) -> int:
    pcm_val >>= 2
    if pcm_val < 0:
        pcm_val, mask = -pcm_val, 0x7F
    else:
        mask = 0xFF
    pcm_val = min(pcm_val, 8159) + (0x84 >> 2)
    seg = _search(pcm_val, SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm_val >> (seg + 1)) & 0xF)) ^ mask


def ref_ulaw2linear(u_val: int) -> int:
    u_val = ~u_val & 0xFF
    t = ((u_val & 0x0F) << 3) + 0x84
    t <<= (u_val & 0x70) >> 4
    return 0x84 - t if u_val & 0x80 else t - 0x84


def ref_linear2alaw(pcm_val: int) -> int:
    pcm_val >>= 3
    if pcm_val >= 0:
        mask = 0xD5
    else:
        mask, pcm_val = 0x55, -pcm_val - 1
    seg = _search(pcm_val, SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm_val >> 1) & 0xF if seg < 2 else (pcm_val >> seg) & 0xF
    return aval ^ mask


def ref_alaw2linear(a_val: int) -> int:
    a_val ^= 0x55
    t = (a_val & 0x0F) << 4
    seg = (a_val & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a_val & 0x80 else -t


def _pcm(values: list[int]) -> bytes:
    return np.array(values, dtype="<i2").tobytes()


# ------------------------------------------------------------- bit-exactness


def test_ulaw_encode_matches_reference_for_all_65536_samples():
    expected = bytes(ref_linear2ulaw(int(v)) for v in ALL_PCM)
    assert linear_to_ulaw(ALL_PCM.tobytes()) == expected


def test_alaw_encode_matches_reference_for_all_65536_samples():
    expected = bytes(ref_linear2alaw(int(v)) for v in ALL_PCM)
    assert linear_to_alaw(ALL_PCM.tobytes()) == expected


def test_decode_matches_reference_for_all_256_codes():
    assert ulaw_to_linear(ALL_CODES) == _pcm([ref_ulaw2linear(c) for c in ALL_CODES])
    assert alaw_to_linear(ALL_CODES) == _pcm([ref_alaw2linear(c) for c in ALL_CODES])


def test_well_known_code_points():
    # silence and full scale, from the G.711 tables
    assert linear_to_ulaw(_pcm([0, 32767, -32768])) == bytes([0xFF, 0x80, 0x00])
    assert linear_to_alaw(_pcm([0, 32767, -32768])) == bytes([0xD5, 0xAA, 0x2A])
    assert ulaw_to_linear(bytes([0xFF, 0x7F, 0x80, 0x00])) == _pcm([0, 0, 32124, -32124])
    assert alaw_to_linear(bytes([0xD5, 0x55, 0xAA, 0x2A])) == _pcm([8, -8, 32256, -32256])


def test_matches_audioop_where_python_still_has_it():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")  # removed in Python 3.13
    pcm = ALL_PCM.tobytes()
    assert linear_to_ulaw(pcm) == audioop.lin2ulaw(pcm, 2)
    assert linear_to_alaw(pcm) == audioop.lin2alaw(pcm, 2)
    assert ulaw_to_linear(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert alaw_to_linear(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


# ------------------------------------------------------------- round trips and quality


@pytest.mark.parametrize(("enc", "dec"), [(linear_to_ulaw, ulaw_to_linear), (linear_to_alaw, alaw_to_linear)])
def test_encode_decode_is_idempotent(enc, dec):
    once = dec(enc(ALL_PCM.tobytes()))
    assert dec(enc(once)) == once  # decoded values are exact code points
    assert enc(once) == enc(ALL_PCM.tobytes())


def test_codes_survive_decode_encode():
    # every A-law code is distinct; µ-law has two zeros (0x7F "negative zero" encodes back as 0xFF)
    assert linear_to_alaw(alaw_to_linear(ALL_CODES)) == ALL_CODES
    expected_u = bytes(0xFF if c == 0x7F else c for c in ALL_CODES)
    assert linear_to_ulaw(ulaw_to_linear(ALL_CODES)) == expected_u


@pytest.mark.parametrize(("enc", "dec"), [(linear_to_ulaw, ulaw_to_linear), (linear_to_alaw, alaw_to_linear)])
def test_quantisation_error_is_logarithmic(enc, dec):
    x = ALL_PCM.astype(np.int64)
    err = np.abs(np.frombuffer(dec(enc(ALL_PCM.tobytes())), dtype="<i2").astype(np.int64) - x)
    inside = np.abs(x) <= 32000  # beyond, µ-law clips at ±32124 / A-law at ±32256
    assert np.all(err[inside] <= np.abs(x[inside]) // 30 + 16)
    assert err.max() <= 650


@pytest.mark.parametrize(("enc", "dec"), [(linear_to_ulaw, ulaw_to_linear), (linear_to_alaw, alaw_to_linear)])
def test_speech_round_trip_snr_is_telephone_quality(enc, dec):
    speech, _ = read_wav(SPEECH)
    y = np.frombuffer(dec(enc(speech.tobytes())), dtype="<i2").astype(np.float64)
    noise = y - speech
    snr_db = 10 * np.log10(np.sum(speech.astype(np.float64) ** 2) / np.sum(noise**2))
    assert snr_db > 30.0


def test_one_20ms_frame_sizes():
    payload = bytes(range(160))
    assert len(ulaw_to_linear(payload)) == 320
    assert len(linear_to_alaw(bytes(320))) == 160
    assert ulaw_to_linear(b"") == b"" and linear_to_ulaw(b"") == b""


def test_tables_are_read_only():
    with pytest.raises(ValueError):
        codecs.ULAW_ENCODE[0] = 1


# ------------------------------------------------------------- dispatch


def test_decode_and_encode_by_codec_name():
    ulaw = linear_to_ulaw(ALL_PCM[::97].tobytes())
    assert decode(ulaw, "PCMU") == ulaw_to_linear(ulaw)
    assert decode(ulaw, "pcma") == alaw_to_linear(ulaw)
    pcm = ALL_PCM[::97].tobytes()
    assert encode(pcm, "PCMU") == ulaw
    assert encode(pcm, "PCMA") == linear_to_alaw(pcm)
    assert decode(pcm, "L16") == pcm and encode(pcm, "l16") == pcm


@pytest.mark.parametrize("codec", ["G722", "opus", "", "ulaw"])
def test_unknown_codec_is_a_clear_error(codec):
    with pytest.raises(ValueError, match=r"unsupported audio codec.*L16, PCMU, PCMA"):
        decode(b"\x00\x00", codec)
    with pytest.raises(ValueError, match="unsupported audio codec"):
        encode(b"\x00\x00", codec)


@pytest.mark.parametrize("call", [lambda: linear_to_ulaw(b"\x00"), lambda: linear_to_alaw(b"abc"),
                                  lambda: encode(b"\x00", "L16"), lambda: decode(b"\x00", "L16")])
def test_odd_length_pcm_is_rejected(call):
    with pytest.raises(ValueError, match="even number of bytes"):
        call()


@pytest.mark.parametrize("codec", ["L16", "PCMU", "PCMA", "pcmu", "l16"])
def test_the_media_path_fast_cases_agree_with_the_general_ones(codec):
    pcm = np.random.default_rng(7).integers(-32768, 32767, 160, dtype=np.int16).tobytes()
    wire = {"L16": pcm, "PCMU": linear_to_ulaw(pcm), "PCMA": linear_to_alaw(pcm)}[codec.upper()]
    assert encode(pcm, codec) == wire
    back = {"L16": bytes(wire), "PCMU": ulaw_to_linear(wire), "PCMA": alaw_to_linear(wire)}[codec.upper()]
    assert decode(wire, codec) == back
    with pytest.raises(ValueError):
        encode(pcm[:-1], codec)
    if codec.upper() == "L16":
        with pytest.raises(ValueError):
            decode(pcm[:-1], codec)
