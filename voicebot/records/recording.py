"""A call's stereo recording (caller left, bot right), streamed to a WAV file as the call goes.

Two producers feed it: the media clock (the bot's frames, one per send tick,
silence included) and the call's session thread (the caller's frames as they
arrive). :meth:`StereoRecorder.flush` pairs what both sides have and appends it
to the file, so memory per call stays bounded (at most ``MAX_PENDING_S`` of
audio per side); when one side runs ahead by more than ``MAX_LEAD_S`` (the
caller's stream stopped, say) the other is padded with silence, as
:func:`~voicebot.audio.wav.write_stereo_wav` pads the shorter channel.

The header's sizes are fixed up every ``PATCH_EVERY_S`` of audio and at
:meth:`close`, so a call cut short (a crash, a kill) still leaves a valid WAV
holding all but the last second. A write failure is logged once; the
recorder then drops frames (the call and its record carry on).
"""

from __future__ import annotations

import collections
import contextlib
import os
import struct
import threading
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from voicebot.logs import get_logger

MAX_LEAD_S = 1.0  # one side may run this far (s) ahead of the other before the other is padded with silence
MAX_PENDING_S = 30.0  # per side, at most this much audio (s) waits for a flush; beyond, frames are dropped (and counted)
FLUSH_EVERY_S = 0.5  # the session thread appends to the file once this much audio (s) is pending
PATCH_EVERY_S = 1.0  # the header's sizes are rewritten every this much audio (s) written
HEADER_BYTES = 44

Samples = npt.NDArray[np.int16]
log = get_logger("records.recording")


def wav_header(rate: int, frames: int, channels: int = 2) -> bytes:
    """A 44-byte RIFF/WAVE header for ``frames`` frames of 16-bit PCM."""
    data = frames * channels * 2
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data, b"WAVE", b"fmt ", 16, 1, channels, rate,
                       rate * channels * 2, channels * 2, 16, b"data", data)


class StereoRecorder:
    """Caller frames in (:meth:`caller`), bot frames in (:meth:`bot`), a growing WAV at ``path`` out.

    :meth:`caller` and :meth:`bot` never block and never touch the disk (each side has one producer);
    :meth:`flush` and :meth:`close` write, under a lock, from whichever thread calls them (not the hub).
    """

    def __init__(self, path: Path, rate: int) -> None:
        self.path = path
        self.rate = rate
        self.frames_written = 0  # stereo frames in the file
        self.dropped = 0  # mono samples dropped (a side too far behind a flush, or after a failure)
        self.failed = False
        self.closed = False
        self._caller: collections.deque[Samples] = collections.deque()
        self._bot: collections.deque[Samples] = collections.deque()
        self._queued = [0, 0]  # samples put so far: caller, bot (each written by its producer only)
        self._taken = [0, 0]  # samples taken by flushes so far (written under the lock only)
        self._carry: list[Samples] = [np.zeros(0, np.int16), np.zeros(0, np.int16)]  # taken, not yet written
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._patched_at = 0

    # ------------------------------------------------------------ producers (never block)

    def caller(self, samples: Samples) -> None:
        """One caller frame as it arrived (the session thread)."""
        self._put(self._caller, 0, samples)

    def bot(self, samples: Samples) -> None:
        """One bot frame as it was sent, silence included (the media clock)."""
        self._put(self._bot, 1, samples)

    def _put(self, side: collections.deque[Samples], index: int, samples: Samples) -> None:
        if self.closed or self.failed or self._pending(index) > MAX_PENDING_S * self.rate:
            self.dropped += len(samples)
            return
        side.append(samples)
        self._queued[index] += len(samples)

    def _pending(self, index: int) -> int:
        return self._queued[index] - self._taken[index]

    @property
    def has_audio(self) -> bool:
        """True when the recording holds (or will hold) some audio and has not failed."""
        return not self.failed and (self.frames_written > 0 or self._queued[0] > 0 or self._queued[1] > 0)

    # ------------------------------------------------------------ writing (off the hub)

    def due(self) -> bool:
        """True when enough audio is pending to be worth a write."""
        return max(self._pending(0), self._pending(1)) >= FLUSH_EVERY_S * self.rate and not self.failed and not self.closed

    def flush(self, *, final: bool = False) -> None:
        """Append what both sides have (``final``: everything, the shorter side padded with silence)."""
        with self._lock:
            if self.closed or self.failed:
                return
            caller, bot = self._take(self._caller, 0), self._take(self._bot, 1)
            lead = int(MAX_LEAD_S * self.rate)
            n = max(len(caller), len(bot)) if final else max(min(len(caller), len(bot)), max(len(caller), len(bot)) - lead)
            self._carry = [caller[n:], bot[n:]]
            if n:
                both = np.zeros((n, 2), dtype="<i2")
                both[:min(n, len(caller)), 0] = caller[:n]
                both[:min(n, len(bot)), 1] = bot[:n]
                self._write(both.tobytes(), n)

    def close(self) -> None:
        """Write the rest, fix the header up and close the file (idempotent; never raises)."""
        self.flush(final=True)
        with self._lock:
            self.closed = True
            if self._file is None:
                return
            try:
                self._patch()
                self._file.close()
            except OSError as exc:
                self._fail(exc)
            finally:
                self._file = None
        if self.dropped:
            log.warning("recording.dropped", path=str(self.path), samples=self.dropped)

    def _take(self, side: collections.deque[Samples], index: int) -> Samples:
        chunks = [self._carry[index]]
        while side:
            chunk = side.popleft()
            self._taken[index] += len(chunk)
            chunks.append(chunk)
        return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]

    def _write(self, data: bytes, frames: int) -> None:
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "wb")  # noqa: SIM115 (open for the call's length, closed in close())
                self._file.write(wav_header(self.rate, 0))
            self._file.write(data)
            self.frames_written += frames
            if self.frames_written - self._patched_at >= PATCH_EVERY_S * self.rate:
                self._patch()
        except OSError as exc:
            self._fail(exc)

    def _patch(self) -> None:
        """Rewrite the header's sizes for what is written so far; the data reaches the OS (not fsync'ed)."""
        assert self._file is not None
        self._file.seek(0)
        self._file.write(wav_header(self.rate, self.frames_written))
        self._file.seek(0, os.SEEK_END)
        self._file.flush()
        self._patched_at = self.frames_written

    def _fail(self, exc: OSError) -> None:
        self.failed = True
        self._caller.clear()
        self._bot.clear()
        log.error("recording.failed", path=str(self.path), error=type(exc).__name__, detail=str(exc))
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
