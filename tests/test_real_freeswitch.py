"""The engine end to end against a real FreeSWITCH: calls, DTMF, records, a handoff in each mode, a re-arm.

Runs only when ``VOICEBOT_TEST_ESL=host:port[:password]`` is set (the password
defaults to ``ClueCon``), e.g.::

    VOICEBOT_TEST_ESL=127.0.0.1:8021:CHANGE-ME-voicebot-esl .venv/bin/python -m pytest tests/test_real_freeswitch.py

What the FreeSWITCH needs (see freeswitch_conf/README.md):

- ``freeswitch_conf/`` installed and loaded: the inbound ESL of
  ``autoload_configs/event_socket.conf.xml`` (the host, port and password given
  above) and the ``voicebot`` dialplan context of ``dialplan/voicebot.xml``, whose
  extension 7001 answers and parks (the simulated caller's phone) and extension
  7010 answers and plays a 1 kHz tone (the test agent). ``reloadxml`` after copying.
- Loopback legs on G.711: the global ``loopback_initial_codec=PCMU@8000h@20i``
  (freeswitch_conf/README.md). The handoff tests eavesdrop on a loopback leg, which
  is only safe on G.711; on L16 they fail at once with that advice (they do not run).
- FreeSWITCH on this machine: the test runs the engine here, and FreeSWITCH must
  reach the engine's outbound socket on 127.0.0.1 (a free port the test picks,
  passed in the originate's ``&socket('127.0.0.1:PORT async full')``), and the
  unicast media on 127.0.0.1 UDP ports 43600-43699 (free on this machine).
- Nothing else on the box using loopback extensions 7001 and 7010 while the tests run.

The call is the one ``voicebot call`` places (:func:`voicebot.engine.place_test_call`):
``originate {origination_uuid=...,vb_var_customer_name=Dana}loopback/7001/voicebot
&socket(...)``. The test watches the originate's A leg start its socket app on
an ESL connection of its own, waits for the greeting to play, sends
``uuid_recv_dtmf <uuid> 2`` (the caller presses 2: wrong person) and expects the
bot to say goodbye and hang up, with the ``wrong_person`` disposition in the
summary and in the call's record.

The second test is ``voicebot call 7000 --caller examples/callers/demo_en.yaml``
(:func:`voicebot.esl.testcall.run_caller_call`): ``originate {...}loopback/7000/voicebot
&park()``; leg B runs the dialplan's extension 7000 (``socket 127.0.0.1:8084 async
full``) into an engine this test starts on that port, so nothing else may listen on
127.0.0.1:8084 meanwhile (``VOICEBOT_TEST_ENGINE_PORT`` names another port if your
dialplan points elsewhere); leg A plays the caller script and records the bot
(unicast on 127.0.0.1 UDP ports 43600-43699 too).

The last four put an ear on the caller's phone (unicast on leg B of the 7001 call,
tests/real_freeswitch_support.py) and tell frame by frame what the caller hears:
the bot (speech), the agent (7010's 1 kHz tone) or a broadcast tone. They cover
a talk-mode handoff (the agent leg eavesdrops; the engine sends eavesdrop's talk
key 2 after the whisper), an agent taking over with 2 while the bot speaks, a
bridge-mode handoff (``uuid_bridge``; the agent hangs up, ``park_after_bridge``
parks the caller and the engine re-arms unicast), and a re-arm after a media app
(``uuid_broadcast`` of a tone tears unicast down; the engine sees the stall,
``uuid_transfer ... park inline``, unicast again). Each waits on events or frames,
and prints its figures (``-s``).

The last one is a campaign dial (:class:`voicebot.esl.dialer.Dialer`, as ``voicebot serve`` dials a lead) to
extension 7001 with answering-machine detection and ``leave_message``: the silent callee is taken for a machine
and gets the message with the lead's name in it.
"""

from __future__ import annotations

import os
import socket
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gevent
import numpy as np
import pytest

from tests.real_freeswitch_support import EventLog, free_port, loopback_call, wait
from voicebot.config import EngineConfig, HandoffConfig
from voicebot.engine import Engine
from voicebot.esl.connection import InboundConnection
from voicebot.esl.protocol import EslEvent
from voicebot.esl.testcall import CallOptions, caller_ports, run_caller_call
from voicebot.handoff.agents import parse_agents
from voicebot.records.model import CallRecord
from voicebot.records.store import open_store
from voicebot.serving import place_test_call

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
ESL = os.environ.get("VOICEBOT_TEST_ESL", "")
ENGINE_PORT = int(os.environ.get("VOICEBOT_TEST_ENGINE_PORT", "8084"))  # the dialplan's socket target (extension 7000)

pytestmark = pytest.mark.skipif(not ESL, reason="needs a real FreeSWITCH: set VOICEBOT_TEST_ESL=host:port[:password]")


def esl_address(value: str) -> tuple[str, int, str]:
    """``host:port[:password]`` → (host, port, password); the password may contain colons."""
    host, port, *rest = value.split(":", 2)
    return host, int(port), rest[0] if rest else "ClueCon"


def test_a_loopback_call_converses_takes_dtmf_and_is_recorded(tmp_path: Path) -> None:
    host, port, password = esl_address(ESL)
    outbound_port = free_port()
    config = EngineConfig(esl_host=host, esl_port=port, esl_password=password, outbound_host="127.0.0.1",
                          outbound_port=outbound_port, http_port=0, default_flow=FLOW,
                          records_db=str(tmp_path / "calls.sqlite"), recordings_dir=tmp_path / "rec",
                          cache_dir=ROOT / ".voicebot-cache", media_ports=(43600, 43699), shutdown_deadline_s=5)
    watcher = InboundConnection(host, port, password)
    watcher.start()
    entries: list[dict[str, Any]] = []  # the call's timeline, live (appended from the call's session thread)
    try:
        assert watcher.wait_up(10), f"FreeSWITCH is not reachable at {host}:{port}: {watcher.state().last_error}"
        ours = f"127.0.0.1:{outbound_port} async full"
        with watcher.expect_event(lambda e: e.name == "CHANNEL_EXECUTE" and e.get("Application") == "socket"
                                  and e.get("Application-Data") == ours, "the test call's socket app") as socket_app:
            job = gevent.spawn(place_test_call, config, "loopback/7001/voicebot", {"customer_name": "Dana"},
                               entries.append, timeout_s=120)
            uuid = socket_app.get(30).unique_id
        wait(lambda: job.dead or any(e["kind"] == "prompt_start" for e in entries), 30, "the greeting plays")
        assert not job.dead, job.value
        watcher.uuid_recv_dtmf(uuid, "2")  # the caller presses 2: wrong person
        status, summary = job.get(timeout=60)
        assert status == 0, summary
        assert f"call {uuid}:" in summary and "disposition=wrong_person" in summary, summary
        wait(lambda: watcher.api(f"uuid_exists {uuid}").strip() == "false", 10, "the channel is gone")
    finally:
        watcher.stop()

    said = [e.get("text", "") for e in entries if e["kind"] == "play"]
    assert said[0].startswith("Hi, this is Sam") and "Dana" in said[0], said
    assert any(e["kind"] == "dtmf" and e.get("digit") == "2" for e in entries)
    store = open_store(config.records_db)
    try:
        record = store.get(uuid)
    finally:
        store.close()
    assert record is not None, "the call's record is written"
    assert record.disposition == "wrong_person" and list(record.path) == ["greet", "wrong_person"], record
    assert record.hangup_cause and record.answered_at is not None
    assert any(line.speaker == "bot" and "Dana" in line.text for line in record.transcript)
    assert record.recording_path and Path(record.recording_path).stat().st_size > 8000 * 2 * 2  # >1 s of stereo


def test_a_test_call_through_the_dialplan_reaches_the_engine_and_hears_the_bot(tmp_path: Path) -> None:
    host, port, password = esl_address(ESL)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", ENGINE_PORT)) != 0, \
            f"something already listens on 127.0.0.1:{ENGINE_PORT} (the dialplan's socket target): stop it first"
    config = EngineConfig(esl_host=host, esl_port=port, esl_password=password, outbound_host="127.0.0.1",
                          outbound_port=ENGINE_PORT, http_port=0, default_flow=FLOW,
                          records_db=str(tmp_path / "calls.sqlite"), recordings_dir=tmp_path / "rec",
                          cache_dir=ROOT / ".voicebot-cache", media_ports=(43600, 43699), shutdown_deadline_s=5)
    engine = Engine(config)
    engine.load()
    engine.start()
    lines: list[str] = []
    try:
        assert engine.inbound.wait_up(10), f"FreeSWITCH is not reachable at {host}:{port}"
        report = run_caller_call(CallOptions(
            "7000", ROOT / "examples" / "callers" / "demo_en.yaml", tmp_path / "out", esl_host=host, esl_port=port,
            esl_password=password, variables={"customer_name": "Dana"}, media_ports=caller_ports(config.media_ports),
            cache_dir=config.cache_dir / "prompts", records_db=config.records_db, max_s=30.0), printer=lines.append)
        assert engine.inbound.api("status").startswith("UP"), "FreeSWITCH is still up"
    finally:
        engine.shutdown()

    assert report.status == 0, report.message
    assert any("BOT     speaking" in line for line in lines) and any("CALLER  yes, speaking" in line for line in lines)
    record = report.record
    assert record is not None and record.call_id == report.b_uuid, "the engine's record of leg B"
    assert list(record.path)[:2] == ["greet", "disclosure"], record.path  # the caller's "yes, speaking" was heard
    assert "Dana" in record.transcript[0].text, "--var reached leg B through mod_loopback"
    with wave.open(str(tmp_path / "out" / "call.wav")) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, report.rate)
        stereo = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    bot = stereo[: 5 * report.rate, 1].astype(np.float64)
    frames = bot[: len(bot) // (report.rate // 50) * (report.rate // 50)].reshape(-1, report.rate // 50)
    loud = np.count_nonzero(20 * np.log10(np.sqrt(np.mean(frames * frames, axis=1)) / 32768 + 1e-12) > -40)
    assert loud * 0.02 > 2.0, "leg A heard the greeting"


# ---------------------------------------------------------------- handoff and re-arm on the real switch
#
# The caller is loopback extension 7001 (the ear: unicast on leg B, tests/real_freeswitch_support.py); the
# agent is extension 7010 (answers and plays a 1 kHz tone), reached by the engine's own agent originate.
# Needs loopback_initial_codec=PCMU@8000h@20i (freeswitch_conf/README.md): eavesdrop is only safe on G.711.

HANDOFF_FLOW = ROOT / "tests" / "flows" / "handoff" / "handoff.yaml"
AGENTS = {"wrap_up_s": 0, "list": [{"id": "sam", "name": "Sam", "endpoint": "loopback/7010/voicebot"}],
          "groups": {"advisors": {"agents": ["sam"], "strategy": "longest_idle"}}}
ENGINE_MEDIA, EAR_MEDIA = (43600, 43679), (43680, 43699)
BROADCAST_HZ = 600.0


@contextmanager
def real_engine(tmp_path: Path, flow: Path, **overrides: Any) -> Iterator[tuple[Engine, InboundConnection, EventLog]]:
    """An engine on a free outbound port, and a watcher connection logging every event with its arrival time."""
    host, port, password = esl_address(ESL)
    config = EngineConfig(esl_host=host, esl_port=port, esl_password=password, outbound_host="127.0.0.1",
                          outbound_port=0, http_port=0, default_flow=flow, records_db=str(tmp_path / "calls.sqlite"),
                          recordings_dir=tmp_path / "rec", cache_dir=ROOT / ".voicebot-cache", media_ports=ENGINE_MEDIA,
                          shutdown_deadline_s=5, **overrides)
    engine = Engine(config)
    engine.load()
    engine.start()
    watcher, log = InboundConnection(host, port, password), EventLog()
    watcher.start()
    sub = watcher.on_event(log.add)
    try:
        assert watcher.wait_up(10) and engine.inbound.wait_up(10), f"FreeSWITCH is not reachable at {host}:{port}"
        yield engine, watcher, log
    finally:
        sub.close()
        watcher.stop()
        engine.shutdown()


def handoff_engine(tmp_path: Path, mode: str, whisper: bool) -> Any:
    return real_engine(tmp_path, HANDOFF_FLOW, agents=parse_agents(AGENTS),
                       handoff=HandoffConfig(mode=mode, whisper=whisper, whisper_dir=tmp_path / "whisper"))


def wait_listening(log: EventLog, caller: str) -> str:
    """The agent leg's uuid once it eavesdrops on ``caller``."""
    def listening() -> tuple[float, EslEvent] | None:
        return log.first(lambda e: e.name == "CHANNEL_EXECUTE" and e.get("Application") == "eavesdrop"
                         and e.get("Application-Data") == caller)
    wait(listening, 20, "an agent leg eavesdrops on the caller")
    found = listening()
    assert found is not None
    return found[1].unique_id


def saved_record(engine: Engine, call_id: str) -> CallRecord:
    wait(lambda: engine.metrics.active_calls == 0 and engine.store.get(call_id) is not None, 20,
         "the engine ends the call and writes its record")
    record = engine.store.get(call_id)
    assert record is not None
    return record


def test_talk_mode_handoff_the_caller_hears_the_agent_with_no_hole(tmp_path: Path) -> None:
    """The caller presses 1; the engine sends eavesdrop's talk key to the listening agent's leg (after the whisper)."""
    with handoff_engine(tmp_path, "talk", whisper=True) as (engine, watcher, log), \
            loopback_call(watcher, log, engine.server.port, EAR_MEDIA) as call:
        agent = wait_listening(log, call.a)
        wait(lambda: call.ear.first("voice") is not None, 10, "the caller hears the bot")
        watcher.uuid_recv_dtmf(call.a, "1")  # the caller asks for an advisor
        wait(lambda: log.find("DTMF", agent) is not None, 15, "the engine's talk key reaches the agent's leg")
        key_at = log.find("DTMF", agent)
        assert key_at is not None
        wait(lambda: call.ear.first("agent", after=key_at - 0.2) is not None, 3, "the caller hears the agent")
        first_agent = call.ear.first("agent", after=key_at - 0.2)
        assert first_agent is not None
        wait(lambda: call.ear.heard[-1].at > first_agent + 1.2, 5, "1.2 s more of the call")
        hole = call.ear.max_interval(key_at - 0.5, first_agent + 1.0)
        held = call.ear.share("agent", first_agent + 0.1, first_agent + 1.0)
        print(f"talk: agent heard {1000 * (first_agent - key_at):.0f} ms after the DTMF event, "
              f"longest hole {1000 * hole:.0f} ms, agent in {100 * held:.0f}% of frames")
        watcher.uuid_kill(call.b)  # the caller hangs up
        wait(lambda: watcher.api(f"uuid_exists {agent}").strip() == "false", 10, "the agent's leg ends with the call")
    record = saved_record(engine, call.a)
    assert -0.1 < first_agent - key_at < 0.2, "the caller hears the agent as the talk key lands"
    assert hole <= 0.06, f"no hole in what the caller hears (longest {1000 * hole:.0f} ms)"
    assert held >= 0.9, "the agent stays heard: the bot keeps streaming (silence) under eavesdrop"
    handoff = record.handoff
    assert (handoff["mode"], handoff["outcome"], handoff["agent_id"]) == ("talk", "connected", "sam"), handoff
    assert handoff["listening_at"] < handoff["transfer_at"] < handoff["connected_at"], handoff
    assert record.disposition == "transferred", record.path


def test_agent_takes_over_with_2_while_the_bot_speaks(tmp_path: Path) -> None:
    """No whisper: the agent listens during the greeting and presses 2 mid-sentence; the bot falls silent."""
    with handoff_engine(tmp_path, "talk", whisper=False) as (engine, watcher, log), \
            loopback_call(watcher, log, engine.server.port, EAR_MEDIA) as call:
        agent = wait_listening(log, call.a)
        listening_at = log.find("CHANNEL_EXECUTE", agent, where=lambda e: e.get("Application") == "eavesdrop") or 0.0
        wait(lambda: call.ear.heard and call.ear.kinds()[-1] == (call.ear.heard[-1].at, "voice")
             and call.ear.heard[-1].at > listening_at, 10, "the bot speaks while the agent listens")
        pressed = time.monotonic()
        watcher.uuid_recv_dtmf(agent, "2")  # the agent presses 2
        wait(lambda: call.ear.first("agent", after=pressed - 0.05) is not None, 3, "the caller hears the agent")
        first_agent = call.ear.first("agent", after=pressed - 0.05)
        assert first_agent is not None
        wait(lambda: call.ear.heard[-1].at > first_agent + 1.0, 5, "1 s more of the call")
        last_voice = max(at for at, kind in call.ear.kinds() if kind == "voice" and at < first_agent)
        hole = call.ear.max_interval(pressed - 0.5, first_agent + 0.5)
        voice_after = call.ear.share("voice", first_agent + 0.1, first_agent + 0.9)
        print(f"takeover: agent heard {1000 * (first_agent - pressed):.0f} ms after the key, "
              f"{1000 * (first_agent - last_voice):.0f} ms after the bot's last loud frame, longest hole {1000 * hole:.0f} ms")
        watcher.uuid_kill(call.b)
    record = saved_record(engine, call.a)
    assert first_agent - pressed < 0.15, "the agent is heard within a few frames of the key"
    assert first_agent - last_voice <= 0.08, "from the bot to the agent with no silence between"
    assert hole <= 0.06 and voice_after == 0.0, "a steady stream, and the bot is silent once the agent talks"
    assert (record.handoff["mode"], record.handoff["outcome"]) == ("takeover", "connected"), record.handoff
    assert record.disposition == "transferred" and record.path == ("greet",), record.path


def test_bridge_mode_handoff_then_the_agent_leaves_and_the_bot_is_back(tmp_path: Path) -> None:
    """uuid_bridge to the agent; the agent hangs up; park_after_bridge parks the caller, the engine re-arms."""
    with handoff_engine(tmp_path, "bridge", whisper=False) as (engine, watcher, log), \
            loopback_call(watcher, log, engine.server.port, EAR_MEDIA) as call:
        agent = wait_listening(log, call.a)
        wait(lambda: call.ear.first("voice") is not None, 10, "the caller hears the bot")
        watcher.uuid_recv_dtmf(call.a, "1")
        wait(lambda: log.find("CHANNEL_BRIDGE", call.a) is not None, 15, "the caller is bridged to the agent")
        bridged_at = log.find("CHANNEL_BRIDGE", call.a)
        assert bridged_at is not None
        wait(lambda: call.ear.first("agent", after=bridged_at - 0.3) is not None, 3, "the caller hears the agent")
        first_agent = call.ear.first("agent", after=bridged_at - 0.3)
        assert first_agent is not None
        wait(lambda: call.ear.heard[-1].at > first_agent + 0.6, 5, "0.6 s of the agent")
        hole = call.ear.max_interval(bridged_at - 0.5, first_agent + 0.5)
        left = time.monotonic()
        watcher.uuid_kill(agent)  # the agent hangs up
        wait(lambda: log.find("CHANNEL_PARK", call.a, after=left) is not None, 5, "the caller is parked again")
        parked_at = log.find("CHANNEL_PARK", call.a, after=left)
        assert parked_at is not None
        wait(lambda: call.ear.first("voice", after=parked_at) is not None, 10, "the bot is heard again")
        back_at = call.ear.first("voice", after=parked_at)
        assert back_at is not None
        print(f"bridge: agent heard {1000 * (first_agent - bridged_at):.0f} ms after CHANNEL_BRIDGE, longest hole "
              f"{1000 * hole:.0f} ms; park {1000 * (parked_at - left):.0f} ms after the agent's hang-up, "
              f"bot heard {1000 * (back_at - parked_at):.0f} ms after the park; {call.a} events: {log.names(call.a)}")
        record = saved_record(engine, call.a)
    assert first_agent - bridged_at < 0.5 and hole < 0.5
    handoff = record.handoff
    assert (handoff["mode"], handoff["outcome"]) == ("bridge", "connected"), handoff
    assert handoff["handoff_ms"] is not None and 0 < handoff["handoff_ms"] < 1000, handoff
    assert record.path[-1] == "welcome_back" and record.disposition == "after_agent", record.path


def test_unicast_is_rearmed_after_a_media_app_and_the_bot_is_heard_again(tmp_path: Path) -> None:
    """A playback (uuid_broadcast) tears unicast down; the engine sees the stall, re-parks, re-arms, goes on."""
    with real_engine(tmp_path, FLOW) as (engine, watcher, log), \
            loopback_call(watcher, log, engine.server.port, EAR_MEDIA, {"customer_name": "Dana"}) as call:
        wait(lambda: call.ear.first("voice") is not None, 10, "the greeting is heard")
        sent = time.monotonic()
        watcher.api(f"uuid_broadcast {call.a} tone_stream://%(1500,0,{BROADCAST_HZ:g}) aleg")
        wait(lambda: call.ear.first("tone", after=sent, tones=(BROADCAST_HZ,)) is not None, 5, "the broadcast is heard")
        wait(lambda: log.find("CHANNEL_PARK", call.a, after=sent) is not None, 5, "the engine re-parks the call")
        rearmed_at = log.find("CHANNEL_PARK", call.a, after=sent)
        assert rearmed_at is not None
        watcher.uuid_recv_dtmf(call.a, "2")  # wrong person: the bot says goodbye
        wait(lambda: call.ear.first("voice", after=rearmed_at + 0.1) is not None, 10, "the bot is heard again")
        back_at = call.ear.first("voice", after=rearmed_at + 0.1)
        tone = [at for at, kind in call.ear.kinds((BROADCAST_HZ,)) if kind == "tone"]
        print(f"re-arm: broadcast heard for {1000 * (tone[-1] - tone[0]):.0f} ms, park {1000 * (rearmed_at - sent):.0f} ms "
              f"after uuid_broadcast, bot heard again {1000 * ((back_at or 0) - rearmed_at):.0f} ms after the park; "
              f"{call.a} events: {log.names(call.a)}")
        record = saved_record(engine, call.a)
    assert record.disposition == "wrong_person" and list(record.path) == ["greet", "wrong_person"], record.path
    assert any(line.speaker == "bot" and "Dana" in line.text for line in record.transcript)


def test_a_campaign_dial_to_a_silent_callee_is_taken_for_a_machine_and_gets_the_message(tmp_path: Path) -> None:
    """The campaign dialer's originate (caller ID, the lead's variables with a space, the answering-machine policy
    and a message with spaces and a comma, percent-encoded) on a real switch: extension 7001 answers and stays
    silent, so app_amd's initial silence (2.5 s) calls it a machine; with ``leave_message`` the bot waits for the
    beep or 1.5 s of silence, says the message and hangs up; the record and the dialer's report say ``machine``."""
    from voicebot.campaign.amdgate import AmdCall, AmdPolicy
    from voicebot.campaign.callerid import CallerId, CallerIdPool
    from voicebot.campaign.scheduler import Dial, Ended
    from voicebot.esl.dialer import DialBox, Dialer, DialTarget, record_outcomes

    message = "Hello {{customer_name}}, this is Sam from Northwind Savings. Please call us back."
    with real_engine(tmp_path, FLOW) as (engine, _watcher, _log):
        reports: list[object] = []
        dialer = Dialer([DialBox("fs", engine.inbound, "loopback/7001/voicebot")], campaign_id="camp-real",
                        socket_address=f"127.0.0.1:{engine.server.port}",
                        caller_ids=CallerIdPool([CallerId("+12125550001", "US")]),
                        leads=lambda lead: DialTarget("US", {"customer_name": "Dana Smith"}),
                        outcomes=record_outcomes(engine.store), report=reports.append, ring_s=10.0,
                        amd=AmdCall(AmdPolicy.LEAVE_MESSAGE, message))
        dialer.start()
        try:
            uuid = dialer.dial(Dial("lead-1", "+12125550101", 1))
            wait(lambda: any(isinstance(r, Ended) for r in reports), 40, "the dial's outcome")
        finally:
            dialer.stop()
        record = saved_record(engine, uuid)
    [ended] = [r for r in reports if isinstance(r, Ended)]
    assert ended.disposition == record.disposition == "machine", (ended, record.disposition)
    assert record.amd["verdict"] == "machine" and record.amd["action"] == "message", record.amd
    assert record.amd["message_left"] is True and record.amd["message_trigger"] in ("silence", "beep"), record.amd
    said = " ".join(line.text for line in record.transcript if line.speaker == "bot")
    assert "Dana Smith" in said and "call us back" in said, said
