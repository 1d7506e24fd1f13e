"""Voice conversion (voicebot.tts.vc) on real speech: alignment, a deterministic mapping, conversion toward the
agent on a held-out take (the real speaker embedder), the refusal guard, and ``voice train``'s bad inputs."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from bench.vc_agents import HELDOUT, sphinx_pack
from tests.data_support import needs_data
from voicebot.tts import voicecli
from voicebot.tts.base import VoiceError
from voicebot.tts.pack import load_pack, trim_silence
from voicebot.tts.render import PromptCache
from voicebot.tts.speaker import shared_embedder, similarity
from voicebot.tts.vc import align, world
from voicebot.tts.vc.apply import load_model
from voicebot.tts.vc.mapping import F0Transform, ShiftMap, SpectralMap, VoiceConversion
from voicebot.tts.vc.measure import AgentRange, VoiceStats, hnr_db, refusals, word_errors
from voicebot.tts.vc.train import METHODS, Clip, TrainOptions, fit, load_clip, parallel_frames, split_prompts

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
pytestmark = needs_data(LIBRIVOX.is_dir(), "pocketsphinx-testdata", "the LibriVox reader")
FAST = TrainOptions(seed=0, components=2, dims=16)  # voice train's method (shift) with 2 classes: trains in seconds


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    """The LibriVox reader (male, ~95 Hz) as an agent: 5 recorded prompts, 0880 and 0930 held out."""
    return load_pack(sphinx_pack("librivox", tmp_path_factory.mktemp("vc") / "librivox"))


@pytest.fixture(scope="module")
def clips(pack) -> dict[str, Clip]:
    """Every prompt: the reader's take and the stock (joe) voice's, analysed."""
    speaker = PromptCache(pack)
    return {pid: load_clip(pack, pid, lambda text: speaker.synthesize(text, world.RATE)) for pid in pack.prompt_ids()}


@pytest.fixture(scope="module")
def model(clips) -> VoiceConversion:
    return fit([c for pid, c in sorted(clips.items()) if pid not in HELDOUT["librivox"]], [], FAST)


def test_dtw_recovers_a_known_time_stretch():
    rng = np.random.default_rng(1)
    a = np.cumsum(rng.normal(size=(60, 3)), axis=0)
    b = np.repeat(a, 2, axis=0)  # every frame said twice as long
    p, q = align.dtw_path(a, b)
    assert (p[0], q[0]) == (0, 0) and (p[-1], q[-1]) == (59, 119)
    assert np.all(np.diff(p) >= 0) and np.all(np.diff(q) >= 0)
    assert np.array_equal(p[q.argsort(kind="stable")], np.arange(120) // 2)  # frame j of b pairs with frame j // 2 of a


def test_f0_transform_moves_the_log_f0_mean_and_spread_and_keeps_unvoiced_frames():
    f0 = np.array([0.0, 100.0, 200.0, 0.0, 400.0])
    t = F0Transform.fit(np.log(f0[f0 > 0]), np.log(np.array([50.0, 100.0, 200.0])))
    out = t.apply(f0)
    assert out[0] == 0 and out[3] == 0
    assert np.log(out[out > 0]).mean() == pytest.approx(np.log([50.0, 100.0, 200.0]).mean())
    assert np.log(out[out > 0]).std() == pytest.approx(np.log([50.0, 100.0, 200.0]).std())


@pytest.mark.parametrize("kind", [ShiftMap, SpectralMap])
def test_the_mapping_trains_deterministically_on_a_small_set(clips, tmp_path, kind):
    small = [clips[sorted(clips)[0]]]
    source, target, gv = parallel_frames(small, 16)
    first = kind.fit(source, target, gv, seed=3, components=2)
    second = kind.fit(source, target, gv, seed=3, components=2)
    assert np.array_equal(first.means, second.means) and np.array_equal(first.covariances, second.covariances)
    frames = clips[sorted(clips)[2]].stock_features.mcep[:, 1:17]
    assert np.array_equal(first.convert(frames), second.convert(frames))
    model = VoiceConversion(first, F0Transform(5.0, 0.2, 4.5, 0.2), {"seed": 3})
    model.save(tmp_path / "m.npz")
    again = VoiceConversion.load(tmp_path / "m.npz")
    assert type(again.spectral) is kind
    assert np.array_equal(again.spectral.convert(frames), first.convert(frames)) and again.meta == {"seed": 3}


def test_one_class_shift_moves_every_frame_by_the_same_offset():
    """The residual mapping's core: with one class every frame gets the agent-minus-stock mean difference, so the
    change from one frame to the next (what makes a consonant) is exactly the source's."""
    rng = np.random.default_rng(0)
    source = rng.normal(size=(400, 3))
    offset = np.array([1.0, -2.0, 0.5])
    shift = ShiftMap.fit(source, source + offset + rng.normal(0, 0.1, source.shape), np.ones(3), components=1)
    shift.gv_weight = 0.0
    frames = rng.normal(size=(50, 3))
    out = shift.convert(frames)
    assert np.allclose(out - frames, offset, atol=0.03)
    assert np.allclose(np.diff(out, axis=0), np.diff(frames, axis=0))


def test_mlpg_solves_the_trajectory_likelihood_exactly():
    """MLPG (--method mlpg): the banded solve equals the dense normal equations, and exact statics and deltas give
    back the trajectory they came from."""
    from voicebot.tts.vc.trajectory import deltas, generate

    rng = np.random.default_rng(0)
    t, d = 40, 3
    track = np.cumsum(rng.normal(size=(t, d)), axis=0)
    assert np.allclose(generate(track, np.ones((t, d)), deltas(track), np.ones((t, d))), track)
    ms, md = rng.normal(size=(t, d)), rng.normal(size=(t, d))
    ps, pd = rng.uniform(0.5, 2.0, (t, d)), rng.uniform(0.5, 2.0, (t, d))
    w = np.zeros((t, t))
    for row in range(t):
        w[row, max(row - 1, 0)] -= 0.5
        w[row, min(row + 1, t - 1)] += 0.5
    dense = np.stack([np.linalg.solve(np.diag(ps[:, k]) + w.T @ np.diag(pd[:, k]) @ w,
                                      ps[:, k] * ms[:, k] + w.T @ (pd[:, k] * md[:, k])) for k in range(d)], axis=1)
    assert np.allclose(generate(ms, ps, md, pd), dense)


def frame_change_correlation(source: np.ndarray, converted: np.ndarray) -> float:
    """Correlation of the frame-to-frame changes of two (T, D) coefficient tracks (1: the same contrasts)."""
    return float(np.corrcoef(np.diff(source, axis=0).ravel(), np.diff(converted, axis=0).ravel())[0, 1])


def test_the_mapping_keeps_the_consonants_of_held_out_takes(clips, model):
    """Consonants are fast changes of the envelope between neighbouring frames. The frame-wise joint GMM regresses
    every frame toward its class mean and loses them (held-out correlation of frame-to-frame changes 0.55-0.63 on
    this reader; Whisper's errors at 8 kHz rose from 2 to 13 of 61 words on the Allison pack); voice train's shift
    mapping keeps them (0.92-0.99). Fails if the mapping stops following each frame of its source."""
    gmm = fit([clips[sorted(clips)[0]]], [], TrainOptions(seed=0, components=2, method="gmm"))
    for pid in HELDOUT["librivox"]:
        frames = clips[pid].stock_features.mcep[:, 1:17]
        kept = frame_change_correlation(frames, model.spectral.convert(frames))
        lost = frame_change_correlation(frames, gmm.spectral.convert(frames))
        print(f"\n{pid}: frame-to-frame change correlation: shift {kept:.2f}, joint GMM {lost:.2f}")
        assert kept > 0.85 and lost < 0.75


def test_conversion_moves_a_held_out_take_toward_the_agent(pack, clips, model):
    """The reader never said this text in training: the stock voice scores ~0.4 against his enrollment; converted
    it scores far higher, and the reader's own take of it higher still (the ceiling)."""
    embedder = shared_embedder()
    enrolled = embedder.embed_many([trim_silence(a, world.RATE) for a in pack.enrollment(world.RATE)])
    held = clips[HELDOUT["librivox"][0]]
    converted = world.synthesize(model.convert_features(held.stock_features), level_like=held.stock)
    stock, conv, own = (similarity(enrolled, embedder.embed(a)) for a in (held.stock, converted, held.own))
    print(f"\nheld-out {held.prompt_id}: stock {stock:.2f}, converted {conv:.2f}, agent's own {own:.2f}")
    assert conv > stock + 0.15
    assert own > conv - 0.05 or own > 0.8
    f0 = world.analyze(converted).f0
    assert 70 < np.median(f0[f0 > 0]) < 130  # the reader's pitch (~95 Hz), not joe's (~160 Hz)
    assert abs(len(converted) - len(held.stock)) <= world.RATE * world.FRAME_MS / 1000  # timing is the stock voice's


def test_hnr_separates_a_clean_voice_from_a_noisy_one():
    t = np.arange(16000) / 16000
    buzz = 8000 * np.sign(np.sin(2 * np.pi * 150 * t))
    noisy = buzz + np.random.default_rng(0).normal(0, 8000, len(t))
    f0 = np.full(200, 150.0)
    assert np.median(hnr_db(buzz.astype(np.int16), f0)) > 15
    assert np.median(hnr_db(noisy.astype(np.int16), f0)) < 5
    assert np.median(hnr_db(buzz.astype(np.int16), f0 * 2)) > 15  # the tracker an octave high (as DIO on Piper) is not noise


def stats(name: str, sim: float = 0.5, errors: int = 0, f0: float = 100.0, hnr: float = 8.0, mcd: float = 9.0) -> VoiceStats:
    return VoiceStats(name, sim, sim, errors, 40, f0, hnr, mcd)


def test_the_guard_names_every_way_a_model_is_worse():
    agent = AgentRange(70.0, 130.0, 6.0, 10.0)
    stock = stats("stock", sim=0.45, errors=1, f0=160.0, hnr=7.0, mcd=12.0)
    assert refusals(stock, stats("converted", sim=0.8, errors=3, hnr=4.0, mcd=10.0), agent) == []  # 2 more errors: allowed
    broken = stats("converted", sim=0.44, errors=4, f0=220.0, hnr=2.9, mcd=12.5)
    reasons = refusals(stock, broken, agent)
    assert [r.split(" ")[0] for r in reasons] == ["similarity", "intelligibility:", "pitch:", "voice", "spectral"]
    assert "4 word errors vs the stock voice's 1 (at most 2 more allowed)" in reasons[1]
    few = VoiceStats("converted", 0.8, 0.8, 0, 12, 100.0, 8.0, 10.0)
    assert refusals(stock, few, agent) == ["too few held-out words: 12 (at least 20 are needed to measure intelligibility); "
                                           "hold out more prompts with --heldout"]
    assert word_errors("five five", "five") == (1, 2) and word_errors("ten of clubs", "ten of clubs") == (0, 3)


def test_the_guard_refuses_a_deliberately_broken_model_on_real_audio(pack, clips, model):
    """A model whose spectral map sends every frame to the wrong place and whose pitch is a child's is refused."""
    from voicebot.tts.vc.train import Judges

    judges = Judges.for_pack(pack)
    held = [clips[HELDOUT["librivox"][0]]]
    spectral = model.spectral
    assert isinstance(spectral, ShiftMap)
    broken = VoiceConversion(ShiftMap(spectral.weights, spectral.means, spectral.covariances, -3.0 * spectral.means,
                                      spectral.target_gv * 9.0),
                             F0Transform(model.f0.src_mean, model.f0.src_std, float(np.log(320.0)), model.f0.tgt_std))
    texts, own = [c.text for c in held], [c.own_features for c in held]
    garbled = [world.synthesize(broken.convert_features(c.stock_features), level_like=c.stock) for c in held]
    stock = judges.stats("stock", texts, [c.stock for c in held], [c.stock_features for c in held], own)
    conv = judges.stats("converted", texts, garbled, None, own)
    agent = AgentRange.of([(c.own, c.own_features) for c in clips.values()])
    reasons = refusals(stock, conv, agent)
    print("\n" + "\n".join([stock.line(), conv.line(), *reasons]))
    # What a garbled model always breaks: the words and the spectrum. Its pitch reason is take-dependent (the F0
    # tracker can lock onto a subharmonic of garbled audio: 74 Hz measured once for a 320 Hz target), so the pitch
    # rule is checked on constructed numbers above, not here.
    assert any(r.startswith("intelligibility:") for r in reasons), reasons
    assert any(r.startswith("spectral distortion:") for r in reasons), reasons


def run_train(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    voicecli.register(parser.add_subparsers())
    args = parser.parse_args(["voice", "train", *argv])
    return int(args.run(args))


def test_voice_train_bad_packs_give_one_line_and_status_2(tmp_path, pack, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "voice.yaml").write_text("name: nobody\nlanguage: en\n")
    assert run_train([str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no recorded prompts with transcripts" in err and "voice import" in err
    assert run_train([str(pack.root), "--heldout", "nope"]) == 2
    assert "--heldout nope: not a recorded prompt" in capsys.readouterr().err
    four = [pid for pid in pack.prompt_ids()][:4]
    assert run_train([str(pack.root), *(x for pid in four for x in ("--heldout", pid))]) == 2
    assert "needs at least 3" in capsys.readouterr().err
    assert run_train([str(pack.root), "--components", "65"]) == 2
    assert "--components 65" in capsys.readouterr().err
    assert set(voicecli.TRAIN_METHODS) == set(METHODS)
    with pytest.raises(VoiceError, match="method 'warp': not one of shift, gmm, mlpg"):
        fit([], [], TrainOptions(method="warp"))
    with pytest.raises(VoiceError, match="no recorded prompts"):
        split_prompts(load_pack(empty), TrainOptions())


def test_the_held_out_choice_follows_the_seed_and_never_trains(pack):
    train, held = split_prompts(pack, TrainOptions(seed=0))
    assert len(held) == 1 and not set(train) & set(held) and sorted(train + held) == pack.prompt_ids()
    assert split_prompts(pack, TrainOptions(seed=0)) == (train, held)
    assert {split_prompts(pack, TrainOptions(seed=s))[1][0] for s in range(8)} != {held[0]}  # the seed picks


def test_an_unreadable_model_is_a_voice_error(tmp_path):
    root = tmp_path / "p"
    (root / "vc").mkdir(parents=True)
    (root / "voice.yaml").write_text("name: x\nlanguage: en\n")
    assert load_model(load_pack(root)) is None
    (root / "vc" / "model.npz").write_bytes(b"not a model")
    with pytest.raises(VoiceError, match="not a voice conversion model"):
        load_model(load_pack(root))


def test_voice_train_end_to_end_writes_the_report_and_enables_only_what_the_guard_passed(tmp_path, capsys):
    """The whole command on the "cards" speaker (the smallest agent: 5 prompts, 10 s)."""
    pack = load_pack(sphinx_pack("cards", tmp_path / "cards"))
    held = HELDOUT["cards"]
    status = run_train([str(pack.root), "--heldout", held[0], "--heldout", held[1], "--components", "1"])
    out = capsys.readouterr()
    report = __import__("json").loads((pack.root / "vc" / "report.json").read_text())
    print("\n" + out.out)
    assert status == (0 if report["enabled"] else 1)
    assert report["heldout"] == sorted(held) and not set(report["train"]) & set(held)
    assert set(report["groups"]) == {"agent", "stock", "converted"}
    # one-class shift on 6 s of speech: 0.18 -> 0.28 measured (the joint GMM: 0.13 -> 0.73, and unintelligible)
    assert report["groups"]["converted"]["similarity"] > report["groups"]["stock"]["similarity"] + 0.05
    assert (pack.root / "vc" / "model.npz").is_file() == report["enabled"]
    assert (load_model(pack) is not None) == report["enabled"]
    assert ("NOT ENABLED:" in out.out) == (not report["enabled"]) and "similarity" in out.out
    assert "] 9/9 measured" in out.err  # the progress bar reached its end


def test_the_female_agent_pack_from_asterisk_prompts(tmp_path):
    """Allison Smith's G.722 prompts decode to 16 kHz speech; held-out prompts never reach the enrollment."""
    from bench.vc_agents import ASTERISK, ASTERISK_TEXTS, allison_pack
    from tests.data_support import missing

    if not (ASTERISK.is_dir() and ASTERISK_TEXTS.is_file()):
        missing("asterisk-core-sounds-en-g722 and asterisk-core-sounds-en", "Allison's prompts and their texts")
    root, held = allison_pack(tmp_path / "allison", count=10)
    pack = load_pack(root)
    assert len(pack.prompt_ids()) == 10 and len(held) == 2 and set(held) <= set(pack.prompt_ids())
    assert all(pack.transcripts[pid] for pid in pack.prompt_ids())
    enrolled = {p.stem for p in pack.enroll_dir.glob("*.wav")}
    assert enrolled and not enrolled & set(held)
    audio = pack.recording(held[0])
    assert audio is not None and 1.2 <= len(audio) / 16000 <= 8.0
    f0 = world.analyze(audio).f0
    assert 150 < np.median(f0[f0 > 0]) < 260  # a woman's voice
    assert split_prompts(pack, TrainOptions(heldout=held))[1] == sorted(held)


def test_converted_speech_keeps_the_source_level_and_never_clips(clips, model):
    """A converted envelope can come out several dB louder than its source; clipped peaks ruin the words."""
    from voicebot.tts.pack import active_dbfs, clipped_samples
    from voicebot.tts.vc.apply import convert

    for pid in HELDOUT["librivox"]:
        source = clips[pid].stock
        out = convert(model, source)
        assert clipped_samples(out) == 0
        assert abs(active_dbfs(out, world.RATE) - active_dbfs(source, world.RATE)) < 1.0
    assert len(convert(model, np.zeros(0, dtype=np.int16))) == 0
