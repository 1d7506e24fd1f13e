"""Re-framing chunks into exact frames, and WAV reading/writing."""

from __future__ import annotations

import struct
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.audio.codecs import alaw_to_linear, ulaw_to_linear
from voicebot.audio.frame import AudioFrame
from voicebot.audio.reframe import Reframer
from voicebot.audio.resample import resample
from voicebot.audio.wav import WavFormatError, frames_from_array, read_wav, read_wav_at, write_stereo_wav, write_wav

SPEECH = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav"

# ------------------------------------------------------------- Reframer


def _random_pcm(nbytes: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8).tobytes()


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 1500), max_size=40),
       rate_ms=st.sampled_from([(8000, 10), (8000, 20), (8000, 30), (16000, 20), (22050, 20), (24000, 10)]),
       seed=st.integers(0, 2**16))
def test_raw_chunks_of_any_size_come_back_exactly(sizes, rate_ms, seed):
    rate, frame_ms = rate_ms
    data = _random_pcm(sum(sizes), seed)
    reframer = Reframer(rate, frame_ms)
    frames: list[AudioFrame] = []
    pos = 0
    for size in sizes:
        frames += reframer.push(data[pos:pos + size])
        pos += size
    full = list(frames)
    frames += reframer.flush(pad=False)
    frame_bytes = 2 * rate * frame_ms // 1000
    assert all(len(f.samples) == frame_bytes for f in full)
    assert len(full) == len(data) // frame_bytes
    assert b"".join(f.samples for f in frames) == data[: len(data) - len(data) % 2]  # a dangling half sample is dropped
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert all(f.rate == rate for f in frames)
    # untimed chunks follow each other without a gap: frame k starts k * frame_ms in
    assert [f.captured_at for f in full] == pytest.approx([k * frame_ms / 1000 for k in range(len(full))])


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 700), min_size=1, max_size=30),
       jitter=st.lists(st.floats(0.0, 0.05), min_size=30, max_size=30), seed=st.integers(0, 2**16))
def test_timestamps_come_from_the_chunk_holding_the_first_sample(sizes, jitter, seed):
    rate = 8000
    reframer = Reframer(rate, 20)
    starts, times, frames = [], [], []
    pos, t = 0, 100.0
    for size, gap in zip(sizes, jitter, strict=False):
        chunk = _random_pcm(2 * size, seed + pos)
        starts.append(pos)
        times.append(t)
        frames += reframer.push(AudioFrame(chunk, rate, seq=99, captured_at=t))
        pos += size
        t += size / rate + gap  # a late packet leaves a gap in the timeline
    frames += reframer.flush()
    for frame in frames:
        first = frame.seq * 160
        i = max(j for j, s in enumerate(starts) if s <= first)
        assert frame.captured_at == pytest.approx(times[i] + (first - starts[i]) / rate)


def test_flush_pads_the_last_partial_frame_with_silence():
    reframer = Reframer(16000)
    assert reframer.push(b"\x01\x02" * 500) == [AudioFrame(b"\x01\x02" * 320, 16000, 0, 0.0)]
    assert reframer.buffered_bytes == 360
    (last,) = reframer.flush()
    assert last.samples == b"\x01\x02" * 180 + bytes(280)
    assert last.seq == 1 and last.captured_at == pytest.approx(0.02)
    assert reframer.flush() == [] and reframer.buffered_bytes == 0


def test_flush_without_padding_returns_the_short_frame():
    reframer = Reframer(8000, 30)
    assert reframer.push(bytes(500)) == [AudioFrame(bytes(480), 8000, 0, 0.0)]
    (short,) = reframer.flush(pad=False)
    assert len(short.samples) == 20


def test_explicit_time_for_raw_bytes_and_continuing_after_it():
    reframer = Reframer(8000)
    assert reframer.push(bytes(320), captured_at=5.0)[0].captured_at == 5.0
    assert reframer.push(bytes(320))[0].captured_at == pytest.approx(5.02)


def test_reset_starts_again():
    reframer = Reframer(8000)
    reframer.push(bytes(500), captured_at=3.0)
    reframer.reset()
    (frame,) = reframer.push(bytes(320))
    assert (frame.seq, frame.captured_at, reframer.buffered_bytes) == (0, 0.0, 0)


def test_wrong_rate_and_impossible_frame_sizes_are_rejected():
    with pytest.raises(ValueError, match="16000 Hz pushed into a 8000 Hz"):
        Reframer(8000).push(AudioFrame(bytes(640), 16000))
    with pytest.raises(ValueError, match="not a whole number of samples"):
        Reframer(22050, 10)
    with pytest.raises(ValueError, match="positive"):
        Reframer(8000, 0)


def _push_seconds(seconds: int) -> float:
    """The best of three times (s) to push ``seconds`` of 8 kHz audio in one chunk."""
    data = bytes(2 * 8000 * seconds)
    best = float("inf")
    for _ in range(3):
        reframer = Reframer(8000)
        start = time.perf_counter()
        reframer.push(data)
        best = min(best, time.perf_counter() - start)
    return best


def test_one_huge_chunk_is_linear_time():
    # copying the rest of the buffer per frame is quadratic: 4x the audio costs ~16x; linear costs ~4-5x (sizes
    # past the CPU caches). A ratio, not a time limit, so a loaded machine does not fail it.
    ratio = _push_seconds(160) / _push_seconds(40)
    assert ratio < 10, f"4x the audio took {ratio:.1f}x the time"
    frames = Reframer(8000).push(bytes(2 * 8000 * 600))  # 10 minutes at 8 kHz in one push: 30000 frames
    assert len(frames) == 30000 and frames[-1].captured_at == pytest.approx(599.98)


# ------------------------------------------------------------- WAV


def test_mono_round_trip_is_exact(tmp_path):
    samples = np.random.default_rng(1).integers(-32768, 32768, 8001).astype(np.int16)
    samples[:2] = (-32768, 32767)
    write_wav(tmp_path / "a.wav", samples, 8000)
    back, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000 and back.dtype == np.int16
    np.testing.assert_array_equal(back, samples)


def test_write_wav_scales_and_clips_floats(tmp_path):
    write_wav(tmp_path / "f.wav", np.array([0.0, 0.5, -1.0, 2.0]), 16000)
    np.testing.assert_array_equal(read_wav(tmp_path / "f.wav")[0], [0, 16384, -32767, 32767])


def test_stereo_is_padded_written_interleaved_and_mixed_down(tmp_path):
    left = np.array([100, -200, 32767, 32767, 7], dtype=np.int16)
    right = np.array([300, -201, 32767], dtype=np.int16)
    write_stereo_wav(tmp_path / "s.wav", left, right, 16000)
    with wave.open(str(tmp_path / "s.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 2, 16000, 5)
        raw = np.frombuffer(w.readframes(5), dtype="<i2").reshape(-1, 2)
    np.testing.assert_array_equal(raw[:, 0], left)
    np.testing.assert_array_equal(raw[:, 1], [300, -201, 32767, 0, 0])
    mono, rate = read_wav(tmp_path / "s.wav")
    assert rate == 16000
    np.testing.assert_array_equal(mono, [200, -200, 32767, 16384, 4])  # mean, rounded half up


def _write_raw_wav(path: Path, raw: bytes, width: int, channels: int = 1, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def test_8_bit_unsigned_is_read_as_int16(tmp_path):
    _write_raw_wav(tmp_path / "u8.wav", bytes([0, 128, 255, 129]), 1)
    np.testing.assert_array_equal(read_wav(tmp_path / "u8.wav")[0], [-32768, 0, 32512, 256])


def test_24_and_32_bit_are_rounded_to_16_bits(tmp_path):
    values24 = [0x7FFFFF, -0x800000, 0x000180, -0x000080, 0x12345]
    raw24 = b"".join(struct.pack("<i", v)[:3] for v in values24)
    _write_raw_wav(tmp_path / "24.wav", raw24, 3)
    np.testing.assert_array_equal(read_wav(tmp_path / "24.wav")[0], [32767, -32768, 2, 0, 0x123])
    values32 = [0x7FFFFFFF, -0x80000000, 0x00018000, 0x7FFF8000]
    _write_raw_wav(tmp_path / "32.wav", struct.pack("<4i", *values32), 4)
    np.testing.assert_array_equal(read_wav(tmp_path / "32.wav")[0], [32767, -32768, 2, 32767])


def test_24_bit_stereo_mix(tmp_path):
    raw = b"".join(struct.pack("<i", v)[:3] for v in (0x100000, 0x300000, -0x100, -0x100))
    _write_raw_wav(tmp_path / "24s.wav", raw, 3, channels=2)
    np.testing.assert_array_equal(read_wav(tmp_path / "24s.wav")[0], [0x2000, -1])


def _wav_bytes(tag: int, data: bytes, width: int, channels: int = 1, rate: int = 8000, extensible: bool = False) -> bytes:
    """A RIFF/WAVE file by hand: the stdlib's wave module writes integer PCM only."""
    bits, align = 8 * width, width * channels
    if extensible:  # WAVE_FORMAT_EXTENSIBLE: the real format tag opens the SubFormat GUID
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * align, align, bits, 22, bits, 0)
        fmt += struct.pack("<H", tag) + bytes.fromhex("000000001000800000aa00389b71")
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_float_wavs_are_scaled_and_clipped(tmp_path):
    (tmp_path / "f32.wav").write_bytes(_wav_bytes(3, struct.pack("<4f", 0.0, 0.5, -0.5, 1.5), 4))
    np.testing.assert_array_equal(read_wav(tmp_path / "f32.wav")[0], [0, 16384, -16384, 32767])
    (tmp_path / "f64.wav").write_bytes(_wav_bytes(3, struct.pack("<4d", 0.25, -1.0, 0.25, -1.0), 8, channels=2))
    np.testing.assert_array_equal(read_wav(tmp_path / "f64.wav")[0], [-12288, -12288])


def test_g711_wavs_are_decoded(tmp_path):
    ulaw, alaw = bytes([0xFF, 0x00, 0x80]), bytes([0xD5, 0x2A, 0xAA])
    (tmp_path / "u.wav").write_bytes(_wav_bytes(7, ulaw, 1))
    (tmp_path / "a.wav").write_bytes(_wav_bytes(6, alaw, 1, extensible=True))
    np.testing.assert_array_equal(read_wav(tmp_path / "u.wav")[0], np.frombuffer(ulaw_to_linear(ulaw), "<i2"))
    np.testing.assert_array_equal(read_wav(tmp_path / "a.wav")[0], np.frombuffer(alaw_to_linear(alaw), "<i2"))
    assert read_wav(tmp_path / "u.wav")[0][2] == 32124


def test_24_bit_extensible_is_read(tmp_path):
    raw = b"".join(struct.pack("<i", v)[:3] for v in (0x7FFFFF, -0x800000, 0x000180))
    (tmp_path / "ext24.wav").write_bytes(_wav_bytes(1, raw, 3, rate=48000, extensible=True))
    samples, rate = read_wav(tmp_path / "ext24.wav")
    assert rate == 48000
    np.testing.assert_array_equal(samples, [32767, -32768, 2])


def test_unsupported_files_are_rejected_naming_the_file_and_what_is_read(tmp_path):
    _write_raw_wav(tmp_path / "three.wav", bytes(12), 2, channels=3)
    (tmp_path / "junk.wav").write_bytes(b"this is not a wav file at all")
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "adpcm.wav").write_bytes(_wav_bytes(2, bytes(16), 1))
    (tmp_path / "cut.wav").write_bytes(_wav_bytes(1, bytes(16), 2)[:30])
    causes = {"three.wav": "3 channel", "junk.wav": "not a WAV file", "empty.wav": "empty file",
              "adpcm.wav": "MS ADPCM", "cut.wav": "fmt"}
    for name, cause in causes.items():
        with pytest.raises(WavFormatError, match=rf"{name}: .*{cause}.*expected a WAV of integer PCM \(8/16/24/32-bit\), "
                           r"32/64-bit float, or G.711"):
            read_wav(tmp_path / name)


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_wav(tmp_path / "nope.wav")


def test_read_wav_at_resamples_real_speech():
    speech16, rate = read_wav(SPEECH)
    assert rate == 16000
    speech8 = read_wav_at(SPEECH, 8000)
    assert len(speech8) == len(speech16) // 2
    np.testing.assert_array_equal(speech8, resample(speech16, 16000, 8000))
    np.testing.assert_array_equal(read_wav_at(SPEECH, 16000), speech16)


def test_frames_from_array_pads_the_last_frame_and_times_each():
    samples = np.arange(1, 401, dtype=np.int16)
    frames = frames_from_array(samples, 8000, start_at=2.0)
    assert [len(f.samples) for f in frames] == [320, 320, 320]
    assert [f.seq for f in frames] == [0, 1, 2]
    assert [f.captured_at for f in frames] == pytest.approx([2.0, 2.02, 2.04])
    joined = np.concatenate([f.to_array() for f in frames])
    np.testing.assert_array_equal(joined[:400], samples)
    assert not joined[400:].any()
    assert frames_from_array(np.zeros(0, dtype=np.int16), 8000) == []
    assert len(frames_from_array(np.zeros(480, dtype=np.int16), 16000, frame_ms=30)) == 1


def test_wav_to_frames_to_wav_round_trip(tmp_path):
    speech, rate = read_wav(SPEECH)
    frames = frames_from_array(speech, rate)
    write_wav(tmp_path / "r.wav", np.concatenate([f.to_array() for f in frames]), rate)
    back, _ = read_wav(tmp_path / "r.wav")
    np.testing.assert_array_equal(back[: len(speech)], speech)
    assert len(back) == 320 * len(frames) and not back[len(speech):].any()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-32768, 32767), min_size=1, max_size=480))
def test_rms_dbfs_is_the_rms_in_decibels_of_full_scale(samples):
    x = np.array(samples, dtype=np.int16)
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    expected = max(-120.0, 20 * np.log10(rms / 32768.0)) if rms > 0 else -120.0
    assert AudioFrame.from_array(x, 8000).rms_dbfs() == pytest.approx(expected, abs=1e-9)


def test_rms_dbfs_of_silence_a_full_scale_square_and_nothing():
    assert AudioFrame.silence(8000).rms_dbfs() == -120.0
    assert AudioFrame(b"", 8000).rms_dbfs() == -120.0
    square = np.tile(np.array([32767, -32768], dtype=np.int16), 80)
    assert AudioFrame.from_array(square, 8000).rms_dbfs() == pytest.approx(0.0, abs=1e-3)
    assert AudioFrame.from_array(square // 10, 8000).rms_dbfs() == pytest.approx(-20.0, abs=1e-3)
