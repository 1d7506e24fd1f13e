"""CallCore: one call's decisions, sans-I/O. Time-stamped events in, commands out.

Rules (the whole contract):

1. :meth:`CallCore.handle` takes one event and returns the commands it causes. Time comes only from the events;
   nothing here reads a clock, runs a model, touches a socket or a thread, or blocks. The driver
   (:class:`voicebot.call.CallSession`) runs VAD, recognition and synthesis, and feeds their answers back as
   events, so the simulator and FreeSWITCH run the same core.
2. Caller side: :class:`CallerAudio` (a frame and its VAD probability) goes through turn-taking (echo gate,
   endpointing, early end), then the interruption policy (:mod:`voicebot.dialog.interruption`: pause, confirm,
   resume) and the dialog machine. While the caller holds a turn each frame goes out as :class:`Recognise` (at
   the onset with ``preroll_ms`` before it); a frame that holds only the bot's echo goes 30 dB down. The end of
   the turn is :class:`FinishRecognition`, answered by :class:`Finalised`; partials come back as
   :class:`Recognised`. Where the node's two-pass policy wants it (:mod:`voicebot.dialog.twopass`), the final
   waits for :class:`RecogniseTurn` (the turn's audio, for the accurate pass) to be answered by
   :class:`TurnRecognised`; the timeline's ``final`` says which pass gave the words (``asr``) and how long
   Whisper took (``accurate_ms``).
3. Bot side: the dialog's ``Play`` becomes :class:`Synthesize` at once and the player waits, silent, for
   :class:`AudioReady`. :class:`SendSlot` asks for one send slot's frame and is answered by :class:`SendFrame`
   with audio that exists (or silence). A prompt starts (``PromptStarted``) when its first frame is sent. A prompt
   stopped before its audio is all out is answered by :class:`CancelSynthesis`.
4. Timers the dialog arms are kept here and fire before every caller frame and send slot that reaches their time.
5. The handoff to an agent is the call's :class:`~voicebot.handoff.machine.HandoffMachine`: the dialog's
   ``PrepareHandoff`` and ``TransferCall`` become its events (they still go out, for the record), its commands go
   out for the executor (FreeSWITCH, or the simulated agent), the executor's answers come back through
   :meth:`CallCore.handle` (or :meth:`CallCore.schedule`), and what it tells the dialog (``AgentReady``,
   ``AgentFailed``, ``AgentTookOver``, ``AgentLeft``) goes to the dialog machine. Between its ``StopBotAudio`` and
   ``ResumeBot`` every bot frame is silence. When the dialog ends the handoff machine hears ``CallEnded`` at once
   (its outcome is recorded once). ``HangUp`` goes out for the driver. After the dialog ends nothing plays.
6. The timeline records what happens, under the kinds and fields the session always recorded; each state the
   handoff machine enters is a ``handoff`` entry with its ``state`` and the ``event`` that led there.
7. An outbound campaign call with answering-machine detection has a gate (:attr:`CallCore.amd`,
   :mod:`voicebot.campaign.amdgate`): it gets the answer's ``CallStarted``, every caller frame, transcript and send
   slot, and holds the dialog back until its verdict; what it asks (start the flow, play the message, hang up as
   ``machine``) is carried out here (:mod:`voicebot.callcore_amd`).

The events and commands are in :mod:`voicebot.callevents` (and importable from here).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voicebot.asr.base import AsrResult
from voicebot.asr.turns import SpeechEnd, SpeechStart, TurnSettings, TurnTaker
from voicebot.audio.frame import AudioFrame, rms_dbfs
from voicebot.callcore_amd import AmdGlue
from voicebot.callevents import (
    AudioReady,
    CallerAudio,
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
from voicebot.campaign import amdgate
from voicebot.dialog import events as ev
from voicebot.dialog.flow import BargeIn, BargeInMode
from voicebot.dialog.interruption import Confirm, Decision, Interruption, Pause, Resume
from voicebot.dialog.machine import DialogMachine
from voicebot.dialog.twopass import RecogniseTurn, TakenFinal, TurnRecognised, TwoPass
from voicebot.handoff.machine import HandoffError, HandoffMachine
from voicebot.handoff.protocol import (
    HANDOFF_EVENTS,
    CallEnded,
    HandoffEvent,
    HandoffRequested,
    ResumeBot,
    StopBotAudio,
    TellDialog,
    TransferRequested,
)
from voicebot.player import PENDING, Player, PlayerEvent
from voicebot.timeline import Timeline

__all__ = ["ECHO_ATTENUATION", "AudioReady", "CallCore", "CallSettings", "CallerAudio", "CancelSynthesis", "CoreCommand",
           "CoreEvent", "Finalised", "FinishRecognition", "Recognise", "Recognised", "SendFrame", "SendSlot", "SetHints",
           "Synthesize"]

ECHO_ATTENUATION = 32  # a caller frame holding only the bot's echo reaches the recogniser this many times (30 dB) down


@dataclass(frozen=True)
class CallSettings:
    """Per-call media settings. ``preroll_ms`` of audio before a detected onset goes to ASR too. ``accurate_pass``:
    the driver answers :class:`RecogniseTurn` (off: every final is the streaming pass's, whatever the node says)."""

    rate: int = 8000
    frame_ms: int = 20
    preroll_ms: int = 300
    turn: TurnSettings = field(default_factory=TurnSettings)
    charge_compute: bool = False
    accurate_pass: bool = False


class CallCore(AmdGlue):
    """One call: the dialog machine, turn-taking, the interruption policy, the player's state and the handoff."""

    def __init__(self, machine: DialogMachine, settings: CallSettings | None = None,
                 handoff: HandoffMachine | None = None) -> None:
        self.machine = machine
        self.handoff = handoff or HandoffMachine()
        self.bot_muted = False  # an agent has the caller (rule 5)
        self.now = 0.0  # the latest time an event brought (s): executors answer at it
        self.settings = s = settings or CallSettings()
        score = _scorer(machine)
        self.turns = TurnTaker(s.turn, intent_score=score)
        self.interruption = Interruption(machine.flow.language, score=score)
        self.player = Player(s.rate, s.frame_ms)
        self.timeline = Timeline()
        self.twopass = TwoPass(machine.flow, _allowed_scorer(machine), s.accurate_pass)
        self.disposition = ""  # set when the bot hangs up
        self._preroll: deque[AudioFrame] = deque(maxlen=max(1, s.preroll_ms // s.frame_ms))
        self._timers: list[tuple[float, int, ev.Event | HandoffEvent]] = []
        self._seq = itertools.count()
        self._cancelled: set[str] = set()
        self._plays: dict[int, ev.Play] = {}  # issued, audio not yet ready
        self._out: list[CoreCommand] = []
        self.amd: amdgate.AmdGate | None = None  # set before the answer on a campaign call with AMD (rule 7)

    @property
    def ended(self) -> bool:
        """True once the dialog is over (hung up, or transferred and done), or the AMD gate ended the call."""
        if self.amd is not None and self.amd.owns_call:
            return self.amd.ended
        return self.machine.ended

    def schedule(self, at: float, event: ev.Event | HandoffEvent) -> None:
        """Deliver ``event`` at ``at`` (timers, agent events, the handoff executor's answers)."""
        heapq.heappush(self._timers, (at, next(self._seq), event))

    def handle(self, event: CoreEvent) -> list[CoreCommand]:
        """Apply one event; return the commands it causes, in order."""
        self.now = max(self.now, event.frame.captured_at if isinstance(event, CallerAudio) else event.at)
        match event:
            case CallerAudio():
                self._caller(event.frame, event.probability)
            case Recognised():
                self._partial(event.at, event.result)
            case Finalised():
                self._final(event)
            case TurnRecognised():
                if (taken := self.twopass.answered(event)) is not None:
                    self._take_final(taken)
            case AudioReady():
                self._audio_ready(event)
            case SendSlot(at=at):
                self._send_slot(at)
            case ev.Dtmf():
                self.timeline.add(event.at, "dtmf", digit=event.digit)
                self._dialog(event, event.at)
            case ev.AgentReady() | ev.AgentFailed() | ev.AgentTookOver() | ev.AgentLeft():
                self._agent_event(event)
            case _ if isinstance(event, HANDOFF_EVENTS):
                self._handoff(event)
            case ev.CallStarted() if self.amd is not None:
                self._amd_do(self.amd.start(event))
            case ev.HungUp() if self.amd is not None and self.amd.owns_call:
                self._amd_do(self.amd.hung_up(event.at))
            case _:
                self._dialog(event, event.at)
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------- caller side

    def _caller(self, frame: AudioFrame, probability: float) -> None:
        at, now = frame.captured_at, frame.captured_at + frame.duration_s
        self._fire_due(at)
        self._accurate_overdue(at)
        self.timeline.vad(at, probability)
        self._preroll.append(frame)
        events = self.turns.caller_frame(probability, frame.rms_dbfs(), at, frame.duration_s)
        if self.turns.endpointer.in_speech and not any(isinstance(e, SpeechStart) for e in events):
            self._recognise(frame)
        for event in events:
            if isinstance(event, SpeechStart):
                self._speech_start(event)
            elif isinstance(event, SpeechEnd):
                self.timeline.add(event.at, "speech_end", reason=event.reason)
                self._out.append(FinishRecognition(now))
        self._decide(self.interruption.voiced(self.turns.voiced_for(now), now), now)
        if self.amd is not None:
            self._amd_do(self.amd.frame(frame, probability))

    def _speech_start(self, event: SpeechStart) -> None:
        self.timeline.add(event.at, "speech_start")
        decisions = self.interruption.speech_started(event.at)  # over a prompt: held until words confirm it
        self.twopass.turn_started()
        for frame in self._preroll:
            self._recognise(frame)
        self._decide(decisions, event.at)

    def _recognise(self, frame: AudioFrame) -> None:
        if self.turns.echo_only(frame.captured_at):  # only the bot's own echo: the recogniser hears it 30 dB down
            frame = AudioFrame.from_array(frame.to_array() // ECHO_ATTENUATION, frame.rate, frame.seq, frame.captured_at)
        self.twopass.heard(frame)
        self._out.append(Recognise(frame))

    def _partial(self, at: float, result: AsrResult) -> None:
        if not result.text:
            return
        self.timeline.add(at, "partial", text=result.text)
        self.turns.partial(result.text, at, self.machine.flow.language)
        if self._amd_heard(at, result.text, final=False):
            return
        decisions, forward = self.interruption.partial(result.text)
        self._decide(decisions, at)  # enough words over the prompt: now the machine may stop it
        if forward:
            self._dialog(ev.Transcript(at, result.text, final=False, confidence=result.confidence), at)

    def _final(self, event: Finalised) -> None:
        if self._amd_heard(event.at, event.result.text, final=True):  # the gate holds the call: its words alone
            self.timeline.add(event.at, "final", text=event.result.text, confidence=round(event.result.confidence, 3),
                              compute_ms=event.compute_ms, amd=True)
            return
        if (superseded := self.twopass.abandon(event.at)) is not None:
            self._take_final(superseded)
        step = self.twopass.fast_final(event.at, event.result, event.compute_ms)
        if isinstance(step, RecogniseTurn):  # the words wait for the accurate pass
            self.timeline.add(event.at, "fast_final", text=event.result.text, reason=step.reason,
                              compute_ms=event.compute_ms)
            self._out.append(step)
        else:
            self._take_final(step)

    def _accurate_overdue(self, now: float) -> None:
        if (overdue := self.twopass.expired(now)) is not None:  # Whisper is late: the fast words stand
            self._take_final(overdue)

    def _take_final(self, taken: TakenFinal) -> None:
        final, at = taken.result, taken.at
        self.timeline.add(at, "final", text=final.text, confidence=round(final.confidence, 3),
                          compute_ms=taken.compute_ms, **taken.record)
        self._decide(self.interruption.final(final.text), at)  # a request over the prompt: the machine may stop it
        self._dialog(ev.Transcript(at, final.text, final=True, confidence=final.confidence), at)
        self._decide(self.interruption.turn_over(at), at)  # not taken from the caller: the paused prompt resumes

    def _decide(self, decisions: list[Decision], now: float) -> None:
        """Carry out the interruption policy's decisions."""
        for decision in decisions:
            match decision:
                case Pause(at=at):
                    self.player.pause()
                    self.timeline.add(at, "pause", play_id=self.player.play_id)
                case Resume(at=at):
                    self.player.resume()
                    self.timeline.add(at, "resume", play_id=self.player.play_id)
                case Confirm(onset=onset):
                    self._dialog(ev.SpeechStarted(onset), now)

    # ---------------------------------------------------------------- bot side

    def _send_slot(self, now: float) -> None:
        self._fire_due(now)
        if self.amd is not None:
            self._amd_do(self.amd.tick(now))
        self._accurate_overdue(now)
        frame, events = self.player.next_frame(now)
        for event in events:
            self._player_event(event)
        if self.bot_muted:  # the agent has the caller: the bot's frame is never heard (rule 5)
            frame = None
        if frame is not None:
            self.turns.bot_frame(rms_dbfs(frame), now)
        self._out.append(SendFrame(now, frame))

    def _play(self, play: ev.Play, now: float, values: dict[str, str] | None = None) -> None:
        """Play ``play``; ``values`` given (the AMD message): not a flow node's prompt, and nothing interrupts it."""
        node = self.machine.flow.nodes.get(play.node) if values is None else None
        listens = node is not None and node.listen is not None
        for event in self.player.play(play.play_id, PENDING, now):
            self._player_event(event)
        self.interruption.play(node.barge_in if listens and node else BargeIn(BargeInMode.OFF))
        self._plays[play.play_id] = play
        if values is None:
            values = {**self.machine.outcome.variables, **self.machine.outcome.slots}
        self._out.append(Synthesize(now, play, values))

    def _audio_ready(self, event: AudioReady) -> None:
        play = self._plays.pop(event.play_id, None)
        if play is None or not self.player.attach(event.play_id, event.audio, event.ready_at):
            self._out.append(CancelSynthesis(event.play_id))  # stopped before its audio was ready
            return
        self.timeline.add(event.at, "play", play_id=play.play_id, node=play.node, text=play.text,
                          cached=event.cached, tts_first_ms=event.first_ms)

    def _cancel(self, play_id: int, at: float) -> None:
        """A prompt stopped: stop its synthesis; one stopped before its audio was ready is still on the timeline."""
        play = self._plays.pop(play_id, None)
        if play is not None:
            self.timeline.add(play.at, "play", play_id=play_id, node=play.node, text=play.text, cached=False,
                              tts_first_ms=None, cancelled_at=round(at, 4))
        self._out.append(CancelSynthesis(play_id))

    def _player_event(self, event: PlayerEvent) -> None:
        if event.kind == "started":
            self.interruption.prompt_started(event.at)
            self.timeline.add(event.at, "prompt_start", play_id=event.play_id)
            self._dialog(ev.PromptStarted(event.at, event.play_id), event.at)
            return
        decisions = self.interruption.prompt_ended(event.at)  # a held onset is told now: the turn is an answer
        if event.interrupted:
            self._cancel(event.play_id, event.at)
        self.timeline.add(event.at, "prompt_end", play_id=event.play_id, interrupted=event.interrupted,
                          heard_ms=event.heard_ms)
        self._dialog(ev.PromptFinished(event.at, event.play_id, event.interrupted, event.heard_ms), event.at)
        self._decide(decisions, event.at)
        if self.amd is not None:
            self._amd_do(self.amd.prompt_finished(event.play_id, event.at, event.interrupted))

    # -------------------------------------------------------------- the dialog

    def _dialog(self, event: ev.Event, now: float) -> None:
        for command in self.machine.handle(event, now):
            self._execute(command, now)
        if self.machine.ended and not self.handoff.done:  # the call is over: the handoff frees what it holds
            self._handoff(CallEnded(now, self.machine.outcome.disposition or "ended"))

    # ------------------------------------------------------------ the handoff

    def _agent_event(self, event: ev.AgentReady | ev.AgentFailed | ev.AgentTookOver | ev.AgentLeft) -> None:
        self.timeline.add(event.at, "agent", event=type(event).__name__, **_fields(event))
        self._dialog(event, event.at)

    def _handoff(self, event: HandoffEvent) -> None:
        """One event for the handoff machine; its commands go out, except what it tells the dialog."""
        before = self.handoff.state
        try:
            commands = self.handoff.handle(event, event.at)
        except HandoffError as err:  # an executor's late or stray answer: on the timeline, the call goes on
            self.timeline.add(event.at, "handoff", error=str(err))
            return
        if self.handoff.state is not before:
            self.timeline.add(event.at, "handoff", state=self.handoff.state.value, event=type(event).__name__)
        for command in commands:
            match command:
                case TellDialog(event=told):
                    self._agent_event(told)  # type: ignore[arg-type]
                case StopBotAudio() | ResumeBot():
                    self.bot_muted = isinstance(command, StopBotAudio)
                    self._out.append(command)
                case _:
                    self._out.append(command)

    def _snapshot(self) -> dict[str, object]:
        """The call so far, for the screen-pop and the whisper."""
        outcome = self.machine.outcome
        return {**outcome.summary(), "variables": dict(outcome.variables)}

    def _execute(self, command: ev.Command, now: float) -> None:
        match command:
            case ev.Play():
                self._play(command, now)
            case ev.StopPlayback(play_id=play_id) if play_id == self.player.play_id:
                self.timeline.add(now, "stop", play_id=play_id)
                for event in self.player.stop(now):
                    self._player_event(event)
            case ev.Listen():
                self.turns.listen(command.end_silence_ms, command.max_speech_ms)
                self.interruption.listen(command.barge_in)
                self._out.append(SetHints(tuple(command.hints)))
                self.twopass.listen(command.node, tuple(command.hints))
                self.timeline.add(now, "listen", node=command.node)
            case ev.ArmTimer(timer_id=timer_id, fire_at=fire_at):
                self.schedule(fire_at, ev.TimerFired(fire_at, timer_id))
            case ev.CancelTimer(timer_id=timer_id):
                self._cancelled.add(timer_id)
            case ev.HangUp(disposition=disposition):
                self.disposition = disposition
                self.timeline.add(now, "hangup", disposition=disposition)
                self._out.append(command)
            case ev.PrepareHandoff() | ev.TransferCall():
                self.timeline.add(now, "handoff", command=type(command).__name__, **_fields(command))
                self._out.append(command)
                self._handoff(HandoffRequested(now, command.group, self._snapshot())
                              if isinstance(command, ev.PrepareHandoff) else TransferRequested(now, self._snapshot()))
            case _:
                self.timeline.add(now, "command", command=type(command).__name__, **_fields(command))

    def _fire_due(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now + 1e-9:
            at, _, event = heapq.heappop(self._timers)
            if isinstance(event, ev.TimerFired) and event.timer_id in self._cancelled:
                continue
            if isinstance(event, HANDOFF_EVENTS):
                self._handoff(event)
            elif isinstance(event, ev.AgentReady | ev.AgentFailed | ev.AgentTookOver | ev.AgentLeft):
                self._agent_event(event)
            else:
                self._dialog(event, max(at, 0.0))


def _scorer(machine: DialogMachine) -> Callable[[str], float]:
    def score(text: str) -> float:
        best = machine.matcher.best(text, None, 0.0)
        return best.score if best else 0.0
    return score


def _allowed_scorer(machine: DialogMachine) -> Callable[[str, list[str]], list[tuple[str, float]]]:
    def scores(text: str, allowed: list[str]) -> list[tuple[str, float]]:
        return [(m.intent, m.score) for m in machine.matcher.match(text, allowed)]
    return scores


def _fields(command: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(command).items() if k != "at" and isinstance(v, (str, int, float))}
