"""Tests for voicebot.dialog.intents: keyword/regex/example matching, negation, normalisation."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.dialog.intents import (
    IntentMatch,
    IntentMatcher,
    IntentSpec,
    find_keyword,
    is_negated,
    normalize,
)

EN_INTENTS = (
    IntentSpec("interested", keywords=("interested", "sounds good", "tell me more")),
    IntentSpec("not_interested", keywords=("not interested", "no thanks", "don't call")),
    IntentSpec("yes", keywords=("yes", "yeah", "sure")),
    IntentSpec("robot", keywords=("robot",), regex=(r"\b(are|r) (you|u) (a )?(real )?(human|person)\b",)),
    IntentSpec("busy", examples=("i am busy right now", "i'm driving at the moment")),
)
ZH_INTENTS = (
    IntentSpec("need", keywords=("需要", "感兴趣", "有兴趣")),
    IntentSpec("no_need", keywords=("不需要", "没兴趣", "不感兴趣")),
    IntentSpec("busy", keywords=("在忙",), examples=("我现在在开会",)),
    IntentSpec("robot", keywords=("机器人",), regex=("(你|您)是(真人|人工)",), examples=("你是机器人吗",)),
)


@pytest.fixture(scope="module")
def en() -> IntentMatcher:
    return IntentMatcher(EN_INTENTS, "en")


@pytest.fixture(scope="module")
def zh() -> IntentMatcher:
    return IntentMatcher(ZH_INTENTS, "zh")


def names(matches: list[IntentMatch]) -> list[str]:
    return [m.intent for m in matches]


# --------------------------------------------------------------------------- normalize


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("Hello,  World!", "en", "hello world"),
        ("I’m NOT interested...", "en", "i'm not interested"),
        ("don't", "en", "don't"),
        ("'quoted'", "en", "quoted"),
        ("ＹＥＳ，ｐｌｅａｓｅ", "en", "yes please"),
        ("  tabs\tand\nnewlines  ", "en", "tabs and newlines"),
        ("不需要，谢谢！", "zh", "不需要谢谢"),
        ("你 是 机器人 吗？", "zh", "你是机器人吗"),
        ("在忙。。。", "zh", "在忙"),
        ("「好的」、可以", "zh", "好的可以"),
        ("ＯＫ 好的", "zh", "ok好的"),
        ("hello world", "zh", "hello world"),
        ("", "en", ""),
        ("？！。", "zh", ""),
    ],
)
def test_normalize(text: str, language: str, expected: str) -> None:
    assert normalize(text, language) == expected


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60), language=st.sampled_from(["en", "zh"]))
def test_normalize_is_idempotent(text: str, language: str) -> None:
    once = normalize(text, language)
    assert normalize(once, language) == once
    assert once == once.strip()
    assert "  " not in once


def test_normalize_rejects_unknown_language() -> None:
    with pytest.raises(ValueError, match="fr"):
        normalize("bonjour", "fr")


# --------------------------------------------------------------------------- is_negated


@pytest.mark.parametrize(
    ("text", "word", "expected"),
    [
        ("i'm not interested", "interested", True),
        ("not really interested", "interested", True),
        ("i am not at all interested", "interested", True),
        ("i don't think i'm interested", "interested", True),
        ("never interested", "interested", True),
        ("i am interested", "interested", False),
        ("not now but i am interested", "interested", False),
        ("no interest", "interest", True),
        ("no i am interested", "interested", False),
        ("not one two three interested", "interested", False),
    ],
)
def test_is_negated_en(text: str, word: str, expected: bool) -> None:
    assert is_negated(text, text.index(word), "en") is expected


@pytest.mark.parametrize(
    ("text", "word", "expected"),
    [
        ("不需要", "需要", True),
        ("不太需要", "需要", True),
        ("没有需要", "需要", True),
        ("不是很需要", "需要", True),
        ("并不需要", "需要", True),
        ("不怎么感兴趣", "感兴趣", True),
        ("没有兴趣", "有兴趣", True),
        ("我很需要", "需要", False),
        ("需要", "需要", False),
    ],
)
def test_is_negated_zh(text: str, word: str, expected: bool) -> None:
    assert is_negated(text, text.index(word), "zh") is expected


# --------------------------------------------------------------------------- English matching


@pytest.mark.parametrize(
    "text",
    ["I'm not interested", "not really interested", "I am not at all interested", "I'm NOT interested!"],
)
def test_negated_keyword_does_not_match(en: IntentMatcher, text: str) -> None:
    assert "interested" not in names(en.match(text))


def test_longer_overlapping_keyword_wins(en: IntentMatcher) -> None:
    matches = en.match("i'm not interested")
    assert names(matches) == ["not_interested"]
    assert matches[0].matched == "not interested"
    assert matches[0].method == "keyword"


def test_overlap_drops_contained_match_even_without_negation() -> None:
    matcher = IntentMatcher(
        [IntentSpec("call", keywords=("call back",)), IntentSpec("later", keywords=("call back later",))], "en"
    )
    assert names(matcher.match("please call back later")) == ["later"]
    assert names(matcher.match("please call back")) == ["call"]


def test_positive_keyword_matches(en: IntentMatcher) -> None:
    best = en.best("yes i'm interested")
    assert best is not None
    assert best.intent == "interested"
    assert set(names(en.match("yes i'm interested"))) == {"interested", "yes"}


def test_yes_does_not_match_yesterday(en: IntentMatcher) -> None:
    assert en.match("i called yesterday") == []
    assert en.match("eyes") == []


def test_keyword_apostrophe_tolerance(en: IntentMatcher) -> None:
    for text in ("please don't call again", "please dont call again", "please don’t call again"):
        assert names(en.match(text)) == ["not_interested"], text


def test_keyword_score_grows_with_coverage(en: IntentMatcher) -> None:
    full = en.match("yes")[0]
    partial = en.match("yes i am")[0]
    small = en.match("yes i am here to listen to whatever you say")[0]
    assert full.score == 1.0
    assert partial.score == pytest.approx(0.8)
    assert 0.6 <= small.score < partial.score < full.score


def test_regex_intent(en: IntentMatcher) -> None:
    matches = en.match("wait are you a real person")
    assert matches[0] == IntentMatch("robot", 0.9, "regex", "are you a real person")


def test_example_fuzzy_match(en: IntentMatcher) -> None:
    best = en.best("sorry i am very busy right now")
    assert best is not None
    assert (best.intent, best.method) == ("busy", "example")
    assert 0.5 <= best.score <= 0.85


def test_identical_example_scores_one(en: IntentMatcher) -> None:
    assert en.match("I am busy, right now.")[0] == IntentMatch("busy", 1.0, "example", "i am busy right now")


def test_example_needs_same_polarity(en: IntentMatcher) -> None:
    assert "busy" not in names(en.match("i am not busy right now"))


def test_unrelated_text_matches_nothing(en: IntentMatcher) -> None:
    assert en.match("what is the weather like in paris") == []
    assert en.best("") is None


def test_allowed_restricts_intents(en: IntentMatcher) -> None:
    text = "yes i'm interested"
    assert names(en.match(text, allowed=["yes"])) == ["yes"]
    assert en.match(text, allowed=[]) == []
    assert en.match(text, allowed={"robot", "unknown"}) == []


def test_best_respects_min_score(en: IntentMatcher) -> None:
    text = "yes i am here to listen to whatever you say"
    score = en.match(text)[0].score
    assert en.best(text, min_score=score) is not None
    assert en.best(text, min_score=score + 0.01) is None


def test_ties_follow_constructor_order() -> None:
    specs = [IntentSpec("first", keywords=("ok",)), IntentSpec("second", keywords=("ok",))]
    assert names(IntentMatcher(specs, "en").match("ok")) == ["first", "second"]
    assert names(IntentMatcher(specs[::-1], "en").match("ok")) == ["second", "first"]


def test_one_match_per_intent_best_first(en: IntentMatcher) -> None:
    matches = en.match("yeah sure yes")
    assert names(matches) == ["yes"]
    assert matches[0].matched in {"yeah", "sure"}


def test_keyword_containing_negator_is_not_rejected() -> None:
    matcher = IntentMatcher([IntentSpec("no", keywords=("no thanks", "not interested"))], "en")
    assert names(matcher.match("really not interested")) == ["no"]


# --------------------------------------------------------------------------- Chinese matching


@pytest.mark.parametrize("text", ["不需要", "不太需要", "没有需要", "不感兴趣", "没有兴趣", "不是很需要", "我不需要，谢谢"])
def test_zh_negation_blocks_positive_intent(zh: IntentMatcher, text: str) -> None:
    assert "need" not in names(zh.match(text))


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("需要", "need"),
        ("我很感兴趣", "need"),
        ("有兴趣", "need"),
        ("不需要", "no_need"),
        ("我 不 需 要", "no_need"),
        ("没兴趣", "no_need"),
        ("不感兴趣", "no_need"),
        ("我在忙", "busy"),
        ("你是机器人吗？", "robot"),
        ("您是真人吗", "robot"),
    ],
)
def test_zh_positive(zh: IntentMatcher, text: str, intent: str) -> None:
    best = zh.best(text)
    assert best is not None
    assert best.intent == intent


def test_zh_example_bigram_match(zh: IntentMatcher) -> None:
    best = zh.best("我现在正在开会")
    assert best is not None
    assert (best.intent, best.method) == ("busy", "example")
    assert 0.5 <= best.score <= 0.85


def test_zh_nothing(zh: IntentMatcher) -> None:
    assert zh.match("今天天气怎么样") == []


# --------------------------------------------------------------------------- construction, hints, helpers


def test_bad_regex_error_names_intent_and_pattern() -> None:
    with pytest.raises(ValueError, match=r"'broken'.*\(unclosed"):
        IntentMatcher([IntentSpec("fine", regex=("ok",)), IntentSpec("broken", regex=("(unclosed",))], "en")


def test_unknown_language_rejected() -> None:
    with pytest.raises(ValueError, match="de"):
        IntentMatcher(EN_INTENTS, "de")


def test_duplicate_intent_names_rejected() -> None:
    with pytest.raises(ValueError, match="dup"):
        IntentMatcher([IntentSpec("dup"), IntentSpec("dup")], "en")


def test_spec_accepts_lists_and_rejects_bare_string() -> None:
    spec = IntentSpec("x", keywords=["a", "b"])  # type: ignore[arg-type]
    assert spec.keywords == ("a", "b")
    with pytest.raises(TypeError, match="keywords"):
        IntentSpec("x", keywords="abc")  # type: ignore[arg-type]


def test_hint_phrases(en: IntentMatcher) -> None:
    hints = en.hint_phrases()
    assert hints[:3] == ["interested", "sounds good", "tell me more"]
    assert "i am busy right now" in hints
    assert len(hints) == len({normalize(h, "en") for h in hints})
    assert en.hint_phrases(["yes", "robot"]) == ["yes", "yeah", "sure", "robot"]


def test_hint_phrases_deduplicate_across_intents() -> None:
    matcher = IntentMatcher(
        [IntentSpec("a", keywords=("Yes", "ok"), examples=("yes",)), IntentSpec("b", keywords=("OK!", "fine"))], "en"
    )
    assert matcher.hint_phrases() == ["Yes", "ok", "fine"]


def test_find_keyword_spans() -> None:
    assert find_keyword("yes yesterday yes", "yes", "en") == [(0, 3), (14, 17)]
    assert find_keyword("i don't know", "dont", "en") == [(2, 7)]
    assert find_keyword("不需要需要", "需要", "zh") == [(1, 3), (3, 5)]


def test_match_is_fast() -> None:
    words = [f"word{i}" for i in range(40)]
    specs = [
        IntentSpec(f"i{i}", keywords=tuple(f"{words[i]} {words[i + j]}" for j in range(1, 11)),
                   regex=(rf"\b{words[i]}x\b",), examples=(f"tell me about {words[i]}",))
        for i in range(20)
    ]
    matcher = IntentMatcher(specs, "en")
    text = "well i am not sure about word3 word5 but tell me about word7 please"
    matcher.match(text)
    start = time.perf_counter()
    for _ in range(200):
        matcher.match(text)
    per_call = (time.perf_counter() - start) / 200
    assert per_call < 0.005  # typically ~0.2 ms; generous bound for loaded CI machines


# --------------------------------------------------------------------------- property


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=80), language=st.sampled_from(["en", "zh"]), use_allowed=st.booleans())
def test_match_never_raises_and_scores_in_range(text: str, language: str, use_allowed: bool) -> None:
    matcher = IntentMatcher(EN_INTENTS if language == "en" else ZH_INTENTS, language)
    allowed = ["yes", "need", "robot"] if use_allowed else None
    matches = matcher.match(text, allowed)
    assert len(names(matches)) == len(set(names(matches)))
    assert all(0.0 <= m.score <= 1.0 for m in matches)
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    assert all(m.method in {"keyword", "regex", "example"} for m in matches)
    if allowed is not None:
        assert set(names(matches)) <= set(allowed)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("不没需要兴趣很太是有感 notinerstdyes'")), max_size=30))
def test_match_never_raises_on_dense_keyword_text(text: str) -> None:
    for language, intents in (("en", EN_INTENTS), ("zh", ZH_INTENTS)):
        for match in IntentMatcher(intents, language).match(text):
            assert 0.0 <= match.score <= 1.0


def test_fillers_and_unrecognised_words_match_no_intent_of_the_example_flows() -> None:
    """The recogniser hears backchannels as themselves (they are in its hints) and unsure words as [unk]: neither may
    turn into an intent ("mm-hmm" is not "no", "[unk]" is not "unknown")."""
    from pathlib import Path

    from voicebot.dialog.backchannel import BACKCHANNELS
    from voicebot.dialog.loader import load_flow
    from voicebot.dialog.machine import build_matcher

    root = Path(__file__).resolve().parent.parent / "examples" / "flows"
    answers = {"ok", "okay", "yeah", "yep", "sure", "right", "alright", "all right", "got it", "cool", "i see",
               "对", "对对", "对对对", "好", "好好", "是", "是是", "行", "明白", "嗯嗯"}  # backchannels that answer too
    for name, language in (("lead_screening_en.yaml", "en"), ("lead_screening_zh.yaml", "zh")):
        matcher = build_matcher(load_flow(root / name))
        fillers = sorted(BACKCHANNELS[language] - answers)
        assert len(fillers) >= 8
        for text in [*fillers, "[unk]", "[unk] [unk]", f"{fillers[0]} [unk]"]:
            assert matcher.best(text, None, 0.5) is None, (name, text)


@pytest.mark.parametrize(("text", "intent"), [
    ("that is me", "yes"), ("yes that's me", "yes"), ("i do not need it", "no_need"), ("i don't need it", "no_need"),
    ("i cannot make it", "later"), ("i can not make it on thursday", "later"), ("i can't make it", "later"),
    ("what is the rate", "rate"),
])
def test_keywords_match_with_contractions_either_way(text: str, intent: str) -> None:
    matcher = IntentMatcher([IntentSpec("yes", keywords=("that's me",)), IntentSpec("no_need", keywords=("don't need",)),
                             IntentSpec("later", keywords=("can't make it",)), IntentSpec("rate", keywords=("what's the rate",))],
                            "en")
    assert names(matcher.match(text)) == [intent]


def test_expanded_contractions_keep_negation_and_word_bounds() -> None:
    matcher = IntentMatcher([IntentSpec("yes", keywords=("that's me",)), IntentSpec("interested", keywords=("i'm in",))],
                            "en")
    assert names(matcher.match("that is not me")) == []
    assert names(matcher.match("i am interested")) == []  # "i am in" must not match inside "i am interested"
    assert names(matcher.match("i am in")) == ["interested"]
    zh = IntentMatcher([IntentSpec("no_need", keywords=("don't need",))], "zh")
    assert names(zh.match("do not need")) == []  # English contractions are English only

