"""Whole calls through the real pipeline with an in-memory media transport: ``voicebot simulate``.

The loop ticks every 20 ms of call time: the simulated caller's frame goes to
the :class:`~voicebot.call.CallSession` (VAD, turn-taking, ASR, dialog), the
bot's frame comes back and the caller hears it. Without ``realtime`` the clock
is virtual and the call runs as fast as the CPU allows; compute time of ASR
finalisation and first synthesized audio is charged to that clock, so the
latencies are the ones a real call would see.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voicebot.audio.frame import AudioFrame
from voicebot.call import CallSession
from voicebot.player import Chunk
from voicebot.sim.caller import SimCaller, SpokenTurn

TICK_S = 0.02


@dataclass
class SimResult:
    """What a simulated call produced: both audio tracks, ground truth and the session."""

    session: CallSession
    caller_track: list[Chunk] = field(default_factory=list)
    bot_track: list[Chunk] = field(default_factory=list)
    spoken: list[SpokenTurn] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)  # joins of the dynamic prompts (voicebot.sim.seams)
    speech: dict[str, Any] = field(default_factory=dict)  # the bot's prompts heard over the line (voicebot.sim.speechcheck)
    duration_s: float = 0.0
    wall_s: float = 0.0

    def ear_latencies(self) -> dict[str, list[dict[str, Any]]]:
        """Latencies at the caller's ear, from the audio itself: response after each turn, bot stop after barge-ins."""
        talking = np.array([bool(np.any(chunk)) for chunk in self.bot_track])
        out: dict[str, list[dict[str, Any]]] = {"response": [], "barge_in": []}
        for turn in self.spoken:
            start = int(np.ceil(turn.end / TICK_S))
            heard = np.flatnonzero(talking[start:])
            if len(heard):
                out["response"].append({"text": turn.text, "ms": round(1000 * ((start + heard[0]) * TICK_S - turn.end))})
            if turn.kind == "barge":
                out["barge_in"].append(self._barge_reaction(turn, talking))
        return out

    @staticmethod
    def _barge_reaction(turn: SpokenTurn, talking: np.ndarray) -> dict[str, Any]:
        """How long after the caller's true onset the bot fell silent at the caller's ear (None: it did not stop)."""
        onset = int(turn.onset / TICK_S)
        quiet = np.flatnonzero(~talking[onset:])
        ms = round(1000 * ((onset + quiet[0]) * TICK_S - turn.onset)) if len(quiet) else None
        # the bot carrying on past the caller's turn means it was not interrupted (protected prompt, backchannel)
        stopped = bool(ms is not None and talking[max(0, onset - 1)] and ms <= 1000 * (turn.end - turn.onset))
        return {"text": turn.text, "ms": ms if stopped else None, "interrupted": stopped}


def run_call(session: CallSession, caller: SimCaller, *, variables: dict[str, str] | None = None,
             max_s: float = 300.0, realtime: bool = False, linger_s: float = 12.0) -> SimResult:
    """Run one call until the bot hangs up, the caller is done and silence lingers, or ``max_s`` passes."""
    result = SimResult(session)
    wall = time.perf_counter()
    session.start(0.0, variables or {})
    t, seq, idle_since = 0.0, 0, None
    while t < max_s and not session.ended:
        if realtime:
            time.sleep(max(0.0, wall + t - time.perf_counter()))
        _tick(session, caller, result, t, seq)
        seq += 1
        t = round(t + TICK_S, 6)
        idle_since = _idle(caller, session, idle_since, t)
        if idle_since is not None and t - idle_since > linger_s:
            session.hang_up(t, "caller_hangup")
    if not session.ended:
        session.hang_up(t, "caller_hangup")
    result.spoken, result.duration_s, result.wall_s = caller.spoken, t, time.perf_counter() - wall
    return result


def _tick(session: CallSession, caller: SimCaller, result: SimResult, t: float, seq: int) -> None:
    frame = caller.next_frame(t)
    for at, kind, value in caller.actions:
        if kind == "dtmf":
            session.dtmf(value, at)
        else:
            session.hang_up(at, "caller_hangup")
    caller.actions.clear()
    if session.ended:
        return
    session.caller_frame(AudioFrame(frame.tobytes(), caller.rate, seq, t))
    prompts = session.player.prompts_started
    bot = session.bot_frame(t)
    if session.player.prompts_started > prompts:
        caller.prompt_started(t)
    caller.hear(bot, t)
    result.caller_track.append(frame)
    result.bot_track.append(bot if bot is not None else np.zeros(caller.frame, dtype=np.int16))


def _idle(caller: SimCaller, session: CallSession, idle_since: float | None, t: float) -> float | None:
    """When the caller has nothing left to do and the bot is silent, since when (s)."""
    if caller.done and not session.player.talking:
        return idle_since if idle_since is not None else t
    return None
