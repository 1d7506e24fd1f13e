"""The dialog machine: one call through a flow, sans-I/O.

Rules (the whole contract, in the order the code applies them):

1. ``handle(event, now)`` returns the commands the event causes. No threads,
   sockets or clock reads: time comes in as ``now`` (monotonic seconds).
   Work the machine causes itself (entering the next node, ending the call) is
   queued and run to completion before ``handle`` returns, never re-entered.
2. Entering a node applies its effects once per visit (tags, level, prepare;
   each notification at most once per call), then says its prompt. A node that
   listens sends :class:`Listen` at entry, so barge-in can be heard, and arms
   its no-input timer when its prompt has finished.
3. While a prompt plays, caller speech stops it only as the interruption
   policy (:mod:`voicebot.dialog.interruption`) rules: never when ``off``; not
   before ``protect_ms`` has passed since the prompt's first audio when
   ``protected``; and only once the speech has lasted ``min_speech_ms`` and its
   words confirm it (``min_words`` key words in a partial, or a final that is a
   request). Only nodes that listen can be interrupted. DTMF always interrupts.
   What was said over a prompt that could not be interrupted is ignored.
4. A final transcript is matched against the node's intents and the global
   intents together; the best score wins (the node's own on a tie). Slots in
   ``capture`` are extracted first. No match goes to ``default`` or no-match
   handling; an empty transcript just keeps listening. A capture that gets no
   value goes to no-match handling, not ``default``: it is re-asked, never
   spoken as an empty value.
   An intent with a ``confirm`` prompt matched on an unsure hearing (:mod:`voicebot.dialog.confirm`) is not acted
   on yet: the prompt is said in the node and the next final answers it. A yes applies the intent's route; a no or
   anything else says the node's prompt again (not a no-match retry; the turn limit bounds the repeats).
5. Timers are commands (:class:`ArmTimer`) and come back as
   :class:`TimerFired`. When the call ends every live timer is cancelled.
6. The call ends exactly once, with exactly one disposition: a hang-up node,
   a limit, no response, no agent, or :class:`HungUp` from outside. After the
   end, and after a transfer, the machine never plays again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from voicebot.dialog import events as ev
from voicebot.dialog.confirm import YES, answer_class, answer_matcher, unsure_hearing
from voicebot.dialog.flow import LEVELS, REPEAT, RETURN, BargeInAction, BargeInMode, Flow, Node, Say
from voicebot.dialog.intents import IntentMatch, IntentMatcher
from voicebot.dialog.interruption import final_confirms, interruptible, partial_confirms
from voicebot.dialog.machine_base import MachineBase, Phase, build_matcher, render_template
from voicebot.dialog.outcome import Turn
from voicebot.dialog.slots import extract_slot

__all__ = ["DialogMachine", "Phase", "build_matcher", "render_template"]


class DialogMachine(MachineBase):
    """Runs one call through ``flow``. Share ``matcher`` across calls of the same flow."""

    def __init__(self, flow: Flow, *, matcher: IntentMatcher | None = None, seed: int = 0) -> None:
        super().__init__(flow, matcher=matcher, seed=seed)
        self._handlers = {
            ev.CallStarted: self._on_call_started,
            ev.PromptStarted: self._on_prompt_started,
            ev.PromptFinished: self._on_prompt_finished,
            ev.SpeechStarted: self._on_speech_started,
            ev.Transcript: self._on_transcript,
            ev.Dtmf: self._on_dtmf,
            ev.TimerFired: self._on_timer,
            ev.AgentReady: self._on_agent_ready,
            ev.AgentFailed: self._on_agent_failed,
            ev.AgentTookOver: self._on_agent_took_over,
            ev.AgentLeft: self._on_agent_left,
            ev.HungUp: self._on_hung_up,
        }

    def _on_timer(self, event: ev.TimerFired) -> None:
        kind = next((k for k, t in self._timers.items() if t == event.timer_id), None)
        if kind is None:
            return  # stale: cancelled or re-armed since
        del self._timers[kind]
        actions: dict[str, Callable[[], None]] = {
            "max_duration": lambda: self._limit("max_duration"),
            "no_input": self._on_no_input,
            "barge_in": self._check_barge_in,
            "transfer": self._on_transfer_timeout,
        }
        actions[kind]()

    # ------------------------------------------------------- call lifecycle

    def _on_call_started(self, event: ev.CallStarted) -> None:
        if self.phase is not Phase.IDLE:
            return
        values = {name: v.default for name, v in self.flow.variables.items() if v.default is not None}
        values.update(event.variables)
        self.outcome.variables = values
        self.outcome.started_at = event.at
        self._local_start = event.local_time
        self._arm("max_duration", self.flow.max_duration_s)
        self._goto(self.flow.start)

    def _on_hung_up(self, event: ev.HungUp) -> None:
        if self.phase is Phase.BRIDGED:
            self._end("transferred", hang_up=False)
        else:
            self._end(self._pending_disposition or event.cause, hang_up=False)

    def _end(self, disposition: str, *, hang_up: bool = True) -> None:
        if self.phase is Phase.ENDED:
            return
        self._stop_playing()
        for kind in list(self._timers):
            self._cancel(kind)
        self.phase = Phase.ENDED
        self.outcome.disposition = disposition
        self.outcome.ended_at = self._now
        if hang_up:
            self._emit(ev.HangUp(self._now, disposition))
        self.outcome.notifications += self.flow.hangup_notify
        for name in self.flow.hangup_notify:
            self._emit(ev.Notify(self._now, name, self.outcome.summary()))
        self._queue.clear()

    def _limit(self, reason: str) -> None:
        if self.phase in (Phase.BRIDGED, Phase.ENDED):
            return
        if self.flow.on_limit and not self._limit_hit:
            self._limit_hit = True
            self._goto(self.flow.on_limit)
        else:
            self._end(reason)

    # --------------------------------------------------------------- nodes

    def _goto(self, target: str) -> None:
        """Queue a move to ``target`` (node id, ``repeat`` or ``return``)."""
        self._queue.append(lambda: self._enter(target))

    def _enter(self, target: str) -> None:
        if self.phase is Phase.ENDED:
            return
        if target == REPEAT and self.node is not None:
            self._say_and_listen(self.node, self.node.say)
            return
        if target == RETURN:
            target = self._return_to or (self.node.id if self.node else self.flow.start)
        node = self.flow.nodes[target]
        self._leave_node()
        self.node = node
        self.outcome.path.append(node.id)
        self._retries = {"no_input": 0, "no_match": 0}
        self._apply_effects(node)
        if node.hangup:
            self._pending_disposition = node.hangup
        self._say_and_listen(node, node.say)

    def _leave_node(self) -> None:
        self._stop_playing()
        for kind in ("no_input", "barge_in", "transfer"):
            self._cancel(kind)
        self._speech_since = None
        self._barged = False
        self._confirming = ""

    def _apply_effects(self, node: Node) -> None:
        for tag in node.tags:
            if tag not in self.outcome.tags:
                self.outcome.tags.append(tag)
                self._emit(ev.SetTag(self._now, tag))
        if node.level and node.level != self.outcome.level:
            self.outcome.level = node.level
            self._emit(ev.SetLevel(self._now, node.level))
            self._prepare_at_level(node.level)
        for name in node.notify:
            if name not in self.outcome.notifications:
                self.outcome.notifications.append(name)
                self._emit(ev.Notify(self._now, name, self.outcome.summary()))
        for group in [node.prepare] + ([node.transfer.group] if node.transfer else []):
            self._prepare(group)

    def _prepare_at_level(self, level: str) -> None:
        """Prepare the flow's group once the level reaches ``handoff.prepare_at_level`` (A is best)."""
        handoff = self.flow.handoff
        if handoff.prepare_at_level and LEVELS.index(level) <= LEVELS.index(handoff.prepare_at_level):
            self._prepare(handoff.group)

    def _prepare(self, group: str) -> None:
        if group and group not in self._prepared:
            self._prepared.add(group)
            self._emit(ev.PrepareHandoff(self._now, group))

    def _say_and_listen(self, node: Node, say: Say) -> None:
        """Say ``say`` (if anything) in ``node``; listen or move on when appropriate."""
        self._stop_playing()
        self._cancel("no_input")
        self._barged = False
        self._speech_since = None
        self._confirming = ""
        played = self._play(node.id, say)
        if node.listen is not None:
            self.phase = Phase.LISTENING
            hints = tuple(self.matcher.hint_phrases(self._allowed_intents(node)))
            listen = node.listen
            self._emit(ev.Listen(self._now, node.id, listen.no_input_ms, listen.max_speech_ms, listen.end_silence_ms,
                                 hints, node.barge_in))
            if not played:
                self._arm("no_input", listen.no_input_ms / 1000)
        else:
            self.phase = Phase.SPEAKING
            if not played:
                self._after_prompt(node)

    def _after_prompt(self, node: Node) -> None:
        """A non-listening node finished speaking: move on."""
        if node.hangup:
            self._end(node.hangup)
        elif node.transfer is not None:
            self._start_transfer(node)
        elif node.next:
            self._goto(node.next)

    def _on_prompt_started(self, event: ev.PromptStarted) -> None:
        self._record_prompt(event.play_id, started_at=event.at)
        if self._playing is not None and self._playing.play_id == event.play_id:
            self._playing.started_at = event.at

    def _on_prompt_finished(self, event: ev.PromptFinished) -> None:
        self._record_prompt(event.play_id, finished_at=event.at, interrupted=event.interrupted, heard_ms=event.heard_ms)
        if self._playing is None or self._playing.play_id != event.play_id:
            return  # a prompt we already stopped
        self._playing = None
        self._cancel("barge_in")
        node = self.node
        assert node is not None
        if self.phase is Phase.HOLDING:
            self._play(node.id, node.transfer.hold if node.transfer else Say())
        elif self.phase is Phase.LISTENING and not self._barged and self._speech_since is None:
            self._arm("no_input", node.listen.no_input_ms / 1000 if node.listen else 0)
        elif self.phase is Phase.SPEAKING:
            self._after_prompt(node)

    # ------------------------------------------------------------ barge-in

    def _barge_in_allowed(self, now: float) -> bool:
        node, playing = self.node, self._playing
        if node is None or playing is None or self.phase is not Phase.LISTENING:
            return False
        return interruptible(node.barge_in, playing.started_at, now)

    def _check_barge_in(self) -> None:
        """Interrupt the prompt if the caller's speech now meets the node's policy."""
        playing, node = self._playing, self.node
        if playing is None or node is None or playing.barge_candidate_at is None:
            return
        if not self._barge_in_allowed(self._now):
            return
        policy = node.barge_in
        spoke_long_enough = self._now - playing.barge_candidate_at >= policy.min_speech_ms / 1000 - 1e-9
        if spoke_long_enough and playing.confirmed:
            self._barged = True
            self._stop_playing()

    def _on_speech_started(self, event: ev.SpeechStarted) -> None:
        if self.phase is not Phase.LISTENING or self.node is None:
            return
        self._speech_since = event.at
        if self._playing is None:
            self._cancel("no_input")
            return
        policy = self.node.barge_in
        self._playing.barge_candidate_at = event.at
        self._playing.confirmed = policy.min_words <= 0
        if policy.mode is not BargeInMode.OFF:
            self._arm("barge_in", policy.min_speech_ms / 1000)
            self._check_barge_in()

    # ---------------------------------------------------------- caller turns

    def _on_transcript(self, event: ev.Transcript) -> None:
        if self.phase is not Phase.LISTENING or self.node is None:
            if event.final and self.node is not None and event.text.strip():
                self._log_turn(event, ignored=True)
            return
        if not event.final:
            if self._playing is not None and self._playing.barge_candidate_at is not None:
                confirms = partial_confirms(self.node.barge_in, event.text, self.flow.language)
                self._playing.confirmed = self._playing.confirmed or confirms
                self._check_barge_in()
            return
        self._on_final(event)

    def _on_final(self, event: ev.Transcript) -> None:
        node = self.node
        assert node is not None
        self._speech_since = None
        if self._playing is not None:
            self._playing.confirmed = self._playing.confirmed or final_confirms(
                node.barge_in, event.text, self.flow.language, self._intent_score)
            self._playing.barge_candidate_at = self._playing.barge_candidate_at or event.at
            self._check_barge_in()
            if self._playing is not None:  # could not interrupt: what was said is ignored
                self._playing.barge_candidate_at = None
                self._log_turn(event, ignored=True)
                return
        barged, self._barged = self._barged, False
        if not event.text.strip():
            if barged:  # a false barge-in (noise): say the cut prompt again
                self._say_and_listen(node, node.say)
            else:
                self._arm("no_input", node.listen.no_input_ms / 1000 if node.listen else 0)
            return
        self._cancel("no_input")
        if barged and node.barge_in.action is BargeInAction.REPEAT:
            self._log_turn(event, barge_in=True)
            self._say_and_listen(node, node.say)
            return
        self._take_turn(node, event, barged)

    def _intent_score(self, text: str) -> float:
        best = self.matcher.best(text, None, 0.0)
        return best.score if best else 0.0

    def _take_turn(self, node: Node, event: ev.Transcript, barged: bool) -> None:
        if self._confirming:
            self._answer_confirmation(node, event, barged)
            return
        captured = self._capture(node, event.text)
        match = self._match(node, event.text)
        confirm = match is not None and self._must_confirm(match, event)
        self._log_turn(event, match=match, barge_in=barged, confirm="asked" if confirm else "")
        if self._count_turn():
            return
        if match is not None and confirm:
            self._ask_confirmation(node, match.intent)
        elif match is not None:
            self._route_intent(node, match.intent)
        elif node.default and captured:  # a failed capture is re-asked (no_match), never spoken empty
            self._goto(node.default)
        else:
            self._retry(node, "no_match")

    def _must_confirm(self, match: IntentMatch, event: ev.Transcript) -> bool:
        """Whether ``match`` needs the caller's yes first: its intent has a confirm prompt and the hearing is unsure."""
        intent = self.flow.intents.get(match.intent)
        return bool(intent and intent.confirm.variants) and unsure_hearing(
            self.flow, match.score, event.confidence, event.text)

    def _ask_confirmation(self, node: Node, intent: str) -> None:
        """Say ``intent``'s confirm prompt in ``node`` and listen for the answer (barge-in as the node says)."""
        self._emit(ev.Confirmation(self._now, node.id, intent, "asked"))
        self._say_and_listen(node, self.flow.intents[intent].confirm)
        self._confirming = intent

    def _answer_confirmation(self, node: Node, event: ev.Transcript, barged: bool) -> None:
        """A yes applies the confirmed intent's route; anything else says the node's prompt again (no retry counted)."""
        intent, self._confirming = self._confirming, ""
        if self._answers is None:
            self._answers = answer_matcher(self.flow)
        answer = answer_class(self._answers, event.text, self.flow.min_intent_score)
        state = "confirmed" if answer == YES else "denied"
        turn = Turn(event.at, node.id, event.text, answer, 1.0 if answer else 0.0, "", barged, False, state)
        self.outcome.turns.append(turn)
        self._emit(ev.Confirmation(self._now, node.id, intent, state))
        if self._count_turn():
            return
        if answer == YES:
            self._route_intent(node, intent)
        else:
            self._say_and_listen(node, node.say)

    def _capture(self, node: Node, text: str) -> bool:
        """Extract the node's slots from ``text``; True when every one got a value."""
        since_answer = timedelta(seconds=self._now - (self.outcome.started_at or 0.0))
        local = None if self._local_start is None else self._local_start + since_answer
        captured = True
        for slot, slot_type in node.capture.items():
            value = extract_slot(slot_type, text, self.flow.language, now=local)
            if value is None:
                captured = False
                continue
            self.outcome.slots[slot] = value
            self._emit(ev.SetSlot(self._now, slot, value))
        return captured

    def _match(self, node: Node, text: str) -> IntentMatch | None:
        """The best intent for ``text`` here; a tie between the node's own intent and a global one goes to the node."""
        matches = [m for m in self.matcher.match(text, self._allowed_intents(node)) if m.score >= self.flow.min_intent_score]
        if not matches:
            return None
        return next((m for m in matches if m.intent in node.routes and m.score >= matches[0].score), matches[0])

    def _allowed_intents(self, node: Node) -> list[str]:
        allowed = list(node.routes)
        if node.globals_enabled:
            allowed += [name for name in self.flow.global_routes if name not in node.routes]
        return allowed

    def _route_intent(self, node: Node, intent: str) -> None:
        if intent in node.routes:
            self._goto(node.routes[intent])
            return
        target = self.flow.global_routes[intent]
        if target not in (REPEAT, RETURN):
            self._return_to = node.id
        self._goto(target)

    def _count_turn(self) -> bool:
        """Count a caller turn; True when that hits the flow's turn limit."""
        if sum(not t.ignored for t in self.outcome.turns) > self.flow.max_turns:
            self._limit("max_turns")
            return True
        return False

    def _log_turn(
        self, event: ev.Transcript, *, match: IntentMatch | None = None, barge_in: bool = False, ignored: bool = False,
        confirm: str = "",
    ) -> None:
        node_id = self.node.id if self.node else ""
        intent, score = (match.intent, match.score) if match else ("", 0.0)
        self.outcome.turns.append(Turn(event.at, node_id, event.text, intent, score, "", barge_in, ignored, confirm))

    def _on_dtmf(self, event: ev.Dtmf) -> None:
        node = self.node
        if self.phase is not Phase.LISTENING or node is None:
            return
        self._stop_playing()
        self._cancel("no_input")
        self.outcome.turns.append(Turn(event.at, node.id, "", dtmf=event.digit))
        if self._count_turn():
            return
        if event.digit in node.dtmf:
            self._goto(node.dtmf[event.digit])
        else:
            self._retry(node, "no_match")

    def _on_no_input(self) -> None:
        if self.node is not None and self.phase is Phase.LISTENING:
            self._retry(self.node, "no_input")

    def _retry(self, node: Node, kind: str) -> None:
        """Re-prompt after no input or no match, or give up and go to ``then``."""
        spec = node.no_input if kind == "no_input" else node.no_match
        self._retries[kind] += 1
        if self._retries[kind] <= spec.retries:
            self._say_and_listen(node, spec.reprompt if spec.reprompt.variants else node.say)
        elif spec.then:
            self._goto(spec.then)
        else:
            self._end("no_response" if kind == "no_input" else "no_match")

    # ------------------------------------------------------------- handoff

    def _start_transfer(self, node: Node) -> None:
        assert node.transfer is not None
        if self._agent_ready:
            self._bridge(node)
            return
        self.phase = Phase.HOLDING
        self._arm("transfer", node.transfer.timeout_s)
        self._play(node.id, node.transfer.hold)

    def _bridge(self, node: Node) -> None:
        assert node.transfer is not None
        self._stop_playing()
        self._cancel("transfer")
        self.phase = Phase.BRIDGED
        self.outcome.agent_id = self._agent_ready
        self._emit(ev.TransferCall(self._now, node.transfer.group, self._agent_ready))

    def _on_agent_ready(self, event: ev.AgentReady) -> None:
        self._agent_ready = event.agent_id
        if self.phase is Phase.HOLDING and self.node is not None:
            self._bridge(self.node)

    def _on_agent_failed(self, event: ev.AgentFailed) -> None:
        self._agent_ready = ""
        self._prepared.clear()  # a later prepare or transfer asks for an agent again
        node = self.node
        if node is None or node.transfer is None or self.phase not in (Phase.HOLDING, Phase.BRIDGED):
            return
        target = node.transfer.on_fail or node.transfer.on_timeout
        if target:
            self._goto(target)
        else:
            self._end("no_agent")

    def _on_agent_took_over(self, event: ev.AgentTookOver) -> None:
        """The agent is talking to the caller now: the bot stops and stops listening."""
        self._stop_playing()
        for kind in ("no_input", "barge_in", "transfer"):
            self._cancel(kind)
        self._pending_disposition = ""
        self.phase = Phase.BRIDGED
        self.outcome.agent_id = event.agent_id

    def _on_agent_left(self, event: ev.AgentLeft) -> None:
        """The agent hung up after the bridge: back to the bot, or the call ends."""
        if self.phase is not Phase.BRIDGED:
            return
        node = self.node
        target = (node.transfer.after_agent if node is not None and node.transfer is not None else "") \
            or self.flow.handoff.after_agent
        self._agent_ready = ""
        self._prepared.clear()
        if target:
            self.phase = Phase.SPEAKING
            self._goto(target)
        else:
            self._end("transferred")

    def _on_transfer_timeout(self) -> None:
        node = self.node
        if node is None or node.transfer is None or self.phase is not Phase.HOLDING:
            return
        if node.transfer.on_timeout:
            self._goto(node.transfer.on_timeout)
        else:
            self._end("no_agent")
