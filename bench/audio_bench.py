"""Costs at the audio edges: G.711, resampling (speed and quality), VAD per frame.

Run: .venv/bin/python bench/audio_bench.py [--quick]

Prints:
- G.711 µ-law decode/encode: µs per 20 ms frame (160 bytes <-> 320 bytes) and
  MB/s of s16le on a 60 s buffer;
- resampling 8→16k, 16→8k, 22.05→8k, 24→8k, 22.05→16k: real-time factor
  (compute time / audio time; smaller is better) for 1 s one-shot with soxr
  HQ (voicebot.audio.resample.resample), per 20 ms chunk with soxr MQ, LQ and QQ
  (StreamResampler), and for comparison scipy.signal.resample_poly (when
  scipy is importable) and numpy.interp (linear interpolation, no filter);
- resampling quality: gain of an in-band tone and leakage of an out-of-band
  tone (its alias, dB relative to the input tone) for 16→8k and 22.05→8k;
- VAD: µs per 20 ms frame of real speech and frames/s on one core (and so
  concurrent calls per core at 50 frames/s) for webrtc at each aggressiveness
  and Silero, at 8, 16 and 22.05 kHz.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.asr.vad import SileroVad, WebRtcVad  # noqa: E402
from voicebot.audio.codecs import linear_to_ulaw, ulaw_to_linear  # noqa: E402
from voicebot.audio.frame import AudioFrame  # noqa: E402
from voicebot.audio.resample import StreamResampler, resample  # noqa: E402
from voicebot.audio.wav import frames_from_array, read_wav  # noqa: E402

SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav")
PAIRS = ((8000, 16000), (16000, 8000), (22050, 8000), (24000, 8000), (22050, 16000))
Int16Array = npt.NDArray[np.int16]

try:  # scipy is optional
    resample_poly: Callable[..., Any] | None = importlib.import_module("scipy.signal").resample_poly
except ImportError:
    resample_poly = None


def best_time(fn: Callable[[], Any], number: int, repeat: int = 3) -> float:
    """Seconds per call of ``fn``: the best of ``repeat`` runs of ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def speech_at(rate: int) -> Int16Array:
    """Real speech (LibriVox reading, 7.1 s) at ``rate``; noise-like filler if the test data is missing."""
    if SPEECH.exists():
        samples, src = read_wav(SPEECH)
        return resample(samples, src, rate)
    rng = np.random.default_rng(0)
    return np.round(rng.normal(0, 3000, 7 * rate)).astype(np.int16)


# ----------------------------------------------------------------- G.711


def bench_g711(quick: bool) -> None:
    print("== G.711 µ-law (numpy table lookup)")
    pcm_frame = speech_at(8000)[:160].tobytes()
    ulaw_frame = linear_to_ulaw(pcm_frame)
    n = 200 if quick else 100_000
    dec, enc = best_time(lambda: ulaw_to_linear(ulaw_frame), n), best_time(lambda: linear_to_ulaw(pcm_frame), n)
    big_pcm = np.resize(speech_at(8000), 8000 * 60).tobytes()  # 60 s, 960 kB of s16le
    big_ulaw = linear_to_ulaw(big_pcm)
    m = 2 if quick else 50
    dec_big, enc_big = best_time(lambda: ulaw_to_linear(big_ulaw), m), best_time(lambda: linear_to_ulaw(big_pcm), m)
    mb = len(big_pcm) / 1e6
    print(f"  decode: {dec * 1e6:6.2f} µs per 20 ms frame   {mb / dec_big:8.0f} MB/s of s16le out")
    print(f"  encode: {enc * 1e6:6.2f} µs per 20 ms frame   {mb / enc_big:8.0f} MB/s of s16le in")


# ----------------------------------------------------------------- resampling speed


def _interp(x: Int16Array, src: int, dst: int) -> Int16Array:
    t_out = np.arange(len(x) * dst // src) * (src / dst)
    y: Int16Array = np.round(np.interp(t_out, np.arange(len(x)), x)).astype(np.int16)
    return y


def _poly(x: Int16Array, src: int, dst: int) -> Int16Array:
    assert resample_poly is not None
    g = np.gcd(src, dst)
    y = resample_poly(x.astype(np.float32), dst // g, src // g)
    out: Int16Array = np.clip(np.round(y), -32768, 32767).astype(np.int16)
    return out


def _streamed(x: Int16Array, src: int, dst: int, quality: str) -> Int16Array:
    stream = StreamResampler(src, dst, quality)
    step = src // 50
    parts = [stream.process(x[i:i + step]) for i in range(0, len(x), step)]
    return np.concatenate([*parts, stream.flush()])


def _methods() -> dict[str, Callable[[Int16Array, int, int], Int16Array]]:
    methods: dict[str, Callable[[Int16Array, int, int], Int16Array]] = {
        "soxr HQ 1 s": resample,
        "soxr MQ 20ms": lambda x, s, d: _streamed(x, s, d, "MQ"),
        "soxr LQ 20ms": lambda x, s, d: _streamed(x, s, d, "LQ"),
        "soxr QQ 20ms": lambda x, s, d: _streamed(x, s, d, "QQ"),
    }
    if resample_poly is not None:
        methods["scipy poly 1 s"] = _poly
    methods["np.interp 1 s"] = _interp
    return methods


def bench_resample_speed(quick: bool) -> None:
    print("== resampling speed: ms of compute per 1 s of audio (= real-time factor x 1000; smaller is better)")
    if resample_poly is None:
        print("  scipy is not importable: skipping the scipy.signal.resample_poly comparison")
    methods = _methods()
    print(f"  {'':16}" + "".join(f"{f'{s / 1000:g}→{d // 1000}k':>12}" for s, d in PAIRS))
    n = 2 if quick else 30
    for name, fn in methods.items():
        cells = []
        for src, dst in PAIRS:
            x = speech_at(src)[:src]
            rtf = best_time(lambda fn=fn, x=x, src=src, dst=dst: fn(x, src, dst), n)  # type: ignore[misc]
            cells.append(f"{rtf * 1000:12.3f}")
        print(f"  {name:16}" + "".join(cells))
    x = speech_at(8000)[:160]
    stream = StreamResampler(8000, 16000, "MQ")
    per_chunk = best_time(lambda: stream.process(x), 200 if quick else 20_000)
    print(f"  StreamResampler 8→16k MQ: {per_chunk * 1e6:.1f} µs per 20 ms chunk (call overhead included)")


# ----------------------------------------------------------------- resampling quality


def _tone(freq: float, rate: int, seconds: float = 1.0, dbfs: float = -6.0) -> Int16Array:
    t = np.arange(int(rate * seconds)) / rate
    return np.round(32768 * 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _level_db(y: Int16Array, freq: float, rate: int, ref_amplitude: float) -> float:
    """Amplitude of ``freq`` in ``y`` (Hann-windowed FFT, middle of the signal) in dB relative to ``ref_amplitude``."""
    mid = y[len(y) // 8: len(y) - len(y) // 8].astype(np.float64)
    window = np.hanning(len(mid))
    spectrum = np.abs(np.fft.rfft(mid * window))
    k = round(freq * len(mid) / rate)
    amplitude = 2 * spectrum[max(k - 2, 0):k + 3].max() / window.sum()
    return float(20 * np.log10(max(amplitude, 1e-9) / ref_amplitude))


def bench_resample_quality() -> None:
    print("== resampling quality: in-band tone gain, and the alias of an out-of-band tone (dB re input tone)")
    cases = ((16000, 8000, 3500.0, 5000.0), (22050, 8000, 3500.0, 6000.0))
    for src, dst, inband, outband in cases:
        alias = dst - outband
        print(f"  {src / 1000:g}→{dst // 1000}k: {inband:g} Hz gain | {outband:g} Hz leaking as {alias:g} Hz")
        amp = 32768 * 10 ** (-6 / 20)
        for name, fn in _methods().items():
            gain = _level_db(fn(_tone(inband, src), src, dst), inband, dst, amp)
            leak = _level_db(fn(_tone(outband, src), src, dst), alias, dst, amp)
            print(f"    {name:16} {gain:7.2f} dB | {leak:7.1f} dB")


# ----------------------------------------------------------------- VAD


def _vad_cost(model: WebRtcVad | SileroVad, frames: list[AudioFrame], passes: int) -> float:
    """Seconds per frame for one stream over ``frames``, best of 3."""
    stream = model.stream()
    for frame in frames[:50]:
        stream.speech_probability(frame)  # warm up (resampler, first windows)

    def run() -> None:
        for frame in frames:
            stream.speech_probability(frame)

    return best_time(run, passes) / len(frames)


def bench_vad(quick: bool) -> None:
    print("== VAD cost per 20 ms frame of real speech (one stream, one core)")
    silero = SileroVad()
    models: list[tuple[str, WebRtcVad | SileroVad]] = [(f"webrtc {a}", WebRtcVad(a)) for a in range(4)]
    models.append(("silero", silero))
    seconds = 1.0 if quick else 7.0
    for rate in (8000, 16000, 22050):
        frames = frames_from_array(speech_at(rate)[: int(seconds * rate)], rate)
        for name, model in models:
            cost = _vad_cost(model, frames, 1 if quick else 5)
            print(f"  {name:9} @ {rate / 1000:5g} kHz: {cost * 1e6:7.1f} µs/frame  {1 / cost:9.0f} frames/s"
                  f"  ≈ {1 / cost / 50:6.0f} calls per core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny iteration counts (CI smoke test)")
    args = parser.parse_args()
    bench_g711(args.quick)
    bench_resample_speed(args.quick)
    bench_resample_quality()
    bench_vad(args.quick)


if __name__ == "__main__":
    main()
