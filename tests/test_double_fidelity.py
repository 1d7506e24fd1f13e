"""The FreeSWITCH double reproduces what a real FreeSWITCH 1.11.1 did where the two disagreed.

Each behaviour was measured on a real switch (loopback legs, PCMU, an outbound socket per leg) by a probe;
the caller leg's raw event stream of that run is the capture check9_caller_states_plain (tests/fixtures/esl).
A raw-socket ESL client (from tests/test_esl_double.py) drives the double over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from fsdouble.double import FreeSwitchDouble
from tests.test_esl_double import Msg, RawEsl, accept, event_named, inbound, outbound_call, receive, unicast

FIXTURES = Path(__file__).parent / "fixtures" / "esl"
CAPTURE = FIXTURES / "check9_caller_states_plain.recv.raw.txt"
WATCHED = "CHANNEL_STATE CHANNEL_PARK CHANNEL_UNPARK CHANNEL_BRIDGE CHANNEL_UNBRIDGE"


def captured_states() -> list[tuple[str, str, str]]:
    """(Event-Name, Channel-State, Channel-State-Number) of every event in the check9 capture, in order."""
    raw = CAPTURE.read_bytes().decode()
    out = []
    for block in re.finditer(r"Event-Name: (\S+)\n(.*?)\n\n", raw, re.S):
        headers = dict(line.split(": ", 1) for line in block[2].split("\n") if ": " in line)
        out.append((block[1], headers["Channel-State"], headers["Channel-State-Number"]))
    return out


def states(messages: list[Msg]) -> list[tuple[str, str, str]]:
    return [(m.name, m.event["Channel-State"], m.event["Channel-State-Number"]) for m in messages if m.name]


def socket_leg(fs: FreeSwitchDouble, esl: RawEsl, engine: socket.socket, uuid: str, dial: str) -> RawEsl:
    """Originate ``dial`` with the quoted socket app to ``engine``, connect, myevents, linger."""
    port = engine.getsockname()[1]
    reply = esl.command(f"api originate {{origination_uuid={uuid}}}{dial} &socket('127.0.0.1:{port} async full')\n\n")
    assert reply.body == f"+OK {uuid}\n".encode()
    leg = accept(engine)
    assert leg.command("connect\n\n").headers["Unique-ID"] == uuid
    assert leg.command("myevents\n\n").reply == "+OK Events Enabled"
    assert leg.command("linger\n\n").reply == "+OK will linger"
    return leg


def test_caller_leg_states_match_the_real_capture(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    """The probe's scenario: broadcast, transfer park inline, bridge to an agent, agent hangs up
    (park_after_bridge), caller hangs up: the same events with the same Channel-State/-Number."""
    fs.route("7010", "answer,park")
    esl = inbound(fs)
    esl.command("api global_setvar loopback_initial_codec=PCMU@8000h@20i\n\n")
    caller = socket_leg(fs, esl, engine, "caller", "{loopback_bowout=false}loopback/7001/voicebot")
    caller.command("sendmsg\ncall-command: execute\nexecute-app-name: answer\n\n")
    caller.take(event_named("CHANNEL_EXECUTE_COMPLETE"))
    watch = inbound(fs, WATCHED)
    assert watch.command("filter Unique-ID caller\n\n").reply.startswith("+OK")
    watch.inbox.clear()
    events = fs.channel("caller").events
    udp, _ = unicast(caller)
    esl.command("api uuid_broadcast caller tone_stream://%(100,0,600) aleg\n\n")
    caller.take(event_named("CHANNEL_EXECUTE_COMPLETE"))
    esl.command("api uuid_transfer caller park inline\n\n")
    fs.wait_for(lambda: "CHANNEL_PARK" in events, timeout=2, what="the caller parks")
    agent = socket_leg(fs, esl, engine, "agent", "{vb_role=agent}loopback/7010/voicebot")
    esl.command("api uuid_setvar caller park_after_bridge true\n\n")
    esl.command("api uuid_bridge caller agent\n\n")
    fs.wait_for(lambda: "CHANNEL_BRIDGE" in events, timeout=2, what="the bridge")
    esl.command("api uuid_kill agent NORMAL_CLEARING\n\n")
    fs.wait_for(lambda: events.count("CHANNEL_PARK") == 2, timeout=2, what="park after bridge")
    esl.command("api uuid_kill caller\n\n")
    got = watch.read_until(lambda m: m.event.get("Channel-State") == "CS_REPORTING", timeout=2)
    assert states(got) == captured_states()
    assert not any(k.startswith("variable_") for m in got if m.name == "CHANNEL_STATE" for k in m.event)
    for sock in (udp, caller.sock, agent.sock, esl.sock, watch.sock):
        sock.close()


def test_caller_leg_states_in_order_with_parks_and_bridge(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    """Transfer, bridge and unbridge on their own: every event of the caller leg in the captured order."""
    fs.route("7010", "answer,park")
    esl = inbound(fs, WATCHED)
    esl.command("api originate {origination_uuid=caller}loopback/7001/voicebot &park\n\n")
    esl.take(event_named("CHANNEL_PARK", "caller"))
    esl.command("api originate {origination_uuid=agent}loopback/7010/voicebot &park()\n\n")
    assert esl.command("filter Unique-ID caller\n\n").reply.startswith("+OK")
    esl.inbox.clear()
    esl.command("api uuid_transfer caller park inline\n\n")
    transfer = esl.read_until(event_named("CHANNEL_PARK", "caller"))
    esl.command("api uuid_setvar caller park_after_bridge true\n\n")
    esl.command("api uuid_bridge caller agent\n\n")
    bridge = esl.read_until(event_named("CHANNEL_BRIDGE", "caller"))
    esl.command("api uuid_kill agent\n\n")
    unbridge = esl.read_until(event_named("CHANNEL_PARK", "caller"))
    want = captured_states()
    assert states(transfer) == [("CHANNEL_UNPARK", "CS_EXECUTE", "2"), *want[1:4]]
    assert states(bridge) == want[4:9]
    assert states(unbridge) == want[9:12]


def test_transfer_park_inline_comes_23_ms_after_the_command(fs: FreeSwitchDouble) -> None:
    esl = inbound(fs, WATCHED)
    esl.command("api originate {origination_uuid=caller}loopback/7001/voicebot &park\n\n")
    esl.take(event_named("CHANNEL_PARK", "caller"))
    t0 = time.monotonic()
    esl.command("api uuid_transfer caller park inline\n\n")
    got = esl.read_until(event_named("CHANNEL_PARK", "caller"))
    unpark = next(m for m in got if m.name == "CHANNEL_UNPARK")
    assert unpark.at - t0 >= 0.0225  # real: 22.6-23.1 ms, UNPARK ... PARK in the same ms (check9)
    assert got[-1].at - unpark.at < 0.01


def test_uuid_broadcast_stops_unicast_at_the_next_frame(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    """Real: the last caller packet 9-17 ms after uuid_broadcast, PLAYBACK_START at 202 ms; a unicast in between
    does nothing."""
    uuid, esl = outbound_call(fs, engine)
    esl.command("event plain PLAYBACK_START PLAYBACK_STOP\n\n")
    udp, _ = unicast(esl)
    assert receive(udp, 0.1)
    t0 = time.monotonic()
    assert esl.command(f"api uuid_broadcast {uuid} tone_stream://%(100,0,600) aleg\n\n").body == b"+OK Message sent\n"
    packets = receive(udp, 0.15)
    assert all(p[0] - t0 <= 0.04 for p in packets), [round(p[0] - t0, 3) for p in packets]  # none, or 1 frame
    udp2, reply = unicast(esl)
    assert reply.reply == "+OK" and fs.channel(uuid).unicast_log[-1].startswith("ignored: not in a fresh park")
    start = esl.take(event_named("PLAYBACK_START"))
    assert start.at - t0 >= 0.18 and not receive(udp2, 0.05)
    assert fs.channel(uuid).unicast_log[-2] == "stopped: broadcast"
    udp.close()
    udp2.close()


def test_a_second_unicast_keeps_the_first_stream(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    """Real: +OK both times; same ports: [CRIT] Failure creating unicast connection; other ports: nothing
    reaches them; the first stream goes on untouched."""
    uuid, esl = outbound_call(fs, engine)
    udp, _ = unicast(esl)
    assert receive(udp, 0.1)
    port = fs.channel(uuid).unicast.sock.getsockname()[1]  # type: ignore[union-attr]
    again = esl.command("\n".join(["sendmsg", "call-command: unicast", "local-ip: 127.0.0.1", f"local-port: {port}",
                                   "remote-ip: 127.0.0.1", f"remote-port: {udp.getsockname()[1]}", "transport: udp"])
                        + "\n\n")
    assert again.reply == "+OK" and "Failure creating unicast connection" in fs.channel(uuid).unicast_log[-1]
    udp2, reply = unicast(esl)
    assert reply.reply == "+OK" and fs.channel(uuid).unicast_log[-1].startswith("ignored: already streaming")
    assert len(receive(udp, 0.2)) >= 8 and not receive(udp2, 0.05)
    assert fs.channel(uuid).unicast_active
    udp.close()
    udp2.close()


def test_an_originate_to_a_routed_loopback_extension_returns_after_routing(fs: FreeSwitchDouble) -> None:
    """Real: originate loopback/7010 (its dialplan answers) → +OK at 43-45 ms (the B leg routes first)."""
    fs.route("7010", "answer,park")
    esl = inbound(fs)
    t0 = time.monotonic()
    assert esl.command("api originate {origination_uuid=agent}loopback/7010/voicebot &park()\n\n").body == \
        b"+OK agent\n"
    assert time.monotonic() - t0 >= 0.038


def test_an_originated_loopback_leg_connects_with_its_caller_id_flipped(fs: FreeSwitchDouble,
                                                                        engine: socket.socket) -> None:
    """Real (check2's CHANNEL_PARK of leg A, probe check9's connect reply): once the originate is done, leg A
    says Caller-ID "Outbound Call" / "voicebot" and the number it was given as the callee."""
    esl = inbound(fs)
    port = engine.getsockname()[1]
    esl.command(f"api originate {{origination_uuid=a1}}loopback/7001/voicebot &socket('127.0.0.1:{port} async full')\n\n")
    leg = accept(engine)
    data = leg.command("connect\n\n").headers
    assert (data["Socket-Mode"], data["Control"]) == ("async", "full")
    assert (data["Caller-Caller-ID-Name"], data["Caller-Caller-ID-Number"]) == ("Outbound%20Call", "voicebot")
    assert data["Caller-Callee-ID-Number"] == "0000000000" and "Caller-Callee-ID-Name" not in data
    assert (data["variable_channel_cid_flipped"], data["variable_loopback_leg"]) == ("yes", "A")
    leg.close()
    esl.close()
