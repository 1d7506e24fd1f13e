"""Shared by bench/latency.py and bench/capacity.py: the engine against the FreeSWITCH double, a scripted caller, the ear.

Pieces:

- :class:`DoubleHost`: the FreeSWITCH test double (``fsdouble.double``) in a
  *separate process* (multiprocessing, spawn), so its media clock and the
  callers' CPU do not share the engine's GIL and the engine's CPU figures are
  its own. Commands go over a pipe; waiting on it yields to gevent, so the
  engine (greenlets in this process's main thread) keeps running.
- :class:`ScriptedCaller` (runs in the double's process, once per 20 ms frame):
  a list of :class:`Step`. ``answer``: once the bot has spoken and then been
  quiet ``quiet_s`` (plus a seeded random 0..``jitter_s``) at the ear, say the line. ``barge``: once a prompt is heard
  after the caller's last line, wait ``after_s`` into it and say the line the
  next moment the bot is audibly talking. ``loop_from``: after the last step,
  go on from that step (a conversation that runs until the bench hangs up).
- :class:`Ear`: what the caller heard, from the double's ``packets_heard()``:
  audible spans (a 10 ms block above -40 dBFS, the rule of
  bench/hearing_bench.py; a packet's samples are placed from its arrival time
  on) and the inter-arrival gaps of the bot's packets.
- :func:`ear_report`: per caller line, response at the ear (first audible bot
  sample after the line's true end − that end) and, for barge lines, the
  barge-in reaction (last audible bot sample before the reply − the line's true
  onset); the gaps' percentiles and how many exceeded ptime + 40 ms.
- :func:`engine_figures`: the same figures inside the engine, from each call's
  :class:`~voicebot.timeline.Timeline`: response (speech end → first bot frame),
  barge-in (onset → pause), ASR finalisation (speech end → final) and the
  compute of ``finish()`` in it, TTS time to first audio (``play.tts_first_ms``,
  dynamic prompts and cached ones apart).

The sampling profiler and CPU accounting are in bench/profiling.py.

Times in the double's process are its ``time.monotonic()``, the same clock as
the engine's on Linux (CLOCK_MONOTONIC is system-wide).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import random
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FLOW = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
RESULTS = ROOT / "bench" / "results"
TESTDATA = Path("/usr/share/pocketsphinx/test/data")
HUMAN_CLIP = TESTDATA / "goforward.raw"  # "go forward ten meters": off-script at greet (bench/hearing_set.yaml)
RATE = 8000
PTIME_MS = 20
BLOCK = RATE // 100  # 10 ms
AUDIBLE_DBFS = -40.0
_AUDIBLE_MEAN_SQUARE = (32768 * 10 ** (AUDIBLE_DBFS / 20)) ** 2
LATE_MS = 40.0  # a bot packet arriving this much later than its ptime after the previous one is late
REPLY_WINDOW_S = 10.0  # a bot reply later than this after a caller line is not counted as its response


# ---------------------------------------------------------------- audio


def audible_blocks(pcm: np.ndarray) -> np.ndarray:
    """Indices of the 10 ms blocks of ``pcm`` (int16, 8 kHz) above -40 dBFS."""
    n = len(pcm) // BLOCK
    if n == 0:
        return np.zeros(0, dtype=int)
    blocks = pcm[: n * BLOCK].astype(np.int64).reshape(n, BLOCK)
    return np.flatnonzero(np.einsum("ij,ij->i", blocks, blocks) > _AUDIBLE_MEAN_SQUARE * BLOCK)


def trimmed(pcm: np.ndarray) -> np.ndarray:
    """``pcm`` from its first audible 10 ms block to the end of its last one."""
    loud = audible_blocks(pcm)
    if len(loud) == 0:
        raise ValueError("the caller line is silent")
    return pcm[loud[0] * BLOCK:(loud[-1] + 1) * BLOCK].copy()


@dataclass(frozen=True)
class Line:
    """One thing the caller says: 8 kHz int16 audio, trimmed; ``source`` "synth" or "human:<file>"."""

    text: str
    pcm: np.ndarray
    source: str = "synth"


@dataclass(frozen=True)
class Step:
    """``kind`` "answer" (after the bot's prompt ended) or "barge" (``after_s`` into the next prompt)."""

    kind: str
    line: Line
    after_s: float = 0.0


def synth_line(cache: Any, text: str) -> Line:
    """``text`` said by the default Piper voice at 8 kHz (the engine's prompt cache synthesizes it)."""
    return Line(text, trimmed(cache.synthesize(text, RATE)))


def human_line(path: Path = HUMAN_CLIP, text: str = "go forward ten meters") -> Line:
    """A real human recording (Debian pocketsphinx-testdata) at 8 kHz, trimmed."""
    from voicebot.sim.caller import raw_or_wav

    if not path.is_file():
        raise SystemExit(f"needs Debian's pocketsphinx-testdata: {path} is missing (apt-get install pocketsphinx-testdata)")
    return Line(text, trimmed(raw_or_wav(str(path), RATE)), f"human:{path.name}")


# ---------------------------------------------------------------- the ear


@dataclass
class Ear:
    """What the caller heard: audible spans of bot audio (monotonic s) and the packets' inter-arrival gaps (ms)."""

    spans: list[tuple[float, float]] = field(default_factory=list)
    gaps_ms: list[float] = field(default_factory=list)
    last_packet_at: float = 0.0
    last_packet_loud: bool = False
    seen: int = 0

    def update(self, packets: list[Any]) -> None:
        """Take in the packets not seen yet (the double's ``packets_heard()``)."""
        from voicebot.audio.codecs import decode

        for packet in packets[self.seen:]:
            pcm = np.frombuffer(decode(packet.data, packet.codec), dtype="<i2")
            loud = audible_blocks(pcm)
            if self.seen:
                self.gaps_ms.append(1000 * (packet.at - self.last_packet_at))
            self.last_packet_at, self.last_packet_loud = packet.at, len(loud) > 0
            if len(loud):
                self.spans.append((packet.at + loud[0] * BLOCK / RATE, packet.at + (loud[-1] + 1) * BLOCK / RATE))
            self.seen += 1

    def first_audible_after(self, t: float) -> float | None:
        """The first audible instant at or after ``t``."""
        return next((a for a, _ in self.spans if a >= t), None)

    def last_audible_before(self, t: float) -> float | None:
        """The end of the last audible span ending at or before ``t``."""
        return max((b for _, b in self.spans if b <= t), default=None)

    @property
    def last_audible(self) -> float | None:
        """The end of the last audible span."""
        return self.spans[-1][1] if self.spans else None


# ---------------------------------------------------------------- the scripted caller


class ScriptedCaller:
    """Reactive caller (see the module docstring), called by the double's media thread with ``t`` (s since answer)."""

    def __init__(self, steps: list[Step], quiet_s: float = 0.7, loop_from: int | None = None, jitter_s: float = 0.0,
                 seed: int = 0) -> None:
        self.steps, self.quiet_s, self.loop_from = steps, quiet_s, loop_from
        self.jitter_s, self._rng = jitter_s, random.Random(seed)
        self.gap_s = self._next_gap()
        self.channel: Any = None
        self.ear = Ear()
        self.index: int | None = 0 if steps else None
        self.speaking: np.ndarray | None = None
        self.speech_t0 = 0.0
        self.lines: list[dict[str, Any]] = []  # text, source, kind, onset, end (monotonic s)
        self.prompt_heard_at: float | None = None
        self.error = ""

    def __call__(self, t: float) -> bytes:
        try:
            return self._frame(t)
        except Exception as err:  # never kill the double's media thread
            self.error = repr(err)
            return b""

    def _next_gap(self) -> float:
        """How long the caller waits after the bot's prompt: ``quiet_s`` plus up to ``jitter_s`` more (seeded)."""
        return self.quiet_s + self._rng.uniform(0.0, self.jitter_s)

    def _say(self, step: Step, t: float, now: float) -> None:
        self.speaking, self.speech_t0 = step.line.pcm, t
        self.lines.append({"text": step.line.text, "source": step.line.source, "kind": step.kind,
                           "onset": now, "end": now + len(step.line.pcm) / RATE})
        self.prompt_heard_at, self.gap_s = None, self._next_gap()
        assert self.index is not None
        self.index += 1
        if self.index >= len(self.steps):
            self.index = self.loop_from

    def _frame(self, t: float) -> bytes:
        ch = self.channel
        if ch is None or ch.answered_at is None:
            return b""
        now = ch.answered_at + t
        self.ear.update(ch.packets_heard())
        if self.speaking is not None:
            start = round((t - self.speech_t0) * RATE)
            if start < len(self.speaking):
                return self.speaking[start:start + RATE * PTIME_MS // 1000].astype("<i2").tobytes()
            self.speaking = None
        if self.index is not None and self._due(self.steps[self.index], now):
            self._say(self.steps[self.index], t, now)
        return b""

    def _due(self, step: Step, now: float) -> bool:
        since = float(self.lines[-1]["end"]) if self.lines else 0.0
        if step.kind == "answer":
            last = self.ear.last_audible
            return last is not None and last > since and now - last >= self.gap_s
        if self.prompt_heard_at is None:
            self.prompt_heard_at = self.ear.first_audible_after(since) if self.ear.spans else None
            return False
        return now >= self.prompt_heard_at + step.after_s and self.ear.last_packet_loud


def ear_report(caller: ScriptedCaller, answered_at: float, hangup_at: float | None = None) -> dict[str, Any]:
    """Per line: response and barge-in at the ear (ms); gaps of the bot's packets; ``unanswered``: lines that
    ended at least REPLY_WINDOW_S before the hang-up (``hangup_at``, monotonic s) and got no reply."""
    ear = caller.ear
    lines = []
    for line in caller.lines:
        onset, end = float(line["onset"]), float(line["end"])
        reply = ear.first_audible_after(end)
        row = {"text": line["text"], "source": line["source"], "kind": line["kind"],
               "onset_s": round(onset - answered_at, 3), "end_s": round(end - answered_at, 3),
               "response_ms": round(1000 * (reply - end)) if reply is not None and reply - end < REPLY_WINDOW_S else None,
               "barge_in_ms": None}
        if line["kind"] == "barge":
            last = ear.last_audible_before(min(reply if reply is not None else float("inf"), end + 5.0))
            if last is not None and last >= onset - 0.5:
                row["barge_in_ms"] = max(0, round(1000 * (last - onset)))
        lines.append(row)
    gaps = np.asarray(ear.gaps_ms, dtype=float)
    end = hangup_at if hangup_at is not None else float("inf")
    unanswered = sum(ln["response_ms"] is None and answered_at + ln["end_s"] + REPLY_WINDOW_S < end for ln in lines)
    return {"lines": lines, "error": caller.error, "packets": ear.seen, "gaps": gap_stats(gaps), "unanswered": unanswered,
            "heard_bot": bool(ear.spans)}


def gap_stats(gaps: np.ndarray) -> dict[str, Any]:
    """Inter-arrival gaps (ms): percentiles, max, and how many exceed ptime + LATE_MS."""
    if len(gaps) == 0:
        return {"n": 0, "p50": None, "p99": None, "max": None, "late": 0}
    return {"n": len(gaps), "p50": round(float(np.percentile(gaps, 50)), 1), "p99": round(float(np.percentile(gaps, 99)), 1),
            "max": round(float(gaps.max()), 1), "late": int(np.sum(gaps > PTIME_MS + LATE_MS))}


# ---------------------------------------------------------------- the double in its own process


def _serve_double(conn: Any, password: str) -> None:
    """The double's process: a FreeSwitchDouble and its callers, driven by commands on ``conn``."""
    from fsdouble.double import CallbackAudio, FreeSwitchDouble

    callers: dict[str, ScriptedCaller] = {}
    with FreeSwitchDouble(password=password) as fs:
        conn.send(fs.inbound_port)
        while True:
            cmd, args = conn.recv()
            if cmd == "stop":
                conn.send([e.message for e in fs.fatal_errors])
                return
            if cmd == "place":
                engine_port, steps, quiet_s, loop_from, jitter_s, seed = args
                caller = ScriptedCaller(steps, quiet_s, loop_from, jitter_s, seed)
                uuid = fs.place_call(engine_port, codec="PCMU", rate=RATE, ptime=PTIME_MS, caller=CallbackAudio(caller))
                caller.channel = fs.channel(uuid)
                callers[uuid] = caller
                conn.send(uuid)
            elif cmd == "hangup":
                for uuid in args:
                    if not fs.channel(uuid).hung_up:
                        fs.hangup(uuid)
                conn.send(None)
            elif cmd == "hung_up":
                conn.send({uuid: fs.channel(uuid).hung_up for uuid in args})
            elif cmd == "report":
                out = {}
                for uuid in args:
                    caller, ch = callers.pop(uuid), fs.channel(uuid)
                    caller.ear.update(ch.packets_heard())
                    answered = ch.answered_at or 0.0
                    hangup = answered + (ch.hangup_us - ch.answered_us) / 1e6 if ch.hangup_us and ch.answered_us else None
                    out[uuid] = ear_report(caller, answered, hangup)
                conn.send(out)
            elif cmd == "cpu":
                t = os.times()
                conn.send(t.user + t.system)
            elif cmd == "run":  # ("module:function", args): function(fs, callers, *args) in this process
                module, name = args[0].split(":")
                conn.send(getattr(importlib.import_module(module), name)(fs, callers, *args[1]))


class DoubleHost:
    """The FreeSWITCH double in a child process. Use as a context manager; ``inbound_port`` for the engine."""

    def __init__(self, password: str = "bench") -> None:
        self.password = password

    def __enter__(self) -> DoubleHost:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve_double, args=(child, self.password), name="fsdouble", daemon=True)
        self.process.start()
        self.inbound_port: int = self._reply(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.fatal_errors: list[str] = self.call("stop", None, timeout=10)
        except (EOFError, OSError, TimeoutError):
            self.fatal_errors = ["the double's process did not stop cleanly"]
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()

    def _reply(self, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while not self._conn.poll():
            if time.monotonic() > deadline:
                raise TimeoutError("the double's process did not answer")
            if not self.process.is_alive():
                raise RuntimeError(f"the double's process died (exit code {self.process.exitcode})")
            _yield(0.005)
        return self._conn.recv()

    def call(self, cmd: str, args: Any, timeout: float = 30.0) -> Any:
        """Send one command, wait (yielding to gevent) for its reply."""
        self._conn.send((cmd, args))
        return self._reply(timeout)

    def place(self, engine_port: int, steps: list[Step], quiet_s: float = 0.7, loop_from: int | None = None,
              jitter_s: float = 0.0, seed: int = 0) -> str:
        """A caller dials the engine (see :class:`ScriptedCaller`); returns the call's uuid."""
        return str(self.call("place", (engine_port, steps, quiet_s, loop_from, jitter_s, seed)))

    def hung_up(self, uuids: Iterable[str]) -> dict[str, bool]:
        """Which of these calls are over."""
        return dict(self.call("hung_up", list(uuids)))

    def hangup(self, uuids: Iterable[str]) -> None:
        """The callers hang up."""
        self.call("hangup", list(uuids))

    def report(self, uuids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """:func:`ear_report` of each (finished) call."""
        return dict(self.call("report", list(uuids), timeout=120))

    def run(self, function: str, *args: Any, timeout: float = 60.0) -> Any:
        """``function`` ("module:name", importable in the child) called there as ``function(fs, callers, *args)``."""
        return self.call("run", (function, args), timeout=timeout)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the double's process has used."""
        return float(self.call("cpu", None))


def _yield(seconds: float) -> None:
    """Sleep cooperatively when gevent is loaded (the engine's greenlets run meanwhile)."""
    gevent = sys.modules.get("gevent")
    (gevent.sleep if gevent is not None else time.sleep)(seconds)


def wait_until(predicate: Callable[[], object], timeout: float, what: str, poll_s: float = 0.05) -> None:
    """Yield until ``predicate()``; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        _yield(poll_s)


# ---------------------------------------------------------------- the engine


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def engine_config(esl_port: int, tmp: Path, password: str = "bench", **overrides: Any) -> Any:
    """The example flow against the double; records under ``tmp``; the shared prompt cache."""
    from voicebot.config import EngineConfig

    values: dict[str, Any] = dict(
        esl_port=esl_port, esl_password=password, outbound_port=0, http_port=free_port(), default_flow=FLOW,
        records_db=str(tmp / "calls.sqlite"), recordings_dir=tmp / "rec", cache_dir=ROOT / ".voicebot-cache",
        media_ports=(44000, 45999), shutdown_deadline_s=2, max_calls=1000)
    values.update(overrides)
    return EngineConfig(**values)


SERVE_ASR = "pocketsphinx-pool"  # voicebot serve's asr.backend default (voicebot/configkeys.py; tests/test_engine_pool.py)


def register_pool_backend(backend: str) -> None:
    """``<inner>-pool`` backends (voicebot/asr/procpool.py) for the registry, until it names them itself."""
    from voicebot.asr import registry

    if backend.endswith("-pool") and backend not in registry.BACKENDS:
        from voicebot.asr.procpool import load_pool

        registry.BACKENDS[backend] = load_pool


def engine_figures(timelines: Iterable[Any]) -> dict[str, list[float]]:
    """Engine-side series (ms) from the calls' timelines."""
    out: dict[str, list[float]] = {"response_engine_ms": [], "barge_in_engine_ms": [], "asr_final_ms": [],
                                   "asr_finish_compute_ms": [], "tts_first_dynamic_ms": [], "tts_first_cached_ms": []}
    for timeline in timelines:
        for turn in timeline.turns():
            if turn["response_ms"] is not None:
                out["response_engine_ms"].append(turn["response_ms"])
            if turn["asr_final_ms"] is not None:
                out["asr_final_ms"].append(turn["asr_final_ms"])
        out["barge_in_engine_ms"] += [b["reaction_ms"] for b in timeline.barge_ins()]
        out["asr_finish_compute_ms"] += [f.get("compute_ms", 0) for f in timeline.of("final")]
        for play in timeline.of("play"):
            if play.get("tts_first_ms") is None:
                continue  # stopped before its first audio existed: no time to first audio
            key = "tts_first_cached_ms" if play.get("cached") else "tts_first_dynamic_ms"
            out[key].append(play["tts_first_ms"])
    return out


# ---------------------------------------------------------------- numbers


def pct(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (linear), or None for no values."""
    arr = np.asarray(list(values), dtype=float)
    return round(float(np.percentile(arr, q)), 1) if len(arr) else None


def summary(values: list[float]) -> dict[str, Any]:
    """n, p50, p95, p99, max."""
    return {"n": len(values), "p50": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99),
            "max": round(float(max(values)), 1) if values else None}


def fmt(v: Any) -> str:
    """A table cell."""
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def rss_mb() -> float:
    """This process's resident set size (MB), from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _spin(seconds: float, out: Any) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    out.put(time.process_time())


def available_cores(seconds: float = 0.5) -> float:
    """How many cores this run actually gets now: one busy process per CPU for ``seconds``, their CPU time / wall.

    On an idle machine it is the CPU count; on a shared one, what the others leave. Call it before the engine
    starts threads (it forks).
    """
    ctx = multiprocessing.get_context("fork")
    out = ctx.SimpleQueue()
    procs = [ctx.Process(target=_spin, args=(seconds, out)) for _ in range(os.cpu_count() or 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return round(sum(out.get() for _ in procs) / seconds, 2)


def machine() -> dict[str, Any]:
    """CPU count, model name, load average, and the commit (for the results file)."""
    import subprocess

    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu_model": model, "loadavg": [round(x, 2) for x in os.getloadavg()],
            "commit": commit + ("+dirty" if dirty else ""), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "python": sys.version.split()[0]}
