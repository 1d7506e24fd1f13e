"""Piper voice (real joe voice) and the benches' sentence stream (bench/sentence_stream.py): frames, latency,
barge-in, joins, errors."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.sentence_stream import SentenceStream, fade_edges, plan_pieces, split_head, trim_silence, voice_stream
from voicebot.audio.frame import AudioFrame
from voicebot.tts.base import Voice, VoiceError
from voicebot.tts.piper_voice import PiperVoice, default_model_paths, default_voice
from voicebot.tts.sentences import split_sentences

THREE = ("Thank you for calling the clinic today. Your appointment is on Monday at nine in the morning. "
         "Please bring your insurance card with you.")


@pytest.fixture(scope="module")
def voice() -> PiperVoice:
    return default_voice()


def _loud_diffs(x: np.ndarray, rate: int) -> np.ndarray:
    """|x[i] - x[i-1]| inside 5 ms windows louder than -40 dBFS (speech, not pauses)."""
    window = rate // 200
    usable = len(x) // window * window
    blocks = x[:usable].astype(np.int32).reshape(-1, window)
    loud = np.abs(blocks).max(axis=1) > 0.01 * 32768
    return np.abs(np.diff(blocks[loud], axis=1)).ravel()


# --------------------------------------------------------------------------- the real voice


def test_default_voice_is_a_voice(voice: PiperVoice) -> None:
    as_voice: Voice = voice  # structural: PiperVoice implements the Voice protocol
    assert as_voice.sample_rate == 22050
    assert (voice.name, voice.language, voice.sample_rate) == ("en_US-joe-medium", "en", 22050)
    assert voice.session.get_session_options().intra_op_num_threads == 1
    assert default_voice() is voice  # loaded once per process


def test_synthesize_a_sentence(voice: PiperVoice) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    sentences = list(voice.synthesize(text))
    assert len(sentences) == 1
    audio = sentences[0]
    assert audio.dtype == np.int16
    seconds = len(audio) / voice.sample_rate
    assert 0.2 * 9 <= seconds <= 0.8 * 9  # 0.2-0.8 s per word
    rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2))
    assert 20 * np.log10(rms / 32768) > -40  # speech, not silence
    assert np.abs(audio).max() < 32767  # no clipping


def test_synthesize_splits_and_normalizes(voice: PiperVoice) -> None:
    ids = voice.phoneme_ids("It costs twelve dollars and fifty cents.")
    assert ids[0] == voice.config.phoneme_id_map["^"][0] and ids[-1] == voice.config.phoneme_id_map["$"][0]
    assert len(list(voice.synthesize("Hi. It costs $12.50!"))) == 2


@pytest.mark.parametrize(("rate", "size"), [(8000, 320), (16000, 640)])
def test_stream_yields_exact_frames(voice: PiperVoice, rate: int, size: int) -> None:
    stream = voice_stream(voice, "Hello. How are you?", rate)
    assert isinstance(stream, SentenceStream)
    frames = list(stream)
    assert frames and all(len(f.samples) == size and f.rate == rate and f.captured_at == 0.0 for f in frames)
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert stream.done and stream.join(1.0)
    assert abs(stream.audio_seconds - len(frames) * 0.02) < 1e-6


def test_first_audio_before_whole_text(voice: PiperVoice) -> None:
    stream = voice_stream(voice, THREE, 8000)
    frames = list(stream)
    assert len(stream.pieces) >= 3 and frames
    assert stream.first_audio_s is not None
    assert stream.first_audio_s < stream.synth_seconds  # heard while the rest is synthesized


def test_no_clicks_at_joins(voice: PiperVoice) -> None:
    """At each join (sentence and fast-start cut) the sample-to-sample step is smaller than a typical step in speech.

    A click is a step larger than the signal's own steps; joins are faded to silence, so the
    largest step within 2 samples of a join must stay under the median step of voiced audio.
    """
    rate = 16000
    stream = voice_stream(voice, THREE, rate)
    x = np.concatenate([f.to_array() for f in stream]).astype(np.int32)
    joins = stream.piece_ends[:-1]
    assert len(joins) >= 3  # a fast-start cut plus two sentence joins
    typical = float(np.median(_loud_diffs(x, rate)))
    for j in joins:
        step = int(np.abs(np.diff(x[j - 3:j + 3])).max())
        assert step <= typical, (j, step, typical)


def test_cancel_mid_utterance(voice: PiperVoice) -> None:
    text = " ".join([THREE] * 2)
    longest = max(split_sentences(text), key=len)
    started = time.perf_counter()
    voice.synthesize_sentence(longest)
    one_sentence_s = time.perf_counter() - started

    calls: list[str] = []

    def counting(sentence: str) -> np.ndarray:
        calls.append(sentence)
        return voice.synthesize_sentence(sentence)

    stream = SentenceStream(counting, text, 8000, source_rate=voice.sample_rate, fast_start=False)
    for _ in range(5):
        next(stream)
    stream.cancel()
    cancelled_at = time.perf_counter()
    assert list(stream) == [] and stream.poll() is None and stream.done
    assert stream.join(timeout=2 * one_sentence_s + 0.5), "worker still running well after one sentence"
    assert time.perf_counter() - cancelled_at <= 2 * one_sentence_s + 0.5
    assert len(calls) <= 2 < len(stream.pieces)  # the sentence in flight at most, nothing after it


def test_parallel_streams_and_phonemizer_lock(voice: PiperVoice) -> None:
    expected = voice.phoneme_ids("Your balance is due on Friday.")
    results: list[list[int]] = []
    counts: list[int] = []

    def phonemize() -> None:
        results.extend(voice.phoneme_ids("Your balance is due on Friday.") for _ in range(20))

    def speak() -> None:
        counts.append(len(list(voice_stream(voice, "Good morning, sir.", 8000))))

    threads = [threading.Thread(target=f) for f in (phonemize, phonemize, speak, speak)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert all(r == expected for r in results) and len(results) == 40
    assert len(counts) == 2 and counts[0] > 0 and abs(counts[0] - counts[1]) < 30


# --------------------------------------------------------------------------- broken voices


def _joe_config() -> dict[str, object]:
    return dict(json.loads(default_model_paths()[1].read_text(encoding="utf-8")))


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(VoiceError, match=r"nope\.onnx.*MODEL\.onnx plus MODEL\.onnx\.json"):
        PiperVoice.load(tmp_path / "nope.onnx")


def test_missing_config(tmp_path: Path) -> None:
    model = tmp_path / "x.onnx"
    model.write_bytes(b"")
    with pytest.raises(VoiceError, match=r"x\.onnx\.json.*not found.*MODEL\.onnx\.json"):
        PiperVoice.load(model)


def test_corrupt_config(tmp_path: Path) -> None:
    model, config = tmp_path / "x.onnx", tmp_path / "x.onnx.json"
    model.write_bytes(b"")
    config.write_text("{not json", encoding="utf-8")
    with pytest.raises(VoiceError, match=r"x\.onnx\.json.*JSON"):
        PiperVoice.load(model)
    raw = _joe_config()
    del raw["phoneme_id_map"]
    config.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(VoiceError, match=r"missing key 'phoneme_id_map'"):
        PiperVoice.load(model)


def test_corrupt_model(tmp_path: Path) -> None:
    model = tmp_path / "x.onnx"
    model.write_bytes(b"this is not an onnx model" * 10)
    (tmp_path / "x.onnx.json").write_text(json.dumps(_joe_config()), encoding="utf-8")
    with pytest.raises(VoiceError, match=r"x\.onnx: onnxruntime cannot load it.*MODEL\.onnx plus"):
        PiperVoice.load(model)


def test_unsupported_phoneme_type(tmp_path: Path) -> None:
    raw = _joe_config() | {"phoneme_type": "pinyin"}
    (tmp_path / "x.onnx.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(VoiceError, match="phoneme_type 'pinyin' is not supported"):
        PiperVoice.load(tmp_path / "x.onnx")


def test_unknown_espeak_voice(tmp_path: Path) -> None:
    raw = _joe_config() | {"espeak": {"voice": "xx-nope"}}
    (tmp_path / "x.onnx.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(VoiceError, match="espeak-ng has no voice 'xx-nope'"):
        PiperVoice.load(tmp_path / "x.onnx")


def test_missing_zh_voice(tmp_path: Path) -> None:
    with pytest.raises(VoiceError, match=r"zh_CN-huayan-medium\.onnx"):
        PiperVoice.load(tmp_path / "zh_CN-huayan-medium.onnx")


def test_zh_config_uses_cmn_and_chinese_sentences(tmp_path: Path) -> None:
    """A user-supplied zh voice: language and espeak voice come from its config (the joe model stands in)."""
    model = tmp_path / "zh_CN-fake-medium.onnx"
    model.symlink_to(default_model_paths()[0])
    raw = _joe_config() | {"espeak": {"voice": "cmn"}, "language": {"code": "zh_CN", "family": "zh"}}
    (tmp_path / "zh_CN-fake-medium.onnx.json").write_text(json.dumps(raw), encoding="utf-8")
    zh = PiperVoice.load(model)
    assert (zh.name, zh.language, zh.config.espeak_voice) == ("zh_CN-fake-medium", "zh", "cmn")
    phonemes = "".join(zh.phonemize("你好")[0])
    assert any(c in phonemes for c in "12345")  # espeak's cmn voice marks tones with digits
    ids = zh.phoneme_ids("您的余额是一千二百八十元。")
    assert len(ids) > 20
    stream = voice_stream(zh, "您好。您的余额是¥1,280。请问还有什么可以帮您？", 8000, fast_start=False)
    assert [p.text for p in stream.pieces] == ["您好。", "您的余额是一千二百八十元。", "请问还有什么可以帮您？"]
    stream.cancel()
    assert stream.join(10)


# --------------------------------------------------------------------------- stream mechanics (no model)


def _tone(seconds: float = 0.3, rate: int = 22050, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 200 * t)).astype(np.int16)


def _fake(delay: float = 0.0, seconds: float = 0.3) -> Callable[[str], np.ndarray]:
    def synth(text: str) -> np.ndarray:
        time.sleep(delay)
        return _tone(seconds)
    return synth


def test_split_sentences() -> None:
    assert split_sentences("Hi there. How are you? Fine; thanks!\nBye") == [
        "Hi there.", "How are you?", "Fine;", "thanks!", "Bye"]
    assert split_sentences("Call Dr. Smith at 3.5 now.") == ["Call Dr. Smith at 3.5 now."]
    assert split_sentences("你好。今天天气很好！是吗？好；再见", "zh") == ["你好。", "今天天气很好！", "是吗？", "好；", "再见"]
    long = "one two three four five six seven eight nine ten, " * 3 + "end."
    assert [len(s.split()) for s in split_sentences(long)] == [20, 11]
    assert split_sentences("") == [] and split_sentences("  \n ") == []


def test_split_head() -> None:
    assert split_head("Your appointment is on Monday at three thirty PM.") == (
        "Your appointment", "is on Monday at three thirty PM.")
    assert split_head("Well then, your appointment is on Monday at three.") == (
        "Well then,", "your appointment is on Monday at three.")
    assert split_head("Hello there my friend.") is None  # short sentences are not cut
    assert split_head("您好，您的余额是一千二百八十元。", "zh") == ("您好，", "您的余额是一千二百八十元。")
    assert split_head("您的余额是一千二百八十元。", "zh") is None
    pieces = plan_pieces("Your appointment is on Monday at three thirty PM. See you.")
    assert [(p.cut_before, p.cut_after) for p in pieces] == [(False, True), (True, False), (False, False)]


def test_fade_and_trim() -> None:
    rate = 16000
    square = np.full(800, 10000, dtype=np.int16)
    faded = fade_edges(square, rate)
    assert abs(int(faded[0])) < 200 and abs(int(faded[-1])) < 200 and faded[400] == 10000
    padded = np.concatenate([np.zeros(8000, np.int16), square, np.zeros(8000, np.int16)])
    trimmed = trim_silence(padded, rate, start_keep_ms=20, end_keep_ms=40)
    assert len(trimmed) == 320 + 800 + 640


def test_frames_carry_across_pieces() -> None:
    stream = SentenceStream(_fake(seconds=0.2917), "One. Two. Three.", 8000, source_rate=22050)
    frames = list(stream)
    total = sum(stream.piece_ends[-1:])
    assert all(f.num_samples == 160 for f in frames)
    assert len(frames) == -(-total // 160)  # every sample, the last frame padded


def test_cancel_wakes_a_blocked_reader() -> None:
    stream = SentenceStream(_fake(delay=0.5), "One. Two.", 8000, source_rate=22050)
    got: list[AudioFrame] = []
    reader = threading.Thread(target=lambda: got.extend(stream))
    reader.start()
    time.sleep(0.1)
    stream.cancel()
    reader.join(1.0)
    assert not reader.is_alive() and got == []
    assert stream.join(2.0)


def test_synthesis_error_reaches_the_reader() -> None:
    def broken(text: str) -> np.ndarray:
        raise RuntimeError("model exploded")

    stream = SentenceStream(broken, "One.", 8000, source_rate=22050)
    with pytest.raises(VoiceError, match="model exploded"):
        list(stream)


def test_bounded_buffer_and_abandoned_stream_stops() -> None:
    stream = SentenceStream(_fake(seconds=1.0), "One. Two. Three. Four.", 8000, source_rate=22050, max_ahead_ms=200)
    deadline = time.monotonic() + 5
    while len(stream._state.frames) < 10 and time.monotonic() < deadline:  # the buffer fills: 200 ms of 20 ms frames
        time.sleep(0.005)
    assert len(stream._state.frames) == 10  # full, and no further (1 s of audio was synthesized for each sentence)
    worker = stream._thread
    assert worker.is_alive()  # waiting for room
    del stream
    gc.collect()
    assert worker.join(2.0)


def test_bad_rate() -> None:
    with pytest.raises(ValueError, match="11025"):
        SentenceStream(_fake(), "Hi.", 11025, source_rate=22050)


GEVENT_SCRIPT = r"""
from gevent import monkey; monkey.patch_all()
import gevent, time, numpy as np
from bench.sentence_stream import SentenceStream
sleep = monkey.get_original("time", "sleep")
def synth(text):
    sleep(0.3)  # CPU-bound work in a real voice: it must not stall the hub
    return np.zeros(2205, dtype=np.int16) + 100
stream = SentenceStream(synth, "One. Two.", 8000, source_rate=22050)
ticks, frames, t0 = 0, 0, time.monotonic()
while not stream.done and time.monotonic() - t0 < 5:
    frames += stream.poll() is not None
    gevent.sleep(0.01)
    ticks += 1
print(ticks, frames)
"""


def test_worker_is_native_under_gevent() -> None:
    out = subprocess.run([sys.executable, "-c", GEVENT_SCRIPT], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    ticks, frames = map(int, out.stdout.split())
    assert frames == 10  # 2 x 100 ms at 8 kHz
    assert ticks >= 30  # the hub kept ticking while the worker slept 0.6 s natively
