"""Mandarin through audio: the default voice (Kokoro with misaki's phonemes and tone sandhi), Whisper's Chinese in
simplified characters, the streaming pass for a language no shipped recogniser hears, and the speech check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voicebot.asr.base import ModelError
from voicebot.asr.registry import AsrConfig, for_language, load_asr
from voicebot.asr.silent import SilentModel
from voicebot.asr.whisper import simplified
from voicebot.audio.frame import AudioFrame
from voicebot.dialog.loader import load_flow
from voicebot.pipeline import PipelineConfig, default_pack, load_pipeline
from voicebot.sim.caller import CallerScriptError, load_caller
from voicebot.sim.speechcheck import errors, speech_lines, units
from voicebot.tts.base import VoiceError
from voicebot.tts.kokoro_voice import mandarin_ipa
from voicebot.tts.pack import load_pack

ROOT = Path(__file__).resolve().parent.parent
ZH_FLOW = ROOT / "examples" / "flows" / "lead_screening_zh.yaml"


# ------------------------------------------------------------------ phonemes


@pytest.mark.parametrize(("text", "sandhi", "citation"), [
    ("你好", "ni↗xau↓", "ni↓xau↓"),        # third tone before a third tone rises
    ("展览馆", "ꭧa↗nla↗nkwa↓n", "ꭧa↓nla↓nkwa↓n"),  # three third tones: the first two rise
    ("一条", "i↘tʰjau↗", "i→tʰjau↗"),      # 一 before a second tone falls
    ("不对", "pu↗twei↘", "pu↘ twei↘"),     # 不 before a fourth tone rises (merged into one word first)
])
def test_tone_sandhi_changes_the_tones_kokoro_is_given(text: str, sandhi: str, citation: str) -> None:
    assert mandarin_ipa(text) == sandhi
    assert mandarin_ipa(text, sandhi=False) == citation


def test_digits_are_read_as_chinese_numbers_and_punctuation_is_kept() -> None:
    assert mandarin_ipa("5个，") == mandarin_ipa("五个") + ","


# ------------------------------------------------------------------ the voice a zh pack speaks with


def test_a_mandarin_pack_speaks_with_kokoro_and_an_english_one_with_piper() -> None:
    assert default_pack("zh").speaker == "kokoro:jm_kumo"
    assert default_pack("en").speaker == "default"


@pytest.mark.parametrize(("yaml_text", "message"), [
    ("name: a\nlanguage: en\nmodel: kokoro:jf_alpha\n", "speaks Mandarin only (language: zh)"),
    ("name: a\nlanguage: zh\nmodel: kokoro:nobody\n", "no such Kokoro style; use kokoro: followed by one of jf_alpha"),
])
def test_a_bad_kokoro_model_names_the_file_and_the_fix(tmp_path: Path, yaml_text: str, message: str) -> None:
    (tmp_path / "voice.yaml").write_text(yaml_text)
    with pytest.raises(VoiceError) as err:
        load_pack(tmp_path)
    assert message in str(err.value) and str(tmp_path / "voice.yaml") in str(err.value)


def test_a_pack_naming_a_kokoro_style_speaks_mandarin_at_24_khz(tmp_path: Path) -> None:
    (tmp_path / "voice.yaml").write_text("name: a\nlanguage: zh\nmodel: kokoro:jm_kumo\n")
    voice = load_pack(tmp_path).voice
    audio = np.concatenate(list(voice.synthesize("您好。")))
    assert voice.sample_rate == 24000 and voice.language == "zh"
    assert 0.3 < len(audio) / 24000 < 2.0 and np.abs(audio).max() > 3000


# ------------------------------------------------------------------ hearing Mandarin


def test_whisper_chinese_comes_back_in_simplified_characters() -> None:
    assert simplified("您現在需要顧問給您詳細解答一下嗎") == "您现在需要顾问给您详细解答一下吗"
    assert simplified("乾燥") == "干燥" and simplified("乾隆") == "乾隆"  # phrase-aware, not one character at a time


def test_pocketsphinx_on_a_mandarin_flow_becomes_the_silent_streaming_pass() -> None:
    assert for_language(AsrConfig("pocketsphinx-pool", None, "zh")).backend == "none"
    assert for_language(AsrConfig("pocketsphinx", None, "en")).backend == "pocketsphinx"
    assert for_language(AsrConfig("vosk", Path("/models/vosk-cn"), "zh")).backend == "vosk"
    model = load_asr(AsrConfig("pocketsphinx", None, "zh"))
    assert isinstance(model, SilentModel) and model.language == "zh"
    stream = model.stream(8000)
    frame = AudioFrame.from_array(np.full(160, 1000, dtype=np.int16), 8000, captured_at=12.5)
    assert stream.accept(frame) is None
    final = stream.finish()
    assert final.final and final.text == "" and final.at == 12.5


def test_a_mandarin_flow_without_the_accurate_pass_is_refused_before_anything_loads(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="its turns need the accurate pass") as err:
        load_pipeline(load_flow(ZH_FLOW), PipelineConfig(cache_dir=tmp_path, accurate=None))
    assert str(ZH_FLOW) in str(err.value)
    assert not list(tmp_path.iterdir()), "nothing may be rendered for a pipeline that cannot hear"


# ------------------------------------------------------------------ the caller's voice


@pytest.mark.parametrize(("voice", "message"), [
    ("kokoro:nobody", "no such Kokoro style"),
    ("packs/missing", "no voice pack at"),
])
def test_a_bad_caller_voice_names_the_script(tmp_path: Path, voice: str, message: str) -> None:
    script = tmp_path / "caller.yaml"
    script.write_text(f"voice: {voice}\nturns:\n  - say: 是的\n", encoding="utf-8")
    with pytest.raises(CallerScriptError, match=message) as err:
        load_caller(script)
    assert str(script) in str(err.value)


def test_a_caller_voice_is_a_kokoro_style_or_a_pack_folder_relative_to_the_script(tmp_path: Path) -> None:
    (tmp_path / "packs" / "li").mkdir(parents=True)
    (tmp_path / "packs" / "li" / "voice.yaml").write_text("name: li\nlanguage: zh\n")
    for voice, expected in (("kokoro:jm_kumo", "kokoro:jm_kumo"), ("packs/li", str(tmp_path / "packs" / "li"))):
        (tmp_path / "caller.yaml").write_text(f"voice: {voice}\nturns:\n  - say: 是的\n", encoding="utf-8")
        assert load_caller(tmp_path / "caller.yaml").voice == expected


# ------------------------------------------------------------------ the speech check's arithmetic


def test_mandarin_errors_are_counted_in_characters_and_english_in_words() -> None:
    assert units("您好，5个！", "zh") == list("您好五个")
    assert errors("您现在需要顾问吗？", "您現在需要顧問嗎", "zh") == (0, 8)
    assert errors("我是北风理财的小王", "我是北风里才的小王", "zh") == (2, 9)
    assert errors("Hello, world.", "hello word", "en") == (1, 2)


def test_the_speech_report_lists_the_misheard_prompts_only() -> None:
    report = {"model": "whisper base", "channel": "8 kHz PCMU", "unit": "characters", "errors": 2, "units": 20,
              "error_rate": 0.1, "prompts": [{"text": "好的", "heard": "好的", "errors": 0, "units": 2},
                                              {"text": "北风理财", "heard": "北风里才", "errors": 2, "units": 4}]}
    lines = speech_lines(report)
    assert lines[0].startswith("bot speech heard by whisper base over 8 kHz PCMU: CER 10.0 % (2/20 characters")
    assert len(lines) == 2 and "北风理财  ->  北风里才" in lines[1]


# ------------------------------------------------------------------ a Mandarin call through audio

CALLER_YES = "是的，是我。"
MINI_FLOW = """\
flow: {id: zh_mini, version: "1", language: zh, start: greet}
intents:
  yes: {keywords: [是的, 是我, 对, 好的]}
  no: {keywords: [不是, 不用]}
nodes:
  greet:
    say: "您好，请问是张先生吗？"
    on: {yes: thanks, no: bye}
  thanks:
    say: "好的，谢谢您。"
    hangup: completed
  bye:
    say: "好的，再见。"
    hangup: wrong_person
"""


def test_a_mandarin_call_through_audio_walks_the_flow_and_the_bot_is_understood(tmp_path: Path) -> None:
    """Bot: the Mandarin default voice (Kokoro jm_kumo); caller: Kokoro's female jf_tebukuro over an 8 kHz line; turns
    heard by the silent streaming pass and Whisper base. Then what the bot said, heard over the line."""
    from voicebot.sim.audio import run_call
    from voicebot.sim.caller import CallerScript, CallerTurn, SimCaller, raw_or_wav
    from voicebot.sim.run import caller_synth, check_speech

    (tmp_path / "zh_mini.yaml").write_text(MINI_FLOW, encoding="utf-8")
    pipeline = load_pipeline(load_flow(tmp_path / "zh_mini.yaml"), PipelineConfig(rate=8000, cache_dir=tmp_path / "c",
                                                                                   accurate="base"))
    assert pipeline.asr.name == "none" and pipeline.cache.pack.speaker == "kokoro:jm_kumo"
    script = CallerScript((CallerTurn("say", CALLER_YES),), voice="kokoro:jf_tebukuro")
    caller = SimCaller(script, 8000, synth=caller_synth(script.voice, pipeline.cache), read_audio=raw_or_wav)
    result = run_call(pipeline.session(charge_compute=True), caller)

    outcome = result.session.machine.outcome
    assert outcome.path == ["greet", "thanks"] and outcome.disposition == "completed", outcome.turns
    speech = check_speech(pipeline, result.session.spoken, 8000)
    assert speech["unit"] == "characters" and [p["node"] for p in speech["prompts"]] == ["greet", "thanks"]
    assert speech["error_rate"] <= 0.25, speech["prompts"]
