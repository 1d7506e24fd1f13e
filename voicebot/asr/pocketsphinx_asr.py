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
  reactions, backchannels, call-back times and ~190 frequent words, decoded with a dictionary of just those
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
* **Every hint word has a pronunciation.** The bundled dictionary lacks some
  (``wechat``) and gets others wrong (``whatsapp`` ends in AA P, "-sop"):
  :data:`EXTRA_PRONUNCIATIONS` replaces or adds them; other missing words are
  spelled as compounds of dictionary words (:func:`spell`: "callback"), and
  a word that cannot be spelled is dropped and logged (``asr.hint_words_unknown``).
  A hint phrase that only cuts another hint word in two ("whats app" beside
  "whatsapp") is dropped: the two split one sound's posterior (0.32 each),
  and neither would pass the posterior floor below (alone: 0.98).
* **Backchannels and times are in every hint LM** (the language's
  backchannels from :mod:`voicebot.dialog.backchannel`, FILLER_REPEAT times,
  and :data:`TIMES`), so "mm-hmm" over a prompt is heard as "mhm", not as
  "in the" or the nearest hint, and callers saying when to call back are not
  bent into hints (the hearing bench's 73 turns decoded again: 66 right without TIMES, 68 with).
* **Unsure words become [unk]** (with hints): a final's word whose posterior
  is below ``min_word_posterior`` (0.3) comes out as :data:`~voicebot.asr.base.UNK`
  (``words`` keep what was heard); a hint phrase of several words is judged
  by its mean posterior (:func:`sure_text`). Off-script speech decodes to hint words
  with low posteriors ("another bot" for "ten of clubs": 0.17, 0.08); in-script
  hint words mostly score 0.5..1.0. Hearing bench, 73 turns at 8 kHz (its
  what-if table, off-script rejection on): floor 0 -> 0.3 took false accepts
  from 2 to 1 and correct turns from 68 to 70; 0.4 scored the same.
* **Long off-script speech is rejected whole.** A phone loop (the model's
  phone LM, ``allphone`` search) decodes the same frames beside the hint
  decoder; ``fit`` = (hint path score - phone-loop path score) per frame, in
  1e-4 log units. The hint LM bends speech it does not expect far from what
  free phones find (read-aloud Austen: -17..-22; in-script lines: -13..+11,
  badly decoded ones down to -22). A final with at least
  :data:`OFFSCRIPT_MIN_SPEECH_S` of words (shorter: silence and a few phones
  dominate the fit) and ``fit`` below ``offscript_score`` (-16) is all [unk].
  Hearing bench (posterior floor 0.3): false accepts 3 -> 1, false rejects
  1 -> 1 (thresholds -17 to -14 alike; -18 and -20 reject less). It costs a
  second decoder (:class:`PhoneLoop`), started only once an utterance passes
  PHONE_LOOP_AFTER_S: short answers pay nothing, long turns about twice the
  decoding CPU (RTF 0.056 -> 0.119 on 25 s of read speech);
  ``offscript_score=None`` switches it off.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pocketsphinx

from voicebot.asr.base import UNK, AsrResult, ModelError, Word

# The hint language model and pronunciations live in pocketsphinx_lm; re-exported so imports keep working.
from voicebot.asr.pocketsphinx_lm import BACKGROUND as BACKGROUND
from voicebot.asr.pocketsphinx_lm import COMMON_WORDS as COMMON_WORDS
from voicebot.asr.pocketsphinx_lm import EXTRA_PRONUNCIATIONS as EXTRA_PRONUNCIATIONS
from voicebot.asr.pocketsphinx_lm import HINT_REPEAT as HINT_REPEAT
from voicebot.asr.pocketsphinx_lm import TIMES as TIMES
from voicebot.asr.pocketsphinx_lm import _words
from voicebot.asr.pocketsphinx_lm import filler_lines as filler_lines
from voicebot.asr.pocketsphinx_lm import hint_lm_text as hint_lm_text
from voicebot.asr.pocketsphinx_lm import load_pronunciations as load_pronunciations
from voicebot.asr.pocketsphinx_lm import spell as spell
from voicebot.asr.pocketsphinx_lm import sure_text as sure_text
from voicebot.audio.frame import AudioFrame
from voicebot.audio.resample import SUPPORTED_RATES, StreamResampler
from voicebot.logs import get_logger
from voicebot.native import native_lock

DECODER_RATE = 16000  # Hz; the acoustic model's rate
FRAMES_PER_S = 100  # pocketsphinx's feature frame rate (10 ms frames)
MIN_WORD_POSTERIOR = 0.3  # a final's word below this posterior comes out as [unk] (see the module docstring)
OFFSCRIPT_SCORE = -16.0  # hint decode vs phone loop, 1e-4 log units per frame: below it a final is off-script
OFFSCRIPT_MIN_SPEECH_S = 2.0  # ... if it holds this much speech (shorter: silence and a few phones dominate the fit)
PHONE_LOOP_AFTER_S = 1.0  # the phone loop starts once an utterance is this long (shorter ones cannot be judged)
PHONE_LOOP_CATCH_UP = 2  # chunks it decodes per chunk fed until it has caught up (the backlog drains by 2 s)
CMNINIT_8K = "45.94,29.36,-32.25,45.26,-26.78,0.84,8.81,-28.84,21.37,-15.38,3.07,7.35,-15.69"
CMNINIT_16K = "52.80,6.33,-3.14,20.35,-14.11,3.96,-7.20,-6.62,1.49,-4.19,3.05,-1.81,-2.60"
HMM_FILES = ("mdef", "means", "variances", "transition_matrices", "noisedict")

log = get_logger("asr.pocketsphinx")


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
                 loglevel: str = "ERROR", pool_size: int = 4, min_word_posterior: float = MIN_WORD_POSTERIOR,
                 offscript_score: float | None = OFFSCRIPT_SCORE) -> None:
        bundled = model_dir is None
        self.min_word_posterior = min_word_posterior
        self.model_dir = Path(pocketsphinx.get_model_path("en-us")) if model_dir is None else Path(model_dir)
        self.hmm_dir, self.dict_path, self.lm_path = find_model_files(self.model_dir)
        self.phone_lm_path = next(iter(sorted(self.model_dir.glob("*phone*.lm*"))), None)
        self.offscript_score = offscript_score if self.phone_lm_path is not None else None
        check_headers(self.hmm_dir)
        self.cmninit = dict(cmninit) if cmninit is not None else ({8000: CMNINIT_8K, 16000: CMNINIT_16K} if bundled else {})
        self.loglevel = loglevel
        self.lock = native_lock()  # serialises decoder calls: see the module docstring
        self.pool_size = pool_size
        self._idle_full: dict[bool, list[Any]] = {}  # 8 kHz input? -> idle full-LM decoders
        self.pronunciations = load_pronunciations(self.dict_path)
        if bundled:
            self.pronunciations.update((word, list(phones)) for word, phones in EXTRA_PRONUNCIATIONS.items())
        probe = self.new_decoder(DECODER_RATE, full=False)  # fails fast on a broken acoustic model
        try:
            self.lm = pocketsphinx.NGramModel(probe.config, probe.logmath, str(self.lm_path))
        except (RuntimeError, ValueError) as e:
            raise ModelError(f"cannot load language model {self.lm_path}: {e}") from e
        background = [*COMMON_WORDS, *_words(BACKGROUND), *_words(TIMES), *_words(" ".join(filler_lines()))]
        self.background_words = sorted({w for w in background if self.pronounce(w)})

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

    def pronounce(self, word: str) -> bool:
        """Whether ``word`` can be pronounced: in the dictionary, or spelled as a compound (then added to it)."""
        if word in self.pronunciations:
            return True
        found = spell(word, self.pronunciations)
        if found:
            self.pronunciations.setdefault(word, found)
        return bool(found)

    def offscript(self, fit: float | None, words: Sequence[Word]) -> bool:
        """True when a final of these words fits the hints this badly: speech the node does not expect."""
        speech_s = sum(w.end_s - w.start_s for w in words)
        threshold = self.offscript_score
        return fit is not None and threshold is not None and speech_s >= OFFSCRIPT_MIN_SPEECH_S and fit < threshold

    def new_phone_decoder(self, input_rate: int) -> Any:
        """A phone-loop decoder (the model's phone LM): how well free phones explain the audio, the yardstick
        for off-script rejection."""
        kwargs: dict[str, Any] = {"hmm": str(self.hmm_dir), "lm": None, "dict": None, "loglevel": self.loglevel,
                                  "fwdflat": False, "bestpath": False}
        cmn = self.cmninit.get(8000 if input_rate <= 8000 else 16000)
        if cmn:
            kwargs["cmninit"] = cmn
        decoder = pocketsphinx.Decoder(**kwargs)
        decoder.add_allphone_file("phones", str(self.phone_lm_path))
        decoder.activate_search("phones")
        return decoder

    def vocabulary(self, phrases: Sequence[str]) -> tuple[list[str], list[str]]:
        """(normalized phrases with unpronounceable words dropped, the dropped words).

        A phrase that is only another hint word cut in two ("whats app" beside "whatsapp") is dropped too: both
        would explain the same sound and split its posterior, so neither would pass ``min_word_posterior``.
        """
        kept, dropped = [], []
        for phrase in phrases:
            words = _words(phrase)
            dropped += [w for w in words if not self.pronounce(w)]
            known = " ".join(w for w in words if w in self.pronunciations)
            if known:
                kept.append(known)
        single = {p for p in kept if " " not in p}
        kept = [p for p in kept if " " not in p or p.replace(" ", "") not in single]
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


class PhoneLoop:
    """The phone-loop decoder beside one utterance, started only once the utterance could be judged off-script.

    Most turns are short ("yes", "no thanks") and never pay for it. Audio before the start is kept and decoded
    PHONE_LOOP_CATCH_UP chunks per chunk fed, so no single call decodes the whole backlog. An utterance dropped
    unjudged is ended only when the next one begins (ending costs ~5-20 ms: not at the end of a turn, when the
    caller waits for the bot). Call under the lock.
    """

    def __init__(self, model: PocketsphinxModel, input_rate: int) -> None:
        self.model, self.input_rate = model, input_rate
        self.decoder: Any = None
        self.active = self.started = False
        self._unended = False  # the decoder holds a dropped utterance
        self._backlog: deque[bytes] = deque()
        self._fed_s = 0.0

    def begin(self) -> None:
        """A new utterance."""
        self.abort()
        if self._unended:
            self.decoder.end_utt()
            self._unended = False
        self.active, self._fed_s = True, 0.0

    def feed(self, pcm: bytes, last: bool = False) -> None:
        """16 kHz audio of the utterance (``last``: its end; an utterance too short to judge is dropped at once)."""
        if not self.active:
            return
        self._fed_s += len(pcm) / 2 / DECODER_RATE
        if last and self._fed_s < OFFSCRIPT_MIN_SPEECH_S:
            self.abort()  # no decoding at the end of a turn for a result nobody uses
            return
        if pcm:
            self._backlog.append(pcm)
        if not self.started:
            if self._fed_s < PHONE_LOOP_AFTER_S:
                return
            if self.decoder is None:
                self.decoder = self.model.new_phone_decoder(self.input_rate)
            self.decoder.start_utt()
            self.started = True
        for _ in range(min(PHONE_LOOP_CATCH_UP, len(self._backlog))):
            self.decoder.process_raw(self._backlog.popleft(), False, False)

    def end(self) -> Any:
        """The phone loop's hypothesis of the whole utterance, or None when it was too short to judge."""
        if not self.started or self._fed_s < OFFSCRIPT_MIN_SPEECH_S:
            self.abort()
            return None
        while self._backlog:
            self.decoder.process_raw(self._backlog.popleft(), False, False)
        self.decoder.end_utt()
        self.active = self.started = False
        return self.decoder.hyp()

    def abort(self) -> None:
        """Drop the utterance in progress (ended when the next begins)."""
        self._unended = self._unended or self.started
        self.active = self.started = False
        self._backlog.clear()


class PocketsphinxStream:
    """One call's recogniser: a cheap hint decoder and, only when a turn has no hints, a full-LM decoder."""

    def __init__(self, model: PocketsphinxModel, sample_rate: int, hints: Sequence[str] = ()) -> None:
        if sample_rate not in SUPPORTED_RATES:
            raise ValueError(f"unsupported sample rate {sample_rate} Hz; supported: {SUPPORTED_RATES}")
        self.model, self.sample_rate = model, sample_rate
        self._hint_decoder: Any = None
        self._free_decoder: Any = None
        self._phones = PhoneLoop(model, sample_rate)  # beside hint decoding, for off-script rejection
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
        if self._hints and self.model.offscript_score is not None:
            self._phones.begin()
        if self._hints:
            decoder = self._prepare_hint_decoder()
        else:
            if self._free_decoder is None:
                self._free_decoder = self.model.take_full_decoder(self.sample_rate)
            decoder = self._free_decoder
        decoder.start_utt()
        self._active, self._last_text, self._samples = decoder, "", 0
        return decoder

    def _feed(self, pcm: bytes, last: bool = False) -> None:
        if pcm:
            self._active.process_raw(pcm, False, False)
            self._samples += len(pcm) // 2
        self._phones.feed(pcm, last)

    def _fit(self) -> float | None:
        """End the phone loop: how well the hints explain the utterance next to free phones (call under lock).

        Both decoders' path scores are log-likelihoods of the same frames; their difference per frame (in 1e-4
        log units) measures how far the hint LM had to bend the audio to its words. Speech the node does not
        expect bends it most.
        """
        phones = self._phones.end()
        hint, frames = self._active.hyp(), int(self._active.n_frames())
        if hint is None or phones is None or frames <= 0:
            return None
        hint_log, phones_log = math.log(max(float(hint.score), 1e-300)), math.log(max(float(phones.score), 1e-300))
        return (hint_log - phones_log) / frames * 1e4

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
        for seg in self._active.seg() or ():  # None when the utterance held almost no audio
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
            try:
                self._feed(tail, last=True)
                self._active.end_utt()
                words = self._segment_words()
                fit = self._fit()
                hinted = self._active is self._hint_decoder
            finally:  # the utterance is over even when reading it failed: close() must not end it again
                self._active, self._last_text = None, ""
        if self.model.offscript(fit, words):  # nothing the node expects: every word unsure
            return AsrResult(" ".join(UNK for _ in words), True, 0.0, words, self._last_at, fit)
        confidence = sum(w.confidence for w in words) / len(words) if words else 0.0
        floor = self.model.min_word_posterior if hinted else 0.0  # the full LM has no hints to be biased toward
        return AsrResult(sure_text(words, self._hints, floor), True, confidence, words, self._last_at, fit)

    def close(self) -> None:
        """Drop the hint decoder and resampler; the full-LM decoder goes back to the model's pool."""
        with self.model.lock:  # freeing a full decoder releases its hold on the shared LM
            if self._active is not None:
                self._active.end_utt()
            self._phones.abort()
            if self._free_decoder is not None:
                self.model.give_back_full(self.sample_rate, self._free_decoder)
            self._active = self._hint_decoder = self._free_decoder = self._phones.decoder = self._resampler = None
        self._closed = True
