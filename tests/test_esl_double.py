"""The FreeSWITCH double against a minimal raw-socket ESL client written here (no voicebot parser).

Synchronisation is by what arrives on the sockets and by ``fs.wait_for``; nothing sleeps to wait.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import unquote

import numpy as np
import pytest

from fsdouble.double import (
    CRASH_UNICAST,
    STUCK_L16,
    ArrayAudio,
    CallbackAudio,
    ChannelState,
    FreeSwitchDouble,
    MediaFaults,
)
from voicebot.audio.codecs import linear_to_ulaw

REPLIES = ("command/reply", "api/response")


# ------------------------------------------------------------------ a minimal ESL client


@dataclass
class Msg:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def ct(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply(self) -> str:
        return unquote(self.headers.get("Reply-Text", "")) if self.ct == "command/reply" else self.body.decode()

    @property
    def event(self) -> dict[str, str]:
        if self.ct == "text/event-json":
            return {k: str(v) for k, v in json.loads(self.body).items()}
        if self.ct != "text/event-plain":
            return {}
        out: dict[str, str] = {}
        for line in self.body.decode().split("\n\n")[0].split("\n"):
            name, _, value = line.partition(": ")
            out.setdefault(name, unquote(value))
        return out

    @property
    def event_body(self) -> bytes:
        """A plain event's own body (after its header block), e.g. a BACKGROUND_JOB result."""
        return self.body.split(b"\n\n", 1)[1] if self.ct == "text/event-plain" else b""

    @property
    def name(self) -> str:
        return self.event.get("Event-Name", "")


class RawEsl:
    """Reads whole messages (blank line, then Content-Length bytes) into an inbox."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.inbox: deque[Msg] = deque()
        self.closed = False

    @classmethod
    def connect(cls, port: int) -> RawEsl:
        return cls(socket.create_connection(("127.0.0.1", port), timeout=5))

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def _parse(self) -> None:
        while (end := self.buf.find(b"\n\n")) >= 0:
            headers: dict[str, str] = {}
            for line in self.buf[:end].decode().split("\n"):
                name, _, value = line.partition(": ")
                headers.setdefault(name, value)
            length = int(headers.get("Content-Length", 0))
            if len(self.buf) < end + 2 + length:
                return
            self.inbox.append(Msg(headers, self.buf[end + 2:end + 2 + length], time.monotonic()))
            self.buf = self.buf[end + 2 + length:]

    def _pump(self, deadline: float) -> bool:
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.buf += data
        self._parse()
        return True

    def take(self, pred: Callable[[Msg], bool], timeout: float = 3.0) -> Msg:
        """The first message in the inbox matching ``pred`` (others stay)."""
        deadline = time.monotonic() + timeout
        while True:
            for msg in self.inbox:
                if pred(msg):
                    self.inbox.remove(msg)
                    return msg
            if time.monotonic() > deadline or (not self._pump(deadline) and self.closed):
                raise AssertionError(f"no matching message; inbox: {[m.name or m.ct for m in self.inbox]}")

    def read_until(self, pred: Callable[[Msg], bool], timeout: float = 3.0) -> list[Msg]:
        """Messages in order up to and including the first matching ``pred``."""
        out: list[Msg] = []
        deadline = time.monotonic() + timeout
        while True:
            while self.inbox:
                out.append(self.inbox.popleft())
                if pred(out[-1]):
                    return out
            if time.monotonic() > deadline or (not self._pump(deadline) and self.closed):
                raise AssertionError(f"not found; got {[m.name or m.ct for m in out]}")

    def command(self, text: str) -> Msg:
        self.send(text)
        return self.take(lambda m: m.ct in REPLIES)

    def wait_eof(self, timeout: float = 3.0) -> list[Msg]:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self._pump(deadline)
        assert self.closed, "connection still open"
        out, self.inbox = list(self.inbox), deque()
        return out

    def close(self) -> None:
        self.sock.close()


def event_named(name: str, uuid: str | None = None) -> Callable[[Msg], bool]:
    return lambda m: m.name == name and (uuid is None or m.event.get("Unique-ID") == uuid)


def names(messages: list[Msg]) -> list[str]:
    return [m.name for m in messages if m.name]


# ------------------------------------------------------------------ fixtures and helpers


def inbound(fs: FreeSwitchDouble, events: str = "") -> RawEsl:
    esl = RawEsl.connect(fs.inbound_port)
    assert esl.take(lambda m: True).ct == "auth/request"
    assert esl.command("auth ClueCon\n\n").reply == "+OK accepted"
    if events:
        assert esl.command(f"event plain {events}\n\n").reply == "+OK event listener enabled plain"
    return esl


def accept(engine: socket.socket) -> RawEsl:
    sock, _ = engine.accept()
    return RawEsl(sock)


def outbound_call(fs: FreeSwitchDouble, engine: socket.socket, answer: bool = True, **call: object) -> tuple[str, RawEsl]:
    uuid = fs.place_call(engine.getsockname()[1], **call)  # type: ignore[arg-type]
    esl = accept(engine)
    assert esl.command("connect\n\n").headers["Unique-ID"] == uuid
    assert esl.command("myevents\n\n").reply == "+OK Events Enabled"
    assert esl.command("linger\n\n").reply == "+OK will linger"
    if answer:
        esl.command("sendmsg\ncall-command: execute\nexecute-app-name: answer\n\n")
        esl.take(event_named("CHANNEL_EXECUTE_COMPLETE"))
    return uuid, esl


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unicast(esl: RawEsl, uuid: str = "", native: bool = False) -> tuple[socket.socket, Msg]:
    """Our UDP end, and the reply to sendmsg unicast."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(2)
    lines = ["sendmsg" + (f" {uuid}" if uuid else ""), "call-command: unicast", "local-ip: 127.0.0.1",
             f"local-port: {free_udp_port()}", "remote-ip: 127.0.0.1", f"remote-port: {udp.getsockname()[1]}",
             "transport: udp"] + (["flags: native"] if native else [])
    return udp, esl.command("\n".join(lines) + "\n\n")


def receive(udp: socket.socket, seconds: float) -> list[tuple[float, bytes, tuple[str, int]]]:
    out = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        udp.settimeout(left)
        try:
            data, addr = udp.recvfrom(4096)
        except TimeoutError:
            break
        out.append((time.monotonic(), data, addr))
    return out


def tone(rate: int, seconds: float = 2.0, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


# ------------------------------------------------------------------ inbound ESL


def test_auth_and_wrong_password(fs: FreeSwitchDouble) -> None:
    esl = RawEsl.connect(fs.inbound_port)
    assert esl.take(lambda m: True).ct == "auth/request"
    assert esl.command("api status\n\n").reply == "-ERR command not found"  # not authed yet
    assert esl.command("auth nope\n\n").reply == "-ERR invalid"
    [notice] = esl.wait_eof()
    assert notice.ct == "text/disconnect-notice"
    assert notice.body == b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
    assert inbound(fs).command("api status\n\n").body.startswith(b"UP 0 years")


def test_api_unknown_commands_garbage_and_exit(fs: FreeSwitchDouble) -> None:
    esl = inbound(fs)
    assert esl.command("api show channels\n\n").body == b"\n0 total.\n"
    assert esl.command("api nosuchthing now\n\n").body == b"-ERR nosuchthing Command not found!\n"
    assert esl.command("api global_setvar loopback_initial_codec=PCMU@8000h@20i\n\n").body == b"+OK"
    assert esl.command("hello there\n\n").reply == "-ERR command not found"
    assert esl.command("\x00\xff garbage \x01\n\n").reply == "-ERR command not found"
    assert esl.command("linger\n\n").reply == "-ERR not controlling a session"
    assert esl.command("event plain NOT_AN_EVENT\n\n").reply == "-ERR no keywords supplied"
    assert esl.command("filter Unique-ID abc\n\n").reply == "+OK filter added. [Unique-ID]=[abc]"
    assert esl.command("exit\n\n").reply == "+OK bye"
    assert [m.ct for m in esl.wait_eof()] == ["text/disconnect-notice"]


def test_bgapi_originate_and_background_job(fs: FreeSwitchDouble) -> None:
    esl = inbound(fs, "BACKGROUND_JOB")
    reply = esl.command("bgapi originate {origination_uuid=call-1}loopback/7001/voicebot &park()\n\n")
    job = reply.headers["Job-UUID"]
    assert reply.reply == f"+OK Job-UUID: {job}"
    done = esl.take(event_named("BACKGROUND_JOB"))
    assert done.event["Job-UUID"] == job and done.event_body == b"+OK call-1\n"
    assert done.event["Job-Command"] == "originate"
    assert fs.channel("call-1").state is ChannelState.PARKED


def test_originate_park_events_show_channels_and_kill(fs: FreeSwitchDouble) -> None:
    esl = inbound(fs, "CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_PARK CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE")
    t0 = time.monotonic()
    reply = esl.command("api originate {origination_uuid=leg-a}loopback/7001/voicebot &park\n\n")
    assert reply.body == b"+OK leg-a\n" and reply.at - t0 >= 0.015  # ~22 ms as captured (check4/6/7)
    got = esl.read_until(event_named("CHANNEL_PARK", "leg-a"))
    assert names(got) == ["CHANNEL_CREATE", "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_ANSWER",
                          "CHANNEL_PARK", "CHANNEL_PARK"]  # check2's order
    b_leg = got[1].event["Unique-ID"]
    assert got[1].event["Channel-Name"] == "loopback/7001-b" and got[0].event["Channel-Name"] == "loopback/7001-a"
    table = esl.command("api show channels\n\n").body.decode()
    assert table.startswith("uuid,direction,created") and table.endswith("\n2 total.\n") and "leg-a," in table
    kill_at = time.monotonic()
    assert esl.command("api uuid_kill leg-a\n\n").body == b"+OK\n"
    hangups = esl.read_until(lambda m: names([m]) == ["CHANNEL_HANGUP_COMPLETE"] and m.event["Unique-ID"] == b_leg)
    assert hangups[0].name == "CHANNEL_HANGUP" and hangups[0].at - kill_at >= 0.015
    assert hangups[0].event["Hangup-Cause"] == "NORMAL_CLEARING"
    assert esl.command("api uuid_kill leg-a\n\n").body == b"-ERR No such channel!\n"
    assert esl.command("api show channels count\n\n").body == b"\n0 total.\n"


# ------------------------------------------------------------------ outbound socket


def test_outbound_connect_answer_playback_hangup_as_captured(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    uuid = fs.place_call(engine.getsockname()[1], codec="PCMA", rate=8000, number="1001", destination="7000")
    esl = accept(engine)
    data = esl.command("connect\n\n")
    assert data.headers["Reply-Text"] == "%2BOK%0A" and data.reply == "+OK\n" and "Content-Length" not in data.headers
    assert data.headers["Event-Name"] == "CHANNEL_DATA" and data.headers["Unique-ID"] == uuid
    assert data.headers["Socket-Mode"] == "async" and data.headers["Control"] == "full"
    assert "Channel-Read-Codec-Name" not in data.headers  # a SIP call before answer (check5)
    assert unquote(data.headers["variable_ep_codec_string"]) == "CORE_PCM_MODULE.PCMA@8000h@20i@64000b"
    assert esl.command("myevents\n\n").reply == "+OK Events Enabled"
    assert esl.command("myevents\n\n").reply == "-ERR aready enabled."
    assert esl.command("event plain PLAYBACK_START PLAYBACK_STOP\n\n").reply == "+OK event listener enabled plain"
    assert esl.command("linger\n\n").reply == "+OK will linger"
    sent_at = time.monotonic()
    esl.command("sendmsg\ncall-command: execute\nexecute-app-name: answer\nEvent-UUID: ev-1\n\n")
    got = esl.read_until(event_named("CHANNEL_EXECUTE_COMPLETE"))
    assert names(got) == ["CHANNEL_EXECUTE", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_ANSWER", "CHANNEL_EXECUTE_COMPLETE"]
    assert got[0].event["Application-UUID"] == got[-1].event["Application-UUID"] == "ev-1"
    assert got[0].at - sent_at >= 0.015 and got[2].at - sent_at >= 0.035  # 20 ms, 40 ms (check5)
    assert got[2].event["Channel-Read-Codec-Name"] == "PCMA" and got[2].event["variable_rtp_use_codec_ptime"] == "20"
    esl.command("sendmsg\ncall-command: execute\nexecute-app-name: playback\n"
                "execute-app-arg: tone_stream://%(300,100,800);loops=2\nevent-lock: true\n\n")
    started = esl.take(event_named("PLAYBACK_START"))
    assert started.event["Playback-File-Path"] == "tone_stream://%(300,100,800);loops=2"
    assert esl.command(f"api uuid_break {uuid}\n\n").body == b"+OK\n"
    assert esl.take(event_named("PLAYBACK_STOP")).event["Playback-Status"] == "break"
    esl.command("sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING\n\n")
    tail = esl.read_until(lambda m: m.ct == "text/disconnect-notice")
    assert names(tail)[-6:] == ["CHANNEL_HANGUP", "CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_STATE",
                                "CHANNEL_STATE", "CHANNEL_HANGUP_COMPLETE"]
    assert tail[-1].headers["Content-Disposition"] == "linger" and tail[-1].headers["Linger-Time"] == "-1"
    assert fs.channel(uuid).state is ChannelState.HUNG_UP


def test_no_linger_closes_with_a_disconnect_notice(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    uuid, esl = outbound_call(fs, engine)
    assert esl.command("nolinger\n\n").reply == "+OK will not linger"
    fs.hangup(uuid)
    rest = esl.wait_eof()
    assert rest[-1].ct == "text/disconnect-notice" and rest[-1].headers["Content-Disposition"] == "disconnect"
    assert "CHANNEL_HANGUP_COMPLETE" not in names(rest)


def test_json_events_and_dtmf(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    uuid = fs.place_call(engine.getsockname()[1])
    esl = accept(engine)
    esl.command("connect\n\n")
    assert esl.command("myevents json\n\n").reply == "+OK Events Enabled"
    fs.press(uuid, "1#")
    first, second = esl.take(event_named("DTMF")), esl.take(event_named("DTMF"))
    assert first.ct == "text/event-json" and first.event["DTMF-Digit"] == "1" and second.event["DTMF-Digit"] == "#"
    assert first.event["DTMF-Source"] == "RTP"
    reply = esl.command(f"api uuid_recv_dtmf {uuid} 5\n\n")
    assert reply.body == f"+OK {uuid} received DTMF 5.\n".encode()
    assert esl.take(event_named("DTMF")).event["DTMF-Source"] == "APP"
    assert fs.channel(uuid).dtmf == ["1", "#", "5"]


# ------------------------------------------------------------------ unicast media


@pytest.mark.parametrize(("codec", "rate", "ptime", "native", "size"), [
    ("PCMU", 8000, 20, False, 320), ("PCMU", 8000, 20, True, 160), ("L16", 16000, 20, False, 640)])
def test_unicast_after_answer_streams_frames(fs: FreeSwitchDouble, engine: socket.socket, codec: str, rate: int,
                                             ptime: int, native: bool, size: int) -> None:
    uuid, esl = outbound_call(fs, engine, codec=codec, rate=rate, ptime=ptime,
                              caller=ArrayAudio(tone(rate), rate))
    t0 = time.monotonic()
    udp, reply = unicast(esl, native=native)
    assert reply.reply == "+OK"
    packets = receive(udp, 0.5)
    assert packets[0][0] - t0 == pytest.approx(0.035, abs=0.025)  # first packet ~35 ms after the sendmsg
    assert {len(p[1]) for p in packets} == {size}
    span = packets[-1][0] - packets[0][0]
    assert (len(packets) - 1) / span == pytest.approx(50, rel=0.15)  # 50 packets/s
    frame = linear_to_ulaw(bytes(320)) if native else bytes(size)
    for _ in range(10):
        udp.sendto(frame, packets[0][2])  # the bot talks back to FreeSWITCH's local-port
    fs.wait_for(lambda: len(fs.channel(uuid).packets_heard()) == 10, timeout=2, what="bot frames")
    assert fs.channel(uuid).heard_audio() == bytes(10 * (2 * size if native else size))
    assert fs.channel(uuid).unicast_active
    fs.assert_no_crash()
    udp.close()


def test_unicast_before_answer_crashes_the_switch(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    watcher = inbound(fs)
    uuid, esl = outbound_call(fs, engine, answer=False)
    udp, reply = unicast(esl)
    assert reply.reply == "+OK"  # FreeSWITCH says +OK, then dies (check4b, check4c)
    esl.wait_eof()
    watcher.wait_eof()
    assert fs.crashed and not fs.up
    with pytest.raises(AssertionError) as info:
        fs.assert_no_crash()
    assert str(info.value) == CRASH_UNICAST
    assert fs.fatal_errors[0].uuid == uuid
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", fs.inbound_port), timeout=1)
    fs.restart()
    assert inbound(fs).command("api show channels count\n\n").body == b"\n0 total.\n"
    udp.close()


def test_unicast_on_a_ringing_parked_leg_over_inbound_crashes(fs: FreeSwitchDouble) -> None:
    uuid = fs.place_call(None)  # ringing, parked, no socket (check4b's B leg)
    esl = inbound(fs)
    udp, reply = unicast(esl, uuid=uuid)
    assert reply.reply == "+OK"
    esl.wait_eof()
    with pytest.raises(AssertionError, match="unicast before answer would have crashed FreeSWITCH"):
        fs.assert_no_crash()
    udp.close()


def test_playback_kills_unicast_and_transfer_park_inline_rearms(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    uuid, esl = outbound_call(fs, engine)
    udp, _ = unicast(esl)
    assert receive(udp, 0.1)
    esl.command("sendmsg\ncall-command: execute\nexecute-app-name: playback\nexecute-app-arg: silence_stream://100\n\n")
    fs.wait_for(lambda: not fs.channel(uuid).unicast_active, timeout=2, what="playback tears unicast down")
    esl.take(event_named("CHANNEL_EXECUTE_COMPLETE"))
    udp2, reply = unicast(esl)
    assert reply.reply == "+OK" and fs.channel(uuid).unicast_log[-1].startswith("ignored: not in a fresh park")
    assert esl.command(f"api uuid_transfer {uuid} park inline\n\n").body == b"+OK\n"
    got = esl.read_until(event_named("CHANNEL_PARK"))
    assert names(got)[-6:] == ["CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_STATE", "CHANNEL_STATE",
                               "CHANNEL_EXECUTE", "CHANNEL_PARK"]  # check9
    udp3, _ = unicast(esl)
    assert {len(p[1]) for p in receive(udp3, 0.1)} == {320}
    for s in (udp, udp2, udp3):
        s.close()


def test_bridge_stops_unicast_and_park_after_bridge_rearms(fs: FreeSwitchDouble) -> None:
    esl = inbound(fs, "CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_PARK CHANNEL_UNPARK")
    esl.command("api originate {origination_uuid=caller,park_after_bridge=true}loopback/7011/voicebot &park\n\n")
    esl.command("api originate {origination_uuid=agent}loopback/7010/voicebot &park()\n\n")
    udp, _ = unicast(esl, uuid="caller")
    assert receive(udp, 0.1)
    t0 = time.monotonic()
    assert esl.command("api uuid_bridge caller agent\n\n").body == b"+OK agent\n"
    bridged = esl.take(event_named("CHANNEL_BRIDGE", "caller"))
    assert bridged.at - t0 >= 0.05  # ~61 ms (check6)
    assert bridged.event["Other-Leg-Unique-ID"] == "agent" and bridged.event["Bridge-B-Unique-ID"] == "agent"
    assert not fs.channel("caller").unicast_active and fs.channel("caller").state is ChannelState.BRIDGED
    _, reply = unicast(esl, uuid="caller")
    assert reply.reply == "+OK" and fs.channel("caller").unicast_log[-1] == "ignored: bridged"
    esl.command("api uuid_kill agent\n\n")
    esl.take(event_named("CHANNEL_UNBRIDGE", "caller"))
    esl.take(event_named("CHANNEL_PARK", "caller"))  # back in park ~21 ms after the agent left
    udp2, _ = unicast(esl, uuid="caller")
    assert receive(udp2, 0.1)
    udp.close()
    udp2.close()


def test_ptime_change_kills_unicast_silently(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    uuid, esl = outbound_call(fs, engine, codec="PCMA")
    udp, _ = unicast(esl)
    assert receive(udp, 0.1)
    fs.change_ptime(uuid, 30)
    assert not fs.channel(uuid).unicast_active
    receive(udp, 0.03)  # what was in flight
    assert receive(udp, 0.1) == []  # the stream stalls; no event says so
    esl.command(f"api uuid_transfer {uuid} park inline\n\n")
    esl.take(event_named("CHANNEL_PARK"))
    udp2, _ = unicast(esl)
    packets = receive(udp2, 0.2)
    assert {len(p[1]) for p in packets} == {480}  # 30 ms at 8 kHz
    udp.close()
    udp2.close()


def test_l16_eavesdrop_unicast_teardown_is_recorded_as_fatal(fs: FreeSwitchDouble) -> None:
    esl = inbound(fs, "CHANNEL_BRIDGE CHANNEL_UNPARK CHANNEL_EXECUTE_COMPLETE")
    esl.command("api originate {origination_uuid=human}loopback/7011/voicebot &park\n\n")
    udp, _ = unicast(esl, uuid="human")
    esl.command("api originate {origination_uuid=spy}loopback/7011/voicebot &eavesdrop(human)\n\n")
    assert fs.channel("spy").state is ChannelState.EAVESDROPPING
    esl.command("api uuid_bridge human spy\n\n")
    esl.take(event_named("CHANNEL_UNPARK", "human"))
    fs.wait_for(lambda: fs.channel("human").state is ChannelState.STUCK, timeout=2, what="stuck caller")
    with pytest.raises(AssertionError) as info:
        fs.assert_no_crash()
    assert str(info.value) == STUCK_L16
    assert "CHANNEL_BRIDGE" not in fs.channel("human").events
    udp.close()


# ------------------------------------------------------------------ faults


def test_drop_connection_and_udp_faults(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    uuid, esl = outbound_call(fs, engine)
    assert esl.command("not a command\n\n").reply == "-ERR command not found"
    udp, _ = unicast(esl)
    fs.wait_for(lambda: fs.channel(uuid).packets_sent > 0, timeout=2, what="pacing")
    fs.set_media_faults(uuid, MediaFaults(loss=1.0))
    receive(udp, 0.06)  # drain what left before the fault
    assert receive(udp, 0.1) == []
    fs.send_udp(uuid, b"garbage")
    assert receive(udp, 0.2)[0][1] == b"garbage"
    fs.drop_connection(uuid)
    esl.wait_eof()
    assert fs.channel(uuid).state is ChannelState.PARKED  # the call itself stays up
    udp.close()


def test_garbage_from_freeswitch_reaches_the_engine_raw(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    uuid, esl = outbound_call(fs, engine, answer=False)
    fs.send_garbage(uuid, b"\x00\x01 garbage")  # no blank line: it stays in our buffer, unparsed
    deadline = time.monotonic() + 2
    while b"garbage" not in esl.buf and time.monotonic() < deadline:
        esl._pump(deadline)
    assert esl.buf == b"\x00\x01 garbage"


def test_stop_and_restart_on_the_same_port(fs: FreeSwitchDouble) -> None:
    esl = inbound(fs)
    port = fs.inbound_port
    fs.stop()
    esl.wait_eof()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    fs.restart()
    assert fs.inbound_port == port
    assert inbound(fs).command("api status\n\n").body.startswith(b"UP")
    fs.assert_no_crash()


def test_wait_for_times_out_with_a_description(fs: FreeSwitchDouble) -> None:
    with pytest.raises(TimeoutError, match="never happens"):
        fs.wait_for(lambda: False, timeout=0.05, what="never happens")


def test_originate_socket_connects_out_to_the_engine(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    esl = inbound(fs)
    port = engine.getsockname()[1]
    reply = esl.command(f"api originate {{origination_uuid=bot-call}}loopback/7000/voicebot "
                        f"&socket('127.0.0.1:{port} async full')\n\n")
    assert reply.body == b"+OK bot-call\n"
    call = accept(engine)
    data = call.command("connect\n\n")
    assert data.headers["Unique-ID"] == "bot-call" and data.headers["Channel-Read-Codec-Name"] == "L16"
    assert unquote(data.headers["variable_current_application_data"]) == f"127.0.0.1:{port} async full"
    assert fs.channel("bot-call").answered  # the loopback leg is up before originate returns
    udp, _ = unicast(call)  # so unicast works at once
    assert {len(p[1]) for p in receive(udp, 0.1)} == {320}
    udp.close()


def test_caller_audio_sources_and_media_faults(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    ramp = np.full(8000, 1000, dtype=np.int16)
    uuid, esl = outbound_call(fs, engine, caller=ArrayAudio(ramp, 8000, start_at=0.3))
    udp, _ = unicast(esl)
    frames = [np.frombuffer(p[1], dtype="<i2") for p in receive(udp, 0.45)]
    assert not frames[0].any() and (frames[-1] == 1000).all()  # silence until 0.3 s after answer, then the array
    fs.set_caller_audio(uuid, CallbackAudio(lambda t: np.full(160, 7, dtype="<i2").tobytes()))
    receive(udp, 0.05)
    assert (np.frombuffer(receive(udp, 0.05)[-1][1], dtype="<i2") == 7).all()
    fs.set_media_faults(uuid, MediaFaults(silence=True, duplicate=1.0))
    receive(udp, 0.05)
    got = receive(udp, 0.2)
    assert all(p[1] == bytes(320) for p in got) and len(got) >= 14  # every frame twice, ~10 frames
    udp.close()


def test_uuid_broadcast_tears_unicast_down_before_playback_starts(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    uuid, esl = outbound_call(fs, engine)
    esl.command("event plain PLAYBACK_START PLAYBACK_STOP\n\n")
    udp, _ = unicast(esl)
    t0 = time.monotonic()
    assert esl.command(f"api uuid_broadcast {uuid} tone_stream://%(100,0,600) aleg\n\n").body == b"+OK Message sent\n"
    start = esl.take(event_named("PLAYBACK_START"))
    assert start.at - t0 >= 0.18 and not fs.channel(uuid).unicast_active
    assert esl.take(event_named("PLAYBACK_STOP")).event["Playback-Status"] == "done"
    assert fs.channel(uuid).unicast_log[-1] == "stopped: broadcast"  # at the next frame (check9)
    udp.close()


def test_linger_n_closes_after_the_linger_time(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    uuid, esl = outbound_call(fs, engine)
    assert esl.command("linger 0\n\n").reply == "+OK will linger 0 seconds"
    fs.hangup(uuid)
    rest = esl.wait_eof()
    notices = [m for m in rest if m.ct == "text/disconnect-notice"]
    assert [m.headers["Content-Disposition"] for m in notices] == ["linger", "disconnect"]
    assert "CHANNEL_HANGUP_COMPLETE" in names(rest)


def test_wait_for_yields_to_gevent_when_it_is_loaded(fs: FreeSwitchDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setitem(sys.modules, "gevent", SimpleNamespace(sleep=slept.append))
    fs.wait_for(lambda: len(slept) >= 3, timeout=1, what="three cooperative sleeps")
    assert all(0 < s <= 0.002 for s in slept)
