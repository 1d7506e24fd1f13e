"""Prompt rendering: render once, no synthesis on the call, disk cache, dynamic text, click-free joins."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.data_support import needs_data
from voicebot.audio.wav import read_wav, write_wav
from voicebot.dialog.loader import load_flow
from voicebot.tts.base import VoiceError
from voicebot.tts.pack import VoicePack, active_dbfs, load_pack, normalize_loudness
from voicebot.tts.render import (
    Joiner,
    Part,
    PromptCache,
    group_by_text,
    join_offsets,
    join_segments,
    live_phrases,
    max_join_discontinuity,
    recordable_prompts,
    static_prompts,
    template_parts,
)

FLOW = Path(__file__).resolve().parent.parent / "examples" / "flows" / "lead_screening_en.yaml"
DATA = Path("/usr/share/pocketsphinx/test/data")
REAL_SPEECH = sorted((DATA / "librivox").glob("*.wav")) + sorted((DATA / "cards").glob("*.wav"))
needs_speech = needs_data(bool(REAL_SPEECH), "pocketsphinx-testdata", "real speech clips")
UNRECORDED = ("greet.say.1.part1", "greet.say.1.part2", "greet.say.1.part3")  # left to the neural voice
RATE = 8000


def write_pack(root: Path, yaml_text: str = "name: agent\nlanguage: en\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "voice.yaml").write_text(yaml_text)
    (root / "prompts").mkdir(exist_ok=True)
    return root


def sine(seconds: float, rate: int, freq: float, amplitude: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t + phase)).astype(np.int16)


@pytest.fixture(scope="module")
def flow():
    return load_flow(FLOW)


@pytest.fixture(scope="module")
def recorded_pack(tmp_path_factory, flow) -> VoicePack:
    """The example flow's prompts "recorded" with real human clips (the words differ; the mechanics do not),
    except the three fragments of the greeting, left to the neural voice."""
    root = write_pack(tmp_path_factory.mktemp("pack"))
    clips = itertools.cycle(REAL_SPEECH)
    for spec, _ in group_by_text(recordable_prompts(flow)):
        if spec.prompt_id not in UNRECORDED:
            audio, rate = read_wav(next(clips))
            write_wav(root / "prompts" / f"{spec.prompt_id}.wav", normalize_loudness(audio, rate, -20.0), rate)
    return load_pack(root)


@pytest.fixture(scope="module")
def rendered(recorded_pack, flow, tmp_path_factory):
    """A cache that rendered the flow once at 8 kHz, and its report."""
    cache = PromptCache(recorded_pack, tmp_path_factory.mktemp("cache"))
    return cache, cache.render_flow(flow, RATE)


# ------------------------------------------------------------------ render once, then never synthesize


@needs_speech
def test_render_flow_uses_recordings_and_synthesizes_the_rest_once(rendered):
    cache, report = rendered
    assert report.count == 29  # 21 distinct prompts + 8 fragments of the 4 dynamic prompts (confirm prompts included)
    assert (report.from_recordings, report.synthesized, report.from_disk) == (26, 3, 0)
    assert cache.synth_count == 3 and cache.disk_usage()[0] == 3
    assert report.bytes > 0 and report.seconds > 0


@needs_speech
def test_a_whole_call_after_rendering_triggers_no_synthesis_of_fixed_text(rendered, flow):
    cache, _ = rendered
    before = cache.synth_count
    values = {name: var.default or "" for name, var in flow.variables.items()} | {"customer_name": "Ann"}
    expected_live = 0
    for spec in static_prompts(flow):  # every utterance the call can say, re-prompts and hold included
        if not spec.dynamic:
            audio = cache.get(spec.text, RATE)
            assert audio is not None and len(audio) > RATE // 4, spec.prompt_id
        else:
            audio = np.concatenate(list(cache.render_dynamic(spec.text, values, RATE)))
            assert len(audio) > RATE // 2
            expected_live += len(spec.template_vars)
    assert cache.synth_count == before  # fixed text never synthesized on the call
    assert cache.live_synth_count == expected_live  # only the variables' values were
    again = cache.render_flow(flow, RATE)
    assert again.synthesized == 0 and again.count == 29


@needs_speech
def test_a_second_cache_on_the_same_directory_renders_from_disk(rendered, recorded_pack, flow):
    first, _ = rendered
    second = PromptCache(recorded_pack, first.cache_dir)
    report = second.render_flow(flow, RATE)
    assert (report.synthesized, report.from_disk, report.from_recordings) == (0, 3, 26)
    assert second.synth_count == 0
    for text in ("Hi, this is", "from", "Am I speaking with"):
        assert np.array_equal(second.get(text, RATE), first.get(text, RATE))


@needs_speech
def test_get_never_synthesizes(recorded_pack):
    cache = PromptCache(recorded_pack)
    assert cache.get("Hi, this is", RATE) is None  # not rendered here, no disk cache: absent, not synthesized
    hold = "Our advisor will be with you in just a moment."
    assert cache.get(hold, RATE, prompt_id="handoff.hold.1") is not None  # a recording (no transcript: found by id)
    assert cache.get(hold, RATE) is not None  # now in memory
    assert cache.synth_count == 0 and cache.live_synth_count == 0


def test_cache_file_names_change_with_what_changes_the_audio(tmp_path):
    pack = load_pack(write_pack(tmp_path / "p"))
    cache = PromptCache(pack, tmp_path / "c")
    base = cache.cache_path("It costs $5.", RATE)
    assert cache.cache_path("It  costs   $5.", RATE) == base
    assert cache.cache_path("It costs five dollars.", RATE) == base  # the same words are said
    assert cache.cache_path("It costs $5.", 16000) != base
    for change in ({"speaking_rate": 1.2}, {"name": "other"}, {"loudness_target_dbfs": -18.0}):
        assert PromptCache(dataclasses.replace(pack, **change), tmp_path / "c").cache_path("It costs $5.", RATE) != base
    assert base is not None and base.parent == tmp_path / "c" and len(base.stem) == 64


def test_pack_and_flow_languages_must_match(tmp_path, flow):
    pack = load_pack(write_pack(tmp_path / "p", "name: a\nlanguage: zh\n"))
    with pytest.raises(VoiceError, match="pack language zh != flow lead_screening_en language en"):
        PromptCache(pack).render_flow(flow, RATE)


# ------------------------------------------------------------------ dynamic text


def test_template_parts_keep_punctuation_with_the_variable_before_it():
    assert template_parts("Hi, this is {{agent_name}} from {{company}}. Am I speaking with {{customer_name}}?") == [
        Part("Hi, this is"), Part("", "agent_name"), Part("from"), Part(".", "company"),
        Part("Am I speaking with"), Part("?", "customer_name")]
    assert template_parts("{{a}}{{b}}") == [Part("", "a"), Part("", "b")]
    assert template_parts("No variables here.") == [Part("No variables here.")]


@needs_speech
def test_dynamic_text_starts_before_any_live_synthesis(rendered):
    cache, _ = rendered
    before = cache.live_synth_count
    chunks = cache.render_dynamic("Hi, this is {{agent_name}} from {{company}}.", {"agent_name": "Sam", "company": "Acme"}, RATE)
    first = next(c for c in chunks if len(c))
    assert len(first) > RATE // 2  # "Hi, this is" from the cache ...
    assert cache.live_synth_count == before  # ... out before the first value is synthesized
    rest = list(chunks)
    assert cache.live_synth_count == before + 2 and sum(map(len, rest)) > RATE // 2


LONG_VALUE = ("Alexandra Konstantinopoulou-Whitfield, of forty-two Riverside Terrace, apartment nine, who asked "
              "on the twelfth of March about a fixed savings plan for her daughter's studies and her own retirement, "
              "with monthly deposits, a paper statement every quarter and a reminder by text message")


@needs_speech
def test_a_long_value_plays_its_first_phrase_before_the_rest_is_synthesized(rendered):
    """A 300-character value in one piece is ready only when all of it is, so the fixed part before it ran out
    first and the caller heard a hole (bench/max_gap.py: 0.3 to 5.3 s). Phrase by phrase, each is ready while the one
    before plays."""
    cache, _ = rendered
    asked: list[str] = []
    synthesize = cache.synthesize

    def spy(text: str, rate: int) -> np.ndarray:
        asked.append(text)
        return synthesize(text, rate)

    cache.synthesize = spy
    try:
        chunks = (c for c in cache.render_dynamic("Am I speaking with {{name}}?", {"name": LONG_VALUE}, RATE) if len(c))
        next(chunks)  # "Am I speaking with", from the cache
        assert asked == []
        next(chunks)  # the value's first audio ...
        assert len(asked) == 1 and len(asked[0]) <= 80  # ... exists once its first phrase alone is synthesized
        audio = np.concatenate(list(chunks))
    finally:
        del cache.synthesize
    assert len(asked) >= 4 and " ".join(asked) == LONG_VALUE + "?"  # every word said, once, in order
    assert len(audio) > 10 * RATE


def test_live_phrases_cut_after_clauses_and_keep_every_word():
    assert live_phrases("Sam") == ["Sam"]
    assert live_phrases("   ") == []
    phrases = live_phrases(LONG_VALUE, limit=80)
    assert all(0 < len(p) <= 80 for p in phrases) and " ".join(phrases) == LONG_VALUE
    assert phrases[0].endswith(",")  # cut after a clause, not mid-clause, where one fits
    assert live_phrases("word " * 40, limit=30) == ["word word word word word word"] * 6 + ["word word word word"]


def test_dynamic_joins_have_no_clicks_where_plain_concatenation_has(tmp_path):
    """Fixed parts and the value all recorded as tones cut at awkward phases: no synthesis, exact check."""
    root = write_pack(tmp_path / "p", "name: a\nlanguage: en\nsample_rate: 8000\n")
    pieces = {"ring one": sine(0.51125, RATE, 200, 0.3),  # ends on its positive peak
              "zed": sine(0.3, RATE, 330, 0.3, -np.pi / 2),  # from its negative peak to its negative peak
              "ring two": sine(0.4, RATE, 260, 0.3, np.pi / 2)}  # starts on its positive peak
    for i, (text, audio) in enumerate(pieces.items()):
        write_wav(root / "prompts" / f"p{i}.wav", audio, RATE)
        (root / "prompts" / f"p{i}.txt").write_text(text)
    cache = PromptCache(load_pack(root))
    out = np.concatenate(list(cache.render_dynamic("Ring one {{x}} ring two", {"x": "Zed"}, RATE)))
    assert cache.synth_count == cache.live_synth_count == 0  # everything came from the recordings
    intrinsic = max(int(np.abs(np.diff(p.astype(np.int32))).max()) for p in pieces.values())
    plain = np.concatenate(list(pieces.values()))
    plain_worst = int(np.abs(np.diff(plain.astype(np.int32))).max())
    assert plain_worst > 5 * intrinsic  # the clicks a plain concatenation makes
    assert int(np.abs(np.diff(out.astype(np.int32))).max()) <= 1.5 * intrinsic
    assert abs(len(out) - (len(plain) - 2 * RATE // 100)) <= 2  # two 10 ms crossfades
    assert abs(int(out[0])) < 200 and abs(int(out[-1])) < 200  # faded in and out


@needs_speech
def test_synthesized_values_match_the_loudness_of_their_recorded_neighbour(tmp_path):
    root = write_pack(tmp_path / "p")
    speech, rate = read_wav(DATA / "librivox" / "sense_and_sensibility_01_austen_64kb-0880.wav")
    write_wav(root / "prompts" / "line.wav", normalize_loudness(speech, rate, -30.0), rate)  # a quiet take
    (root / "prompts" / "line.txt").write_text("he was not an ill disposed young man")
    cache = PromptCache(load_pack(root))
    out = np.concatenate(list(cache.render_dynamic("He was not an ill disposed young man, {{name}}.", {"name": "Annabel"}, RATE)))
    assert cache.live_synth_count == 1
    split = _longest_quiet_run_end(out, RATE)
    recorded, synthesized = out[:split], out[split:]
    assert abs(active_dbfs(recorded, RATE) - (-30.0)) < 1.0
    assert abs(active_dbfs(synthesized, RATE) - active_dbfs(recorded, RATE)) < 1.5
    alone = np.concatenate(list(cache.render_dynamic("{{name}}.", {"name": "Annabel"}, RATE)))
    assert abs(active_dbfs(alone, RATE) - (-20.0)) < 1.0  # no neighbour: the pack's target


def _longest_quiet_run_end(audio: np.ndarray, rate: int) -> int:
    """End of the longest run of near-silence (the pause after the comma)."""
    quiet = np.abs(audio.astype(np.int32)) <= 2
    best, best_end, run = 0, 0, 0
    for i, q in enumerate(quiet):
        run = run + 1 if q else 0
        if run > best:
            best, best_end = run, i + 1
    assert best >= rate * 80 // 1000, "no pause found between the recording and the value"
    return best_end


# ------------------------------------------------------------------ joins


def _max_step(x: np.ndarray) -> int:
    return int(np.abs(np.diff(np.asarray(x, dtype=np.int32))).max())


def test_crossfade_removes_the_step_between_tones():
    rate = 16000
    a = sine(0.1 + 1 / 1760, rate, 440, 0.5)  # ends near its positive peak
    b = sine(0.1, rate, 300, 0.5, -np.pi / 2)  # starts at its negative peak
    intrinsic = max(_max_step(a), _max_step(b))
    plain = join_segments([a, b], rate, crossfade_ms=0)
    faded = join_segments([a, b], rate)
    click = max_join_discontinuity(plain, join_offsets([len(a), len(b)], rate, 0), rate)
    smooth = max_join_discontinuity(faded, join_offsets([len(a), len(b)], rate), rate)
    assert click > 20000 and click > 5 * intrinsic
    assert smooth <= 1.5 * intrinsic  # an equal-power mix of two slopes is at most sqrt(2) times the steeper


@needs_speech
def test_crossfade_on_real_speech_cut_at_its_peaks():
    speech, rate = read_wav(DATA / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav")
    cuts, w = [int(rate * s) for s in (0.8, 2.2, 3.6, 5.0)], rate // 10
    ends = [c - w + int(np.argmax(speech[c - w : c])) + 1 for c in cuts]  # each piece ends on a positive peak
    starts = [c + int(np.argmin(speech[c : c + w])) for c in cuts]  # the next starts on a negative one
    segments = [speech[starts[i] : ends[i + 1]] for i in range(3)]
    steps = np.concatenate([np.abs(np.diff(s.astype(np.int32))) for s in segments])
    rough = float(np.percentile(steps, 99.9))  # the speech's own sharpest moments
    lengths = [len(s) for s in segments]
    click = max_join_discontinuity(join_segments(segments, rate, 0), join_offsets(lengths, rate, 0), rate)
    smooth = max_join_discontinuity(join_segments(segments, rate), join_offsets(lengths, rate), rate)
    assert click > 2 * rough  # a click: a step far beyond anything the speech itself does
    assert smooth <= rough  # joined: no rougher than the speech
    assert smooth < click / 4


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 400), min_size=1, max_size=8), crossfade_ms=st.sampled_from([1, 5, 10, 25]),
       seed=st.integers(0, 1000))
def test_streaming_joins_equal_one_shot_joins(lengths, crossfade_ms, seed):
    rng = np.random.default_rng(seed)
    segments = [rng.integers(-20000, 20000, n).astype(np.int16) for n in lengths]
    joiner = Joiner(RATE, crossfade_ms)
    streamed = np.concatenate([*(joiner.push(s) for s in segments), joiner.finish()])
    one_shot = join_segments(segments, RATE, crossfade_ms)
    assert np.array_equal(streamed, one_shot)
    offsets = join_offsets(lengths, RATE, crossfade_ms)
    overlap = sum(lengths) - len(one_shot)
    assert overlap >= 0 and len(offsets) == len(lengths) - 1
    assert all(0 <= o <= len(one_shot) for o in offsets)


def test_voice_say_writes_the_pack_speaking(tmp_path, capsys):
    import argparse

    from voicebot.tts import voicecli

    root = write_pack(tmp_path / "p")
    write_wav(root / "prompts" / "hello.wav", sine(0.6, 16000, 200, 0.2), 16000)
    (root / "prompts" / "hello.txt").write_text("Hello there")
    parser = argparse.ArgumentParser()
    voicecli.register(parser.add_subparsers())
    out = tmp_path / "out.wav"
    args = parser.parse_args(["voice", "say", str(root), "Hello there, {{name}}.", "--var", "name=Ann", "-o", str(out)])
    assert args.run(args) == 0
    audio, rate = read_wav(out)
    assert rate == 8000 and 0.8 < len(audio) / rate < 2.5  # the recorded tone, a pause, then "Ann."
    assert "(1 piece(s) synthesized)" in capsys.readouterr().out
    args = parser.parse_args(["voice"])
    assert args.run(args) == 2
