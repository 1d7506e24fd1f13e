"""Synthesis as a request: a Play's audio is produced by an executor and answered with an :class:`AudioReady`.

:class:`InlineSynthesis` answers at once on the caller's thread (the simulator: its first audio is computed now and
that compute is charged to the virtual clock when ``charge_compute`` is on; later chunks are pulled as they are
sent). :class:`ThreadedSynthesis` (the engine) runs the speaker in one worker thread per call: it produces the whole
prompt ahead into a :class:`~voicebot.player.BufferedAudio` (variable parts are synthesized before they are due),
answers once the first audio exists, and never makes the call's thread wait; a stopped prompt's synthesis is
abandoned at the next chunk. A voice that raises fails the call on its own thread, as it would inline: the
exception is re-raised there (one call's failure ends that call only).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from voicebot.callcore import AudioReady
from voicebot.dialog import events as ev
from voicebot.logs import get_logger
from voicebot.player import BufferedAudio, Chunk, LazyAudio

# speaker(play, values) -> (audio chunks at the call's rate, True when the audio was ready-made)
Speaker = Callable[[ev.Play, Mapping[str, str]], tuple[Iterator[Chunk], bool]]
Deliver = Callable[[AudioReady], None]


class Synthesis(Protocol):
    """Where a call's synthesis requests go."""

    def start(self, play: ev.Play, values: Mapping[str, str], now: float, deliver: Deliver) -> None:
        """Produce ``play``'s audio (requested at ``now``, s); call ``deliver`` with its :class:`AudioReady`."""
        ...

    def cancel(self, play_id: int) -> None:
        """The prompt is over: stop producing its audio."""
        ...

    def close(self) -> None:
        """Release the executor."""
        ...


class InlineSynthesis:
    """Synthesis on the calling thread: the first chunk now, the rest as the player pulls it."""

    def __init__(self, speaker: Speaker, charge_compute: bool = False) -> None:
        self.speaker = speaker
        self.charge_compute = charge_compute

    def start(self, play: ev.Play, values: Mapping[str, str], now: float, deliver: Deliver) -> None:
        started = time.perf_counter()
        source, ready_made = self.speaker(play, values)
        first = next(source, None)  # forces synthesis of the first sentence now
        spent = time.perf_counter() - started
        chunks = itertools.chain([first], source) if first is not None else source
        ready_at = now + (spent if self.charge_compute else 0.0)
        deliver(AudioReady(now, play.play_id, LazyAudio(chunks), ready_at, ready_made, round(spent * 1000)))

    def cancel(self, play_id: int) -> None:
        """Nothing runs ahead: nothing to cancel."""

    def close(self) -> None:
        """Nothing to release."""


class ThreadedSynthesis:
    """One worker thread per call produces each prompt's audio ahead; ``post`` hands answers to the call's thread."""

    def __init__(self, speaker: Speaker, post: Callable[[Callable[[], None]], None]) -> None:
        self.speaker = speaker
        self.post = post  # runs a callable on the call's own thread (thread-safe)
        self._jobs: queue.SimpleQueue[tuple[ev.Play, dict[str, str], float, Deliver] | None] = queue.SimpleQueue()
        self._cancelled: set[int] = set()
        self._thread = threading.Thread(target=self._run, name="voicebot-synth", daemon=True)
        self._thread.start()

    def start(self, play: ev.Play, values: Mapping[str, str], now: float, deliver: Deliver) -> None:
        self._jobs.put_nowait((play, dict(values), now, deliver))

    def cancel(self, play_id: int) -> None:
        self._cancelled.add(play_id)

    def close(self) -> None:
        self._jobs.put_nowait(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            play, values, now, deliver = job
            if play.play_id not in self._cancelled:
                self._produce(play, values, now, deliver)

    def _produce(self, play: ev.Play, values: Mapping[str, str], now: float, deliver: Deliver) -> None:
        audio, started, told = BufferedAudio(), time.perf_counter(), False
        try:
            source, ready_made = self.speaker(play, values)
            for chunk in source:
                if play.play_id in self._cancelled:
                    break
                audio.put(chunk)
                if not told:
                    told = self._tell(play, audio, now, ready_made, started, deliver)
            audio.finish()
        except Exception as err:  # a broken voice fails this call (on its own thread), never the worker or another call
            get_logger("synthesis").bind(play_id=play.play_id).error("synthesis.failed", error=repr(err))
            audio.finish(err)
            self.post(_raiser(err))
            return
        if not told:
            self._tell(play, audio, now, False, started, deliver)

    def _tell(self, play: ev.Play, audio: BufferedAudio, now: float, ready_made: bool, started: float,
              deliver: Deliver) -> bool:
        ready = AudioReady(now, play.play_id, audio, now, ready_made, round((time.perf_counter() - started) * 1000))
        self.post(lambda: deliver(ready))
        return True


def _raiser(err: BaseException) -> Callable[[], None]:
    def fail() -> None:
        raise err
    return fail
