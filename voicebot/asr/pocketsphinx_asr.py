"""Streaming English recognition with PocketSphinx 5, biased toward the phrases a dialog node expects.

Design, with the measurements behind it (``bench/asr_bench.py`` reproduces them;
human test speech from Debian's pocketsphinx-testdata, 8 kHz = downsampled):

* **8 kHz audio is upsampled to 16 kHz** (:class:`StreamResampler`) and decoded
  with the 16 kHz acoustic model unchanged. The alternative, ``samprate 8000``
  with the mel filters squeezed below 4 kHz (``upperf`` 3500..4000 through a
  custom feat.params), no longer matches the features the model was trained
  on: word error rate 0.83..1.05 versus 0.40 upsampled (full LM, 12 files).
* **Initial cepstral mean per rate.** A new decoder starts its live CMN from
  ``40,3,-1``, far from band-limited telephone speech, so the *first* turn of a
  call was mangled ("stop calling me" style failures). Starting from a mean
  measured on other speakers (:data:`CMNINIT_8K`, :data:`CMNINIT_16K`, taken
  from the librivox recordings) took first-turn WER from 0.53 to 0.00 with
  hints and from 1.02 to 0.27 with the full LM at 8 kHz (15 other recordings).
* **Hints: a small trigram LM per hint set**, built on the fly (~5 ms) from the
  hint phrases (weighted), a short background corpus of common caller
  reactions and ~190 frequent words, decoded with a dictionary of just those
  words. In-vocabulary accuracy was 15/15 exact at 8 kHz (full LM: 11/15) at a
  real-time factor ~0.1 (full LM: 0.5..1.2). Speech outside the hints comes out
  as frequent words with low word posteriors, not as a confident hint phrase:
  a pure grammar of the hints turned 9 of 15 out-of-grammar recordings into
  hint phrases (posterior up to 0.98); a grammar with a loop of frequent words
  as garbage model decoded at 11x real time. No hints: the full en-US LM.
* **Sharing and the GIL.** PocketSphinx 5 cannot share an acoustic model
  between decoders, but it memory-maps the model files, so a hint stream
  costs ~10 MB. A full-LM decoder holds the 134k-word dictionary and its
  search (~66 MB, ~0.5 s to build); the 35 MB en-US LM is loaded once and
  shared, and idle full-LM decoders are pooled for the next call. The extension never
  releases the GIL (``_pocketsphinx.so`` imports no ``PyEval_SaveThread``; a
  spinning Python thread keeps ~1% of its speed while it decodes): its streams
  cannot decode in parallel on threads, and each call stalls the gevent hub
  while it runs. So every decoder call of a model goes through one OS lock
  (``model.lock``): no parallelism is lost, the shared LM is never used
  concurrently, and the hub competes for the GIL with one decoding thread at
  a time. The second ``fwdflat`` pass is off: dropping it moved WER from
  0.307 to 0.297 (full LM) and 0 to 0 (hints) at 8 kHz while ``end_utt`` fell
  from 263 to 66 ms (full LM) and from 94 to 2 ms (hints). With hints, 10
  streams decoding flat out left the hub's worst gap at ~15..45 ms (was
  150..430 ms); full-LM calls still stall it ~0.1..0.3 s (``end_utt``).
* **Confidence** is the mean word posterior (forward-backward over the
  lattice, ``bestpath``), already 0..1.
"""

from __future__ import annotations

import _thread
import io
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pocketsphinx
from pocketsphinx.lm import ArpaBoLM

from voicebot.asr.base import AsrResult, ModelError, Word
from voicebot.audio.frame import AudioFrame
from voicebot.audio.resample import SUPPORTED_RATES, StreamResampler
from voicebot.logs import get_logger

DECODER_RATE = 16000  # Hz; the acoustic model's rate
FRAMES_PER_S = 100  # pocketsphinx's feature frame rate (10 ms frames)
HINT_REPEAT = 3  # each hint phrase counts this many times in the hint LM
CMNINIT_8K = "45.94,29.36,-32.25,45.26,-26.78,0.84,8.81,-28.84,21.37,-15.38,3.07,7.35,-15.69"
CMNINIT_16K = "52.80,6.33,-3.14,20.35,-14.11,3.96,-7.20,-6.62,1.49,-4.19,3.05,-1.81,-2.60"
HMM_FILES = ("mdef", "means", "variances", "transition_matrices", "noisedict")

_COMMON_WORDS_TEXT = """a about after again all also am an and any are as ask at back be because been but by bye call can
could day did do does done don't down each even first for free from get give go going good got great had has have he
hello help her here hi him his hold how i i'm if in interested into is it it's just know last later let like little
long look ma'am made make man many may maybe me mean minute money more most much must my need never new no not now
number of off oh okay on one only or other our out over people person phone please put really right said same say
second see she should sir so some something sorry speak still such sure take talk tell than thank thanks that that's
the their them then there these they thing think this those through time to today tomorrow too two up us very wait
want was way we week well were what when where which who why will with work would yeah year yes you your"""
COMMON_WORDS = tuple(_COMMON_WORDS_TEXT.split())  # frequent words: what speech outside the hints decodes to

BACKGROUND = """hello|hi|yes|no|okay|sure|i don't know|who is this|who are you|what do you want|i'm busy|i'm driving
can you call me back|call me back tomorrow|i didn't hear you|can you repeat that|sorry what did you say|what|hold on
wait a minute|one second|i need to think about it|let me think|how much does it cost|how did you get my number
take me off your list|i want to talk to a person|can i speak to someone|that's fine|that's right|that's not right
thank you|thanks|goodbye|bye|i already have one|i'm not sure|maybe later|not right now|please"""

log = get_logger("asr.pocketsphinx")


def native_lock() -> Any:
    """A real OS lock, even under gevent monkey-patching."""
    monkey = sys.modules.get("gevent.monkey")
    allocate = monkey.get_original("_thread", "allocate_lock") if monkey is not None else _thread.allocate_lock
    return allocate()


def _words(text: str) -> list[str]:
    """Lower-case words of ``text``: letters, digits and apostrophes."""
    return re.findall(r"[a-z0-9']+", text.lower())


def _find_hmm(model_dir: Path) -> Path | None:
    if (model_dir / "mdef").is_file():
        return model_dir
    return next((d for d in sorted(model_dir.iterdir()) if d.is_dir() and (d / "mdef").is_file()), None)


def _pick(model_dir: Path, patterns: Sequence[str]) -> Path | None:
    for pattern in patterns:
        found = sorted(p for p in model_dir.glob(pattern) if "phone" not in p.name)
        if found:
            return found[0]
    return None


def find_model_files(model_dir: Path) -> tuple[Path, Path, Path]:
    """(acoustic model dir, dictionary, LM) inside ``model_dir``, or ``ModelError`` saying what is missing."""
    expected = (f"expected a folder holding an acoustic model (itself or one subfolder with {', '.join(HMM_FILES)} "
                "and sendump or mixture_weights), a pronunciation dictionary *.dict and a language model *.lm.bin")
    if not model_dir.is_dir():
        raise ModelError(f"pocketsphinx model directory {model_dir} does not exist: {expected}")
    hmm, dic, lm = _find_hmm(model_dir), _pick(model_dir, ("*.dict", "*.dic")), _pick(model_dir, ("*.lm.bin", "*.lm", "*.arpa"))
    missing = [] if hmm else ["mdef (acoustic model)"]
    if hmm:
        missing += [f for f in HMM_FILES if not (hmm / f).is_file()]
        if not (hmm / "sendump").is_file() and not (hmm / "mixture_weights").is_file():
            missing.append("sendump or mixture_weights")
    missing += [] if dic else ["*.dict"]
    missing += [] if lm else ["*.lm.bin"]
    if missing or hmm is None or dic is None or lm is None:
        raise ModelError(f"pocketsphinx model directory {model_dir} is incomplete: missing {', '.join(missing)}; {expected}")
    return hmm, dic, lm


_MAGIC = {"mdef": (b"BMDF", b"0.3"), "means": (b"s3\n",), "variances": (b"s3\n",), "transition_matrices": (b"s3\n",),
          "mixture_weights": (b"s3\n",)}


def check_headers(hmm: Path) -> None:
    """``ModelError`` unless the acoustic model files start like pocketsphinx files.

    pocketsphinx exits the whole process (E_FATAL) on some corrupt files, a
    garbage ``mdef`` among them, so they are looked at before it loads them.
    """
    for name, magics in _MAGIC.items():
        path = hmm / name
        if path.is_file():
            with path.open("rb") as f:
                head = f.read(8)
            if not head.startswith(magics):
                raise ModelError(f"{path} is not a pocketsphinx acoustic model file (bad header {head[:8]!r})")
    sendump = hmm / "sendump"
    if sendump.is_file():
        with sendump.open("rb") as f:
            if f.read(21)[4:] != b"BEGIN FILE FORMAT":
                raise ModelError(f"{sendump} is not a pocketsphinx sendump file (bad header)")


def load_pronunciations(path: Path) -> dict[str, list[str]]:
    """word -> its pronunciations (phone strings), from a CMU-style dictionary."""
    prons: dict[str, list[str]] = {}
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                word, *phones = line.split() or [""]
                if phones:
                    prons.setdefault(word.split("(")[0], []).append(" ".join(phones))
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"cannot read pronunciation dictionary {path}: {e}") from e
    if not prons:
        raise ModelError(f"pronunciation dictionary {path} is empty; expected lines like 'hello HH AH L OW'")
    return prons


def hint_lm_text(phrases: Sequence[str]) -> str:
    """ARPA text of the hint LM: ``phrases`` x HINT_REPEAT + BACKGROUND + COMMON_WORDS as unigrams."""
    lines = [p for p in phrases for _ in range(HINT_REPEAT)] + BACKGROUND.replace("\n", "|").split("|")
    lm = ArpaBoLM(text="\n".join(lines), add_start=True, case="lower")
    for word in COMMON_WORDS:
        lm.grams_1.setdefault(word, 1)
    lm.compute()
    out = io.StringIO()
    lm.write(out)
    return out.getvalue()


class PocketsphinxModel:
    """The shared English model: acoustic model paths, pronunciations and the full LM, loaded once.

    ``model_dir`` defaults to the model shipped in the pocketsphinx wheel
    (``pocketsphinx.get_model_path("en-us")``). ``cmninit`` maps an input rate
    (8000 or 16000 Hz) to the initial cepstral mean; ``None`` uses the measured
    :data:`CMNINIT_8K`/:data:`CMNINIT_16K` for the bundled model, else pocketsphinx's default.
    """

    name = "pocketsphinx"
    language = "en"

    def __init__(self, model_dir: Path | None = None, *, cmninit: Mapping[int, str] | None = None,
                 loglevel: str = "ERROR", pool_size: int = 4) -> None:
        bundled = model_dir is None
        self.model_dir = Path(pocketsphinx.get_model_path("en-us")) if model_dir is None else Path(model_dir)
        self.hmm_dir, self.dict_path, self.lm_path = find_model_files(self.model_dir)
        check_headers(self.hmm_dir)
        self.cmninit = dict(cmninit) if cmninit is not None else ({8000: CMNINIT_8K, 16000: CMNINIT_16K} if bundled else {})
        self.loglevel = loglevel
        self.lock = native_lock()  # serialises decoder calls: see the module docstring
        self.pool_size = pool_size
        self._idle_full: dict[bool, list[Any]] = {}  # 8 kHz input? -> idle full-LM decoders
        self.pronunciations = load_pronunciations(self.dict_path)
        probe = self.new_decoder(DECODER_RATE, full=False)  # fails fast on a broken acoustic model
        try:
            self.lm = pocketsphinx.NGramModel(probe.config, probe.logmath, str(self.lm_path))
        except (RuntimeError, ValueError) as e:
            raise ModelError(f"cannot load language model {self.lm_path}: {e}") from e
        self.background_words = sorted({w for w in [*COMMON_WORDS, *_words(BACKGROUND)] if w in self.pronunciations})

    def new_decoder(self, input_rate: int, *, full: bool) -> Any:
        """A decoder: ``full`` = whole dictionary + the shared LM, else empty dictionary, no search yet."""
        kwargs: dict[str, Any] = {"hmm": str(self.hmm_dir), "lm": None, "loglevel": self.loglevel, "fwdflat": False,
                                  "dict": str(self.dict_path) if full else None}
        cmn = self.cmninit.get(8000 if input_rate <= 8000 else 16000)
        if cmn:
            kwargs["cmninit"] = cmn
        try:
            decoder = pocketsphinx.Decoder(**kwargs)
        except (RuntimeError, ValueError) as e:
            raise ModelError(f"cannot load pocketsphinx acoustic model {self.hmm_dir} (needs {', '.join(HMM_FILES)} "
                             f"and sendump or mixture_weights): {e}") from e
        if full:
            decoder.add_lm("free", self.lm)
            decoder.activate_search("free")
        return decoder

    def vocabulary(self, phrases: Sequence[str]) -> tuple[list[str], list[str]]:
        """(normalized phrases with out-of-dictionary words dropped, the dropped words)."""
        kept, dropped = [], []
        for phrase in phrases:
            words = _words(phrase)
            dropped += [w for w in words if w not in self.pronunciations]
            known = " ".join(w for w in words if w in self.pronunciations)
            if known:
                kept.append(known)
        return list(dict.fromkeys(kept)), sorted(set(dropped))

    def take_full_decoder(self, input_rate: int) -> Any:
        """A full-LM decoder from the pool, else a new one (~0.5 s, all of it holding the GIL). Call under ``lock``."""
        try:
            return self._idle_full.get(input_rate <= 8000, []).pop()
        except IndexError:
            return self.new_decoder(input_rate, full=True)

    def give_back_full(self, input_rate: int, decoder: Any) -> None:
        """Pool an idle full-LM decoder for the next call (dropped beyond ``pool_size``). Call under ``lock``."""
        idle = self._idle_full.setdefault(input_rate <= 8000, [])
        if len(idle) < self.pool_size:
            idle.append(decoder)

    def stream(self, sample_rate: int, hints: Sequence[str] = ()) -> PocketsphinxStream:
        """A new per-call stream for ``sample_rate`` Hz audio (8 kHz is upsampled to 16 kHz)."""
        return PocketsphinxStream(self, sample_rate, hints)


class PocketsphinxStream:
    """One call's recogniser: a cheap hint decoder and, only when a turn has no hints, a full-LM decoder."""

    def __init__(self, model: PocketsphinxModel, sample_rate: int, hints: Sequence[str] = ()) -> None:
        if sample_rate not in SUPPORTED_RATES:
            raise ValueError(f"unsupported sample rate {sample_rate} Hz; supported: {SUPPORTED_RATES}")
        self.model, self.sample_rate = model, sample_rate
        self._hint_decoder: Any = None
        self._free_decoder: Any = None
        self._known_words: set[str] = set()
        self._hints: list[str] = []
        self._built_hints: list[str] | None = None
        self._active: Any = None  # the decoder of the utterance in progress
        self._resampler = self._new_resampler()
        self._last_text, self._last_at, self._samples = "", 0.0, 0
        self._closed = False
        self.set_hints(hints)

    def _new_resampler(self) -> StreamResampler | None:
        return StreamResampler(self.sample_rate, DECODER_RATE) if self.sample_rate != DECODER_RATE else None

    def set_hints(self, phrases: Sequence[str]) -> None:
        """Bias the next utterance toward ``phrases``; words missing from the dictionary are dropped (logged)."""
        self._hints, dropped = self.model.vocabulary(phrases)
        if dropped:
            log.warning("asr.hint_words_unknown", backend="pocketsphinx", words=dropped)

    def _prepare_hint_decoder(self) -> Any:
        if self._hint_decoder is None:
            self._hint_decoder = self.model.new_decoder(self.sample_rate, full=False)
        decoder = self._hint_decoder
        if self._built_hints == self._hints:
            return decoder
        new = [w for w in self.model.background_words + " ".join(self._hints).split() if w not in self._known_words]
        entries = [(w if i == 0 else f"{w}({i + 1})", p) for w in dict.fromkeys(new)
                   for i, p in enumerate(self.model.pronunciations[w])]
        for n, (word, phones) in enumerate(entries):
            decoder.add_word(word, phones, n == len(entries) - 1)
        self._known_words.update(new)
        with tempfile.NamedTemporaryFile("w", suffix=".arpa", delete=False, encoding="utf-8") as f:
            f.write(hint_lm_text(self._hints))
        try:
            lm = pocketsphinx.NGramModel(decoder.config, decoder.logmath, f.name)
        finally:
            os.unlink(f.name)
        decoder.add_lm("hints", lm)  # replaces the previous hint search of the same name
        decoder.activate_search("hints")
        self._built_hints = list(self._hints)
        return decoder

    def _start(self) -> Any:
        if self._hints:
            decoder = self._prepare_hint_decoder()
        else:
            if self._free_decoder is None:
                self._free_decoder = self.model.take_full_decoder(self.sample_rate)
            decoder = self._free_decoder
        decoder.start_utt()
        self._active, self._last_text, self._samples = decoder, "", 0
        return decoder

    def _feed(self, pcm: bytes) -> None:
        if pcm:
            self._active.process_raw(pcm, False, False)
            self._samples += len(pcm) // 2

    def accept(self, frame: AudioFrame) -> AsrResult | None:
        """Feed one frame; a partial result when the hypothesis text changed, else None."""
        if frame.rate != self.sample_rate:
            raise ValueError(f"frame at {frame.rate} Hz fed to a {self.sample_rate} Hz stream")
        if self._closed:
            raise RuntimeError("PocketsphinxStream is closed")
        pcm = frame.samples if self._resampler is None else self._resampler.process(frame.to_array()).tobytes()
        with self.model.lock:
            if self._active is None:
                self._start()
            self._feed(pcm)
            hyp = self._active.hyp()
        self._last_at = frame.captured_at
        text = " ".join(hyp.hypstr.split()) if hyp is not None else ""
        if text == self._last_text:
            return None
        self._last_text = text
        return AsrResult(text, final=False, at=frame.captured_at)

    def _segment_words(self) -> tuple[Word, ...]:
        duration = self._samples / DECODER_RATE
        words = []
        for seg in self._active.seg():
            if seg.word.startswith(("<", "[", "+")):
                continue  # <s>, </s>, <sil>, [NOISE], +SPN+ fillers
            start = min(seg.start_frame / FRAMES_PER_S, duration)
            end = min(max((seg.end_frame + 1) / FRAMES_PER_S, start), duration)
            words.append(Word(seg.word.split("(")[0], start, end, min(1.0, max(0.0, float(seg.prob)))))
        return tuple(words)

    def finish(self) -> AsrResult:
        """End the utterance: the final result with word times (s from its start) and posteriors."""
        if self._active is None:
            return AsrResult("", final=True, at=self._last_at)
        tail = b""
        if self._resampler is not None:
            tail, self._resampler = self._resampler.flush().tobytes(), self._new_resampler()
        with self.model.lock:
            self._feed(tail)
            self._active.end_utt()
            words = self._segment_words()
        self._active, self._last_text = None, ""
        confidence = sum(w.confidence for w in words) / len(words) if words else 0.0
        return AsrResult(" ".join(w.text for w in words), final=True, confidence=confidence, words=words, at=self._last_at)

    def close(self) -> None:
        """Drop the hint decoder and resampler; the full-LM decoder goes back to the model's pool."""
        with self.model.lock:  # freeing a full decoder releases its hold on the shared LM
            if self._active is not None:
                self._active.end_utt()
            if self._free_decoder is not None:
                self.model.give_back_full(self.sample_rate, self._free_decoder)
            self._active = self._hint_decoder = self._free_decoder = self._resampler = None
        self._closed = True
