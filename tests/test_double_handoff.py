"""The FreeSWITCH double's handoff model: loopback dialplans, agent endpoints, the caller's and the agent's ears.

A raw-socket ESL client (from tests/test_esl_double.py) drives the double over real sockets on 127.0.0.1; audio
is told apart by frequency (caller 400 Hz, bot 600 Hz, agent 1000 Hz, as in the check8 captures).
Synchronisation is by events and ``fs.wait_for``; measured timings are on the double's own clock.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from fsdouble.double import STUCK_L16, ChannelState, Endpoint, FreeSwitchDouble, Tone
from tests.test_esl_double import RawEsl, accept, event_named, inbound, names, outbound_call, receive, unicast
from voicebot.audio.wav import write_wav

RATE = 8000
FRAME = 160  # samples per 20 ms at 8 kHz


# ------------------------------------------------------------------ audio helpers


def tone(hz: float, seconds: float, dbfs: float = -12.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (32767 * 10 ** (dbfs / 20) * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def peaks(pcm: bytes | np.ndarray, top: int = 2) -> set[int]:
    """The ``top`` strongest frequencies (Hz, 50 Hz bins) of an s16le stretch."""
    x = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes) else pcm
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    strongest = np.argsort(spectrum)[::-1]
    found: list[int] = []
    for i in strongest:
        hz = int(round(freqs[i] / 50) * 50)
        if hz not in found and spectrum[i] > 0.1 * spectrum[strongest[0]]:
            found.append(hz)
        if len(found) == top:
            break
    return set(found)


class Streamer:
    """Sends 20 ms s16le frames of ``pcm`` from ``udp`` to ``dest`` every 20 ms, in a thread, until stopped."""

    def __init__(self, udp: socket.socket, dest: tuple[str, int], pcm: np.ndarray) -> None:
        self.udp, self.dest, self.pcm = udp, dest, pcm.astype("<i2")
        self.sent = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        start, i = time.monotonic(), 0
        while not self.stopped.is_set():
            frame = self.pcm[(i * FRAME) % len(self.pcm):][:FRAME]
            self.udp.sendto(frame.tobytes(), self.dest)
            self.sent = i = i + 1
            self.stopped.wait(max(0.0, start + i * 0.02 - time.monotonic()))

    def say(self, pcm: np.ndarray) -> None:
        """From the next frame on, send ``pcm`` (looped)."""
        self.pcm = pcm.astype("<i2")

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=2)


def answer(esl: RawEsl) -> None:
    esl.command("sendmsg\ncall-command: execute\nexecute-app-name: answer\n\n")
    esl.take(event_named("CHANNEL_EXECUTE_COMPLETE"))


class BotCall:
    """A SIP caller (400 Hz) on the engine's socket, answered, unicast armed, the bot talking 600 Hz."""

    def __init__(self, fs: FreeSwitchDouble, engine: socket.socket, codec: str = "PCMU") -> None:
        self.fs = fs
        self.uuid, self.esl = outbound_call(fs, engine, codec=codec, caller=Tone(400))
        self.udp, _ = unicast(self.esl)
        first = receive(self.udp, 0.1)
        self.bot = Streamer(self.udp, first[0][2], tone(600, 1.0))
        fs.wait_for(lambda: len(self.ear()) >= 3, timeout=2, what="bot frames at the caller's ear")

    def ear(self, after: float = 0.0, source: str = "") -> list:
        return [p for p in self.fs.channel(self.uuid).packets_heard() if p.at >= after and (not source or p.has(source))]

    def heard_after(self, at: float) -> bytes:
        return b"".join(p.pcm() for p in self.ear(at))

    def close(self) -> None:
        self.bot.stop()
        self.udp.close()


@pytest.fixture
def call(fs: FreeSwitchDouble, engine: socket.socket) -> Iterator[BotCall]:
    bot_call = BotCall(fs, engine)
    yield bot_call
    bot_call.close()


def wav(path, seconds: float) -> str:
    write_wav(path, tone(300, seconds), RATE)
    return str(path)


# ------------------------------------------------------------------ loopback calls through the dialplan (issue 6)


def test_loopback_call_through_the_dialplan_reaches_the_engine_and_media_crosses(engine: socket.socket) -> None:
    port = engine.getsockname()[1]
    with FreeSwitchDouble(dialplan={"7000": f"socket:127.0.0.1:{port} async full"}) as fs:
        client = inbound(fs, "CHANNEL_ANSWER CHANNEL_PARK BACKGROUND_JOB")
        client.command("bgapi originate {origination_uuid=phone,vb_var_customer_name=Dana}"
                       "loopback/7000/voicebot &park()\n\n")
        bot = accept(engine)  # leg B ran extension 7000: the socket app connected out to the engine
        data = bot.command("connect\n\n")
        assert data.headers["Channel-Name"] == "loopback/7000-b" and data.headers["Answer-State"] == "ringing"
        assert data.headers["variable_vb_var_customer_name"] == "Dana", "mod_loopback passes the originate's vars to B"
        assert data.headers["Unique-ID"] != "phone"
        assert data.headers["Caller-Destination-Number"] == "7000"
        b_leg = data.headers["Unique-ID"]
        assert bot.command("myevents\n\n").reply == "+OK Events Enabled"
        assert not fs.channel("phone").answered  # the originate waits for the engine's answer (check3)
        answer(bot)
        answered = client.take(event_named("CHANNEL_ANSWER", "phone"))
        job = client.take(event_named("BACKGROUND_JOB"))
        assert job.event_body == b"+OK phone\n" and job.at - answered.at >= 0.015  # 20 ms after the answer
        client.take(event_named("CHANNEL_PARK", "phone"))
        bot_udp, _ = unicast(bot)  # the engine's media on B
        phone_udp, _ = unicast(client, uuid="phone")  # the test caller's media on A
        bot_in, phone_in = receive(bot_udp, 0.1), receive(phone_udp, 0.1)
        caller = Streamer(phone_udp, phone_in[0][2], tone(400, 1.0))
        voice = Streamer(bot_udp, bot_in[0][2], tone(600, 1.0))
        receive(bot_udp, 0.1), receive(phone_udp, 0.1)
        engine_heard = b"".join(p[1] for p in receive(bot_udp, 0.4))
        phone_heard = b"".join(p[1] for p in receive(phone_udp, 0.01))
        caller.stop(), voice.stop()
        assert peaks(engine_heard, 1) == {400}  # what the test caller sent into A is B's caller audio
        phone_heard += b"".join(p[1] for p in receive(phone_udp, 0.3))
        assert peaks(phone_heard[: len(phone_heard) // 2], 1) == {600}  # A's unicast carries the engine's audio
        assert fs.channel(b_leg).state.value == "parked"
        bot.command("sendmsg\ncall-command: hangup\n\n")
        fs.wait_for(lambda: fs.channel("phone").hung_up, timeout=2, what="the caller's leg hangs up with B")
        fs.assert_no_crash()
        for s in (bot_udp, phone_udp):
            s.close()


def test_api_originate_through_the_dialplan_blocks_until_the_engine_answers(engine: socket.socket) -> None:
    with FreeSwitchDouble() as fs:
        fs.route("7000", "socket", f"127.0.0.1:{engine.getsockname()[1]} async full")
        client = inbound(fs)
        client.send("api originate {origination_uuid=phone}loopback/7000/voicebot &park()\n\n")
        bot = accept(engine)
        bot.command("connect\n\n")
        bot.command("myevents\n\n")
        t0 = time.monotonic()
        answer(bot)
        reply = client.take(lambda m: m.ct == "api/response")
        assert reply.body == b"+OK phone\n" and reply.at - t0 >= 0.05  # answer (40 ms) + 20 ms
        fs.wait_for(lambda: fs.channel("phone").state.value == "parked", timeout=2, what="A parks")


def test_dialplan_originate_fails_when_the_engine_is_down_or_never_answers(engine: socket.socket) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    with FreeSwitchDouble(dialplan={"7000": f"socket:127.0.0.1:{dead_port}",
                                    "7100": f"socket:127.0.0.1:{engine.getsockname()[1]}"}) as fs:
        client = inbound(fs)
        assert client.command("api originate loopback/7000/voicebot &park()\n\n").body == b"-ERR NORMAL_CLEARING\n"
        t0 = time.monotonic()
        reply = client.command("api originate {originate_timeout=0.3}loopback/7100/voicebot &park()\n\n")
        assert reply.body == b"-ERR NO_ANSWER\n" and reply.at - t0 >= 0.3
        bot = accept(engine)  # it had connected; the engine never answered, and the leg has hung up since
        assert bot.wait_eof()[-1].ct == "text/disconnect-notice"
        assert all(ch.hung_up for ch in fs.channels()) and len(fs.channels()) == 4


# ------------------------------------------------------------------ the caller's ear during a bridge (issue 7)


def test_bridge_caller_hears_silence_then_the_agent_at_the_captured_offset(fs: FreeSwitchDouble,
                                                                          call: BotCall) -> None:
    esl = inbound(fs, "CHANNEL_BRIDGE")
    assert esl.command("api originate {origination_uuid=agent}user/1001 &park()\n\n").body == b"+OK agent\n"
    t0 = time.monotonic()
    assert esl.command(f"api uuid_bridge {call.uuid} agent\n\n").body == b"+OK agent\n"
    bridged = esl.take(event_named("CHANNEL_BRIDGE"))
    fs.wait_for(lambda: len(call.ear(t0, "agent")) >= 10, timeout=2, what="agent frames at the caller's ear")
    first = fs.first_heard(call.uuid, "agent", after=t0)
    assert first is not None and 0.060 <= first - t0 <= 0.110  # 67-89 ms (check6, check8 takeover_bridge)
    assert bridged.at - t0 >= 0.05  # CHANNEL_BRIDGE ~61 ms
    after = [(at, source) for at, source, _ in fs.ear_timeline(call.uuid) if at >= t0]
    last_bot = max(at for at, source in after if source == "engine")
    silent = [at for at, source in after if source == "silence"]
    assert last_bot - t0 <= 0.070 and silent and last_bot < min(silent) and max(silent) < first
    assert 0.015 <= first - last_bot <= 0.100  # the caller hears a gap (DESIGN: 43-81 ms)
    assert peaks(b"".join(p.pcm() for p in call.ear(first, "agent")), 1) == {1000}
    levels = [db for at, source, db in fs.ear_timeline(call.uuid) if source == "agent"]
    assert all(-16 < db < -14 for db in levels)  # a -12 dBFS peak sine: -15 dBFS RMS
    agent_ear = fs.channel("agent").heard_audio()
    assert peaks(agent_ear[-3200:], 1) == {400}  # and the agent hears the caller (check8: human400)
    fs.set_agent_audio("agent", Tone(700))  # what the agent says is the test's to choose
    changed = time.monotonic() + 0.005
    fs.wait_for(lambda: len(call.ear(changed, "agent")) >= 5, timeout=2, what="the agent's new voice")
    assert peaks(call.heard_after(changed), 1) == {700}
    fs.assert_no_crash()


def test_agent_hangs_up_caller_parks_after_bridge_and_agent_audio_stops(fs: FreeSwitchDouble, call: BotCall) -> None:
    esl = inbound(fs, "CHANNEL_HANGUP CHANNEL_UNBRIDGE CHANNEL_PARK")
    esl.command(f"api uuid_setvar {call.uuid} park_after_bridge true\n\n")
    esl.command("api originate {origination_uuid=agent}user/1001 &park()\n\n")
    esl.command(f"api uuid_bridge {call.uuid} agent\n\n")
    fs.wait_for(lambda: len(call.ear(0, "agent")) >= 3, timeout=2, what="agent audio")
    kill_at = time.monotonic()
    esl.command("api uuid_kill agent\n\n")
    esl.take(event_named("CHANNEL_UNBRIDGE", call.uuid))
    parked = esl.take(event_named("CHANNEL_PARK", call.uuid))
    assert 0.015 <= parked.at - kill_at <= 0.080  # back in park ~21 ms after uuid_kill (check6)
    fs.wait_for(lambda: fs.channel(call.uuid).state is ChannelState.PARKED, timeout=1, what="caller parked")
    udp, _ = unicast(call.esl)  # the engine re-arms its media on the parked caller
    got = receive(udp, 0.2)
    assert len(got) >= 5 and peaks(b"".join(p[1] for p in got), 1) == {400}
    udp.sendto(tone(600, 0.02).tobytes(), got[0][2])
    fs.wait_for(lambda: call.ear(kill_at + 0.03, "engine"), timeout=1, what="the bot heard again")
    assert call.ear(0, "agent") and not call.ear(kill_at + 0.03, "agent")  # the agent's audio stopped
    assert not call.ear(kill_at + 0.03, "silence")
    udp.close()


# ------------------------------------------------------------------ eavesdrop: listening and talk mode


def test_eavesdropping_agent_hears_caller_and_bot_mixed(fs: FreeSwitchDouble, call: BotCall) -> None:
    esl = inbound(fs, "CHANNEL_EXECUTE")
    t0 = time.monotonic()
    esl.command(f"api originate {{origination_uuid=agent}}user/1001 &eavesdrop({call.uuid})\n\n")
    started = esl.take(event_named("CHANNEL_EXECUTE", "agent"))
    assert started.event["Application"] == "eavesdrop" and fs.channel("agent").state is ChannelState.EAVESDROPPING
    fs.wait_for(lambda: len(fs.channel("agent").packets_heard()) >= 25, timeout=2, what="the agent's ear")
    agent = fs.channel("agent").packets_heard()
    assert agent[0].at - t0 >= 0.038  # check8 listen: the agent's first frame ~38 ms after eavesdrop starts
    assert peaks(b"".join(p.pcm() for p in agent[5:]), 2) == {400, 600}  # human400+bot600 (check8 listen)
    assert all(p.has("caller") for p in agent) and sum(p.has("engine") for p in agent) >= 20
    assert not call.ear(0, "agent")  # listening only: the caller does not hear the agent
    assert peaks(call.heard_after(t0), 1) == {600}


def test_talk_mode_mixes_the_agent_into_engine_frames_only_while_the_engine_sends(fs: FreeSwitchDouble,
                                                                                  call: BotCall) -> None:
    esl = inbound(fs, "DTMF")
    esl.command(f"api originate {{origination_uuid=agent}}user/1001 &eavesdrop({call.uuid})\n\n")
    t0 = time.monotonic()
    assert esl.command("api uuid_recv_dtmf agent 2\n\n").body == b"+OK agent received DTMF 2.\n"
    dtmf = esl.take(event_named("DTMF", "agent"))
    assert dtmf.event["DTMF-Digit"] == "2" and dtmf.at - t0 >= 0.015  # ~20 ms (check8 dtmf2)
    fs.wait_for(lambda: len(call.ear(t0, "agent")) >= 10, timeout=2, what="mixed frames")
    first = fs.first_heard(call.uuid, "agent", after=t0)
    assert first is not None and 0.015 <= first - t0 <= 0.100  # ~27 ms (check8 dtmf2_evsilence)
    assert all(p.source == "engine" for p in call.ear(t0) if p.at < first)
    assert all(p.source == "engine+agent" for p in call.ear(first))
    assert peaks(b"".join(p.pcm() for p in call.ear(first)), 2) == {600, 1000}  # bot600+agent1000 (botkeep)
    call.bot.say(np.zeros(FRAME, dtype=np.int16))  # the bot goes silent: the caller hears only the agent
    silent_from = time.monotonic() + 0.03
    fs.wait_for(lambda: len(call.ear(silent_from)) >= 10, timeout=2, what="frames after the bot went silent")
    assert peaks(call.heard_after(silent_from), 1) == {1000}
    call.bot.stop()  # the bot stops sending: the caller hears nothing (check8 dtmf2_botoff)
    stopped = time.monotonic() + 0.005
    agent_ear = len(fs.channel("agent").packets_heard())
    fs.wait_for(lambda: len(fs.channel("agent").packets_heard()) >= agent_ear + 12, timeout=2,
                what="a quarter second of the double's media clock")  # the agent still hears the caller
    assert call.ear(stopped) == []
    fs.assert_no_crash()


def test_three_way_mode_lets_the_engine_hear_the_agent_too(fs: FreeSwitchDouble, call: BotCall) -> None:
    esl = inbound(fs, "DTMF")
    esl.command(f"api originate {{origination_uuid=agent}}user/1001 &eavesdrop({call.uuid})\n\n")
    assert peaks(b"".join(p[1] for p in receive(call.udp, 0.2)), 1) == {400}  # the caller only
    esl.command("api uuid_recv_dtmf agent 3\n\n")
    esl.take(event_named("DTMF", "agent"))
    receive(call.udp, 0.04)
    assert peaks(b"".join(p[1] for p in receive(call.udp, 0.2)), 2) == {400, 1000}  # human400+agent1000 (dtmf3)
    assert call.ear(time.monotonic() - 0.1, "agent")  # and the caller hears the agent
    assert fs.channel("agent").eavesdrop_mode == "3"


# ------------------------------------------------------------------ agent endpoints that ring, answer or fail


def test_ringing_endpoint_answers_after_ring_s_then_runs_its_app() -> None:
    with FreeSwitchDouble(endpoints={"user/1001": Endpoint(ring_s=0.3)}) as fs:
        esl = inbound(fs, "CHANNEL_CREATE CHANNEL_PROGRESS CHANNEL_ANSWER CHANNEL_PARK BACKGROUND_JOB")
        t0 = time.monotonic()
        esl.command("bgapi originate {origination_uuid=agent}user/1001 &park()\n\n")
        esl.take(event_named("CHANNEL_PROGRESS", "agent"))
        assert fs.channel("agent").state is ChannelState.RINGING and not fs.channel("agent").answered
        job = esl.take(event_named("BACKGROUND_JOB"), timeout=2)
        assert job.event_body == b"+OK agent\n" and job.at - t0 >= 0.3
        assert names(esl.read_until(event_named("CHANNEL_PARK", "agent"))) == ["CHANNEL_CREATE", "CHANNEL_ANSWER",
                                                                              "CHANNEL_PARK"]
        assert fs.channel("agent").state is ChannelState.PARKED
        t1 = time.monotonic()
        reply = esl.command("api originate {origination_uuid=agent2}user/1001 &park()\n\n")  # api: the reply waits
        assert reply.body == b"+OK agent2\n" and reply.at - t1 >= 0.3 and fs.channel("agent2").answered


@pytest.mark.parametrize("cause", ["USER_BUSY", "NO_ANSWER", "CALL_REJECTED"])
def test_failing_endpoint_replies_its_cause_to_api_and_bgapi(fs: FreeSwitchDouble, cause: str) -> None:
    fs.set_endpoint("user/2*", ring_s=0.2, result=cause)
    esl = inbound(fs, "CHANNEL_HANGUP BACKGROUND_JOB")
    t0 = time.monotonic()
    reply = esl.command("api originate {origination_uuid=a1}user/2001 &park()\n\n")
    assert reply.body == f"-ERR {cause}\n".encode() and reply.at - t0 >= 0.2
    assert esl.take(event_named("CHANNEL_HANGUP", "a1")).event["Hangup-Cause"] == cause
    esl.command("bgapi originate {origination_uuid=a2}user/2002 &park()\n\n")
    assert esl.take(event_named("BACKGROUND_JOB"), timeout=2).event_body == f"-ERR {cause}\n".encode()
    assert fs.channel("a2").hung_up and not fs.channel("a2").answered


def test_originate_timeout_error_endpoints_and_a_rejected_ringing_leg(fs: FreeSwitchDouble) -> None:
    fs.set_endpoint("user/1001", ring_s=5.0)
    esl = inbound(fs, "BACKGROUND_JOB CHANNEL_PROGRESS")
    t0 = time.monotonic()
    reply = esl.command("api originate {origination_uuid=slow,originate_timeout=0.2}user/1001 &park()\n\n")
    assert reply.body == b"-ERR NO_ANSWER\n" and 0.2 <= reply.at - t0 < 2.0
    assert esl.command("api originate error/user_busy &park()\n\n").body == b"-ERR USER_BUSY\n"
    esl.command("bgapi originate {origination_uuid=rejected}user/1001 &park()\n\n")
    esl.take(event_named("CHANNEL_PROGRESS", "rejected"))
    fs.hangup("rejected", "CALL_REJECTED")  # the agent declines the ringing call
    assert esl.take(event_named("BACKGROUND_JOB")).event_body == b"-ERR CALL_REJECTED\n"
    assert esl.command("api originate {origination_uuid=up}user/1999 &park()\n\n").body == b"+OK up\n"  # default


# ------------------------------------------------------------------ agent legs driven over their own socket


def test_socket_agent_plays_a_whisper_then_eavesdrops_and_takes_over_with_2(fs: FreeSwitchDouble, call: BotCall,
                                                                             engine: socket.socket, tmp_path) -> None:
    whisper = wav(tmp_path / "whisper.wav", 0.3)
    inbound(fs).command(f"api originate {{origination_uuid=agent}}user/1001 "
                        f"&socket('127.0.0.1:{engine.getsockname()[1]} async full')\n\n")
    agent = accept(engine)
    assert agent.command("connect\n\n").headers["Unique-ID"] == "agent"
    agent.command("myevents\n\n")
    agent.command("event plain PLAYBACK_START PLAYBACK_STOP\n\n")
    agent.command(f"sendmsg\ncall-command: execute\nexecute-app-name: playback\nexecute-app-arg: {whisper}\n\n")
    start, stop = agent.take(event_named("PLAYBACK_START")), agent.take(event_named("PLAYBACK_STOP"), timeout=2)
    assert 0.28 <= stop.at - start.at <= 0.5  # the WAV's length
    sent = time.monotonic()
    agent.command(f"sendmsg\ncall-command: execute\nexecute-app-name: eavesdrop\nexecute-app-arg: {call.uuid}\n\n")
    executing = agent.take(lambda m: m.name == "CHANNEL_EXECUTE" and m.event.get("Application") == "eavesdrop")
    assert executing.at - sent >= 0.015  # ~20 ms (check8 eavesdrop CHANNEL_EXECUTE)
    assert fs.channel("agent").state is ChannelState.EAVESDROPPING
    fs.wait_for(lambda: len(fs.channel("agent").packets_heard()) >= 10, timeout=2, what="the agent's ear")
    pressed = time.monotonic()
    fs.press("agent", "2")  # the agent presses 2 on the phone
    assert agent.take(event_named("DTMF")).event["DTMF-Digit"] == "2"
    fs.wait_for(lambda: len(call.ear(pressed, "agent")) >= 5, timeout=2, what="the caller hears the agent")
    fs.hangup(call.uuid)  # the caller leaves: eavesdrop ends, the agent's leg stays on its socket
    done = agent.take(lambda m: m.name == "CHANNEL_EXECUTE_COMPLETE" and m.event.get("Application") == "eavesdrop")
    assert done.event["Application-Data"] == call.uuid
    fs.wait_for(lambda: fs.channel(call.uuid).complete, timeout=2, what="the caller's hangup")
    assert not fs.channel("agent").hung_up and fs.channel("agent").state is not ChannelState.EAVESDROPPING


def test_inline_dialplan_originate_runs_its_apps_in_order(fs: FreeSwitchDouble, call: BotCall, tmp_path) -> None:
    whisper = wav(tmp_path / "w.wav", 0.2)
    esl = inbound(fs, "CHANNEL_EXECUTE CHANNEL_EXECUTE_COMPLETE CHANNEL_HANGUP")
    reply = esl.command(f"api originate {{origination_uuid=agent}}user/1001 "
                        f"'playback:{whisper},eavesdrop:{call.uuid}' inline\n\n")
    assert reply.body == b"+OK agent\n"
    got = esl.read_until(lambda m: m.name == "CHANNEL_EXECUTE" and m.event.get("Application") == "eavesdrop")
    apps = [(m.name, m.event["Application"]) for m in got if m.event.get("Unique-ID") == "agent"]
    assert apps == [("CHANNEL_EXECUTE", "playback"), ("CHANNEL_EXECUTE_COMPLETE", "playback"),
                    ("CHANNEL_EXECUTE", "eavesdrop")]
    assert got[-1].at - got[0].at >= 0.2  # the playback took the WAV's length
    fs.hangup(call.uuid)  # eavesdrop ends with its target, then the dialplan has nothing left: the agent hangs up
    assert esl.take(event_named("CHANNEL_HANGUP", "agent")).event["Hangup-Cause"] == "NORMAL_CLEARING"


def test_l16_trap_still_fires_with_a_socket_agent_eavesdropping(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    l16 = BotCall(fs, engine, codec="L16")
    esl = inbound(fs, "CHANNEL_UNPARK")
    esl.command(f"api originate {{origination_uuid=agent}}user/1001 &socket(127.0.0.1:{engine.getsockname()[1]})\n\n")
    agent = accept(engine)
    agent.command("connect\n\n")
    agent.command(f"sendmsg\ncall-command: execute\nexecute-app-name: eavesdrop\nexecute-app-arg: {l16.uuid}\n\n")
    fs.wait_for(lambda: fs.channel("agent").state is ChannelState.EAVESDROPPING, timeout=2, what="eavesdrop")
    esl.command(f"api uuid_bridge {l16.uuid} agent\n\n")
    esl.take(event_named("CHANNEL_UNPARK", l16.uuid))
    fs.wait_for(lambda: fs.channel(l16.uuid).state is ChannelState.STUCK, timeout=2, what="stuck caller")
    with pytest.raises(AssertionError, match="L16 eavesdrop"):
        fs.assert_no_crash()
    assert fs.fatal_errors[0].message == STUCK_L16 and not l16.ear(0, "agent")
    l16.close()
