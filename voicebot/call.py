"""The per-call driver, kept thin: caller frames in, bot frames out, :class:`~voicebot.callcore.CallCore` between.

One :class:`CallSession` per call. The media edge (the simulator, or unicast on
FreeSWITCH) calls, every 20 ms tick::

    session.caller_frame(frame)      # what the caller's line carried
    out = session.bot_frame(now)     # what to send the caller (None: silence)

The session runs what the core asks for and feeds the answers back as events:
VAD on each caller frame, the recogniser (fed only while the caller speaks, with
a pre-roll), the accurate pass on a turn's audio (through an
:class:`~voicebot.asr.accurate.AccuratePass` executor: inline in the simulator,
the Whisper worker pool on FreeSWITCH; none: the fast final stands), synthesis (through a :class:`~voicebot.synthesis.Synthesis`
executor: inline in the simulator, a worker thread on FreeSWITCH), and the
handoff executor (the hook that carries out the core's handoff commands: the
simulated agent, or the FreeSWITCH edge). All decisions (turn-taking, barge-in, dialog, playback) are the
core's, so the simulator and FreeSWITCH behave the same.

The recogniser's final never blocks the call where the stream can deliver it later (``finish_later``: the
pooled recogniser of the engine) and the edge gave a ``post`` (a way onto the call's own thread): the call goes on
sending the bot's audio while the final is on its way; the caller's frames that arrive meanwhile are held and fed
in order once it is in (the core sees the same order as if the call had waited). A final later than the stream's
``finish_timeout_s`` is given up on: the turn ends with no words, as when the pool's workers are far behind.

Compute time is charged to the call's clock: when ``charge_compute`` is on (the
simulator running faster than real time), the measured time of ASR
finalisation and of synthesizing a prompt's first audio delays what follows, so
latencies measured on a virtual clock are honest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime

from voicebot.asr.accurate import AccuratePass, NoAccurate
from voicebot.asr.base import AsrResult, AsrStream, VadStream
from voicebot.asr.turns import TurnTaker
from voicebot.audio.frame import AudioFrame
from voicebot.callcore import (
    AudioReady,
    CallCore,
    CallerAudio,
    CallSettings,
    CancelSynthesis,
    CoreCommand,
    CoreEvent,
    Finalised,
    FinishRecognition,
    Recognise,
    Recognised,
    SendFrame,
    SendSlot,
    SetHints,
    Synthesize,
)
from voicebot.dialog import events as ev
from voicebot.dialog.interruption import Interruption
from voicebot.dialog.machine import DialogMachine
from voicebot.dialog.twopass import RecogniseTurn, TurnRecognised
from voicebot.handoff.protocol import HANDOFF_COMMANDS, HandoffCommand, HandoffEvent
from voicebot.player import Chunk, Player
from voicebot.synthesis import InlineSynthesis, Speaker, Synthesis
from voicebot.timeline import Timeline

__all__ = ["CallSession", "CallSettings", "Handoff", "Speaker"]

# handoff(command, session): carry out one of the handoff machine's commands; answers come back through
# session.deliver (now) or session.schedule (later)
Handoff = Callable[[HandoffCommand, "CallSession"], None]


class CallSession:
    """One call through VAD → CallCore (turn-taking, interruption, dialog, player) → ASR and synthesis."""

    def __init__(self, machine: DialogMachine, *, vad: VadStream, asr: AsrStream, speaker: Speaker,
                 settings: CallSettings | None = None, handoff: Handoff | None = None,
                 synthesis: Synthesis | None = None, accurate: AccuratePass | None = None) -> None:
        settings = replace(settings or CallSettings(), accurate_pass=accurate is not None)
        self.core = CallCore(machine, settings)
        self.vad, self.asr, self.speaker, self.handoff = vad, asr, speaker, handoff
        self.synthesis: Synthesis = synthesis or InlineSynthesis(speaker, self.settings.charge_compute)
        self.accurate: AccuratePass = accurate or NoAccurate()  # never asked when None
        self._answers: list[TurnRecognised] = []  # accurate answers stamped ahead of the call's clock (charged compute)
        self._clock = 0.0  # the latest frame time seen (s)
        self.spoken: list[tuple[ev.Play, dict[str, str]]] = []  # every prompt asked for, with its values (reports)
        self.post: Callable[[Callable[[], None]], None] | None = None  # onto the call's thread (the engine's edge)
        self._finishing: tuple[int, float, float] | None = None  # a final on its way: (id, at, perf_counter started)
        self._finish_ids = 0
        self._held: list[Callable[[], None]] = []  # the caller's side that came while the final was on its way

    # ------------------------------------------------------- the core's state

    @property
    def machine(self) -> DialogMachine:
        return self.core.machine

    @property
    def settings(self) -> CallSettings:
        return self.core.settings

    @property
    def timeline(self) -> Timeline:
        return self.core.timeline

    @property
    def player(self) -> Player:
        return self.core.player

    @property
    def turns(self) -> TurnTaker:
        return self.core.turns

    @property
    def interruption(self) -> Interruption:
        return self.core.interruption

    @property
    def disposition(self) -> str:
        """The bot's hang-up disposition ("" until the bot hangs up)."""
        return self.core.disposition

    @property
    def ended(self) -> bool:
        """True once the dialog is over (hung up or transferred and done)."""
        return self.core.ended

    # ------------------------------------------------------------ the edge

    def start(self, now: float, variables: Mapping[str, str] | None = None, caller: str = "", callee: str = "",
              local_time: datetime | None = None) -> None:
        """The call is answered and media flows; ``local_time``: the callee's wall-clock time now (for date slots)."""
        self.deliver(ev.CallStarted(now, dict(variables or {}), caller, callee, local_time))

    def schedule(self, at: float, event: ev.Event | HandoffEvent) -> None:
        """Deliver ``event`` at ``at`` (timers, agent events, the handoff executor's answers)."""
        self.core.schedule(at, event)

    def hang_up(self, now: float, cause: str = "caller_hangup") -> None:
        """The caller (or the channel) hung up."""
        if not self._hold(lambda: self.hang_up(now, cause)):
            self.deliver(ev.HungUp(now, cause))

    def dtmf(self, digit: str, now: float) -> None:
        """The caller pressed a key."""
        if not self._hold(lambda: self.dtmf(digit, now)):
            self.deliver(ev.Dtmf(now, digit))

    def agent_event(self, event: ev.Event | HandoffEvent) -> None:
        """An event from the handoff executor (:mod:`voicebot.handoff.protocol`), at its own time."""
        if not self._hold(lambda: self.agent_event(event)):
            self.deliver(event)

    def caller_frame(self, frame: AudioFrame) -> None:
        """One frame of the caller's audio (VAD, then the core); held while a final is on its way."""
        if self._hold(lambda: self.caller_frame(frame)):
            self._finish_overdue()
            return
        self._deliver_due(frame.captured_at)
        self.deliver(CallerAudio(frame, self.vad.speech_probability(frame)))

    def bot_frame(self, now: float) -> Chunk | None:
        """The bot's audio for the send slot starting at ``now``; None means silence. Never waits for synthesis."""
        sent: list[Chunk | None] = [None]
        self._finish_overdue()
        self._deliver_due(now)
        self._run(self.core.handle(SendSlot(now)), sent)
        return sent[0]

    def deliver(self, event: CoreEvent) -> None:
        """Hand one event to the core and carry out what it asks (on the call's own thread)."""
        self._run(self.core.handle(event))

    def close(self) -> None:
        """Release the synthesis executor."""
        self.synthesis.close()

    # --------------------------------------------------------- the commands

    def _run(self, commands: list[CoreCommand], sent: list[Chunk | None] | None = None) -> None:
        for command in commands:
            match command:
                case SendFrame(audio=audio) if sent is not None:
                    sent[0] = audio
                case Recognise(frame=frame):
                    result = self.asr.accept(frame)
                    if result is not None and result.text:
                        self.deliver(Recognised(frame.captured_at + frame.duration_s, result))
                case FinishRecognition(at=at):
                    self._finish(at)
                case RecogniseTurn():
                    self.accurate.start(command, self._answered)
                case SetHints(hints=hints):
                    self.asr.set_hints(hints)
                case Synthesize(at=at, play=play, values=values):
                    self.spoken.append((play, dict(values)))
                    self.synthesis.start(play, values, at, self._ready)
                case CancelSynthesis(play_id=play_id):
                    self.synthesis.cancel(play_id)
                case _ if self.handoff is not None and isinstance(command, HANDOFF_COMMANDS):
                    self.handoff(command, self)

    def _finish(self, at: float) -> None:
        """The turn's final: asked for without waiting where the stream and the edge allow it, else waited for."""
        started = time.perf_counter()
        finish_later = getattr(self.asr, "finish_later", None)
        if self.post is None or finish_later is None:
            final = self.asr.finish()
            spent = time.perf_counter() - started
            self.deliver(Finalised(at + (spent if self.settings.charge_compute else 0.0), final, round(spent * 1000)))
            return
        self._finish_ids += 1
        ident, post = self._finish_ids, self.post
        self._finishing = (ident, at, started)
        finish_later(lambda final: post(lambda: self._finished(ident, final)))

    def _finished(self, ident: int, final: AsrResult) -> None:
        """(The call's thread) the final of finish ``ident``; then the caller's frames held meanwhile, in order."""
        if self._finishing is None or self._finishing[0] != ident:
            return  # given up on already
        _, at, started = self._finishing
        spent = time.perf_counter() - started
        self._finishing = None
        self.deliver(Finalised(at + (spent if self.settings.charge_compute else 0.0), final, round(spent * 1000)))
        held, self._held = self._held, []
        for step in held:
            step()  # a frame may end another turn: what follows it is held again

    def settle(self) -> None:
        """The call is stopping: a final still on its way is given up on and what was held behind it is fed now
        (a hang-up queued behind a turn's end must still reach the dialog)."""
        if self._finishing is not None:
            give_up = getattr(self.asr, "give_up", None)
            if give_up is not None:
                give_up()
            self._finished(self._finishing[0], AsrResult("", final=True))

    def _hold(self, step: Callable[[], None]) -> bool:
        """Keep ``step`` (the caller's side) for after the final on its way; False when none is."""
        if self._finishing is None:
            return False
        self._held.append(step)
        return True

    def _finish_overdue(self) -> None:
        """A final later than the stream's ``finish_timeout_s`` is given up on: the turn ends with no words."""
        if self._finishing is None:
            return
        ident, _, started = self._finishing
        if time.perf_counter() - started > float(getattr(self.asr, "finish_timeout_s", 10.0)):
            give_up = getattr(self.asr, "give_up", None)
            if give_up is None or give_up():
                self._finished(ident, AsrResult("", final=True))

    def _answered(self, answer: TurnRecognised) -> None:
        """An accurate answer: now, or (stamped later: compute charged to a virtual clock) when the call gets there."""
        if answer.at <= self._clock + 1e-9:
            self.deliver(answer)
        else:
            self._answers.append(answer)

    def _deliver_due(self, now: float) -> None:
        self._clock = max(self._clock, now)
        for answer in [a for a in self._answers if a.at <= now + 1e-9]:
            self._answers.remove(answer)
            self.deliver(answer)

    def _ready(self, ready: AudioReady) -> None:
        self.deliver(ready)
