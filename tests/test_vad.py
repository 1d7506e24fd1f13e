"""VAD with the real webrtcvad and the real Silero ONNX model, on real recorded human speech."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import webrtcvad

from tests.data_support import needs_data, require_module
from voicebot.asr.base import ModelError, VadModel
from voicebot.asr.vad import STREAM_RESAMPLE_QUALITY, SileroVad, WebRtcVad, default_silero_path, make_vad
from voicebot.audio.frame import AudioFrame
from voicebot.audio.resample import StreamResampler, resample
from voicebot.audio.wav import frames_from_array, read_wav

DATA = Path("/usr/share/pocketsphinx/test/data")
SPEECH_WAV = DATA / "librivox" / "sense_and_sensibility_01_austen_64kb-0870.wav"  # 7.1 s of continuous reading
NUMBERS_RAW = DATA / "numbers.raw"  # 4 s of spoken digits with pauses, s16le 16 kHz mono

pytestmark = needs_data(SPEECH_WAV.exists(), "pocketsphinx-testdata")


@pytest.fixture(scope="module")
def silero() -> SileroVad:
    return SileroVad()


@pytest.fixture(scope="module")
def speech16() -> np.ndarray:
    samples, rate = read_wav(SPEECH_WAV)
    assert rate == 16000
    return samples


def _probabilities(model: VadModel, samples: np.ndarray, rate: int, frame_ms: int = 20) -> np.ndarray:
    stream = model.stream()
    return np.array([stream.speech_probability(f) for f in frames_from_array(samples, rate, frame_ms)])


def _speech_fraction(model: VadModel, samples: np.ndarray, rate: int, frame_ms: int = 20) -> float:
    return float(np.mean(_probabilities(model, samples, rate, frame_ms) >= 0.5))


def _models(silero: SileroVad) -> list[VadModel]:
    return [WebRtcVad(0), WebRtcVad(1), WebRtcVad(2), WebRtcVad(3), silero]


def _noise(dbfs: float, seconds: float, rate: int, seed: int = 7) -> np.ndarray:
    sigma = 32768.0 * 10 ** (dbfs / 20)
    return np.round(np.random.default_rng(seed).normal(0.0, sigma, int(seconds * rate))).astype(np.int16)


# ------------------------------------------------------------- real speech, silence, noise


@pytest.mark.parametrize("rate", [16000, 8000, 22050])
def test_both_vads_find_speech_in_continuous_reading(silero, speech16, rate):
    samples = resample(speech16, 16000, rate)
    for model in _models(silero):
        assert _speech_fraction(model, samples, rate) > 0.75, (model.name, rate)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_both_vads_find_speech_in_spoken_digits(silero, rate):
    samples = resample(np.fromfile(NUMBERS_RAW, dtype="<i2"), 16000, rate)
    for model in (WebRtcVad(), silero):
        assert _speech_fraction(model, samples, rate) > 0.5, (model.name, rate)


def test_speech_and_pauses_are_told_apart(silero, speech16):
    # 1 s of digital silence, the reading, 1 s of silence: detections cluster on the reading
    clip = np.concatenate([np.zeros(16000, np.int16), speech16, np.zeros(16000, np.int16)])
    for model in (WebRtcVad(), silero):
        p = _probabilities(model, clip, 16000) >= 0.5
        assert p[:50].sum() == 0 and p[50:-50].mean() > 0.75
        assert p[-40:].sum() == 0  # silero and webrtc both let go within 200 ms


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_digital_silence_is_never_speech(silero, rate):
    silence = np.zeros(2 * rate, dtype=np.int16)
    for model in _models(silero):
        assert _probabilities(model, silence, rate).max() < 0.05, model.name


def test_digital_silence_resampled_inside_the_stream(silero):
    # soxr's int16 output is dithered (±1 LSB), so silence at 22.05 kHz reaches the detector as -90 dBFS noise;
    # webrtcvad at aggressiveness 0/1 calls the first ~100 ms of any new noise speech, 2 and 3 do not
    silence = np.zeros(2 * 22050, dtype=np.int16)
    for model in (WebRtcVad(2), WebRtcVad(3), silero):
        assert _probabilities(model, silence, 22050).max() < 0.05, model.name
    for model in (WebRtcVad(0), WebRtcVad(1)):
        assert _probabilities(model, silence, 22050)[10:].max() == 0.0


@pytest.mark.parametrize("rate", [8000, 16000])
def test_low_level_white_noise_is_hardly_speech(silero, rate):
    noise = _noise(-50.0, 5.0, rate)
    assert AudioFrame.from_array(noise, rate).rms_dbfs() == pytest.approx(-50.0, abs=0.2)
    for model in (WebRtcVad(0), WebRtcVad(2), WebRtcVad(3)):
        assert _speech_fraction(model, noise, rate) < 0.05, model.aggressiveness
    assert _probabilities(silero, noise, rate).max() < 0.3  # about 0.1 at most


# ------------------------------------------------------------- WebRTC framing


def test_webrtc_accepts_30ms_frames_at_8k(speech16):
    samples8 = resample(speech16, 16000, 8000)
    assert len(frames_from_array(samples8, 8000, 30)[0].samples) == 480
    assert _speech_fraction(WebRtcVad(), samples8, 8000, frame_ms=30) > 0.75


def _webrtc_reference(chunks: list[np.ndarray], aggressiveness: int = 2) -> tuple[list[float], int]:
    """The documented rule with plain webrtcvad at 16 kHz: 10/20/30 ms chunks as they are when nothing waits,
    otherwise 10 ms pieces, answering the max of the pieces a chunk completes (else the previous answer).
    Also returns how many chunks completed pieces that disagreed."""
    vad, pending, last, answers, mixed = webrtcvad.Vad(aggressiveness), np.zeros(0, np.int16), 0.0, [], 0
    for chunk in chunks:
        if not len(pending) and len(chunk) in (160, 320, 480):
            last = 1.0 if vad.is_speech(chunk.tobytes(), 16000) else 0.0
        else:
            pending = np.concatenate([pending, chunk])
            votes = [vad.is_speech(pending[i:i + 160].tobytes(), 16000) for i in range(0, len(pending) - 159, 160)]
            pending = pending[len(votes) * 160:]
            if votes:
                last, mixed = (1.0 if any(votes) else 0.0), mixed + (len(set(votes)) > 1)
        answers.append(last)
    return answers, mixed


@pytest.mark.parametrize("sizes", [[240], [800], [240, 320, 160, 480, 400, 320, 320]],
                         ids=["15ms", "50ms", "mixed"])
def test_webrtc_odd_frames_are_cut_into_10ms_pieces_and_answer_the_max(sizes):
    digits = np.fromfile(NUMBERS_RAW, dtype="<i2")  # speech with pauses: some frames straddle both
    bounds = np.cumsum([0, *(sizes * (len(digits) // sum(sizes)))])
    chunks = [digits[a:b] for a, b in itertools.pairwise(bounds)]
    stream = WebRtcVad(2).stream()
    got = [stream.speech_probability(AudioFrame.from_array(c, 16000)) for c in chunks]
    expected, mixed = _webrtc_reference(chunks)
    assert got == expected
    assert 0.3 < np.mean(got) < 0.95  # both answers were compared
    if sizes == [800]:
        assert mixed >= 3  # including frames whose pieces disagree


def test_webrtc_resamples_other_rates_to_16k(speech16):
    samples = resample(speech16, 16000, 22050)
    frames = frames_from_array(samples, 22050)
    stream = WebRtcVad(2).stream()
    got = [stream.speech_probability(f) for f in frames]
    resampler = StreamResampler(22050, 16000, STREAM_RESAMPLE_QUALITY)
    expected, _ = _webrtc_reference([resampler.process(f.to_array()) for f in frames])
    assert got == expected and np.mean(got) > 0.75


def test_webrtc_rejects_bad_aggressiveness():
    for bad in (-1, 4, 2.5):
        with pytest.raises(ValueError, match="0, 1, 2 or 3"):
            WebRtcVad(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------- Silero model details


def test_silero_model_inputs_are_what_the_stream_feeds(silero):
    session = ort.InferenceSession(str(default_silero_path()), providers=["CPUExecutionProvider"])
    inputs = {i.name: (i.shape, i.type) for i in session.get_inputs()}
    assert inputs["input"][1] == "tensor(float)" and len(inputs["input"][0]) == 2
    assert inputs["state"] == ([2, None, 128], "tensor(float)")
    assert inputs["sr"] == ([], "tensor(int64)")
    assert [o.name for o in session.get_outputs()] == ["output", "stateN"]
    assert silero.state_shape == (2, 1, 128)


def _reference_window_probs(samples: np.ndarray, rate: int) -> list[float]:
    """Silero's own OnnxWrapper loop in numpy: whole windows with the previous context prepended."""
    session = ort.InferenceSession(str(default_silero_path()), providers=["CPUExecutionProvider"])
    window, context = (512, 64) if rate == 16000 else (256, 32)
    state = np.zeros((2, 1, 128), np.float32)
    ctx = np.zeros((1, context), np.float32)
    probs = []
    x = samples.astype(np.float32) / 32768.0
    for i in range(0, len(x) - window + 1, window):
        inp = np.concatenate([ctx, x[None, i:i + window]], axis=1)
        out, state = session.run(None, {"input": inp, "state": state, "sr": np.array(rate, np.int64)})
        probs.append(float(out[0, 0]))
        ctx = inp[:, -context:]
    return probs


@pytest.mark.parametrize(("rate", "frame_ms"), [(16000, 20), (8000, 20), (8000, 30), (16000, 100)])
def test_silero_streaming_equals_whole_windows(silero, speech16, rate, frame_ms):
    samples = resample(speech16[: 3 * 16000], 16000, rate)
    reference = _reference_window_probs(samples, rate)
    window = 512 if rate == 16000 else 256
    frame = rate * frame_ms // 1000
    stream = silero.stream()
    expected, got = [], []
    for k, f in enumerate(frames_from_array(samples[: len(samples) - len(samples) % frame], rate, frame_ms)):
        got.append(stream.speech_probability(f))
        done = (k + 1) * frame // window
        expected.append(reference[done - 1] if done else 0.0)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert stream.windows == len(samples) // window
    assert max(reference) > 0.9 and min(reference) < 0.5


def test_silero_reset_and_independent_streams(silero, speech16):
    clip = speech16[:16000]
    fresh = _probabilities(silero, clip, 16000)
    used = silero.stream()
    for f in frames_from_array(speech16[20000:36000], 16000):
        used.speech_probability(f)
    used.reset()
    np.testing.assert_allclose([used.speech_probability(f) for f in frames_from_array(clip, 16000)], fresh, atol=1e-6)
    # two interleaved streams on one shared session do not disturb each other
    a, b = silero.stream(), silero.stream()
    noise_frames = frames_from_array(_noise(-20.0, 1.0, 16000), 16000)
    got = []
    for fa, fb in zip(frames_from_array(clip, 16000), noise_frames, strict=True):
        got.append(a.speech_probability(fa))
        b.speech_probability(fb)
    np.testing.assert_allclose(got, fresh, atol=1e-6)


def test_silero_streams_in_threads_share_the_session(silero, speech16):
    clip = speech16[:32000]
    expected = _probabilities(silero, clip, 16000)
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = _probabilities(silero, clip, 16000)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(3):
        np.testing.assert_allclose(results[i], expected, atol=1e-6)


def test_webrtc_reset_forgets():
    # a fresh detector calls the first ~80 ms of faint noise speech, then adapts; after reset() it does so again
    noise = _noise(-50.0, 1.0, 16000)
    fresh = _probabilities(WebRtcVad(2), noise, 16000)
    assert fresh[:3].all() and not fresh[10:].any()
    stream = WebRtcVad(2).stream()
    for f in frames_from_array(noise, 16000):
        stream.speech_probability(f)
    assert stream.speech_probability(frames_from_array(noise, 16000)[0]) == 0.0  # adapted
    stream.reset()
    assert [stream.speech_probability(f) for f in frames_from_array(noise, 16000)] == list(fresh)


# ------------------------------------------------------------- model files and configuration


def test_default_model_is_found_and_loaded_without_importing_silero_vad():
    path = default_silero_path()
    assert path is not None and path.name == "silero_vad.onnx" and path.is_file()
    # in a fresh interpreter: importing the silero_vad package would import torch (not installed)
    code = ("import sys; from voicebot.asr.vad import SileroVad; SileroVad(); "
            "assert 'silero_vad' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)


def test_missing_model_file_is_a_model_error(tmp_path):
    missing = tmp_path / "nowhere" / "silero_vad.onnx"
    with pytest.raises(ModelError, match=r"nowhere/silero_vad\.onnx.*scripts/setup\.sh.*pip install --no-deps silero-vad"):
        SileroVad(missing)


def test_corrupt_model_file_is_a_model_error(tmp_path):
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ModelError, match=r"garbage\.onnx: not a loadable ONNX model.*Silero VAD"):
        SileroVad(bad)


def test_wrong_onnx_model_is_a_model_error(tmp_path):
    onnx = require_module("onnx", "onnx (installed with open-voicefilter-lite)")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "identity.onnx"))
    with pytest.raises(ModelError, match=r"identity\.onnx: inputs \['x'\].*expected a Silero VAD v5/v6"):
        SileroVad(tmp_path / "identity.onnx")


def test_make_vad_by_name(silero):
    webrtc = make_vad("webrtc", aggressiveness=3)
    assert isinstance(webrtc, WebRtcVad) and webrtc.aggressiveness == 3 and webrtc.name == "webrtc"
    model = make_vad("silero", model_path=str(default_silero_path()), threshold=0.6)
    assert isinstance(model, SileroVad) and model.threshold == 0.6 and model.name == "silero"
    with pytest.raises(ValueError, match="unknown VAD 'energy'; choose one of: webrtc, silero"):
        make_vad("energy")
    with pytest.raises(ValueError, match="threshold"):
        make_vad("silero", threshold=1.5)


def test_16k_only_export_gets_8k_audio_resampled(speech16):
    path = default_silero_path()
    assert path is not None
    model = SileroVad(path.parent / "silero_vad_16k_op15.onnx")
    assert model.rates == (16000,)
    frames8 = frames_from_array(resample(speech16, 16000, 8000), 8000)
    stream = model.stream()
    got = [stream.speech_probability(f) for f in frames8]
    # the same as resampling to 16 kHz outside and feeding a 16 kHz stream
    resampler, outside = StreamResampler(8000, 16000, STREAM_RESAMPLE_QUALITY), model.stream()
    expected = [outside.speech_probability(AudioFrame.from_array(resampler.process(f.to_array()), 16000)) for f in frames8]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.mean(np.array(got) >= 0.5) > 0.75
