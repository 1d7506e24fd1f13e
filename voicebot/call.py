"""The per-call driver, kept thin: caller frames in, bot frames out, the dialog machine in between.

One :class:`CallSession` per call. The media edge (the simulator, or unicast on
FreeSWITCH) calls, every 20 ms tick::

    session.caller_frame(frame)      # what the caller's line carried
    out = session.bot_frame(now)     # what to send the caller (None: silence)

In between the session runs VAD, turn-taking, ASR (fed only while the caller
speaks, with a pre-roll), the dialog machine, and the player; it turns the
machine's commands into media actions and records a :class:`Timeline`.

Compute time is charged to the call's clock: when ``charge_compute`` is on (the
simulator running faster than real time), the measured time of ASR
finalisation and of synthesizing a prompt's first audio delays what follows, so
latencies measured on a virtual clock are honest.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from voicebot.asr.base import AsrResult, AsrStream, VadStream
from voicebot.asr.turns import PauseBot, SpeechEnd, SpeechStart, TurnSettings, TurnTaker
from voicebot.audio.frame import AudioFrame, rms_dbfs
from voicebot.dialog import events as ev
from voicebot.dialog.flow import BargeIn, BargeInMode
from voicebot.dialog.intents import IntentMatcher
from voicebot.dialog.machine import DialogMachine
from voicebot.player import Chunk, Player, PlayerEvent
from voicebot.timeline import Timeline

# speaker(play, values) -> (audio chunks at the call's rate, True when the audio was ready-made)
Speaker = Callable[[ev.Play, Mapping[str, str]], tuple[Iterator[Chunk], bool]]
# handoff(command, session): react to PrepareHandoff/TransferCall (e.g. schedule AgentReady)
Handoff = Callable[[ev.Command, "CallSession"], None]


@dataclass(frozen=True)
class CallSettings:
    """Per-call media settings. ``preroll_ms`` of audio before a detected onset goes to ASR too."""

    rate: int = 8000
    frame_ms: int = 20
    preroll_ms: int = 300
    turn: TurnSettings = field(default_factory=TurnSettings)
    charge_compute: bool = False


class CallSession:
    """One call through VAD → turn-taking → ASR → dialog → player."""

    def __init__(self, machine: DialogMachine, *, vad: VadStream, asr: AsrStream, speaker: Speaker,
                 settings: CallSettings | None = None, handoff: Handoff | None = None) -> None:
        self.machine = machine
        self.settings = settings or CallSettings()
        self.vad, self.asr, self.speaker, self.handoff = vad, asr, speaker, handoff
        matcher: IntentMatcher = machine.matcher
        self.turns = TurnTaker(self.settings.turn, intent_score=lambda text: _best_score(matcher, text))
        self.player = Player(self.settings.rate, self.settings.frame_ms)
        self.timeline = Timeline()
        self.disposition = ""  # set when the bot hangs up
        self._preroll: deque[AudioFrame] = deque(maxlen=max(1, self.settings.preroll_ms // self.settings.frame_ms))
        self._timers: list[tuple[float, int, ev.Event]] = []
        self._seq = itertools.count()
        self._cancelled: set[str] = set()
        self._listening = False

    # ------------------------------------------------------------ the edge

    @property
    def ended(self) -> bool:
        """True once the dialog is over (hung up or transferred and done)."""
        return self.machine.ended

    def start(self, now: float, variables: Mapping[str, str] | None = None, caller: str = "", callee: str = "",
              local_time: datetime | None = None) -> None:
        """The call is answered and media flows; ``local_time``: the callee's wall-clock time now (for date slots)."""
        self._handle(ev.CallStarted(now, dict(variables or {}), caller, callee, local_time), now)

    def schedule(self, at: float, event: ev.Event) -> None:
        """Deliver ``event`` to the dialog machine at ``at`` (timers, agent events)."""
        heapq.heappush(self._timers, (at, next(self._seq), event))

    def hang_up(self, now: float, cause: str = "caller_hangup") -> None:
        """The caller (or the channel) hung up."""
        self._handle(ev.HungUp(now, cause), now)

    def dtmf(self, digit: str, now: float) -> None:
        """The caller pressed a key."""
        self.timeline.add(now, "dtmf", digit=digit)
        self._handle(ev.Dtmf(now, digit), now)

    def agent_event(self, event: ev.Event) -> None:
        """An agent event from the handoff (AgentReady, AgentFailed, AgentTookOver, AgentLeft), at its own time."""
        self.timeline.add(event.at, "agent", event=type(event).__name__, **_fields(event))
        self._handle(event, event.at)

    def caller_frame(self, frame: AudioFrame) -> None:
        """One frame of the caller's audio (VAD, turn-taking, ASR)."""
        at, now = frame.captured_at, frame.captured_at + frame.duration_s
        self._fire_due(at)
        probability = self.vad.speech_probability(frame)
        self.timeline.vad(at, probability)
        self._preroll.append(frame)
        events = self.turns.caller_frame(probability, frame.rms_dbfs(), at, frame.duration_s)
        if self.turns.endpointer.in_speech and not any(isinstance(e, SpeechStart) for e in events):
            self._recognise(frame)
        for event in events:
            if isinstance(event, SpeechStart):
                self._on_speech_start(event)
            elif isinstance(event, PauseBot):
                self._on_pause(event)
            elif isinstance(event, SpeechEnd):
                self._on_speech_end(event, now)

    def bot_frame(self, now: float) -> Chunk | None:
        """The bot's audio for the tick starting at ``now``; None means silence."""
        self._fire_due(now)
        frame, events = self.player.next_frame(now)
        for event in events:
            self._on_player_event(event)
        if frame is not None:
            self.turns.bot_frame(rms_dbfs(frame), now)
        return frame

    # ------------------------------------------------------------- hearing

    def _on_speech_start(self, event: SpeechStart) -> None:
        self.timeline.add(event.at, "speech_start")
        tell = self.turns.speech_started(event.at, self.player.play_id is not None)  # over a prompt: held until words
        for frame in self._preroll:
            self._recognise(frame)
        if tell:
            self._handle(ev.SpeechStarted(event.at), event.at)

    def _on_pause(self, event: PauseBot) -> None:
        if self.player.talking:
            self.player.pause()
            self.turns.bot_stopped()
            self.timeline.add(event.at, "pause", play_id=self.player.play_id)

    def _recognise(self, frame: AudioFrame) -> None:
        at = frame.captured_at + frame.duration_s
        if self.turns.confirm.held is not None and self.player.play_id is None:  # the prompt ended: no barge-in left
            self._handle(ev.SpeechStarted(self.turns.confirm.held), at)
            self.turns.confirm.release()
        if self.turns.echo_only(frame.captured_at):  # only the bot's own echo: the recogniser hears it 30 dB down
            frame = AudioFrame.from_array(frame.to_array() // 32, frame.rate, frame.seq, frame.captured_at)
        result = self.asr.accept(frame)
        if result is not None and result.text:
            self.timeline.add(at, "partial", text=result.text)
            onset, forward = self.turns.partial(result.text, at, self.machine.flow.language, self.player.play_id is not None)
            if onset is not None:  # enough words over the prompt: now the machine may stop it
                self._handle(ev.SpeechStarted(onset), at)
            if forward:
                self._handle(ev.Transcript(at, result.text, final=False, confidence=result.confidence), at)

    def _on_speech_end(self, event: SpeechEnd, now: float) -> None:
        self.timeline.add(event.at, "speech_end", reason=event.reason)
        final, spent = _timed(self.asr.finish)
        at = now + (spent if self.settings.charge_compute else 0.0)
        extra = {"fit": round(final.fit, 1)} if final.fit is not None else {}
        self.timeline.add(at, "final", text=final.text, confidence=round(final.confidence, 3), compute_ms=round(spent * 1000),
                          **extra)
        onset = self.turns.confirm.final(final.text, self.machine.flow.language)
        if onset is not None:  # a request over the prompt ("no", "stop", two key words): the machine may stop it
            self._handle(ev.SpeechStarted(onset), at)
        self._handle(ev.Transcript(at, final.text, final=True, confidence=final.confidence), at)
        if self.player.paused:  # the machine did not take the interruption: carry on talking
            self.player.resume()
            self.turns.bot_started(at)
            self.timeline.add(at, "resume", play_id=self.player.play_id)

    # ------------------------------------------------------------ the machine

    def _handle(self, event: ev.Event, now: float) -> None:
        for command in self.machine.handle(event, now):
            self._execute(command, now)

    def _execute(self, command: ev.Command, now: float) -> None:
        match command:
            case ev.Play():
                self._play(command, now)
            case ev.StopPlayback(play_id=play_id) if play_id == self.player.play_id:
                self.timeline.add(now, "stop", play_id=play_id)
                for event in self.player.stop(now):
                    self._on_player_event(event)
            case ev.Listen():
                self.turns.listen(command.end_silence_ms, command.max_speech_ms, command.barge_in)
                self.asr.set_hints(command.hints)
                self.timeline.add(now, "listen", node=command.node)
            case ev.ArmTimer(timer_id=timer_id, fire_at=fire_at):
                self.schedule(fire_at, ev.TimerFired(fire_at, timer_id))
            case ev.CancelTimer(timer_id=timer_id):
                self._cancelled.add(timer_id)
            case ev.HangUp(disposition=disposition):
                self.disposition = disposition
                self.timeline.add(now, "hangup", disposition=disposition)
            case ev.PrepareHandoff() | ev.TransferCall():
                self.timeline.add(now, "handoff", command=type(command).__name__, **_fields(command))
                if self.handoff is not None:
                    self.handoff(command, self)
            case _:
                self.timeline.add(now, "command", command=type(command).__name__, **_fields(command))

    def _play(self, play: ev.Play, now: float) -> None:
        node = self.machine.flow.nodes.get(play.node)
        listens = node is not None and node.listen is not None
        self.turns.set_barge_in(node.barge_in if listens and node else BargeIn(BargeInMode.OFF))
        values = {**self.machine.outcome.variables, **self.machine.outcome.slots}
        started = time.perf_counter()
        source, ready_made = self.speaker(play, values)
        first, source = _peek(source)
        spent = time.perf_counter() - started
        ready_at = now + (spent if self.settings.charge_compute else 0.0)
        self.timeline.add(now, "play", play_id=play.play_id, node=play.node, text=play.text,
                          cached=ready_made, tts_first_ms=round(spent * 1000))
        for event in self.player.play(play.play_id, itertools.chain([first], source) if first is not None else source, ready_at):
            self._on_player_event(event)

    def _on_player_event(self, event: PlayerEvent) -> None:
        if event.kind == "started":
            self.turns.bot_started(event.at)
            self.timeline.add(event.at, "prompt_start", play_id=event.play_id)
            self._handle(ev.PromptStarted(event.at, event.play_id), event.at)
        else:
            self.turns.bot_stopped()
            self.timeline.add(event.at, "prompt_end", play_id=event.play_id, interrupted=event.interrupted,
                              heard_ms=event.heard_ms)
            self._handle(ev.PromptFinished(event.at, event.play_id, event.interrupted, event.heard_ms), event.at)

    def _fire_due(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now + 1e-9:
            at, _, event = heapq.heappop(self._timers)
            if isinstance(event, ev.TimerFired) and event.timer_id in self._cancelled:
                continue
            self._handle(event, max(at, 0.0))


def _best_score(matcher: IntentMatcher, text: str) -> float:
    best = matcher.best(text, None, 0.0)
    return best.score if best else 0.0


def _timed(fn: Callable[[], AsrResult]) -> tuple[AsrResult, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def _peek(source: Iterator[Chunk]) -> tuple[Chunk | None, Iterator[Chunk]]:
    """The first chunk (forcing synthesis of the first sentence now) and the rest."""
    return next(source, None), source


def _fields(command: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(command).items() if k != "at" and isinstance(v, (str, int, float))}
