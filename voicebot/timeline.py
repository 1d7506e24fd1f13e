"""A call's timeline: every event with its time stamp, and the latency figures computed from it.

Times are the call's clock in seconds (monotonic, or virtual in the simulator).
Kinds in use: vad (per frame), speech_start, speech_end, partial, fast_final (the streaming pass's words while
the accurate pass decodes the turn), final (``asr``: which pass gave the words; ``accurate_ms``: Whisper's wait),
pause, resume, stop, play, listen, prompt_start, prompt_end, dtmf, node,
intent, command, handoff, agent, hangup. Transcripts are personal data: the
timeline is written to the call's own output folder, never to logs.

What the caller said over a prompt is classified from these events alone
(:meth:`Timeline.turns`, field ``barge_in``): ``stopped`` (the bot stopped for
it), ``declined`` (the bot paused, heard no request and carried on) or
``ignored`` (the bot kept talking). Declined and ignored turns, and turns in
which nothing was recognised, are marked ``ignored`` with the reason in
``ignored_why`` and get no response latency: the bot did not answer them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Why a caller turn was ignored (the ``ignored_why`` of a turn), in plain words.
IGNORED_WHY = {
    "not_listening": "said while the bot spoke in a node that does not listen",
    "not_interruptible": "said over a prompt that could not be interrupted (barge-in off, protected, or too short)",
    "declined": "the bot paused, heard no request (a backchannel, a cough, too few words) and carried on",
    "no_words": "nothing was recognised",
}
_EPS = 1e-6


@dataclass
class Timeline:
    """An append-only list of (t, kind, data) entries, plus per-frame VAD arrays."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    vad_t: list[float] = field(default_factory=list)
    vad_p: list[float] = field(default_factory=list)
    listener: Callable[[dict[str, Any]], None] | None = None  # called with each new entry (live display)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Timeline:
        """A timeline read back from :meth:`to_json` output (derived lists are recomputed)."""
        vad = data.get("vad", {})
        return cls(list(data.get("entries", [])), list(vad.get("t", [])), list(vad.get("p", [])))

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
        """Per caller turn: onset, speech end, final transcript, first bot audio after it (s), latencies (ms).

        ``barge_in`` says what became of speech over a prompt ("stopped",
        "declined", "ignored"; "" when no prompt was cut or kept going);
        ``ignored`` turns (``ignored_why`` says why) have ``response_ms`` None.
        """
        starts = [e["t"] for e in self.of("prompt_start")]
        out = []
        for end_i, onset_i, final_i in self._caller_turns():
            end = self.entries[end_i]
            final = self.entries[final_i] if final_i is not None else None
            barge, why = self._fate(onset_i, final_i)
            reply = next((t for t in starts if t >= end["t"]), None)
            out.append({
                "onset": self.entries[onset_i]["t"] if onset_i is not None else None,
                "speech_end": end["t"],
                "final_at": final["t"] if final else None,
                "text": final.get("text", "") if final else "",
                "asr_final_ms": round(1000 * (final["t"] - end["t"])) if final else None,
                "asr": final.get("asr", "fast") if final else "",  # which pass gave the words (two-pass policy)
                "accurate_ms": final.get("accurate_ms") if final else None,  # the accurate pass: request → answer
                "response_ms": round(1000 * (reply - end["t"])) if reply is not None and not why else None,
                "reason": end.get("reason", ""),
                "barge_in": barge,
                "ignored": bool(why),
                "ignored_why": IGNORED_WHY.get(why, ""),
                "ignored_code": why,
            })
        return out

    def barge_ins(self) -> list[dict[str, Any]]:
        """Per pause of the bot: the caller's speech onset before it, the reaction (ms), and whether the bot stopped."""
        onsets = [e["t"] for e in self.of("speech_start")]
        out = []
        for i, pause in enumerate(self.entries):
            if pause["kind"] != "pause":
                continue
            onset = max((t for t in onsets if t <= pause["t"] + 1e-9), default=None)
            if onset is not None:
                out.append({"onset": onset, "paused_at": pause["t"], "reaction_ms": round(1000 * (pause["t"] - onset)),
                            "result": self._after_pause(i, pause.get("play_id"))})
        return out

    def to_json(self) -> dict[str, Any]:
        """Everything, as plain data."""
        return {"entries": self.entries, "vad": {"t": self.vad_t, "p": self.vad_p},
                "turns": self.turns(), "barge_ins": self.barge_ins()}

    def write(self, path: Path) -> None:
        """Write the timeline as JSON."""
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")

    # ------------------------------------------------------------ classifying

    def _caller_turns(self) -> list[tuple[int, int | None, int | None]]:
        """(speech_end index, its speech_start index or None, its final index or None) per caller turn."""
        out = []
        onset: int | None = None
        for i, e in enumerate(self.entries):
            if e["kind"] == "speech_start":
                onset = i
            elif e["kind"] == "speech_end":
                final = next((j for j in range(i + 1, len(self.entries)) if self.entries[j]["kind"] == "final"), None)
                out.append((i, onset, final))
                onset = None
        return out

    def _fate(self, onset_i: int | None, final_i: int | None) -> tuple[str, str]:
        """(barge_in, ignored code) of a caller turn; "" for either when it does not apply."""
        if final_i is None:
            return "", ""
        final = self.entries[final_i]
        empty = not str(final.get("text", "")).strip()
        active = self._prompt_at(final_i)
        if active is not None and not self._cut_at(final_i, active):
            if self._paused_between(onset_i, final_i, active):
                return "declined", "no_words" if empty else "declined"
            return "ignored", "no_words" if empty else ("not_interruptible" if self._listens(active) else "not_listening")
        onset_prompt = self._prompt_at(onset_i) if onset_i is not None else None
        stopped = active is not None or (onset_prompt is not None and self._stopped_between(onset_i, final_i, onset_prompt))
        if stopped:
            return "stopped", ""
        return "", "no_words" if empty else ""

    def _prompt_at(self, index: int) -> Any:
        """The play_id of the prompt being played (started, not ended) at entry ``index``, or None."""
        playing = None
        for e in self.entries[:index]:
            if e["kind"] == "prompt_start":
                playing = e.get("play_id")
            elif e["kind"] == "prompt_end" and e.get("play_id") == playing:
                playing = None
        return playing

    def _cut_at(self, final_i: int, play_id: Any) -> bool:
        """Whether the prompt ``play_id`` was stopped right after the final at ``final_i`` (at the same time)."""
        t = self.entries[final_i]["t"]
        for e in self.entries[final_i + 1:]:
            if e["t"] > t + _EPS:
                break
            if e.get("play_id") == play_id and (e["kind"] == "stop" or (e["kind"] == "prompt_end" and e.get("interrupted"))):
                return True
        return False

    def _paused_between(self, start: int | None, end: int, play_id: Any) -> bool:
        return any(e["kind"] == "pause" and e.get("play_id") == play_id for e in self.entries[start or 0:end])

    def _stopped_between(self, start: int | None, end: int, play_id: Any) -> bool:
        return any(e.get("play_id") == play_id and (e["kind"] == "stop" or (e["kind"] == "prompt_end" and e.get("interrupted")))
                   for e in self.entries[start or 0:end])

    def _listens(self, play_id: Any) -> bool:
        """Whether the node that played ``play_id`` listens: a ``listen`` entry for that node between the plays before
        and after it (the node's ``listen`` comes at its entry; the ``play`` when its audio is ready, which can be
        later)."""
        at = next((i for i, e in enumerate(self.entries) if e["kind"] == "play" and e.get("play_id") == play_id), None)
        if at is None:
            return True
        node = self.entries[at].get("node")
        before = next((i for i in range(at - 1, -1, -1) if self.entries[i]["kind"] == "play"), -1)
        after = next((i for i in range(at + 1, len(self.entries)) if self.entries[i]["kind"] == "play"), len(self.entries))
        return any(e["kind"] == "listen" and e.get("node") == node for e in self.entries[before + 1:after])

    def _after_pause(self, index: int, play_id: Any) -> str:
        """What followed a pause: "stopped", "resumed", or "" when the call ended first."""
        for e in self.entries[index + 1:]:
            if e.get("play_id") != play_id:
                continue
            if e["kind"] == "resume":
                return "resumed"
            if e["kind"] in ("stop", "prompt_end"):
                return "stopped"
        return ""
