"""The ``voicebot`` command. Thin: parses arguments and calls into the package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from voicebot import __version__, cli_errors
from voicebot.cli_checks import check_port_free, check_switch_reachable, check_text_file, flow_variable_names, parse_variables
from voicebot.cli_errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, UsageError
from voicebot.config import ConfigError, EngineConfig, load_config
from voicebot.dialog.flow import Flow
from voicebot.dialog.loader import load_flow, validate_file
from voicebot.sim.caller import load_caller_actions
from voicebot.sim.flowtest import run_file
from voicebot.sim.script import ScriptError, action_from_command
from voicebot.sim.testcheck import validate_tests
from voicebot.sim.text import AgentSim, CallerAction, Entry, TextCall

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_FLOW = REPO_ROOT / "examples" / "flows" / "lead_screening_en.yaml"
DEMO_SCRIPT = REPO_ROOT / "examples" / "callers" / "demo_en.yaml"
DEMO_CALLER = REPO_ROOT / "examples" / "callers" / "demo_en_audio.yaml"
LABELS = {"bot": "BOT", "caller": "YOU", "dtmf": "KEY", "intent": "  ⇒ intent", "node": "  · node", "tag": "  + tag",
          "level": "  + level", "slot": "  + slot", "notify": "  ✉ notify", "prepare": "  ☎ prepare agent",
          "transfer": "  ☎ transfer", "hangup": "  ✆ hang up", "barge": "  ✂ barge-in:", "ignored": "  (ignored:"}


TESTS_FIX = "flow tests are NAME.tests.yaml beside NAME.yaml (see docs/flows.md, 'Flow tests')"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voicebot`` console script; returns the exit status (docs/cli.md)."""
    words = list(sys.argv[1:] if argv is None else argv)
    end = words.index("--") if "--" in words else len(words)
    debug = "--debug" in words[:end]  # accepted anywhere before `--`, not only before the command
    words = [w for i, w in enumerate(words) if i >= end or w != "--debug"]
    parser = _parser()
    args = parser.parse_args(words)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    return cli_errors.run(lambda: args.run(args), debug)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebot", description="On-premises voice-bot engine for FreeSWITCH.",
                                     epilog="Exit status: 0 ok, 1 a check or test failed, 2 bad input, 3 FreeSWITCH "
                                     "unreachable, 4 the call failed, 5 no audio, 6 a port is taken, 70 internal error "
                                     "(docs/cli.md).")
    parser.add_argument("--version", action="version", version=f"voicebot {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of any error (for bug reports)")
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
    p.add_argument("files", nargs="+", type=Path, metavar="FILE",
                   help="test files, flows with a NAME.tests.yaml beside them, or folders of test files")
    p.add_argument("-v", "--verbose", action="store_true", help="print each case's simulated call")
    p.set_defaults(run=cmd_test_flow)

    p = sub.add_parser("graph", help="draw a flow as SVG, PNG, PDF or Graphviz DOT")
    p.add_argument("flow", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="output file: .svg, .png, .pdf or .dot")
    p.set_defaults(run=cmd_graph)

    p = sub.add_parser("simulate", help="run a whole call with audio through VAD, ASR, dialog and TTS (no FreeSWITCH)")
    p.add_argument("flow", type=Path)
    p.add_argument("--caller", type=Path, required=True, help="caller script (.yaml) or recording (.wav) of the caller's side")
    _media_options(p)
    p.add_argument("--amd", default="off", choices=("off", "hang_up", "leave_message"),
                   help="an outbound campaign call with answering-machine detection and this policy (default off)")
    p.add_argument("--amd-message", default="", metavar="TEXT", help="with --amd leave_message: the message to leave")
    p.add_argument("--amd-message-node", default="", metavar="NODE", help="...or the flow node whose line is the message")
    p.set_defaults(run=cmd_simulate)

    p = sub.add_parser("demo", help="the voice demo: the English example flow against a simulated caller (no FreeSWITCH)")
    p.add_argument("--flow", type=Path, default=EXAMPLE_FLOW)
    p.add_argument("--caller", type=Path, default=None,
                   help=f"caller script or recording (default {DEMO_CALLER.name}; with --text {DEMO_SCRIPT.name})")
    _media_options(p)
    p.add_argument("--text", action="store_true", help="the text-only demo (no audio; --caller must be a script)")
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

    from voicebot.asr import transcribe
    from voicebot.campaign import cli as campaign_cli
    from voicebot.records import cli as records_cli
    from voicebot.tts import voicecli

    voicecli.register(sub)
    records_cli.register(sub)
    transcribe.register(sub)
    campaign_cli.register(sub)
    return parser


def _media_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", type=Path, default=None, help="output folder (default: out/<flow>-<time>)")
    p.add_argument("--rate", type=int, default=8000, choices=(8000, 16000), help="call sample rate in Hz")
    p.add_argument("--realtime", action="store_true", help="pace the call like a real one (default: as fast as possible)")
    p.add_argument("--asr", default="pocketsphinx", help="ASR backend: pocketsphinx (default) or vosk")
    p.add_argument("--asr-model", type=Path, default=None, help="model directory (vosk: required; pocketsphinx: optional)")
    p.add_argument("--vad", default="webrtc", choices=("webrtc", "silero"))
    p.add_argument("--accurate", default="base", metavar="MODEL",
                   help="the accurate pass for nodes with listen.asr accurate/auto: base (default), tiny.en, a "
                   "faster-whisper model directory, or off (every turn keeps the streaming pass's words)")
    p.add_argument("--voice-pack", type=Path, default=None, help="the agent's voice pack (default: the default Piper voice)")
    p.add_argument("--var", action="append", default=[], metavar="K=V", help="set a call variable (repeatable)")
    p.add_argument("--agent-ready-ms", type=int, default=1500, help="simulated agent answers after this (ms)")
    p.add_argument("--no-agent", action="store_true", help="simulate that no agent ever answers")
    p.add_argument("--check-speech", action="store_true",
                   help="after the call, hear every prompt the bot played over the phone line with Whisper (the "
                   "--accurate model, else base) and report its error rate (CER for Mandarin, else WER)")


def _call_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--var", action="append", default=[], metavar="K=V", help="set a call variable (repeatable)")
    p.add_argument("--agent-ready-ms", type=int, default=1500, help="simulated agent answers after this (ms)")
    p.add_argument("--no-agent", action="store_true", help="simulate that no agent ever answers")


def _flow_variables(pairs: list[str], flow: Flow) -> dict[str, str]:
    return parse_variables(pairs, flow_variable_names(flow), f"flow {flow.id}")


# ---------------------------------------------------------------- commands


def cmd_validate(args: argparse.Namespace) -> int:
    """Print every problem in the given flows; 1 when any is an error."""
    errors = warnings = checked = 0
    for path in _expand(args.files):
        checked += 1
        if path.name.endswith(".tests.yaml"):
            try:
                check_text_file(path, "flow test file", TESTS_FIX)
            except UsageError as exc:
                print(f"{exc}", file=sys.stderr)
                errors += 1
                continue
            problems = validate_tests(path)[0].problems
        else:
            problems = validate_file(path)
        for problem in problems:
            print(problem, file=sys.stderr)
            errors += problem.severity == "error"
            warnings += problem.severity == "warning"
    print(f"{checked} file(s) checked: {errors} error(s), {warnings} warning(s)")
    return EXIT_FAILED if errors else EXIT_OK


def _expand(paths: list[Path]) -> list[Path]:
    """Files as given; a folder becomes its *.yaml and *.yml files (subfolders too), and must hold some."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.y*ml") if p.suffix in (".yaml", ".yml"))
            if not found:
                raise UsageError(f"{path}: no flow files found in this folder (looked for *.yaml and *.yml, subfolders "
                                 "included); give flow files or a folder that holds them")
            out += found
        else:
            out.append(path)
    return out


def cmd_chat(args: argparse.Namespace) -> int:
    """Interactive (or scripted) text conversation with a flow."""
    flow = load_flow(args.flow)
    variables = _flow_variables(args.var, flow)
    actions = load_caller_actions(args.script) if args.script else None
    agent = AgentSim(None if args.no_agent else args.agent_ready_ms)
    call = TextCall(flow, variables, agent=agent)
    _print_entries(call.start())
    if actions is not None:
        _play(call, actions)
    else:
        _repl(call)
    _print_entries(call.finish())
    _print_outcome(call)
    return EXIT_OK


def _play(call: TextCall, actions: list[CallerAction]) -> None:
    for action in actions:
        if call.ended:
            break
        _print_entries(call.act(action))


def _repl(call: TextCall, stream: TextIO | None = None) -> None:
    """Read caller lines until the call ends (at once after a hang-up node, with no extra line), EOF or /quit."""
    stream = stream or sys.stdin
    print("Type what the caller says. Commands: /barge [ms] text, /dtmf KEY, /silence, /wait MS, /hangup, /quit")
    _print_entries(call.run_unattended())
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
        _print_entries(call.run_unattended())


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
    files = [test_file for path in args.files for test_file in _tests_files(path)]
    passed = failed = 0
    for test_file in files:
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
    return EXIT_FAILED if failed or not passed else EXIT_OK


def _tests_files(path: Path) -> list[Path]:
    """The flow-test files a ``test-flow`` argument means, each checked readable (UsageError otherwise)."""
    if path.is_dir():
        found = sorted(path.glob("*.tests.yaml"))
        if not found:
            raise UsageError(f"{path}: no flow tests in this folder (looked for *.tests.yaml); {TESTS_FIX}")
        for test_file in found:
            check_text_file(test_file, "flow test file", TESTS_FIX)
        return found
    if path.name.endswith(".tests.yaml"):
        test_file = path
    elif path.suffix in (".yaml", ".yml"):
        test_file = path.with_name(path.stem + ".tests.yaml")
        if not path.exists():
            raise UsageError(f"{path}: no such flow file; check the path")
        if not test_file.exists():
            raise UsageError(f"{path}: no flow tests beside it (looked for {test_file}); write {test_file.name} "
                             "(see docs/flows.md, 'Flow tests') or name a tests file")
    else:
        raise UsageError(f"{path}: not a flow test file (the name must end in .tests.yaml) nor a flow (.yaml); {TESTS_FIX}")
    check_text_file(test_file, "flow test file", TESTS_FIX)
    return [test_file]


def cmd_graph(args: argparse.Namespace) -> int:
    """Draw a flow diagram."""
    from voicebot.dialog.graph import GraphvizError, UnsupportedFormat, render

    flow = load_flow(args.flow)
    try:
        out = render(flow, args.output)
    except UnsupportedFormat as exc:
        print(f"voicebot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except GraphvizError as exc:
        print(f"voicebot: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {out}")
    return EXIT_OK


def _read_config(path: Path) -> EngineConfig:
    """The engine config at ``path``, the file checked first (ConfigError/UsageError naming it otherwise)."""
    if not path.exists():
        raise ConfigError(f"{path}: no such config file; write one (see README.md, 'Running it on FreeSWITCH') "
                          "or name it with --config")
    check_text_file(path, "config file", "write the engine's settings in it as YAML (see README.md, "
                    "'Running it on FreeSWITCH')")
    return load_config(path)


def _engine_config(path: Path | None, flow: Path | None) -> EngineConfig:
    config = _read_config(path) if path is not None else EngineConfig(default_flow=EXAMPLE_FLOW)
    if flow is not None:
        config = replace(config, default_flow=flow, flows_by_destination={})
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    """The engine, until SIGTERM/SIGINT."""
    from voicebot.serving import run_engine

    config = _read_config(args.config)
    if config.default_flow is None:
        raise UsageError(f"{args.config}: no flow to run; set flows.default in it")
    _check_ports(config)  # before the models load: a taken port is reported in a second, not after 12
    return run_engine(config)


def _check_ports(config: EngineConfig) -> None:
    check_port_free(config.outbound_host, config.outbound_port, "outbound.port")
    check_port_free(config.http_host, config.http_port, "http.port")


def cmd_call(args: argparse.Namespace) -> int:
    """A test call: originate to the destination, run the flow, print the live transcript."""
    if args.caller is not None:
        return _call_with_caller(args)
    from voicebot.serving import place_test_call
    from voicebot.sim.run import print_live

    config = replace(_engine_config(args.config, args.flow), outbound_port=0, http_port=0)
    if config.default_flow is None:
        raise UsageError(f"{args.config}: no flow to run; set flows.default in it, or give --flow FLOW")
    variables = _flow_variables(args.var, load_flow(config.default_flow))
    why = check_switch_reachable(config.esl_host, config.esl_port)  # before the prompts render
    if why is not None:
        print(f"voicebot: FreeSWITCH is not reachable at {config.esl_host}:{config.esl_port}: {why}; start it, or set "
              "freeswitch.host/port in --config (ESL: event_socket.conf.xml)", file=sys.stderr)
        return EXIT_UNREACHABLE
    status, summary = place_test_call(config, args.destination, variables, print_live)
    print(f"voicebot: {summary}" if status else summary, file=sys.stderr if status else sys.stdout)
    return status


def _call_with_caller(args: argparse.Namespace) -> int:
    """``call DEST --caller FILE``: a loopback call through the dialplan to the running engine (voicebot.esl.testcall)."""
    import time

    from voicebot.esl.testcall import CallOptions, caller_ports, run_caller_call

    if args.flow is not None:
        raise UsageError("--flow does not apply with --caller: the engine that answers picks the flow "
                         "(flows.by_destination in its config); leave out --flow")
    config = _read_config(args.config) if args.config is not None else EngineConfig()
    out = args.out or Path("out") / f"call-{time.strftime('%Y%m%d-%H%M%S')}"
    options = CallOptions(args.destination, args.caller, out, esl_host=config.esl_host, esl_port=config.esl_port,
                          esl_password=config.esl_password, context=args.context, variables=parse_variables(args.var, None),
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


AUDIO_ONLY = {"out": None, "realtime": False, "asr": "pocketsphinx", "asr_model": None, "vad": "webrtc",
              "voice_pack": None, "rate": 8000, "accurate": "base", "check_speech": False}


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default: the English example flow against a simulated caller, with audio."""
    if args.text:
        given = [name for name, default in AUDIO_ONLY.items() if getattr(args, name) != default]
        if given:
            raise UsageError(f"demo --text: --{given[0].replace('_', '-')} applies to the voice demo only; "
                             "leave it out, or drop --text")
        script = args.caller or DEMO_SCRIPT
        load_caller_actions(script)  # a bad --caller is reported before anything is printed
        print(f"voicebot {__version__} demo: flow {args.flow.name}, caller script {script.name} (text simulation)")
        args.var, args.script = args.var or ["customer_name=Alex"], script
        return cmd_chat(args)
    args.caller = args.caller or DEMO_CALLER
    args.var = args.var or ["customer_name=Alex"]
    return cmd_simulate(args)


if __name__ == "__main__":
    sys.exit(main())
