"""Assembling the shared models once and a :class:`~voicebot.call.CallSession` per call.

Models (VAD, ASR, voices, the prompt cache) are loaded and warmed once per
process and shared by every call; per call only cheap stream objects are made.
Static prompts are rendered when the flow loads, so a call never waits for
their synthesis.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from voicebot.asr.accurate import AccuratePass, InlineAccurate, PooledAccurate
from voicebot.asr.base import AsrModel, ModelError, VadModel
from voicebot.asr.registry import AsrConfig, for_language, load_asr
from voicebot.asr.silent import NAME as SILENT
from voicebot.asr.turns import TurnSettings
from voicebot.asr.vad import make_vad
from voicebot.asr.whisper import WhisperRecogniser
from voicebot.asr.whisper_pool import WhisperPool
from voicebot.call import CallSession, CallSettings, Handoff
from voicebot.dialog import events as ev
from voicebot.dialog.flow import Flow
from voicebot.dialog.intents import IntentMatcher
from voicebot.dialog.machine import DialogMachine, build_matcher
from voicebot.player import Chunk
from voicebot.tts.pack import VoicePack, load_pack
from voicebot.tts.render import PromptCache, RenderProgress, RenderReport

_VARIABLE = re.compile(r"\{\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}\}")


@dataclass(frozen=True)
class PipelineConfig:
    """What to load. ``voice_pack`` None: the default Piper voice, no recordings. ``accurate``: the accurate pass's
    Whisper model (a name or a directory, decoded in this process: the simulator); None: no accurate pass, unless
    ``load_pipeline`` is given a worker pool."""

    rate: int = 8000
    vad: str = "webrtc"
    vad_options: Mapping[str, object] = field(default_factory=lambda: {"aggressiveness": 2})
    asr: AsrConfig = field(default_factory=AsrConfig)
    voice_pack: Path | None = None
    cache_dir: Path | None = None
    turn: TurnSettings = field(default_factory=TurnSettings)
    accurate: str | None = None


@dataclass
class Pipeline:
    """Shared, loaded models for one flow."""

    flow: Flow
    config: PipelineConfig
    matcher: IntentMatcher
    vad: VadModel
    asr: AsrModel
    cache: PromptCache
    render_report: RenderReport
    load_seconds: float
    whisper: WhisperRecogniser | None = None  # the accurate pass in this process (the simulator)
    whisper_pool: WhisperPool | None = None  # the accurate pass in worker processes (the engine), shared

    def session(self, *, charge_compute: bool = False, handoff: Handoff | None = None, seed: int = 0) -> CallSession:
        """A new call: its own machine, VAD and ASR streams; shared models and prompt cache."""
        settings = CallSettings(rate=self.config.rate, turn=self.config.turn, charge_compute=charge_compute)
        machine = DialogMachine(self.flow, matcher=self.matcher, seed=seed)
        return CallSession(machine, vad=self.vad.stream(), asr=self.asr.stream(self.config.rate),
                           speaker=self.speak, settings=settings, handoff=handoff,
                           accurate=self._accurate(charge_compute))

    def _accurate(self, charge_compute: bool) -> AccuratePass | None:
        """The call's accurate-pass executor: the worker pool, else the in-process model, else none."""
        if self.whisper_pool is not None:
            return PooledAccurate(self.whisper_pool)
        return InlineAccurate(self.whisper, charge_compute) if self.whisper is not None else None

    def with_voice(self, voice_pack: Path, progress: RenderProgress | None = None) -> Pipeline:
        """The same models in another voice (an agent's pack): its own prompt cache, rendered now."""
        started = time.perf_counter()
        cache = PromptCache(load_pack(voice_pack), self.config.cache_dir)
        report = cache.render_flow(self.flow, self.config.rate, progress)
        config = replace(self.config, voice_pack=voice_pack)
        return replace(self, config=config, cache=cache, render_report=report, load_seconds=time.perf_counter() - started)

    def speak(self, play: ev.Play, values: Mapping[str, str]) -> tuple[Iterator[Chunk], bool]:
        """Audio for a Play: the rendered prompt (static text), or live synthesis of the variable parts."""
        rate = self.config.rate
        if not _VARIABLE.search(play.template):
            audio = self.cache.get(play.text, rate, play.prompt)
            if audio is not None:
                return iter([audio]), True
            return iter([self.cache.render(play.text, rate)[0]]), False
        return self.cache.render_dynamic(play.template, values, rate), False


def default_pack(language: str) -> VoicePack:
    """A pack with no recordings that speaks with the default Piper voice."""
    return VoicePack(root=Path.cwd() / ".voicebot-default-pack", name="default", language=language)


def load_pipeline(flow: Flow, config: PipelineConfig | None = None, progress: RenderProgress | None = None, *,
                  asr: AsrModel | None = None, whisper_pool: WhisperPool | None = None) -> Pipeline:
    """Load and warm every model for ``flow`` and render its static prompts (``progress``: see ``render_flow``).

    ``asr``: a recogniser already loaded with the same :class:`AsrConfig` (it serves any rate), shared, not reloaded.
    ``whisper_pool``: the engine's accurate pass (shared by every call); else ``config.accurate`` loads one here.
    """
    config = config or PipelineConfig()
    config = replace(config, asr=replace(config.asr, language=flow.language))  # the recogniser hears the flow's language
    started = time.perf_counter()
    _check_hearing(flow, config, asr, whisper_pool)
    pack = load_pack(config.voice_pack) if config.voice_pack else default_pack(flow.language)
    cache = PromptCache(pack, config.cache_dir)
    report = cache.render_flow(flow, config.rate, progress)
    vad = make_vad(config.vad, **dict(config.vad_options))
    asr = asr or load_asr(config.asr)
    _warm(asr, config.rate)
    whisper = shared_whisper(config.accurate) if config.accurate and whisper_pool is None else None
    return Pipeline(flow, config, build_matcher(flow), vad, asr, cache, report, time.perf_counter() - started,
                    whisper, whisper_pool)


def _check_hearing(flow: Flow, config: PipelineConfig, asr: AsrModel | None, pool: WhisperPool | None) -> None:
    """A flow no streaming recogniser hears (backend ``none``: voicebot.asr.silent) needs the accurate pass:
    ModelError naming the flow, before anything loads."""
    silent = asr.name == SILENT if asr is not None else for_language(config.asr).backend == SILENT
    if silent and not config.accurate and pool is None:
        raise ModelError(f"{flow.source}: flow {flow.id} is in {flow.language!r}, which no shipped streaming recogniser "
                         "hears, so its turns need the accurate pass: set asr.accurate (simulate: --accurate base), or "
                         f"asr.backend vosk with a {flow.language} Vosk model")


_WHISPERS: dict[str, WhisperRecogniser] = {}


def shared_whisper(model: str) -> WhisperRecogniser:
    """One loaded Whisper model per name or directory in this process (ModelError if it does not load)."""
    if model not in _WHISPERS:
        _WHISPERS[model] = WhisperRecogniser(model)
    return _WHISPERS[model]


def _warm(asr: AsrModel, rate: int) -> None:
    """Decode a little silence once so the first call does not pay for lazy initialisation."""
    from voicebot.audio.frame import AudioFrame

    stream = asr.stream(rate)
    stream.accept(AudioFrame(np.zeros(rate // 5, dtype=np.int16).tobytes(), rate))
    stream.finish()
    stream.close()
