"""What a simulated call leaves behind: transcript, latency table, stereo WAV, timeline JSON and picture.

The picture (:mod:`voicebot.sim.picture`) is the one an engineer opens when a
call went wrong. What the caller said over a prompt and the bot did not act on
is marked ignored or declined, with why, in the transcript, the latency table
(no response latency for it), ``timeline.json`` (its ``turns``) and the picture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.audio.wav import write_stereo_wav
from voicebot.dialog.flow import BargeInMode, Flow
from voicebot.sim.audio import SimResult
from voicebot.sim.picture import FATE_SHORT, save_timeline, timeline_figure
from voicebot.sim.seams import join_lines
from voicebot.sim.speechcheck import speech_lines
from voicebot.timeline import Timeline

OUTPUT_FILES = ("transcript.txt", "latency.txt", "call.wav", "timeline.json", "timeline.png")


def transcript_lines(result: SimResult) -> list[str]:
    """The conversation as text: who said what, when (s), with intents and nodes."""
    lines = []
    timeline = result.session.timeline
    ignored = {row["final_at"]: row for row in latency_rows(result) if row["ignored"]}
    joins = {report["play_id"]: report for report in result.prompts}
    for e in timeline.entries:
        t = f"[{e['t']:7.2f}s]"
        if e["kind"] == "play":
            note = "" if e.get("cached") else f"   (synthesized, first audio {e['tts_first_ms']} ms)"
            lines.append(f"{t} BOT    {e['text']}{note}")
            lines += join_lines(joins[e["play_id"]]) if e.get("play_id") in joins else []
        elif e["kind"] == "final" and e["text"]:
            row = ignored.get(e["t"])
            note = f"   ({row['barge_in'] or 'ignored'}: {row['ignored_why']})" if row else ""
            lines.append(f"{t} CALLER {e['text']}{note}")
        elif e["kind"] == "pause":
            lines.append(f"{t}   ✂ barge-in: bot paused")
        elif e["kind"] == "stop":
            lines.append(f"{t}   ✂ bot stopped")
        elif e["kind"] == "resume":
            lines.append(f"{t}   ↻ not an interruption: bot resumes")
        elif e["kind"] == "amd":
            lines.append(f"{t}   amd: {amd_line(e)}")
        elif e["kind"] in ("handoff", "hangup", "dtmf"):
            lines.append(f"{t}   {e['kind']}: " + ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "kind")))
    lines += speech_lines(result.speech)
    outcome = result.session.machine.outcome
    lines.append(f"outcome: disposition={outcome.disposition} level={outcome.level or '-'} tags={','.join(outcome.tags) or '-'} "
                 f"path={' > '.join(outcome.path)}")
    return lines


def amd_line(entry: dict[str, Any]) -> str:
    """One answering-machine detection step (a timeline ``amd`` entry) for people: verdict, reason, what follows."""
    if entry.get("verdict") is None:
        return f"{entry.get('action')} (policy {entry.get('policy')})"
    beep = f", beep at {entry['beep_ms']} ms" if entry.get("beep_ms") is not None else ""
    action = entry.get("action")
    if action == "message" and entry.get("message_left"):
        action = "message left"
    return f"{entry['verdict']} ({entry.get('reason')}, {entry.get('verdict_ms')} ms after the answer{beep}): {action}"


def latency_rows(result: SimResult) -> list[dict[str, Any]]:
    """Per caller turn: ASR finalisation, response latency in the engine and at the caller's ear (ms).

    Ignored and declined turns (see :meth:`Timeline.turns`) have no response latency, at the engine or the ear.
    """
    ear = _ear_by_turn(result)
    flow = getattr(getattr(result.session, "machine", None), "flow", None)
    rows = []
    for turn in result.session.timeline.turns():
        row = {**refine_ignored(turn, result.session.timeline, flow), "ear_response_ms": None}
        if not row["ignored"]:
            row["ear_response_ms"] = ear.get(_nearest_spoken(result, turn))
        rows.append(row)
    return rows


def refine_ignored(turn: dict[str, Any], timeline: Timeline, flow: Flow | None) -> dict[str, Any]:
    """``turn`` with ``ignored_why``/``ignored_short`` naming the node's barge-in policy, where the flow tells it."""
    code = turn.get("ignored_code", "")
    out = {**turn, "ignored_short": FATE_SHORT.get(code, "")}
    if code != "not_interruptible" or flow is None or turn.get("onset") is None:
        return out
    play = _play_before(timeline, turn["onset"])
    node = flow.nodes.get(str(play.get("node", ""))) if play else None
    if node is None or play is None:
        return out
    policy = node.barge_in
    into_ms = round(1000 * (turn["onset"] - _prompt_start(timeline, play)))
    if policy.mode is BargeInMode.OFF:
        out["ignored_short"] = "barge-in off"
        out["ignored_why"] = f"said over a prompt of node '{node.id}', where barge-in is off"
    elif policy.mode is BargeInMode.PROTECTED and into_ms < policy.protect_ms:
        out["ignored_short"] = "protected prompt"
        out["ignored_why"] = (f"said {into_ms / 1000:.1f} s into a prompt of node '{node.id}', "
                              f"protected for its first {policy.protect_ms / 1000:g} s")
    else:
        out["ignored_short"] = "too short to pause"
        out["ignored_why"] = f"too little speech ({policy.min_speech_ms} ms needed) to pause the bot"
    return out


def _play_before(timeline: Timeline, t: float) -> dict[str, Any] | None:
    """The last ``play`` entry at or before ``t``."""
    plays = [e for e in timeline.of("play") if e["t"] <= t + 1e-9]
    return plays[-1] if plays else None


def _prompt_start(timeline: Timeline, play: dict[str, Any]) -> float:
    start = next((e["t"] for e in timeline.of("prompt_start") if e.get("play_id") == play.get("play_id")), None)
    return float(start if start is not None else play["t"])


def _ear_by_turn(result: SimResult) -> dict[int, int]:
    """Index of a spoken turn → the bot's response latency at the caller's ear (ms), where it was heard."""
    heard = iter(result.ear_latencies()["response"])
    out: dict[int, int] = {}
    entry = next(heard, None)
    for i, spoken in enumerate(result.spoken):
        if entry is not None and entry["text"] == spoken.text:
            out[i] = entry["ms"]
            entry = next(heard, None)
    return out


def _nearest_spoken(result: SimResult, turn: dict[str, Any]) -> int:
    """Index of the spoken turn whose true end is nearest this turn's detected end (-1: none within 1.5 s)."""
    best, index = 1.5, -1
    for i, spoken in enumerate(result.spoken):
        gap = abs(spoken.end - turn["speech_end"])
        if gap < best:
            best, index = gap, i
    return index


def latency_table(result: SimResult) -> str:
    """The per-turn latency table as aligned text; ignored turns say so instead of giving a latency."""
    header = f"{'turn':>4}  {'caller said':<42} {'end→final':>9} {'end→bot audio':>13} {'at ear':>7}"
    lines = [header, "-" * len(header)]
    notes = []
    for i, row in enumerate(latency_rows(result), 1):
        said = _cut(row["text"], 42)
        if row["ignored"]:
            lines.append(f"{i:>4}  {said:<42} {_ms(row['asr_final_ms']):>9} {row['barge_in'] or 'ignored':>13} {'-':>7}")
            notes.append(f"turn {i} {row['barge_in'] or 'ignored'}: {row['ignored_why']} (no response latency)")
        else:
            lines.append(f"{i:>4}  {said:<42} {_ms(row['asr_final_ms']):>9} {_ms(row['response_ms']):>13} "
                         f"{_ms(row['ear_response_ms']):>7}")
    lines += notes
    for barge in result.session.timeline.barge_ins():
        then = {"stopped": ", then stopped", "resumed": ", then resumed (not a request)"}.get(barge["result"], "")
        lines.append(f"barge-in at {barge['onset']:.2f}s: bot paused {barge['reaction_ms']} ms after speech onset (engine){then}")
    for barge in result.ear_latencies()["barge_in"]:
        if barge["interrupted"]:
            lines.append(f"barge-in '{barge['text']}': bot silent at the caller's ear {barge['ms']} ms after true onset")
        else:
            lines.append(f"barge-in '{barge['text']}': the bot did not stop (protected prompt, node not listening, or policy)")
    return "\n".join(lines)


def _cut(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters, ending in "…" when cut."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if text[width - 1] != " " and " " in cut:  # end on a whole word
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value} ms"


def write_outputs(result: SimResult, out_dir: Path) -> list[Path]:
    """Write every output file into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rate = result.session.settings.rate
    (out_dir / "transcript.txt").write_text("\n".join(transcript_lines(result)) + "\n", encoding="utf-8")
    (out_dir / "latency.txt").write_text(latency_table(result) + "\n", encoding="utf-8")
    caller = np.concatenate(result.caller_track) if result.caller_track else np.zeros(0, dtype=np.int16)
    bot = np.concatenate(result.bot_track) if result.bot_track else np.zeros(0, dtype=np.int16)
    write_stereo_wav(out_dir / "call.wav", caller, bot, rate)
    data = result.session.timeline.to_json()
    data["ear"] = result.ear_latencies()
    data["latency"] = latency_rows(result)
    data["turns"] = [{k: v for k, v in row.items() if k != "ear_response_ms"} for row in data["latency"]]
    data["prompts"] = result.prompts  # each dynamic prompt's pieces and joins (voicebot.sim.seams)
    if result.speech:
        data["speech"] = result.speech  # the bot's prompts heard over the line (voicebot.sim.speechcheck)
    (out_dir / "timeline.json").write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    draw_timeline(result, caller, bot, out_dir / "timeline.png")
    return [out_dir / name for name in OUTPUT_FILES]


def draw_timeline(result: SimResult, caller: np.ndarray, bot: np.ndarray, path: Path) -> None:
    """The call as a picture (see :mod:`voicebot.sim.picture`): lanes of what was said, waveforms, VAD, barge-ins."""
    timeline = result.session.timeline
    title = (f"simulated call ({result.duration_s:.1f} s): what the bot and the caller said, their audio, "
             "and the caller's speech probability")
    fig, _ = timeline_figure(timeline, caller, bot, result.session.settings.rate, result.duration_s,
                             turns=latency_rows(result), title=title)
    save_timeline(fig, path)
