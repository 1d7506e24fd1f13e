"""A call's timeline: every event with its time stamp, and the latency figures computed from it.

Times are the call's clock in seconds (monotonic, or virtual in the simulator).
Kinds in use: vad (per frame), speech_start, speech_end, partial, final,
pause, resume, play, prompt_start, prompt_end, dtmf, node, intent, command,
hangup. Transcripts are personal data: the timeline is written to the call's
own output folder, never to logs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Timeline:
    """An append-only list of (t, kind, data) entries, plus per-frame VAD arrays."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    vad_t: list[float] = field(default_factory=list)
    vad_p: list[float] = field(default_factory=list)
    listener: Callable[[dict[str, Any]], None] | None = None  # called with each new entry (live display)

    def add(self, t: float, kind: str, **data: Any) -> None:
        """Record one event."""
        entry = {"t": round(t, 4), "kind": kind, **data}
        self.entries.append(entry)
        if self.listener is not None:
            self.listener(entry)

    def vad(self, t: float, probability: float) -> None:
        """Record one frame's speech probability."""
        self.vad_t.append(round(t, 4))
        self.vad_p.append(round(probability, 3))

    def of(self, kind: str) -> list[dict[str, Any]]:
        """Entries of one kind, in time order."""
        return [e for e in self.entries if e["kind"] == kind]

    def turns(self) -> list[dict[str, Any]]:
        """Per caller turn: speech end, final transcript and first bot audio after it (s), and the latencies (ms)."""
        starts = [e["t"] for e in self.of("prompt_start")]
        finals = self.of("final")
        out = []
        for end in self.of("speech_end"):
            final = next((f for f in finals if f["t"] >= end["t"] - 1e-9), None)
            reply = next((t for t in starts if t >= end["t"]), None)
            out.append({
                "speech_end": end["t"],
                "final_at": final["t"] if final else None,
                "text": final.get("text", "") if final else "",
                "asr_final_ms": round(1000 * (final["t"] - end["t"])) if final else None,
                "response_ms": round(1000 * (reply - end["t"])) if reply is not None else None,
                "reason": end.get("reason", ""),
            })
        return out

    def barge_ins(self) -> list[dict[str, Any]]:
        """Per pause of the bot: the caller's speech onset before it and the reaction (ms)."""
        onsets = [e["t"] for e in self.of("speech_start")]
        out = []
        for pause in self.of("pause"):
            onset = max((t for t in onsets if t <= pause["t"] + 1e-9), default=None)
            if onset is not None:
                out.append({"onset": onset, "paused_at": pause["t"], "reaction_ms": round(1000 * (pause["t"] - onset))})
        return out

    def to_json(self) -> dict[str, Any]:
        """Everything, as plain data."""
        return {"entries": self.entries, "vad": {"t": self.vad_t, "p": self.vad_p},
                "turns": self.turns(), "barge_ins": self.barge_ins()}

    def write(self, path: Path) -> None:
        """Write the timeline as JSON."""
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
