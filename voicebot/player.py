"""The bot's mouth: plays one prompt at a time as 20 ms frames, stoppable and pausable at once.

The media edge pulls one frame per 20 ms tick with :meth:`Player.next_frame`;
nothing is queued ahead beyond the frame being sent, so stopping (barge-in)
silences the bot within one frame. A prompt's audio is a :class:`PromptAudio`:
int16 chunks of any length at the call's rate, taken only as they exist. A
prompt whose audio is still being synthesized sends silence meanwhile (it has
not started, or it waits mid-way), and it "starts" when its first frame is
actually sent. :class:`LazyAudio` pulls an iterator when asked (ready-made
prompts, and the simulator, which charges that compute to its clock);
:class:`BufferedAudio` is filled by a synthesis thread and never blocks.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Chunk = npt.NDArray[np.int16]


class PromptAudio(Protocol):
    """A prompt's audio as the player takes it: never blocks on audio that does not exist yet."""

    def take(self) -> Chunk | None:
        """The next chunk if one exists now, else None (see :attr:`done`)."""
        ...

    @property
    def done(self) -> bool:
        """True once no more audio will come (every chunk was taken or the source ended)."""
        ...


class LazyAudio:
    """Audio pulled from an iterator when the player asks (the iterator may compute it then)."""

    def __init__(self, source: Iterator[Chunk]) -> None:
        self._source: Iterator[Chunk] | None = source

    def take(self) -> Chunk | None:
        if self._source is None:
            return None
        chunk = next(self._source, None)
        if chunk is None:
            self._source = None
        return chunk

    @property
    def done(self) -> bool:
        return self._source is None


class BufferedAudio:
    """Audio a producer thread appends while the player takes it (one producer, one consumer)."""

    def __init__(self) -> None:
        self._chunks: collections.deque[Chunk] = collections.deque()
        self._finished = threading.Event()
        self.error: BaseException | None = None  # why the producer stopped early, if it did

    def put(self, chunk: Chunk) -> None:
        """Producer: one more chunk."""
        self._chunks.append(chunk)

    def finish(self, error: BaseException | None = None) -> None:
        """Producer: no more chunks (``error``: it failed; what was produced still plays)."""
        self.error = error
        self._finished.set()

    def take(self) -> Chunk | None:
        try:
            return self._chunks.popleft()
        except IndexError:
            return None

    @property
    def done(self) -> bool:
        return self._finished.is_set() and not self._chunks

    @property
    def finished(self) -> bool:
        """The producer has finished (chunks may still be waiting to be taken)."""
        return self._finished.is_set()


class _Pending:
    """The audio of a prompt whose synthesis has not answered yet: nothing so far, more to come."""

    def take(self) -> Chunk | None:
        return None

    @property
    def done(self) -> bool:
        return False


PENDING: PromptAudio = _Pending()


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
        self._audio: PromptAudio = PENDING
        self._buffer = np.zeros(0, dtype=np.int16)
        self._sent = 0  # samples of the current prompt sent
        self._ready_at = 0.0
        self.prompts_started = 0  # how many prompts have started being heard
        self.underruns = 0  # ticks a started prompt had no audio ready (synthesis behind the send clock)

    def play(self, play_id: int, source: Iterator[Chunk] | PromptAudio = PENDING, ready_at: float = 0.0) -> list[PlayerEvent]:
        """Start a prompt (stopping any other); its first frame goes out no earlier than ``ready_at`` (s).

        ``source``: its audio (an iterator is pulled lazily), or :data:`PENDING` until :meth:`attach`.
        """
        events = self.stop(ready_at) if self.play_id is not None else []
        audio = LazyAudio(source) if isinstance(source, Iterator) else source
        self.play_id, self._audio, self._ready_at = play_id, audio, ready_at
        self._buffer, self._sent, self.paused = np.zeros(0, dtype=np.int16), 0, False
        return events

    def attach(self, play_id: int, audio: PromptAudio, ready_at: float = 0.0) -> bool:
        """The audio of pending prompt ``play_id`` is ready from ``ready_at``; False when that prompt is gone."""
        if self.play_id != play_id:
            return False
        self._audio, self._ready_at = audio, max(self._ready_at, ready_at)
        return True

    def stop(self, at: float) -> list[PlayerEvent]:
        """Stop the current prompt now (interrupted)."""
        if self.play_id is None:
            return []
        event = PlayerEvent("finished", self.play_id, at, True, self.heard_ms)
        self.play_id, self._audio, self.paused = None, PENDING, False
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
            if not self._audio.done:  # synthesis is behind: silence now, the prompt goes on
                self.underruns += self._sent > 0
                return None, []
            events.append(PlayerEvent("finished", self.play_id, now, False, self.heard_ms))
            self.play_id, self._audio = None, PENDING
            return None, events
        if self._sent == 0:
            events.append(PlayerEvent("started", self.play_id, now))
            self.prompts_started += 1
        self._sent += len(frame)
        return frame, events

    def _take(self) -> Chunk | None:
        """One full frame of audio that exists (the last one padded), or None when there is none now."""
        while len(self._buffer) < self.frame_samples:
            chunk = self._audio.take()
            if chunk is None:
                break
            self._buffer = np.concatenate([self._buffer, np.asarray(chunk, dtype=np.int16)])
        if len(self._buffer) == 0 or (len(self._buffer) < self.frame_samples and not self._audio.done):
            return None
        frame, self._buffer = self._buffer[: self.frame_samples], self._buffer[self.frame_samples:]
        if len(frame) < self.frame_samples:
            frame = np.concatenate([frame, np.zeros(self.frame_samples - len(frame), dtype=np.int16)])
        return frame
