"""voicebot.esl.stall and UnicastMedia.stalled: a stall is judged by arrival, re-arms back off and stop.

Real UDP on 127.0.0.1; FreeSWITCH's side is a plain socket sending from its own
thread (a real switch keeps its pace whatever the engine's hub does), or the
FreeSWITCH double.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator

import gevent
import pytest
from structlog.testing import capture_logs

from fsdouble.double import FreeSwitchDouble
from tests.test_esl_connection import MediaBot, free_pool, wait
from voicebot.esl.connection import OutboundCall, OutboundServer
from voicebot.esl.protocol import media_format
from voicebot.esl.stall import (
    REARM_MAX_FAILED,
    Decision,
    RearmPolicy,
    StallEvidence,
    likely_trap,
    stall_evidence,
    watch_stall,
)
from voicebot.esl.unicast import UnicastMedia
from voicebot.logs import get_logger

get_logger("tests")  # configure logging now, so capture_logs() is not undone by a first-use configure()
PCM_20MS = media_format("PCMU", 8000, 20)


class Switch:
    """FreeSWITCH's side of a stream: one 20 ms datagram every 20 ms from its own thread, until ``stop()``."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, to_port: int) -> None:
        def run() -> None:
            next_at = time.monotonic()
            while not self._stop.is_set():
                self.sock.sendto(bytes(PCM_20MS.frame_bytes), ("127.0.0.1", to_port))
                self.sent += 1
                next_at += 0.02
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1)
        self.sock.close()


@pytest.fixture
def switch() -> Iterator[Switch]:
    peer = Switch()
    yield peer
    peer.stop()


# ------------------------------------------------------------------ defect 11: arrival, not progress


def test_a_busy_consumer_is_not_a_stall_and_a_silent_stream_is(switch: Switch) -> None:
    """Defect 11: stalled() measured the engine's own progress, so a consumer held up past the threshold
    took itself for a stalled FreeSWITCH and re-armed (holes of 469-690 ms in the bot's audio)."""
    media = UnicastMedia(PCM_20MS, 0, switch.port)
    rearms: list[float] = []
    frames: list[object] = []
    try:
        media.armed()
        switch.start(media.bound_port)
        delivering = gevent.spawn(media.deliver, frames.append)
        watcher = gevent.spawn(watch_stall, media, lambda: rearms.append(time.monotonic()), threshold_s=0.1,
                               poll_s=0.01)
        wait(lambda: len(frames) >= 5, what="the stream flows")
        delivering.kill()  # the engine's consumer is held up; FreeSWITCH goes on sending
        sent = switch.sent
        wait(lambda: switch.sent >= sent + 25, what="half a second of packets sent to a consumer that reads none")
        assert time.monotonic() - (media.last_packet_at or 0.0) > 0.3  # the engine's progress is far behind...
        assert media.waiting() and not media.stalled(threshold=0.1)  # ...but the packets are there
        delivering = gevent.spawn(media.deliver, frames.append)
        wait(lambda: len(frames) >= sent + 25 - 2, what="the consumer catches up")
        assert rearms == [] and media.stats().stalls == 0, "a busy engine is not a stalled FreeSWITCH"
        switch.stop()  # now a real silence
        stopped_at = time.monotonic()
        wait(lambda: rearms, what="the silence is taken for a stall")
        assert rearms[0] - stopped_at >= 0.08 and media.stats().stalls == 1
    finally:
        media.close()
    watcher.join(1)
    delivering.join(1)


def test_an_engine_short_of_cpu_does_not_take_itself_for_a_stalled_freeswitch(switch: Switch) -> None:
    """The hub held up past the threshold (as by session threads hogging the GIL): when it runs again, the
    stall watch may wake before the socket's reader; the packets that arrived meanwhile still count."""
    media = UnicastMedia(PCM_20MS, 0, switch.port)
    rearms: list[float] = []
    frames: list[object] = []
    try:
        media.armed()
        switch.start(media.bound_port)
        delivering = gevent.spawn(media.deliver, frames.append)
        watcher = gevent.spawn(watch_stall, media, lambda: rearms.append(time.monotonic()), threshold_s=0.1,
                               poll_s=0.01)
        wait(lambda: len(frames) >= 5, what="the stream flows")
        for _ in range(3):
            time.sleep(0.3)  # blocks the hub: nothing of the engine runs, FreeSWITCH goes on sending
            sent = switch.sent
            wait(lambda: len(frames) >= sent - 2, what="the reader catches up")  # noqa: B023
        assert rearms == [] and media.stats().stalls == 0, "a busy engine is not a stalled FreeSWITCH"
    finally:
        media.close()
    watcher.join(1)
    delivering.join(1)


# ------------------------------------------------------------------ defect 6: backoff and a cap


def test_the_policy_backs_off_while_rearms_bring_nothing_and_gives_up_after_five() -> None:
    policy = RearmPolicy()
    t, made = 100.0, []
    while (decision := policy.on_stall(t, flowed=False)) is not Decision.GIVE_UP:
        if decision is Decision.REARM:
            made.append(t)
            policy.rearmed(t)
        t = round(t + 0.05, 2)
        assert t < 120, "it gives up"
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(made)]
    assert len(made) == REARM_MAX_FAILED == 5 and gaps == [0.25, 0.5, 1.0, 2.0], (made, gaps)
    assert "5 re-arms in a row brought no packet" in policy.reason


def test_a_stream_that_flows_again_resets_the_backoff_but_a_trap_that_keeps_firing_is_capped() -> None:
    policy = RearmPolicy()
    t, made = 0.0, 0
    while policy.on_stall(t, flowed=True) is Decision.REARM:  # each re-arm works for a moment, then dies again
        policy.rearmed(t)
        made += 1
        t += 0.5  # at once again: no backoff while re-arms bring the stream back
    assert made == 10 and "10 re-arms within 60 s" in policy.reason
    later = RearmPolicy()
    for at in (0.0, 70.0, 140.0):  # far apart: the window forgets
        assert later.on_stall(at, flowed=True) is Decision.REARM
        later.rearmed(at)


def test_a_stream_cut_for_good_is_given_up_with_the_trap_named() -> None:
    media = UnicastMedia(PCM_20MS, 0, 9)
    rearms: list[float] = []
    lost: list[str] = []
    evidence = StallEvidence(stream=PCM_20MS, broken_ptime="Adv=20;Sent=30")
    try:
        media.armed()
        with capture_logs() as logs:
            watcher = gevent.spawn(watch_stall, media, lambda: rearms.append(time.monotonic()), threshold_s=0.02,
                                   poll_s=0.005, policy=RearmPolicy(backoff_initial_s=0.01, backoff_max_s=0.04),
                                   give_up=lost.append, diagnose=lambda: evidence)
            watcher.join(5)
    finally:
        media.close()
    assert watcher.dead and len(rearms) == REARM_MAX_FAILED and media.stats().stalls == REARM_MAX_FAILED
    assert len(lost) == 1 and "ptime_change" in lost[0], lost
    [line] = [e for e in logs if e["event"] == "unicast.media_lost"]
    assert line["trap"] == "ptime_change" and "a=ptime" in line["why"] and "Adv=20;Sent=30" in line["why"]


@pytest.mark.parametrize(("evidence", "trap", "says"), [
    (StallEvidence(PCM_20MS, media_app="playback"), "media_app", "playback ran"),
    (StallEvidence(PCM_20MS, channel=media_format("PCMA", 8000, 20)), "codec_change", "PCMU@8000 to PCMA@8000"),
    (StallEvidence(PCM_20MS, channel=media_format("PCMU", 8000, 30)), "ptime_change", "30 ms"),
    (StallEvidence(PCM_20MS, odd_frame=(480, 30)), "ptime_change", "30 ms frames arrived"),
    (StallEvidence(PCM_20MS, broken_ptime="Adv=20;Sent=30"), "ptime_change", "Adv=20;Sent=30"),
    (StallEvidence(PCM_20MS, channel=PCM_20MS), "unknown", "FreeSWITCH's log"),
])
def test_the_likely_trap_follows_the_evidence(evidence: StallEvidence, trap: str, says: str) -> None:
    found, why = likely_trap(evidence)
    assert found == trap and says in why, why


# ------------------------------------------------------------------ through the double


def test_a_playback_then_a_stream_that_never_comes_back_names_the_media_app(
        fs: FreeSwitchDouble, serve: Callable[..., OutboundServer]) -> None:
    pool = free_pool()
    bot = MediaBot(pool)
    server = serve(bot)
    uuid = fs.place_call(server.port, codec="PCMU")
    wait(lambda: uuid in bot.calls and len(bot.calls[uuid].frames) >= 5, what="media")
    rec = bot.calls[uuid]
    call: OutboundCall = rec.call
    assert rec.media is not None
    assert call.last_media_app is None
    call.api(f"uuid_broadcast {uuid} silence_stream://400")  # a media app on the channel: unicast is torn down
    wait(lambda: call.last_media_app is not None, what="CHANNEL_EXECUTE playback reaches the call")
    fs.cut_media(uuid)
    found, why = likely_trap(stall_evidence(call, rec.media))
    assert found == "media_app" and "playback" in why, why
    fs.assert_no_crash()
