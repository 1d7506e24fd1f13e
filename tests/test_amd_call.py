"""Answering-machine detection in the call path on a fake clock: the gate (voicebot.campaign.amdgate) in a real
CallSession (turn-taking, dialog machine, player), with a level VAD, a scripted recogniser and a tone speaker.
The caller is a function of time: silence, "speech" (a loud level) or a beep (a 1 kHz sine)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.call_fakes import CALLER_LEVEL, FRAME, FRAME_S, RATE, ScriptedAsr, make_session
from tests.dialog_fixtures import screening_flow
from voicebot.audio.frame import AudioFrame
from voicebot.call import CallSession
from voicebot.campaign.amdgate import (
    CHANNEL_MESSAGE,
    CHANNEL_POLICY,
    MESSAGE_NODE,
    AmdCall,
    AmdGate,
    AmdPolicy,
    amd_from_channel,
    gate_for_call,
    parse_policy,
)
from voicebot.campaign.dialing import Originate
from voicebot.records.model import record_from_call

Caller = Callable[[float], np.ndarray]
BEEP = (5.0, 5.4)  # s: the voicemail's beep


def caller(speech: list[tuple[float, float]], beep: tuple[float, float] | None = None) -> Caller:
    """Loud inside the ``speech`` intervals (s), a 1 kHz beep inside ``beep``, silent elsewhere."""
    def frame(t: float) -> np.ndarray:
        if beep is not None and beep[0] - 1e-9 <= t < beep[1] - 1e-9:
            n = np.arange(FRAME) + round(t * RATE)
            return (6000 * np.sin(2 * np.pi * 1000 * n / RATE)).astype(np.int16)
        loud = any(a - 1e-9 <= t < b - 1e-9 for a, b in speech)
        return np.full(FRAME, CALLER_LEVEL if loud else 0, dtype=np.int16)
    return frame


def run(session: CallSession, say: Caller, end_s: float, hang_up_at: float | None = None) -> list[bool]:
    """Tick the call from the answer (t = 0) to ``end_s``; per tick, whether the bot sent audio."""
    session.start(0.0, {"name": "Ann"})
    bot = []
    for i in range(round(end_s / FRAME_S)):
        t = round(i * FRAME_S, 6)
        if hang_up_at is not None and t >= hang_up_at:
            session.hang_up(t)
            break
        if session.ended:
            break
        session.caller_frame(AudioFrame(say(t).tobytes(), RATE, i, t))
        bot.append(session.bot_frame(t) is not None)
    return bot


def amd_session(policy: AmdPolicy, words: dict[float, str] | None = None, message: str = "") -> CallSession:
    session = make_session(screening_flow(), ScriptedAsr(words or {}), prompt_s=1.0)
    session.core.amd = AmdGate(AmdCall(policy, message), session.machine.flow, RATE)
    return session


def amd_entry(session: CallSession) -> dict[str, Any]:
    return session.timeline.of("amd")[-1]


def first_audio(bot: list[bool]) -> float | None:
    on = [i for i, sent in enumerate(bot) if sent]
    return round(on[0] * FRAME_S, 3) if on else None


def record_of(session: CallSession) -> dict[str, Any]:
    record = record_from_call("c-1", session.machine.outcome, session.timeline, flow_id="screening", caller="",
                              callee="", started_wall=1_800_000_000.0)
    return {"disposition": record.disposition, "answered_at": record.answered_at, "amd": record.amd,
            "duration_s": record.duration_s}


# ------------------------------------------------------------------ human


def test_the_bot_holds_its_greeting_until_the_human_verdict() -> None:
    """"Hello?" 0.6-1.0 s after the answer, then silence: the greeting starts 800 ms after the word, never before."""
    session = amd_session(AmdPolicy.HANG_UP)
    bot = run(session, caller([(0.6, 1.0)]), 3.0)
    entry = amd_entry(session)
    assert entry["verdict"] == "human" and entry["reason"] == "HUMAN" and entry["action"] == "flow"
    heard = first_audio(bot)
    assert heard is not None and 1.0 + 0.8 - 1e-6 <= heard <= 1.0 + 0.8 + 0.1, heard
    assert entry["flow_started_ms"] == entry["verdict_ms"] == pytest.approx(1800, abs=30)
    assert session.machine.outcome.path == ["greet"] and session.machine.outcome.started_at == 0.0  # times from the answer


def test_without_a_gate_the_greeting_starts_at_the_answer() -> None:
    """The control: the same call with AMD off greets at once (inbound calls are unchanged)."""
    session = make_session(screening_flow(), ScriptedAsr({}), prompt_s=1.0)
    bot = run(session, caller([(0.6, 1.0)]), 1.0)
    assert first_audio(bot) == 0.0 and session.timeline.of("amd") == []


def test_no_verdict_by_the_total_analysis_time_is_taken_as_human() -> None:
    """Clicks of 60 ms every half second: never a word, never 2.5 s of silence. NOTSURE at 5 s starts the flow
    (hanging up on a person is worse than greeting a machine)."""
    session = amd_session(AmdPolicy.HANG_UP)
    bot = run(session, caller([(0.3 + 0.5 * k, 0.36 + 0.5 * k) for k in range(12)]), 6.0)
    entry = amd_entry(session)
    assert entry["verdict"] == "notsure" and entry["reason"] == "TOOLONG" and entry["action"] == "flow"
    assert first_audio(bot) == pytest.approx(5.0, abs=0.05)


# ------------------------------------------------------------------ machine


def test_a_machine_is_hung_up_on_and_the_record_says_machine() -> None:
    """A greeting of four words: MAXWORDS; hang_up ends the call at once, nothing was ever played."""
    session = amd_session(AmdPolicy.HANG_UP)
    bot = run(session, caller([(0.5, 0.9), (1.0, 1.4), (1.5, 1.9), (2.0, 2.4), (2.5, 3.5)]), 8.0)
    assert session.ended and session.disposition == "machine" and not any(bot)
    entry = amd_entry(session)
    assert entry["verdict"] == "machine" and entry["reason"] in ("MAXWORDS", "LONGGREETING") and entry["action"] == "hang_up"
    record = record_of(session)
    assert record["disposition"] == "machine" and record["answered_at"] is not None
    assert record["amd"]["verdict"] == "machine" and record["amd"]["message_left"] is False
    assert record["duration_s"] == pytest.approx(entry["verdict_ms"] / 1000, abs=0.001)


def test_a_voicemail_phrase_is_a_machine_verdict_at_once() -> None:
    session = amd_session(AmdPolicy.HANG_UP, words={0.8: "please leave a message"})
    run(session, caller([(0.5, 1.2)]), 4.0)
    entry = amd_entry(session)
    assert entry["reason"] == "PHRASE" and session.disposition == "machine"


def test_leave_message_waits_for_the_beep_then_plays_the_message_and_hangs_up() -> None:
    session = amd_session(AmdPolicy.LEAVE_MESSAGE, message="Hello {{name}}, please call us back.")
    plays: list[tuple[str, dict[str, str]]] = []
    speak = session.speaker

    def spy(play, values):
        plays.append((play.text, dict(values)))
        return speak(play, values)
    session.speaker = spy
    session.synthesis.speaker = spy  # type: ignore[attr-defined]
    greeting = [(0.5, 0.9), (1.0, 1.4), (1.5, 1.9), (2.0, 2.4), (2.6, 4.4)]
    bot = run(session, caller(greeting, BEEP), 9.0)
    entry = amd_entry(session)
    assert entry["verdict"] == "machine" and entry["action"] == "message" and entry["message_left"] is True
    assert entry["message_trigger"] == "beep" and BEEP[0] * 1000 < entry["beep_ms"] < BEEP[1] * 1000
    started = first_audio(bot)
    assert started is not None and BEEP[1] <= started <= BEEP[1] + 0.1  # after the beep, not over it
    assert plays == [("Hello Ann, please call us back.", {"name": "Ann"})]
    assert session.ended and session.disposition == "machine"
    assert session.timeline.of("play")[0]["node"] == MESSAGE_NODE
    record = record_of(session)
    assert record["disposition"] == "machine" and record["amd"]["message_left"] is True
    assert record["duration_s"] == pytest.approx(started + 1.0, abs=0.05)  # the message is 1 s long


def test_leave_message_without_a_beep_plays_after_the_greeting_and_its_silence() -> None:
    session = amd_session(AmdPolicy.LEAVE_MESSAGE, message="Please call us back.")
    bot = run(session, caller([(0.5, 0.9), (1.0, 1.4), (1.5, 1.9), (2.0, 2.4), (2.6, 4.0)]), 9.0)
    entry = amd_entry(session)
    assert entry["message_trigger"] == "silence" and entry["beep_ms"] is None and entry["message_left"] is True
    assert first_audio(bot) == pytest.approx(4.0 + 1.5, abs=0.06)


@pytest.mark.parametrize("policy", [AmdPolicy.HANG_UP, AmdPolicy.LEAVE_MESSAGE])
def test_a_voicemail_phrase_soon_after_a_human_verdict_ends_the_flow_as_machine(policy: AmdPolicy) -> None:
    """"Hi, it's Chris." [pause] "Leave a message.": the timer says HUMAN, the words revise it; the greeting stops
    and the policy applies (leave_message: the message after the greeting's silence)."""
    session = amd_session(policy, words={0.6: "hi it's chris", 2.3: "leave a message"}, message="Call us back.")
    bot = run(session, caller([(0.5, 1.0), (2.2, 3.0)]), 8.0)
    assert any(bot[:int(2.3 / FRAME_S)]), "the greeting had started"
    entry = amd_entry(session)
    assert entry["verdict"] == "machine" and entry["revised"] is True and entry["flow_started_ms"] is not None
    assert session.ended and session.disposition == "machine" and record_of(session)["disposition"] == "machine"
    plays = [p["node"] for p in session.timeline.of("play")]
    if policy is AmdPolicy.HANG_UP:
        assert plays == ["greet"] and not any(bot[int(2.4 / FRAME_S):])
    else:
        assert plays == ["greet", MESSAGE_NODE] and entry["message_left"] is True
        assert entry["message_started_ms"] == pytest.approx(3000 + 1500, abs=60)


def test_the_callee_hanging_up_before_a_verdict_is_recorded_as_answered() -> None:
    session = amd_session(AmdPolicy.HANG_UP)
    run(session, caller([(0.5, 0.9)]), 3.0, hang_up_at=1.2)
    record = record_of(session)
    assert record["disposition"] == "caller_hangup" and record["answered_at"] is not None
    assert record["amd"]["verdict"] is None and record["amd"]["action"] == "callee_hung_up"
    assert session.disposition == ""  # the bot did not hang up


# ------------------------------------------------------------------ settings


def test_policies_parse_and_a_bad_one_is_named() -> None:
    assert parse_policy("hang_up") is parse_policy("hangup") is AmdPolicy.HANG_UP  # the campaign store's spelling
    assert parse_policy("") is AmdPolicy.OFF and parse_policy("Leave-Message") is AmdPolicy.LEAVE_MESSAGE
    with pytest.raises(ValueError, match="use one of off, hang_up, leave_message"):
        parse_policy("beep")


def test_the_dial_carries_the_policy_and_the_call_reads_it_back() -> None:
    amd = AmdCall(AmdPolicy.LEAVE_MESSAGE, message="Hi {{name}}, it's Northwind, call us back.")
    command = Originate("u-1", "sofia/gateway/trunk/+15551230001", "+12125550001", "127.0.0.1:8084", "c1", "l1", 1,
                        amd=amd.channel_vars()).command()
    assert f"{CHANNEL_POLICY}=leave_message" in command and "Northwind" in command
    headers = {f"variable_{k}": v for k, v in amd.channel_vars().items()}
    assert amd_from_channel(headers) == amd
    assert amd_from_channel({}) is None and AmdCall(AmdPolicy.OFF).channel_vars() == {}
    assert CHANNEL_MESSAGE in amd.channel_vars()


def test_bad_channel_settings_give_no_gate_or_a_gate_without_a_message() -> None:
    flow = screening_flow()
    gate, problem = gate_for_call({f"variable_{CHANNEL_POLICY}": "beep"}, flow, RATE)
    assert gate is None and problem is not None and "beep" in problem
    gate, problem = gate_for_call({f"variable_{CHANNEL_POLICY}": "leave_message",
                                   "variable_vb_amd_message_node": "nowhere"}, flow, RATE)
    assert gate is not None and problem is not None and "nowhere" in problem
    assert gate_for_call({}, flow, RATE) == (None, None)
