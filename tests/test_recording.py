"""The streamed call recording: bounded memory, stereo layout and alignment, a valid WAV even when cut short."""

from __future__ import annotations

import threading
import wave
from pathlib import Path

import numpy as np

from voicebot.records.recording import FLUSH_EVERY_S, MAX_LEAD_S, MAX_PENDING_S, PATCH_EVERY_S, StereoRecorder

RATE = 8000
FRAME = RATE // 50  # 20 ms


def read_stereo(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, RATE)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)


def numbered(i: int, sign: int) -> np.ndarray:
    """Frame ``i`` marked by its value (caller positive, bot negative), to check alignment sample by sample."""
    return np.full(FRAME, sign * (i % 30000 + 1), np.int16)


def test_an_hour_streams_with_bounded_memory_and_stays_aligned(tmp_path: Path) -> None:
    """One hour at 8 kHz (the old tracks held ~115 MB): never more than a flush's worth waits in memory."""
    recorder = StereoRecorder(tmp_path / "call.wav", RATE)
    frames = 3600 * 50
    most_pending = 0
    for i in range(frames):
        recorder.bot(numbered(i, -1))  # the media clock
        recorder.caller(numbered(i, 1))  # the session thread
        most_pending = max(most_pending, recorder._pending(0), recorder._pending(1))
        if recorder.due():
            recorder.flush()
    recorder.close()
    assert most_pending <= FLUSH_EVERY_S * RATE + FRAME
    both = read_stereo(tmp_path / "call.wav")
    assert len(both) == frames * FRAME
    for i in (0, 1, frames // 2, frames - 1):  # caller left, bot right, the same frame side by side
        assert both[i * FRAME, 0] == i % 30000 + 1 and both[i * FRAME, 1] == -(i % 30000 + 1)


def test_a_call_cut_short_leaves_a_valid_wav(tmp_path: Path) -> None:
    """No close (the engine was killed): the header written along the way covers all but the last second."""
    recorder = StereoRecorder(tmp_path / "cut.wav", RATE)
    for i in range(10 * 50):
        recorder.caller(numbered(i, 1))
        recorder.bot(numbered(i, -1))
        if recorder.due():
            recorder.flush()
    written = recorder.frames_written
    assert written >= 9 * RATE
    assert recorder._file is not None
    recorder._file.flush()  # what the OS has when the process dies; the file is never closed
    both = read_stereo(tmp_path / "cut.wav")
    assert written - PATCH_EVERY_S * RATE <= len(both) <= written


def test_a_side_that_stops_is_padded_and_memory_stays_bounded(tmp_path: Path) -> None:
    """The caller's stream stops (FreeSWITCH stopped sending): the bot side is written on, the caller's is silence."""
    recorder = StereoRecorder(tmp_path / "one.wav", RATE)
    for i in range(50):
        recorder.caller(numbered(i, 1))
    for i in range(60 * 50):
        recorder.bot(numbered(i, -1))
        assert recorder._pending(1) <= (MAX_LEAD_S + FLUSH_EVERY_S) * RATE + FRAME
        if recorder.due():
            recorder.flush()
    recorder.close()
    both = read_stereo(tmp_path / "one.wav")
    assert len(both) == 60 * RATE
    assert np.all(both[RATE:, 0] == 0) and both[0, 0] == 1 and both[-1, 1] == -((60 * 50 - 1) % 30000 + 1)


def test_nobody_flushing_drops_frames_beyond_the_cap(tmp_path: Path) -> None:
    """A stuck session thread never flushes: the media clock's frames are dropped past MAX_PENDING_S, not hoarded."""
    recorder = StereoRecorder(tmp_path / "stuck.wav", RATE)
    for i in range(int((MAX_PENDING_S + 10) * 50)):
        recorder.bot(numbered(i, -1))
    assert recorder._pending(1) <= MAX_PENDING_S * RATE + FRAME
    assert recorder.dropped >= 9 * RATE
    recorder.close()
    assert len(read_stereo(tmp_path / "stuck.wav")) >= MAX_PENDING_S * RATE


def test_a_write_failure_is_contained(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    recorder = StereoRecorder(blocker / "call.wav", RATE)
    for i in range(100):
        recorder.caller(numbered(i, 1))
        recorder.bot(numbered(i, -1))
    recorder.flush()
    assert recorder.failed and not recorder.has_audio
    recorder.bot(numbered(0, -1))
    recorder.close()  # never raises
    assert recorder._pending(1) == 0


def test_two_producers_and_a_flusher_lose_no_sample(tmp_path: Path) -> None:
    """The media clock and the session thread feed at once while the session thread flushes."""
    recorder = StereoRecorder(tmp_path / "race.wav", RATE)
    frames = 1000  # 20 s: under MAX_PENDING_S, so a starved flusher (a loaded machine) cannot make the bound drop frames

    def bot() -> None:
        for i in range(frames):
            recorder.bot(numbered(i, -1))

    feeder = threading.Thread(target=bot)
    feeder.start()
    for i in range(frames):
        recorder.caller(numbered(i, 1))
        if recorder.due():
            recorder.flush()
    feeder.join()
    recorder.close()
    both = read_stereo(tmp_path / "race.wav")  # longer when one side ran over a second ahead (padded, not lost)
    assert int(np.count_nonzero(both[:, 0])) == int(np.count_nonzero(both[:, 1])) == frames * FRAME
