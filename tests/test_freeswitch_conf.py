"""freeswitch_conf/: well-formed, loopback-only, and consistent with the engine and with itself.

No FreeSWITCH is needed: the files are read as XML, the dialplan is walked the way
mod_dialplan_xml hunts it (conditions, break, continue, $1), and the sipp scenario's SDP is
checked against the pcaps that freeswitch_conf/sipp/make_rtp_pcaps.py writes.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import struct
import wave
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from voicebot.audio import codecs

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "freeswitch_conf"
EVENT_SOCKET = CONF / "autoload_configs" / "event_socket.conf.xml"
DIALPLAN = CONF / "dialplan" / "voicebot.xml"
PUBLIC = CONF / "dialplan" / "public" / "voicebot.xml"
DEFAULT = CONF / "dialplan" / "default" / "voicebot.xml"
PROFILE = CONF / "sip_profiles" / "voicebot-loopback.xml"
SIPP = CONF / "sipp" / "uac_voicebot.xml"
PCAP_TOOL = CONF / "sipp" / "make_rtp_pcaps.py"
README = CONF / "README.md"
DOCS = ROOT / "docs" / "freeswitch.md"

SOCKET_DATA = "127.0.0.1:8084 async full"
G711 = {"PCMU", "PCMA"}


def _settings(root: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in root.iter("param")}


def _pcap_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_rtp_pcaps", PCAP_TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- every file


def test_the_expected_files_are_there() -> None:
    for path in (EVENT_SOCKET, DIALPLAN, PUBLIC, DEFAULT, PROFILE, SIPP, PCAP_TOOL, README, DOCS):
        assert path.is_file(), path


@pytest.mark.parametrize("path", sorted(CONF.rglob("*.xml")), ids=lambda p: str(p.relative_to(CONF)))
def test_every_xml_file_parses(path: Path) -> None:
    ET.parse(path)  # raises on anything malformed, "--" inside a comment included


def test_the_readme_names_every_file() -> None:
    readme = README.read_text(encoding="utf-8")
    files = [p for p in CONF.rglob("*") if p.is_file() and p.name not in ("README.md", ".gitignore")
             and "pcap" not in p.relative_to(CONF).parts and "__pycache__" not in p.parts]
    assert files
    missing = [str(p.relative_to(CONF)) for p in files if str(p.relative_to(CONF)) not in readme]
    assert not missing, f"freeswitch_conf/README.md does not describe {missing}"


# ---------------------------------------------------------------- event socket


def test_event_socket_listens_on_loopback_only_with_an_acl() -> None:
    root = ET.parse(EVENT_SOCKET).getroot()
    assert root.tag == "configuration" and root.get("name") == "event_socket.conf"
    settings = _settings(root)
    assert settings["listen-ip"] == "127.0.0.1"
    assert settings["listen-port"] == "8021"
    assert settings["apply-inbound-acl"] == "loopback.auto"
    assert settings.get("nat-map", "false") == "false"


def test_event_socket_password_is_not_the_default() -> None:
    password = _settings(ET.parse(EVENT_SOCKET).getroot())["password"]
    assert password.lower() != "cluecon"
    # safe in XML, in ESL's `auth <password>` line and in YAML without quoting
    assert re.fullmatch(r"[A-Za-z0-9_-]{12,}", password), password


def test_the_docs_use_the_same_password_placeholder() -> None:
    password = _settings(ET.parse(EVENT_SOCKET).getroot())["password"]
    assert password in DOCS.read_text(encoding="utf-8")
    assert password in README.read_text(encoding="utf-8")


# ---------------------------------------------------------------- dialplan


def _context(path: Path, name: str) -> ET.Element:
    found = [c for c in ET.parse(path).getroot().iter("context") if c.get("name") == name]
    assert len(found) == 1, f"{path}: context {name!r} found {len(found)} times"
    return found[0]


def _expand(text: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: variables.get(m.group(1), ""), text)


def _substitute(data: str, match: re.Match[str]) -> str:
    return re.sub(r"\$(\d)", lambda m: match.group(int(m.group(1))) or "", data)


def _parse_extension(ext: ET.Element, number: str, variables: dict[str, str]) -> tuple[bool, list[tuple[str, str]]]:
    """One extension as mod_dialplan_xml parses it: (matched, actions it added)."""
    actions: list[tuple[str, str]] = []
    proceed = False
    for cond in ext.findall("condition"):
        field = cond.get("field", "")
        value = number if field == "destination_number" else _expand(field, variables)
        match = re.search(cond.get("expression", ""), value)
        proceed = match is not None
        branch = cond.findall("action") if match else cond.findall("anti-action")
        for a in branch:
            data = a.get("data", "")
            actions.append((a.get("application", ""), _substitute(data, match) if match else data))
        brk = cond.get("break", "on-false")
        if (brk == "on-false" and not proceed) or (brk == "on-true" and proceed):
            break
    return proceed, actions


def route(number: str, variables: dict[str, str] | None = None, path: Path = DIALPLAN,
          context: str = "voicebot") -> list[tuple[str, str]]:
    """The applications a call to ``number`` runs, in order (the dialplan hunt, not the execution)."""
    variables = variables or {}
    actions: list[tuple[str, str]] = []
    for ext in _context(path, context).findall("extension"):
        matched, added = _parse_extension(ext, number, variables)
        actions += added
        if matched and ext.get("continue", "false") != "true":
            return actions
    return actions


def _before(actions: list[tuple[str, str]], app: str) -> list[tuple[str, str]]:
    apps = [a for a, _ in actions]
    assert app in apps, f"no {app} in {actions}"
    return actions[:apps.index(app)]


def _set(actions: list[tuple[str, str]]) -> dict[str, str]:
    return dict(d.split("=", 1) for a, d in actions if a == "set")


def test_7000_hands_the_call_to_the_engine_socket() -> None:
    actions = route("7000")
    sockets = [d for a, d in actions if a == "socket"]
    assert sockets == [SOCKET_DATA]


def test_7000_does_not_answer_before_the_engine_does() -> None:
    before = [a for a, _ in _before(route("7000"), "socket")]
    assert not {"answer", "pre_answer", "ring_ready", "playback", "bridge"} & set(before), before


def test_7000_sets_park_after_bridge_and_g711_before_the_socket() -> None:
    variables = _set(_before(route("7000"), "socket"))
    assert variables["park_after_bridge"] == "true"
    assert variables["hangup_after_bridge"] == "false"
    codecs_ = {c.split("@")[0].upper() for c in variables["absolute_codec_string"].split(",")}
    assert codecs_ and codecs_ <= G711


def test_7000_hangs_up_with_503_when_the_engine_is_not_there() -> None:
    after = route("7000")
    apps = [a for a, _ in after]
    tail = after[apps.index("socket") + 1:]
    assert ("hangup", "NORMAL_TEMPORARY_FAILURE") in tail


def test_sip_headers_become_flow_variables() -> None:
    actions = route("7000", {"sip_h_X-Campaign": "spring", "sip_h_X-Customer-Name": "Alex"})
    variables = _set(_before(actions, "socket"))
    assert variables["vb_var_campaign"] == "spring"
    assert variables["vb_var_customer_name"] == "Alex"
    assert "vb_var_campaign" not in _set(route("7000"))  # no header, no variable (and no empty one)


def test_7100_sets_test_variables_then_runs_the_bot() -> None:
    actions = route("7100")
    before = _before(actions, "socket")
    variables = _set(before)
    assert variables["vb_var_customer_name"] == "Alex"
    assert variables["park_after_bridge"] == "true"
    assert [d for a, d in actions if a == "socket"] == [SOCKET_DATA]


def test_every_socket_action_points_at_the_engine() -> None:
    datas = [a.get("data") for p in CONF.rglob("*.xml") for a in ET.parse(p).getroot().iter("action")
             if a.get("application") == "socket"]
    assert datas and all(d == SOCKET_DATA for d in datas), datas


@pytest.mark.parametrize(("number", "expected"), [
    ("7001", ["answer", "park"]),
    ("7002", ["ring_ready", "park"]),
    ("7011", ["answer", "park"]),
    ("7010", ["set", "answer", "playback"]),
])
def test_test_phones(number: str, expected: list[str]) -> None:
    apps = [a for a, _ in route(number)]
    assert apps == expected
    assert "socket" not in apps


def test_test_phones_record_only_when_asked() -> None:
    actions = route("7011", {"vb_rec": "/tmp/heard.wav"})
    assert ("record_session", "/tmp/heard.wav") in actions
    assert [a for a, _ in actions] == ["answer", "set", "record_session", "park"]
    assert _set(actions)["RECORD_READ_ONLY"] == "true"


def test_an_unknown_number_is_refused() -> None:
    actions = route("7999")
    assert ("hangup", "UNALLOCATED_NUMBER") in actions
    assert "socket" not in [a for a, _ in actions]


@pytest.mark.parametrize(("path", "context", "number"), [(PUBLIC, "public", "CHANGE-ME-DID"), (DEFAULT, "default", "7000")])
def test_the_snippets_transfer_into_the_voicebot_context(path: Path, context: str, number: str) -> None:
    root = ET.parse(path).getroot()
    assert root.tag == "include" and root.find("context") is None  # an include for another context
    wrapped = ET.Element("include")
    ctx = ET.SubElement(wrapped, "context", {"name": context})
    ctx.extend(root.findall("extension"))
    actions = []
    for ext in ctx.findall("extension"):
        matched, added = _parse_extension(ext, number, {})
        actions += added
        if matched:
            break
    transfers = [d for a, d in actions if a == "transfer"]
    assert transfers == ["7000 XML voicebot"]
    target, _, target_context = transfers[0].split()
    assert [d for a, d in route(target, context=target_context) if a == "socket"] == [SOCKET_DATA]
    assert "answer" not in [a for a, _ in actions]


def test_the_did_placeholder_matches_no_real_number() -> None:
    ext = ET.parse(PUBLIC).getroot().find("extension")
    assert ext is not None
    assert _parse_extension(ext, "15551230000", {})[0] is False


# ---------------------------------------------------------------- SIP test profile


def test_the_test_profile_binds_loopback_only() -> None:
    root = ET.parse(PROFILE).getroot()
    assert root.tag == "profile" and root.get("name") == "voicebot-loopback"
    s = _settings(root)
    for name in ("sip-ip", "rtp-ip", "ext-sip-ip", "ext-rtp-ip"):
        assert s[name] == "127.0.0.1", name
    assert s["sip-port"] == "5090"
    assert s["apply-inbound-acl"] == "loopback.auto"
    assert s["auth-calls"] == "false"
    # no STUN, no address guessing, no NAT rewriting
    assert not [v for v in s.values() if v.startswith(("stun:", "autonat:", "host:")) or v in ("auto", "auto-nat")]
    assert "apply-nat-acl" not in s


def test_the_test_profile_sends_calls_to_the_voicebot_context_in_g711() -> None:
    s = _settings(ET.parse(PROFILE).getroot())
    assert s["context"] == "voicebot" and s["dialplan"] == "XML"
    _context(DIALPLAN, s["context"])
    for name in ("inbound-codec-prefs", "outbound-codec-prefs"):
        assert {c.split("@")[0].upper() for c in s[name].split(",")} <= G711
    assert int(s["rtp-timeout-sec"]) > 0
    assert s["inbound-late-negotiation"] == "true"  # so the dialplan's absolute_codec_string counts
    assert s["rfc2833-pt"] == "101"


def test_the_test_profile_carries_the_testing_only_warning() -> None:
    text = PROFILE.read_text(encoding="utf-8")
    assert "FOR TESTING ONLY" in text


# ---------------------------------------------------------------- sipp


def _sip_messages() -> list[str]:
    root = ET.parse(SIPP).getroot()
    return [(s.text or "").strip() for s in root.iter("send")]


def _invite() -> tuple[list[str], list[str]]:
    invite = next(m for m in _sip_messages() if m.startswith("INVITE "))
    lines = [line.strip() for line in invite.splitlines()]
    blank = lines.index("")
    return lines[:blank], lines[blank + 1:]


def _sdp_payloads() -> tuple[list[int], dict[int, str], list[str]]:
    _, sdp = _invite()
    media = next(line for line in sdp if line.startswith("m=audio "))
    payloads = [int(p) for p in media.split()[3:]]
    rtpmap = {int(m.group(1)): m.group(2) for line in sdp if (m := re.match(r"a=rtpmap:(\d+) ([^/]+)/", line))}
    return payloads, rtpmap, sdp


def test_the_sipp_invite_calls_7000() -> None:
    headers, _ = _invite()
    assert headers[0].startswith("INVITE sip:7000@[remote_ip]:[remote_port] ")
    assert "Content-Length: [len]" in headers
    assert any(h.lower().startswith("x-vb-") for h in headers)  # exercises the header -> flow variable mapping


def test_the_sipp_sdp_says_ptime_20_and_offers_only_g711() -> None:
    payloads, rtpmap, sdp = _sdp_payloads()
    assert "a=ptime:20" in sdp
    assert set(payloads) <= set(rtpmap), "every payload type needs an rtpmap"
    audio = [rtpmap[p].upper() for p in payloads if rtpmap[p].lower() != "telephone-event"]
    assert audio and set(audio) <= G711
    assert "telephone-event" in [rtpmap[p].lower() for p in payloads]


def test_the_sipp_scenario_plays_the_pcaps_the_tool_writes() -> None:
    tool = _pcap_tool()
    played = [e.get("play_pcap_audio") for e in ET.parse(SIPP).getroot().iter("exec") if e.get("play_pcap_audio")]
    assert played == [f"pcap/{tool.AUDIO_FILE}", f"pcap/{tool.DTMF_FILE.format(digit='1')}"]


def _read_pcap(path: Path) -> list[tuple[float, bytes]]:
    data = path.read_bytes()
    magic, _, _, _, _, _, link = struct.unpack("<IHHiIII", data[:24])
    assert magic == 0xA1B2C3D4 and link == 1  # microsecond pcap, Ethernet: what sipp's prepare_pcap accepts
    out, off = [], 24
    while off < len(data):
        sec, usec, incl, orig = struct.unpack("<IIII", data[off:off + 16])
        assert incl == orig
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        assert frame[12:14] == b"\x08\x00"  # IPv4
        ip = frame[14:]
        assert ip[9] == 17  # UDP
        udp = ip[(ip[0] & 0x0F) * 4:]
        length = struct.unpack("!H", udp[4:6])[0]
        out.append((sec + usec / 1e6, udp[8:length]))
    return out


def _rtp(packet: bytes) -> dict[str, Any]:
    b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", packet[:12])
    assert b0 >> 6 == 2
    return {"pt": b1 & 0x7F, "marker": bool(b1 & 0x80), "seq": seq, "ts": ts, "ssrc": ssrc, "payload": packet[12:]}


def test_the_audio_pcap_matches_the_sdp(tmp_path: Path) -> None:
    tool = _pcap_tool()
    assert tool.main(["--out-dir", str(tmp_path), "--seconds", "2"]) == 0
    payloads, rtpmap, _ = _sdp_payloads()
    audio_pt = next(p for p in payloads if rtpmap[p].lower() != "telephone-event")
    packets = _read_pcap(tmp_path / tool.AUDIO_FILE)
    assert len(packets) == 100  # 2 s of 20 ms packets
    rtps = [_rtp(p) for _, p in packets]
    assert {r["pt"] for r in rtps} == {audio_pt}
    assert {len(r["payload"]) for r in rtps} == {160}  # 20 ms of 8 kHz G.711 = a=ptime:20
    times = [t for t, _ in packets]
    assert all(abs((b - a) - 0.020) < 1e-6 for a, b in itertools.pairwise(times))
    assert all(b["seq"] == a["seq"] + 1 and b["ts"] == a["ts"] + 160 for a, b in itertools.pairwise(rtps))
    assert rtps[0]["marker"] and not any(r["marker"] for r in rtps[1:])


def test_the_dtmf_pcap_matches_the_sdp(tmp_path: Path) -> None:
    tool = _pcap_tool()
    tool.main(["--out-dir", str(tmp_path), "--seconds", "1"])
    payloads, rtpmap, sdp = _sdp_payloads()
    event_pt = next(p for p in payloads if rtpmap[p].lower() == "telephone-event")
    rtps = [_rtp(p) for _, p in _read_pcap(tmp_path / tool.DTMF_FILE.format(digit="1"))]
    assert {r["pt"] for r in rtps} == {event_pt}
    events = [struct.unpack("!BBH", r["payload"]) for r in rtps]
    assert {e[0] for e in events} == {1}  # digit 1
    assert [bool(e[1] & 0x80) for e in events][-3:] == [True, True, True]  # end packets
    assert not any(e[1] & 0x80 for e in events[:-3])
    assert len({r["ts"] for r in rtps}) == 1  # one event, one timestamp
    fmtp = next(line for line in sdp if line.startswith(f"a=fmtp:{event_pt} "))
    assert re.search(r"\b0-1[1-6]\b", fmtp)  # digits 0-9 offered


def test_the_pcap_tool_can_reproduce_the_ptime_trap(tmp_path: Path) -> None:
    tool = _pcap_tool()
    tool.main(["--out-dir", str(tmp_path), "--seconds", "1", "--ptime", "30", "--codec", "pcma"])
    rtps = [_rtp(p) for _, p in _read_pcap(tmp_path / tool.AUDIO_FILE)]
    assert {len(r["payload"]) for r in rtps} == {240} and {r["pt"] for r in rtps} == {8}


def test_the_pcap_tool_speaks_a_wav(tmp_path: Path) -> None:
    wav = tmp_path / "caller.wav"
    samples = [int(8000 * ((i // 20) % 2 * 2 - 1)) for i in range(8000)]  # 1 s square wave
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(struct.pack(f"<{len(samples)}h", *samples))
    tool = _pcap_tool()
    tool.main(["--out-dir", str(tmp_path), "--wav", str(wav)])
    payload = b"".join(_rtp(p)["payload"] for _, p in _read_pcap(tmp_path / tool.AUDIO_FILE))
    assert payload == codecs.linear_to_ulaw(struct.pack(f"<{len(samples)}h", *samples))


def test_the_pcap_tool_encodes_g711_like_the_engine() -> None:
    tool = _pcap_tool()
    every = list(range(-32768, 32768))
    pcm = struct.pack(f"<{len(every)}h", *every)
    assert tool.encode(every, "pcmu") == codecs.linear_to_ulaw(pcm)
    assert tool.encode(every, "pcma") == codecs.linear_to_alaw(pcm)
