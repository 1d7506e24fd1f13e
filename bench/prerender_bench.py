"""Pre-render throughput: leads per minute per core that the campaign hook makes ready before their dial.

Run: PYTHONPATH=$PWD .venv/bin/python bench/prerender_bench.py [--leads 40] [--flow examples/flows/lead_screening_en.yaml]

The engine's own path (voicebot.tts.prerender.Prerenderer, one thread, nice 0 here so the figure is the work, not
the scheduler) with the default Piper voice and the flow's pipelines at 8 and 16 kHz, as ``voicebot serve``
loads them; each lead has a distinct ``customer_name`` (first and last names from two lists, never repeated), so
every lead costs one synthesis per piece and none is served from a memo. Printed: leads, pieces, wall time, leads
per minute on one core (the pre-render thread uses one), ms per lead p50/p95, and the CPU time the process spent
per lead. Then one call's worth of dynamic prompts is said for a pre-rendered lead and for one that was not, to
show what the call is spared (live synthesis on the call path, ms). Results: ``bench/results/prerender.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.dialog.loader import load_flow  # noqa: E402
from voicebot.pipeline import PipelineConfig, load_pipeline  # noqa: E402
from voicebot.tts.prerender import LeadFillIn, Prerenderer, Target  # noqa: E402
from voicebot.tts.render import PromptCache, static_prompts  # noqa: E402

FIRST = ("Amara", "Bartholomew", "Cordelia", "Desmond", "Eulalia", "Fitzgerald", "Genevieve", "Horatio", "Isadora",
         "Jebediah", "Katarina", "Leopold", "Marisol", "Nathaniel")
LAST = ("Abernathy", "Blackwood", "Castellanos", "Delacroix", "Ellingsworth", "Fairweather", "Grimaldi", "Hollingsworth",
        "Ivanova", "Jorgensen", "Kowalczyk", "Lindqvist")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def say_dynamic(cache: PromptCache, flow_path: Path, values: dict[str, str], rate: int) -> float:
    """Seconds to render every dynamic prompt of the flow with ``values`` (what a call's player pulls)."""
    started = time.perf_counter()
    for spec in static_prompts(load_flow(flow_path)):
        if spec.dynamic:
            for _ in cache.render_dynamic(spec.text, values, rate):
                pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--leads", type=int, default=40)
    parser.add_argument("--flow", type=Path, default=ROOT / "examples" / "flows" / "lead_screening_en.yaml")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "prerender.json")
    args = parser.parse_args()
    flow = load_flow(args.flow)
    cache_dir = ROOT / ".voicebot-cache" / "prompts"
    targets = [Target(flow, load_pipeline(flow, PipelineConfig(rate=r, cache_dir=cache_dir)).cache, r) for r in (8000, 16000)]
    names = [f"{a} {b}" for a, b in itertools.product(FIRST, LAST)][: args.leads + 2]
    renderer = Prerenderer(lambda _path: targets, nice=0)
    per_lead: list[float] = []
    cpu0, wall0 = os.times(), time.perf_counter()
    for i, name in enumerate(names[: args.leads]):
        began = time.perf_counter()
        renderer.submit(LeadFillIn("bench", str(i), str(args.flow), {"customer_name": name}))
        renderer.wait_idle(120)
        per_lead.append((time.perf_counter() - began) * 1000)
    wall, cpu1 = time.perf_counter() - wall0, os.times()
    renderer.close()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    ready, cold = {"customer_name": names[0]}, {"customer_name": names[-1]}
    result = {
        "leads": renderer.leads, "pieces": renderer.pieces, "wall_s": round(wall, 2),
        "leads_per_minute_one_core": round(60 * renderer.leads / cpu, 1) if cpu else None,
        "leads_per_minute_wall": round(60 * renderer.leads / wall, 1),
        "ms_per_lead_p50": round(percentile(per_lead, 0.5), 1), "ms_per_lead_p95": round(percentile(per_lead, 0.95), 1),
        "cpu_ms_per_lead": round(1000 * cpu / max(1, renderer.leads), 1),
        "call_render_ms_prerendered": round(1000 * say_dynamic(targets[0].cache, args.flow, ready, 8000), 1),
        "call_render_ms_live": round(1000 * say_dynamic(targets[0].cache, args.flow, cold, 8000), 1),
        "live_synthesized_on_calls": targets[0].cache.live_synthesized,
        "loadavg": os.getloadavg(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    for key, value in result.items():
        print(f"{key:32} {value}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
