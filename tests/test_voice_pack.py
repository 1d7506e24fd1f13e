"""Voice packs: the format, its error messages, importing raw takes, and the recording script."""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.data_support import needs_data
from voicebot.audio.wav import read_wav, write_wav
from voicebot.dialog.loader import load_flow, load_flow_text
from voicebot.tts import voicecli
from voicebot.tts.base import VoiceError
from voicebot.tts.pack import (
    active_dbfs,
    clipped_samples,
    expected_seconds,
    import_recording,
    load_pack,
    noise_floor_dbfs,
    speech_bounds,
    text_key,
)
from voicebot.tts.render import fragment_prompts, static_prompts

FLOW = Path(__file__).resolve().parent.parent / "examples" / "flows" / "lead_screening_en.yaml"
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
SPEECH_0880 = LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav"  # "he was not an ill disposed young man"
needs_speech = needs_data(SPEECH_0880.is_file(), "pocketsphinx-testdata")


def make_pack(root: Path, yaml_text: str = "name: alice\nlanguage: en\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "voice.yaml").write_text(yaml_text, encoding="utf-8")
    return root


def tone(seconds: float, rate: int, amplitude: float, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * 32767.0 * np.sin(2 * np.pi * freq * t)


def noise(seconds: float, rate: int, dbfs: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 32768.0 * 10 ** (dbfs / 20), int(seconds * rate))


def pcm(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


# ------------------------------------------------------------------ loading


def test_a_full_pack_loads_with_its_settings(tmp_path):
    root = make_pack(tmp_path / "p", "name: alice\nlanguage: en\nmodel: default\nspeaking_rate: 1.25\n"
                                      "loudness_target_dbfs: -18\nsample_rate: 8000\n")
    (root / "prompts").mkdir()
    write_wav(root / "prompts" / "x.wav", pcm(tone(0.5, 22050, 0.3)), 22050)
    (root / "prompts" / "x.txt").write_text("Hello, World!\n")
    pack = load_pack(root)
    assert (pack.name, pack.language, pack.model, pack.speaking_rate) == ("alice", "en", "default", 1.25)
    assert (pack.loudness_target_dbfs, pack.sample_rate) == (-18.0, 8000)
    assert pack.prompt_ids() == ["x"]
    audio = pack.recording("x")
    assert audio is not None and abs(len(audio) - 4000) <= 2  # 0.5 s resampled 22050 -> 8000
    assert pack.recording("missing") is None
    assert pack.recording("../voice") is None  # not a prompt id: never leaves prompts/
    assert pack.prompt_for_text("hello world") == "x"  # case and punctuation do not matter
    assert pack.prompt_for_text("hello there") is None
    assert pack.warnings == ()


def test_defaults_and_relative_model_path(tmp_path):
    root = make_pack(tmp_path / "p", "name: bob\nlanguage: zh\nmodel: voices/bob.onnx\n")
    (root / "voices").mkdir()
    (root / "voices" / "bob.onnx").write_bytes(b"not really a model")
    pack = load_pack(root)
    assert pack.model == str((root / "voices" / "bob.onnx").resolve())
    assert (pack.speaking_rate, pack.loudness_target_dbfs, pack.sample_rate) == (1.0, -20.0, 16000)
    assert pack.enrollment() == [] and pack.prompt_ids() == []


@pytest.mark.parametrize(("yaml_text", "message"), [
    (None, "voice.yaml: missing"),
    ("name: [unclosed", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping"),
    ("language: en\n", "`name:` must be a non-empty string"),
    ("name: a\nlanguage: fr\n", "`language: fr` is not supported; use en or zh"),
    ("name: a\nmodel: nowhere.onnx\n", "`model: nowhere.onnx` not found"),
    ("name: a\nspeaking_rate: 5\n", "`speaking_rate: 5` must be a number from 0.5 to 2.0"),
    ("name: a\nspeaking_rate: fast\n", "`speaking_rate: fast` must be a number"),
    ("name: a\nloudness_target_dbfs: 0\n", "`loudness_target_dbfs: 0` must be a number from -40.0 to -6.0"),
    ("name: a\nsample_rate: 11025\n", "`sample_rate: 11025` must be one of 8000, 16000"),
    ("name: a\nvoice: x\n", "unknown setting(s) voice"),
])
def test_bad_voice_yaml_names_the_file_and_the_problem(tmp_path, yaml_text, message):
    root = tmp_path / "p"
    root.mkdir()
    if yaml_text is not None:
        (root / "voice.yaml").write_text(yaml_text)
    with pytest.raises(VoiceError) as err:
        load_pack(root)
    assert message in str(err.value)
    assert str(root / "voice.yaml") in str(err.value)


def test_missing_directory_and_broken_recordings_are_errors(tmp_path):
    with pytest.raises(VoiceError, match="voice pack directory not found"):
        load_pack(tmp_path / "nope")
    root = make_pack(tmp_path / "p")
    (root / "prompts").mkdir()
    (root / "prompts" / "a.wav").write_bytes(b"RIFF....garbage")
    with pytest.raises(VoiceError, match=r"prompts/a\.wav: not a WAV file \(no RIFF/WAVE header\); expected a WAV of"):
        load_pack(root)
    write_wav(root / "prompts" / "a.wav", np.zeros(0, dtype=np.int16), 16000)
    with pytest.raises(VoiceError, match=r"prompts/a\.wav: the recording is empty"):
        load_pack(root)


def test_orphan_transcripts_and_stray_files_are_warnings(tmp_path):
    root = make_pack(tmp_path / "p")
    (root / "prompts").mkdir()
    (root / "prompts" / "lonely.txt").write_text("hi")
    (root / "prompts" / "notes.docx").write_text("x")
    pack = load_pack(root)
    assert any("lonely.txt: transcript without a recording" in w for w in pack.warnings)
    assert any("notes.docx: ignored" in w for w in pack.warnings)
    assert pack.transcripts == {}


def test_text_key_ignores_case_punctuation_and_curly_quotes():
    assert text_key("I’m here, OK?") == text_key("i'm HERE ok") == "i'm here ok"
    assert text_key("您好，请问") == "您好 请问"


def test_the_voice_is_loaded_once_and_shared(tmp_path):
    a = load_pack(make_pack(tmp_path / "a"))
    b = load_pack(make_pack(tmp_path / "b", "name: bob\nlanguage: en\n"))
    assert a.voice is b.voice  # same model, same speaking rate: one Piper session in the process
    assert a.voice.sample_rate == 22050
    faster = load_pack(make_pack(tmp_path / "c", "name: c\nlanguage: en\nspeaking_rate: 1.5\n"))
    assert faster.voice is not a.voice


# ------------------------------------------------------------------ level helpers and import


def test_level_helpers_on_known_signals():
    rate = 16000
    x = pcm(np.concatenate([np.zeros(rate), tone(1.0, rate, 0.1), np.zeros(rate // 2)]))
    assert abs(active_dbfs(x, rate) - 20 * np.log10(0.1 / np.sqrt(2))) < 0.2  # the tone's RMS, silence ignored
    start, end = speech_bounds(x, rate, margin_ms=50)
    assert abs(start - (rate - 800)) <= 160 and abs(end - (2 * rate + 800)) <= 160
    noisy = pcm(noise(2.0, rate, -45.0))
    assert abs(noise_floor_dbfs(noisy, rate) - (-45.0)) < 1.5
    assert clipped_samples(pcm(tone(0.1, rate, 1.5))) > 100 and clipped_samples(pcm(tone(0.1, rate, 0.9))) == 0


def test_expected_duration_by_language():
    assert expected_seconds("one two three four five six seven eight nine ten eleven twelve thirteen", "en") == 5.0
    assert expected_seconds("It costs $5.", "en") == pytest.approx(4 / 2.6)  # "It costs five dollars"
    assert expected_seconds("您好请问是张先生吗", "zh") == pytest.approx(9 / 4.5)
    assert expected_seconds("", "en") is None


def test_import_detects_clipping_and_trims_leading_silence(tmp_path):
    pack = load_pack(make_pack(tmp_path / "p"))
    rate = 44100
    take = np.concatenate([noise(0.6, rate, -70), tone(1.2, rate, 1.4), noise(0.3, rate, -70, seed=1)])
    src = tmp_path / "raw" / "greet.no_input.1.wav"
    src.parent.mkdir()
    write_wav(src, pcm(take), rate)
    result = import_recording(src, pack, "greet.no_input.1", "Sorry, I didn't hear anything.")
    assert result.clipped > 1000
    assert any(f.startswith("clipping:") for f in result.flags)
    assert 500 <= result.trimmed_ms[0] <= 580  # 600 ms of silence, 50 ms margin kept (10 ms frames)
    assert 200 <= result.trimmed_ms[1] <= 280
    assert abs(result.seconds - 1.3) < 0.05
    assert not any(f.startswith("noisy") for f in result.flags)
    out, out_rate = read_wav(pack.prompts_dir / "greet.no_input.1.wav")
    assert out_rate == 16000 and abs(len(out) / out_rate - result.seconds) < 0.01
    assert abs(active_dbfs(out, out_rate) - pack.loudness_target_dbfs) < 0.5
    assert (pack.prompts_dir / "greet.no_input.1.txt").read_text().strip() == "Sorry, I didn't hear anything."


def test_import_flags_noise_quiet_takes_and_silence(tmp_path):
    pack = load_pack(make_pack(tmp_path / "p"))
    rate = 16000
    noisy = tmp_path / "noisy.wav"
    write_wav(noisy, pcm(np.concatenate([noise(0.5, rate, -42), tone(1.0, rate, 0.3) + noise(1.0, rate, -42, 2)])), rate)
    flags = import_recording(noisy, pack, "noisy").flags
    assert any(f.startswith("noisy: noise floor -4") for f in flags), flags
    quiet = tmp_path / "quiet.wav"
    write_wav(quiet, pcm(np.concatenate([np.zeros(rate // 2), tone(1.0, rate, 0.01)])), rate)
    result = import_recording(quiet, pack, "quiet")
    assert any(f.startswith("quiet: speech at -43 dBFS") for f in result.flags), result.flags
    assert result.gain_db == pytest.approx(23.0, abs=0.5)
    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(rate, dtype=np.int16), rate)
    result = import_recording(silent, pack, "silent")
    assert not result.written and "no speech found" in result.flags[0]
    assert not (pack.prompts_dir / "silent.wav").exists()


@needs_speech
def test_import_checks_length_against_the_text(tmp_path):
    pack = load_pack(make_pack(tmp_path / "p"))
    right = import_recording(SPEECH_0880, pack, "a", "He was not an ill disposed young man.")
    assert right.expected_s == pytest.approx(8 / 2.6)
    assert not any(f.startswith("length") for f in right.flags), right.flags
    wrong = import_recording(SPEECH_0880, pack, "b", "Thanks for your time. An advisor will follow up with you. "
                                                     "Goodbye, and have a wonderful rest of your day, all of you.")
    assert any(f.startswith("length: 3.0 s for text expected to take ~8.8 s") for f in wrong.flags), wrong.flags
    short = import_recording(SPEECH_0880, pack, "c", "Yes.")
    assert any(f.startswith("length:") for f in short.flags)


# ------------------------------------------------------------------ the CLI


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    voicecli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    code = args.run(args)
    out = capsys.readouterr()
    return code, out.out + out.err


@needs_speech
def test_voice_import_reports_every_file(tmp_path, capsys):
    root = make_pack(tmp_path / "pack")
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copy(SPEECH_0880, raw / "handoff.hold.1.wav")  # 3 s for a ~3.5 s text: fine
    write_wav(raw / "goodbye_limit.say.1.wav", pcm(np.concatenate([np.zeros(8000), tone(3.0, 16000, 1.3)])), 16000)
    shutil.copy(SPEECH_0880, raw / "my take.wav")
    shutil.copy(SPEECH_0880, raw / "greet.say.1.wav")  # dynamic: must be recorded in parts
    shutil.copy(SPEECH_0880, raw / "bonus.wav")
    (raw / "readme.md").write_text("notes")
    (raw / "broken.wav").write_bytes(b"RIFF nope")
    code, out = run_cli(["voice", "import", str(raw), str(root), "--flow", str(FLOW)], capsys)
    assert code == 1  # broken.wav failed
    assert "handoff.hold.1: 2." in out
    assert "goodbye_limit.say.1:" in out and "! clipping:" in out
    assert "my take.wav: skipped: 'my take' is not a prompt id" in out
    assert "greet.say.1.wav: skipped: greet.say.1 has variables" in out and "greet.say.1.part1" in out
    assert "! not a prompt of flow lead_screening_en" in out
    assert "readme.md: skipped: not a .wav" in out
    assert "broken.wav: failed:" in out
    assert "still to record (" in out and "handoff.hold.1" not in out.split("still to record")[1]
    assert "imported 3, flagged 3, skipped 3, failed 1" in out
    pack = load_pack(root)
    assert set(pack.prompt_ids()) == {"handoff.hold.1", "goodbye_limit.say.1", "bonus"}
    assert pack.transcripts["handoff.hold.1"] == "Our advisor will be with you in just a moment."


def test_voice_script_lists_prompts_fragments_and_dynamic_ones(tmp_path, capsys):
    code, out = run_cli(["voice", "script", str(FLOW), "-o", str(tmp_path / "s")], capsys)
    assert code == 0 and "21 prompts and 8 fragments to record, 4 dynamic prompts" in out
    rows = list(csv.DictReader(io.StringIO((tmp_path / "s" / "script.csv").read_text())))
    by_id = {r["prompt_id"]: r for r in rows}
    assert by_id["handoff.hold.1"]["text"] == "Our advisor will be with you in just a moment."
    assert "pitch.no_input.1" in by_id["greet.no_input.1"]["also"].split()  # the same re-prompt is recorded once
    assert "pitch.no_input.1" not in by_id
    assert by_id["greet.say.1.part1"] == {**by_id["greet.say.1.part1"], "kind": "fragment", "text": "Hi, this is"}
    assert by_id["greet.say.1"]["kind"] == "dynamic"
    assert by_id["greet.say.1"]["variables"] == "agent_name company customer_name"
    md = (tmp_path / "s" / "script.md").read_text()
    assert "## Prompts (21)" in md and "## Fragments around variables" in md and "## Dynamic prompts" in md
    assert "| `greet.say.1.part3` | Am I speaking with |" in md


def test_static_prompt_ids_are_stable_and_honour_explicit_ids():
    flow = load_flow(FLOW)
    specs = static_prompts(flow)
    ids = [s.prompt_id for s in specs]
    assert len(ids) == len(set(ids))
    assert {"greet.say.1", "greet.no_input.1", "greet.no_match.1", "pitch.say.2", "handoff.hold.1"} <= set(ids)
    assert "wrong_person.no_input.1" not in ids  # wrong_person does not listen: no re-prompt can be said
    dynamic = ["greet.say.1", "disclosure.say.1", "robot_answer.say.1", "wrong_person.confirm.1"]
    assert [s.prompt_id for s in specs if s.dynamic] == dynamic
    greet = next(s for s in specs if s.prompt_id == "greet.say.1")
    assert [f.text for f in fragment_prompts(greet)] == ["Hi, this is", "from", "Am I speaking with"]
    text = """
flow: {id: t, version: "1", language: en, start: a}
nodes:
  a:
    say: [{prompt: welcome_v2, text: "Welcome!"}, "Hello {{name}}."]
    hangup: done
variables:
  name: {default: "you"}
"""
    specs = static_prompts(load_flow_text(text))
    assert [(s.prompt_id, s.template_vars) for s in specs] == [("welcome_v2", ()), ("a.say.2", ("name",))]


def test_wav_files_written_by_import_are_plain_16_bit_mono(tmp_path):
    pack = load_pack(make_pack(tmp_path / "p", "name: a\nlanguage: en\nsample_rate: 8000\n"))
    src = tmp_path / "x.wav"
    write_wav(src, pcm(np.concatenate([np.zeros(4800), tone(1.0, 48000, 0.5)])), 48000)
    import_recording(src, pack, "x")
    with wave.open(str(pack.prompts_dir / "x.wav")) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
