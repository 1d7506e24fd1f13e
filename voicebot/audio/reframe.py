"""Turning audio chunks of any size into exact fixed-length frames.

FreeSWITCH may send 20 or 30 ms packets, a TCP read may split a sample, and
VAD/ASR want exactly ``frame_ms``. :class:`Reframer` buffers bytes in one
``bytearray`` (appends at the end, deletes from the front: CPython makes both
amortised O(1), so there is no quadratic concatenation) and remembers when each
input chunk's first byte arrived, so every output frame gets the ``captured_at``
of the chunk holding its first sample plus that sample's offset in it.
"""

from __future__ import annotations

from collections import deque

from voicebot.audio.frame import SAMPLE_WIDTH, AudioFrame


class Reframer:
    """Exact ``frame_ms`` frames (default 20 ms) of s16le at ``rate`` Hz from chunks of any size.

    ``seq`` of output frames counts from 0. One instance per stream; not thread-safe.
    """

    def __init__(self, rate: int, frame_ms: int = 20) -> None:
        if rate <= 0 or frame_ms <= 0:
            raise ValueError(f"rate and frame_ms must be positive, got {rate} Hz, {frame_ms} ms")
        if (rate * frame_ms) % 1000:
            raise ValueError(f"{frame_ms} ms at {rate} Hz is not a whole number of samples")
        self.rate = rate
        self.frame_ms = frame_ms
        self.frame_bytes = SAMPLE_WIDTH * rate * frame_ms // 1000
        self.reset()

    def reset(self) -> None:
        """Drop buffered audio and start again at seq 0, time 0.0."""
        self._buf = bytearray()
        self._read_pos = 0  # stream byte position of self._buf[0]
        self._anchors: deque[tuple[int, float]] = deque()  # (stream byte position, captured_at) per chunk
        self._end_time = 0.0  # captured_at the next untimed bytes chunk gets
        self._seq = 0

    def push(self, data: AudioFrame | bytes, captured_at: float | None = None) -> list[AudioFrame]:
        """Add a chunk; return the complete frames it finishes (maybe none).

        An :class:`AudioFrame` brings its own time (its rate must match); for raw
        bytes pass ``captured_at``, else the chunk is taken to follow the previous
        one without a gap (the first starts at 0.0). Raw bytes may split a sample.
        """
        if isinstance(data, AudioFrame):
            if data.rate != self.rate:
                raise ValueError(f"frame at {data.rate} Hz pushed into a {self.rate} Hz reframer")
            chunk, start = data.samples, data.captured_at if captured_at is None else captured_at
        else:
            chunk, start = data, self._end_time if captured_at is None else captured_at
        if chunk:
            self._anchors.append((self._read_pos + len(self._buf), start))
            self._buf += chunk
            self._end_time = start + len(chunk) / (SAMPLE_WIDTH * self.rate)
        out: list[AudioFrame] = []
        while len(self._buf) >= self.frame_bytes:
            out.append(self._take(self.frame_bytes, self.frame_bytes))
        return out

    def flush(self, pad: bool = True) -> list[AudioFrame]:
        """The buffered partial frame: padded with silence to ``frame_ms`` (default), or short with ``pad=False``.

        A dangling half sample is dropped. Returns [] when nothing is buffered.
        """
        whole = len(self._buf) - len(self._buf) % SAMPLE_WIDTH
        if whole == 0:
            self._discard_all()
            return []
        frame = self._take(whole, self.frame_bytes if pad else whole)
        self._discard_all()
        return [frame]

    @property
    def buffered_bytes(self) -> int:
        """Bytes waiting for a complete frame."""
        return len(self._buf)

    def _take(self, nbytes: int, frame_bytes: int) -> AudioFrame:
        samples = bytes(self._buf[:nbytes])
        if frame_bytes > nbytes:
            samples += bytes(frame_bytes - nbytes)
        frame = AudioFrame(samples, self.rate, self._seq, self._time_at(self._read_pos))
        del self._buf[:nbytes]
        self._read_pos += nbytes
        self._seq += 1
        return frame

    def _time_at(self, pos: int) -> float:
        """captured_at of the byte at stream position ``pos`` (must be buffered)."""
        while len(self._anchors) > 1 and self._anchors[1][0] <= pos:
            self._anchors.popleft()
        anchor_pos, anchor_time = self._anchors[0]
        return anchor_time + (pos - anchor_pos) / (SAMPLE_WIDTH * self.rate)

    def _discard_all(self) -> None:
        self._read_pos += len(self._buf)
        self._buf.clear()
        self._anchors.clear()
