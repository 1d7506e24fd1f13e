"""The agent's voice: prompt rendering, dynamic text latency, speaker similarity.

Run: .venv/bin/python bench/voice_bench.py [--quick]

Prints:
- rendering the example flow's fixed text (prompts + fragments of dynamic
  prompts) at 8 kHz with the joe voice, no recordings: cold (everything
  synthesized, then written to the disk cache) and warm (a new cache on the
  same directory: everything read from disk): wall time, pieces, audio
  seconds, and the disk cache's size (files, bytes);
- time to first audio and total time for a dynamic sentence with variables,
  "Hi {{customer_name}}, your balance is {{amount}}." with amount "$1,280":
  fixed parts from the cache, values synthesized live;
- speaker similarity (d-vector cosine, pooled) against one LibriVox reader's
  enrollment (3 clips): her other clips (the "recorded prompts"), other real
  speakers (pocketsphinx-testdata cards + raw clips), and the joe voice saying
  the flow's prompts; plus the embedder's speed.

``--quick`` renders 5 texts, skips the warm-up repeat and synthesizes 2 prompts
for the similarity (a smoke run, ~20 s).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.audio.wav import read_wav  # noqa: E402
from voicebot.dialog.flow import Flow  # noqa: E402
from voicebot.dialog.loader import load_flow  # noqa: E402
from voicebot.tts.pack import VoicePack, load_pack, trim_silence  # noqa: E402
from voicebot.tts.render import PromptCache, group_by_text, recordable_prompts  # noqa: E402
from voicebot.tts.speaker import SpeakerEmbedder, check_texts, score_group, shared_embedder  # noqa: E402

FLOW = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
DATA = Path("/usr/share/pocketsphinx/test/data")
RATE = 8000
DYNAMIC = "Hi {{customer_name}}, your balance is {{amount}}."
VALUES = {"customer_name": "Ann", "amount": "$1,280"}


def make_pack(root: Path) -> VoicePack:
    """A pack with no recordings: the joe voice says everything."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "voice.yaml").write_text("name: bench\nlanguage: en\nmodel: default\n")
    return load_pack(root)


def bench_render(pack: VoicePack, flow: Flow, cache_dir: Path, limit: int | None) -> None:
    texts = [spec.text for spec, _ in group_by_text(recordable_prompts(flow))][:limit]
    print(f"render: {len(texts)} distinct fixed texts of {flow.id} at {RATE} Hz (joe voice, no recordings)")
    for label in ("cold", "warm"):
        cache = PromptCache(pack, cache_dir)
        start = time.perf_counter()
        rendered = [cache.render(text, RATE) for text in texts]
        elapsed = time.perf_counter() - start
        sources = [source for _, source in rendered]
        audio_s = sum(len(audio) for audio, _ in rendered) / RATE
        files, size = cache.disk_usage()
        print(f"  {label:4}: {elapsed:6.2f} s wall for {audio_s:5.1f} s of audio (RTF {elapsed / audio_s:.3f}); "
              f"synthesized {sources.count('synth')}, from disk {sources.count('disk')}; "
              f"cache {files} files, {size / 1024:.0f} KiB")


def bench_dynamic(pack: VoicePack, cache_dir: Path, repeats: int) -> None:
    cache = PromptCache(pack, cache_dir)
    for text in ("Hi", "your balance is"):  # as render_flow would have done for a flow using this sentence
        cache.render(text, RATE)
    firsts, totals, underruns = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        first, total_samples, underrun = None, 0, -float("inf")
        for chunk in cache.render_dynamic(DYNAMIC, VALUES, RATE):
            now = time.perf_counter() - start
            if first is None and len(chunk):
                first = now
            if first is not None and total_samples and len(chunk):  # did the player run dry waiting for this chunk?
                underrun = max(underrun, now - (first + total_samples / RATE))
            total_samples += len(chunk)
        firsts.append(first or 0.0)
        totals.append(time.perf_counter() - start)
        underruns.append(underrun)
    worst = max(underruns)
    flow_note = f"playback never waits (closest margin {-1000 * worst:.0f} ms)" if worst <= 0 else \
        f"playback would stall {1000 * worst:.0f} ms waiting for a value"
    print(f"dynamic: {DYNAMIC!r} with {VALUES}: time to first audio {1000 * min(firsts):.1f} ms "
          f"(median {1000 * float(np.median(firsts)):.1f}), whole sentence {1000 * float(np.median(totals)):.0f} ms "
          f"for {total_samples / RATE:.2f} s of audio ({cache.live_synth_count // repeats} values synthesized live); "
          f"{flow_note}")
    start = time.perf_counter()
    whole = f"Hi {VALUES['customer_name']}, your balance is one thousand two hundred eighty dollars."
    plain = next(iter(pack.voice.synthesize(whole)))
    print(f"  for comparison, synthesizing the whole sentence first: {1000 * (time.perf_counter() - start):.0f} ms "
          f"before any audio ({len(plain) / pack.voice.sample_rate:.2f} s)")


def load16k(path: Path) -> np.ndarray:
    if path.suffix == ".raw":
        return np.fromfile(path, dtype="<i2").astype(np.int16)
    return read_wav(path)[0]


def bench_similarity(pack: VoicePack, flow: Flow, max_synth: int) -> None:
    reader = sorted((DATA / "librivox").glob("*.wav"))
    others = sorted((DATA / "cards").glob("*.wav")) + sorted(DATA.glob("*.raw"))
    if len(reader) < 5:
        print("similarity: skipped (Debian pocketsphinx-testdata not installed)")
        return
    start = time.perf_counter()
    embedder: SpeakerEmbedder = shared_embedder()
    load_s = time.perf_counter() - start
    clip = lambda p: (p.name, trim_silence(load16k(p), 16000))  # noqa: E731
    enroll = [clip(p)[1] for p in (reader[0], reader[2], reader[3])]
    start = time.perf_counter()
    enrolled = embedder.embed_many(enroll)
    embed_s = time.perf_counter() - start
    enroll_s = sum(map(len, enroll)) / 16000
    print(f"similarity vs enrollment (LibriVox reader, 3 clips, {enroll_s:.1f} s; embedder load {load_s:.2f} s, "
          f"{1000 * embed_s / enroll_s:.0f} ms per second of audio):")
    same = [clip(reader[1]), clip(reader[4])]
    print("  " + score_group(embedder, enrolled, "recorded (same reader, 2 other clips)", same).line())
    print("  " + score_group(embedder, enrolled, "other speakers (cards)", [clip(p) for p in others[:5]]).line())
    print("  " + score_group(embedder, enrolled, "other speakers (raw)", [clip(p) for p in others[5:]]).line())
    cache = PromptCache(pack)
    synth = [(t[:20], trim_silence(cache.synthesize(t, 16000), 16000)) for t in check_texts(pack, flow)[:max_synth]]
    print("  " + score_group(embedder, enrolled, "synthesized (joe voice, flow prompts)", synth).line())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer texts and repeats")
    args = parser.parse_args()
    flow = load_flow(FLOW)
    work = Path(tempfile.mkdtemp(prefix="voice_bench_"))
    try:
        pack = make_pack(work / "pack")
        start = time.perf_counter()
        _ = pack.voice
        print(f"joe voice load: {time.perf_counter() - start:.2f} s")
        bench_render(pack, flow, work / "cache", 5 if args.quick else None)
        bench_dynamic(pack, work / "cache", 2 if args.quick else 5)
        bench_similarity(pack, flow, 2 if args.quick else 6)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
