"""Answering-machine detection with real audio through the real pipeline (webrtc VAD, PocketSphinx, Piper): a human
"hello?" and a synthetic voicemail greeting ("Hi, you've reached Dana… please leave a message after the tone." and
a beep), both said by espeak-ng and sent through an 8 kHz µ-law telephone channel (bench/amd_bench.py makes them).
Through ``voicebot simulate`` and through the FreeSWITCH double with the engine and the campaign dialer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import numpy as np
import pytest

from fsdouble.audio import ArrayAudio
from fsdouble.double import FreeSwitchDouble
from tests.engine_support import PASSWORD, engine_config, running_engine
from voicebot.audio.wav import write_wav
from voicebot.call import CallSession
from voicebot.campaign.amdgate import AmdCall, AmdGate, AmdPolicy
from voicebot.campaign.callerid import CallerId, CallerIdPool
from voicebot.campaign.scheduler import Dial, Ended
from voicebot.dialog.loader import load_flow
from voicebot.esl.dialer import DialBox, Dialer, DialTarget, record_outcomes
from voicebot.pipeline import Pipeline, PipelineConfig, load_pipeline
from voicebot.sim.audio import SimResult, run_call
from voicebot.sim.caller import CallerScript, CallerTurn, SimCaller, raw_or_wav

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import amd_bench  # noqa: E402

FLOW = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
CACHE = ROOT / ".voicebot-cache" / "prompts"
HUMAN, MACHINE = "human-en-0-en-us", "machine-en-0-en-us"  # "hello?"; "Hi, you've reached Dana..." + a 440-1400 Hz beep
MESSAGE = "Hello {{customer_name}}, this is Sam from Northwind Savings. Please call us back."
pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is installed by scripts/setup.sh")


def clip_audio(clip_id: str) -> tuple[np.ndarray, amd_bench.Speech]:
    """The clip through the telephone channel (clean: 300-3400 Hz, µ-law) at 8 kHz, and where its speech lies."""
    clip = next(c for c in amd_bench.build_set(quick=False) if c.clip_id == clip_id)
    speech = amd_bench.speech_of(clip)
    return amd_bench.channel(speech, clip, None), speech


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return load_pipeline(load_flow(FLOW), PipelineConfig(rate=8000, cache_dir=CACHE))


def simulate(pipeline: Pipeline, clip_id: str, policy: AmdPolicy, tmp: Path) -> tuple[SimResult, amd_bench.Speech]:
    pcm, speech = clip_audio(clip_id)
    wav = tmp / f"{clip_id}.wav"
    write_wav(wav, pcm, 8000)
    caller = SimCaller(CallerScript((CallerTurn("wav", path=str(wav)),), gap_ms=0, free_running=True), 8000,
                       synth=pipeline.cache.synthesize, read_audio=raw_or_wav)
    session = pipeline.session(charge_compute=True)
    session.core.amd = AmdGate(AmdCall(policy, MESSAGE), pipeline.flow, 8000)
    return run_call(session, caller, variables={"customer_name": "Ann"}, linger_s=2.0, max_s=20.0), speech


def first_bot_audio(result: SimResult) -> float | None:
    on = [i for i, chunk in enumerate(result.bot_track) if np.any(chunk)]
    return round(on[0] * 0.02, 3) if on else None


def amd_of(session: CallSession) -> dict[str, Any]:
    return session.timeline.of("amd")[-1]


def test_a_human_hello_gets_the_greeting_promptly(pipeline: Pipeline, tmp_path: Path) -> None:
    result, speech = simulate(pipeline, HUMAN, AmdPolicy.HANG_UP, tmp_path)
    amd = amd_of(result.session)
    assert amd["verdict"] == "human" and amd["action"] == "flow", amd
    heard = first_bot_audio(result)
    said_end = speech.spans[-1][1]
    assert heard is not None and 0.0 < heard - said_end < 1.2, (heard, said_end)  # app_amd's 800 ms of silence + a frame
    assert result.session.machine.outcome.path[0] == "greet" and result.session.disposition != "machine"


def test_a_voicemail_greeting_is_hung_up_on_as_machine(pipeline: Pipeline, tmp_path: Path) -> None:
    result, speech = simulate(pipeline, MACHINE, AmdPolicy.HANG_UP, tmp_path)
    amd = amd_of(result.session)
    assert amd["verdict"] == "machine" and amd["action"] == "hang_up", amd
    assert result.session.disposition == "machine" and first_bot_audio(result) is None
    assert speech.beep_at is not None and result.duration_s < speech.beep_at  # gone before the beep


def test_a_voicemail_greeting_gets_the_message_after_the_beep(pipeline: Pipeline, tmp_path: Path) -> None:
    result, speech = simulate(pipeline, MACHINE, AmdPolicy.LEAVE_MESSAGE, tmp_path)
    amd = amd_of(result.session)
    assert amd["verdict"] == "machine" and amd["message_trigger"] == "beep" and amd["message_left"] is True, amd
    assert speech.beep_at is not None
    beep_end = speech.beep_at + 0.4
    heard = first_bot_audio(result)
    assert heard is not None and beep_end <= heard < beep_end + 0.5, (heard, beep_end)
    assert result.session.disposition == "machine" and result.session.machine.outcome.disposition == "machine"
    played = result.session.timeline.of("play")
    assert [p["text"] for p in played] == ["Hello Ann, this is Sam from Northwind Savings. Please call us back."]


def test_voicebot_simulate_runs_an_outbound_call_with_amd(tmp_path: Path) -> None:
    pcm, _ = clip_audio(MACHINE)
    wav = tmp_path / "voicemail.wav"
    write_wav(wav, pcm, 8000)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "voicebot.cli", "simulate", str(FLOW), "--caller", str(wav),
                           "--amd", "hang_up", "--var", "customer_name=Ann", "-o", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "amd machine (" in done.stdout and "disposition=machine" in done.stdout
    entries = json.loads((out / "timeline.json").read_text(encoding="utf-8"))["entries"]
    amd = [e for e in entries if e["kind"] == "amd"]
    assert amd[-1]["verdict"] == "machine" and amd[-1]["action"] == "hang_up"
    assert "amd: machine" in (out / "transcript.txt").read_text(encoding="utf-8")
    bad = subprocess.run([sys.executable, "-m", "voicebot.cli", "simulate", str(FLOW), "--caller", str(wav),
                          "--amd", "leave_message"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode != 0 and "--amd-message" in bad.stderr and "Traceback" not in bad.stderr


# ------------------------------------------------------------------ through the FreeSWITCH double


def _wait(pred: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        gevent.sleep(0.01)


def test_campaign_dials_through_the_double_record_the_verdict(tmp_path: Path) -> None:
    """Two dials with ``vb_amd=hang_up``: a voicemail (record: machine) and a person who says "hello?" (the
    greeting reaches them; they hang up after it starts: the record has the human verdict)."""
    machine_pcm, _ = clip_audio(MACHINE)
    human_pcm, human = clip_audio(HUMAN)
    with FreeSwitchDouble(password=PASSWORD) as fs:
        fs.set_endpoint("sofia/gateway/trunk/+12125550101", ring_s=0.1, agent_audio=ArrayAudio(machine_pcm, 8000))
        fs.set_endpoint("sofia/gateway/trunk/+12125550102", ring_s=0.1, agent_audio=ArrayAudio(human_pcm, 8000))
        with running_engine(engine_config(fs.inbound_port, tmp_path, (42600, 42699))) as engine:
            reports: list[object] = []
            dialer = Dialer([DialBox("fs", engine.inbound, "sofia/gateway/trunk/{number}")], campaign_id="camp-amd",
                            socket_address=f"127.0.0.1:{engine.server.port}",
                            caller_ids=CallerIdPool([CallerId("+12125550001", "US")]),
                            leads=lambda lead: DialTarget("US", {"customer_name": "Dana"}),
                            outcomes=record_outcomes(engine.store), report=reports.append, ring_s=5.0,
                            amd=AmdCall(AmdPolicy.HANG_UP))
            dialer.start()
            try:
                machine = dialer.dial(Dial("lead-m", "+12125550101", 1))
                person = dialer.dial(Dial("lead-h", "+12125550102", 1))
                _wait(lambda: fs.channel(person).answered, 10, "the person answered")
                _wait(lambda: fs.first_heard(person, "engine", min_dbfs=-40) is not None, 15, "the greeting")
                fs.hangup(person)
                _wait(lambda: len([r for r in reports if isinstance(r, Ended)]) == 2, 30, "both outcomes")
            finally:
                dialer.stop()
            fs.assert_no_crash()
            assert "vb_amd=hang_up" in next(c for c in fs.commands if "+12125550101" in c)
            machine_record, person_record = engine.store.get(machine), engine.store.get(person)
    ended = {r.lead_id: r.disposition for r in reports if isinstance(r, Ended)}
    assert machine_record is not None and person_record is not None
    assert ended["lead-m"] == machine_record.disposition == "machine"
    assert machine_record.amd["verdict"] == "machine" and machine_record.amd["action"] == "hang_up"
    assert machine_record.transcript == () or all(line.speaker == "caller" for line in machine_record.transcript)
    assert person_record.amd["verdict"] == "human" and person_record.amd["action"] == "flow"
    assert person_record.disposition != "machine" and person_record.path[:1] == ("greet",)
    wait_ms = person_record.amd["flow_started_ms"] - 1000 * human.spans[-1][1]
    assert 0 < wait_ms < 1300, wait_ms  # what the person waits after "hello?" (plus the double's answer-to-media lag)


def test_the_call_path_bench_runs_as_the_user_runs_it(tmp_path: Path) -> None:
    """bench/amd_callpath.py --quick: 4 human and 4 machine clips as calls; its summary holds what the docs quote."""
    out = tmp_path / "amd_callpath.json"
    done = subprocess.run([sys.executable, "bench/amd_callpath.py", "--quick", "--json", str(out)], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(out.read_text(encoding="utf-8"))["summary"]
    human, machine = summary["clean/human"], summary["clean/machine"]
    assert human["n"] == machine["n"] == 4 and machine["right"] == 4 and machine["hung_up_before_the_beep"] == 4
    assert human["right"] >= 2 and 700 <= human["wait_ms_p50"] <= 1000  # app_amd's 800 ms of silence, and a frame
    assert "clean/human" in done.stdout and "wait p50/p95/max ms" in done.stdout
