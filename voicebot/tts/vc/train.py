"""``voicebot voice train PACK``: fit the conversion on the pack's recordings, measure it on held-out ones, and
enable it only when it is better for the caller.

The parallel corpus is the pack itself: ``prompts/<id>.wav`` + ``.txt`` (the agent) and the pack's neural voice
saying the same ``.txt``. A held-out share of the prompts (``--heldout``, else 20 % chosen by the seed) is never
trained on; the enrollment clips are the similarity reference and add to the agent's F0 statistics.

Writes ``PACK/vc/model.npz`` (enabled; loaded by :func:`load_model`) or, when the guard refuses,
``PACK/vc/refused.npz``; and ``PACK/vc/report.json`` with every number either way.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from voicebot.audio.telephone import telephone_channel, to_rate
from voicebot.tts.base import VoiceError
from voicebot.tts.pack import VoicePack, read_audio_at, trim_silence
from voicebot.tts.speaker import SpeakerEmbedder, shared_embedder, similarity
from voicebot.tts.vc import align, world
from voicebot.tts.vc.apply import MODEL_FILE, VC_DIR
from voicebot.tts.vc.mapping import COMPONENTS, MAPPED_DIMS, SHIFT_COMPONENTS, F0Transform, ShiftMap, SpectralMap, VoiceConversion
from voicebot.tts.vc.measure import AgentRange, VoiceStats, hnr_db, mcd_db, refusals, word_errors
from voicebot.tts.vc.trajectory import with_deltas
from voicebot.tts.vc.world import RATE, Features

Int16Array = npt.NDArray[np.int16]
Float64Array = npt.NDArray[np.float64]
REFUSED_FILE = "refused.npz"
REPORT_FILE = "report.json"
HOLDOUT_SHARE = 0.2  # of the prompts, when --heldout is not given (at least one)
MIN_TRAIN = 2  # prompts left to train on
METHODS = ("shift", "gmm", "mlpg")  # residual class shift (default); joint GMM per frame; joint GMM with deltas + MLPG
NO_HNR_DB = -20.0  # HNR reported for a voice with no voiced frame (below any speech)


@dataclass(frozen=True)
class TrainOptions:
    """``seed``: the held-out choice and the GMM; ``heldout``: prompt ids to hold out (default: the seed picks);
    ``method``: the spectral mapping (:data:`METHODS`); ``components``: its mixture size (0: the method's default)."""

    seed: int = 0
    heldout: tuple[str, ...] = ()
    components: int = 0
    dims: int = MAPPED_DIMS
    whisper: str = "base"
    method: str = "shift"

    @property
    def mixture_components(self) -> int:
        """The GMM size used: ``components``, or the method's default."""
        return self.components or (SHIFT_COMPONENTS if self.method == "shift" else COMPONENTS)


@dataclass(frozen=True)
class Clip:
    """One prompt: its text, the agent's take and the stock voice's, both trimmed, 16 kHz, with WORLD features."""

    prompt_id: str
    text: str
    own: Int16Array
    stock: Int16Array
    own_features: Features
    stock_features: Features


@dataclass
class TrainResult:
    """What training produced and measured."""

    model: VoiceConversion
    train_ids: list[str]
    heldout_ids: list[str]
    own: VoiceStats
    stock: VoiceStats
    converted: VoiceStats
    agent: AgentRange
    refused: list[str]
    train_seconds: float  # analysis + alignment + fit (not the measuring)
    convert_ms_per_s: float  # conversion + synthesis per second of audio, one thread
    parallel_seconds: float  # the agent's training speech
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        """True when no guard refused the model."""
        return not self.refused

    def lines(self) -> list[str]:
        """The report for people."""
        out = [f"trained on {len(self.train_ids)} prompts ({self.parallel_seconds:.1f} s of the agent), "
               f"held out {len(self.heldout_ids)}: {', '.join(self.heldout_ids)}",
               f"training {self.train_seconds:.1f} s; conversion {self.convert_ms_per_s:.0f} ms per second of audio",
               self.agent.line(), self.own.line(), self.stock.line(), self.converted.line()]
        if self.refused:
            return [*out, "NOT ENABLED:", *(f"  - {r}" for r in self.refused)]
        return [*out, "enabled: the pack's synthesized speech will use this conversion"]


def split_prompts(pack: VoicePack, options: TrainOptions) -> tuple[list[str], list[str]]:
    """(train ids, held-out ids) among the prompts that have both a recording and a transcript."""
    ids = [pid for pid in pack.prompt_ids() if pack.transcripts.get(pid, "").strip()]
    if not ids:
        raise VoiceError(f"{pack.prompts_dir}: no recorded prompts with transcripts (<id>.wav with <id>.txt); "
                         "voice train learns from the agent's recordings of known texts: import them with voice import")
    unknown = sorted(set(options.heldout) - set(ids))
    if unknown:
        raise VoiceError(f"--heldout {', '.join(unknown)}: not a recorded prompt with a transcript in {pack.prompts_dir}")
    if options.heldout:
        held = sorted(options.heldout)
    else:
        count = max(1, round(HOLDOUT_SHARE * len(ids)))
        held = sorted(str(x) for x in np.random.default_rng(options.seed).choice(ids, count, replace=False))
    train = [pid for pid in ids if pid not in held]
    if len(train) < MIN_TRAIN:
        raise VoiceError(f"{pack.prompts_dir}: {len(ids)} recorded prompt(s) with transcripts; voice train needs at least "
                         f"{MIN_TRAIN + 1} ({MIN_TRAIN} to train on, 1 held out); 40 prompts (2-3 minutes) convert well")
    return train, held


def load_clip(pack: VoicePack, prompt_id: str, synthesize: Callable[[str], Int16Array]) -> Clip:
    """The agent's take and the stock voice's for one prompt, analysed."""
    text = pack.transcripts[prompt_id]
    own = trim_silence(read_audio_at(pack.prompts_dir / f"{prompt_id}.wav", RATE), RATE)
    stock = trim_silence(synthesize(text), RATE)
    if len(own) == 0:
        raise VoiceError(f"{pack.prompts_dir / prompt_id}.wav: no speech found (silent recording)")
    return Clip(prompt_id, text, own, stock, world.analyze(own), world.analyze(stock))


def parallel_frames(clips: Sequence[Clip], dims: int = MAPPED_DIMS,
                    deltas: bool = False) -> tuple[Float64Array, Float64Array, Float64Array]:
    """(source, target) aligned speech frames of every clip (coefficients 1..dims, then their deltas with ``deltas``;
    aligned on the statics), and the agent's mean per-clip variance of the statics."""
    sources, targets, variances = [], [], []
    for clip in clips:
        s = _coefficients(clip.stock_features, dims, deltas)[world.speech_frames(clip.stock, clip.stock_features.frames)]
        t = _coefficients(clip.own_features, dims, deltas)[world.speech_frames(clip.own, clip.own_features.frames)]
        p, q = align.dtw_path(s[:, :dims], t[:, :dims])
        sources.append(s[p])
        targets.append(t[q])
        variances.append(t[:, :dims].var(axis=0))
    return np.vstack(sources), np.vstack(targets), np.mean(variances, axis=0)


def _coefficients(features: Features, dims: int, deltas: bool) -> Float64Array:
    static = features.mcep[:, 1:1 + dims]
    return with_deltas(static) if deltas else static


def fit(clips: Sequence[Clip], enroll_features: Sequence[Features], options: TrainOptions) -> VoiceConversion:
    """The conversion from the training clips (the enrollment adds to the agent's F0 statistics)."""
    if options.method not in METHODS:
        raise VoiceError(f"method {options.method!r}: not one of {', '.join(METHODS)}")
    deltas = options.method == "mlpg"
    source, target, gv = parallel_frames(clips, options.dims, deltas)
    spectral: SpectralMap | ShiftMap
    if options.method == "shift":
        spectral = ShiftMap.fit(source, target, gv, seed=options.seed, components=options.mixture_components)
    else:
        spectral = SpectralMap.fit(source, target, gv, seed=options.seed, components=options.mixture_components,
                                   deltas=deltas)
    src_f0 = np.concatenate([world.voiced_log_f0(c.stock_features.f0) for c in clips])
    tgt_f0 = np.concatenate([world.voiced_log_f0(f.f0) for f in [*(c.own_features for c in clips), *enroll_features]])
    meta: dict[str, object] = {"seed": options.seed, "train": [c.prompt_id for c in clips], "frames": len(source),
                               "method": options.method}
    return VoiceConversion(spectral, F0Transform.fit(src_f0, tgt_f0), meta)


class Progress:
    """A one-line text progress bar on ``stream`` (stderr): ``[#####-----] 5/10 what``."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total, self.done, self.width = max(1, total), 0, width
        self.stream = stream if stream is not None else sys.stderr

    def step(self, what: str) -> None:
        """One unit done; ``what`` comes next."""
        self.done = min(self.total, self.done + 1)
        filled = self.width * self.done // self.total
        self.stream.write(f"\r[{'#' * filled}{'-' * (self.width - filled)}] {self.done}/{self.total} {what:<40}")
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


def phone(samples16k: Int16Array) -> Int16Array:
    """``samples16k`` through the telephone channel (8 kHz µ-law, 300-3400 Hz), back at 16 kHz."""
    return to_rate(telephone_channel(samples16k, RATE), 8000, RATE)


def save(pack: VoicePack, result: TrainResult) -> Path:
    """Write the model (``model.npz`` when enabled, else ``refused.npz``) and ``report.json``; return the model path."""
    folder = pack.root / VC_DIR
    folder.mkdir(exist_ok=True)
    path = folder / (MODEL_FILE if result.enabled else REFUSED_FILE)
    result.model.save(path)
    report = {"enabled": result.enabled, "refused": result.refused, "train": result.train_ids, "heldout": result.heldout_ids,
              "train_seconds": result.train_seconds, "convert_ms_per_s": result.convert_ms_per_s,
              "agent_range": asdict(result.agent),
              "groups": {s.name: {**asdict(s), "wer": s.wer} for s in (result.own, result.stock, result.converted)}}
    (folder / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def timed(timings: dict[str, float], key: str, started: float) -> float:
    """Add the time since ``started`` to ``timings[key]``; return now."""
    now = time.perf_counter()
    timings[key] = timings.get(key, 0.0) + now - started
    return now


# --------------------------------------------------------------------------- the whole run


@dataclass
class Judges:
    """What measures a voice: the speaker embedder, Whisper, and the agent's enrollment (16 kHz and phone)."""

    embedder: SpeakerEmbedder
    transcribe: Callable[[Int16Array], str]  # 8 kHz int16 -> spoken-form text
    enrolled: npt.NDArray[np.float32]
    enrolled_phone: npt.NDArray[np.float32]

    @classmethod
    def for_pack(cls, pack: VoicePack, whisper: str = "base", embedder: SpeakerEmbedder | None = None) -> Judges:
        """Judges with the pack's enrollment (VoiceError when it has none)."""
        from voicebot.asr.whisper import WhisperRecogniser

        embedder = embedder or shared_embedder()
        enroll = [c for c in (trim_silence(a, RATE) for a in pack.enrollment(RATE)) if len(c)]
        if not enroll:
            raise VoiceError(f"{pack.enroll_dir}: no enrollment speech (*.wav); record 30 s or more of the agent speaking")
        recogniser = WhisperRecogniser(whisper)
        language = pack.language
        return cls(embedder, lambda pcm8k: recogniser.transcribe(pcm8k, 8000, language=language, prompt=False).text,
                   embedder.embed_many(enroll), embedder.embed_many([phone(c) for c in enroll]))

    def stats(self, name: str, texts: Sequence[str], clips: Sequence[Int16Array],
              reference: Sequence[Features] | None, own: Sequence[Features]) -> VoiceStats:
        """Measure one group of held-out clips (``reference``: their features, for MCD against ``own``)."""
        from voicebot.asr.spoken import spoken_form

        similarity_16k = self._pooled(self.enrolled, clips)
        similarity_phone = self._pooled(self.enrolled_phone, [phone(c) for c in clips])
        heard = [self.transcribe(telephone_channel(c, RATE)) for c in clips]
        errors = [word_errors(spoken_form(t), h) for t, h in zip(texts, heard, strict=True)]
        features = reference if reference is not None else [world.analyze(c) for c in clips]
        f0 = np.concatenate([f.f0[f.f0 > 0] for f in features])
        hnr = np.concatenate([hnr_db(c, f.f0) for c, f in zip(clips, features, strict=True)])
        mcd = float(np.mean([mcd_db(f, o) for f, o in zip(features, own, strict=True)])) if reference is not own else 0.0
        return VoiceStats(name, similarity_16k, similarity_phone, sum(e for e, _ in errors), sum(n for _, n in errors),
                          float(np.median(f0)) if len(f0) else 0.0, float(np.median(hnr)) if len(hnr) else NO_HNR_DB, mcd)

    def _pooled(self, enrolled: npt.NDArray[np.float32], clips: Sequence[Int16Array]) -> float:
        windows = np.concatenate([self.embedder.window_embeddings(c) for c in clips]).mean(axis=0)
        return similarity(enrolled, windows)


def train_pack(pack: VoicePack, options: TrainOptions = TrainOptions(), *, judges: Judges | None = None,
               stream: TextIO | None = None) -> TrainResult:
    """Split, render the stock voice, analyse, align, fit, convert the held-out prompts and measure all three voices."""
    from voicebot.tts.render import PromptCache

    train_ids, held_ids = split_prompts(pack, options)
    judges = judges or Judges.for_pack(pack, options.whisper)
    progress = Progress(len(train_ids) + 2 * len(held_ids) + 2, stream)
    timings: dict[str, float] = {}
    speaker = PromptCache(pack, convert=False)  # the stock voice, even when an enabled conversion exists
    started = time.perf_counter()
    clips = []
    for pid in train_ids + held_ids:
        clips.append(load_clip(pack, pid, lambda text: speaker.synthesize(text, RATE)))
        started = timed(timings, "render" if pid in held_ids else "analyse", started)
        progress.step(f"analysed {pid}")
    enroll_features = [world.analyze(c) for c in (trim_silence(a, RATE) for a in pack.enrollment(RATE)) if len(c)]
    model = fit(clips[: len(train_ids)], enroll_features, options)
    started = timed(timings, "fit", started)
    progress.step("fitted; converting the held-out prompts")
    held = clips[len(train_ids):]
    converted = []
    for clip in held:
        converted.append(world.synthesize(model.convert_features(clip.stock_features), level_like=clip.stock))
        progress.step(f"converted {clip.prompt_id}")
    started = timed(timings, "convert", started)
    result = _measure(model, clips, held, converted, judges, timings)
    progress.step("measured")
    timed(timings, "measure", started)
    return result


def _measure(model: VoiceConversion, clips: Sequence[Clip], held: Sequence[Clip], converted: Sequence[Int16Array],
             judges: Judges, timings: dict[str, float]) -> TrainResult:
    texts = [c.text for c in held]
    own_features = [c.own_features for c in held]
    own = judges.stats("agent", texts, [c.own for c in held], own_features, own_features)
    stock = judges.stats("stock", texts, [c.stock for c in held], [c.stock_features for c in held], own_features)
    conv = judges.stats("converted", texts, converted, None, own_features)
    agent = AgentRange.of([(c.own, c.own_features) for c in clips])
    seconds = sum(len(c.stock) for c in held) / RATE
    train = [c for c in clips if c not in held]
    return TrainResult(model, [c.prompt_id for c in train], [c.prompt_id for c in held], own, stock, conv, agent,
                       refusals(stock, conv, agent), timings.get("analyse", 0.0) + timings.get("fit", 0.0),
                       1000 * timings.get("convert", 0.0) / max(seconds, 1e-9), sum(len(c.own) for c in train) / RATE, timings)
