"""The player: frames out on demand, stop and pause within one frame, start/finish events."""

from __future__ import annotations

import numpy as np

from voicebot.player import Player


def tone(n: int, value: int = 1000) -> np.ndarray:
    return np.full(n, value, dtype=np.int16)


def test_plays_chunks_of_any_size_as_exact_frames_then_finishes() -> None:
    player = Player(8000)
    player.play(1, iter([tone(100), tone(300), tone(50)]))
    frames, events = [], []
    for i in range(5):
        frame, ev = player.next_frame(i * 0.02)
        events += ev
        if frame is not None:
            frames.append(frame)
    assert [len(f) for f in frames] == [160, 160, 160]
    assert int(np.sum(frames[-1] != 0)) == 450 - 320  # the last frame is padded with silence
    assert [(e.kind, e.play_id, e.interrupted) for e in events] == [("started", 1, False), ("finished", 1, False)]
    assert events[1].heard_ms == 60


def test_stop_silences_at_once_and_reports_heard_ms() -> None:
    player = Player(8000)
    player.play(7, iter([tone(8000)]))
    for i in range(3):
        player.next_frame(i * 0.02)
    events = player.stop(0.06)
    assert [(e.kind, e.interrupted, e.heard_ms) for e in events] == [("finished", True, 60)]
    assert player.next_frame(0.06) == (None, [])


def test_pause_and_resume_continue_where_it_stopped() -> None:
    player = Player(8000)
    ramp = np.arange(1, 801, dtype=np.int16)
    player.play(2, iter([ramp]))
    first, _ = player.next_frame(0.0)
    player.pause()
    assert player.next_frame(0.02) == (None, []) and not player.talking
    player.resume()
    second, _ = player.next_frame(0.04)
    assert first is not None and second is not None and second[0] == first[-1] + 1


def test_first_frame_waits_for_ready_at() -> None:
    player = Player(16000)
    player.play(3, iter([tone(640)]), ready_at=0.1)
    assert player.next_frame(0.08) == (None, [])
    frame, events = player.next_frame(0.1)
    assert frame is not None and len(frame) == 320 and events[0].kind == "started"


def test_new_play_interrupts_the_current_one() -> None:
    player = Player(8000)
    player.play(1, iter([tone(1600)]))
    player.next_frame(0.0)
    events = player.play(2, iter([tone(160)]))
    assert [(e.play_id, e.interrupted) for e in events] == [(1, True)]
