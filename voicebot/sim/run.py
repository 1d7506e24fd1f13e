"""``voicebot simulate`` and ``voicebot demo``: load the pipeline, run one call, write and print the results."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from voicebot.asr.registry import AsrConfig
from voicebot.dialog.loader import load_flow
from voicebot.pipeline import Pipeline, PipelineConfig, load_pipeline
from voicebot.sim.audio import AgentModel, run_call
from voicebot.sim.caller import CallerScript, CallerTurn, SimCaller, load_caller_script, raw_or_wav
from voicebot.sim.report import latency_table, write_outputs

LIVE_KINDS = ("play", "final", "pause", "stop", "resume", "handoff", "hangup", "dtmf")


def simulate(args: argparse.Namespace) -> int:
    """Run the call described by ``args`` (see the simulate/demo options in voicebot.cli)."""
    flow = load_flow(args.flow)
    script = _caller_script(args.caller)
    out = args.out or Path("out") / f"{flow.id}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"voicebot: loading models for {flow.id} at {args.rate} Hz (ASR {args.asr}, VAD {args.vad})...", flush=True)
    pipeline = load_pipeline(flow, _config(args))
    report = pipeline.render_report
    print(f"voicebot: ready in {pipeline.load_seconds:.1f} s; {report.count} prompts rendered "
          f"({report.synthesized} synthesized, {report.from_recordings} recorded, {report.from_disk} from cache)", flush=True)
    result = _run(pipeline, script, args)
    paths = write_outputs(result, out)
    print()
    print(latency_table(result))
    outcome = result.session.machine.outcome
    print(f"\noutcome: disposition={outcome.disposition} level={outcome.level or '-'} "
          f"tags={','.join(outcome.tags) or '-'} path={' > '.join(outcome.path)}")
    print(f"call of {result.duration_s:.1f} s simulated in {result.wall_s:.1f} s; outputs in {out}/: "
          + ", ".join(p.name for p in paths))
    return 0


def _config(args: argparse.Namespace) -> PipelineConfig:
    cache_dir = Path(".voicebot-cache") / "prompts"
    return PipelineConfig(rate=args.rate, vad=args.vad, vad_options={} if args.vad == "silero" else {"aggressiveness": 2},
                          asr=AsrConfig(backend=args.asr, model_path=args.asr_model),
                          voice_pack=args.voice_pack, cache_dir=cache_dir)


def _caller_script(path: Path) -> CallerScript:
    if path.suffix.lower() in (".wav", ".raw"):
        return CallerScript((CallerTurn("wav", path=str(path)),), gap_ms=0, free_running=True)
    return load_caller_script(path)


def _run(pipeline: Pipeline, script: CallerScript, args: argparse.Namespace) -> Any:
    agent = AgentModel(None if args.no_agent else args.agent_ready_ms)
    session = pipeline.session(charge_compute=not args.realtime, handoff=agent)
    session.timeline.listener = print_live
    cache, rate = pipeline.cache, args.rate
    caller = SimCaller(script, rate, synth=lambda text, r: cache.synthesize(text, r), read_audio=raw_or_wav)
    variables = dict(pair.split("=", 1) for pair in args.var if "=" in pair)
    return run_call(session, caller, variables=variables, realtime=args.realtime)


def print_live(entry: dict[str, Any]) -> None:
    kind, t = entry["kind"], f"[{entry['t']:7.2f}s]"
    if kind == "play":
        first = entry.get("tts_first_ms")
        note = "" if entry.get("cached") else "  (stopped before its audio was ready)" if first is None \
            else f"  (synthesized: first audio after {first} ms)"
        print(f"{t} BOT     {entry['text']}{note}", flush=True)
    elif kind == "final" and entry["text"]:
        print(f"{t} CALLER  {entry['text']}   (ASR final {entry['compute_ms']} ms)", flush=True)
    elif kind in ("pause", "stop", "resume", "handoff", "hangup", "dtmf"):
        details = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("t", "kind", "play_id"))
        print(f"{t}   · {kind} {details}".rstrip(), flush=True)
    sys.stdout.flush()
