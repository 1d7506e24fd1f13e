"""Speaker similarity on real human speech: the embedder, its calibration, and the pack check."""

from __future__ import annotations

import argparse
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.data_support import needs_data, require_module
from voicebot.audio.wav import read_wav, write_wav
from voicebot.dialog.loader import load_flow
from voicebot.tts import voicecli
from voicebot.tts.base import VoiceError
from voicebot.tts.pack import load_pack, trim_silence
from voicebot.tts.speaker import (
    DIFFERENT,
    SAME,
    SAME_SPEAKER,
    SIMILAR,
    SpeakerEmbedder,
    check_pack,
    mel_filterbank,
    shared_embedder,
    similarity,
    verdict,
)

FLOW = Path(__file__).resolve().parent.parent / "examples" / "flows" / "lead_screening_en.yaml"
DATA = Path("/usr/share/pocketsphinx/test/data")
READER = sorted((DATA / "librivox").glob("*.wav"))  # one LibriVox reader, 16 kHz, 3-7 s each
OTHERS = sorted((DATA / "cards").glob("*.wav")) + sorted(DATA.glob("*.raw"))  # other people, 16 kHz
pytestmark = needs_data(len(READER) == 5 and len(OTHERS) == 8, "pocketsphinx-testdata", "5 LibriVox clips, 8 other voices")


def load16k(path: Path) -> np.ndarray:
    if path.suffix == ".raw":
        return np.fromfile(path, dtype="<i2").astype(np.int16)
    audio, rate = read_wav(path)
    assert rate == 16000
    return audio


@pytest.fixture(scope="module")
def embedder() -> SpeakerEmbedder:
    return shared_embedder()


@pytest.fixture(scope="module")
def windows(embedder):
    """Per-window embeddings of every real clip (silence trimmed), computed once."""
    return {p.name: embedder.window_embeddings(trim_silence(load16k(p), 16000)) for p in READER + OTHERS}


def pooled(windows, names) -> np.ndarray:
    mean = np.concatenate([windows[n] for n in names]).mean(axis=0)
    return mean / np.linalg.norm(mean)


def test_features_and_embedding_match_the_package_reference(embedder):
    """Our numpy front end reproduces voicefilter_lite's own d-vector recipe (librosa log-mel, windows, pooling)."""
    librosa = require_module("librosa", "librosa (installed with open-voicefilter-lite)")
    streaming = require_module("voicefilter_lite.streaming", "open-voicefilter-lite")
    hparams = require_module("voicefilter_lite.hparams", "open-voicefilter-lite")
    assert np.allclose(mel_filterbank(16000, 512, 40), librosa.filters.mel(sr=16000, n_fft=512, n_mels=40), atol=1e-7)
    hp = hparams.HParams()
    hp.apply_onnx_dvector_overrides(streaming._bundled_path("embedder.int8.onnx"))
    audio = load16k(READER[1])
    reference = streaming._extract_dvec(audio.astype(np.float32) / 32768.0, hp, embedder._session)
    ours = embedder.embed(audio)
    assert similarity(ours, reference) > 0.9999
    short = audio[:4000]  # under one 0.8 s window: zero-padded the same way
    reference = streaming._extract_dvec(short.astype(np.float32) / 32768.0, hp, embedder._session)
    assert similarity(embedder.embed(short), reference) > 0.9999


def test_embeddings_are_unit_vectors_and_similarity_is_cosine(embedder):
    a, b = embedder.embed(load16k(READER[0])), embedder.embed(load16k(OTHERS[0]))
    assert a.shape == (256,) and abs(float(np.linalg.norm(a)) - 1.0) < 1e-5
    assert similarity(a, a) == pytest.approx(1.0, abs=1e-6)
    assert similarity(a, b) == pytest.approx(similarity(b, a)) == pytest.approx(float(a @ b), abs=1e-6)
    assert similarity(a, np.zeros(256)) == 0.0


def test_calibration_every_split_of_one_reader_scores_same_and_other_people_different(windows):
    """The data behind the thresholds: the reader's 10 enrollment/prompt splits vs 8 clips of other people."""
    names = [p.name for p in READER]
    same, other = [], []
    for enroll in itertools.combinations(names, 3):
        reference = pooled(windows, enroll)
        same.append(similarity(reference, pooled(windows, [n for n in names if n not in enroll])))
        other += [similarity(reference, pooled(windows, [p.name])) for p in OTHERS]
    print(f"\nsame reader, 10 splits: {min(same):.3f}-{max(same):.3f} (mean {np.mean(same):.3f}); "
          f"other people, per clip: {min(other):.3f}-{max(other):.3f}")
    assert min(same) >= SAME_SPEAKER and np.mean(same) > 0.88
    assert max(other) < SIMILAR - 0.05
    assert min(same) - max(other) > 0.25  # the embedder separates people by a wide margin


def make_pack(root: Path, enroll: list[Path], prompts: list[Path]) -> Path:
    (root / "enroll").mkdir(parents=True)
    (root / "prompts").mkdir()
    (root / "voice.yaml").write_text("name: reader\nlanguage: en\n")
    for path in enroll:
        shutil.copy(path, root / "enroll" / path.name)
    ids = ["handoff.hold.1", "goodbye_limit.say.1", "goodbye_sms.say.1", "confirm_callback.say.1", "pitch.say.2"]
    for pid, path in zip(ids, prompts, strict=False):
        write_wav(root / "prompts" / f"{pid}.wav", load16k(path), 16000)
    return root


@pytest.fixture(scope="module")
def agent_pack(tmp_path_factory):
    """The reader as the agent: 3 clips of enrollment (18 s), her 2 other clips as recorded prompts."""
    return load_pack(make_pack(tmp_path_factory.mktemp("agent"), [READER[0], READER[2], READER[3]], [READER[1], READER[4]]))


def test_voice_check_real_recordings_same_speaker_and_joe_voice_different(agent_pack, embedder):
    report = check_pack(agent_pack, load_flow(FLOW), embedder=embedder, max_synth=3)
    print("\n" + "\n".join(report.lines()))
    assert report.enrollment_clips == 3 and report.enrollment_s > 15
    assert report.recorded is not None and report.synthesized is not None
    assert report.recorded.clips == 2 and report.recorded.similarity >= 0.85
    assert report.recorded.verdict == SAME
    assert report.synthesized.clips == 3 and report.synthesized.verdict == DIFFERENT  # joe is not this reader
    assert report.synthesized.similarity < report.recorded.similarity - 0.25
    assert "a handoff would not be noticed" in report.lines()[1]
    assert "the handoff will be noticed" in report.lines()[2]


def test_voice_check_other_peoples_recordings_score_clearly_lower(tmp_path, agent_pack, embedder):
    impostor = load_pack(make_pack(tmp_path / "p", [READER[0], READER[2], READER[3]], OTHERS[:5]))
    report = check_pack(impostor, embedder=embedder, synthesize=False)
    genuine = check_pack(agent_pack, embedder=embedder, synthesize=False)
    assert report.recorded is not None and genuine.recorded is not None
    assert report.recorded.verdict == DIFFERENT and report.recorded.similarity < SIMILAR
    assert genuine.recorded.similarity - report.recorded.similarity > 0.3
    assert report.synthesized is None


def test_verdict_bands():
    assert [verdict(s) for s in (0.95, SAME_SPEAKER, 0.79, SIMILAR, 0.64, 0.2)] == \
        ["same", "same", "similar", "similar", "different", "different"]


def test_narrowband_and_short_enrollment_are_noted_and_missing_enrollment_is_an_error(tmp_path, embedder):
    root = make_pack(tmp_path / "p", [], [READER[1]])
    with pytest.raises(VoiceError, match=r"enroll: no enrollment speech"):
        check_pack(load_pack(root), embedder=embedder, synthesize=False)
    audio = load16k(READER[0])[::2]  # 8 kHz, as from a phone line
    write_wav(root / "enroll" / "phone.wav", audio, 8000)
    notes = check_pack(load_pack(root), embedder=embedder, synthesize=False).notes
    assert any("enrollment is only 7 s" in n for n in notes)
    assert any("recorded below 16 kHz (e.g. phone.wav)" in n for n in notes)


def test_voice_check_cli(agent_pack, capsys):
    parser = argparse.ArgumentParser()
    voicecli.register(parser.add_subparsers())
    args = parser.parse_args(["voice", "check", str(agent_pack.root), "--no-synth"])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "voice pack reader: enrollment 3 clips" in out
    assert "recorded prompts: similarity 0.8" in out and "same speaker: a handoff would not be noticed" in out
    assert "synthesized voice: not checked" in out
    args = parser.parse_args(["voice", "check", str(agent_pack.root / "nope")])
    assert args.run(args) == 2 and "voice pack directory not found" in capsys.readouterr().err
