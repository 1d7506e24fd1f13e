"""Voice conversion (``voicebot voice train``) on three agents assembled from Debian packages.

Run: .venv/bin/python bench/vc_bench.py [--agents librivox,cards,allison] [--keep DIR] [--seed N] [--method shift|gmm|mlpg]

For each agent of bench/vc_agents.py (LibriVox reader and "cards" speaker from pocketsphinx-testdata, male;
Allison Smith from asterisk-core-sounds-en-g722, female) it builds the voice pack, trains the conversion from
the stock Piper voice (joe) on the non-held-out prompts (``--method``: voice train's spectral mapping) and
prints ``voice train``'s report: held-out similarity to the agent's enrollment at 16 kHz and through the
telephone channel (both sides 8 kHz µ-law 300-3400 Hz) for the agent's own takes, the stock voice and the
converted voice; Whisper base WER at 8 kHz; F0 and HNR against the agent's range; MCD; the guard's verdict;
training time. Then the conversion's cost per second of audio on one thread (WORLD analysis + mapping +
synthesis; BLAS limited to one thread), and the Piper voice's own synthesis cost for comparison. A table at
the end sums it up. bench/vc_variants.py compares the mappings on the same clips.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.vc_agents import AGENTS, available, build  # noqa: E402
from voicebot.tts.pack import load_pack  # noqa: E402
from voicebot.tts.render import PromptCache  # noqa: E402
from voicebot.tts.vc.apply import convert  # noqa: E402
from voicebot.tts.vc.train import METHODS, TrainOptions, TrainResult, save, train_pack  # noqa: E402
from voicebot.tts.vc.world import RATE  # noqa: E402


def one_thread_costs(pack_dir: Path, result: TrainResult) -> tuple[float, float]:
    """(conversion, Piper synthesis) milliseconds per second of audio, one thread, over the held-out texts."""
    from threadpoolctl import threadpool_limits

    pack = load_pack(pack_dir)
    speaker = PromptCache(pack)
    texts = [pack.transcripts[pid] for pid in result.heldout_ids]
    with threadpool_limits(1):
        started = time.perf_counter()
        stock = [speaker.synthesize(t, RATE) for t in texts]
        synth_s = time.perf_counter() - started
        started = time.perf_counter()
        for audio in stock:
            convert(result.model, audio)
        convert_s = time.perf_counter() - started
    seconds = sum(len(a) for a in stock) / RATE
    return 1000 * convert_s / seconds, 1000 * synth_s / seconds


def run_agent(agent: str, work: Path, seed: int, method: str) -> tuple[str, TrainResult, float, float] | None:
    if not available(agent):
        print(f"{agent}: skipped (its Debian package is not installed; run scripts/setup.sh)")
        return None
    pack_dir, held = build(agent, work)
    pack = load_pack(pack_dir)
    print(f"\n== {agent}: {len(pack.prompt_ids())} prompts, {len(held)} held out, enrollment {len(pack.enrollment())} clips")
    started = time.perf_counter()
    result = train_pack(pack, TrainOptions(seed=seed, heldout=held, method=method))
    wall = time.perf_counter() - started
    save(pack, result)
    print("\n".join(result.lines()))
    convert_ms, synth_ms = one_thread_costs(pack_dir, result)
    print(f"whole run {wall:.0f} s wall (stages: {', '.join(f'{k} {v:.1f} s' for k, v in result.timings.items())})")
    print(f"one thread: conversion {convert_ms:.0f} ms per second of audio (Piper itself: {synth_ms:.0f} ms)")
    return agent, result, convert_ms, synth_ms


def table(rows: list[tuple[str, TrainResult, float, float]]) -> None:
    print("\n| agent | trained on | training | similarity own / stock / converted (16 kHz) | phone channel | "
          "WER stock / converted (8 kHz) | F0 agent range / converted | HNR agent / converted | 1 thread | enabled |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for agent, r, convert_ms, _ in rows:
        print(f"| {agent} | {len(r.train_ids)} prompts, {r.parallel_seconds:.0f} s | {r.train_seconds:.0f} s | "
              f"{r.own.similarity:.2f} / {r.stock.similarity:.2f} / **{r.converted.similarity:.2f}** | "
              f"{r.own.phone_similarity:.2f} / {r.stock.phone_similarity:.2f} / {r.converted.phone_similarity:.2f} | "
              f"{100 * r.stock.wer:.1f} % / {100 * r.converted.wer:.1f} % ({r.converted.words} words) | "
              f"{r.agent.f0_low:.0f}-{r.agent.f0_high:.0f} / {r.converted.f0_median:.0f} Hz | "
              f"{r.agent.hnr_low:.1f}-{r.agent.hnr_high:.1f} / {r.converted.hnr_median:.1f} dB | "
              f"{convert_ms:.0f} ms/s | {'yes' if r.enabled else 'no: ' + '; '.join(x.split(':')[0] for x in r.refused)} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default=",".join(AGENTS), help=f"comma-separated, of {', '.join(AGENTS)}")
    parser.add_argument("--keep", type=Path, help="build the packs (and their vc/ models) here and keep them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", choices=METHODS, default=METHODS[0], help="voice train's spectral mapping")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="vc_bench_"))
    rows = []
    try:
        for agent in args.agents.split(","):
            row = run_agent(agent.strip(), work, args.seed, args.method)
            if row:
                rows.append(row)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
