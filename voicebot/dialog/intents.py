"""Intent matching for recognised caller utterances (English and Mandarin).

Script designers describe each intent with keywords, regular expressions and
example phrases (:class:`IntentSpec`).  :class:`IntentMatcher` compiles them
once and scores an utterance against all of them.  The module is sans-I/O and
keeps no mutable global state.

Normalisation (:func:`normalize`) is applied to utterances, keywords and
examples alike: NFKC (full-width -> half-width), lowercase, curly apostrophes
unified to ``'``, punctuation and most symbols replaced by spaces (an
apostrophe inside a word such as ``don't`` is kept), whitespace collapsed.
For ``zh`` the spaces next to CJK characters are removed as well.

Scoring
-------
* **keyword** -- English keywords match on word boundaries ("yes" does not
  match "yesterday"; multi-word keywords are fine), Chinese keywords match as
  substrings.  Apostrophes are ignored while matching, so "don't" and "dont"
  match each other.  A match preceded by a negator (:func:`is_negated`) is
  rejected unless the keyword itself contains a negator ("not interested",
  不需要).  English contractions match either way: a keyword "that's me"
  also matches "that is me", "can't" matches "cannot" and "can not"
  (:func:`keyword_forms`).  Score = ``0.6 + 0.4 * coverage`` where coverage is the share of
  the utterance's non-space characters covered by the keyword, so a
  full-utterance match scores 1.0 and "yes" in "yes i am" scores 0.8.
* **regex** -- ``re.search`` (case-insensitive) on the normalised text; a
  non-empty match scores 0.9.  Negation is the pattern author's business.
* **example** -- cosine similarity of character-trigram sets (``zh``:
  character bigrams) between the normalised utterance and the example.
  Identical texts score 1.0; otherwise similarities >= 0.5 count, capped at
  0.85.  An example never matches when exactly one of the two texts contains
  a negator ("i am interested" vs "i am not interested").

Overlap: a keyword match whose span lies inside a strictly longer keyword or
regex match of *another* intent is dropped, so "not interested" beats
"interested".  Each intent reports its best match only; results are sorted by
score, ties broken by the order of intents given to the constructor.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

LANGUAGES = ("en", "zh")

KEYWORD_MIN_SCORE = 0.6
REGEX_SCORE = 0.9
EXAMPLE_MIN_SIMILARITY = 0.5
EXAMPLE_MAX_SCORE = 0.85

_APOSTROPHES = str.maketrans(
    {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "`": "'"}
)
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RE = re.compile(f"[{_CJK}]")
_ZH_GAP_RE = re.compile(f"(?<=[{_CJK}]) | (?=[{_CJK}])")
_SPACES_RE = re.compile(r"\s+")

_EN_NEGATORS = frozenset({
    "not", "no", "never", "nor", "neither", "cannot", "nothing", "none", "nobody", "nowhere", "dont",
    "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "wont", "cant", "couldnt", "wouldnt", "shouldnt",
    "aint", "havent", "hasnt", "hadnt", "mustnt", "neednt",
})
# Words that end the negation scope ("not now but interested").
_EN_CLAUSE_BREAKS = frozenset({
    "but", "however", "though", "although", "yet", "except", "and", "because", "cause", "whereas", "instead",
    "anyway",
})
# Intensifiers that do not count towards the 3-word window.
_EN_FILLERS = frozenset({
    "really", "very", "too", "quite", "actually", "particularly", "at", "all", "that", "so", "even", "much",
    "thats", "longer", "more",
})
# "no" followed by one of these is an interjection ("no i'm interested").
_EN_NO_FOLLOWERS = frozenset({
    "i", "im", "we", "it", "its", "you", "he", "she", "they", "this", "that", "thats", "yes", "yeah", "ok",
    "okay", "wait", "sorry",
})
_EN_WINDOW = 3
# Contractions a caller says, and a recogniser writes, either way: an English keyword matches in both forms
# ("that's me" / "that is me", "can't make it" / "cannot make it" / "can not make it").
_EN_CONTRACTIONS = {
    "that's": "that is", "what's": "what is", "there's": "there is", "it's": "it is", "who's": "who is",
    "i'm": "i am", "you're": "you are", "we're": "we are", "they're": "they are", "let's": "let us",
    "i'd": "i would", "i'll": "i will", "i've": "i have", "you'll": "you will", "we'll": "we will",
    "don't": "do not", "doesn't": "does not", "didn't": "did not", "can't": "can not", "cannot": "can not",
    "won't": "will not", "isn't": "is not", "aren't": "are not", "wasn't": "was not",
}
_EN_CONTRACTED = {long: short for short, long in _EN_CONTRACTIONS.items() if short != "cannot"}

_ZH_NEGATORS = ("没有", "并不", "不", "没", "别", "无", "未", "甭")
_ZH_NEGATOR_CHARS = frozenset("不没别无未甭")
_ZH_FILLERS = ("是很", "是太", "怎么", "那么", "特别", "太", "很", "大", "是")
# Common expressions that contain a negator character but are not negations.
_ZH_IDIOMS = ("不好意思", "没关系", "不客气", "对不起", "不错", "差不多", "没事")


@dataclass(frozen=True)
class IntentSpec:
    """One intent as designed in the script (per language)."""

    name: str
    keywords: tuple[str, ...] = ()
    regex: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Accept any sequence of strings (e.g. YAML lists); reject a bare str."""
        for field_name in ("keywords", "regex", "examples"):
            value = getattr(self, field_name)
            if isinstance(value, str):
                raise TypeError(
                    f"IntentSpec {self.name!r}: {field_name} must be a sequence "
                    "of strings, not a single string"
                )
            object.__setattr__(self, field_name, tuple(value))


@dataclass(frozen=True)
class IntentMatch:
    """The best way one intent matched an utterance."""

    intent: str
    score: float
    method: str
    matched: str


@dataclass(frozen=True)
class _Keyword:
    key: str  # normalised, apostrophes removed
    negative: bool  # the keyword itself contains a negator


@dataclass(frozen=True)
class _Example:
    norm: str
    grams: frozenset[str]
    negative: bool


@dataclass(frozen=True)
class _Compiled:
    name: str
    keywords: tuple[_Keyword, ...]
    regexes: tuple[re.Pattern[str], ...]
    examples: tuple[_Example, ...]


@dataclass(frozen=True)
class _Utterance:
    norm: str
    key: str  # norm without apostrophes
    index: tuple[int, ...]  # key position -> norm position
    size: int  # non-space characters
    grams: frozenset[str]
    negative: bool


@dataclass(frozen=True)
class _Hit:
    order: int
    score: float
    method: str
    matched: str
    start: int = 0
    end: int = 0


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; expected one of {LANGUAGES}")


def _is_cjk(char: str) -> bool:
    return _CJK_RE.match(char) is not None


def _is_word_char(char: str) -> bool:
    """A character that glues words together (letters/digits, not CJK)."""
    return char.isalnum() and not _is_cjk(char)


def _clean_char(text: str, i: int) -> str:
    char = text[i]
    if char == "'":
        inside = 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
        return char if inside else " "
    category = unicodedata.category(char)
    if category == "Cf":
        return ""
    if category[0] in "PZ" or category == "Cc" or (category[0] == "S" and category != "Sc"):
        return " "
    return char


def normalize(text: str, language: str) -> str:
    """Normalise an utterance, keyword or example for matching (see module doc)."""
    _check_language(language)
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
    cleaned = "".join(_clean_char(text, i) for i in range(len(text)))
    out = _SPACES_RE.sub(" ", cleaned).strip()
    if language == "zh":
        out = _ZH_GAP_RE.sub("", out)
    return out


def _en_negated(prefix: str) -> bool:
    counted = 0
    for raw in reversed(prefix.split()):
        word = raw.replace("'", "")
        if word in _EN_CLAUSE_BREAKS:
            return False
        if word == "no":  # "no interest" negates; "no call me at five" is an interjection
            return counted == 0
        if word in _EN_NEGATORS or raw.endswith("n't"):
            return True
        if word not in _EN_FILLERS:
            counted += 1
            if counted >= _EN_WINDOW:
                return False
    return False


def _zh_negated(prefix: str) -> bool:
    prefix = prefix.rstrip()
    for _ in range(3):
        if prefix.endswith(_ZH_NEGATORS):
            return True
        filler = next((f for f in _ZH_FILLERS if prefix.endswith(f)), None)
        if filler is None:
            return False
        prefix = prefix[: -len(filler)]
    return False


def is_negated(text: str, start: int, language: str) -> bool:
    """True if the span at char index ``start`` of normalised text is negated.

    en: a negator (not, no, never, don't, dont, ...n't, ...) within the 3
    preceding words, ignoring intensifiers (really, at all, that, ...) and
    stopping at clause words (but, and, ...); "no" negates only the word right
    after it ("no interest"), elsewhere it is an interjection ("no i'm in").  zh: 不/没/没有/别/无/未/并不 right before the
    span, optionally followed by 太/很/怎么/是很/大/是 (不太需要, 不是很需要).
    """
    _check_language(language)
    start = max(0, min(start, len(text)))
    if language == "zh":
        return _zh_negated(text[:start])
    return _en_negated(text[:start])


def _has_negator(norm: str, language: str) -> bool:
    """Whether the text as a whole contains a negation (for example polarity)."""
    if language == "zh":
        for idiom in _ZH_IDIOMS:
            norm = norm.replace(idiom, " ")
        return any(char in _ZH_NEGATOR_CHARS for char in norm)
    words = [w.replace("'", "") for w in norm.split()] + [""]
    for word, follower in itertools.pairwise(words):
        if word == "no" and follower in _EN_NO_FOLLOWERS:
            continue
        if word in _EN_NEGATORS:
            return True
    return False


def _grams(norm: str, language: str) -> frozenset[str]:
    if language == "zh":
        text = norm.replace(" ", "")
        size = 2
    else:
        text = f" {norm} "
        size = 3
    if len(text) <= size:
        return frozenset({text}) if text.strip() else frozenset()
    return frozenset(text[i : i + size] for i in range(len(text) - size + 1))


def _similarity(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / math.sqrt(len(a) * len(b))


def _strip_apostrophes(norm: str) -> tuple[str, tuple[int, ...]]:
    if "'" not in norm:
        return norm, tuple(range(len(norm)))
    index = tuple(i for i, char in enumerate(norm) if char != "'")
    return "".join(norm[i] for i in index), index


def _find_all(haystack: str, needle: str) -> Iterator[tuple[int, int]]:
    """Occurrences of ``needle`` that do not cut through a (non-CJK) word."""
    if not needle:
        return
    pos = haystack.find(needle)
    while pos >= 0:
        end = pos + len(needle)
        left_ok = pos == 0 or not (_is_word_char(haystack[pos - 1]) and _is_word_char(needle[0]))
        right_ok = end == len(haystack) or not (
            _is_word_char(haystack[end]) and _is_word_char(needle[-1])
        )
        if left_ok and right_ok:
            yield pos, end
        pos = haystack.find(needle, pos + 1)


def find_keyword(text: str, keyword: str, language: str) -> list[tuple[int, int]]:
    """Spans of ``keyword`` in normalised ``text`` (word-bounded, no negation check).

    ``keyword`` is normalised here; apostrophes are ignored on both sides and
    the returned ``(start, end)`` offsets refer to ``text``.
    """
    key, index = _strip_apostrophes(text)
    needle = normalize(keyword, language).replace("'", "")
    return [(index[s], index[e - 1] + 1) for s, e in _find_all(key, needle)]


def keyword_forms(norm: str, language: str) -> list[str]:
    """A normalised keyword and, in English, its forms with contractions expanded and contracted (see
    :data:`_EN_CONTRACTIONS`): ``["that's me", "that is me"]``. Other languages: the keyword only."""
    if language != "en":
        return [norm]
    expanded = " ".join(_EN_CONTRACTIONS.get(word, word) for word in norm.split())
    words, short = expanded.split(), []
    while words:
        pair = " ".join(words[:2])
        if pair in _EN_CONTRACTED:
            short.append(_EN_CONTRACTED[pair])
            words = words[2:]
        else:
            short.append(words.pop(0))
    return list(dict.fromkeys((norm, expanded, " ".join(short), expanded.replace("can not", "cannot"))))


def _keyword_is_negative(key: str, language: str) -> bool:
    if language == "zh":
        return any(char in _ZH_NEGATOR_CHARS for char in key)
    return any(word in _EN_NEGATORS for word in key.split())


def _nonspace(text: str) -> int:
    return len(text) - text.count(" ")


def _drop_overlapped(hits: list[_Hit]) -> list[_Hit]:
    """Drop keyword hits inside a strictly longer span hit of another intent."""

    def covered(hit: _Hit) -> bool:
        return hit.method == "keyword" and any(
            other.order != hit.order
            and other.start <= hit.start
            and hit.end <= other.end
            and other.end - other.start > hit.end - hit.start
            for other in hits
        )

    return [hit for hit in hits if not covered(hit)]


class IntentMatcher:
    """Matches normalised utterances against a fixed set of intents."""

    def __init__(self, intents: Sequence[IntentSpec], language: str) -> None:
        """Compile all intents once; raise ValueError on bad input."""
        _check_language(language)
        self.language = language
        self._specs = tuple(intents)
        names = [spec.name for spec in self._specs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate intent names: {duplicates}")
        self._compiled = tuple(self._compile(spec) for spec in self._specs)
        self._all = tuple(range(len(self._compiled)))
        self._hint_cache: dict[frozenset[str] | None, list[str]] = {}

    def _compile(self, spec: IntentSpec) -> _Compiled:
        keys = dict.fromkeys(form.replace("'", "") for k in spec.keywords
                             for form in keyword_forms(normalize(k, self.language), self.language))
        keywords = tuple(
            _Keyword(key, _keyword_is_negative(key, self.language)) for key in keys if key
        )
        regexes = []
        for pattern in spec.regex:
            try:
                regexes.append(re.compile(pattern, re.IGNORECASE))
            except re.error as exc:
                raise ValueError(
                    f"intent {spec.name!r}: invalid regex {pattern!r}: {exc}"
                ) from exc
        norms = dict.fromkeys(normalize(e, self.language) for e in spec.examples)
        examples = tuple(
            _Example(n, _grams(n, self.language), _has_negator(n, self.language))
            for n in norms
            if n
        )
        return _Compiled(spec.name, keywords, tuple(regexes), examples)

    def _selected(self, allowed: Collection[str] | None) -> tuple[int, ...]:
        if allowed is None:
            return self._all
        wanted = frozenset(allowed)
        return tuple(i for i in self._all if self._compiled[i].name in wanted)

    def _prepare(self, text: str) -> _Utterance:
        norm = normalize(text, self.language)
        key, index = _strip_apostrophes(norm)
        grams = _grams(norm, self.language)
        negative = _has_negator(norm, self.language)
        return _Utterance(norm, key, index, _nonspace(key), grams, negative)

    def _keyword_hits(self, order: int, utt: _Utterance) -> Iterator[_Hit]:
        for keyword in self._compiled[order].keywords:
            if keyword.key not in utt.key:  # cheap pre-check, most keywords miss
                continue
            for start, end in _find_all(utt.key, keyword.key):
                n_start, n_end = utt.index[start], utt.index[end - 1] + 1
                if not keyword.negative and is_negated(utt.norm, n_start, self.language):
                    continue
                coverage = _nonspace(keyword.key) / utt.size
                score = min(1.0, KEYWORD_MIN_SCORE + (1.0 - KEYWORD_MIN_SCORE) * coverage)
                yield _Hit(order, score, "keyword", utt.norm[n_start:n_end], n_start, n_end)

    def _regex_hits(self, order: int, utt: _Utterance) -> Iterator[_Hit]:
        for pattern in self._compiled[order].regexes:
            found = pattern.search(utt.norm)
            if found is not None and found.end() > found.start():
                yield _Hit(order, REGEX_SCORE, "regex", found.group(0), *found.span())

    def _example_hit(self, order: int, utt: _Utterance) -> _Hit | None:
        best: _Hit | None = None
        for example in self._compiled[order].examples:
            if example.norm == utt.norm:
                return _Hit(order, 1.0, "example", example.norm)
            if example.negative != utt.negative:
                continue
            similarity = _similarity(example.grams, utt.grams)
            if similarity >= EXAMPLE_MIN_SIMILARITY:
                score = min(similarity, EXAMPLE_MAX_SCORE)
                if best is None or score > best.score:
                    best = _Hit(order, score, "example", example.norm)
        return best

    def match(self, text: str, allowed: Collection[str] | None = None) -> list[IntentMatch]:
        """All matching intents (optionally only ``allowed`` names), best first."""
        utt = self._prepare(text)
        chosen = self._selected(allowed)
        if not utt.norm or not chosen:
            return []
        spans = [h for i in chosen for h in self._keyword_hits(i, utt)]
        spans += [h for i in chosen for h in self._regex_hits(i, utt)]
        candidates = _drop_overlapped(spans)
        candidates += [h for i in chosen if (h := self._example_hit(i, utt)) is not None]
        best: dict[int, _Hit] = {}
        for hit in candidates:
            if hit.order not in best or hit.score > best[hit.order].score:
                best[hit.order] = hit
        ranked = sorted(best.values(), key=lambda h: (-h.score, h.order))
        return [
            IntentMatch(self._compiled[h.order].name, h.score, h.method, h.matched)
            for h in ranked
        ]

    def best(
        self, text: str, allowed: Collection[str] | None = None, min_score: float = 0.5
    ) -> IntentMatch | None:
        """The top match if its score reaches ``min_score``, else None."""
        matches = self.match(text, allowed)
        if matches and matches[0].score >= min_score:
            return matches[0]
        return None

    def hint_phrases(self, allowed: Collection[str] | None = None) -> list[str]:
        """Keywords and examples of the selected intents, deduplicated, in order (cached per ``allowed`` set)."""
        key = None if allowed is None else frozenset(allowed)
        if key not in self._hint_cache:
            self._hint_cache[key] = self._collect_hints(allowed)
        return list(self._hint_cache[key])

    def _collect_hints(self, allowed: Collection[str] | None) -> list[str]:
        seen: set[str] = set()
        phrases: list[str] = []
        for order in self._selected(allowed):
            spec = self._specs[order]
            for phrase in (*spec.keywords, *spec.examples):
                key = normalize(phrase, self.language)
                if key and key not in seen:
                    seen.add(key)
                    phrases.append(phrase.strip())
        return phrases
