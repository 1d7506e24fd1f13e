"""Answering-machine detection in the call path, sans-I/O: the gate :class:`~voicebot.callcore.CallCore` consults on
an outbound campaign call whose campaign has an answering-machine policy.

Rules:

1. Policy per call (:class:`AmdPolicy`): ``off`` (no gate: the flow starts at the answer, as on an inbound call),
   ``hang_up`` or ``leave_message``. A campaign's dial carries it in the channel variable ``vb_amd``
   (:data:`CHANNEL_POLICY`); ``vb_amd_message`` is the message text (percent-encoded; ``{{variables}}`` filled) and
   ``vb_amd_message_node`` a flow node whose first line is played instead.
2. From the answer (``CallStarted``, when every timer starts) the flow is held: the bot says nothing while the
   detector (:class:`~voicebot.campaign.amd.AnsweringMachineDetector`) hears the caller's frames (mean |sample| and
   the VAD's probability) and the recogniser's partials and finals. The recogniser is biased toward the voicemail
   phrases and what people say on picking up meanwhile (:class:`Hint`).
3. HUMAN → the flow starts at once (its ``CallStarted`` carries the answer time, so the call's times still count
   from the answer). NOTSURE at the total analysis time (5 s) → the same: a person hung up on by mistake is a lost
   lead and an abandoned call, a machine that hears the greeting costs one recorded prompt.
4. MACHINE → ``hang_up``: the call ends with disposition ``machine``. ``leave_message``: wait for the beep
   (:class:`~voicebot.campaign.tones.BeepDetector`) and its end, or, with no beep, for :data:`MESSAGE_SILENCE_S` of
   silence after the verdict, or at most :data:`MESSAGE_WAIT_MAX_S`; play the message (nobody can interrupt it),
   then end with disposition ``machine``. No message configured: hang up as ``hang_up`` does.
5. A voicemail phrase heard within :data:`REVISE_S` after a HUMAN/NOTSURE release (a greeting with a pause looks
   human to the timer) revises the verdict: the flow is ended as ``machine`` and the policy applies as in rule 4.
6. The callee hanging up before a verdict ends the call as ``caller_hangup`` (after a MACHINE verdict: ``machine``).
7. Every step is a :class:`Note` for the call's timeline (kind ``amd``), each holding the whole summary so far; the
   last one is the call record's ``amd`` field (:data:`RECORD_FIELDS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

from voicebot.audio.frame import AudioFrame
from voicebot.campaign.amd import (
    HUMAN_PHRASES,
    VOICEMAIL_PHRASES,
    AmdSettings,
    AmdStatus,
    AmdVerdict,
    AnsweringMachineDetector,
)
from voicebot.campaign.tones import BEEP_MIN_DBFS, BeepDetector
from voicebot.dialog import events as ev
from voicebot.dialog.flow import Flow
from voicebot.dialog.machine import render_template

CHANNEL_POLICY = "vb_amd"  # the channel variable a campaign's originate sets: off | hang_up | leave_message
CHANNEL_MESSAGE = "vb_amd_message"  # the message text for leave_message
CHANNEL_MESSAGE_NODE = "vb_amd_message_node"  # or a flow node whose first line is the message
MESSAGE_SILENCE_S = 1.5  # leave_message without a beep: this much silence after the verdict ends the greeting (s)
MESSAGE_WAIT_MAX_S = 15.0  # leave_message: the message plays at the latest this long after the verdict (s)
BEEP_END_DB = 10.0  # the beep is over when a frame is this much quieter than the beep (dB)
BEEP_TAIL_MAX_S = 2.0  # ...or this long after it was found (s)
REVISE_S = 5.0  # after the flow started, a voicemail phrase heard this long still revises the verdict (s)
MESSAGE_NODE = "amd_message"  # the node name the message plays under (timeline, record)
MESSAGE_PLAY_ID = 1_000_000  # the message's play id (the dialog's own ids count from 1; it never plays here)
BEEP_RATE = 8000  # Hz: the beep detector's rate
# What people say on picking up, beside the detector's phrases in the recogniser's hints: with only voicemail
# phrases to choose from, a hinted recogniser heard "yes, speaking" as "at the tone" (bench/amd_callpath.py).
OPENINGS = ("hello", "hi", "yes", "yeah", "this is", "good morning", "good afternoon", "good evening", "who",
            "你好", "喂", "是我", "哪位", "您好")
RECORD_FIELDS = ("policy", "verdict", "reason", "detail", "verdict_ms", "revised", "action", "flow_started_ms",
                 "beep_ms", "message_trigger", "message_started_ms", "message_left")


class AmdPolicy(StrEnum):
    """What a campaign does with an answering machine."""

    OFF = "off"
    HANG_UP = "hang_up"
    LEAVE_MESSAGE = "leave_message"


_ALIASES = {"": AmdPolicy.OFF, "none": AmdPolicy.OFF, "hangup": AmdPolicy.HANG_UP, "message": AmdPolicy.LEAVE_MESSAGE}


def parse_policy(text: str) -> AmdPolicy:
    """``off``, ``hang_up`` (or ``hangup``) or ``leave_message``; ValueError naming the choices otherwise."""
    word = text.strip().lower().replace("-", "_")
    if word in _ALIASES:
        return _ALIASES[word]
    try:
        return AmdPolicy(word)
    except ValueError:
        raise ValueError(f"answering-machine policy {text!r}: use one of off, hang_up, leave_message") from None


@dataclass(frozen=True)
class AmdCall:
    """One call's answering-machine settings (rule 1)."""

    policy: AmdPolicy = AmdPolicy.HANG_UP
    message: str = ""
    message_node: str = ""
    settings: AmdSettings = field(default_factory=AmdSettings)

    def channel_vars(self) -> dict[str, str]:
        """The originate's channel variables for this call (none for ``off``); the message is percent-encoded, as
        an originate cannot carry its commas and quotes."""
        if self.policy is AmdPolicy.OFF:
            return {}
        extra = {CHANNEL_MESSAGE: quote(self.message, safe=" "), CHANNEL_MESSAGE_NODE: self.message_node}
        return {CHANNEL_POLICY: self.policy.value, **{k: v for k, v in extra.items() if v}}


def amd_from_channel(headers: Mapping[str, str]) -> AmdCall | None:
    """The call's settings from its channel data (``variable_vb_amd``...); None when AMD is off or not asked for.
    ValueError for a policy that is not one."""
    policy = parse_policy(headers.get(f"variable_{CHANNEL_POLICY}", ""))
    if policy is AmdPolicy.OFF:
        return None
    return AmdCall(policy, unquote(headers.get(f"variable_{CHANNEL_MESSAGE}", "")),
                   headers.get(f"variable_{CHANNEL_MESSAGE_NODE}", ""))


def gate_for_call(headers: Mapping[str, str], flow: Flow, rate: int) -> tuple[AmdGate | None, str | None]:
    """The gate a call's channel data asks for (None: AMD off) and what is wrong with its settings (None: nothing).
    A policy that is not one gives no gate; a message that cannot be played gives a gate that hangs up on machines."""
    try:
        call = amd_from_channel(headers)
    except ValueError as err:
        return None, str(err)
    if call is None:
        return None, None
    problem = message_problem(call, flow)
    if problem is not None:
        call = AmdCall(call.policy, call.message, "", call.settings)
    return AmdGate(call, flow, rate), problem


def message_problem(call: AmdCall, flow: Flow) -> str | None:
    """Why ``call``'s message cannot be played with ``flow`` (None: it can, or none is needed)."""
    if call.message_node and call.message_node not in flow.nodes:
        return f"the message node {call.message_node!r} is not a node of flow {flow.id}"
    if call.message_node and not flow.nodes[call.message_node].say.variants:
        return f"the message node {call.message_node!r} says nothing"
    return None


# ------------------------------------------------------------------ what the gate asks of the core


@dataclass(frozen=True)
class Note:
    """A step for the timeline (kind ``amd``): ``fields`` is the whole summary so far (rule 7)."""

    at: float
    fields: dict[str, Any]


@dataclass(frozen=True)
class Hint:
    """Bias the recogniser toward these phrases while the detector listens."""

    at: float
    hints: tuple[str, ...]


@dataclass(frozen=True)
class StartFlow:
    """Release the flow: deliver ``started`` (the answer's CallStarted) to the dialog now."""

    at: float
    started: ev.CallStarted


@dataclass(frozen=True)
class EndFlow:
    """A revised verdict: end the running dialog with ``disposition`` (without a HangUp: the gate goes on)."""

    at: float
    disposition: str


@dataclass(frozen=True)
class PlayMessage:
    """Play the campaign's message (values: the call's variables)."""

    at: float
    play: ev.Play
    values: dict[str, str]


@dataclass(frozen=True)
class EndCall:
    """The call is over with ``disposition``: the bot hangs up (``hang_up``; False: the callee already did).
    ``started`` (the answer) and ``variables`` are for the call's outcome when the flow never ran."""

    at: float
    disposition: str
    started: ev.CallStarted
    variables: dict[str, str]
    hang_up: bool = True


GateAction = Note | Hint | StartFlow | EndFlow | PlayMessage | EndCall


class Stage(StrEnum):
    IDLE = "idle"  # before the answer
    DETECTING = "detecting"  # the flow is held
    RELEASED = "released"  # the flow runs (a revision may still end it)
    AWAIT_BEEP = "await_beep"  # leave_message: waiting for the beep or the greeting's end
    MESSAGE = "message"  # the message plays
    ENDED = "ended"


class AmdGate:
    """One call's gate (rules in the module docstring). ``rate``: the call's sample rate (Hz)."""

    def __init__(self, call: AmdCall, flow: Flow, rate: int = 8000) -> None:
        if call.policy is AmdPolicy.OFF:
            raise ValueError("an answering-machine gate needs a policy other than off")
        self.call, self.flow, self.rate = call, flow, rate
        self.stage = Stage.IDLE
        self.started: ev.CallStarted | None = None
        self.detector: AnsweringMachineDetector | None = None
        self.beep: BeepDetector | None = None  # made at the first frame heard after a MACHINE verdict
        self.summary: dict[str, Any] = {name: None for name in RECORD_FIELDS}
        self.summary.update(policy=call.policy.value, revised=False, message_left=False)
        self._released_at = 0.0
        self._last_voice = 0.0
        self._waiting_since = 0.0
        self._beep_dbfs: float | None = None
        self._beep_at = 0.0
        self._skip_final = False

    # ------------------------------------------------------------ state the core asks about

    @property
    def owns_call(self) -> bool:
        """True while the gate, not the dialog, has the call: from the answer to a HUMAN/NOTSURE verdict, and from
        a MACHINE verdict on."""
        return self.stage not in (Stage.RELEASED, Stage.IDLE)

    @property
    def ended(self) -> bool:
        return self.stage is Stage.ENDED

    def released_in_speech(self, in_speech: bool) -> None:
        """The flow was released while the caller held a turn (``in_speech``): that turn stays the detector's."""
        self._skip_final = in_speech

    def hides(self, final: bool) -> bool:
        """True when a transcript coming now must not reach the dialog: the flow is held, or it belongs to the turn
        in progress at the release (its final ends that)."""
        hidden = self.owns_call or self._skip_final
        if final:
            self._skip_final = False
        return hidden

    # ------------------------------------------------------------ events

    def start(self, started: ev.CallStarted) -> list[GateAction]:
        """The answer: timers start now (rule 2)."""
        self.started = started
        self.detector = AnsweringMachineDetector(started.at, self.call.settings)
        self.stage = Stage.DETECTING
        self._last_voice = started.at
        english = self.flow.language.startswith("en")
        phrases = tuple(p for p in (*VOICEMAIL_PHRASES, *HUMAN_PHRASES, *OPENINGS) if p.isascii() == english)
        return [Hint(started.at, phrases), self._note(started.at, action="detecting")]

    def frame(self, frame: AudioFrame, probability: float) -> list[GateAction]:
        """One caller frame (``captured_at``: its start) and its VAD speech probability."""
        end = frame.captured_at + frame.duration_s
        samples = frame.to_array()
        if self.stage is Stage.DETECTING and self.detector is not None:
            mean_abs = float(np.mean(np.abs(samples.astype(np.int32)))) if len(samples) else 0.0
            verdict = self.detector.frame(end, mean_abs, probability, 1000 * frame.duration_s)
            return self._verdict(verdict) if verdict is not None else []
        if self.stage is Stage.AWAIT_BEEP:
            return self._await_beep(samples, probability, end)
        return []

    def transcript(self, at: float, text: str, final: bool) -> list[GateAction]:
        """A partial or final transcript; rule 5 after the release."""
        if self.detector is None or not text:
            return []
        if self.stage is Stage.DETECTING:
            verdict = self.detector.transcript(at, text, final)
            return self._verdict(verdict) if verdict is not None else []
        if self.stage is Stage.RELEASED and at - self._released_at <= REVISE_S:
            verdict = self.detector.transcript(at, text, final)
            if verdict is not None and verdict.revised:
                self.summary["revised"] = True
                return [EndFlow(at, "machine"), *self._verdict(verdict)]
        return []

    def tick(self, now: float) -> list[GateAction]:
        """The clock alone (every send slot): the total analysis time, the message's latest start."""
        if self.stage is Stage.DETECTING and self.detector is not None:
            verdict = self.detector.tick(now)
            return self._verdict(verdict) if verdict is not None else []
        if self.stage is Stage.AWAIT_BEEP and now - self._waiting_since >= MESSAGE_WAIT_MAX_S:
            return self._play(now, "max_wait")
        return []

    def prompt_finished(self, play_id: int, at: float, interrupted: bool) -> list[GateAction]:
        """A prompt ended; the message's end ends the call (rule 4)."""
        if self.stage is not Stage.MESSAGE or play_id != MESSAGE_PLAY_ID:
            return []
        self.summary["message_left"] = not interrupted
        return self._end(at, "machine", "message")

    def hung_up(self, at: float) -> list[GateAction]:
        """The callee hung up while the gate held the call (rule 6)."""
        if not self.owns_call or self.stage is Stage.ENDED:
            return []
        machine = self.summary["verdict"] == "machine"
        return self._end(at, "machine" if machine else "caller_hangup", "callee_hung_up", hang_up=False)

    # ------------------------------------------------------------ the verdict and after

    def _verdict(self, verdict: AmdVerdict) -> list[GateAction]:
        assert self.started is not None
        self.summary.update(verdict=verdict.status.value.lower(), reason=verdict.reason.value, detail=verdict.detail,
                            verdict_ms=self._ms(verdict.at))
        if verdict.status is not AmdStatus.MACHINE:
            self.stage, self._released_at = Stage.RELEASED, verdict.at
            self.summary.update(action="flow", flow_started_ms=self._ms(verdict.at))
            return [self._note(verdict.at), StartFlow(verdict.at, self.started)]
        if self.call.policy is AmdPolicy.LEAVE_MESSAGE and self._message() is not None:
            self.stage, self._waiting_since, self._last_voice = Stage.AWAIT_BEEP, verdict.at, verdict.at
            self.summary["action"] = "await_beep"
            return [self._note(verdict.at)]
        return self._end(verdict.at, "machine", "hang_up")

    def _await_beep(self, samples: np.ndarray, probability: float, end: float) -> list[GateAction]:
        level = _dbfs(samples)
        if self._beep_dbfs is not None:  # the beep was found: wait for its end
            if level <= self._beep_dbfs - BEEP_END_DB or level < BEEP_MIN_DBFS or end - self._beep_at >= BEEP_TAIL_MAX_S:
                return self._play(end, "beep")
            return []
        narrow = _to_8k(samples, self.rate)
        if self.beep is None and self.rate % BEEP_RATE == 0:
            self.beep = BeepDetector(frame_samples=len(narrow))
        if self.beep is not None and self.beep.feed(narrow, end):
            self._beep_dbfs, self._beep_at = level, end
            self.summary["beep_ms"] = self._ms(end)
            return [self._note(end)]
        if probability >= self.call.settings.vad_threshold and level >= BEEP_MIN_DBFS:
            self._last_voice = end
        if end - self._last_voice >= MESSAGE_SILENCE_S:
            return self._play(end, "silence")
        return []

    def _play(self, at: float, why: str) -> list[GateAction]:
        """Play the message now, ``why``: after the ``beep``, after ``silence``, or at ``max_wait``."""
        assert self.started is not None
        message = self._message()
        if message is None:
            return self._end(at, "machine", "hang_up")
        text, prompt = message
        values = self._values()
        play = ev.Play(at, MESSAGE_PLAY_ID, MESSAGE_NODE, render_template(text, values), prompt, text)
        self.stage = Stage.MESSAGE
        self.summary.update(action="message", message_trigger=why, message_started_ms=self._ms(at))
        return [self._note(at), PlayMessage(at, play, values)]

    def _message(self) -> tuple[str, str] | None:
        """(text template, recorded prompt) of the message; None when there is none to play."""
        node = self.flow.nodes.get(self.call.message_node) if self.call.message_node else None
        if node is not None and node.say.variants:
            return node.say.variants[0].text, node.say.variants[0].prompt
        if self.call.message.strip():
            return self.call.message, ""
        return None

    def _values(self) -> dict[str, str]:
        assert self.started is not None
        values = {name: v.default for name, v in self.flow.variables.items() if v.default is not None}
        return {**values, **self.started.variables}

    def _end(self, at: float, disposition: str, action: str, hang_up: bool = True) -> list[GateAction]:
        assert self.started is not None
        self.stage = Stage.ENDED
        self.summary["action"] = action
        return [self._note(at), EndCall(at, disposition, self.started, self._values(), hang_up)]

    def _note(self, at: float, **extra: Any) -> Note:
        return Note(at, {**self.summary, **extra})

    def _ms(self, at: float) -> int:
        origin = self.started.at if self.started is not None else 0.0
        return round(1000 * (at - origin))


def _dbfs(samples: np.ndarray) -> float:
    if not len(samples):
        return -120.0
    ms = float(np.mean(samples.astype(np.float64) ** 2))
    return 10.0 * float(np.log10(ms / (32768.0 * 32768.0))) if ms > 0 else -120.0


def _to_8k(samples: np.ndarray, rate: int) -> np.ndarray:
    """A frame at a multiple of 8 kHz averaged down to 8 kHz (enough for a 400-2000 Hz beep)."""
    step = rate // BEEP_RATE
    if step <= 1:
        return samples
    usable = len(samples) // step * step
    out: np.ndarray = samples[:usable].astype(np.float64).reshape(-1, step).mean(axis=1)
    return out
