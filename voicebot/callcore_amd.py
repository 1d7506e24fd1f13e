"""The answering-machine gate's glue in :class:`~voicebot.callcore.CallCore` (its rule 7): what the gate
(:mod:`voicebot.campaign.amdgate`) hears from the call, and carrying out what it asks."""

from __future__ import annotations

from voicebot.asr.turns import TurnTaker
from voicebot.callevents import CoreCommand, SetHints
from voicebot.campaign import amdgate
from voicebot.dialog import events as ev
from voicebot.dialog.machine import DialogMachine
from voicebot.timeline import Timeline


class AmdGlue:
    """Mixed into CallCore: the gate (``amd``, None on calls without AMD) and the core's parts it drives."""

    amd: amdgate.AmdGate | None
    machine: DialogMachine
    timeline: Timeline
    turns: TurnTaker
    disposition: str
    _out: list[CoreCommand]

    def _dialog(self, event: ev.Event, now: float) -> None:
        raise NotImplementedError  # CallCore's

    def _play(self, play: ev.Play, now: float, values: dict[str, str] | None = None) -> None:
        raise NotImplementedError  # CallCore's

    def _amd_heard(self, at: float, text: str, final: bool) -> bool:
        """Feed a transcript to the AMD gate; True when the dialog must not get it (rule 7)."""
        if self.amd is None:
            return False
        hidden = self.amd.hides(final)
        self._amd_do(self.amd.transcript(at, text, final))
        return hidden

    def _amd_do(self, actions: list[amdgate.GateAction]) -> None:
        """Carry out what the AMD gate asks."""
        for action in actions:
            match action:
                case amdgate.Note(at=at, fields=fields):
                    self.timeline.add(at, "amd", **fields)
                case amdgate.Hint(hints=hints):
                    self._out.append(SetHints(hints))
                case amdgate.StartFlow(at=at, started=started):
                    assert self.amd is not None
                    self.amd.released_in_speech(self.turns.endpointer.in_speech)
                    self._dialog(started, at)
                case amdgate.EndFlow(at=at, disposition=disposition):
                    self._dialog(ev.HungUp(at, disposition), at)
                case amdgate.PlayMessage(at=at, play=play, values=values):
                    self._play(play, at, values)
                case amdgate.EndCall():
                    self._amd_end(action)

    def _amd_end(self, end: amdgate.EndCall) -> None:
        """The gate ended the call: the outcome says so (with the answer's time when the flow never ran)."""
        outcome = self.machine.outcome
        if outcome.started_at is None:
            outcome.started_at, outcome.variables = end.started.at, dict(end.variables)
        outcome.disposition, outcome.ended_at = end.disposition, end.at
        if end.hang_up:
            self.disposition = end.disposition
            self.timeline.add(end.at, "hangup", disposition=end.disposition)
            self._out.append(ev.HangUp(end.at, end.disposition))
