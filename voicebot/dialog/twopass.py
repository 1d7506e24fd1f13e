"""The two-pass policy: whether a turn's final words come from the streaming pass or from the accurate pass.

A node's ``listen: {asr: ...}`` (or the flow's ``defaults.listen.asr``; default ``auto``) says which:

* ``fast``: the streaming pass's final (pocketsphinx or Vosk) is the turn's words; nothing else runs.
* ``accurate``: Whisper decodes the turn's audio and its words are the turn's words (the streaming pass still
  drives barge-in and the end of the turn).
* ``auto``: the fast final stands when it surely answers the node, else Whisper decodes the turn. It *surely
  answers* when all of these hold:

  1. the node captures no slot (times, dates, numbers and free text need every word right);
  2. the final holds no unsure word (``[unk]``: the first pass's words disagree with the node's hints);
  3. the flow's intent matcher finds an intent the node allows (its own routes and the globals) with a score of
     at least :data:`AUTO_MIN_SCORE` (the score of a keyword that covers about half the words);
  4. and no other allowed intent that leads elsewhere also matches (at the flow's ``min_intent_score``): "yeah not
     really" points two ways, the sign of a hint-biased first pass forcing hint phrases onto words it did not hear
     ("yes, tell me more" is yes and interested, which lead to the same node: no conflict).

  So a confident "yes" on a yes/no node answers at once and costs nothing extra; anything else waits for Whisper.

When Whisper answers, its words win, even when they match nothing (off-script speech must match nothing, and
Whisper had no false intents where pocketsphinx had some: bench/README.md). When it fails (no worker, a crash, no
accurate pass configured) or has not answered :data:`ACCURATE_TIMEOUT_S` after the turn ended, the fast final is
used, so a call never loses a turn to the accurate pass and never waits on it for long.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from voicebot.asr.base import UNK, AsrResult
from voicebot.audio.frame import AudioFrame
from voicebot.dialog.flow import AsrPass, Flow, Node

MAX_TURN_S = 30.0  # the accurate pass hears at most this much of a turn (its first seconds)
ACCURATE_TIMEOUT_S = 3.0  # the longest a turn waits for Whisper (s after the fast final); then the fast words stand
AUTO_MIN_SCORE = 0.8  # bench/hearing_eval.py, tune half: the lowest fast-pass intent score auto lets stand

# reasons the accurate pass runs (recorded on the timeline); "" = the fast final stands
POLICY, CAPTURE, UNSURE, NO_INTENT, AMBIGUOUS = "policy", "capture", "unsure_words", "no_intent", "ambiguous"

# (text, allowed intents) -> the allowed intents it matches and their scores, best first
Scorer = Callable[[str, list[str]], list[tuple[str, float]]]


def allowed_intents(flow: Flow, node: Node) -> list[str]:
    """The intents a final may match at ``node``: its routes, then the flow's globals (when enabled)."""
    allowed = list(node.routes)
    if node.globals_enabled:
        allowed += [name for name in flow.global_routes if name not in node.routes]
    return allowed


def accurate_reason(flow: Flow, node: Node | None, text: str, score: Scorer,
                    min_score: float = AUTO_MIN_SCORE) -> str:
    """Why the accurate pass must decode this turn, given the fast final ``text`` ("" = the fast final stands)."""
    if node is None or node.listen is None or node.listen.asr is AsrPass.FAST:
        return ""
    if node.listen.asr is AsrPass.ACCURATE:
        return POLICY
    if node.capture:
        return CAPTURE
    if not text.strip() or UNK in text.split():
        return UNSURE
    matches = score(text, allowed_intents(flow, node))
    if not matches or matches[0][1] < min_score:
        return NO_INTENT
    target = _target(flow, node, matches[0][0])
    if any(s >= flow.min_intent_score and _target(flow, node, name) != target for name, s in matches[1:]):
        return AMBIGUOUS
    return ""


def _target(flow: Flow, node: Node, intent: str) -> str:
    return node.routes.get(intent) or flow.global_routes.get(intent, "")


@dataclass(frozen=True)
class RecogniseTurn:
    """(Command) Decode the turn that ended at ``at`` with the accurate pass; answer with :class:`TurnRecognised`.

    ``audio``: the turn's int16 samples (little-endian bytes at ``rate`` Hz, the pre-roll included), ``hints``: the
    node's phrases, ``language``: the flow's, ``reason``: why it runs (see :func:`accurate_reason`)."""

    at: float
    turn: int
    audio: bytes
    rate: int
    hints: tuple[str, ...]
    language: str
    reason: str


@dataclass(frozen=True)
class TurnRecognised:
    """(Event) The accurate pass's answer for ``turn`` at ``at``: ``text`` (spoken form), or ``error`` set (the fast
    final stands). ``confidence``: 0..1; ``compute_ms``: decode time of the answer."""

    at: float
    turn: int
    text: str = ""
    error: str | None = None
    confidence: float = 1.0
    compute_ms: int = 0


@dataclass(frozen=True)
class TakenFinal:
    """The final the dialog gets: the words, which pass gave them, and what the timeline records with them."""

    at: float
    result: AsrResult
    compute_ms: int
    record: dict[str, object]


class TwoPass:
    """One call's two-pass state (sans-I/O): the turn's audio, the listening node, the final waiting for Whisper."""

    def __init__(self, flow: Flow, score: Scorer, enabled: bool = True) -> None:
        self.flow, self.score, self.enabled = flow, score, enabled
        self.node: Node | None = None
        self.hints: tuple[str, ...] = ()
        self._frames: list[AudioFrame] = []
        self._heard_s = 0.0
        self._turn = 0
        self._pending: tuple[RecogniseTurn, AsrResult, int] | None = None  # request, fast final, its compute ms

    def listen(self, node_id: str, hints: tuple[str, ...]) -> None:
        """A node listens: its policy and hints apply to the turns that end from now on."""
        self.node, self.hints = self.flow.nodes.get(node_id), hints

    def turn_started(self) -> None:
        """A caller turn begins: forget the last turn's audio."""
        self._frames, self._heard_s = [], 0.0

    def heard(self, frame: AudioFrame) -> None:
        """A frame of the turn, as the first pass hears it (at most :data:`MAX_TURN_S` are kept)."""
        if self._heard_s < MAX_TURN_S:
            self._frames.append(frame)
            self._heard_s += frame.duration_s

    def fast_final(self, at: float, result: AsrResult, compute_ms: int) -> RecogniseTurn | TakenFinal:
        """The first pass's final: the accurate request it needs, or the final to take now."""
        reason = accurate_reason(self.flow, self.node, result.text, self.score) if self.enabled else ""
        fit = {"fit": round(result.fit, 1)} if result.fit is not None else {}
        if not reason or not self._frames:
            return TakenFinal(at, result, compute_ms, {"asr": "fast", **fit})
        self._turn += 1
        audio = b"".join(f.samples for f in self._frames)
        request = RecogniseTurn(at, self._turn, audio, self._frames[0].rate, self.hints, self.flow.language, reason)
        self._pending = (request, result, compute_ms)
        self.turn_started()
        return request

    def abandon(self, at: float) -> TakenFinal | None:
        """A new final came (at ``at``) before the accurate answer: the waiting turn takes its fast final now."""
        if self._pending is None:
            return None
        _, result, compute_ms = self._pending
        self._pending = None
        return TakenFinal(at, result, compute_ms, {"asr": "fast", "accurate": "superseded"})

    def expired(self, now: float, timeout_s: float = ACCURATE_TIMEOUT_S) -> TakenFinal | None:
        """At ``now``: the waiting turn's fast final once Whisper has taken ``timeout_s`` (None: nothing is due)."""
        if self._pending is None or now - self._pending[0].at < timeout_s - 1e-9:
            return None
        request, result, compute_ms = self._pending
        self._pending = None
        return TakenFinal(now, result, compute_ms, {"asr": "fast", "accurate": "timeout", "reason": request.reason})

    def answered(self, event: TurnRecognised) -> TakenFinal | None:
        """The accurate answer: the final to take (None: not the turn that waits)."""
        if self._pending is None or self._pending[0].turn != event.turn:
            return None
        request, fast, compute_ms = self._pending
        self._pending = None
        waited = {"reason": request.reason, "accurate_ms": round(1000 * (event.at - request.at)), "fast_text": fast.text}
        if event.error is not None:
            return TakenFinal(event.at, fast, compute_ms, {"asr": "fast", "accurate_error": event.error, **waited})
        result = AsrResult(event.text, True, event.confidence, at=event.at)
        return TakenFinal(event.at, result, event.compute_ms, {"asr": "accurate", **waited})
