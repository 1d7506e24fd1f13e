"""ESL parsing and formatting, byte for byte against the FreeSWITCH 1.11.1 captures (tests/fixtures/esl)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicebot.esl.protocol import (
    EslMessage,
    EslParser,
    EslProtocolError,
    channel_media,
    format_api_response,
    format_channel_data,
    format_command,
    format_disconnect_notice,
    format_event,
    format_execute,
    format_hangup,
    format_linger_notice,
    format_reply,
    format_sendmsg,
    format_unicast,
    media_format,
    parse_event,
    parse_header_block,
    parse_messages,
    url_decode,
    url_encode,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "esl"  # described in its README.txt
RECV = sorted(FIXTURES.glob("*.recv.raw.txt"))
SENT = sorted(FIXTURES.glob("*.sent.raw.txt"))
CAPTURES = 49  # ESL captures (each a .recv, .sent and .transcript file) checked in under tests/fixtures/esl


def test_the_captures_are_in_the_repository() -> None:
    """Missing captures fail here (the parametrized tests below would otherwise run on nothing)."""
    assert (FIXTURES / "README.txt").is_file(), f"the ESL captures are missing: {FIXTURES}"
    assert len(RECV) == len(SENT) == CAPTURES, (len(RECV), len(SENT))
    assert len(sorted(FIXTURES.glob("*.transcript.txt"))) == CAPTURES
    assert len(sorted(FIXTURES.glob("*_udp_packets.txt"))) == 5


def recv(name: str) -> bytes:
    return (FIXTURES / f"{name}.recv.raw.txt").read_bytes()


def sent(name: str) -> bytes:
    return (FIXTURES / f"{name}.sent.raw.txt").read_bytes()


def events(name: str) -> list:
    return [parse_event(m) for m in parse_messages(recv(name)) if m.is_event]


def raw_bytes(message: EslMessage) -> bytes:
    """A parsed message written back as it came (header lines, blank line, body)."""
    return ("\n".join(f"{k}: {v}" for k, v in message.headers) + "\n\n").encode() + message.body


# ------------------------------------------------------------------ every capture, every split


@pytest.mark.parametrize("path", RECV, ids=lambda p: p.name.removesuffix(".recv.raw.txt"))
def test_whole_stream_parses_and_rebuilds_byte_for_byte(path: Path) -> None:
    data = path.read_bytes()
    messages = parse_messages(data)
    # independent count: every ESL message carries exactly one Content-Type (bodies never do)
    assert len(messages) == data.count(b"Content-Type: ")
    assert b"".join(raw_bytes(m) for m in messages) == data
    assert all(m.content_type for m in messages)


@pytest.mark.parametrize("path", RECV, ids=lambda p: p.name.removesuffix(".recv.raw.txt"))
def test_one_byte_at_a_time_gives_the_same_messages(path: Path) -> None:
    data = path.read_bytes()
    parser = EslParser()
    out: list[EslMessage] = []
    for i in range(len(data)):
        out += parser.feed(data[i:i + 1])
    assert out == parse_messages(data)
    assert parser.buffered == 0
    parser.feed_eof()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(RECV), cuts=st.lists(st.floats(0, 1), max_size=40))
def test_random_splits_give_the_same_messages(path: Path, cuts: list[float]) -> None:
    data = path.read_bytes()
    points = sorted({int(c * len(data)) for c in cuts} | {0, len(data)})
    parser = EslParser()
    out: list[EslMessage] = []
    for lo, hi in itertools.pairwise(points):
        out += parser.feed(data[lo:hi])
    assert out == parse_messages(data)


def test_several_messages_in_one_read_and_a_split_inside_a_header_line() -> None:
    data = recv("check3_outbound_plain_inbound_side")
    cut = data.index(b"Job-UUID: ") + 4  # inside a header name
    parser = EslParser()
    first = parser.feed(data[:cut])
    assert [m.content_type for m in first] == ["auth/request", "command/reply", "command/reply"]
    rest = parser.feed(data[cut:])
    assert [m.content_type for m in rest] == ["command/reply", "text/event-plain"]


# ------------------------------------------------------------------ key headers


def test_outbound_connect_reply_is_channel_data_without_content_length() -> None:
    messages = parse_messages(recv("check3_outbound_plain_socket_side"))
    connect = messages[0]
    assert connect.is_channel_data and connect.content_type == "command/reply"
    assert connect.get("Reply-Text") == "%2BOK%0A" and connect.reply_text == "+OK\n" and connect.ok
    assert connect.get("Content-Length") is None and connect.body == b""
    assert connect.headers[0] == ("Event-Name", "CHANNEL_DATA")
    assert connect.headers[-4:] == (("Content-Type", "command/reply"), ("Reply-Text", "%2BOK%0A"),
                                    ("Socket-Mode", "async"), ("Control", "full"))
    assert connect.get("Unique-ID") == "dd362530-e0e5-48a2-8398-914e814371e0"
    assert connect.get("unique-id") == connect.get("Unique-ID")  # lookups ignore case, as FreeSWITCH does
    assert len(connect.headers) > 100
    data = parse_event(connect)
    assert data.name == "CHANNEL_DATA" and data.get("Channel-Caller-ID-Number") == "0000000000"
    assert data.get("variable_current_application_data") == "127.0.0.1:8084 async full"


def test_outbound_socket_replies_and_event_order() -> None:
    messages = parse_messages(recv("check3_outbound_plain_socket_side"))
    replies = [m.reply_text for m in messages if m.content_type == "command/reply"][1:]
    assert replies == ["+OK Events Enabled", "+OK event listener enabled plain", "+OK will linger",
                       "+OK", "+OK", "+OK"]
    names = [parse_event(m).name for m in messages if m.is_event]
    assert names == ["CHANNEL_PARK", "CHANNEL_EXECUTE", "CHANNEL_ANSWER", "CHANNEL_EXECUTE_COMPLETE",
                     "CHANNEL_EXECUTE", "PLAYBACK_START", "PLAYBACK_STOP", "CHANNEL_EXECUTE_COMPLETE",
                     "CHANNEL_HANGUP", "CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_STATE",
                     "CHANNEL_STATE", "CHANNEL_HANGUP_COMPLETE"]
    answer = [parse_event(m) for m in messages if m.is_event][1]
    assert answer.get("Application-UUID") == "23e74178-5cd9-4a31-baba-51e1aa3e4264"  # our Event-UUID
    assert b"Event-UUID: 23e74178-5cd9-4a31-baba-51e1aa3e4264" in sent("check3_outbound_plain_socket_side")
    linger = messages[-1]
    assert linger.content_type == "text/disconnect-notice"
    assert linger.get("Content-Disposition") == "linger" and linger.get("Linger-Time") == "-1"
    assert linger.get("Channel-Name") == "loopback/7000-b"  # not URL-encoded in the notice


def test_linger_then_goodbye_notice() -> None:
    messages = parse_messages(recv("check5_sipp_gen20_plain_socket_side"))
    linger, goodbye = messages[-2:]
    assert linger.get("Linger-Time") == "5" and linger.get("Channel-Name") == "sofia/internal/sipp@127.0.0.1:5070"
    assert goodbye.get("Content-Disposition") == "disconnect"
    assert goodbye.body == b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
    assert format_disconnect_notice(goodbye.get("Controlled-Session-UUID")) == raw_bytes(goodbye)
    assert format_linger_notice(linger.get("Controlled-Session-UUID") or "", "sofia/internal/sipp@127.0.0.1:5070",
                                5) == raw_bytes(linger)


def test_bgapi_job_uuid_and_background_job_body() -> None:
    messages = parse_messages(recv("check3_outbound_plain_inbound_side"))
    reply = messages[3]
    job = "97e08f51-f160-43be-9d01-de4f14d56ca0"
    assert reply.reply_text == f"+OK Job-UUID: {job}" and reply.get("Job-UUID") == job
    assert raw_bytes(reply) == format_reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)])
    event = parse_event(messages[4])
    assert event.name == "BACKGROUND_JOB" and event.get("Job-UUID") == job
    assert event.body == b"+OK b4db8ae4-1dab-44a2-9b43-51ccf8de723f\n" and event.get("Content-Length") == "41"
    assert event.get("Job-Command-Arg") == "{origination_uuid=b4db8ae4-1dab-44a2-9b43-51ccf8de723f}loopback/7000/voicebot &park"
    assert event.unique_id == ""


def test_api_responses_with_and_without_trailing_newline() -> None:
    bodies = [m.body for m in parse_messages(recv("check4_unicast_pcmu_8k_plain")) if m.content_type == "api/response"]
    assert bodies[:3] == [b"+OK", b"+OK 8764481f-a4fe-4e92-9257-760763b1f782\n", b"+OK"]
    assert b"PCMU" in bodies and b"8000" in bodies
    assert format_api_response(b"fb8be8e3-ed77-413e-b34a-8e50d26d6f4b") == \
        b"Content-Type: api/response\nContent-Length: 36\n\nfb8be8e3-ed77-413e-b34a-8e50d26d6f4b"


def test_dtmf_digits_are_url_decoded() -> None:
    digits = [e.get("DTMF-Digit") for e in events("check7_media_plain") if e.name == "DTMF"]
    assert digits == ["1", "2", "3", "4", "5", "6", "#"]  # '#' is %23 on the wire
    assert b"DTMF-Digit: %23" in recv("check7_media_plain")


# ------------------------------------------------------------------ plain vs json


@pytest.mark.parametrize("pair", [("check3_outbound_plain_socket_side", "check3_outbound_json_socket_side"),
                                  ("check3_outbound_plain_inbound_side", "check3_outbound_json_inbound_side")])
def test_plain_and_json_events_carry_the_same_data(pair: tuple[str, str]) -> None:
    plain, js = (events(name) for name in pair)
    assert [e.name for e in plain] == [e.name for e in js]
    stable = ("Answer-State", "Application", "Application-Response", "Channel-Name", "Channel-State",
              "Channel-Read-Codec-Name", "Channel-Read-Codec-Rate", "Event-Calling-Function", "Playback-Status",
              "Playback-File-Path", "Hangup-Cause", "DTMF-Digit", "Caller-Callee-ID-Name", "Job-Command")
    for p, j in zip(plain, js, strict=True):
        assert set(p.headers) == set(j.headers), p.name
        for key in stable:
            assert p.get(key) == j.get(key), (p.name, key)
        assert p.get("FreeSWITCH-IPv6") == j.get("FreeSWITCH-IPv6") == "fd00::2"  # decoded in plain, raw in json
        assert bool(p.body) == bool(j.body) and len(p.body) == len(j.body)


# ------------------------------------------------------------------ FreeSWITCH's own encoding, reproduced


@pytest.mark.parametrize("path", RECV, ids=lambda p: p.name.removesuffix(".recv.raw.txt"))
def test_events_re_encode_byte_for_byte(path: Path) -> None:
    """url_encode and the serializers match switch_event_serialize(_json) on every captured event."""
    checked = 0
    for message in parse_messages(path.read_bytes()):
        if message.content_type == "text/event-plain":
            event = parse_event(message)
            end = message.body.find(b"\n\n")
            pairs = [(k, url_decode(v)) for k, v in parse_header_block(message.body[:end])]
            pairs = [p for p in pairs if not (event.body and p[0] == "Content-Length")]
            assert format_event(pairs, event.body, "plain") == raw_bytes(message)
            checked += 1
        elif message.content_type == "text/event-json":
            items = json.loads(message.body, object_pairs_hook=lambda x: x)
            if any(not isinstance(v, str) for _, v in items):
                continue  # FreeSWITCH writes repeated variables as JSON arrays
            body = dict(items).get("_body", "").encode()
            pairs = [(k, v) for k, v in items if k != "_body" and not (body and k == "Content-Length")]
            assert format_event(pairs, body, "json") == raw_bytes(message)
            checked += 1
        elif message.is_channel_data:
            pairs = [(k, url_decode(v)) for k, v in message.headers][:-4]
            assert format_channel_data(pairs) == raw_bytes(message)
    assert checked or "inbound_side" in path.name or "4b_" in path.name


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9_\-]{0,20}", fullmatch=True),
                       st.text(max_size=40), max_size=8),
       st.binary(max_size=64), st.sampled_from(["plain", "json"]))
def test_any_event_round_trips(headers: dict[str, str], body: bytes, fmt: str) -> None:
    headers = {"Event-Name": "CUSTOM", **{k: v for k, v in headers.items() if k.lower() != "content-length"}}
    body = body.decode("utf-8", "replace").encode()
    [message] = parse_messages(format_event(list(headers.items()), body, fmt))
    event = parse_event(message)
    assert event.name == "CUSTOM" and event.body == body
    assert {k: v for k, v in event.headers.items() if k != "Content-Length"} == headers


@given(st.text())
def test_url_encode_round_trips(value: str) -> None:
    encoded = url_encode(value)
    assert "\n" not in encoded and " " not in encoded
    assert url_decode(encoded) == value


def test_url_encode_matches_freeswitch_samples() -> None:
    assert url_encode("tone_stream://%(300,100,800);loops=2") == "tone_stream%3A//%25(300,100,800)%3Bloops%3D2"
    assert url_encode("+OK\n") == "%2BOK%0A"
    assert url_encode("Mon, 23 Nov 2026 11:16:50 GMT") == "Mon,%2023%20Nov%202026%2011%3A16%3A50%20GMT"
    assert url_encode("sipp@127.0.0.1") == "sipp%40127.0.0.1"


# ------------------------------------------------------------------ what we send


def commands_of(data: bytes) -> list[bytes]:
    return [c + b"\n\n" for c in data.split(b"\n\n") if c]


def reformat(command: bytes) -> bytes:
    """Rebuild one captured command with our formatters."""
    line, *rest = command[:-2].decode().split("\n")
    headers = dict(h.split(": ", 1) for h in rest)
    if line.startswith("sendmsg"):
        uuid = line[8:] or None
        call = headers.pop("call-command")
        if call == "unicast":
            return format_unicast(uuid, local_ip=headers["local-ip"], local_port=int(headers["local-port"]),
                                  remote_ip=headers["remote-ip"], remote_port=int(headers["remote-port"]),
                                  transport=headers["transport"], native=headers.get("flags") == "native") \
                if next(iter(headers)) == "local-ip" else format_sendmsg(uuid, call, headers)
        if call == "hangup":
            return format_hangup(uuid, headers["hangup-cause"])
        return format_execute(uuid, headers["execute-app-name"], headers.get("execute-app-arg"),
                              event_uuid=headers.get("Event-UUID"), event_lock=headers.get("event-lock") == "true")
    return format_command(line, headers)


@pytest.mark.parametrize("path", SENT, ids=lambda p: p.name.removesuffix(".sent.raw.txt"))
def test_formatting_reproduces_every_sent_stream(path: Path) -> None:
    data = path.read_bytes()
    commands = commands_of(data)
    assert b"".join(reformat(c) for c in commands) == data


def test_formatting_matches_captured_commands_exactly() -> None:
    socket_side = sent("check3_outbound_plain_socket_side")
    assert format_command("connect") == b"connect\n\n" and socket_side.startswith(b"connect\n\nmyevents\n\n")
    assert format_execute(None, "answer", event_uuid="23e74178-5cd9-4a31-baba-51e1aa3e4264") in socket_side
    assert format_execute(None, "playback", "tone_stream://%(300,100,800);loops=2", event_lock=True) in socket_side
    assert format_hangup(None) in socket_side
    assert format_command("api uuid_dump dd362530-e0e5-48a2-8398-914e814371e0") in socket_side
    native = format_unicast("2c8c671b-4e98-42d7-b8f4-41a9ec76b062", local_ip="127.0.0.1", local_port=41000,
                            remote_ip="127.0.0.1", remote_port=41002, native=True)
    assert native in sent("check4_unicast_pcmu_8k_native_plain")
    assert format_command("auth ClueCon") == b"auth ClueCon\n\n"


def test_formatting_refuses_injected_newlines() -> None:
    with pytest.raises(ValueError, match="newline"):
        format_command("api status\n\napi shutdown")
    with pytest.raises(ValueError, match="newline"):
        format_execute(None, "playback", "x.wav\n\nsendmsg")
    assert format_command("sendevent CUSTOM", body=b"hello") == b"sendevent CUSTOM\nContent-Length: 5\n\nhello"


# ------------------------------------------------------------------ media format from channel data


def first_event(name: str, event_name: str, last: bool = False):
    found = [e for e in events(name) if e.name == event_name]
    if not found and event_name == "CHANNEL_DATA":
        return parse_event(parse_messages(recv(name))[0])
    return found[-1] if last else found[0]


@pytest.mark.parametrize(("capture", "event", "native", "expected"), [
    ("check4_unicast_pcmu_8k_plain", "CHANNEL_ANSWER", False, ("PCMU", 8000, 20, 320)),
    ("check4_unicast_pcmu_8k_json", "CHANNEL_ANSWER", False, ("PCMU", 8000, 20, 320)),
    ("check4_unicast_pcmu_8k_native_plain", "CHANNEL_ANSWER", True, ("PCMU", 8000, 20, 160)),
    ("check4_unicast_l16_8k_plain", "CHANNEL_ANSWER", False, ("L16", 8000, 20, 320)),
    ("check4_unicast_l16_16k_plain", "CHANNEL_ANSWER", False, ("L16", 16000, 20, 640)),
    ("check4_unicast_l16_16k_native_plain", "CHANNEL_ANSWER", True, ("L16", 16000, 20, 640)),
    ("check5_sipp_gen20_plain_socket_side", "CHANNEL_ANSWER", False, ("PCMA", 8000, 20, 320)),
    ("check5_sipp_ptime30_plain_socket_side", "CHANNEL_ANSWER", False, ("PCMA", 8000, 30, 480)),
    ("check5_sipp_ptime30_plain_socket_side", "CHANNEL_DATA", False, ("PCMA", 8000, 30, 480)),
    ("check4c_unicast_before_answer_sipp_socket_side", "CHANNEL_DATA", True, ("PCMA", 8000, 20, 160)),
    ("check3_outbound_plain_socket_side", "CHANNEL_DATA", False, ("L16", 8000, 20, 320)),
])
def test_channel_media_from_captured_channel_data(capture: str, event: str, native: bool,
                                                  expected: tuple[str, int, int, int]) -> None:
    media = channel_media(first_event(capture, event).headers, native=native)
    assert (media.codec, media.rate, media.ptime_ms, media.frame_bytes) == expected
    assert media.samples_per_frame == expected[1] * expected[2] // 1000


def test_channel_media_follows_a_ptime_change() -> None:
    """sipp's built-in pcap: the SDP says 20 ms, RTP comes at 30: FreeSWITCH switches mid-call."""
    answer = first_event("check5_sipp_builtin_plain_socket_side", "CHANNEL_ANSWER")
    after = first_event("check5_sipp_builtin_plain_socket_side", "CHANNEL_HANGUP_COMPLETE")
    assert channel_media(answer.headers).frame_bytes == 320
    assert channel_media(after.headers).frame_bytes == 480
    assert after.get("variable_rtp_h_X-Broken-PTIME") == "Adv=20;Sent=30"


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*_udp_packets.txt")), ids=lambda p: p.name[:-16])
def test_channel_media_predicts_the_captured_datagram_sizes(path: Path) -> None:
    text = path.read_text()
    stats = json.loads(re.search(r"^# stats: (\{.*\})$", text, re.M)[1])  # type: ignore[index]
    native = "'flags': 'native'" in text
    capture = path.name.replace("_udp_packets.txt", "_native_plain" if native else "_plain")
    capture = capture.replace("_native_native", "_native")
    media = channel_media(first_event(capture, "CHANNEL_ANSWER").headers, native=native)
    assert stats["sizes"] == [media.frame_bytes]
    sizes = {len(bytes.fromhex(line.split()[-1])) for line in text.splitlines() if line.startswith(("FS->PY", "PY->FS"))}
    assert sizes == {media.frame_bytes}
    assert media.wire_codec == ("PCMU" if native and media.codec == "PCMU" else "L16")


def test_channel_media_errors() -> None:
    with pytest.raises(ValueError, match="no usable read codec"):
        channel_media({"Unique-ID": "x"})
    with pytest.raises(ValueError, match="native"):
        media_format("OPUS", 48000, 20, native=True)
    assert media_format("G722", 16000, 20).frame_bytes == 640  # non-native: s16le at the read rate


# ------------------------------------------------------------------ garbage and limits


@pytest.mark.parametrize("garbage", [b"HTTP/1.1 400 Bad Request\r\n", b"\x16\x03\x01\x02\x00",
                                     b"hello world\n\n", b"Content-Type: api/response\nno colon here\n",
                                     b"Content-Length: ten\n\n", b": empty name\n\n"])
def test_garbage_raises_a_clear_error(garbage: bytes) -> None:
    parser = EslParser()
    with pytest.raises(EslProtocolError) as info:
        parser.feed(garbage)
    assert info.value.seen  # says what it saw
    with pytest.raises(EslProtocolError):  # and stays failed
        parser.feed(b"Content-Type: auth/request\n\n")


def test_messages_before_garbage_are_kept_on_the_error() -> None:
    parser = EslParser()
    with pytest.raises(EslProtocolError) as info:
        parser.feed(b"Content-Type: auth/request\n\n\x00garbage")
    assert [m.content_type for m in info.value.messages] == ["auth/request"]  # type: ignore[attr-defined]


def test_oversized_header_block_and_body_raise() -> None:
    with pytest.raises(EslProtocolError, match="header block over 1024"):
        EslParser(max_header_bytes=1024).feed(b"X-Long: " + b"a" * 2000)
    with pytest.raises(EslProtocolError, match="header block over"):
        parser = EslParser(max_header_bytes=4096)
        for _ in range(1000):  # many small lines, never a blank one
            parser.feed(b"X-Header: value\n")
    with pytest.raises(EslProtocolError, match="over the limit"):
        EslParser(max_body_bytes=1 << 20).feed(b"Content-Type: api/response\nContent-Length: 2097152\n\n")
    big = recv("check4_unicast_behaviour_plain")
    assert len(parse_messages(big, max_header_bytes=8192, max_body_bytes=16384)) == 67


def test_eof_inside_a_message_and_non_events() -> None:
    parser = EslParser()
    parser.feed(b"Content-Type: api/response\nContent-Length: 10\n\n+OK")
    with pytest.raises(EslProtocolError, match="closed inside a message"):
        parser.feed_eof()
    with pytest.raises(EslProtocolError, match="not an event"):
        parse_event(EslMessage((("Content-Type", "api/response"),), b"+OK"))
    with pytest.raises(EslProtocolError, match="not JSON"):
        parse_event(EslMessage((("Content-Type", "text/event-json"),), b"{broken"))
    with pytest.raises(EslProtocolError, match="shorter than its Content-Length"):
        parse_event(EslMessage((("Content-Type", "text/event-plain"),), b"Event-Name: X\nContent-Length: 9\n\nab"))
