"""``voicebot call DEST --caller FILE``: the caller side in pieces, then whole calls through the double's dialplan."""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import gevent.subprocess
import numpy as np
import pytest

from fsdouble.double import FreeSwitchDouble, Silence
from tests.engine_support import PASSWORD, EngineSetup, free_port
from voicebot.audio.wav import write_wav
from voicebot.engine import Engine
from voicebot.esl.connection import UnicastBeforeAnswer
from voicebot.esl.protocol import EslEvent
from voicebot.esl.testcall import (
    EXIT_NO_AUDIO,
    EXIT_OK,
    EXIT_ORIGINATE,
    EXIT_UNREACHABLE,
    BotActivity,
    CallerSide,
    CallOptions,
    LegState,
    caller_ports,
    dial_string,
    load_caller,
    run_caller_call,
)
from voicebot.sim.caller import CallerScript, CallerTurn, SimCaller

ROOT = Path(__file__).resolve().parent.parent
CALLERS = ROOT / "examples" / "callers"
RATE = 8000


def tone(seconds: float, rate: int = RATE, amplitude: float = 8000.0, freq: float = 300.0) -> np.ndarray:
    n = int(seconds * rate)
    return (amplitude * np.sin(np.arange(n) * 2 * np.pi * freq / rate)).astype(np.int16)


def frames(samples: np.ndarray, rate: int = RATE) -> list[np.ndarray]:
    n = rate // 50
    return [samples[i:i + n] for i in range(0, len(samples) - n + 1, n)]


# ---------------------------------------------------------------- pieces


def test_dial_string_makes_a_loopback_call_into_the_context() -> None:
    assert dial_string("7000") == "{loopback_bowout=false}loopback/7000/voicebot"
    assert dial_string("7100", "public", {"customer_name": "Dana", "note": "a,b"}) == \
        "{loopback_bowout=false,vb_var_customer_name=Dana,vb_var_note=a\\,b}loopback/7100/public"
    assert dial_string("loopback/7000/default").endswith("}loopback/7000/default")


def test_caller_ports_are_the_top_pairs_of_the_engine_range_and_aligned_with_them() -> None:
    assert caller_ports((40000, 40999)) == (40980, 40999)
    low, high = caller_ports((42001, 42100))
    assert (low, high) == (42081, 42100) and (low - 42001) % 2 == 0
    assert caller_ports((40000, 40009)) == (40000, 40009)


def test_caller_files_chat_script_audio_script_and_recording(tmp_path: Path) -> None:
    chat = load_caller(CALLERS / "demo_en.yaml")
    assert [t.kind for t in chat.turns] == ["say", "barge", "say", "say", "barge", "say"]
    assert chat.turns[0].text == "yes, speaking" and chat.turns[1].at_ms == 1500 and not chat.free_running
    audio = load_caller(CALLERS / "demo_en_audio.yaml")
    assert audio.turns[0].kind == "wav" and audio.turns[5].nth == 2 and audio.gap_ms == 400
    write_wav(tmp_path / "caller.wav", np.full(800, 1000, dtype=np.int16), 8000)
    wav = load_caller(tmp_path / "caller.wav")
    assert wav.free_running and wav.turns[0].path.endswith("caller.wav")
    (tmp_path / "waits.yaml").write_text("- {wait: 1500}\n- silence\n- {dtmf: 2}\n- hangup\n")
    assert [(t.kind, t.ms, t.text) for t in load_caller(tmp_path / "waits.yaml").turns] == \
        [("silence", 1500, ""), ("silence", 7000, ""), ("dtmf", 0, "2"), ("hangup", 0, "")]


def test_bot_activity_finds_utterances_by_energy_with_a_hangover() -> None:
    detector = BotActivity(threshold_dbfs=-45, hangover_s=0.4)
    audio = np.concatenate([np.zeros(RATE // 2, np.int16), tone(1.0), np.zeros(RATE // 5, np.int16), tone(0.5),
                            np.zeros(RATE, np.int16)])
    events = [e for i, f in enumerate(frames(audio)) for e in detector.feed(f, i * 0.02)]
    assert [k for k, _ in events] == ["start", "stop"], "a 200 ms pause does not split an utterance"
    assert events[0][1] == pytest.approx(0.5) and events[1][1] == pytest.approx(2.2)
    assert detector.utterances == 1 and not detector.talking
    assert not detector.loud(tone(0.02, amplitude=100))  # -50 dBFS: line noise, not the bot


def test_caller_side_answers_once_the_bot_has_finished_and_keeps_both_tracks_aligned() -> None:
    said: list[str] = []

    def synth(text: str, rate: int) -> np.ndarray:
        said.append(text)
        return tone(0.6, rate, freq=500)

    script = CallerScript((CallerTurn("say", "yes speaking"), CallerTurn("hangup")), gap_ms=400)
    printed: list[str] = []
    side = CallerSide(SimCaller(script, RATE, synth, lambda path, rate: tone(0.1)), RATE, printer=printed.append)
    bot = np.concatenate([tone(1.0), np.zeros(RATE * 2, np.int16), tone(0.5), np.zeros(RATE * 3 // 2, np.int16)])
    sent = []
    for i, frame in enumerate(frames(bot)):
        side.heard(frame, i * 0.02 + 0.004)  # a frame arrives a little after its tick
        sent.append(np.frombuffer(side.next_frame(i * 0.02), dtype="<i2"))
    assert said == ["yes speaking"]
    who = [(round(t, 2), w, text) for t, w, text in side.lines]
    assert who[0] == (0.0, "BOT", "speaking") and who[1][1:] == ("BOT", "stopped (1.0 s)")
    onset = next(t for t, w, text in who if w == "CALLER" and text == "yes speaking")
    assert 1.8 <= onset <= 1.9, "the caller answers gap_ms after the utterance ended (400 ms of quiet)"
    assert [(round(t, 1), kind) for t, kind, _ in side.actions] == [(4.3, "hangup")], "it hangs up after the next reply"
    assert any("CALLER  yes speaking" in line for line in printed)
    caller_track, bot_track = side.tracks()
    assert len(caller_track) == len(bot_track) == len(bot)
    loud = [i for i, f in enumerate(frames(caller_track)) if np.abs(f).max() > 1000]
    assert loud[0] * 0.02 == pytest.approx(onset, abs=0.03), "the caller track starts where the caller spoke"
    assert np.array_equal(bot_track, bot), "the bot track holds what was heard, where it was heard"
    assert np.array_equal(np.concatenate(sent), caller_track)


def test_leg_state_allows_unicast_only_once_answered_and_parked() -> None:
    leg = LegState("aaaa")

    def event(name: str, uuid: str = "aaaa", **headers: str) -> EslEvent:
        return EslEvent(name, {"Event-Name": name, "Unique-ID": uuid, **headers})

    leg.on_event(event("CHANNEL_PARK"))
    with pytest.raises(UnicastBeforeAnswer):
        leg.check_unicast()
    leg.on_event(event("CHANNEL_ANSWER", uuid="bbbb"))  # the other leg's answer is not ours
    with pytest.raises(UnicastBeforeAnswer):
        leg.check_unicast()
    leg.on_event(event("CHANNEL_ANSWER", **{"Channel-Read-Codec-Name": "L16", "Channel-Read-Codec-Rate": "16000",
                                            "variable_other_loopback_leg_uuid": "bbbb"}))
    leg.check_unicast()
    assert leg.media is not None and (leg.media.rate, leg.media.frame_bytes) == (16000, 640) and leg.other_leg == "bbbb"
    leg.on_event(event("CHANNEL_HANGUP", **{"Hangup-Cause": "NORMAL_CLEARING"}))
    with pytest.raises(UnicastBeforeAnswer):
        leg.check_unicast()
    assert leg.cause == "NORMAL_CLEARING"


def test_unreachable_freeswitch_is_reported_quickly(tmp_path: Path) -> None:
    wav = tmp_path / "caller.wav"
    write_wav(wav, tone(0.5), RATE)
    report = run_caller_call(CallOptions("7000", wav, tmp_path / "out", esl_port=free_port(), media_ports=(43700, 43709)))
    assert report.status == EXIT_UNREACHABLE
    assert "FreeSWITCH is not reachable at 127.0.0.1:" in report.message and "refused" in report.message.lower()
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- whole calls: the double's dialplan → a real engine


ENGINE = EngineSetup((42600, 42699))


@pytest.fixture(scope="module")
def module_engine(module_engine: Engine, module_double: FreeSwitchDouble) -> Engine:
    """The module's engine, with the double's dial plan routing to it as freeswitch_conf's extensions do."""
    fs = module_double
    fs.route("7000", "socket", f"127.0.0.1:{module_engine.server.port} async full")  # as freeswitch_conf's extension 7000
    fs.route("7001", "answer,park")  # a phone that answers and says nothing: no engine behind it
    fs.set_endpoint("loopback/7001/*", agent_audio=Silence())
    fs.route("7009", "socket", f"127.0.0.1:{free_port()} async full")  # an engine that is not running
    return module_engine


def options(fs: FreeSwitchDouble, engine: Engine, destination: str, caller: Path, out: Path,
            max_s: float = 120.0) -> CallOptions:
    """A test call to the double, the caller's ports from the engine's range, the engine's records database."""
    cfg = engine.config
    return CallOptions(destination, caller, out, esl_port=fs.inbound_port, esl_password=PASSWORD,
                       media_ports=caller_ports(cfg.media_ports), cache_dir=cfg.cache_dir / "prompts",
                       records_db=cfg.records_db, max_s=max_s)


def similarity(part: np.ndarray, track: np.ndarray, start: int, max_lag: int = 4000) -> tuple[float, int]:
    """Best normalised correlation of ``part`` with ``track`` near ``start`` (± ``max_lag`` samples): (score, lag)."""
    x = part.astype(np.float64)
    best = (0.0, 0)
    for lag in range(max(-start, -max_lag), max_lag + 1):
        y = track[start + lag:start + lag + len(x)].astype(np.float64)
        if len(y) < len(x):
            break
        score = float(np.dot(x, y) / (np.sqrt(np.dot(x, x) * np.dot(y, y)) or 1.0))
        best = max(best, (score, lag))
    return best


def test_demo_caller_through_the_dialplan_converses_with_the_engine(fs: FreeSwitchDouble, engine: Engine,
                                                                    tmp_path: Path) -> None:
    printed: list[str] = []
    report = run_caller_call(options(fs, engine, "7000", CALLERS / "demo_en.yaml", tmp_path / "out", max_s=30.0),
                             printer=printed.append)
    fs.assert_no_crash()  # unicast on A came after A's answer: the double crashes otherwise
    assert report.status == EXIT_OK, report.message
    a, b = fs.channel(report.a_uuid), fs.channel(report.b_uuid)
    assert a.name == "loopback/7000-a" and b.name == "loopback/7000-b" and a.hung_up and b.hung_up
    assert a.unicast_log[0].startswith("started") and a.answered_at is not None

    record = report.record
    assert record is not None and record.call_id == report.b_uuid, "the engine's record of leg B is found"
    # "yes, speaking" confirms the person; the later lines (barges timed against what A hears) move the dialog on
    assert list(record.path)[:2] == ["greet", "disclosure"] and len(record.path) >= 3, record.path
    said = [line.text for line in record.transcript if line.speaker == "caller"]
    assert len(said) >= 3 and "speak" in said[0], said
    assert any("CALLER  yes, speaking" in line for line in printed) and any("BOT     speaking" in line for line in printed)

    wav = tmp_path / "out" / "call.wav"
    with wave.open(str(wav)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, a.rate) and w.getnframes() > a.rate * 25
    stereo = np.frombuffer(wav.read_bytes()[44:], dtype="<i2").reshape(-1, 2)
    # The engine's own recording holds what it produced: it leaves out frames the media clock sent as silence
    # while the session thread ran late, so the two drift apart by those gaps. Compare 200 ms pieces, each
    # near its own place.
    engine_bot = read_wav_channel(Path(record.recording_path), 1)
    piece = RATE // 5
    scores = [similarity(stereo[at:at + piece, 1], engine_bot, at, max_lag=RATE // 4)[0]
              for at in range(int(0.1 * RATE), 3 * RATE, piece) if np.abs(stereo[at:at + piece, 1]).max() > 3000]
    assert len(scores) >= 8 and float(np.median(scores)) > 0.95, ("the bot's greeting is in the recording", scores)
    greeting = slice(int(0.1 * RATE), int(1.1 * RATE))
    levels = frame_dbfs(stereo[: 4 * RATE, 1])
    assert np.count_nonzero(levels > -40) * 0.02 > 2.0, "the greeting is heard for seconds"
    assert np.abs(stereo[greeting, 0]).max() < 2000, "the caller is quiet during the greeting"
    transcript = (tmp_path / "out" / "transcript.txt").read_text()
    assert "CALLER  yes, speaking" in transcript and "the engine's record: disposition=" in transcript
    fs.wait_for(lambda: engine.metrics.active_calls == 0, timeout=5, what="the engine released the call")


def frame_dbfs(samples: np.ndarray) -> np.ndarray:
    x = samples[: len(samples) // 160 * 160].astype(np.float64).reshape(-1, 160)
    return np.asarray(20 * np.log10(np.sqrt(np.mean(x * x, axis=1)) / 32768 + 1e-12))


def read_wav_channel(path: Path, channel: int) -> np.ndarray:
    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
    return data[:, channel]


def test_the_cli_places_the_call_and_writes_its_outputs(fs: FreeSwitchDouble, engine: Engine, tmp_path: Path) -> None:
    cfg = engine.config
    config = tmp_path / "voicebot.yaml"
    config.write_text(f"freeswitch: {{host: 127.0.0.1, port: {fs.inbound_port}, password: {PASSWORD}}}\n"
                      f"media: {{ip: 127.0.0.1, ports: {cfg.media_ports[0]}-{cfg.media_ports[1]}}}\n"
                      f"records: {{db: {cfg.records_db}}}\ncache_dir: {cfg.cache_dir}\n")
    command = [sys.executable, "-m", "voicebot.cli", "call", "7000", "--caller", str(CALLERS / "demo_en.yaml"),
               "--config", str(config), "--out", str(tmp_path / "cli"), "--max-s", "12"]
    proc = gevent.subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT)  # the engine runs meanwhile
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "calling loopback/7000/voicebot" in out and "BOT     speaking" in out and "CALLER  yes, speaking" in out
    assert "the call ran" in out and "--max-s 12 reached" in out
    assert "engine: call " in out and "path=greet > disclosure" in out
    with wave.open(str(tmp_path / "cli" / "call.wav")) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000) and w.getnframes() >= 8000 * 11
    assert (tmp_path / "cli" / "transcript.txt").stat().st_size > 0


def test_a_key_press_reaches_the_engine_which_hangs_up(fs: FreeSwitchDouble, engine: Engine, tmp_path: Path) -> None:
    script = tmp_path / "wrong.yaml"
    script.write_text("- {dtmf: 2}\n")  # after the greeting: "2" = wrong person
    report = run_caller_call(options(fs, engine, "7000", script, tmp_path / "out"), printer=lambda line: None)
    assert report.status == EXIT_OK and report.ended.startswith("the engine hung up"), report.message
    assert report.record is not None and report.record.disposition == "wrong_person"
    assert fs.channel(report.b_uuid).dtmf == ["2"]
    assert any(who == "KEY" and text == "2" for _, who, text in report.lines)
    assert report.duration_s < 20


def test_failed_originate_and_silent_line_give_their_exit_status(fs: FreeSwitchDouble, engine: Engine,
                                                                 tmp_path: Path) -> None:
    wav = tmp_path / "caller.wav"
    write_wav(wav, tone(1.0, rate=16000), 16000)  # a 16 kHz recording into an 8 kHz channel
    report = run_caller_call(options(fs, engine, "7009", wav, tmp_path / "a"), printer=lambda line: None)
    assert report.status == EXIT_ORIGINATE and "the originate to 7009 failed: NORMAL_CLEARING" in report.message
    report = run_caller_call(options(fs, engine, "7001", wav, tmp_path / "b"), printer=lambda line: None)
    assert report.status == EXIT_NO_AUDIO, report.message
    assert "no audio came back within 5 s" in report.message and "the bot said nothing" in report.message
    phone = fs.channel(report.a_uuid)
    heard = np.frombuffer(phone.heard_audio(), dtype="<i2")
    loud = frame_dbfs(heard) > -30
    assert 0.9 <= np.count_nonzero(loud) * 0.02 <= 1.1, "the recording was played into leg A, at the channel's rate"
    spectrum = np.abs(np.fft.rfft(heard[: RATE].astype(np.float64)))
    assert abs(np.argmax(spectrum) * RATE / len(heard[: RATE]) - 300) < 10, "a 300 Hz tone stays 300 Hz"
    fs.wait_for(lambda: phone.hung_up, timeout=2, what="the test call hangs up what it started")
    fs.assert_no_crash()
