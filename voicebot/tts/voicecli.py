"""``voicebot voice ...``: prepare and check an agent's voice pack.

- ``voice script FLOW [-o DIR]``: what the agent records (CSV + Markdown);
- ``voice import DIR PACK [--flow FLOW]``: bring raw takes into the pack, with a quality report;
- ``voice check PACK [--flow FLOW]``: would a handoff to the agent be noticed?
- ``voice say PACK "text" -o out.wav [--rate 8000]``: hear the pack;
- ``voice train PACK [--heldout ID ...] [--seed N] [--method shift|gmm|mlpg]``: voice conversion from the pack's
  voice to the agent's (exit 0 enabled, 1 refused by the quality guard, 2 bad input).

Wired into the top-level parser with ``voicecli.register(subparsers)``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.asr.base import ModelError
from voicebot.audio.wav import write_wav
from voicebot.cli_checks import parse_variables
from voicebot.cli_errors import EXIT_FAILED, EXIT_USAGE, UsageError
from voicebot.dialog.flow import Flow
from voicebot.dialog.loader import FlowError, load_flow
from voicebot.tts.base import VoiceError
from voicebot.tts.pack import ImportResult, VoicePack, import_recording, load_pack, valid_prompt_id
from voicebot.tts.render import TEMPLATE, PromptCache, PromptSpec, fragment_prompts, group_by_text, static_prompts

TRAIN_METHODS = ("shift", "gmm", "mlpg")  # = voicebot.tts.vc.train.METHODS (not imported here: it loads the vocoder's code)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``voice`` command group to ``subparsers`` (from ``parser.add_subparsers()``)."""
    voice: argparse.ArgumentParser = subparsers.add_parser(
        "voice", help="agent voice packs: recording script, import, similarity check, say")
    sub = voice.add_subparsers(metavar="VOICE_COMMAND")
    voice.set_defaults(run=lambda args: _usage(voice))

    p = sub.add_parser("script", help="the prompts the agent should record (CSV and Markdown)")
    p.add_argument("flow", type=Path, metavar="FLOW")
    p.add_argument("-o", "--output", type=Path, metavar="DIR",
                   help="write DIR/script.csv and DIR/script.md (default: Markdown to stdout)")
    p.set_defaults(run=cmd_script)

    p = sub.add_parser("import", help="trim, level and resample raw recordings (named <prompt_id>.wav) into a pack")
    p.add_argument("source", type=Path, metavar="DIR")
    p.add_argument("pack", type=Path, metavar="PACK")
    p.add_argument("--flow", type=Path, help="check names against this flow and take the prompts' text from it")
    p.set_defaults(run=cmd_import)

    p = sub.add_parser("check", help="speaker similarity of the pack's recordings and neural voice to the agent")
    p.add_argument("pack", type=Path, metavar="PACK")
    p.add_argument("--flow", type=Path, help="synthesize this flow's prompts for the neural-voice score")
    p.add_argument("--no-synth", action="store_true", help="score the recordings only")
    p.add_argument("--max-synth", type=int, default=6, help="prompts the neural voice says for its score (default 6)")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("say", help="speak text with a pack (recordings where they match, else the neural voice); "
                       "without PACK, the default voice")
    p.add_argument("words", nargs="+", metavar="[PACK] TEXT", help="the voice pack directory (optional), then the text")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .wav")
    p.add_argument("--rate", type=int, default=8000, help="sample rate of the output (Hz, default 8000: the phone line)")
    p.add_argument("--var", action="append", default=[], metavar="K=V", help="value for {{K}} in the text (repeatable)")
    p.set_defaults(run=cmd_say)

    p = sub.add_parser("train", help="train a conversion of the pack's neural voice to the agent's, from its recorded prompts")
    p.add_argument("pack", type=Path, metavar="PACK")
    p.add_argument("--heldout", action="append", default=[], metavar="ID",
                   help="a prompt id never trained on, measured after (repeatable; default: 20%% chosen by --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out choice and the mapping (default 0)")
    p.add_argument("--method", choices=TRAIN_METHODS, default=TRAIN_METHODS[0],
                   help="spectral mapping: shift (default; the stock voice's frames moved by a per-class offset: keeps "
                        "the words), gmm (joint GMM per frame: closer to the agent, blurs consonants), mlpg (joint GMM "
                        "with deltas and trajectory generation)")
    p.add_argument("--components", type=int, default=0,
                   help="GMM components of the spectral mapping (default: 16 for shift, 4 for gmm and mlpg)")
    p.set_defaults(run=cmd_train)
    return voice


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _fail(exc: Exception) -> int:
    print(f"voicebot: {exc}", file=sys.stderr)
    return EXIT_USAGE


# --------------------------------------------------------------------------- script


def cmd_script(args: argparse.Namespace) -> int:
    """``voice script``: the recording script of a flow."""
    try:
        flow = load_flow(args.flow)
    except FlowError as e:
        return _fail(e)
    rows = script_rows(flow)
    markdown = script_markdown(flow, rows)
    if args.output is None:
        sys.stdout.write(markdown)
        return 0
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "script.csv").write_text(script_csv(rows), encoding="utf-8")
    (args.output / "script.md").write_text(markdown, encoding="utf-8")
    counts = {k: sum(r["kind"] == k for r in rows) for k in ("record", "fragment", "dynamic")}
    print(f"wrote {args.output / 'script.csv'} and script.md: {counts['record']} prompts and {counts['fragment']} "
          f"fragments to record, {counts['dynamic']} dynamic prompts")
    return 0


def script_rows(flow: Flow) -> list[dict[str, str]]:
    """One row per thing to record (same text once) and per dynamic prompt: prompt_id, kind, node, text, variables, also."""
    specs = static_prompts(flow)
    fixed = [s for s in specs if not s.dynamic]
    dynamic = [s for s in specs if s.dynamic]
    rows = [_row(s, "record", also) for s, also in group_by_text(fixed)]
    rows += [_row(s, "fragment", also) for s, also in group_by_text(f for d in dynamic for f in fragment_prompts(d))]
    return rows + [_row(s, "dynamic", ()) for s in dynamic]


def _row(spec: PromptSpec, kind: str, also: tuple[str, ...]) -> dict[str, str]:
    return {"prompt_id": spec.prompt_id, "kind": kind, "node": spec.node, "text": spec.text,
            "variables": " ".join(spec.template_vars), "also": " ".join(also)}


def script_csv(rows: list[dict[str, str]]) -> str:
    """The rows as CSV with a header line."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["prompt_id", "kind", "node", "text", "variables", "also"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def script_markdown(flow: Flow, rows: list[dict[str, str]]) -> str:
    """The rows as a Markdown script for the agent."""
    out = [f"# Recording script: {flow.id} ({flow.language})", "",
           "Record each line as its own file named `<id>.wav` (16 kHz or more, quiet room, ~0.5 s of silence "
           "before and after), as you would say it on a call. Then: `voicebot voice import DIR PACK --flow FLOW`.", ""]
    same = "| id | text | same text also used by |"
    sections = (("record", "Prompts", same, "also"),
                ("fragment", "Fragments around variables (the value is synthesized between them)", same, "also"),
                ("dynamic", "Dynamic prompts (not recorded whole; for reference)", "| id | text | variables |", "variables"))
    for kind, title, header, extra in sections:
        chosen = [r for r in rows if r["kind"] == kind]
        out += [f"## {title} ({len(chosen)})", "", header, "|---|---|---|"]
        out += [f"| `{r['prompt_id']}` | {_cell(r['text'])} | {_cell(r[extra])} |" for r in chosen]
        out.append("")
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


# --------------------------------------------------------------------------- import


def cmd_import(args: argparse.Namespace) -> int:
    """``voice import``: every file in DIR is imported or reported, never skipped silently."""
    try:
        pack = load_pack(args.pack)
        flow = load_flow(args.flow) if args.flow else None
    except (VoiceError, FlowError) as e:
        return _fail(e)
    if not args.source.is_dir():
        return _fail(VoiceError(f"{args.source}: not a directory of recordings"))
    texts, dynamic = _flow_texts(flow)
    counts = {"imported": 0, "flagged": 0, "skipped": 0, "failed": 0}
    for path in sorted(args.source.iterdir()):
        outcome = _import_one(path, pack, texts, dynamic, flow)
        if outcome is None:
            continue
        if isinstance(outcome, str):
            print(outcome)
            counts["failed" if ": failed:" in outcome else "skipped"] += 1
            continue
        print(outcome.line())
        counts["imported"] += outcome.written
        counts["flagged"] += bool(outcome.flags)
    if flow is not None:
        _print_missing(load_pack(args.pack), flow)
    print(", ".join(f"{k} {v}" for k, v in counts.items()))
    return 1 if counts["failed"] else 0


def _flow_texts(flow: Flow | None) -> tuple[dict[str, str], dict[str, PromptSpec]]:
    """(prompt id -> text of everything recordable, dynamic prompt id -> spec)."""
    if flow is None:
        return {}, {}
    specs = static_prompts(flow)
    texts = {s.prompt_id: s.text for s in specs if not s.dynamic}
    texts.update({f.prompt_id: f.text for s in specs if s.dynamic for f in fragment_prompts(s)})
    return texts, {s.prompt_id: s for s in specs if s.dynamic}


def _import_one(path: Path, pack: VoicePack, texts: dict[str, str], dynamic: dict[str, PromptSpec],
                flow: Flow | None) -> ImportResult | str | None:
    """The result, a one-line reason it was not imported, or None for a transcript beside its .wav."""
    if path.suffix.lower() == ".txt" and path.with_suffix(".wav").is_file():
        return None
    if path.suffix.lower() != ".wav" or not path.is_file():
        return f"{path.name}: skipped: not a .wav recording"
    pid = path.stem
    if not valid_prompt_id(pid):
        return f"{path.name}: skipped: '{pid}' is not a prompt id (letters, digits, _ . -)"
    if pid in dynamic:
        parts = ", ".join(f.prompt_id for f in fragment_prompts(dynamic[pid]))
        return f"{path.name}: skipped: {pid} has variables {dynamic[pid].template_vars}; record its parts instead: {parts}"
    transcript = path.with_suffix(".txt")
    text = texts.get(pid) or (transcript.read_text(encoding="utf-8").strip() if transcript.is_file() else "")
    try:
        result = import_recording(path, pack, pid, text)
    except (ValueError, OSError) as e:
        return f"{path.name}: failed: {e}"
    if flow is not None and pid not in texts:
        return dataclasses.replace(result, flags=(*result.flags, f"not a prompt of flow {flow.id}"))
    return result


def _print_missing(pack: VoicePack, flow: Flow) -> None:
    """List the flow's prompts with no recording yet (a same-text recording counts)."""
    have = set(pack.prompt_ids())
    specs = static_prompts(flow)
    wanted = group_by_text([s for s in specs if not s.dynamic] + [f for s in specs if s.dynamic for f in fragment_prompts(s)])
    missing = [s.prompt_id for s, also in wanted if not have & {s.prompt_id, *also} and not pack.prompt_for_text(s.text)]
    if missing:
        print(f"still to record ({len(missing)}; synthesized until then): {', '.join(missing)}")


# --------------------------------------------------------------------------- check and say


def cmd_check(args: argparse.Namespace) -> int:
    """``voice check``: similarity report and verdicts."""
    from voicebot.tts.speaker import check_pack

    try:
        pack = load_pack(args.pack)
        flow = load_flow(args.flow) if args.flow else None
        report = check_pack(pack, flow, synthesize=not args.no_synth, max_synth=args.max_synth)
    except (VoiceError, FlowError) as e:
        return _fail(e)
    for warning in pack.warnings:
        print(f"warning: {warning}")
    print("\n".join(report.lines()))
    return 0


def cmd_say(args: argparse.Namespace) -> int:
    """``voice say``: render text (``{{vars}}`` allowed) to a WAV, with a pack or the default voice."""
    from voicebot.pipeline import default_pack

    if len(args.words) > 2:
        return _fail(UsageError(f"voice say: {len(args.words)} words where [PACK] TEXT was expected; "
                                "quote the text: voicebot voice say PACK \"text\" -o out.wav"))
    pack_dir, text = (Path(args.words[0]), args.words[1]) if len(args.words) == 2 else (None, args.words[0])
    try:
        values = parse_variables(args.var, TEMPLATE.findall(text), "the text")
        pack = load_pack(pack_dir) if pack_dir is not None else default_pack("en")
        cache = PromptCache(pack)
        audio = np.concatenate(list(cache.render_dynamic(text, values, args.rate)))
    except (VoiceError, ValueError) as e:
        return _fail(e)
    write_wav(args.output, audio, args.rate)
    print(f"wrote {args.output}: {len(audio) / args.rate:.2f} s at {args.rate} Hz "
          f"({cache.synth_count + cache.live_synth_count} piece(s) synthesized)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``voice train``: fit, measure on held-out prompts, enable the model only when the guard passes."""
    from voicebot.tts.vc.train import TrainOptions, save, train_pack

    if not 0 <= args.components <= 64:
        return _fail(UsageError(f"--components {args.components}: must be from 1 to 64 (0 or left out: the method's default)"))
    try:
        pack = load_pack(args.pack)
        options = TrainOptions(seed=args.seed, heldout=tuple(args.heldout), components=args.components, method=args.method)
        result = train_pack(pack, options)
    except (VoiceError, ModelError) as e:
        return _fail(e)
    path = save(pack, result)
    print("\n".join(result.lines()))
    print(f"wrote {path} and {path.with_name('report.json')}")
    return 0 if result.enabled else EXIT_FAILED
