"""Latency of the engine on (simulated) FreeSWITCH: response time and barge-in reaction, at the engine and at the ear.

Run: .venv/bin/python bench/fs_latency.py [--quick] [--calls N] [--json PATH]

The whole engine runs as in production (``Engine.load``/``start``: outbound ESL
server, inbound ESL, unicast UDP, the call's session thread) with the real
models (webrtc VAD, PocketSphinx, the default Piper voice) against the
FreeSWITCH test double, one call at a time (PCMU 8 kHz, 20 ms), N calls of
``examples/flows/lead_screening_en.yaml``.

The caller is scripted and reactive (a :class:`CallbackAudio` run by the
double's media clock, listening to what the double received from the engine):

1. it waits for the greeting to end: bot audio heard, then ``--quiet-ms`` (700)
   of silence at its ear (longer than any pause inside a prompt, 0.42 s at most);
   then it says "yes speaking" (synthesized by the engine's own prompt cache at
   8 kHz, leading and trailing silence trimmed);
2. it waits for the next prompt (the disclosure, protected for its first 4 s)
   to be heard, then ``--barge-after-s`` (5.0) s, and the next moment the bot is
   audibly talking it says "I am not interested" over it;
3. the bot should stop, say goodbye and hang up (path greet > disclosure >
   goodbye_not_interested); a call on another path is reported and left out.

Measured twice:

- inside the engine, from the call's :class:`~voicebot.timeline.Timeline`
  (``engine.on_session``): ``turns()[*].response_ms`` (caller's end of speech as
  the VAD dates it → first bot frame of the answer) and
  ``barge_ins()[*].reaction_ms`` (speech onset as the VAD dates it → the bot's
  pause);
- at the caller's ear, from the double's ``packets_heard()`` (arrival times) and
  what the caller said when (the double's media clock, s since answer): response
  = first audible bot sample after the caller's true end of speech − that end;
  barge-in reaction = last audible bot sample heard before the goodbye − the
  caller's true speech onset. Audible: a 10 ms block above -40 dBFS, the rule of
  bench/hearing_bench.py. A packet's samples are placed from its arrival time on.

Aims: response p50 ≤ 400 ms, barge-in reaction p95 ≤ 150 ms. Results go to
``bench/results/fs_latency.json``. The machine's load average is printed with
them: on a busy box every figure grows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.audio.codecs import decode  # noqa: E402
from voicebot.call import CallSession  # noqa: E402
from voicebot.config import EngineConfig  # noqa: E402
from voicebot.engine import Engine  # noqa: E402
from voicebot.esl.double import CallbackAudio, Channel, FreeSwitchDouble  # noqa: E402
from voicebot.logs import configure  # noqa: E402

FLOW = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
RESULTS = ROOT / "bench" / "results" / "fs_latency.json"
RATE = 8000
BLOCK = RATE // 100  # 10 ms
AUDIBLE_DBFS = -40.0
EXPECTED_PATH = ["greet", "disclosure", "goodbye_not_interested"]
AIM_RESPONSE_P50_MS = 400
AIM_BARGE_P95_MS = 150


# ---------------------------------------------------------------- audio helpers


def audible_blocks(pcm: np.ndarray) -> np.ndarray:
    """Indices of the 10 ms blocks above -40 dBFS."""
    n = len(pcm) // BLOCK
    if n == 0:
        return np.zeros(0, dtype=int)
    blocks = pcm[: n * BLOCK].astype(np.float64).reshape(n, BLOCK)
    level = 20 * np.log10(np.sqrt(np.mean(blocks * blocks, axis=1)) / 32768 + 1e-12)
    return np.flatnonzero(level > AUDIBLE_DBFS)


def trimmed(pcm: np.ndarray) -> np.ndarray:
    """``pcm`` from its first audible 10 ms block to the end of its last one."""
    loud = audible_blocks(pcm)
    if len(loud) == 0:
        raise ValueError("the synthesized caller line is silent")
    return pcm[loud[0] * BLOCK:(loud[-1] + 1) * BLOCK].copy()


@dataclass
class Heard:
    """What the caller heard so far: audible spans of bot audio, by arrival time (monotonic s)."""

    spans: list[tuple[float, float]] = field(default_factory=list)  # (first, last) audible instant per packet
    last_packet_at: float = 0.0
    last_packet_loud: bool = False
    seen: int = 0

    def update(self, channel: Channel) -> None:
        packets = channel.packets_heard()
        for packet in packets[self.seen:]:
            pcm = np.frombuffer(decode(packet.data, packet.codec), dtype="<i2")
            loud = audible_blocks(pcm)
            self.last_packet_at, self.last_packet_loud = packet.at, len(loud) > 0
            if len(loud):
                self.spans.append((packet.at + loud[0] * BLOCK / RATE, packet.at + (loud[-1] + 1) * BLOCK / RATE))
        self.seen = len(packets)

    def first_audible_after(self, t: float) -> float | None:
        return next((a for a, _ in self.spans if a >= t), None)

    def last_audible_before(self, t: float) -> float | None:
        return max((b for _, b in self.spans if b <= t), default=None)

    @property
    def last_audible(self) -> float | None:
        return self.spans[-1][1] if self.spans else None


# ---------------------------------------------------------------- the scripted caller


class ScriptedCaller:
    """Reactive: answers the greeting once it ended, barges into the disclosure after its protected window.

    Called by the double's media thread once per 20 ms frame with ``t`` (s since answer). Times it
    keeps are monotonic s (the double's clock: answered_at + t).
    """

    def __init__(self, yes: np.ndarray, barge: np.ndarray, quiet_s: float, barge_after_s: float) -> None:
        self.yes, self.barge = yes, barge
        self.quiet_s, self.barge_after_s = quiet_s, barge_after_s
        self.channel: Channel | None = None
        self.heard = Heard()
        self.state = "greeting"
        self.speaking: np.ndarray | None = None
        self.speech_t0 = 0.0  # call clock (s since answer) of the line being said
        self.lines: list[dict[str, float | str]] = []  # said: text, onset, end (monotonic s)
        self.disclosure_heard_at: float | None = None
        self.error = ""

    def __call__(self, t: float) -> bytes:
        try:
            return self._frame(t)
        except Exception as err:  # never kill the double's media thread
            self.error = repr(err)
            return b""

    def _say(self, text: str, pcm: np.ndarray, t: float, answered: float) -> None:
        self.speaking, self.speech_t0 = pcm, t
        self.lines.append({"text": text, "onset": answered + t, "end": answered + t + len(pcm) / RATE})

    def _frame(self, t: float) -> bytes:
        ch = self.channel
        if ch is None or ch.answered_at is None:
            return b""
        answered = ch.answered_at
        now = answered + t
        self.heard.update(ch)
        last = self.heard.last_audible
        if self.speaking is not None:
            start = round((t - self.speech_t0) * RATE)
            if start < len(self.speaking):
                return self.speaking[start:start + RATE // 50].astype("<i2").tobytes()
            self.speaking = None
        if self.state == "greeting" and last is not None and now - last >= self.quiet_s:
            self._say("yes speaking", self.yes, t, answered)
            self.state = "answered"
        elif self.state == "answered":
            spoken_end = float(self.lines[-1]["end"])
            first = self.heard.first_audible_after(spoken_end)
            if first is not None:
                self.disclosure_heard_at = first
                self.state = "listening"
        elif self.state == "listening":
            assert self.disclosure_heard_at is not None
            if now >= self.disclosure_heard_at + self.barge_after_s and self.heard.last_packet_loud:
                self._say("I am not interested", self.barge, t, answered)
                self.state = "barged"
        return b""


# ---------------------------------------------------------------- one call


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_call(fs: FreeSwitchDouble, engine: Engine, sessions: list[CallSession], caller: ScriptedCaller,
             timeout_s: float = 90.0) -> dict[str, Any]:
    """One call; its figures at the engine and at the ear."""
    before = len(sessions)
    uuid = fs.place_call(engine.server.port, codec="PCMU", rate=RATE, caller=CallbackAudio(caller))
    caller.channel = fs.channel(uuid)
    fs.wait_for(lambda: len(sessions) > before, timeout=15, what="the call's session")
    session = sessions[before]
    try:
        fs.wait_for(lambda: fs.channel(uuid).hung_up, timeout=timeout_s, what="the bot hangs up")
    except TimeoutError:
        fs.hangup(uuid)
    fs.wait_for(lambda: engine.metrics.active_calls == 0, timeout=15, what="the call is released")
    record = engine.store.get(uuid)
    path = list(record.path) if record else list(session.machine.outcome.path)
    caller.heard.update(fs.channel(uuid))
    row: dict[str, Any] = {
        "call": uuid, "path": path, "disposition": record.disposition if record else "",
        "caller_lines": [{"text": ln["text"], "onset_s": round(float(ln["onset"]) - (caller.channel.answered_at or 0), 3),
                          "end_s": round(float(ln["end"]) - (caller.channel.answered_at or 0), 3)}
                         for ln in caller.lines],
        "engine_turns": [{"text": tr["text"], "reason": tr["reason"], "response_ms": tr["response_ms"],
                          "asr_final_ms": tr["asr_final_ms"]} for tr in session.timeline.turns()],
        "engine_barge_ins": [b["reaction_ms"] for b in session.timeline.barge_ins()],
        "ear_response_ms": [], "ear_barge_in_ms": [], "errors": [],
    }
    if caller.error:
        row["errors"].append(f"caller: {caller.error}")
    if path != EXPECTED_PATH:
        row["errors"].append(f"path {' > '.join(path)} (expected {' > '.join(EXPECTED_PATH)})")
    heard = caller.heard
    for line in caller.lines:
        reply = heard.first_audible_after(float(line["end"]))
        if reply is not None:
            row["ear_response_ms"].append(round(1000 * (reply - float(line["end"]))))
    if len(caller.lines) == 2:
        barge = caller.lines[1]
        # the bot's last audible sample between the caller's onset and the goodbye (its first sound after the line)
        goodbye = heard.first_audible_after(float(barge["end"])) or float("inf")
        last = heard.last_audible_before(min(goodbye, float(barge["end"]) + 5.0))
        if last is not None and last >= float(barge["onset"]) - 0.5:
            row["ear_barge_in_ms"].append(max(0, round(1000 * (last - float(barge["onset"])))))
    else:
        row["errors"].append(f"the caller said {len(caller.lines)} line(s), not 2")
    return row


# ---------------------------------------------------------------- summary


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values, dtype=float), q)), 1) if values else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    good = [r for r in rows if not r["errors"]]
    series = {
        "response_engine_ms": [t["response_ms"] for r in good for t in r["engine_turns"] if t["response_ms"] is not None],
        "response_ear_ms": [v for r in good for v in r["ear_response_ms"]],
        "barge_in_engine_ms": [v for r in good for v in r["engine_barge_ins"]],
        "barge_in_ear_ms": [v for r in good for v in r["ear_barge_in_ms"]],
    }
    # per caller line: its engine turn (the i-th turn, when the engine counted one turn per line) and its ear figure
    for i, text in enumerate(("yes speaking", "I am not interested")):
        same = [r for r in good if len(r["engine_turns"]) == len(r["caller_lines"]) == len(r["ear_response_ms"])]
        series[f"response_engine_ms[{text}]"] = [r["engine_turns"][i]["response_ms"] for r in same
                                                  if r["engine_turns"][i]["response_ms"] is not None]
        series[f"response_ear_ms[{text}]"] = [r["ear_response_ms"][i] for r in same]
    return {name: {"n": len(v), "p50": pct(v, 50), "p95": pct(v, 95), "max": max(v) if v else None}
            for name, v in series.items()}


def fmt(v: Any) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def print_report(rows: list[dict[str, Any]], summary: dict[str, dict[str, Any]], meta: dict[str, Any]) -> None:
    print(f"fs_latency: {meta['calls']} calls of {meta['flow']} through the FreeSWITCH double "
          f"(PCMU 8 kHz, {meta['asr']}, {meta['vad']} VAD, Piper), reactive caller")
    print(f"load average before/after: {meta['loadavg_before']} / {meta['loadavg_after']}, {meta['cpus']} CPUs; "
          f"wall {meta['wall_s']} s")
    print()
    print(f"{'#':>2}  {'response engine ms':<19} {'response ear ms':<16} {'barge engine ms':<16} {'barge ear ms':<13} notes")
    for i, r in enumerate(rows, 1):
        eng = ",".join(fmt(t["response_ms"]) for t in r["engine_turns"])
        print(f"{i:>2}  {eng:<19} {','.join(map(str, r['ear_response_ms'])):<16} "
              f"{','.join(map(str, r['engine_barge_ins'])) or '-':<16} {','.join(map(str, r['ear_barge_in_ms'])) or '-':<13} "
              f"{'; '.join(r['errors']) or 'ok'}")
    print()
    print(f"{'figure':<42} {'n':>3} {'p50':>7} {'p95':>7} {'max':>7}  aim")
    for name, s in summary.items():
        key, bound = ("p50", AIM_RESPONSE_P50_MS) if name.startswith("response") else ("p95", AIM_BARGE_P95_MS)
        met = "" if s[key] is None else ("met" if s[key] <= bound else "MISSED")
        print(f"{name:<42} {s['n']:>3} {fmt(s['p50']):>7} {fmt(s['p95']):>7} {fmt(s['max']):>7}  {key} <= {bound} {met}")
    reasons = sorted({t["reason"] for r in rows for t in r["engine_turns"]})
    for reason in reasons:
        values = [t["response_ms"] for r in rows for t in r["engine_turns"] if t["reason"] == reason and t["response_ms"]]
        print(f"  engine turns ended by {reason!r}: n={len(values)} p50={fmt(pct(values, 50))} ms "
              f"(texts heard: {sorted({t['text'] for r in rows for t in r['engine_turns'] if t['reason'] == reason})})")


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 calls (smoke run)")
    parser.add_argument("--calls", type=int, default=None, help="number of calls (default 10, --quick 2)")
    parser.add_argument("--quiet-ms", type=int, default=700, help="silence at the ear that ends the greeting")
    parser.add_argument("--barge-after-s", type=float, default=5.0, help="into the disclosure before barging in")
    parser.add_argument("--json", type=Path, default=RESULTS, help="results file")
    args = parser.parse_args(argv)
    calls = args.calls or (2 if args.quick else 10)
    configure(level="WARNING")  # the engine logs every call at info: keep the table readable

    loadavg_before = [round(x, 2) for x in os.getloadavg()]
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="fs_latency-"))
    rows: list[dict[str, Any]] = []
    with FreeSwitchDouble(password="bench") as fs:
        config = EngineConfig(esl_port=fs.inbound_port, esl_password="bench", outbound_port=0, http_port=free_port(),
                              default_flow=FLOW, records_db=str(tmp / "calls.sqlite"), recordings_dir=tmp / "rec",
                              cache_dir=ROOT / ".voicebot-cache", media_ports=(43700, 43899), shutdown_deadline_s=2)
        engine = Engine(config)
        sessions: list[CallSession] = []
        engine.on_session = sessions.append
        engine.load()
        engine.start()
        try:
            if not engine.inbound.wait_up(10):
                raise SystemExit("the engine did not connect to the double")
            pipeline = next(iter(engine.pipelines.values()))
            yes = trimmed(pipeline.cache.synthesize("yes speaking", RATE))
            barge = trimmed(pipeline.cache.synthesize("I am not interested", RATE))
            for i in range(calls):
                caller = ScriptedCaller(yes, barge, args.quiet_ms / 1000, args.barge_after_s)
                row = run_call(fs, engine, sessions, caller)
                rows.append(row)
                print(f"call {i + 1}/{calls}: {' > '.join(row['path'])} "
                      f"response engine {[t['response_ms'] for t in row['engine_turns']]} ear {row['ear_response_ms']}; "
                      f"barge engine {row['engine_barge_ins']} ear {row['ear_barge_in_ms']}"
                      + (f"; {'; '.join(row['errors'])}" if row["errors"] else ""), flush=True)
            fs.assert_no_crash()
        finally:
            engine.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)  # the records and recordings of the bench calls
    summary = summarize(rows)
    meta = {"calls": calls, "flow": FLOW.stem, "asr": config.asr_backend, "vad": config.vad, "codec": "PCMU",
            "rate": RATE, "quiet_ms": args.quiet_ms, "barge_after_s": args.barge_after_s,
            "loadavg_before": loadavg_before, "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "cpus": os.cpu_count(), "wall_s": round(time.monotonic() - started, 1), "threads_left": threading.active_count()}
    print()
    print_report(rows, summary, meta)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "summary": summary, "calls": rows}, indent=1) + "\n", encoding="utf-8")
    print(f"\nresults: {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
