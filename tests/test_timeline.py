"""Timeline.turns(): caller turns over a prompt are classified (stopped, declined, ignored) from the events alone,
and ignored turns get no response latency, so p50/p95 figures are not polluted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voicebot.records.model import latency_figures
from voicebot.timeline import IGNORED_WHY, Timeline

DEMO = Path(__file__).resolve().parent / "data" / "demo_timeline.json"


def timeline(*events: tuple[float, str, dict[str, Any]]) -> Timeline:
    out = Timeline()
    for t, kind, data in events:
        out.add(t, kind, **data)
    return out


def prompt(play_id: int, at: float, node: str = "ask", listens: bool = True) -> list[tuple[float, str, dict[str, Any]]]:
    """The entries CallSession writes when a node starts a prompt."""
    events = [(at, "play", {"play_id": play_id, "node": node, "text": "Would you like to hear more?"})]
    if listens:
        events.append((at, "listen", {"node": node}))
    return [*events, (at + 0.02, "prompt_start", {"play_id": play_id})]


def turn(onset: float, end: float, final_at: float, text: str) -> list[tuple[float, str, dict[str, Any]]]:
    return [(onset, "speech_start", {}), (end, "speech_end", {"reason": "silence"}), (final_at, "final", {"text": text})]


def test_speech_over_a_protected_prompt_is_ignored_without_a_latency() -> None:
    tl = timeline(*prompt(1, 0.0), *turn(1.5, 2.5, 2.7, "wait who is this"),
                  (12.0, "prompt_end", {"play_id": 1, "interrupted": False}),
                  *turn(13.0, 13.8, 14.0, "yes"), *prompt(2, 14.0, node="next"))
    first, second = tl.turns()
    assert first["ignored"] and first["barge_in"] == "ignored" and first["ignored_code"] == "not_interruptible"
    assert first["response_ms"] is None, "the bot did not answer it: no latency (was 11.5 s, to the next prompt)"
    assert first["ignored_why"] == IGNORED_WHY["not_interruptible"] and first["onset"] == 1.5
    assert first["asr_final_ms"] == 200, "the recogniser's own latency is still measured"
    assert not second["ignored"] and second["response_ms"] == 220 and second["barge_in"] == ""


def test_speech_while_a_node_that_does_not_listen_talks_is_ignored() -> None:
    tl = timeline(*prompt(1, 0.0, node="robot_answer", listens=False), *turn(1.0, 2.0, 2.2, "okay sure"),
                  (5.0, "prompt_end", {"play_id": 1, "interrupted": False}))
    (only,) = tl.turns()
    assert only["ignored"] and only["ignored_code"] == "not_listening" and only["response_ms"] is None


def test_a_declined_barge_in_is_marked_and_its_pause_resumes() -> None:
    tl = timeline(*prompt(1, 0.0), (2.0, "speech_start", {}), (2.08, "pause", {"play_id": 1}),
                  (2.5, "speech_end", {"reason": "silence"}), (2.7, "final", {"text": "uh-huh"}),
                  (2.7, "resume", {"play_id": 1}), (8.0, "prompt_end", {"play_id": 1, "interrupted": False}))
    (only,) = tl.turns()
    assert only["barge_in"] == "declined" and only["ignored"] and only["ignored_code"] == "declined"
    assert only["response_ms"] is None
    (barge,) = tl.barge_ins()
    assert barge["reaction_ms"] == 80 and barge["result"] == "resumed"


def test_a_barge_in_that_stops_the_bot_counts_with_its_latency() -> None:
    tl = timeline(*prompt(1, 0.0), (2.0, "speech_start", {}), (2.08, "pause", {"play_id": 1}),
                  (2.8, "stop", {"play_id": 1}), (2.8, "prompt_end", {"play_id": 1, "interrupted": True}),
                  (3.0, "speech_end", {"reason": "silence"}), (3.2, "final", {"text": "send me a text"}),
                  *prompt(2, 3.2, node="sms"))
    (only,) = tl.turns()
    assert only["barge_in"] == "stopped" and not only["ignored"] and only["response_ms"] == 220
    assert tl.barge_ins()[0]["result"] == "stopped"


def test_a_request_stopping_the_bot_at_the_final_counts() -> None:
    """Over the prompt with no pause until the final ("no", "stop"): the stop comes right after the final."""
    tl = timeline(*prompt(1, 0.0), *turn(2.0, 2.4, 2.6, "no"), (2.6, "stop", {"play_id": 1}),
                  (2.6, "prompt_end", {"play_id": 1, "interrupted": True}), *prompt(2, 2.6, node="bye"))
    (only,) = tl.turns()
    assert only["barge_in"] == "stopped" and not only["ignored"] and only["response_ms"] == 220


def test_speech_outlasting_the_prompt_is_an_answer() -> None:
    """The caller still talked when the prompt ended: their answer counts."""
    tl = timeline(*prompt(1, 0.0), (3.8, "speech_start", {}), (4.0, "prompt_end", {"play_id": 1, "interrupted": False}),
                  (4.9, "speech_end", {"reason": "silence"}), (5.1, "final", {"text": "yes please"}), *prompt(2, 5.1))
    (only,) = tl.turns()
    assert not only["ignored"] and only["barge_in"] == "" and only["response_ms"] == 220


def test_nothing_recognised_is_ignored() -> None:
    tl = timeline(*prompt(1, 0.0), (2.0, "prompt_end", {"play_id": 1, "interrupted": False}),
                  *turn(3.0, 3.3, 3.5, ""), *prompt(2, 9.0))
    (only,) = tl.turns()
    assert only["ignored"] and only["ignored_code"] == "no_words" and only["response_ms"] is None


def test_ignored_turns_leave_the_p50_and_p95_alone() -> None:
    tl = timeline(*prompt(1, 0.0), *turn(1.5, 2.5, 2.7, "wait who is this"),
                  (12.0, "prompt_end", {"play_id": 1, "interrupted": False}),
                  *turn(13.0, 13.8, 14.0, "yes"), *prompt(2, 14.0, node="next"),
                  (16.0, "prompt_end", {"play_id": 2, "interrupted": False}),
                  *turn(17.0, 17.5, 17.7, "no"), *prompt(3, 17.8, node="bye"))
    figures = latency_figures(tl)
    assert figures["response_ms"] == [None, 220, 320]
    assert figures["summary"]["response_ms"] == {"n": 2, "p50": 270, "p95": 315, "max": 320}


def test_the_demo_call_marks_its_one_ignored_turn() -> None:
    """The recorded demo call: the caller talks over the protected disclosure (ignored), later cuts a prompt."""
    tl = Timeline.from_json(json.loads(DEMO.read_text(encoding="utf-8")))
    turns = tl.turns()
    assert [t["barge_in"] for t in turns] == ["", "", "ignored", "", "", "stopped", ""]
    assert [t["ignored"] for t in turns] == [False, False, True, False, False, False, False]
    assert all(t["response_ms"] is not None and t["response_ms"] < 1000 for t in turns if not t["ignored"])
    assert json.loads(json.dumps(tl.to_json()))["turns"][2]["ignored_why"] == IGNORED_WHY["not_interruptible"]
