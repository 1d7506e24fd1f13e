"""The busy prompt as audio: a call over ``max_calls`` (or during shutdown) hears a polite prompt, then USER_BUSY.

Rules:

1. The prompt is rendered once, when the engine loads (:meth:`BusyPrompt.render`,
   the default flow's voice and prompt cache), and cut to :data:`MAX_PROMPT_S`
   with a fade-out: a busy call never lasts more than a few seconds.
2. Per call: answer, then arm unicast (never before the answer has completed:
   :class:`~voicebot.esl.connection.OutboundCall` refuses, docs/freeswitch.md),
   send the prompt's frames on the media clock, hang up with ``USER_BUSY``.
   No VAD, no ASR, no session thread: the caller's frames are never read, and
   the only CPU spent is one resampling when the channel's rate differs from the
   rendered one (cached per rate and ptime).
3. A caller who hangs up early ends it at once; any failure hangs up with
   ``USER_BUSY`` too, and the UDP ports always go back to the pool.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import gevent
import numpy as np
import numpy.typing as npt

from voicebot.audio.resample import resample
from voicebot.esl.connection import ChannelData, OutboundCall
from voicebot.esl.protocol import ChannelMedia
from voicebot.esl.sendclock import HubSignal
from voicebot.esl.unicast import PortPool, UnicastMedia
from voicebot.logs import get_logger

MAX_PROMPT_S = 8.0  # longer prompts are cut (with a fade-out): a refused call stays short
FADE_MS = 50
TAIL_S = 0.06  # after the last frame is sent, before the hang-up: the last packets reach the caller
BUSY_CAUSE = "USER_BUSY"
Int16Array = npt.NDArray[np.int16]


@dataclass
class BusyPrompt:
    """The busy prompt's audio (``samples`` int16 at ``rate`` Hz) and its frames per (rate, ptime), made once."""

    samples: Int16Array
    rate: int
    _frames: dict[tuple[int, int], list[bytes]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def render(cls, samples: Int16Array, rate: int, max_s: float = MAX_PROMPT_S) -> BusyPrompt:
        """Cut ``samples`` to ``max_s`` seconds (fading out the last :data:`FADE_MS` ms) when longer (rule 1)."""
        audio = np.asarray(samples, dtype=np.int16)
        limit = int(max_s * rate)
        if len(audio) > limit:
            fade = min(limit, rate * FADE_MS // 1000)
            audio = audio[:limit].copy()
            ramp = np.linspace(1.0, 0.0, fade)
            audio[limit - fade:] = (audio[limit - fade:].astype(np.float64) * ramp).astype(np.int16)
        return cls(audio, rate)

    @property
    def duration_s(self) -> float:
        """Length of the prompt in seconds."""
        return len(self.samples) / self.rate

    def frames(self, media: ChannelMedia) -> list[bytes]:
        """The prompt as s16le frames of ``media``'s rate and ptime (the last one padded with silence)."""
        key = (media.rate, media.ptime_ms)
        with self._lock:
            cached = self._frames.get(key)
        if cached is not None:
            return cached
        audio = self.samples if media.rate == self.rate else resample(self.samples, self.rate, media.rate)
        n = media.samples_per_frame
        padded = np.concatenate([audio, np.zeros(-len(audio) % n, dtype=np.int16)]).astype("<i2")
        frames = [padded[i:i + n].tobytes() for i in range(0, len(padded), n)]
        with self._lock:
            self._frames[key] = frames
        return frames


@dataclass
class BusyResult:
    """What happened on one busy call: frames sent and how it ended (played, caller_hangup, failed: ...)."""

    frames_sent: int = 0
    ended: str = ""
    seconds: float = 0.0


def play_busy(call: OutboundCall, data: ChannelData, prompt: BusyPrompt, pool: PortPool, *,
              media_ip: str = "127.0.0.1") -> BusyResult:
    """Answer, play ``prompt`` over unicast, hang up with USER_BUSY (rules 2, 3). Never raises."""
    result, started = BusyResult(), time.monotonic()
    log = get_logger("esl.busy").bind(call=data.uuid)
    media: UnicastMedia | None = None
    try:
        call.answer()
        channel_media = call.media or data.media
        if channel_media is None:
            raise RuntimeError("the channel names no codec the engine can stream")
        media = UnicastMedia.open(pool, channel_media, host=media_ip, label=f"busy {data.uuid}")
        assert media.ports is not None
        call.unicast(media_ip, media.ports.local, media_ip, media.ports.remote, native=False)
        result.ended = _send_prompt(call, media, prompt.frames(channel_media), result)
    except Exception as err:  # one refused call's failure stays with it
        result.ended = "caller_hangup" if call.hung_up else f"failed: {type(err).__name__}"
        if not call.hung_up:
            log.warning("call.busy_prompt_failed", error=repr(err))
    finally:
        if media is not None:
            media.close()
        call.hangup_quietly(BUSY_CAUSE)
        result.seconds = time.monotonic() - started
    log.info("call.busy_prompt", ended=result.ended, frames=result.frames_sent, seconds=round(result.seconds, 2))
    return result


def _send_prompt(call: OutboundCall, media: UnicastMedia, frames: list[bytes], result: BusyResult) -> str:
    """Send ``frames`` on the media clock until the last one went out or the caller hung up."""
    done = HubSignal()  # next_frame runs on the send clock's thread: it may not set a gevent Event

    def next_frame(_: float) -> bytes | None:
        if result.frames_sent < len(frames):
            result.frames_sent += 1
            return frames[result.frames_sent - 1]
        done.set()
        return None

    sender = gevent.spawn(media.send_loop, next_frame)
    limit = len(frames) * media.media.ptime_ms / 1000 + 1.0
    deadline = time.monotonic() + limit
    try:
        while not done.wait(0.05):
            if call.hung_up or call.closed:
                return "caller_hangup"
            if time.monotonic() > deadline:
                return "timeout"
        gevent.sleep(TAIL_S)
        return "played"
    finally:
        media.close()
        with contextlib.suppress(Exception):
            sender.kill(timeout=1)
        if sender.dead:  # next_frame is no longer called: nothing sets the signal any more
            done.close()
