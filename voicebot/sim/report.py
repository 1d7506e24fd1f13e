"""What a simulated call leaves behind: transcript, latency table, stereo WAV, timeline JSON and picture.

The picture is the one an engineer opens when a call went wrong: caller and bot
waveforms on one time axis, the caller's speech probability, partial and final
transcripts, the bot's prompts, and barge-in marks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from voicebot.audio.wav import write_stereo_wav
from voicebot.sim.audio import SimResult

OUTPUT_FILES = ("transcript.txt", "latency.txt", "call.wav", "timeline.json", "timeline.png")


def transcript_lines(result: SimResult) -> list[str]:
    """The conversation as text: who said what, when (s), with intents and nodes."""
    lines = []
    timeline = result.session.timeline
    for e in timeline.entries:
        t = f"[{e['t']:7.2f}s]"
        if e["kind"] == "play":
            note = "" if e.get("cached") else f"   (synthesized, first audio {e['tts_first_ms']} ms)"
            lines.append(f"{t} BOT    {e['text']}{note}")
        elif e["kind"] == "final" and e["text"]:
            lines.append(f"{t} CALLER {e['text']}")
        elif e["kind"] == "pause":
            lines.append(f"{t}   ✂ barge-in: bot paused")
        elif e["kind"] == "stop":
            lines.append(f"{t}   ✂ bot stopped")
        elif e["kind"] == "resume":
            lines.append(f"{t}   ↻ not an interruption: bot resumes")
        elif e["kind"] in ("handoff", "hangup", "dtmf"):
            lines.append(f"{t}   {e['kind']}: " + ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("t", "kind")))
    outcome = result.session.machine.outcome
    lines.append(f"outcome: disposition={outcome.disposition} level={outcome.level or '-'} tags={','.join(outcome.tags) or '-'} "
                 f"path={' > '.join(outcome.path)}")
    return lines


def latency_rows(result: SimResult) -> list[dict[str, Any]]:
    """Per caller turn: ASR finalisation, response latency in the engine and at the caller's ear (ms)."""
    ear = result.ear_latencies()["response"]
    rows = []
    for i, turn in enumerate(result.session.timeline.turns()):
        rows.append({**turn, "ear_response_ms": ear[i]["ms"] if i < len(ear) else None})
    return rows


def latency_table(result: SimResult) -> str:
    """The per-turn latency table as aligned text."""
    header = f"{'turn':>4}  {'caller said':<42} {'end→final':>9} {'end→bot audio':>13} {'at ear':>7}"
    lines = [header, "-" * len(header)]
    for i, row in enumerate(latency_rows(result), 1):
        lines.append(f"{i:>4}  {row['text'][:42]:<42} {_ms(row['asr_final_ms']):>9} {_ms(row['response_ms']):>13} "
                     f"{_ms(row['ear_response_ms']):>7}")
    for barge in result.session.timeline.barge_ins():
        lines.append(f"barge-in at {barge['onset']:.2f}s: bot paused {barge['reaction_ms']} ms after speech onset (engine)")
    for barge in result.ear_latencies()["barge_in"]:
        if barge["interrupted"]:
            lines.append(f"barge-in '{barge['text']}': bot silent at the caller's ear {barge['ms']} ms after true onset")
        else:
            lines.append(f"barge-in '{barge['text']}': the bot did not stop (protected prompt, node not listening, or policy)")
    return "\n".join(lines)


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
    (out_dir / "timeline.json").write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    draw_timeline(result, caller, bot, out_dir / "timeline.png")
    return [out_dir / name for name in OUTPUT_FILES]


def draw_timeline(result: SimResult, caller: np.ndarray, bot: np.ndarray, path: Path) -> None:
    """The call as a picture: waveforms, VAD, transcripts, prompts, barge-ins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rate = result.session.settings.rate
    timeline = result.session.timeline
    t_audio = np.arange(len(caller)) / rate
    width = max(12.0, min(60.0, result.duration_s / 3))
    fig, axes = plt.subplots(3, 1, figsize=(width, 7), sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.2]})
    axes[0].plot(t_audio, caller / 32768, lw=0.3, color="tab:blue")
    axes[0].set_ylabel("caller")
    axes[1].plot(np.arange(len(bot)) / rate, bot / 32768, lw=0.3, color="tab:green")
    axes[1].set_ylabel("bot")
    axes[2].plot(timeline.vad_t, timeline.vad_p, lw=0.8, color="tab:purple")
    axes[2].set_ylabel("VAD p")
    axes[2].set_xlabel("call time (s)")
    _annotate(axes, timeline.entries)
    fig.suptitle(f"simulated call ({result.duration_s:.1f} s); ✂ barge-in, ▼ end of turn, ● final transcript")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _annotate(axes: Any, entries: list[dict[str, Any]]) -> None:
    for e in entries:
        kind, t = e["kind"], e["t"]
        if kind == "play":
            axes[1].annotate(e["text"][:48], (t, 0.85), fontsize=7, color="darkgreen", annotation_clip=False)
        elif kind == "final" and e["text"]:
            axes[0].annotate("● " + e["text"][:48], (t, 0.85), fontsize=7, color="navy")
        elif kind == "partial":
            axes[0].plot([t], [-0.9], marker="|", color="gray", ms=4)
        elif kind == "speech_end":
            axes[2].axvline(t, color="black", lw=0.6, ls=":")
            axes[0].plot([t], [-0.95], marker="v", color="black", ms=5)
        elif kind in ("pause", "stop"):
            for ax in axes[:2]:
                ax.axvline(t, color="red", lw=0.8)
            axes[1].annotate("✂", (t, -0.9), color="red", fontsize=10)
        elif kind == "speech_start":
            axes[2].axvline(t, color="tab:orange", lw=0.6)
    for ax in axes[:2]:
        ax.set_ylim(-1, 1)
    axes[2].set_ylim(-0.05, 1.05)
    axes[2].set_xlim(left=0)
