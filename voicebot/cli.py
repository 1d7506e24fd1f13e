"""The ``voicebot`` command. Thin: parses arguments and calls into the package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

import yaml

from voicebot import __version__, yamlutil
from voicebot.asr.base import ModelError
from voicebot.config import ConfigError, EngineConfig, load_config
from voicebot.dialog.loader import FlowError, load_flow, validate_file
from voicebot.sim.caller import CallerScriptError
from voicebot.sim.flowtest import FlowTestError, run_file
from voicebot.sim.script import ScriptError, action_from_command, action_from_item
from voicebot.sim.testcheck import validate_tests
from voicebot.sim.text import AgentSim, Entry, TextCall
from voicebot.tts.base import VoiceError

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_FLOW = REPO_ROOT / "examples" / "flows" / "lead_screening_en.yaml"
DEMO_SCRIPT = REPO_ROOT / "examples" / "callers" / "demo_en.yaml"
DEMO_CALLER = REPO_ROOT / "examples" / "callers" / "demo_en_audio.yaml"
LABELS = {"bot": "BOT", "caller": "YOU", "dtmf": "KEY", "intent": "  ⇒ intent", "node": "  · node", "tag": "  + tag",
          "level": "  + level", "slot": "  + slot", "notify": "  ✉ notify", "prepare": "  ☎ prepare agent",
          "transfer": "  ☎ transfer", "hangup": "  ✆ hang up", "barge": "  ✂ barge-in:", "ignored": "  (ignored:"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voicebot`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except (FlowError, FlowTestError, ScriptError, ModelError, VoiceError, CallerScriptError, ConfigError) as exc:
        print(f"voicebot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot", description="On-premises voice-bot engine for FreeSWITCH.")
    parser.add_argument("--version", action="version", version=f"voicebot {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    p = sub.add_parser("validate", help="check flow files (and flow test files); every problem with file:line:col")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.set_defaults(run=cmd_validate)

    p = sub.add_parser("chat", help="talk to a flow in the terminal, as the caller")
    p.add_argument("flow", type=Path)
    _call_options(p)
    p.add_argument("--script", type=Path, help="YAML caller script to replay instead of typing")
    p.set_defaults(run=cmd_chat)

    p = sub.add_parser("test-flow", help="run flow tests (NAME.tests.yaml beside a flow)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="test files, or flows with a NAME.tests.yaml beside them")
    p.add_argument("-v", "--verbose", action="store_true", help="print each case's simulated call")
    p.set_defaults(run=cmd_test_flow)

    p = sub.add_parser("graph", help="draw a flow as SVG, PNG or Graphviz DOT")
    p.add_argument("flow", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="output file: .svg, .png or .dot")
    p.set_defaults(run=cmd_graph)

    p = sub.add_parser("simulate", help="run a whole call with audio through VAD, ASR, dialog and TTS (no FreeSWITCH)")
    p.add_argument("flow", type=Path)
    p.add_argument("--caller", type=Path, required=True, help="caller script (.yaml) or recording (.wav) of the caller's side")
    _media_options(p)
    p.set_defaults(run=cmd_simulate)

    p = sub.add_parser("demo", help="the voice demo: the English example flow against a simulated caller (no FreeSWITCH)")
    p.add_argument("--flow", type=Path, default=EXAMPLE_FLOW)
    p.add_argument("--caller", type=Path, default=DEMO_CALLER)
    _media_options(p)
    p.add_argument("--text", action="store_true", help="the text-only demo (no audio)")
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("serve", help="run the engine on FreeSWITCH (outbound socket server, ESL, metrics)")
    p.add_argument("--config", type=Path, default=Path("voicebot.yaml"), help="engine configuration (default voicebot.yaml)")
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("call", help="place a test call over ESL and show the live transcript",
                       description="Without --caller: an engine of its own answers a call originated to DEST. With "
                       "--caller: a loopback call to DEST in --context goes through the dialplan to the running engine, "
                       "and the other leg plays the caller and records the bot. Exit status: 0 the call ran, "
                       "3 FreeSWITCH unreachable, 4 the originate failed, 5 no audio within 5 s.")
    p.add_argument("destination", help="a FreeSWITCH dial string (user/1001, loopback/7001/voicebot); "
                   "with --caller, an extension such as 7000")
    p.add_argument("--config", type=Path, default=None, help="engine configuration (default: built-in loopback defaults)")
    p.add_argument("--flow", type=Path, default=None, help="the flow to run (default: the config's, else the example)")
    p.add_argument("--var", action="append", default=[], metavar="K=V", help="set a call variable (repeatable)")
    p.add_argument("--caller", type=Path, default=None,
                   help="play this caller (.wav, or a caller script .yaml) into a loopback call through the dialplan")
    p.add_argument("-o", "--out", type=Path, default=None, help="with --caller: output folder (default: out/call-<time>)")
    p.add_argument("--context", default="voicebot", help="with --caller: the dialplan context of DEST (default voicebot)")
    p.add_argument("--max-s", type=float, default=120.0, help="with --caller: end the call after this (default 120 s)")
    p.set_defaults(run=cmd_call)

    from voicebot.records import cli as records_cli
    from voicebot.tts import voicecli

    voicecli.register(sub)
    records_cli.register(sub)
    return parser


def _media_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", type=Path, default=None, help="output folder (default: out/<flow>-<time>)")
    p.add_argument("--rate", type=int, default=8000, choices=(8000, 16000), help="call sample rate in Hz")
    p.add_argument("--realtime", action="store_true", help="pace the call like a real one (default: as fast as possible)")
    p.add_argument("--asr", default="pocketsphinx", help="ASR backend: pocketsphinx (default) or vosk")
    p.add_argument("--asr-model", type=Path, default=None, help="model directory (vosk: required; pocketsphinx: optional)")
    p.add_argument("--vad", default="webrtc", choices=("webrtc", "silero"))
    p.add_argument("--voice-pack", type=Path, default=None, help="the agent's voice pack (default: the default Piper voice)")
    p.add_argument("--var", action="append", default=[], metavar="K=V", help="set a call variable (repeatable)")
    p.add_argument("--agent-ready-ms", type=int, default=1500, help="simulated agent answers after this (ms)")
    p.add_argument("--no-agent", action="store_true", help="simulate that no agent ever answers")


def _call_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--var", action="append", default=[], metavar="K=V", help="set a call variable (repeatable)")
    p.add_argument("--agent-ready-ms", type=int, default=1500, help="simulated agent answers after this (ms)")
    p.add_argument("--no-agent", action="store_true", help="simulate that no agent ever answers")


def _variables(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ScriptError(f"--var expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value
    return out


# ---------------------------------------------------------------- commands


def cmd_validate(args: argparse.Namespace) -> int:
    """Print every problem in the given flows; 1 when any is an error."""
    errors = warnings = checked = 0
    for path in _expand(args.files):
        checked += 1
        problems = validate_tests(path)[0].problems if path.name.endswith(".tests.yaml") else validate_file(path)
        for problem in problems:
            print(problem, file=sys.stderr)
            errors += problem.severity == "error"
            warnings += problem.severity == "warning"
    print(f"{checked} file(s) checked: {errors} error(s), {warnings} warning(s)")
    return 1 if errors or not checked else 0


def _expand(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.rglob("*.y*ml") if p.suffix in (".yaml", ".yml"))
        else:
            out.append(path)
    return out


def cmd_chat(args: argparse.Namespace) -> int:
    """Interactive (or scripted) text conversation with a flow."""
    flow = load_flow(args.flow)
    agent = AgentSim(None if args.no_agent else args.agent_ready_ms)
    call = TextCall(flow, _variables(args.var), agent=agent)
    _print_entries(call.start())
    if args.script:
        for action in _load_script(args.script):
            if call.ended:
                break
            _print_entries(call.act(action))
    else:
        _repl(call)
    _print_entries(call.finish())
    _print_outcome(call)
    return 0


def _repl(call: TextCall, stream: TextIO = sys.stdin) -> None:
    print("Type what the caller says. Commands: /barge [ms] text, /dtmf KEY, /silence, /wait MS, /hangup, /quit")
    while not call.ended:
        print("you> ", end="", flush=True)
        line = stream.readline()
        if not line or line.strip() in ("/quit", "/exit"):
            return
        if not line.strip():
            continue
        try:
            action = action_from_command(line)
        except ScriptError as exc:
            print(f"  ! {exc}")
            continue
        _print_entries([e for e in call.act(action) if e.kind != "caller"])


def _load_script(path: Path) -> list:  # type: ignore[type-arg]
    try:
        items = yamlutil.load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScriptError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(items, list):
        raise ScriptError(f"{path}: a caller script is a YAML list of actions")
    return [action_from_item(item, f"{path}: item {i + 1}") for i, item in enumerate(items)]


def _print_entries(entries: list[Entry]) -> None:
    for entry in entries:
        if entry.kind == "listen":
            continue
        label = LABELS.get(entry.kind, entry.kind)
        suffix = ")" if entry.kind == "ignored" else ""
        print(f"[{entry.t:7.2f}s] {label} {entry.text}{suffix}")


def _print_outcome(call: TextCall) -> None:
    o = call.machine.outcome
    print(f"outcome: disposition={o.disposition} level={o.level or '-'} tags={','.join(o.tags) or '-'} "
          f"slots={o.slots or '-'} path={' > '.join(o.path)}")


def cmd_test_flow(args: argparse.Namespace) -> int:
    """Run flow test files; 1 when any case fails."""
    passed = failed = 0
    for path in args.files:
        test_file = path if path.name.endswith(".tests.yaml") else path.with_name(path.stem + ".tests.yaml")
        for result in run_file(test_file):
            mark = "PASS" if result.passed else "FAIL"
            print(f"{mark} {test_file}:{result.case.line} {result.case.name}")
            if args.verbose or not result.passed:
                _print_entries(result.log)
            for failure in result.failures:
                print(f"     ✗ {failure}")
            passed += result.passed
            failed += not result.passed
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


def cmd_graph(args: argparse.Namespace) -> int:
    """Draw a flow diagram."""
    from voicebot.dialog.graph import GraphvizMissing, render

    flow = load_flow(args.flow)
    try:
        out = render(flow, args.output)
    except GraphvizMissing as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


def _engine_config(path: Path | None, flow: Path | None) -> EngineConfig:
    config = load_config(path) if path is not None else EngineConfig(default_flow=EXAMPLE_FLOW)
    if flow is not None:
        config = replace(config, default_flow=flow, flows_by_destination={})
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    """The engine, until SIGTERM/SIGINT."""
    from voicebot.engine import run_engine

    if not args.config.exists():
        raise ConfigError(f"{args.config}: no such config file (see freeswitch_conf/README.md and voicebot/config.py)")
    return run_engine(load_config(args.config))


def cmd_call(args: argparse.Namespace) -> int:
    """A test call: originate to the destination, run the flow, print the live transcript."""
    if args.caller is not None:
        return _call_with_caller(args)
    from voicebot.engine import place_test_call
    from voicebot.sim.run import print_live

    config = replace(_engine_config(args.config, args.flow), outbound_port=0, http_port=0)
    status, summary = place_test_call(config, args.destination, _variables(args.var), print_live)
    print(summary, file=sys.stderr if status else sys.stdout)
    return status


def _call_with_caller(args: argparse.Namespace) -> int:
    """``call DEST --caller FILE``: a loopback call through the dialplan to the running engine (voicebot.esl.testcall)."""
    import time

    from voicebot.esl.testcall import CallOptions, caller_ports, run_caller_call

    if args.flow is not None:
        print("voicebot: --flow does not apply with --caller: the engine that answers picks the flow "
              "(flows.by_destination in its config)", file=sys.stderr)
        return 2
    if args.config is not None and not args.config.exists():
        raise ConfigError(f"{args.config}: no such config file (the engine's voicebot.yaml names FreeSWITCH's ESL)")
    config = load_config(args.config) if args.config is not None else EngineConfig()
    out = args.out or Path("out") / f"call-{time.strftime('%Y%m%d-%H%M%S')}"
    options = CallOptions(args.destination, args.caller, out, esl_host=config.esl_host, esl_port=config.esl_port,
                          esl_password=config.esl_password, context=args.context, variables=_variables(args.var),
                          media_ip=config.media_ip, media_ports=caller_ports(config.media_ports),
                          cache_dir=config.cache_dir / "prompts", records_db=config.records_db, max_s=args.max_s)
    report = run_caller_call(options)
    if report.status:
        print(f"voicebot: {report.message}", file=sys.stderr)
        return report.status
    print(report.message)
    if report.record is not None:
        r = report.record
        print(f"engine: call {r.call_id}: disposition={r.disposition} level={r.level or '-'} path={' > '.join(r.path)}")
    print(f"wrote {', '.join(str(p) for p in report.files)} (call.wav: caller left, bot right, {report.rate} Hz)")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """A whole call with audio through the real pipeline; writes transcript, latencies, WAV, timeline."""
    from voicebot.sim.run import simulate

    return simulate(args)


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default: the English example flow against a simulated caller, with audio."""
    if args.text:
        print(f"voicebot {__version__} demo: flow {args.flow.name}, caller script {DEMO_SCRIPT.name} (text simulation)")
        args.var, args.no_agent, args.agent_ready_ms, args.script = ["customer_name=Alex"], False, 1500, DEMO_SCRIPT
        return cmd_chat(args)
    args.var = args.var or ["customer_name=Alex"]
    return cmd_simulate(args)


if __name__ == "__main__":
    sys.exit(main())
