"""PocketSphinx backend on human speech (Debian's pocketsphinx-testdata), at 16 kHz and downsampled to 8 kHz."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from tests.data_support import needs_data
from voicebot.asr.base import UNK, AsrResult, ModelError, Word
from voicebot.asr.pocketsphinx_asr import PocketsphinxModel, PocketsphinxStream, hint_lm_text, spell, sure_text
from voicebot.asr.registry import AsrConfig, load_asr
from voicebot.audio.frame import AudioFrame
from voicebot.audio.resample import resample
from voicebot.config import ConfigError, load_config
from voicebot.dialog.loader import load_flow
from voicebot.dialog.machine import build_matcher

DATA = Path("/usr/share/pocketsphinx/test/data")
ROOT = Path(__file__).resolve().parent.parent
pytestmark = needs_data(DATA.is_dir(), "pocketsphinx-testdata")
HINTS = ["yes", "no", "not interested", "stop calling me", "tell me more", "send me a text message"]


def load_raw(name: str, rate: int = 16000) -> np.ndarray:
    """s16le 16 kHz raw test recording, resampled to ``rate``."""
    return resample(np.fromfile(DATA / name, dtype="<i2"), 16000, rate)


def load_wav(name: str, rate: int = 16000) -> np.ndarray:
    with wave.open(str(DATA / name)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return resample(audio, w.getframerate(), rate)


def word_errors(ref: str, hyp: str) -> float:
    """Word error rate of ``hyp`` against ``ref``."""
    r, h = ref.split(), hyp.split()
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
    return d[len(h)] / len(r)


def decode(stream: PocketsphinxStream, audio: np.ndarray, rate: int) -> tuple[list[AsrResult], AsrResult]:
    """Feed 20 ms frames; (partials, final)."""
    step, partials = rate // 50, []
    for seq, i in enumerate(range(0, len(audio), step)):
        result = stream.accept(AudioFrame(audio[i:i + step].tobytes(), rate, seq, captured_at=i / rate))
        if result is not None:
            partials.append(result)
    return partials, stream.finish()


@pytest.fixture(scope="module")
def model() -> PocketsphinxModel:
    return PocketsphinxModel()


@pytest.mark.parametrize("rate", [16000, 8000])
def test_free_decoding_goforward(model: PocketsphinxModel, rate: int) -> None:
    stream = model.stream(rate)
    partials, final = decode(stream, load_raw("goforward.raw", rate), rate)
    assert final.final and word_errors("go forward ten meters", final.text) <= 0.25, final.text
    assert partials and not any(p.final for p in partials)
    assert 0.0 < final.confidence <= 1.0


def test_partials_grow_before_the_final(model: PocketsphinxModel) -> None:
    partials, final = decode(model.stream(8000, [*HINTS, "go forward ten meters"]), load_raw("goforward.raw", 8000), 8000)
    assert len(partials) >= 3
    assert [p.at for p in partials] == sorted(p.at for p in partials)
    assert len(partials[0].text.split()) < len(final.text.split())
    assert partials[-1].text.split()[:2] == final.text.split()[:2]


def test_word_timings_are_monotonic_and_inside_the_audio(model: PocketsphinxModel) -> None:
    audio = load_wav("librivox/sense_and_sensibility_01_austen_64kb-0880.wav", 8000)
    _, final = decode(model.stream(8000), audio, 8000)
    duration = len(audio) / 8000
    assert len(final.words) >= 5
    assert final.text == " ".join(w.text for w in final.words)
    for before, word in zip(final.words, final.words[1:], strict=False):
        assert before.end_s <= word.start_s + 1e-9
    for w in final.words:
        assert 0.0 <= w.start_s <= w.end_s <= duration and 0.0 <= w.confidence <= 1.0


def test_finish_then_a_second_utterance_on_the_same_stream(model: PocketsphinxModel) -> None:
    stream = model.stream(8000, [*HINTS, "go forward ten meters"])
    assert stream.finish() == AsrResult("", final=True)  # nothing fed: an empty final
    audio = load_raw("goforward.raw", 8000)
    first = decode(stream, audio, 8000)[1]
    second = decode(stream, audio, 8000)[1]
    assert first.text == second.text == "go forward ten meters"
    assert abs(first.words[0].start_s - second.words[0].start_s) < 0.1  # times restart with each utterance


@pytest.mark.parametrize("hints", [[], HINTS])
@pytest.mark.parametrize("frames", [1, 2])
def test_a_turn_of_one_or_two_silent_frames_finishes_empty_and_the_stream_goes_on(
        model: PocketsphinxModel, hints: list[str], frames: int) -> None:
    stream = model.stream(8000, hints)  # pocketsphinx has no word segmentation for so little audio
    for seq in range(frames):
        stream.accept(AudioFrame.silence(8000, 20, seq, seq * 0.02))
    final = stream.finish()
    assert (final.final, final.text, final.words) == (True, "", ())
    stream.accept(AudioFrame.silence(8000, 20, frames, frames * 0.02))  # a new utterance starts cleanly
    assert stream.finish().final
    stream.close()


@pytest.mark.parametrize(("name", "phrase"), [("cards/001.wav", "ten of clubs"),
                                               ("cards/005.wav", "eight of spades four of clubs seven of hearts")])
def test_a_hinted_phrase_is_recognised_at_8khz(model: PocketsphinxModel, name: str, phrase: str) -> None:
    audio = load_wav(name, 8000)
    final = decode(model.stream(8000, [*HINTS, phrase]), audio, 8000)[1]
    assert final.text == phrase
    assert final.confidence > 0.7


def test_speech_outside_the_hints_is_not_forced_into_a_hint(model: PocketsphinxModel) -> None:
    audio = load_wav("librivox/sense_and_sensibility_01_austen_64kb-0880.wav", 8000)  # "he was not an ill disposed young man"
    hinted = decode(model.stream(8000, HINTS), audio, 8000)[1]
    in_grammar = decode(model.stream(8000, [*HINTS, "ten of clubs"]), load_wav("cards/001.wav", 8000), 8000)[1]
    assert hinted.text not in HINTS and len(hinted.words) >= 4
    assert hinted.confidence < in_grammar.confidence


def test_hints_change_between_utterances_and_unknown_words_are_dropped(model: PocketsphinxModel) -> None:
    stream = model.stream(16000, ["go forward ten meters"])
    assert decode(stream, load_raw("goforward.raw"), 16000)[1].text == "go forward ten meters"
    stream.set_hints(["ten of clubs", "xyzzyplugh"])
    assert decode(stream, load_wav("cards/001.wav"), 16000)[1].text == "ten of clubs"
    stream.close()


def test_a_frame_at_the_wrong_rate_is_refused(model: PocketsphinxModel) -> None:
    with pytest.raises(ValueError, match="8000 Hz stream"):
        model.stream(8000).accept(AudioFrame.silence(16000))


def test_missing_model_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"does not exist.*mdef.*\.dict"):
        PocketsphinxModel(tmp_path / "nowhere")


def test_incomplete_model_dir(tmp_path: Path) -> None:
    (tmp_path / "am").mkdir()
    (tmp_path / "am" / "mdef").write_bytes(b"BMDF")
    with pytest.raises(ModelError, match=str(tmp_path)) as err:
        PocketsphinxModel(tmp_path)
    for expected in ("means", "variances", "sendump or mixture_weights", "*.dict", "*.lm.bin"):
        assert expected in str(err.value)


def test_broken_acoustic_model_is_a_model_error_not_an_exit(model: PocketsphinxModel, tmp_path: Path) -> None:
    broken = tmp_path / "en-us"
    shutil.copytree(model.model_dir, broken)
    (broken / model.hmm_dir.name / "mdef").write_bytes(b"garbage\n")  # pocketsphinx itself would exit(1) on this
    with pytest.raises(ModelError, match="mdef"):
        PocketsphinxModel(broken)


def test_registry_loads_pocketsphinx_and_names_known_backends() -> None:
    assert load_asr(AsrConfig()).name == "pocketsphinx"
    with pytest.raises(ModelError, match="known backends: none, pocketsphinx, pocketsphinx-pool, vosk"):
        load_asr(AsrConfig(backend="whisper"))
    # pocketsphinx hears English only: another language gets no streaming words (voicebot.asr.silent)
    assert load_asr(AsrConfig(language="ko")).name == "none"


def test_offscript_rejection_is_a_setting_of_the_engine_config(tmp_path: Path) -> None:
    assert load_asr(AsrConfig()).offscript_score is not None  # on by default
    assert load_asr(AsrConfig(offscript_rejection=False)).offscript_score is None
    path = tmp_path / "voicebot.yaml"
    path.write_text("asr:\n  backend: pocketsphinx-pool\n  offscript_rejection: false\n")
    config = load_config(path)
    assert (config.asr_backend, config.asr_offscript_rejection) == ("pocketsphinx-pool", False)
    path.write_text("vad: {name: webrtc}\nasr: {offscript_rejection: sometimes}\n")
    with pytest.raises(ConfigError, match=r"voicebot.yaml:2:28: error: asr.offscript_rejection: expected true or false"):
        load_config(path)


def test_a_closed_stream_hands_its_full_lm_decoder_to_the_next(model: PocketsphinxModel) -> None:
    silence = np.zeros(1600, dtype=np.int16)
    first = model.stream(8000)
    decode(first, silence, 8000)
    decoder = first._free_decoder
    first.close()
    second = model.stream(8000)
    assert decode(second, silence, 8000)[1].final and second._free_decoder is decoder
    second.close()
    with pytest.raises(RuntimeError, match="closed"):
        second.accept(AudioFrame.silence(8000))


def test_every_hint_word_of_the_example_flow_can_be_pronounced(model: PocketsphinxModel) -> None:
    flow = load_flow(ROOT / "examples" / "flows" / "lead_screening_en.yaml")
    phrases = build_matcher(flow).hint_phrases()
    kept, dropped = model.vocabulary(phrases)
    assert dropped == [] and "wechat" in kept  # "wechat" is not in the bundled dictionary: EXTRA_PRONUNCIATIONS
    assert all(w in model.pronunciations for phrase in kept for w in phrase.split())


def test_whatsapp_is_said_with_app_and_a_split_hint_does_not_compete_with_it(model: PocketsphinxModel) -> None:
    assert "W AH T S AE P" in model.pronunciations["whatsapp"]
    assert "W AH T S AA P" not in model.pronunciations["whatsapp"]  # the dictionary's own entry rhymes with "sop"
    assert model.vocabulary(["whatsapp", "whats app", "add you"]) == (["whatsapp", "add you"], [])


def test_words_missing_from_the_dictionary_are_spelled_from_its_words_or_dropped() -> None:
    prons = {"call": ["K AO L"], "back": ["B AE K"], "ca": ["K AA"], "llback": ["B AE K"], "we": ["W IY"],
             "chat": ["CH AE T"], "a": ["AH"]}
    assert spell("callback", prons) == ["K AO L B AE K"]  # two parts: the split with the most phones
    assert spell("wechatback", prons) == ["W IY CH AE T B AE K"]  # three parts
    assert spell("achat", prons) == []  # parts of one letter do not count
    assert spell("xyzzy", prons) == []


def test_unpronounceable_hint_words_are_logged(model: PocketsphinxModel) -> None:
    stream = model.stream(8000)
    with capture_logs() as logs:
        stream.set_hints(["yes", "qwrtzx please"])
    assert [e["words"] for e in logs if e["event"] == "asr.hint_words_unknown"] == [["qwrtzx"]]
    assert stream._hints == ["yes", "please"]


def test_backchannels_and_call_back_times_are_in_the_hint_language_model() -> None:
    arpa = hint_lm_text(["yes", "no"])
    unigrams = {line.split()[1] for line in arpa.split("\\2-grams:")[0].splitlines() if len(line.split()) >= 2}
    assert {"uh", "huh", "mm", "hmm", "mhm", "um", "okay", "yeah"} <= unigrams
    assert {"tomorrow", "evening", "monday", "seven", "o'clock"} <= unigrams


def test_unsure_words_of_a_final_come_out_as_unk(model: PocketsphinxModel) -> None:
    audio = load_wav("cards/001.wav", 8000)  # "ten of clubs", none of it a hint: short, so not rejected whole
    final = decode(model.stream(8000, HINTS), audio, 8000)[1]
    unsure = [w for w in final.words if w.confidence < model.min_word_posterior]
    assert unsure and final.text.split().count(UNK) == len(unsure)
    assert [t for t in final.text.split() if t != UNK] == [w.text for w in final.words if w not in unsure]


@pytest.mark.parametrize("name", ["librivox/sense_and_sensibility_01_austen_64kb-0870.wav",
                                  "librivox/sense_and_sensibility_01_austen_64kb-0920.wav"])
def test_long_off_script_speech_is_rejected_whole(model: PocketsphinxModel, name: str) -> None:
    """Read-aloud Austen with a greeting node's hints: the hint LM bends it into hint words; a phone loop fits far better."""
    flow = load_flow(ROOT / "examples" / "flows" / "lead_screening_en.yaml")
    hints = build_matcher(flow).hint_phrases()
    final = decode(model.stream(8000, hints), load_wav(name, 8000), 8000)[1]
    assert final.fit is not None and model.offscript_score is not None and final.fit < model.offscript_score
    assert set(final.text.split()) == {UNK} and final.confidence == 0.0
    assert len(final.words) >= 10  # what it heard is kept


def test_hinted_speech_fits_and_is_kept(model: PocketsphinxModel) -> None:
    final = decode(model.stream(8000, [*HINTS, "go forward ten meters"]), load_raw("goforward.raw", 8000), 8000)[1]
    assert final.fit is not None and model.offscript_score is not None and final.fit > model.offscript_score
    assert final.text == "go forward ten meters"
    unhinted = decode(model.stream(8000), load_raw("goforward.raw", 8000), 8000)[1]
    assert unhinted.fit is None  # the full LM has no hints to measure


def test_off_script_rejection_can_be_switched_off() -> None:
    model = PocketsphinxModel(offscript_score=None)
    flow = load_flow(ROOT / "examples" / "flows" / "lead_screening_en.yaml")
    audio = load_wav("librivox/sense_and_sensibility_01_austen_64kb-0920.wav", 8000)
    final = decode(model.stream(8000, build_matcher(flow).hint_phrases()), audio, 8000)[1]
    assert final.fit is None and set(final.text.split()) != {UNK}


def test_the_phone_loop_runs_only_for_turns_long_enough_to_judge(model: PocketsphinxModel) -> None:
    stream = model.stream(8000, HINTS)
    short = decode(stream, load_wav("cards/001.wav", 8000)[: 8000 * 9 // 10], 8000)[1]  # 0.9 s
    assert short.fit is None and stream._phones.decoder is None  # never started: no cost for short answers
    long = decode(stream, load_wav("librivox/sense_and_sensibility_01_austen_64kb-0880.wav", 8000), 8000)[1]
    assert long.fit is not None and stream._phones.decoder is not None
    stream.close()


def test_a_hint_phrase_is_judged_by_its_mean_posterior() -> None:
    words = [Word("wait", 0.0, 0.2, 0.8), Word("stop", 0.2, 0.5, 0.03), Word("calling", 0.5, 0.9, 0.99),
             Word("me", 0.9, 1.0, 0.16)]
    assert sure_text(words, ["stop calling", "yes"], 0.3) == "wait stop calling [unk]"
    assert sure_text(words, ["yes"], 0.3) == "wait [unk] calling [unk]"
    weak = [Word("add", 0.0, 0.2, 0.1), Word("you", 0.2, 0.4, 0.3)]
    assert sure_text(weak, ["add you"], 0.3) == "[unk] you"  # the phrase's mean (0.2) is below the floor too
