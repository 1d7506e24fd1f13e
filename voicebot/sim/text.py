"""A text-only call simulator: the dialog machine on a virtual clock.

The bot's prompts "play" for as long as they would take to say (about
2.6 words per second in English, 4.5 characters per second in Chinese), timers
fire on the virtual clock, and the caller acts through :class:`CallerAction`:
say a line after the bot has finished, barge in N ms into a prompt, press a
key, stay silent until the bot reacts, wait, or hang up. A hand-off runs the
call's :class:`~voicebot.handoff.machine.HandoffMachine`, answered by the
simulated agent of :mod:`voicebot.sim.agents`: ready after a configurable
delay (or never).

Used by ``voicebot chat`` (interactive), ``voicebot chat --script`` and
``voicebot test-flow``. Runs as fast as the CPU allows; nothing sleeps.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from voicebot.dialog import events as ev
from voicebot.dialog.backchannel import content_words
from voicebot.dialog.flow import BargeInMode, Flow
from voicebot.dialog.intents import IntentMatcher
from voicebot.dialog.machine import DialogMachine, Phase
from voicebot.handoff.machine import HandoffMachine
from voicebot.handoff.machine import State as HandoffState
from voicebot.handoff.protocol import (
    HANDOFF_EVENTS,
    CallEnded,
    HandoffEvent,
    HandoffRequested,
    TellDialog,
    TransferRequested,
)
from voicebot.sim.agents import SimAgents

CALLER_GAP_S = 0.4  # the caller answers this long after the bot stops talking
CALLER_WORDS_PER_S = 2.5
END_SILENCE_S = 0.3  # recogniser's end-of-speech delay before the final transcript
ACTION_KINDS = ("say", "barge", "dtmf", "silence", "wait", "hangup")


@dataclass(frozen=True)
class CallerAction:
    """One thing the simulated caller does. ``at_ms`` is the delay into the prompt for ``barge``."""

    kind: str  # one of ACTION_KINDS
    text: str = ""
    at_ms: int = 0
    heard: str | None = None  # say/barge: what the recogniser makes of ``text`` (None: ``text``, a misheard line else)
    confidence: float = 1.0  # say/barge: the recogniser's confidence in its final (0..1)


@dataclass(frozen=True)
class Entry:
    """One line of the simulated call's log: ``kind`` is bot/caller/dtmf/node/intent/... ``t`` in s."""

    t: float
    kind: str
    text: str


@dataclass(frozen=True)
class AgentSim:
    """How the simulated agent pool answers a hand-off request: ready after ``ready_ms``, or fails when None."""

    ready_ms: int | None = 1500
    agent_id: str = "agent-1"


def speaking_time(text: str, language: str) -> float:
    """Seconds it takes to say ``text`` (rough: 2.6 words/s in English, 4.5 characters/s in Chinese)."""
    if language == "zh":
        return max(0.4, sum(ch.isalnum() for ch in text) / 4.5)
    return max(0.4, len(text.split()) / 2.6)


@dataclass(order=True)
class _Scheduled:
    at: float
    seq: int
    event: ev.Event | HandoffEvent = field(compare=False)
    tag: str = field(compare=False, default="")


class TextCall:
    """One simulated call. Call :meth:`start`, then :meth:`act` for each caller action."""

    def __init__(self, flow: Flow, variables: dict[str, str] | None = None, *,
                 matcher: IntentMatcher | None = None, agent: AgentSim | None = None, seed: int = 0,
                 local_time: datetime | None = None) -> None:
        self.flow = flow
        self.local_time = local_time  # the callee's wall-clock time at answer, for date slots; None: they capture nothing
        self.machine = DialogMachine(flow, matcher=matcher, seed=seed)
        self.variables = dict(variables or {})
        self.agent = agent or AgentSim()
        self.handoff = HandoffMachine()  # the same handoff machine as FreeSWITCH's calls, answered by a simulated agent
        self.agents = SimAgents(self.agent.ready_ms, self.agent.agent_id, talk_s=0.1)
        self.now = 0.0
        self.entries: list[Entry] = []
        self._queue: list[_Scheduled] = []
        self._seq = itertools.count()
        self._plays: dict[int, tuple[float, float, str, str]] = {}  # play_id -> (start, end, text, node)
        self._play_count = 0
        self._path_seen = 0

    # ------------------------------------------------------------ driving

    def start(self) -> list[Entry]:
        """Answer the call; the bot starts its first prompt."""
        return self._collect(lambda: self._feed(ev.CallStarted(self.now, self.variables, local_time=self.local_time)))

    def act(self, action: CallerAction) -> list[Entry]:
        """Perform one caller action and return what happened until it was done.

        ``say`` and ``dtmf`` first wait for the bot to finish talking; ``barge`` does not.
        """
        handlers = {"say": self._say, "barge": self._barge, "dtmf": self._dtmf, "silence": self._silence,
                    "wait": self._wait, "hangup": self._hangup}
        if action.kind not in handlers:
            raise ValueError(f"unknown caller action {action.kind!r}; expected one of {', '.join(ACTION_KINDS)}")
        return self._collect(lambda: handlers[action.kind](action))

    def run_unattended(self) -> list[Entry]:
        """Let the call run on while the bot needs nothing from the caller (a prompt of a node that does not
        listen, a hold, a hang-up node): an interactive caller then sees the call end without typing again."""
        def run() -> None:
            while not self.ended and self._queue and self.machine.phase is not Phase.LISTENING:
                self._step()
        return self._collect(run)

    def finish(self) -> list[Entry]:
        """End the call if the bot has not: the caller hangs up once the bot is done talking."""
        return self._collect(self._finish)

    @property
    def ended(self) -> bool:
        """True once the call is over."""
        return self.machine.ended

    # -------------------------------------------------------- caller acts

    def _say(self, action: CallerAction) -> None:
        self._settle()
        self._speak(self.now + CALLER_GAP_S, action)

    def _barge(self, action: CallerAction) -> None:
        """Speak ``at_ms`` into the current (or next) prompt of a node that listens."""
        while not self.ended and self._queue and self._current_play(listening=True) is None:
            self._step()
        playing = self._current_play(listening=True)
        at = playing[0] + action.at_ms / 1000 if playing else self.now
        self._speak(max(at, self.now), action)

    def _dtmf(self, action: CallerAction) -> None:
        self._settle()
        self._schedule(self.now + CALLER_GAP_S, ev.Dtmf(self.now + CALLER_GAP_S, action.text))
        self._run_until(self.now + CALLER_GAP_S)

    def _silence(self, _: CallerAction) -> None:
        """Say nothing until the bot does something (re-prompt, move on, hang up)."""
        self._settle()
        plays, path = self._play_count, len(self.machine.outcome.path)
        while self._queue and not self.ended and self._play_count == plays and len(self.machine.outcome.path) == path:
            self._step()

    def _wait(self, action: CallerAction) -> None:
        self._run_until(self.now + action.at_ms / 1000)

    def _hangup(self, _: CallerAction) -> None:
        self._feed(ev.HungUp(self.now, "caller_hangup"))

    def _finish(self) -> None:
        self._settle()
        if not self.ended:
            self._feed(ev.HungUp(self.now, "caller_hangup"))

    def _speak(self, at: float, action: CallerAction) -> None:
        """Schedule speech onset, a growing partial per word, and the final transcript (of what the recogniser
        hears: ``action.heard``, else the words said); run through them."""
        said, text = action.text, action.text if action.heard is None else action.heard
        zh = self.flow.language == "zh"
        words = list(text.replace(" ", "")) if zh else text.split()
        per_word = 1 / 4.5 if zh else 1 / CALLER_WORDS_PER_S
        self._schedule(at, ev.SpeechStarted(at))
        for i in range(1, len(words)):
            t = at + i * per_word
            self._schedule(t, ev.Transcript(t, ("" if zh else " ").join(words[:i]), final=False))
        end = at + max(0.3, len(words) * per_word) + END_SILENCE_S
        self._schedule(end, ev.Transcript(end, text, final=True, confidence=action.confidence))
        self.entries.append(Entry(at, "caller", said if text == said else f"{said}  (heard: {text})"))
        self._run_until(end)

    # ------------------------------------------------------------ the loop

    def _settle(self) -> None:
        """Run scheduled events until the bot waits for the caller (listening, silent) or the call ends."""
        while not self.ended and self._queue and not self._waiting_for_caller():
            self._step()

    def _waiting_for_caller(self) -> bool:
        m = self.machine
        if m.phase is Phase.LISTENING:
            return self._current_play() is None
        # transferred: the caller waits once the agent has them (or the transfer failed)
        return m.phase is Phase.BRIDGED and self.handoff.state is not HandoffState.TRANSFERRING

    def _run_until(self, t: float) -> None:
        while self._queue and self._queue[0].at <= t and not self.ended:
            self._step()
        self.now = max(self.now, t)

    def _step(self) -> None:
        item = heapq.heappop(self._queue)
        self.now = max(self.now, item.at)
        self._feed(item.event)

    def _schedule(self, at: float, event: ev.Event | HandoffEvent, tag: str = "") -> None:
        heapq.heappush(self._queue, _Scheduled(at, next(self._seq), event, tag))

    def _unschedule(self, predicate: Callable[[_Scheduled], bool]) -> None:
        self._queue = [s for s in self._queue if not predicate(s)]
        heapq.heapify(self._queue)

    def _current_play(self, listening: bool = False) -> tuple[float, float, str] | None:
        """(start, end, text) of the prompt playing now; with ``listening``, only in a node that listens."""
        for start, end, text, node in self._plays.values():
            if start <= self.now < end and (not listening or self.flow.nodes[node].listen is not None):
                return start, end, text
        return None

    def _collect(self, run: Callable[[], object]) -> list[Entry]:
        before = len(self.entries)
        run()
        return self.entries[before:]

    # ------------------------------------------------------- the machine

    def _feed(self, event: ev.Event | HandoffEvent) -> None:
        if isinstance(event, HANDOFF_EVENTS):
            self._handoff(event)
            return
        commands = self.machine.handle(event, self.now)
        self._note_event(event)
        self._note_path()
        for command in commands:
            self._execute(command)
        if self.machine.ended and not self.handoff.done:  # the call is over: the agent side is freed
            self._handoff(CallEnded(self.now, self.machine.outcome.disposition))

    def _note_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.Transcript) and event.final:
            turn = self.machine.outcome.turns[-1] if self.machine.outcome.turns else None
            if turn is not None and turn.ignored and turn.text == event.text:
                self.entries.append(Entry(self.now, "ignored", self._ignored_because(turn.node, event.text)))
            elif turn is not None and turn.text == event.text:
                label = f"{turn.intent} ({turn.score:.2f})" if turn.intent else "no match"
                self.entries.append(Entry(self.now, "intent", label))
        elif isinstance(event, ev.Dtmf):
            self.entries.append(Entry(self.now, "dtmf", event.digit))

    def _ignored_because(self, node_id: str, text: str) -> str:
        """Why the machine ignored ``text`` said over a prompt of ``node_id``: the node's barge-in policy, in words."""
        node = self.flow.nodes.get(node_id)
        playing = self._current_play()
        if node is None or node.listen is None or self.machine.phase is not Phase.LISTENING:
            return "said while the bot was not listening"
        policy = node.barge_in
        if policy.mode is BargeInMode.OFF:
            return "said over a prompt that cannot be interrupted (barge_in: off)"
        if policy.mode is BargeInMode.PROTECTED and playing is not None and self.now - playing[0] < policy.protect_ms / 1000:
            return f"said in the first {policy.protect_ms} ms of the prompt, which are protected from barge-in"
        words = len(content_words(text, self.flow.language))
        if words < policy.min_words:
            what = "a backchannel or filler" if words == 0 else f"{words} word(s)"
            return f"{what}: too little to interrupt the prompt (barge_in needs {policy.min_words} word(s) that count)"
        return f"too short to interrupt the prompt (barge_in needs {policy.min_speech_ms} ms of speech)"

    def _note_path(self) -> None:
        path = self.machine.outcome.path
        for node in path[self._path_seen:]:
            self.entries.append(Entry(self.now, "node", node))
        self._path_seen = len(path)

    def _execute(self, command: ev.Command) -> None:
        if isinstance(command, ev.Play):
            self._start_play(command)
        elif isinstance(command, ev.StopPlayback):
            self._stop_play(command.play_id)
        elif isinstance(command, ev.ArmTimer):
            self._schedule(command.fire_at, ev.TimerFired(command.fire_at, command.timer_id), tag=command.timer_id)
        elif isinstance(command, ev.CancelTimer):
            self._unschedule(lambda s: s.tag == command.timer_id)
        elif isinstance(command, ev.PrepareHandoff):
            self.entries.append(Entry(self.now, "prepare", command.group))
            self._handoff(HandoffRequested(self.now, command.group))
        else:
            self.entries.append(Entry(self.now, *_describe(command)))
        if isinstance(command, ev.TransferCall):
            self._handoff(TransferRequested(self.now))

    def _handoff(self, event: HandoffEvent) -> None:
        """The call's handoff machine (as in CallCore): the simulated agent answers it, the dialog hears it."""
        for command in self.handoff.handle(event, self.now):
            if isinstance(command, TellDialog):
                self._feed(command.event)
            else:
                self.agents.answer(command, self.now, self._schedule)

    def _start_play(self, play: ev.Play) -> None:
        duration = speaking_time(play.text, self.flow.language)
        self._plays[play.play_id] = (self.now, self.now + duration, play.text, play.node)
        self._play_count += 1
        self.entries.append(Entry(self.now, "bot", play.text))
        self._schedule(self.now, ev.PromptStarted(self.now, play.play_id))
        self._schedule(self.now + duration, ev.PromptFinished(self.now + duration, play.play_id, False, int(duration * 1000)),
                       tag=f"play:{play.play_id}")

    def _stop_play(self, play_id: int) -> None:
        start, end, text, node = self._plays.get(play_id, (self.now, self.now, "", ""))
        if end <= self.now:
            return
        self._plays[play_id] = (start, self.now, text, node)
        self._unschedule(lambda s: s.tag == f"play:{play_id}")
        heard = int((self.now - start) * 1000)
        self.entries.append(Entry(self.now, "barge", f"bot stopped after {heard} ms"))
        self._schedule(self.now, ev.PromptFinished(self.now, play_id, True, heard))


def _describe(command: ev.Command) -> tuple[str, str]:
    """A log line (kind, text) for commands the simulator only reports."""
    match command:
        case ev.SetTag(tag=tag):
            return "tag", tag
        case ev.SetLevel(level=level):
            return "level", level
        case ev.SetSlot(name=name, value=value):
            return "slot", f"{name}={value}"
        case ev.Notify(name=name):
            return "notify", name
        case ev.TransferCall(group=group, agent_id=agent_id):
            return "transfer", f"{group} → {agent_id}"
        case ev.HangUp(disposition=disposition):
            return "hangup", disposition
        case ev.Listen(node=node):
            return "listen", node
        case ev.Confirmation(intent=intent, state=state):
            return "confirm", f"{intent}: {state}"
    return "command", type(command).__name__


def run_script(flow: Flow, actions: list[CallerAction], variables: dict[str, str] | None = None, *,
               matcher: IntentMatcher | None = None, agent: AgentSim | None = None) -> Iterator[Entry]:
    """Run a whole call from a list of caller actions; the caller hangs up after the last one."""
    call = TextCall(flow, variables, matcher=matcher, agent=agent)
    yield from call.start()
    for action in actions:
        if call.ended:
            break
        yield from call.act(action)
    yield from call.finish()
