"""Piper TTS latency and throughput on this machine, with the joe voice.

Run: .venv/bin/python bench/tts_bench.py [--quick]

Prints:
- voice load time (session + warm-up) and the memory one loaded voice takes (RSS delta);
- real-time factor: synthesis time / audio time over ~20 sentences (one onnx run each);
- time to first audio (p50/p95) for a 10-word sentence with dynamic values, streamed
  at 8 kHz: with fast start (first sentence cut after ~3 words) and without;
- the same with 2 streams started at once (2 calls on the 2 cores);
- onnxruntime intra_op_num_threads 1 vs 2 (one call, and 2 calls at once).

Time to first audio is ``SentenceStream.first_audio_s``: from ``voice_stream()`` to
the first 20 ms frame being ready (normalization, phonemes, onnx, resampling).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sentence_stream import voice_stream  # noqa: E402
from voicebot.tts.normalize import normalize_text  # noqa: E402
from voicebot.tts.piper_voice import PiperVoice, default_model_paths  # noqa: E402

SENTENCES = [
    "Thank you for calling Riverside Medical, how can I help you today?",
    "Your appointment is on Monday, November 23rd at 3:30 pm.",
    "I can see a balance of $1,280.45 on your account.",
    "Please hold while I transfer you to one of our agents.",
    "The pharmacy closes at 6 pm on weekdays and noon on Saturdays.",
    "Your reference number is 4 8 1 5 1 6.",
    "Would you like me to send a confirmation text to your phone?",
    "We have an opening with Dr. Patel next Tuesday morning.",
    "Your last payment of $250 was received on 2026-10-02.",
    "I am sorry, I did not catch that.",
    "Could you please repeat your date of birth?",
    "Our office is located at 221 Main St., suite 4.",
    "The interest rate on this plan is 4.1% per year.",
    "You are caller number 3 in the queue.",
    "Is there anything else I can help you with today?",
    "Your package will arrive between 9 am and 1 pm tomorrow.",
    "Mrs. Lopez, your prescription is ready for pickup.",
    "Press one to confirm, or two to choose another time.",
    "The total comes to $42.99, including tax.",
    "Thank you for your patience, goodbye.",
]
DYNAMIC = [  # 10 words each once normalized, with names, dates, times and amounts
    "Hello Maria, your payment of $45 is due Friday.",
    "Mr. Chen, your appointment is November 23rd at 10 am.",
    "Your current balance is $12.50, due Monday.",
    "Hi James, we received your order this morning at 9.",
    "Dr. Okafor can see you Thursday at 3:30 pm.",
    "Your refund of $89 will arrive in 5 business days.",
]


def rss_mb() -> float:
    """Resident memory of this process (MB), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1), nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(values: list[float]) -> str:
    return f"p50 {1000 * statistics.median(values):6.0f} ms   p95 {1000 * pct(values, 0.95):6.0f} ms   (n={len(values)})"


def load(threads: int) -> tuple[PiperVoice, float, float]:
    """A freshly loaded voice, its load seconds and its RSS delta (MB)."""
    model, config = default_model_paths()
    before, started = rss_mb(), time.perf_counter()
    voice = PiperVoice.load(model, config, threads=threads)
    return voice, time.perf_counter() - started, rss_mb() - before


def real_time_factor(voice: PiperVoice, sentences: list[str]) -> tuple[float, float]:
    """(synthesis seconds / audio seconds, audio seconds) over ``sentences``, one run each."""
    synth = audio = 0.0
    for sentence in sentences:
        said = normalize_text(sentence, voice.language)
        started = time.perf_counter()
        samples = voice.synthesize_sentence(said)
        synth += time.perf_counter() - started
        audio += len(samples) / voice.sample_rate
    return synth / audio, audio


def first_audio(voice: PiperVoice, text: str, fast_start: bool) -> float:
    """Seconds from ``voice_stream(voice, text)`` (normalization included) to holding its first 8 kHz frame."""
    started = time.perf_counter()
    stream = voice_stream(voice, text, 8000, fast_start=fast_start)
    next(iter(stream))
    seconds = time.perf_counter() - started
    stream.cancel()
    stream.join()
    return seconds


def first_audio_parallel(voice: PiperVoice, text: str, fast_start: bool, calls: int = 2) -> list[float]:
    """Time to first audio of ``calls`` streams started at the same moment."""
    barrier, out = threading.Barrier(calls), []

    def one() -> None:
        barrier.wait()
        out.append(first_audio(voice, text, fast_start))

    threads = [threading.Thread(target=one) for _ in range(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def ttfa_runs(voice: PiperVoice, runs: int, fast_start: bool, parallel: bool) -> list[float]:
    values: list[float] = []
    for i in range(runs):
        text = DYNAMIC[i % len(DYNAMIC)]
        values.extend(first_audio_parallel(voice, text, fast_start) if parallel else [first_audio(voice, text, fast_start)])
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args()
    runs, sentences = (3, [SENTENCES[9], SENTENCES[19]]) if args.quick else (30, SENTENCES)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (other work skews timings)")

    voice, seconds, mb = load(threads=1)
    print(f"voice load: {seconds:.2f} s (session + warm-up)   memory: {mb:.0f} MB RSS   {voice.name}, {voice.sample_rate} Hz")
    words = statistics.mean(len(normalize_text(t, "en").split()) for t in DYNAMIC)
    print(f"time to first audio, {words:.0f}-word dynamic sentence, 8 kHz out, threads=1:")
    rows = [("1 call, fast start", True, False), ("1 call, whole first sentence", False, False),
            ("2 calls at once, fast start", True, True), ("2 calls at once, whole sentence", False, True)]
    for label, fast, parallel in rows[::2] if args.quick else rows:
        print(f"  {label:34s} {ms(ttfa_runs(voice, runs, fast, parallel))}")
    rtf, audio = real_time_factor(voice, sentences)
    print(f"real-time factor (threads=1): {rtf:.3f} over {len(sentences)} sentences, {audio:.1f} s of audio")

    if args.quick:
        print("intra_op_num_threads=2: skipped with --quick")
        return
    voice2, seconds2, _ = load(threads=2)
    rtf2, _ = real_time_factor(voice2, sentences)
    print(f"intra_op_num_threads=2: load {seconds2:.2f} s, real-time factor {rtf2:.3f}")
    for label, fast, parallel in rows[::2]:
        print(f"  {label:34s} {ms(ttfa_runs(voice2, runs, fast, parallel))}")


if __name__ == "__main__":
    main()
