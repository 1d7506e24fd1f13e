"""The voicebot command, end to end, on the example flows."""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from voicebot.cli import main

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "examples" / "flows"


def test_validate_examples_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", *map(str, sorted(FLOWS.iterdir()))]) == 0
    assert "6 file(s) checked: 0 error(s), 0 warning(s)" in capsys.readouterr().out


def test_validate_bad_flow_fails_with_location(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((FLOWS / "lead_screening_en.yaml").read_text().replace("next: confirm_callback", "next: confirm_calback"))
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "confirm_calback" in err and "confirm_callback" in err


@pytest.mark.parametrize("language", ["en", "zh"])
def test_example_flow_tests_pass(language: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test-flow", str(FLOWS / f"lead_screening_{language}.yaml")]) == 0
    out = capsys.readouterr().out
    assert " 0 failed" in out and "FAIL" not in out


def test_appointment_example_flow_tests_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test-flow", str(FLOWS / "appointment_reminder_en.yaml")]) == 0
    out = capsys.readouterr().out
    assert "11 passed, 0 failed" in out and "FAIL" not in out


def test_test_flow_reports_a_failing_expectation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(FLOWS / "lead_screening_en.yaml", tmp_path)
    (tmp_path / "t.tests.yaml").write_text(
        "flow: lead_screening_en.yaml\ntests:\n  - name: wrong expectation\n    caller: [yes, no]\n"
        "    expect: {disposition: transferred, level: A}\n")
    assert main(["test-flow", str(tmp_path / "t.tests.yaml")]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "disposition: expected 'transferred', got 'not_interested'" in out
    assert "level: expected 'A', got 'D'" in out


def test_chat_script_shows_intent_node_and_outcome(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "caller.yaml"
    script.write_text("- yes\n- {barge: 'stop calling me', at_ms: 5000}\n")
    assert main(["chat", str(FLOWS / "lead_screening_en.yaml"), "--var", "customer_name=Dana", "--script", str(script)]) == 0
    out = capsys.readouterr().out
    assert "Am I speaking with Dana?" in out
    assert "⇒ intent stop_calling" in out and "barge-in: bot stopped after" in out
    assert "disposition=blocklist" in out and "tags=contacted,blocklist" in out


def test_chat_interactive_via_stdin() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voicebot.cli", "chat", str(FLOWS / "lead_screening_zh.yaml")],
        input="你是机器人吗\n/dtmf 2\n", capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "⇒ intent robot" in result.stdout and "智能助理" in result.stdout
    assert "node wrong_person" in result.stdout and "disposition=wrong_person" in result.stdout


def test_chat_bad_variable_syntax(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", str(FLOWS / "lead_screening_en.yaml"), "--var", "oops"]) == 2
    assert "--var oops: expects KEY=VALUE" in capsys.readouterr().err


def test_a_misspelt_variable_is_an_error_with_a_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", str(FLOWS / "lead_screening_en.yaml"), "--var", "customer_nme=Bob"]) == 2
    err = capsys.readouterr().err
    assert "--var customer_nme: flow lead_screening_en has no variable 'customer_nme' (did you mean customer_name?)" in err
    assert "its variables: agent_name, callback_time, company, customer_name, offer" in err


def test_the_greeting_reads_well_without_a_customer_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "hangup.yaml"
    script.write_text("- hangup\n")
    assert main(["chat", str(FLOWS / "lead_screening_en.yaml"), "--script", str(script)]) == 0
    out = capsys.readouterr().out
    assert "Am I speaking with the account holder?" in out and "speaking with there" not in out


def test_a_backchannel_over_an_interruptible_prompt_is_ignored_for_what_it_is(tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "uh-huh.yaml"  # the pitch node's prompt may be interrupted; "uh-huh" is too little to do it
    script.write_text("- yes, speaking\n- {barge: yes tell me more, at_ms: 4500}\n- {barge: uh-huh, at_ms: 1000}\n")
    assert main(["chat", str(FLOWS / "lead_screening_en.yaml"), "--script", str(script)]) == 0
    out = capsys.readouterr().out
    assert "(ignored: a backchannel or filler: too little to interrupt the prompt" in out, out
    assert "cannot be interrupted" not in out


def test_interactive_chat_ends_after_a_hang_up_node_without_another_line(capsys: pytest.CaptureFixture[str]) -> None:
    from voicebot.cli import _repl
    from voicebot.dialog.loader import load_flow
    from voicebot.sim.text import TextCall

    call = TextCall(load_flow(FLOWS / "lead_screening_en.yaml"))
    call.start()
    typed = io.StringIO("no, wrong number\nyes\nthis line must stay unread\n")  # the unsure no (0.66) is confirmed
    _repl(call, typed)
    assert call.ended and call.machine.outcome.disposition == "wrong_person"
    assert typed.read() == "this line must stay unread\n"
    assert "hang up wrong_person" in capsys.readouterr().out


def test_chat_and_simulate_read_both_caller_script_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from voicebot.sim.caller import load_caller, load_caller_actions

    audio = ROOT / "examples" / "callers" / "demo_en_audio.yaml"
    listed = ROOT / "examples" / "callers" / "demo_en.yaml"
    assert [t.kind for t in load_caller(listed).turns] == ["say", "barge", "say", "say", "barge", "say"]
    actions = load_caller_actions(audio)
    assert [(a.kind, a.text) for a in actions[:3]] == [("say", "he was not an ill disposed young man"),
                                                        ("say", "yes speaking"), ("barge", "wait, who is this?")]
    assert main(["chat", str(FLOWS / "lead_screening_en.yaml"), "--script", str(audio)]) == 0
    assert "⇒ intent robot" in capsys.readouterr().out


def test_text_demo_runs_to_a_transfer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--text"]) == 0
    out = capsys.readouterr().out
    assert "(ignored: said in the first 4000 ms of the prompt, which are protected from barge-in)" in out
    assert "barge-in: bot stopped after" in out and "⇒ intent robot" in out
    assert "path=greet > disclosure > pitch > robot_answer > pitch > sms_sent > handoff" in out
    assert "disposition=transferred" in out


def test_graph_writes_svg(tmp_path: Path) -> None:
    out = tmp_path / "flow.svg"
    assert main(["graph", str(FLOWS / "lead_screening_zh.yaml"), "-o", str(out)]) == 0
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") and "ask_callback_time" in svg and "handoff" in svg


def test_voice_demo_writes_its_outputs_and_reaches_the_advisor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's main command: the full pipeline (VAD, ASR, dialog, TTS) on the example flow, real human speech included."""
    assert main(["demo", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("transcript.txt", "latency.txt", "call.wav", "timeline.json", "timeline.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    transcript = (tmp_path / "transcript.txt").read_text()
    assert "Sorry, could you say that another way?" in transcript  # the human clip is off-script: the bot asks again
    assert "disposition=transferred" in transcript and "> handoff" in transcript
    assert "robot_answer" in transcript and "bot paused" in transcript
    assert "end→bot audio" in out and f"outputs in {tmp_path}" in out


def test_call_with_a_caller_says_when_freeswitch_is_unreachable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "voicebot.yaml"
    config.write_text(f"freeswitch: {{host: 127.0.0.1, port: {port}, password: pw}}\nmedia: {{ports: 43800-43819}}\n")
    status = main(["call", "7000", "--caller", str(ROOT / "examples" / "callers" / "demo_en.yaml"), "--config", str(config),
                   "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == 3 and f"FreeSWITCH is not reachable at 127.0.0.1:{port}" in err, err
    assert not (tmp_path / "out").exists()


def test_call_with_a_caller_refuses_a_flow_and_a_bad_caller_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    caller = str(ROOT / "examples" / "callers" / "demo_en.yaml")
    assert main(["call", "7000", "--caller", caller, "--flow", str(FLOWS / "lead_screening_en.yaml")]) == 2
    assert "--flow does not apply with --caller" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {dtmf: 12}\n")
    assert main(["call", "7000", "--caller", str(bad)]) == 2
    assert "dtmf must be one key" in capsys.readouterr().err
    assert main(["call", "7000", "--caller", caller, "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: no such config file" in capsys.readouterr().err


def test_voice_say_without_a_pack_uses_the_default_voice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "hello.wav"
    assert main(["voice", "say", "hello {{name}}", "--var", "name=Ann", "-o", str(out)]) == 0
    from voicebot.audio.wav import read_wav

    samples, rate = read_wav(out)
    assert rate == 8000 and len(samples) > 0.3 * rate and f"wrote {out}" in capsys.readouterr().out


def test_a_float_or_g711_caller_recording_is_read_before_the_call(tmp_path: Path) -> None:
    import struct

    from voicebot.sim.caller import load_caller

    data = struct.pack("<800f", *([0.25, -0.25] * 400))
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)  # WAVE_FORMAT_IEEE_FLOAT, as Audacity exports
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    (tmp_path / "float.wav").write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    script = load_caller(tmp_path / "float.wav")
    assert script.free_running and script.turns[0].path.endswith("float.wav")
