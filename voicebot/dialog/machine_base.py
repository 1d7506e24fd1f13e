"""The dialog machine's plumbing: its state, the command queue, timers and prompts (sans-I/O).

:class:`MachineBase` holds what every transition uses: ``handle`` (run an event and the work it queues to
completion, return the commands), timers as :class:`ArmTimer`/:class:`CancelTimer` commands keyed by kind, and
saying one variant of a prompt. The transitions themselves, and the rules they follow, are in
:mod:`voicebot.dialog.machine`.
"""

from __future__ import annotations

import random
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from voicebot.dialog import events as ev
from voicebot.dialog.flow import Flow, Node, Say, Utterance
from voicebot.dialog.intents import IntentMatcher, IntentSpec
from voicebot.dialog.outcome import Outcome, PromptRecord

_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class Phase(StrEnum):
    """Where the machine is in the current node."""

    IDLE = "idle"  # before CallStarted
    SPEAKING = "speaking"  # a prompt plays; the node does not listen (yet)
    LISTENING = "listening"  # the node listens (a prompt may still be playing)
    HOLDING = "holding"  # waiting for an agent, hold prompt playing
    BRIDGED = "bridged"  # the caller is with an agent
    ENDED = "ended"


def build_matcher(flow: Flow) -> IntentMatcher:
    """The flow's intent matcher; build it once per flow and share it between calls."""
    specs = [IntentSpec(i.name, i.keywords, i.regex, i.examples) for i in flow.intents.values()]
    return IntentMatcher(specs, flow.language)


def render_template(text: str, values: Mapping[str, str]) -> str:
    """Fill ``{{name}}`` placeholders; unknown names become empty strings."""
    return _TEMPLATE.sub(lambda m: values.get(m.group(1), ""), text)


@dataclass
class _Playing:
    play_id: int
    started_at: float | None = None
    barge_candidate_at: float | None = None  # caller speech onset while this plays
    confirmed: bool = False  # the caller's words make that speech an interruption


class MachineBase:
    """State and plumbing of one call's dialog machine; subclasses fill ``_handlers`` (event type -> handler)."""

    def __init__(self, flow: Flow, *, matcher: IntentMatcher | None = None, seed: int = 0) -> None:
        self.flow = flow
        self.matcher = matcher or build_matcher(flow)
        self.outcome = Outcome()
        self.phase = Phase.IDLE
        self.node: Node | None = None
        self._rng = random.Random(seed)
        self._out: list[ev.Command] = []
        self._queue: deque[Callable[[], None]] = deque()
        self._now = 0.0
        self._play_seq = 0
        self._timer_seq = 0
        self._timers: dict[str, str] = {}  # kind -> live timer id
        self._playing: _Playing | None = None
        self._variant_turn: dict[tuple[str, Say], int] = {}
        self._retries = {"no_input": 0, "no_match": 0}
        self._local_start: datetime | None = None  # the call's local time at answer (CallStarted.local_time)
        self._return_to = ""
        self._barged = False
        self._speech_since: float | None = None
        self._prepared: set[str] = set()
        self._agent_ready = ""
        self._limit_hit = False
        self._pending_disposition = ""
        self._confirming = ""  # the intent whose unsure hearing the caller is asked to confirm
        self._answers: IntentMatcher | None = None  # yes/no answers to a confirmation, built when first needed
        self._handlers: dict[type, Callable[[Any], None]] = {}

    # ------------------------------------------------------------ public API

    def handle(self, event: ev.Event, now: float) -> list[ev.Command]:
        """Apply one event at time ``now`` (s); return the commands it causes."""
        self._now = now
        if self.phase is Phase.ENDED:
            return []
        self._queue.append(lambda: self._dispatch(event))
        while self._queue:
            self._queue.popleft()()
        out, self._out = self._out, []
        return out

    @property
    def ended(self) -> bool:
        """True once the call has ended (the disposition is final)."""
        return self.phase is Phase.ENDED

    @property
    def live_timers(self) -> set[str]:
        """Ids of timers armed and not yet fired or cancelled."""
        return set(self._timers.values())

    # ------------------------------------------------------------- dispatch

    def _dispatch(self, event: ev.Event) -> None:
        if self.phase is Phase.IDLE and not isinstance(event, (ev.CallStarted, ev.HungUp)):
            return
        if self.phase is not Phase.ENDED:
            self._handlers[type(event)](event)

    def _emit(self, command: ev.Command) -> None:
        self._out.append(command)

    # -------------------------------------------------------------- timers

    def _arm(self, kind: str, delay_s: float) -> None:
        self._cancel(kind)
        self._timer_seq += 1
        timer_id = f"{kind}#{self._timer_seq}"
        self._timers[kind] = timer_id
        self._emit(ev.ArmTimer(self._now, timer_id, self._now + delay_s))

    def _cancel(self, kind: str) -> None:
        timer_id = self._timers.pop(kind, None)
        if timer_id is not None:
            self._emit(ev.CancelTimer(self._now, timer_id))

    # ------------------------------------------------------------- prompts

    def _pick(self, node_id: str, say: Say) -> Utterance | None:
        if not say.variants:
            return None
        if say.order == "random":
            return self._rng.choice(say.variants)
        key = (node_id, say)
        turn = self._variant_turn.get(key, 0)
        self._variant_turn[key] = turn + 1
        return say.variants[turn % len(say.variants)]

    def _play(self, node_id: str, say: Say) -> bool:
        """Send a :class:`Play` for one variant of ``say``; False when there is nothing to say."""
        utterance = self._pick(node_id, say)
        if utterance is None:
            return False
        self._play_seq += 1
        values = {**self.outcome.variables, **self.outcome.slots}
        text = render_template(utterance.text, values)
        self._playing = _Playing(self._play_seq)
        self.outcome.prompts.append(PromptRecord(self._play_seq, node_id, text))
        self._emit(ev.Play(self._now, self._play_seq, node_id, text, utterance.prompt, utterance.text))
        return True

    def _stop_playing(self) -> None:
        if self._playing is not None:
            self._emit(ev.StopPlayback(self._now, self._playing.play_id))
            self._playing = None
        self._cancel("barge_in")

    def _record_prompt(self, play_id: int, **changes: Any) -> None:
        for i, record in enumerate(self.outcome.prompts):
            if record.play_id == play_id:
                self.outcome.prompts[i] = replace(record, **changes)
