"""Voice-activity detection behind the :class:`~voicebot.asr.base.VadModel` protocol.

Two backends:

- :class:`WebRtcVad`: the WebRTC GMM detector (``webrtcvad``); answers 0.0 or
  1.0, costs a few µs per 20 ms frame. It accepts only 10/20/30 ms frames at
  8/16/32/48 kHz: other rates are resampled to 16 kHz inside the stream, and
  frames of other lengths are cut into 10 ms pieces (the remainder waits for the
  next frame); the answer is then the max over the pieces completed by this
  frame, or the previous answer when none completed.
- :class:`SileroVad`: the Silero v5/v6 neural VAD (ONNX, ``onnxruntime``); a real
  probability, a few hundred µs per 32 ms window. The model runs on windows of
  512 samples at 16 kHz (256 at 8 kHz) with the previous 64 (32) samples
  prepended as context and a recurrent state of shape (2, 1, 128); streams
  buffer 20 ms frames into windows and answer the latest window's probability
  (the previous one while a window fills). Other rates are resampled to 16 kHz.

Resampling inside a stream (22.05/24/44.1 kHz to 16 kHz) uses soxr's "LQ"
quality: about one 20 ms frame of delay, flat to 6 kHz (-2 dB at 6.4 kHz,
plenty for speech), aliases rejected by > 90 dB. "QQ" would answer at once but
does no anti-alias filtering (a 10 kHz tone at 22.05 kHz comes out at 6 kHz
only 5 dB down); "MQ" is flat to 7.2 kHz but delays and bursts by 40 ms.
See bench/audio_bench.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import webrtcvad

from voicebot.asr.base import ModelError, VadModel
from voicebot.audio.frame import AudioFrame
from voicebot.audio.resample import StreamResampler

STREAM_RESAMPLE_QUALITY = "LQ"
WEBRTC_RATES = (8000, 16000, 32000, 48000)
SILERO_RATES = (8000, 16000)
INSTALL_HINT = "run scripts/setup.sh: it installs the silero-vad package (`pip install --no-deps silero-vad`, without torch)"

# ----------------------------------------------------------------- WebRTC


class WebRtcVad:
    """The WebRTC VAD; ``aggressiveness`` 0 (lenient, default 2) to 3 (strict about what is speech)."""

    def __init__(self, aggressiveness: int = 2) -> None:
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"webrtc VAD aggressiveness must be 0, 1, 2 or 3, got {aggressiveness!r}")
        self.name = "webrtc"
        self.aggressiveness = aggressiveness

    def stream(self) -> WebRtcVadStream:
        """A new per-call detector."""
        return WebRtcVadStream(self.aggressiveness)


class WebRtcVadStream:
    """Per-call WebRTC VAD: ``speech_probability`` answers 0.0 or 1.0 (see the module doc for odd frames)."""

    def __init__(self, aggressiveness: int) -> None:
        self._aggressiveness = aggressiveness
        self.reset()

    def reset(self) -> None:
        """Forget the detector's adaptation, buffered audio and the last answer."""
        self._vad = webrtcvad.Vad(self._aggressiveness)
        self._in_rate = 0
        self._rate = 0  # the rate webrtcvad sees
        self._resampler: StreamResampler | None = None
        self._pending = bytearray()
        self._piece = 0  # bytes in 10 ms at self._rate
        self._direct = (0, 0, 0)  # bytes in 10, 20, 30 ms
        self._last = 0.0

    def _configure(self, rate: int) -> None:
        self.reset()
        self._in_rate = rate
        self._rate = rate if rate in WEBRTC_RATES else 16000
        if self._rate != rate:
            self._resampler = StreamResampler(rate, self._rate, STREAM_RESAMPLE_QUALITY)
        self._piece = piece = 2 * self._rate // 100
        self._direct = (piece, 2 * piece, 3 * piece)

    def speech_probability(self, frame: AudioFrame) -> float:
        """1.0 if ``frame`` holds speech, else 0.0; a change of ``frame.rate`` resets the stream."""
        if frame.rate != self._in_rate:
            self._configure(frame.rate)
        pcm = frame.samples
        if self._resampler is not None:
            pcm = self._resampler.process(frame.to_array()).tobytes()
        if not self._pending and len(pcm) in self._direct:
            self._last = 1.0 if self._vad.is_speech(pcm, self._rate) else 0.0
            return self._last
        self._pending += pcm
        count = len(self._pending) // self._piece
        if count:
            with memoryview(self._pending) as view:
                pieces = [bytes(view[i * self._piece:(i + 1) * self._piece]) for i in range(count)]
            votes = [self._vad.is_speech(p, self._rate) for p in pieces]  # every piece: the detector adapts
            self._last = 1.0 if any(votes) else 0.0
            del self._pending[: count * self._piece]
        return self._last


# ----------------------------------------------------------------- Silero


def default_silero_path() -> Path | None:
    """``data/silero_vad.onnx`` of the installed silero-vad package, found without importing it (it imports torch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ModelError(f"{path}: not a loadable ONNX model ({exc}); expected the Silero VAD v5/v6 "
                         f"silero_vad.onnx: {INSTALL_HINT}") from exc


class SileroVad:
    """The Silero VAD ONNX model, loaded once and shared by every stream (``run`` is thread-safe).

    ``model_path`` defaults to the silero-vad package's ``data/silero_vad.onnx``;
    ``threshold`` (default 0.5) is the probability callers should treat as speech.
    """

    def __init__(self, model_path: Path | str | None = None, threshold: float = 0.5) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"silero VAD threshold must be between 0 and 1, got {threshold!r}")
        path = Path(model_path) if model_path is not None else default_silero_path()
        if path is None:
            raise ModelError(f"Silero VAD model not found: the silero-vad package is not installed; {INSTALL_HINT}")
        if not path.is_file():
            raise ModelError(f"Silero VAD model not found at {path}: expected silero_vad.onnx there; {INSTALL_HINT}")
        self.name = "silero"
        self.threshold = threshold
        self.model_path = path
        # like silero's OnnxWrapper: the "*16k*" exports only know 16 kHz, so 8 kHz is resampled for them
        self.rates = (16000,) if "16k" in path.name else SILERO_RATES
        self._session = _session(path)
        self.state_shape = self._check_io()

    def _check_io(self) -> tuple[int, ...]:
        """The recurrent state's shape (batch 1), after checking the model is the v5/v6 kind."""
        inputs = {i.name: i.shape for i in self._session.get_inputs()}
        outputs = [o.name for o in self._session.get_outputs()]
        if set(inputs) != {"input", "state", "sr"} or len(outputs) != 2:
            raise ModelError(f"{self.model_path}: inputs {sorted(inputs)} and outputs {outputs}; expected a Silero "
                             f"VAD v5/v6 model with inputs input, state, sr and outputs output, stateN; {INSTALL_HINT}")
        return tuple(d if isinstance(d, int) else 1 for d in inputs["state"])

    def infer(self, window: npt.NDArray[np.float32], state: npt.NDArray[np.float32],
              sr: npt.NDArray[np.int64]) -> tuple[float, npt.NDArray[np.float32]]:
        """One step: (speech probability, next state) for ``window`` = context + samples, shape (1, n), in [-1, 1]."""
        prob, new_state = self._session.run(None, {"input": window, "state": state, "sr": sr})
        return float(prob[0, 0]), new_state

    def stream(self) -> SileroVadStream:
        """A new per-call detector."""
        return SileroVadStream(self)


class SileroVadStream:
    """Per-call Silero VAD: recurrent state, context and a window buffer (see the module doc)."""

    def __init__(self, model: SileroVad) -> None:
        self._model = model
        self.reset()

    def reset(self) -> None:
        """Zero the recurrent state and context, drop buffered samples and the last answer."""
        self._in_rate = 0
        self._resampler: StreamResampler | None = None
        self._state = np.zeros(self._model.state_shape, dtype=np.float32)
        self._last = 0.0
        self.windows = 0  # windows run since the last reset
        self._configure_window(16000)

    def _configure_window(self, rate: int) -> None:
        self._window = 512 if rate == 16000 else 256
        self._context = 64 if rate == 16000 else 32
        self._sr = np.array(rate, dtype=np.int64)
        self._input = np.zeros((1, self._context + self._window), dtype=np.float32)  # context | window
        self._fill = 0

    def _configure(self, rate: int) -> None:
        self.reset()
        self._in_rate = rate
        model_rate = rate if rate in self._model.rates else 16000
        if model_rate != rate:
            self._resampler = StreamResampler(rate, model_rate, STREAM_RESAMPLE_QUALITY)
        self._configure_window(model_rate)

    def speech_probability(self, frame: AudioFrame) -> float:
        """Probability (0..1) of the latest complete window, the previous answer while it fills (0.0 at first).

        A change of ``frame.rate`` resets the stream.
        """
        if frame.rate != self._in_rate:
            self._configure(frame.rate)
        samples = frame.to_array()
        if self._resampler is not None:
            samples = self._resampler.process(samples)
        pos, ctx = 0, self._context
        while pos < len(samples):
            take = min(self._window - self._fill, len(samples) - pos)
            start = ctx + self._fill
            np.multiply(samples[pos:pos + take], 1.0 / 32768.0, out=self._input[0, start:start + take], casting="unsafe")
            self._fill += take
            pos += take
            if self._fill == self._window:
                self._run_window()
        return self._last

    def _run_window(self) -> None:
        self._last, self._state = self._model.infer(self._input, self._state, self._sr)
        self._input[0, : self._context] = self._input[0, -self._context:]
        self._fill = 0
        self.windows += 1


# ----------------------------------------------------------------- configuration

VAD_NAMES = ("webrtc", "silero")


def make_vad(name: str, **options: Any) -> VadModel:
    """A VAD model by configuration name: "webrtc" (aggressiveness=) or "silero" (model_path=, threshold=)."""
    if name == "webrtc":
        return WebRtcVad(**options)
    if name == "silero":
        return SileroVad(**options)
    raise ValueError(f"unknown VAD {name!r}; choose one of: {', '.join(VAD_NAMES)}")
