"""The bot's mouth: plays one prompt at a time as 20 ms frames, stoppable and pausable at once.

The media edge pulls one frame per 20 ms tick with :meth:`Player.next_frame`;
nothing is queued ahead beyond the frame being sent, so stopping (barge-in)
silences the bot within one frame. Sources are iterators of int16 chunks of any
length at the call's rate (a cached prompt is one chunk; a synthesized one
arrives sentence by sentence).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Chunk = npt.NDArray[np.int16]


@dataclass(frozen=True)
class PlayerEvent:
    """A prompt started (first frame sent) or finished (``interrupted`` when stopped); ``heard_ms`` sent so far."""

    kind: str  # "started" | "finished"
    play_id: int
    at: float
    interrupted: bool = False
    heard_ms: int = 0


class Player:
    """Plays prompts frame by frame; reports when each starts and ends."""

    def __init__(self, rate: int, frame_ms: int = 20) -> None:
        self.rate = rate
        self.frame_samples = rate * frame_ms // 1000
        self.frame_s = frame_ms / 1000
        self.play_id: int | None = None
        self.paused = False
        self._source: Iterator[Chunk] | None = None
        self._buffer = np.zeros(0, dtype=np.int16)
        self._sent = 0  # samples of the current prompt sent
        self._ready_at = 0.0
        self.prompts_started = 0  # how many prompts have started being heard

    def play(self, play_id: int, source: Iterator[Chunk], ready_at: float = 0.0) -> list[PlayerEvent]:
        """Start a prompt (stopping any other); its first frame goes out no earlier than ``ready_at`` (s)."""
        events = self.stop(ready_at) if self.play_id is not None else []
        self.play_id, self._source, self._ready_at = play_id, source, ready_at
        self._buffer, self._sent, self.paused = np.zeros(0, dtype=np.int16), 0, False
        return events

    def stop(self, at: float) -> list[PlayerEvent]:
        """Stop the current prompt now (interrupted)."""
        if self.play_id is None:
            return []
        event = PlayerEvent("finished", self.play_id, at, True, self.heard_ms)
        self.play_id, self._source, self.paused = None, None, False
        return [event]

    def pause(self) -> None:
        """Send silence until :meth:`resume` (a tentative barge-in)."""
        self.paused = self.play_id is not None

    def resume(self) -> None:
        """Continue a paused prompt where it stopped."""
        self.paused = False

    @property
    def heard_ms(self) -> int:
        """Milliseconds of the current prompt sent so far."""
        return int(1000 * self._sent / self.rate)

    @property
    def talking(self) -> bool:
        """True while a prompt is being sent (not paused, not waiting for its first audio)."""
        return self.play_id is not None and not self.paused

    def next_frame(self, now: float) -> tuple[Chunk | None, list[PlayerEvent]]:
        """The bot's frame for the tick starting at ``now`` (None: silence), and prompt events."""
        if self.play_id is None or self.paused or now + 1e-9 < self._ready_at:
            return None, []
        events: list[PlayerEvent] = []
        frame = self._take()
        if frame is None:
            events.append(PlayerEvent("finished", self.play_id, now, False, self.heard_ms))
            self.play_id, self._source = None, None
            return None, events
        if self._sent == 0:
            events.append(PlayerEvent("started", self.play_id, now))
            self.prompts_started += 1
        self._sent += len(frame)
        return frame, events

    def _take(self) -> Chunk | None:
        """One full frame from the source (the last one padded), or None when it is exhausted."""
        while len(self._buffer) < self.frame_samples and self._source is not None:
            chunk = next(self._source, None)
            if chunk is None:
                self._source = None
                break
            self._buffer = np.concatenate([self._buffer, np.asarray(chunk, dtype=np.int16)])
        if len(self._buffer) == 0:
            return None
        frame, self._buffer = self._buffer[: self.frame_samples], self._buffer[self.frame_samples:]
        if len(frame) < self.frame_samples:
            frame = np.concatenate([frame, np.zeros(self.frame_samples - len(frame), dtype=np.int16)])
        return frame
