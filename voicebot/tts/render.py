"""Prompt rendering: every fixed thing a flow says, ready before the call; the rest joined in without clicks.

Prompt ids. Every utterance a flow can say gets a stable id, so an agent can
record it: the utterance's own ``prompt:`` when the flow gives one, otherwise
``<node>.<kind>.<n>`` with kind ``say`` (the node's variants), ``no_input`` or
``no_match`` (re-prompts; only for nodes that listen) or ``hold`` (transfer
hold) and n counting variants from 1: ``greet.say.1``, ``pitch.say.2``,
``greet.no_input.1``, ``handoff.hold.1``; an intent's confirm prompt is
``<intent>.confirm.<n>`` (``wrong_person.confirm.1``). A prompt with ``{{variables}}`` is
dynamic; its fixed stretches between variables are recordable fragments
``<id>.part<n>`` (``greet.say.1.part1`` = "Hi, this is").

:class:`PromptCache` renders each distinct static text once per call rate:
from the agent's recording when the pack has one (by id, or by transcript),
else from its disk cache, else by synthesis (then stored on disk). On a call,
:meth:`PromptCache.get` never synthesizes, and :meth:`PromptCache.render_dynamic`
synthesizes only the variables' values.

Joins: pieces are loudness-matched (synthesized pieces to their neighbour's
speech level, or to the pack's target) and joined with a 10 ms equal-power
crossfade, which removes the step a plain concatenation leaves at each join.
"""

from __future__ import annotations

__all__ = [
    "CROSSFADE_MS",
    "Joiner",
    "PromptCache",
    "Segment",
    "join_offsets",
    "join_segments",
    "live_phrases",
    "max_join_discontinuity",
    "recordable_prompts",
    "static_prompts",
    "template_parts",
]

import hashlib
import json
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicebot.audio.resample import resample
from voicebot.audio.wav import read_wav, write_wav
from voicebot.dialog.flow import Flow, Node, Say
from voicebot.tts.base import VoiceError
from voicebot.tts.joins import (
    CROSSFADE_MS,
    Joiner,
    Segment,
    join_offsets,
    join_segments,
    max_join_discontinuity,
)
from voicebot.tts.normalize import normalize_text
from voicebot.tts.pack import Int16Array, VoicePack, active_dbfs, normalize_loudness, trim_silence
from voicebot.tts.vc.apply import MODEL_FILE, VC_DIR, convert, load_model
from voicebot.tts.vc.apply import RATE as CONVERT_RATE

LIVE_MEMO = 256  # live-synthesized pieces kept per cache (a few MB at 8 kHz)
TAKES_MEMO = 4096  # texts whose recording (or its absence) a cache remembers
PRERENDER_MAX = 1024  # pre-rendered pieces kept per cache for leads waiting to be dialed (~16 MB at 8 kHz)

TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")  # same syntax as the dialog machine
CACHE_FORMAT = 4  # bump when rendering changes so old cache files are not reused
RENDER_MARGIN_MS = 15  # silence kept before and after a rendered prompt
LIVE_PHRASE_CHARS = 80  # a live value is synthesized in phrases of at most this many characters (about 5 s of speech)
RenderProgress = Callable[[int, int, str], None]  # (prompts done, prompts in all, source: memory|recording|disk|synth)
_LEADING_PUNCT = re.compile(r"^[^\w\s]+")
_CLAUSE_END = re.compile(r"(?<=[,;:.!?，；。！？])\s+")
_PAUSE_AFTER = {".": 250, "!": 250, "?": 250, "。": 250, "！": 250, "？": 250, ",": 120, ";": 150, ":": 150, "，": 120, "；": 150}


@dataclass(frozen=True)
class PromptSpec:
    """One utterance the flow can say: its prompt id, the node, the text and the variables in it."""

    prompt_id: str
    node: str
    text: str
    template_vars: tuple[str, ...] = ()

    @property
    def dynamic(self) -> bool:
        """True when the text holds ``{{variables}}`` (synthesized in part on the call)."""
        return bool(self.template_vars)


@dataclass(frozen=True)
class Part:
    """A stretch of a template: fixed ``text``, or variable ``var`` followed by the punctuation ``text``."""

    text: str
    var: str = ""


@dataclass(frozen=True)
class RenderReport:
    """What :meth:`PromptCache.render_flow` did: distinct texts, where each came from, wall time (s), audio bytes."""

    count: int
    synthesized: int
    from_recordings: int
    from_disk: int
    seconds: float
    bytes: int


# --------------------------------------------------------------------------- the flow's prompts


def _node_says(node: Node) -> Iterator[tuple[str, Say]]:
    yield "say", node.say
    if node.listen is not None:
        if node.no_input.retries > 0:
            yield "no_input", node.no_input.reprompt
        if node.no_match.retries > 0 and not node.default:
            yield "no_match", node.no_match.reprompt
    if node.transfer is not None:
        yield "hold", node.transfer.hold


def static_prompts(flow: Flow) -> list[PromptSpec]:
    """Every utterance ``flow`` can say (say variants, re-prompts of listening nodes, hold, then intents' confirm
    prompts), in flow order."""
    specs: list[PromptSpec] = []
    for node in flow.nodes.values():
        for kind, say in _node_says(node):
            for n, utt in enumerate(say.variants, 1):
                pid = utt.prompt or f"{node.id}.{kind}.{n}"
                names = tuple(dict.fromkeys(TEMPLATE.findall(utt.text)))
                specs.append(PromptSpec(pid, node.id, utt.text, names))
    for name, intent in flow.intents.items():  # confirm prompts are said in whichever node heard the intent
        for n, utt in enumerate(intent.confirm.variants, 1):
            names = tuple(dict.fromkeys(TEMPLATE.findall(utt.text)))
            specs.append(PromptSpec(utt.prompt or f"{name}.confirm.{n}", "", utt.text, names))
    return specs


def template_parts(template: str) -> list[Part]:
    """Split a template into fixed and variable parts; punctuation right after a variable goes with it."""
    parts: list[Part] = []
    pos = 0
    for m in TEMPLATE.finditer(template):
        _add_fixed(parts, template[pos : m.start()])
        parts.append(Part("", m.group(1)))
        pos = m.end()
    _add_fixed(parts, template[pos:])
    return parts


def _add_fixed(parts: list[Part], text: str) -> None:
    if parts and parts[-1].var:
        punct = _LEADING_PUNCT.match(text.lstrip())
        if punct:
            parts[-1] = Part(parts[-1].text + punct.group(0), parts[-1].var)
            text = text.lstrip()[punct.end() :]
    text = " ".join(text.split())
    if re.search(r"\w", text):
        parts.append(Part(text))


def fragment_prompts(spec: PromptSpec) -> list[PromptSpec]:
    """The fixed stretches of a dynamic prompt as recordable prompts ``<id>.part<n>``."""
    fixed = [p.text for p in template_parts(spec.text) if not p.var]
    return [PromptSpec(f"{spec.prompt_id}.part{n}", spec.node, text) for n, text in enumerate(fixed, 1)]


def recordable_prompts(flow: Flow) -> list[PromptSpec]:
    """What an agent can record: the static prompts, then the fragments of the dynamic ones."""
    specs = static_prompts(flow)
    fixed = [s for s in specs if not s.dynamic]
    return fixed + [f for s in specs if s.dynamic for f in fragment_prompts(s)]


def group_by_text(specs: Iterable[PromptSpec]) -> list[tuple[PromptSpec, tuple[str, ...]]]:
    """Specs with identical text merged: (first spec, ids of the others saying the same)."""
    groups: dict[str, list[PromptSpec]] = {}
    for spec in specs:
        groups.setdefault(_mem_text(spec.text) or f"#{spec.prompt_id}", []).append(spec)
    return [(g[0], tuple(s.prompt_id for s in g[1:])) for g in groups.values()]


def _mem_text(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- joins


# --------------------------------------------------------------------------- the cache


_file_hashes: dict[tuple[str, int, int], str] = {}


def file_fingerprint(path: Path) -> str:
    """sha256 of a file's content, memoised by (path, size, mtime)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _file_hashes:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _file_hashes[key] = digest.hexdigest()
    return _file_hashes[key]


def voice_fingerprint(pack: VoicePack) -> str:
    """What identifies the pack's neural voice: the model file's hash and its config's (if any), and a Kokoro
    voice's style."""
    config = pack.config_file()
    style = pack.speaker if pack.speaker.startswith("kokoro:") else ""
    return style + file_fingerprint(pack.model_file()) + (file_fingerprint(config) if config.is_file() else "")


class PromptCache:
    """Rendered prompts for one pack: in memory per (text, rate), and as WAVs in ``cache_dir`` (optional).

    ``synth_count`` counts syntheses of fixed text (prompts, fragments) and
    ``live_synth_count`` the variable values asked for on calls; of those, ``live_memo_hits`` came from the LRU,
    ``prerendered_hits`` from pieces made before the call (:meth:`add_prerendered`), and ``live_synthesized`` were
    synthesized on the call. Thread-safe.
    """

    def __init__(self, pack: VoicePack, cache_dir: Path | None = None, *, convert: bool = True) -> None:
        self.pack = pack
        self.cache_dir = cache_dir
        # the pack's enabled voice conversion (voicebot.tts.vc.apply), applied to every synthesized piece; `convert`
        # False: the stock voice (voice train renders it so)
        self.conversion = load_model(pack) if convert else None
        self._conversion_key = file_fingerprint(pack.root / VC_DIR / MODEL_FILE) if self.conversion else ""
        self.convert_seconds = 0.0  # CPU-side wall time spent converting, and the audio it converted (s)
        self.converted_audio_s = 0.0
        self.synth_count = 0
        self.live_synth_count = 0
        self.live_memo_hits = 0  # live pieces served from the LRU (synthesize_live)
        self.prerendered_hits = 0  # live pieces served from what prerender() made before the call
        self.live_synthesized = 0  # live pieces synthesized on a call (none of the above had them)
        self.prerendered_count = 0  # pieces added by add_prerendered()
        self._prerendered: OrderedDict[tuple[str, int], Int16Array] = OrderedDict()  # lead fill-ins made ahead
        self._mem: dict[tuple[str, int], Int16Array] = {}
        self._live: OrderedDict[tuple[str, int], Int16Array] = OrderedDict()  # live pieces (synthesize_live)
        self._takes: OrderedDict[str, Int16Array | None] = OrderedDict()  # text -> the agent's take (_take), LRU
        self._lock = threading.Lock()
        self._fingerprint: str | None = None
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)

    def render_flow(self, flow: Flow, rate: int, progress: RenderProgress | None = None) -> RenderReport:
        """Render every distinct fixed text of ``flow`` at ``rate`` Hz (prompts and dynamic prompts' fragments);
        ``progress(done, total, source)`` after each (source: memory, recording, disk or synth)."""
        if flow.language != self.pack.language:
            raise VoiceError(f"{self.pack.root}: pack language {self.pack.language} != flow {flow.id} language {flow.language}")
        started, counts, nbytes = time.monotonic(), {"synth": 0, "recording": 0, "disk": 0, "memory": 0}, 0
        groups = group_by_text(recordable_prompts(flow))
        for done, (spec, also) in enumerate(groups, 1):
            audio, source = self.render(spec.text, rate, (spec.prompt_id, *also))
            if progress is not None:
                progress(done, len(groups), source)
            counts[source] += 1
            nbytes += audio.nbytes
        return RenderReport(len(groups), counts["synth"], counts["recording"], counts["disk"],
                            time.monotonic() - started, nbytes)

    def render(self, text: str, rate: int, prompt_ids: tuple[str, ...] = ()) -> tuple[Int16Array, str]:
        """``text`` at ``rate``, rendered once: (audio, source) with source memory|recording|disk|synth."""
        key = self._key(text, prompt_ids)
        with self._lock:
            if (key, rate) in self._mem:
                return self._mem[(key, rate)], "memory"
        audio, source = self._lookup(text, rate, prompt_ids)
        if audio is None:
            if not text.strip():
                raise VoiceError(f"{self.pack.prompts_dir}: prompt {', '.join(prompt_ids)} has no recording and no text")
            audio, source = self._synthesize_to_disk(text, rate), "synth"
        with self._lock:
            self._mem[(key, rate)] = audio
        return audio, source

    def get(self, text: str, rate: int, prompt_id: str = "") -> Int16Array | None:
        """Rendered audio of a fixed text at ``rate`` (memory, recording or disk), never synthesizing: None if absent."""
        key = self._key(text, (prompt_id,) if prompt_id else ())
        with self._lock:
            if (key, rate) in self._mem:
                return self._mem[(key, rate)]
        audio, _ = self._lookup(text, rate, (prompt_id,) if prompt_id else ())
        if audio is not None:
            with self._lock:
                self._mem[(key, rate)] = audio
        return audio

    def _key(self, text: str, prompt_ids: tuple[str, ...]) -> str:
        return _mem_text(text) or f"#{prompt_ids[0] if prompt_ids else ''}"

    def _lookup(self, text: str, rate: int, prompt_ids: tuple[str, ...]) -> tuple[Int16Array | None, str]:
        by_text = self.pack.prompt_for_text(text) if text.strip() else None
        for pid in (*prompt_ids, *([by_text] if by_text else [])):
            recorded = self.pack.recording(pid)
            if recorded is not None:
                return resample(recorded, self.pack.sample_rate, rate), "recording"
        path = self.cache_path(text, rate)
        if path is not None and path.is_file():
            try:
                samples, file_rate = read_wav(path)
            except ValueError:
                return None, ""
            if file_rate == rate and len(samples):
                return samples, "disk"
        return None, ""

    def cache_path(self, text: str, rate: int) -> Path | None:
        """``cache_dir/<sha256>.wav`` for synthesized ``text`` at ``rate`` (None without a cache dir)."""
        if self.cache_dir is None:
            return None
        if self._fingerprint is None:
            self._fingerprint = voice_fingerprint(self.pack)
        said = _mem_text(normalize_text(text, self.pack.language))
        ident = [CACHE_FORMAT, self.pack.name, self._fingerprint, said, rate, self.pack.speaking_rate,
                 self.pack.loudness_target_dbfs, self._conversion_key]
        return self.cache_dir / f"{hashlib.sha256(json.dumps(ident).encode()).hexdigest()}.wav"

    def disk_usage(self) -> tuple[int, int]:
        """(files, bytes) in the disk cache."""
        files = list(self.cache_dir.glob("*.wav")) if self.cache_dir is not None else []
        return len(files), sum(f.stat().st_size for f in files)

    def _synthesize_to_disk(self, text: str, rate: int) -> Int16Array:
        audio = normalize_loudness(self.synthesize(text, rate), rate, self.pack.loudness_target_dbfs)
        # the voice pads each sentence with ~60 ms of silence: the caller would wait for it on every reply
        audio = trim_silence(audio, rate, margin_ms=RENDER_MARGIN_MS)
        with self._lock:
            self.synth_count += 1
        path = self.cache_path(text, rate)
        if path is not None:
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
            write_wav(tmp, audio, rate)
            os.replace(tmp, path)  # atomic: another process never reads half a file
        return audio

    def synthesize(self, text: str, rate: int) -> Int16Array:
        """``text`` (normalized for the pack's language) spoken by the pack's neural voice at ``rate`` (not cached)."""
        native, native_rate = self.synthesize_native(text)
        return resample(native, native_rate, rate)

    def synthesize_native(self, text: str) -> tuple[Int16Array, int]:
        """:meth:`synthesize` at the voice's own rate: (audio, rate in Hz)."""
        voice = self.pack.voice
        sentences = [np.asarray(s, dtype=np.int16) for s in voice.synthesize(normalize_text(text, self.pack.language))]
        native = join_segments(sentences, voice.sample_rate) if sentences else np.zeros(0, dtype=np.int16)
        if self.conversion is None or not len(native):
            return native, voice.sample_rate
        started = time.perf_counter()
        converted = convert(self.conversion, resample(native, voice.sample_rate, CONVERT_RATE))
        with self._lock:
            self.convert_seconds += time.perf_counter() - started
            self.converted_audio_s += len(converted) / CONVERT_RATE
        return converted, CONVERT_RATE

    @property
    def voice_key(self) -> tuple[str, str, float]:
        """What makes two caches' synthesized audio the same: the pack's name, its voice's hash (with its
        conversion's) and speaking rate."""
        if self._fingerprint is None:
            self._fingerprint = voice_fingerprint(self.pack)
        return self.pack.name, self._fingerprint + self._conversion_key, self.pack.speaking_rate

    def synthesize_live(self, text: str, rate: int) -> Int16Array:
        """:meth:`synthesize` for a variable's value on a call, kept in an LRU of LIVE_MEMO pieces.

        Values that are the same on every call of a campaign (agent, company, offer) are synthesized once per
        process. ``live_synth_count`` counts live pieces as before; ``live_memo_hits`` those the LRU answered.
        """
        key = (text, rate)
        with self._lock:
            self.live_synth_count += 1
            audio = self._live.get(key)
            if audio is not None:
                self._live.move_to_end(key)
                self.live_memo_hits += 1
                return audio
            audio = self._prerendered.get(key)
            if audio is not None:
                self.prerendered_hits += 1
                return audio
            self.live_synthesized += 1
        audio = self.synthesize(text, rate)
        with self._lock:
            self._live[key] = audio
            while len(self._live) > LIVE_MEMO:
                self._live.popitem(last=False)
        return audio

    def needs_prerender(self, text: str, rate: int) -> bool:
        """Whether a call saying the live piece ``text`` at ``rate`` would synthesize it now."""
        with self._lock:
            return (text, rate) not in self._prerendered and (text, rate) not in self._live

    def add_prerendered(self, text: str, rate: int, audio: Int16Array) -> None:
        """Keep ``audio`` (at ``rate``) for the live piece ``text`` until a call says it; the newest
        :data:`PRERENDER_MAX` are kept (voicebot.tts.prerender makes them before the lead's dial)."""
        with self._lock:
            self.prerendered_count += 1
            self._prerendered[(text, rate)] = audio
            self._prerendered.move_to_end((text, rate))
            while len(self._prerendered) > PRERENDER_MAX:
                self._prerendered.popitem(last=False)

    def value_phrases(self, template: str, values: Mapping[str, str]) -> list[str]:
        """The pieces :meth:`render_dynamic` would synthesize live for ``template`` with ``values``, in order."""
        phrases: list[str] = []
        for part in template_parts(template):
            said = self._said(part, values)
            if said and self._take(said) is None:
                phrases += live_phrases(said)
        return phrases

    @staticmethod
    def _said(part: Part, values: Mapping[str, str]) -> str:
        """What a variable part says (its value and the fixed text up to the next variable); "" for a fixed part or
        an empty value."""
        value = str(values.get(part.var, "")).strip() if part.var else ""
        return value + part.text if value else ""

    # ----------------------------------------------------------------------- dynamic text

    def render_dynamic(self, template: str, values: Mapping[str, str], rate: int,
                       crossfade_ms: float = CROSSFADE_MS, segments: list[Segment] | None = None) -> Iterator[Int16Array]:
        """Speak ``template`` with ``values`` at ``rate``: fixed parts from recordings/cache, values synthesized live.

        Yields audio as soon as each piece is ready (the first fixed piece at once),
        loudness-matched and crossfaded; unknown or empty variables are skipped. ``segments``, when given, gets
        each piece's place in the joined audio as it is pushed (voicebot.tts.seams measures the joins).
        """
        joiner = Joiner(rate, crossfade_ms, fade_in=True)
        parts = template_parts(template)
        level = self._anchor_level(parts, values, rate)
        for piece, pause_ms, kind, text in self._pieces(parts, values, rate):
            piece = trim_silence(piece, rate, margin_ms=30)
            if kind == "live" or (kind == "cached" and level != self.pack.loudness_target_dbfs):
                piece = normalize_loudness(piece, rate, level)  # cached pieces are at the pack's target already
            elif len(piece):
                level = active_dbfs(piece, rate)
            if segments is not None:
                segments.append(Segment(joiner.start_of(len(piece)), len(piece), kind, text))
            yield joiner.push(piece)
            if pause_ms:
                if segments is not None:
                    segments.append(Segment(joiner.start_of(rate * pause_ms // 1000), rate * pause_ms // 1000, "pause", ""))
                yield joiner.push(np.zeros(rate * pause_ms // 1000, dtype=np.int16))
        yield joiner.finish(fade_out=True)

    def _pieces(self, parts: list[Part], values: Mapping[str, str], rate: int
                ) -> Iterator[tuple[Int16Array, int, str, str]]:
        """(audio, pause after in ms, kind, text) for each part with something to say (kinds: :class:`Segment`)."""
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if not part.var:
                audio, source = self.render(part.text, rate)
                kind = "recording" if source == "recording" or self._take(part.text) is not None else "cached"
                yield audio, 0 if last else _pause_after(part.text), kind, part.text.strip()
                continue
            said = self._said(part, values)
            if not said:
                continue
            recorded = self._take(said)
            if recorded is not None:
                yield resample(recorded, self.pack.sample_rate, rate), 0 if last else _pause_after(said), "recording", said
                continue
            phrases = live_phrases(said)
            for j, phrase in enumerate(phrases):  # the first phrase plays while the next is synthesized
                end = last and j == len(phrases) - 1
                yield self.synthesize_live(phrase, rate), 0 if end else _pause_after(phrase), "live", phrase

    def _anchor_level(self, parts: list[Part], values: Mapping[str, str], rate: int) -> float:
        """The speech level (dBFS) synthesized pieces take in a prompt: its first recorded piece's, else the pack's
        target. A take keeps its own level (a quiet one is not raised, with its noise); what is synthesized around
        it follows it, before it as well as after, so no join steps."""
        for part in parts:
            recorded = self._take(self._said(part, values) if part.var else part.text)
            if recorded is not None and len(recorded):
                return active_dbfs(trim_silence(recorded, self.pack.sample_rate, margin_ms=30), self.pack.sample_rate)
        return self.pack.loudness_target_dbfs

    def _take(self, text: str) -> Int16Array | None:
        """The agent's recording whose transcript says ``text`` (at the pack's rate), or None; read from disk once
        per text, not on every play (the newest :data:`TAKES_MEMO` texts are remembered: values differ per call)."""
        with self._lock:
            if text in self._takes:
                return self._takes[text]
        prompt_id = self.pack.prompt_for_text(text) if text.strip() else None
        take = self.pack.recording(prompt_id) if prompt_id else None
        with self._lock:
            self._takes[text] = take
            while len(self._takes) > TAKES_MEMO:
                self._takes.popitem(last=False)
        return take


def live_phrases(text: str, limit: int = LIVE_PHRASE_CHARS) -> list[str]:
    """``text`` in phrases of at most ``limit`` characters, cut after clause punctuation (short clauses joined),
    a longer clause at its last space before the limit; one phrase when it is short enough.

    A long value synthesized in one piece is ready only when all of it is: the prompt's fixed part ends first
    and the caller hears a hole (bench/max_gap.py, 300 characters: 0.3 to 5.3 s, by load). Phrase by phrase, each
    is ready while the one before plays.
    """
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    phrases: list[str] = []
    for clause in _CLAUSE_END.split(text):
        while len(clause) > limit:
            cut = clause.rfind(" ", 1, limit + 1)
            cut = cut if cut > 0 else limit
            phrases.append(clause[:cut].strip())
            clause = clause[cut:].strip()
        if phrases and len(phrases[-1]) + 1 + len(clause) <= limit:
            phrases[-1] = f"{phrases[-1]} {clause}"
        elif clause:
            phrases.append(clause)
    return phrases


def _pause_after(text: str) -> int:
    """Pause (ms) after a piece ending in ``text``: sentence end 250, comma 120, else 0."""
    stripped = text.rstrip()
    return _PAUSE_AFTER.get(stripped[-1], 0) if stripped else 0
