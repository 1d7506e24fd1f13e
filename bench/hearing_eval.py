"""Hearing, measured honestly: word error rate and intents on speech that is not the bot's own voice.

Run: PYTHONPATH=. nice -n 10 .venv/bin/python bench/hearing_eval.py [--quick] [--recognisers a,b] [--conditions a,b]

Sources (bench/hearing_eval.yaml): every human clip of Debian's pocketsphinx-testdata with a transcript, and the
example flows' caller lines spoken by espeak-ng voices (US/UK, male/female), by Kokoro-82M voices (the bench extra)
and by the bot's own Piper voice (bench/hearing_voices.py; ``--voices`` picks the families to decode). Every clip
goes through the telephone channel the engine hears (voicebot.audio.telephone: 8 kHz, 300-3400 Hz, G.711 µ-law or
A-law), clean and with babble, pink or line noise at 20 and 10 dB SNR, then through each recogniser:

* ``pocketsphinx``: the streaming pass with its full language model (the old default), 20 ms frames;
* ``pocketsphinx-hints``: the same with the node's hint phrases (flow lines only: human clips have no node);
* ``whisper-tiny.en`` / ``whisper-base``: the accurate pass (voicebot.asr.whisper, one CTranslate2 thread);
* ``whisper-tiny.en-prompt`` / ``whisper-base-prompt``: with the node's hints as the initial prompt (flow lines only);
* ``fast`` / ``accurate`` / ``auto``: the two-pass policy as the engine runs it (bench/hearing_twopass.py), derived
  from ``pocketsphinx-hints`` and ``whisper-base-prompt`` when both ran, with the latency auto adds per node kind.

Reported per source, condition and recogniser: WER (spoken form: numbers as words, no punctuation), split into the
held-out half (a clip id whose SHA-1 ends in an even hex digit, a flow line's by its line id so that every voice's
take of a line is on the same side; nothing was tuned on it) and the rest (``--half`` decodes one half only); decode
time per utterance p50/p95 and real-time factor (decode time / audio time, one core); intent accuracy of the flow
lines through the flow's IntentMatcher (the dialog machine's rule: the node's intents and the globals, the flow's
min_intent_score, a tie to the node's own intent), with the matcher on the reference text as the ceiling; and
false intents: human clips heard at every listening node of the English flows (they say nothing a flow knows).

Generated audio is cached in .voicebot-cache/hearing_eval/ (git-ignored). Results: bench/results/hearing_eval.json.
``--rescore JSON`` scores the texts a previous run heard again (no decoding), e.g. after a policy change.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.hearing_twopass import (  # noqa: E402
    ACCURATE,
    FAST,
    PLAIN,
    add_two_pass,
    latency_report,
    offscript_hearings,
    offscript_two_pass,
    pass_table,
)
from bench.hearing_voices import RATE, digest, espeak, kokoro, piper  # noqa: E402
from voicebot import yamlutil  # noqa: E402
from voicebot.asr.promptguard import turn_snr_db  # noqa: E402
from voicebot.asr.spoken import spoken_form  # noqa: E402
from voicebot.audio.telephone import mix_at_snr, telephone_channel, to_rate  # noqa: E402
from voicebot.audio.wav import frames_from_array, read_wav  # noqa: E402
from voicebot.dialog.flow import Flow  # noqa: E402
from voicebot.dialog.loader import load_flow  # noqa: E402
from voicebot.dialog.machine import build_matcher  # noqa: E402
from voicebot.sim.speechcheck import edits  # noqa: E402

MANIFEST = ROOT / "bench" / "hearing_eval.yaml"
RESULTS = ROOT / "bench" / "results" / "hearing_eval.json"
Int16 = npt.NDArray[np.int16]
FLOW_ONLY = ("pocketsphinx-hints", "whisper-tiny.en-prompt", "whisper-base-prompt")  # recognisers that need a node's hints
ALL_RECOGNISERS = ("pocketsphinx", "pocketsphinx-hints", "whisper-tiny.en", "whisper-tiny.en-prompt", "whisper-base",
                   "whisper-base-prompt")


@dataclass
class Clip:
    """One utterance: ``source`` "human", "human-offscript" or "espeak:<voice>"; flow lines carry flow/node/expect."""

    id: str
    source: str
    audio: Int16
    text: str | None = None
    flow: str | None = None
    node: str | None = None
    expect: str | None = None
    line: str | None = None  # a flow line's id "flow:node:say" (the same for every voice that says it)
    heard: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)  # condition -> recogniser ->
    # (text, wall-clock s, CPU s of this process: the cost on one core, whatever else the machine runs, extras)
    snr: dict[str, float] = field(default_factory=dict)  # condition -> the turn's estimated SNR (dB, promptguard)


def held_out(clip_id: str) -> bool:
    """The held-out half: the clip id's SHA-1 ends in an even hex digit (stable, independent of the manifest order).
    A flow line's clips are split by the line's id (``Clip.line``): every voice's take of a line is on the same side."""
    return int(digest(clip_id)[-1], 16) % 2 == 0


def split_of(clip: Clip) -> bool:
    """Whether ``clip`` is held out (by its line's id for flow lines, else by its own)."""
    return held_out(clip.line or clip.id)


# ---------------------------------------------------------------- sources


def _raw_or_wav(path: Path, rate: int | None) -> Int16:
    if path.suffix == ".raw":
        return to_rate(np.fromfile(path, dtype="<i2"), rate or RATE, RATE)
    samples, src = read_wav(path)
    return to_rate(samples, src, RATE)


def human_clips(spec: dict[str, Any]) -> list[Clip]:
    """Every testdata clip with a transcript (source "human") and the off-script ones (no transcript)."""
    root = Path(spec["root"])
    clips = []
    for name in spec["transcriptions"]:
        listing = root / name
        for line in listing.read_text().splitlines():
            found = re.match(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\((\S+)\)\s*$", line)
            if found:
                text, clip_id = found.group(1).strip(), found.group(2)
                clips.append(Clip(clip_id, "human", _raw_or_wav(listing.parent / f"{clip_id}.wav", None), text))
    for item in spec["clips"]:
        clips.append(Clip(item["id"], "human", _raw_or_wav(root / item["file"], item.get("rate")), item["text"]))
    for item in spec.get("offscript", []):
        clips.append(Clip(item["id"], "human-offscript", _raw_or_wav(root / item["file"], item.get("rate"))))
    return clips


def flow_lines(spec: dict[str, Any], voices: dict[str, Sequence[str]]) -> tuple[list[Clip], dict[str, Flow]]:
    """The flows' caller lines, each spoken once per voice family (``voices``: family -> its voices, see
    bench/hearing_voices.py) by one of the family's voices, picked by a hash of the line's id (stable)."""
    clips, flows = [], {}
    for name, item in spec.items():
        flows[name] = load_flow(ROOT / item["file"])
        lines = list(item.get("lines", []))
        if "from" in item:
            lines += [t for t in yamlutil.load((ROOT / item["from"]).read_text(encoding="utf-8"))["turns"] if "say" in t]
        for line in lines:
            line_id = f"{name}:{line['node']}:{line['say']}"
            for family, names in voices.items():
                voice = names[int(digest(line_id)[:8], 16) % len(names)] if names else ""
                clip_id = line_id if family == "espeak" else f"{family}|{line_id}"  # espeak's ids as before
                audio = SPEAKERS[family](line["say"], voice)
                clips.append(Clip(clip_id, f"{family}:{voice}" if voice else family, audio, line["say"], name,
                                  line["node"], str(line["expect"]), line=line_id))
    return clips, flows


SPEAKERS: dict[str, Callable[[str, str], Int16]] = {"espeak": espeak, "kokoro": kokoro,
                                                     "piper": lambda text, _voice: piper(text)}

# ---------------------------------------------------------------- the channel


def pink_noise(n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum, n=n)


def line_noise(n: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    t = np.arange(n) / RATE
    hum = sum(np.sin(2 * np.pi * 60 * k * t) / k for k in (1, 2, 3, 5))
    return 0.6 * hum + rng.standard_normal(n)


BABBLE_SOURCES = ("human", "human-offscript", "espeak")  # babble is mixed from these (the set's first sources: stable)


def babble(clip: Clip, pool: Sequence[Clip], rng: np.random.Generator) -> npt.NDArray[np.float64]:
    others = [c for c in pool if c.id != clip.id and len(c.audio) and c.source.split(":")[0] in BABBLE_SOURCES]
    mix = np.zeros(len(clip.audio))
    for other in rng.choice(len(others), size=min(3, len(others)), replace=False):
        voice = np.resize(others[other].audio.astype(np.float64), len(mix))
        mix += voice / (np.std(voice) or 1.0)
    return mix


def through(clip: Clip, condition: dict[str, Any], pool: Sequence[Clip]) -> Int16:
    """The clip as the engine hears it under ``condition``: 8 kHz int16."""
    audio = clip.audio
    if "noise" in condition:
        rng = np.random.default_rng(int(digest(clip.id)[:8], 16))
        kinds = ("babble", "pink", "line")
        kind = condition["noise"] if condition["noise"] != "rotate" else kinds[int(digest(clip.id)[:4], 16) % 3]
        noise = babble(clip, pool, rng) if kind == "babble" else (pink_noise if kind == "pink" else line_noise)(
            len(audio), rng)
        audio = mix_at_snr(audio, noise, float(condition["snr_db"]))
    return telephone_channel(audio, RATE, condition.get("codec", "PCMU"))


# ---------------------------------------------------------------- recognisers

Recognise = Callable[[Int16, Sequence[str], str], tuple[str, float, dict[str, float]]]


def recognisers(names: Sequence[str]) -> dict[str, Recognise]:
    """name -> fn(8 kHz audio, hints, language) -> (spoken-form text, decode seconds, extras: Whisper's
    ``logprob`` (mean token log-probability) and ``no_speech`` probability)."""
    out: dict[str, Recognise] = {}
    if any(n.startswith("pocketsphinx") for n in names):
        from voicebot.asr.pocketsphinx_asr import PocketsphinxModel

        sphinx = PocketsphinxModel()

        def fast(audio: Int16, hints: Sequence[str], language: str) -> tuple[str, float, dict[str, float]]:
            started = time.perf_counter()
            stream = sphinx.stream(8000, hints)
            for frame in frames_from_array(audio, 8000):
                stream.accept(frame)
            text = stream.finish().text
            stream.close()
            return text, time.perf_counter() - started, {}

        out["pocketsphinx"] = lambda a, h, lang: fast(a, (), lang)
        out["pocketsphinx-hints"] = fast
    for model in ("tiny.en", "base"):
        if any(n.startswith(f"whisper-{model}") for n in names):
            out.update(_whisper(model))
    return {name: out[name] for name in names}


def _whisper(model: str) -> dict[str, Recognise]:
    from voicebot.asr.whisper import WhisperRecogniser

    recogniser = WhisperRecogniser(model, threads=1)

    def run(audio: Int16, hints: Sequence[str], language: str, prompt: bool) -> tuple[str, float, dict[str, float]]:
        result = recogniser.transcribe(audio, 8000, hints, language, prompt=prompt)
        return result.text, result.seconds, {"logprob": round(result.avg_logprob, 3), "no_speech": round(result.no_speech, 3)}

    return {f"whisper-{model}": lambda a, h, lang: run(a, h, lang, False),
            f"whisper-{model}-prompt": lambda a, h, lang: run(a, h, lang, True)}


# ---------------------------------------------------------------- scoring


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    return edits(ref, hyp)


def wer(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Corpus WER of (reference, hypothesis) pairs in spoken form."""
    words = sum(len(spoken_form(r).split()) for r, _ in pairs)
    if not words:
        return None
    return sum(edit_distance(spoken_form(r).split(), spoken_form(h).split()) for r, h in pairs) / words


def intent_of(flow: Flow, matcher: Any, node_id: str, text: str) -> str:
    """What the dialog machine would match at ``node_id`` for ``text`` ("none" if nothing)."""
    node = flow.nodes[node_id]
    allowed = list(node.routes) + ([g for g in flow.global_routes if g not in node.routes] if node.globals_enabled else [])
    matches = [m for m in matcher.match(text, allowed) if m.score >= flow.min_intent_score]
    if not matches:
        return "none"
    best: str = next((m.intent for m in matches if m.intent in node.routes and m.score >= matches[0].score),
                     matches[0].intent)
    return best


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# ---------------------------------------------------------------- the run


def hints_for(flows: dict[str, Flow], matchers: dict[str, Any], clip: Clip) -> list[str]:
    if clip.flow is None or clip.node is None:
        return []
    node, flow = flows[clip.flow].nodes[clip.node], flows[clip.flow]
    allowed = list(node.routes) + ([g for g in flow.global_routes if g not in node.routes] if node.globals_enabled else [])
    return list(matchers[clip.flow].hint_phrases(allowed))


def decode_all(clips: list[Clip], pool: list[Clip], conditions: dict[str, dict[str, Any]], recs: dict[str, Recognise],
               flows: dict[str, Flow], matchers: dict[str, Any]) -> None:
    """Hear ``clips`` under every condition with every recogniser (``pool``: every clip of the run, for babble)."""
    done, total = 0, len(clips) * len(conditions)
    for cname, condition in conditions.items():
        for clip in clips:
            audio = through(clip, condition, pool)
            clip.snr[cname] = round(turn_snr_db(audio, 8000), 1)
            hints = hints_for(flows, matchers, clip)
            heard = clip.heard.setdefault(cname, {})
            for rname, recognise in recs.items():
                if rname in FLOW_ONLY and clip.flow is None:
                    continue
                cpu = time.process_time()
                text, wall, extra = recognise(audio, hints, "en")
                heard[rname] = (text, wall, time.process_time() - cpu, extra)
            done += 1
            if done % 25 == 0:
                print(f"  {done}/{total} clip-conditions decoded", file=sys.stderr, flush=True)


def summarise(clips: list[Clip], flows: dict[str, Flow], matchers: dict[str, Any]) -> dict[str, Any]:
    wers: dict[str, Any] = {}
    groups: dict[tuple[str, str, str, str], list[tuple[str, str]]] = defaultdict(list)
    times: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    intents: dict[tuple[str, str, str, str], list[bool]] = defaultdict(list)
    for clip in clips:
        source = None if clip.source == "human-offscript" else clip.source.split(":")[0]  # human, espeak, kokoro, piper
        for cname, heard in clip.heard.items():
            for rname, (text, seconds, cpu, *_) in heard.items():
                times[rname].append((seconds, cpu, len(clip.audio) / RATE))
                if source and clip.text is not None:
                    for part in ("held-out" if split_of(clip) else "tune", "all"):
                        groups[(source, cname, rname, part)].append((clip.text, text))
                if source and clip.flow is not None and clip.node is not None and clip.expect is not None:
                    got = intent_of(flows[clip.flow], matchers[clip.flow], clip.node, text)
                    for part in ("held_out" if split_of(clip) else "tune", "all"):
                        intents[(source, cname, rname, part)].append(got == clip.expect)
    for (source, cname, rname, part), pairs in sorted(groups.items()):
        wers.setdefault(source, {}).setdefault(cname, {}).setdefault(rname, {})[part] = {"wer": wer(pairs), "n": len(pairs)}
    ceiling = [intent_of(flows[c.flow], matchers[c.flow], c.node, c.text or "") == c.expect for c in clips
               if c.flow and c.node and c.expect and c.heard]
    speed = {r: {"cpu_p50_s": percentile([c for _, c, _ in v], 50), "cpu_p95_s": percentile([c for _, c, _ in v], 95),
                 "cpu_rtf": sum(c for _, c, _ in v) / max(1e-9, sum(d for _, _, d in v)),
                 "wall_p50_s": percentile([s for s, _, _ in v], 50), "wall_p95_s": percentile([s for s, _, _ in v], 95),
                 "n": len(v)} for r, v in times.items()}
    accuracy: dict[str, Any] = {}
    for (source, c, r, part), v in sorted(intents.items()):
        entry = {"accuracy": sum(v) / len(v), "n": len(v)}
        accuracy.setdefault(f"{source}|{c}|{r}", {}).update(entry if part == "all" else {part: entry})
    accuracy["all|reference text|(matcher ceiling)"] = {"accuracy": sum(ceiling) / max(1, len(ceiling)), "n": len(ceiling)}
    return {"wer": wers, "speed": speed, "intent_accuracy": accuracy, "false_intents": false_intents(clips, flows, matchers)}


def false_intents(clips: list[Clip], flows: dict[str, Flow], matchers: dict[str, Any]) -> dict[str, Any]:
    """Human clips (they say nothing a flow knows) heard at every listening node of every flow: intents matched."""
    out: dict[str, Any] = {}
    for clip in (c for c in clips if c.source.startswith("human")):
        for cname, heard in clip.heard.items():
            for rname, (text, *_) in heard.items():
                for fname, flow in flows.items():
                    for node in (n for n in flow.nodes.values() if n.routes):
                        got = intent_of(flow, matchers[fname], node.id, text)
                        entry = out.setdefault(f"{cname}|{rname}", {"false": 0, "n": 0, "examples": []})
                        entry["n"] += 1
                        if got != "none":
                            entry["false"] += 1
                            if len(entry["examples"]) < 5:
                                entry["examples"].append(f"{clip.id} at {fname}:{node.id}: {text!r} -> {got}")
    return out


def report(summary: dict[str, Any]) -> str:
    """The summary as Markdown tables."""
    lines = ["## WER (spoken form) per source, condition and recogniser: held-out / tune / all (n clips)", "",
             "| source | condition | recogniser | held-out | tune | all |", "|---|---|---|---|---|---|"]
    for source, by_cond in summary["wer"].items():
        for cname, by_rec in by_cond.items():
            for rname, parts in by_rec.items():
                cells = [f"{parts[p]['wer']:.1%} ({parts[p]['n']})" if p in parts and parts[p]["wer"] is not None else "-"
                         for p in ("held-out", "tune", "all")]
                label = "piper (the bot's own voice)" if source == "piper" else source
                lines.append(f"| {label} | {cname} | {rname} | {' | '.join(cells)} |")
    lines += ["", "## Decode time per utterance: CPU seconds (one core) and real-time factor; wall clock on this machine", "",
              "| recogniser | CPU p50 s | CPU p95 s | CPU RTF | wall p50 s | wall p95 s | n |", "|---|---|---|---|---|---|---|"]
    for rname, s in summary["speed"].items():
        lines.append(f"| {rname} | {s['cpu_p50_s']:.3f} | {s['cpu_p95_s']:.3f} | {s['cpu_rtf']:.3f} | {s['wall_p50_s']:.3f} | "
                     f"{s['wall_p95_s']:.3f} | {s['n']} |")
    lines += ["", "## Intent accuracy on the flow lines per voice family: held-out / tune / all (n)", "",
              "| source | condition | recogniser | held-out | tune | all |", "|---|---|---|---|---|---|"]
    for key, a in summary["intent_accuracy"].items():
        source, cname, rname = key.split("|")
        cells = [f"{a[p]['accuracy']:.1%} ({a[p]['n']})" if p in a else "-" for p in ("held_out", "tune")]
        label = "piper (the bot's own voice)" if source == "piper" else source
        lines.append(f"| {label} | {cname} | {rname} | {' | '.join(cells)} | {a['accuracy']:.1%} ({a['n']}) |")
    lines += ["", "## False intents: human clips at every listening node", "", "| condition | recogniser | false | n |",
              "|---|---|---|---|"]
    for key, f in summary["false_intents"].items():
        cname, rname = key.split("|")
        lines.append(f"| {cname} | {rname} | {f['false']} | {f['n']} |")
    lines += pass_table(summary)
    lines += latency_report(summary.get("two_pass_latency", {}))
    if "two_pass_false_intents" in summary:
        lines += ["", "## False intents of the two-pass policy: human clips at every listening node, with its hints", "",
                  "| condition | pass | false | n |", "|---|---|---|---|"]
        for key, f in summary["two_pass_false_intents"].items():
            cname, rname = key.split("|")
            lines.append(f"| {cname} | {rname} | {f['false']} | {f['n']} |")
    return "\n".join(lines)


def reheard(clips: list[Clip], paths: Sequence[Path]) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Fill each clip's ``heard`` and ``snr`` from earlier runs' JSON (merged in order); their recognisers, conditions
    and off-script hearings."""
    names: list[str] = []
    conditions: list[str] = []
    offscript: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    for path in paths:
        summary = json.loads(path.read_text(encoding="utf-8"))
        earlier = summary["run"]
        names += [n for n in earlier["recognisers"] if n not in names]
        conditions += [c for c in earlier["conditions"] if c not in conditions]
        offscript += summary.get("offscript_hearings", [])
        for item in earlier["clips_heard"]:
            entry = by_id.setdefault(item["id"], {"heard": {}, "snr": {}})
            for cname, heard in item["heard"].items():
                entry["heard"].setdefault(cname, {}).update({r: tuple(v) for r, v in heard.items() if r in ALL_RECOGNISERS})
            entry["snr"].update(item.get("snr", {}))
    for clip in clips:
        clip.heard, clip.snr = by_id.get(clip.id, {}).get("heard", {}), by_id.get(clip.id, {}).get("snr", {})
    return names, conditions, offscript


def select(args: argparse.Namespace, manifest: dict[str, Any]) -> tuple[list[Clip], list[Clip], dict[str, Flow],
                                                                          list[str], dict[str, Any]]:
    """The run's clips, those to decode, the flows, recognisers and conditions. espeak's lines are always made: with
    the human clips they are the babble noise, the same whatever ``--voices`` decodes."""
    families = args.voices.split(",") if args.voices else list(manifest["voices"])
    names, conditions = [n for n in args.recognisers.split(",") if n], dict(manifest["conditions"])
    clips = human_clips(manifest["human"])
    keep_lines = args.lines
    if args.quick:
        quick = manifest["quick"]
        clips = [c for c in clips if c.id in quick["human"]]
        keep_lines, names = quick["lines"], list(quick["recognisers"])
        families = families if args.voices else list(quick["voices"])
        conditions = {k: conditions[k] for k in quick["conditions"]}
    if args.conditions:
        conditions = {k: conditions[k] for k in args.conditions.split(",")}
    built = ["espeak", *[f for f in families if f != "espeak"]]
    lines, flows = flow_lines(manifest["flows"], {f: manifest["voices"][f] for f in built})
    if keep_lines is not None:
        first = list(dict.fromkeys(c.line for c in lines))[:keep_lines]
        lines = [c for c in lines if c.line in first]
    clips += lines
    decoded = [c for c in clips if c.source.split(":")[0] in families
               or (c.source.startswith("human") and not args.no_human)]
    decoded = [c for c in decoded if args.half is None or split_of(c) == (args.half == "held-out")]
    return clips, decoded, flows, names, conditions


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a handful of clips, one condition, two recognisers")
    parser.add_argument("--recognisers", default=",".join(ALL_RECOGNISERS))
    parser.add_argument("--conditions", default=None, help="comma-separated condition names (default: all)")
    parser.add_argument("--lines", type=int, default=None, help="only the first N flow lines (a timing run)")
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--offscript-nodes", action="store_true",
                        help="also hear every human clip at every listening node with its hints (two-pass false intents)")
    parser.add_argument("--no-human", action="store_true", help="decode no human clip (they still make the babble)")
    parser.add_argument("--half", choices=("held-out", "tune"), default=None, help="decode only this half")
    parser.add_argument("--voices", default=None, help="comma-separated voice families of the flow lines (default: all)")
    parser.add_argument("--rescore", default=None, help="score what earlier results JSONs heard (comma-separated, merged;"
                        " no decoding)")
    args = parser.parse_args(argv)
    manifest = yamlutil.load(args.manifest.read_text(encoding="utf-8"))
    clips, decoded, flows, names, conditions = select(args, manifest)
    matchers = {name: build_matcher(flow) for name, flow in flows.items()}
    started = time.perf_counter()
    offscript: list[dict[str, Any]] = []
    if args.rescore is not None:
        names, heard_in, offscript = reheard(clips, [Path(p) for p in args.rescore.split(",")])
        conditions = {k: dict(manifest["conditions"])[k] for k in heard_in}
    else:
        decode_all(decoded, clips, conditions, recognisers(names), flows, matchers)
    latency = add_two_pass(clips, flows, matchers)
    summary = summarise(clips, flows, matchers)
    summary["two_pass_latency"] = latency
    if args.offscript_nodes and args.rescore is None:
        offscript = offscript_hearings(clips, flows, matchers, recognisers([FAST, ACCURATE, PLAIN]), conditions, through)
    if offscript:
        summary["offscript_hearings"] = offscript
        summary["two_pass_false_intents"] = offscript_two_pass(offscript, flows, matchers, intent_of)
    summary["run"] = {"quick": args.quick, "clips": len(clips), "conditions": list(conditions), "recognisers": names,
                      "seconds": round(time.perf_counter() - started, 1),
                      "held_out": "clip id SHA-1 ends in an even hex digit",
                      "clips_heard": [{"id": c.id, "source": c.source, "ref": c.text, "held_out": split_of(c),
                                       "snr": c.snr, "heard": c.heard} for c in clips]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    print(report(summary))
    print(f"\nwrote {args.json} ({summary['run']['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
