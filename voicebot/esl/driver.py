"""One call on FreeSWITCH: ESL control, unicast media, and the call's session in a native thread.

Rules:

1. The call's greenlet does only I/O: it answers, arms unicast (never before the
   answer has completed: :class:`~voicebot.esl.connection.OutboundCall` refuses),
   moves UDP frames and ESL events between FreeSWITCH and the session thread,
   and hangs up when the dialog ends.
2. Everything CPU-heavy (VAD, ASR, dialog) runs in the call's own native
   thread (:class:`SessionThread`), never on the gevent hub; synthesis runs in
   the call's synthesis worker thread (:class:`~voicebot.synthesis.ThreadedSynthesis`),
   so the session thread never waits for a voice. The thread keeps at most two
   bot frames (40 ms) queued ahead of the media clock, so a barge-in silences
   the bot at the caller's ear within about two frames; the media clock wakes
   it for every slot it takes, so bot audio never depends on caller frames.
3. Any failure ends this call only: it is logged with the call id, the call is
   hung up, and its record is still written.
4. A hang-up at any moment releases the UDP ports, the thread and the streams.
5. The hang-up cause says who ended the call: the channel's Hangup-Cause,
   ``bot_hangup``, or ``media_lost`` when re-arms could not bring the caller's
   stream back (:mod:`voicebot.esl.stall`). A socket that closes without a
   hang-up is ``switch_lost`` when FreeSWITCH itself is gone (``switch_alive()``
   says no: a crash closes every socket) and ``esl_socket_closed`` when only
   this call's socket went. ``switch_lost`` and ``media_lost`` are the call's
   disposition too, so they never count as the caller hanging up.
6. Whatever ends the call, even an exception in the driver, the caller's
   :class:`CallResult` holds what the call got to (the session, its recording):
   :func:`drive_call` fills it as it goes. The session thread is stopped (or,
   when stuck, frozen) before anyone reads its state.
7. The recording streams to disk as the call goes (a
   :class:`~voicebot.records.recording.StereoRecorder`: bot frames from the
   media clock, caller frames and writes from the session thread).
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import gevent
import numpy as np

from voicebot.audio.frame import AudioFrame
from voicebot.call import CallSession
from voicebot.esl.connection import ChannelData, OutboundCall
from voicebot.esl.protocol import EslEvent
from voicebot.esl.stall import RearmSettings, stall_evidence, watch_stall
from voicebot.esl.unicast import PortPool, UnicastMedia
from voicebot.logs import get_logger
from voicebot.records.recording import StereoRecorder
from voicebot.synthesis import ThreadedSynthesis

if TYPE_CHECKING:
    from voicebot.esl.handoff import CallHandoff

BOT_FRAMES_AHEAD = 2  # 40 ms at 20 ms ptime
STOP_WAIT_S = 1.0  # how long a hang-up waits for the session thread to end (s; the hub keeps running meanwhile)
FREEZE_WAIT_S = 1.0  # then how long it waits for a stuck thread to finish its step so it can be frozen (s)
VARIABLE_PREFIX = "variable_vb_var_"
SIP_HEADER_PREFIX = "variable_sip_h_X-VB-"


def call_variables(headers: dict[str, str] | Any) -> dict[str, str]:
    """Flow variables from channel data: ``vb_var_<name>`` channel variables, then ``X-VB-<Name>`` SIP headers."""
    out: dict[str, str] = {}
    for key, value in headers.items():
        if key.startswith(SIP_HEADER_PREFIX):
            out.setdefault(key[len(SIP_HEADER_PREFIX):].lower().replace("-", "_"), value)
    for key, value in headers.items():
        if key.startswith(VARIABLE_PREFIX):
            out[key[len(VARIABLE_PREFIX):]] = value
    return out


def local_now(tz: str) -> datetime:
    """Now in zone ``tz`` (an IANA name); the server's zone when ``tz`` is empty or unknown."""
    try:
        return datetime.now(ZoneInfo(tz)) if tz else datetime.now().astimezone()
    except (ZoneInfoNotFoundError, ValueError):
        return datetime.now().astimezone()


@dataclass
class SessionThread:
    """Runs a :class:`CallSession` in a native thread; greenlets talk to it through two queues."""

    session: CallSession
    variables: dict[str, str]
    frame_s: float = 0.02
    inbox: queue.SimpleQueue[tuple[Any, ...]] = field(default_factory=queue.SimpleQueue)  # C: no Python-level locks
    outbox: collections.deque[bytes | None] = field(default_factory=collections.deque)  # lock-free (1 producer, 1 consumer)
    recorder: StereoRecorder | None = None  # the call's recording: what was heard and what was sent, frame by frame
    error: BaseException | None = None
    started: float = 0.0
    muted: bool = False  # an agent talks to the caller through eavesdrop: send silence, keep the stream going
    tz: str = ""  # the callee's zone (a campaign dial's vb_tz): the reference for date slots; "": the server's

    def start(self) -> None:
        """Start the session (t = 0 now) in its thread; its prompts are synthesized by a worker thread."""
        self.session.synthesis = ThreadedSynthesis(self.session.speaker, post=self.call_soon)
        self.session.accurate.bind(self.call_soon)  # Whisper's answers come back on this thread
        self.session.post = self.call_soon  # a turn's final comes back on this thread too: the call never waits for it
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="voicebot-call", daemon=True)
        self._stop = False
        self._frozen = False  # set under _state_lock: the thread never touches the session again
        self._state_lock = threading.Lock()  # held by the thread while it changes the session
        self._silent = np.zeros(int(self.session.settings.rate * self.frame_s), np.int16)
        self._thread.start()

    def now(self) -> float:
        """The call's clock (s since answer)."""
        return time.monotonic() - self.started

    def caller(self, frame: AudioFrame) -> None:
        """A caller frame from the UDP stream (never blocks)."""
        self.inbox.put_nowait(("frame", frame))

    def dtmf(self, digit: str) -> None:
        """The caller pressed a key."""
        self.inbox.put_nowait(("dtmf", digit, self.now()))

    def hang_up(self, cause: str) -> None:
        """The channel hung up."""
        self.inbox.put_nowait(("hangup", cause, self.now()))

    def post(self, event: Any) -> None:
        """An event from the call's handoff executor (voicebot.handoff.protocol) for the call's core."""
        self.inbox.put_nowait(("agent", event))

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the session's thread (from any thread; never blocks)."""
        self.inbox.put_nowait(("call", fn))

    def mute(self, on: bool) -> None:
        """Silence the bot's frames from this very frame on (``on``), or let them through again."""
        self.muted = on

    def next_bot_frame(self, _: float) -> bytes | None:
        """For the media clock: the next bot frame, or None (silence) when none is ready or muted.

        Called on the send clock's native thread (voicebot.esl.sendclock), never blocks: the outbox is a deque
        (one producer, one consumer) and the wake a SimpleQueue. Each slot taken wakes the session thread to
        refill the outbox (bot audio is paced by this clock).
        """
        try:
            frame = self.outbox.popleft()
        except IndexError:
            frame = None
        self.inbox.put_nowait(("slot",))
        sent = None if self.muted else frame
        if self.recorder is not None:
            self.recorder.bot(np.frombuffer(sent, np.int16) if sent is not None else self._silent)
        return sent

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop the thread; True when it ended within ``timeout`` s (blocks: from the hub use :meth:`request_stop`)."""
        self.request_stop()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def request_stop(self) -> None:
        """Ask the thread to end (returns at once)."""
        self._stop = True
        self.inbox.put_nowait(("stop",))

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    def try_freeze(self) -> bool:
        """Freeze a thread that will not stop: once it has finished its current step it never touches the session
        again, so its state can be read. True when frozen (never blocks)."""
        if not self._state_lock.acquire(blocking=False):
            return False
        self._frozen = True
        self._state_lock.release()
        return True

    @property
    def done(self) -> bool:
        """True once the dialog ended (or the thread failed)."""
        return self.session.ended or self.error is not None

    def _run(self) -> None:
        try:
            self.session.start(0.0, self.variables, local_time=local_now(self.tz))
            next_bot = 0.0
            while not self._stop and not self.session.ended:
                self._drain(timeout=3 * self.frame_s)  # woken by each send slot taken, caller frames, answers
                with self._state_lock:
                    if self._frozen:
                        return
                    next_bot = self._produce(next_bot)
                if self.recorder is not None and self.recorder.due():
                    self.recorder.flush()  # the disk, in this thread: never on the hub
            if not self.session.ended:  # stopped early: a hang-up queued before the stop still reaches the dialog
                self._drain(timeout=0.0)
                with self._state_lock:
                    if not self._frozen:
                        self.session.settle()  # a turn's final still on its way: what waited behind it goes in now
        except BaseException as err:  # one call's failure must not escape its thread
            self.error = err
        finally:
            self.session.close()  # the synthesis worker ends with the call
            self._close_asr()

    def _close_asr(self) -> None:
        """Give the call's recogniser back (its full-LM decoder returns to the model's pool; without this each call
        built a new one, ~0.5 s holding the GIL, and its memory went back only when collected)."""
        try:
            self.session.asr.close()
        except Exception as err:  # never hides the call's own error
            get_logger("esl.call").warning("call.asr_close_failed", error=repr(err))

    def _drain(self, timeout: float) -> None:
        with contextlib.suppress(queue.Empty):
            item = self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
            while True:
                self._handle(item)
                item = self.inbox.get_nowait()

    def _handle(self, item: tuple[Any, ...]) -> None:
        with self._state_lock:
            if not self._frozen:
                self._handle_item(item)

    def _handle_item(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "frame":
            frame: AudioFrame = item[1]
            rebased = AudioFrame(frame.samples, frame.rate, frame.seq, frame.captured_at - self.started)
            if self.recorder is not None:
                self.recorder.caller(rebased.to_array())
            self.session.caller_frame(rebased)
        elif kind == "dtmf":
            self.session.dtmf(item[1], item[2])
        elif kind == "hangup":
            self.session.hang_up(item[2], item[1])
        elif kind == "agent":
            self.session.agent_event(item[1])
        elif kind == "call":
            item[1]()

    def _produce(self, next_bot: float) -> float:
        """Fill the outbox up to the media clock plus what may be queued ahead."""
        now = self.now()
        next_bot = max(next_bot, now - self.frame_s)
        while next_bot <= now + self.frame_s and len(self.outbox) < BOT_FRAMES_AHEAD:
            frame = self.session.bot_frame(next_bot)
            if frame is not None or self.outbox:  # silence is not queued ahead of audio: a reply's first frame
                self.outbox.append(frame.tobytes() if frame is not None else None)  # goes out at the next slot
            next_bot += self.frame_s
        return next_bot


@dataclass
class CallResult:
    """What the driver hands back for the call record."""

    data: ChannelData | None
    worker: SessionThread | None
    started_wall: float
    answered_wall: float | None
    hangup_cause: str = ""
    error: str = ""
    handoff: dict[str, Any] = field(default_factory=dict)  # HandoffFigures.to_dict()
    recorder: StereoRecorder | None = None  # the call's recording (streaming since the answer)
    thread_stuck: bool = False  # the session thread would not stop; its state was read once frozen, or as it was


# handoff(call, worker, codec, rearm) -> the executor of this call's handoff machine (voicebot.esl.handoff)
HandoffFactory = Callable[[OutboundCall, SessionThread, str, Callable[[], None]], "CallHandoff"]


def drive_call(call: OutboundCall, data: ChannelData, make_session: Callable[[int], CallSession], pool: PortPool, *,
               media_ip: str = "127.0.0.1", max_call_s: float = 3600.0, handoff: HandoffFactory | None = None,
               result: CallResult | None = None, recording: Path | None = None,
               switch_alive: Callable[[], bool] | None = None, rearm: RearmSettings | None = None) -> CallResult:
    """Answer, arm unicast, run the session until either side hangs up; always release everything.

    ``result`` (the caller's, or a new one) is filled as the call goes, so it holds what the call got to even when
    this raises. ``recording``: where the call's stereo WAV streams (None: no recording). ``switch_alive()``: is
    FreeSWITCH still there (e.g. an ``api status`` over the inbound connection)? Asked only when the call's socket
    closes without a hang-up (rule 5); None: take it as there. ``rearm``: the stall watch's settings (None: the
    defaults).
    """
    result = result if result is not None else CallResult(data, None, time.time(), None)
    log = get_logger("esl.call").bind(call=data.uuid)
    call.answer()
    result.answered_wall = time.time()
    channel_media = call.media or data.media  # a SIP call names its codec only once answered
    if channel_media is None:
        raise RuntimeError("the channel names no codec the engine can stream")
    media = UnicastMedia.open(pool, channel_media, host=media_ip, label=data.uuid)
    greenlets: list[gevent.Greenlet] = []
    controller: CallHandoff | None = None
    handoff_runner: gevent.Greenlet | None = None
    try:
        assert media.ports is not None
        ports = media.ports

        def arm() -> None:
            call.unicast(media_ip, ports.local, media_ip, ports.remote, native=False)
            media.armed()

        arm()
        worker = SessionThread(make_session(channel_media.rate), call_variables(data.headers),
                               frame_s=channel_media.ptime_ms / 1000, tz=data.headers.get("variable_vb_tz", ""))
        if recording is not None:
            worker.recorder = result.recorder = StereoRecorder(recording, channel_media.rate)
        result.worker = worker
        if handoff is not None:
            controller = handoff(call, worker, channel_media.codec, arm)
            _connect_handoff(worker, controller)
            handoff_runner = gevent.spawn(controller.run)
        start_off_hub(worker.start)
        lost: list[str] = []
        greenlets += [gevent.spawn(media.deliver, worker.caller), gevent.spawn(media.send_loop, worker.next_bot_frame),
                      _watch_media(call, media, worker, media_ip, lost,
                                   lambda: controller is not None and controller.owns_rearm, rearm or RearmSettings())]
        result.hangup_cause = _converse(call, worker, max_call_s, controller, switch_alive)
        if lost:  # the stream could not be brought back: the engine hung up, not the caller
            result.hangup_cause = "media_lost"
        log.info("call.ended", disposition=worker.session.disposition or result.hangup_cause)
    finally:
        gevent.killall(greenlets, timeout=1)
        media.close()
        if result.worker is not None:
            result.thread_stuck = not _stop_worker(result.worker, log)
        _finish_handoff(controller, handoff_runner, result)
    return result


def _finish_handoff(controller: CallHandoff | None, runner: gevent.Greenlet | None, result: CallResult) -> None:
    """After the session thread (its last handoff commands are queued by now): close the handoff, keep its figures."""
    if controller is not None:
        worker = result.worker
        stopped = worker is None or not worker.alive or worker._frozen
        controller.finish(result.hangup_cause or "ended", session_stopped=stopped)
        result.handoff = controller.figures.to_dict()
    if runner is not None:
        runner.kill(timeout=1)


def _watch_media(call: OutboundCall, media: UnicastMedia, worker: SessionThread, media_ip: str,
                 lost: list[str], handoff_owns: Callable[[], bool] = lambda: False,
                 settings: RearmSettings | None = None) -> gevent.Greenlet:
    """The stall watch: re-arm with backoff and a cap; when it gives up, end the call as ``media_lost``.
    It stands down while ``handoff_owns()`` (the handoff re-arms after a bridge): one owner re-arms at a time."""
    assert media.ports is not None
    ports = media.ports

    def give_up(reason: str) -> None:
        lost.append(reason)
        worker.hang_up("media_lost")  # the record's disposition: the caller did not hang up
        call.hangup_quietly("MEDIA_TIMEOUT")

    settings = settings or RearmSettings()
    return gevent.spawn(watch_stall, media, lambda: call.rearm_unicast(media_ip, ports.local, media_ip, ports.remote),
                        threshold_s=settings.stall_s, policy=settings.policy(),
                        live=lambda: call.unicast_expected and not handoff_owns(), give_up=give_up,
                        diagnose=lambda: stall_evidence(call, media))


def start_off_hub(start: Callable[[], None]) -> None:
    """Run ``start`` in gevent's threadpool while the hub serves every other call.

    ``start`` starts native threads (the call's session and synthesis threads), and ``Thread.start`` waits until
    the new thread runs: on a busy box that wait is the scheduler's, tens of ms, and on the hub it stopped every
    call's audio (bench/max_gap.py caught the hub in ``threading.start``). Raises what ``start`` raises.
    """
    gevent.get_hub().threadpool.spawn(start).get()


def _stop_worker(worker: SessionThread, log: Any) -> bool:
    """Stop the session thread without blocking the hub; a stuck one is frozen if it can be. True when it ended."""
    worker.request_stop()
    if _wait(lambda: not worker.alive, STOP_WAIT_S):
        return True
    frozen = _wait(worker.try_freeze, FREEZE_WAIT_S)
    log.error("call.thread_stuck", frozen=frozen, waited_s=STOP_WAIT_S + (0 if frozen else FREEZE_WAIT_S))
    return False


def _wait(predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``predicate`` every 10 ms while the hub runs on; True once it holds, False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        gevent.sleep(0.01)
    return True


def _connect_handoff(worker: SessionThread, controller: CallHandoff) -> None:
    """The call's core runs the controller's handoff machine; its commands go to the controller."""
    worker.session.core.handoff = controller.machine
    worker.session.handoff = lambda command, _: controller.command(command)  # runs in the session's thread


def _converse(call: OutboundCall, worker: SessionThread, max_call_s: float, controller: CallHandoff | None,
              switch_alive: Callable[[], bool] | None = None) -> str:
    """Pass events to the session until the call is over; return the hang-up cause (rule 5)."""
    deadline = time.monotonic() + max_call_s
    while time.monotonic() < deadline:
        if worker.done:
            _finish_bot_side(call, worker)
            return "bot_hangup" if worker.error is None else "engine_error"
        event = _next_event(call, timeout=0.05)
        if event is None:
            if call.closed or call.hung_up:
                cause = _gone_cause(call, switch_alive)
                worker.hang_up("switch_lost" if cause == "switch_lost" else "caller_hangup")
                return cause
            continue
        if event.name == "DTMF":
            worker.dtmf(event.get("DTMF-Digit") or "")
        elif event.name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"):
            worker.hang_up("caller_hangup")
            return event.get("Hangup-Cause") or "caller_hangup"
        elif controller is not None and event.name in ("CHANNEL_BRIDGE", "CHANNEL_PARK"):
            controller.on_caller_event(event)
    call.hangup_quietly("ALLOTTED_TIMEOUT")
    return "max_call_duration"


def _gone_cause(call: OutboundCall, switch_alive: Callable[[], bool] | None) -> str:
    """Why the call's socket is gone without a hang-up event: the caller, the socket, or FreeSWITCH itself."""
    if call.hung_up:
        return "caller_hangup"
    if switch_alive is not None and not switch_alive():
        get_logger("esl.call").bind(call=call.uuid).warning("call.switch_lost", reason=call.close_reason)
        return "switch_lost"
    return "esl_socket_closed"  # the socket went, not the caller


def _next_event(call: OutboundCall, timeout: float) -> EslEvent | None:
    try:
        return call.next_event(timeout)
    except Exception:  # timeout or a closed socket: the caller checks call.closed
        return None


def _finish_bot_side(call: OutboundCall, worker: SessionThread) -> None:
    """The dialog ended: let the last bot audio play out, then hang up (a transferred call stays up)."""
    if worker.error is not None:
        get_logger("esl.call").bind(call=call.uuid).error("call.failed", error=repr(worker.error))
        call.hangup_quietly("NORMAL_TEMPORARY_FAILURE")
        return
    gevent.sleep(0.06)
    if worker.session.disposition:
        with contextlib.suppress(Exception):
            call.hangup("NORMAL_CLEARING", timeout=2.0)
