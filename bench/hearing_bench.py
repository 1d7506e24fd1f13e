"""Hearing: does the bot understand callers, yield to them, and answer promptly? Measured through the real pipeline.

Run: .venv/bin/python bench/hearing_bench.py [--quick] [--set bench/hearing_set.yaml]

Everything goes through the real call path at 8 kHz: ``load_pipeline`` (webrtc
VAD, PocketSphinx with the node's hint phrases, the dialog machine, the player,
Piper prompts from ``.voicebot-cache/prompts``), one :class:`CallSession` per
case fed 20 ms frames on a virtual clock with ASR compute charged to it
(``charge_compute=True``, as ``voicebot simulate``). Each case starts a fresh
call straight in its node (the flow's ``start`` replaced), so the node's real
prompt plays first. Ground truth comes from the audio (the first and last 10 ms
block above -40 dBFS, :func:`voicebot.sim.caller._speech_bounds`), never from
the pipeline. Nothing is typed in by hand: every number printed is computed
here. Criteria of the hearing issue, one section each:

1. Intent accuracy: each test-set turn is said ``gap_ms`` after the node's
   prompt ended; the machine's first logged turn is compared with the expected
   intent ("none": the bot must match nothing). Synthesized lines use the
   default Piper voice; the human clips (Debian pocketsphinx-testdata) say
   nothing the flow knows, so they are off-script turns expecting "none". Every
   miss is listed with what ASR heard and what the matcher makes of the
   reference text (so ASR errors and matcher errors are told apart). A what-if
   table replays each turn's first final under other rejection thresholds
   (PocketSphinx's off-script ``fit`` and the word posterior under which a word
   is [unk]): correct / false accepts / false rejects.
2. Barge-in: real caller lines start ``at_ms`` into a prompt of a node with the
   default policy; latency = timeline ``pause`` (or ``stop``, if it came first)
   - true speech onset; the same lines are also said over the bot's echo and
   ``QUIET_DB`` quieter. The confirmed stop (the machine's StopPlayback) comes
   later, once the words make it a request (two key words in a partial, or the
   final): the bot is already silent by then. False barge-ins: backchannels,
   coughs, clicks, white/pink line noise and the bot's own echo over the
   prompt; a *false barge-in* is a confirmed ``stop`` of the prompt; a pause
   that resumes is a *hesitation*.
3. End of turn: true end of speech -> ``final`` entry (compute included), split
   by ``speech_end`` reason (early: the partial already matched an intent with a
   high score; silence: the node's end_silence_ms; held: the partial ended in a
   filler or conjunction, so the end silence was longer). Turns the VAD cut at
   an inner pause before the caller finished are counted apart, not timed.
4. ASR finish compute (``final.compute_ms``) per turn, p50/p95. The ASR cost
   study itself is bench/asr_bench.py.

Caller lines are synthesized once and kept in ``.voicebot-cache/hearing/``:
Piper samples every take (noise_scale), so a fresh take can flip a borderline
case; reruns on the same cache are comparable, ``--fresh-takes`` measures the
spread. Compute time charged to the virtual clock can also move an event by a
20 ms tick from run to run.

Options change the pipeline for what-if runs (``--end-silence-ms``,
``--min-speech-ms``, ``--min-words``, ``--early-end-silence-ms``,
``--early-end-score``, ``--echo-loss-db``, ``--turn FIELD=VALUE`` for any
:class:`TurnSettings` field, ``--vad``, ``--no-hints``, ``--extra-hints``); the
results file records them. Results:
``bench/results/hearing.json`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot import yamlutil  # noqa: E402
from voicebot.asr.base import AsrResult  # noqa: E402
from voicebot.asr.pocketsphinx_asr import OFFSCRIPT_MIN_SPEECH_S, sure_text  # noqa: E402
from voicebot.asr.turns import TurnSettings  # noqa: E402
from voicebot.audio.frame import AudioFrame  # noqa: E402
from voicebot.audio.wav import read_wav, write_wav  # noqa: E402
from voicebot.call import CallSession  # noqa: E402
from voicebot.dialog.flow import BargeInMode, Flow  # noqa: E402
from voicebot.dialog.loader import load_flow  # noqa: E402
from voicebot.dialog.machine import DialogMachine  # noqa: E402
from voicebot.logs import configure  # noqa: E402
from voicebot.pipeline import Pipeline, PipelineConfig, load_pipeline  # noqa: E402
from voicebot.sim.agents import SimAgents  # noqa: E402
from voicebot.sim.caller import _speech_bounds, raw_or_wav  # noqa: E402
from voicebot.tts.render import voice_fingerprint  # noqa: E402

RATE = 8000
TICK_S = 0.02
FRAME = RATE // 50
FLOW_PATH = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
SET_PATH = ROOT / "bench" / "hearing_set.yaml"
RESULTS = ROOT / "bench" / "results" / "hearing.json"
PROMPT_CACHE = ROOT / ".voicebot-cache" / "prompts"
CALLER_CACHE = ROOT / ".voicebot-cache" / "hearing"

# targets of the hearing issue (printed next to the numbers; they decide PASS/FAIL labels only)
TARGET_ACCURACY = 0.95
TARGET_MIN_TURNS = 60
TARGET_BARGE_P95_MS = 120
TARGET_EOT_P50_MS = 300
QUIET_DB = -10  # barge-in lines also said this much quieter (a soft-spoken caller or a lossy line)


# ------------------------------------------------------------------ audio


class CallerAudio:
    """Caller lines at 8 kHz: synthesized with the default Piper voice (cached on disk) or read from recordings."""

    def __init__(self, pipeline: Pipeline, fresh: bool = False) -> None:
        self.cache = pipeline.cache
        self.fresh = fresh  # new takes, cache neither read nor written (Piper is stochastic: takes differ)
        self._voice_id: str | None = None
        self._mem: dict[str, np.ndarray] = {}
        self.synthesized = 0

    def say(self, text: str, take: int = 0) -> np.ndarray:
        """``text`` said by the caller; ``take`` > 0: another take of it (Piper samples each take), cached apart."""
        name = text if take == 0 else f"{text}\x00take{take}"
        if name not in self._mem:
            if self._voice_id is None:
                self._voice_id = voice_fingerprint(self.cache.pack)
            identity = ["caller-v1", self._voice_id, text, RATE] + ([take] if take else [])
            key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
            path = CALLER_CACHE / f"{key}.wav"
            audio = None
            if path.is_file() and not self.fresh:
                samples, rate = read_wav(path)
                audio = samples if rate == RATE and len(samples) else None
            if audio is None:
                audio = self.cache.synthesize(text, RATE)  # what `voicebot simulate` says for a caller line
                self.synthesized += 1
                if not self.fresh:
                    CALLER_CACHE.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".tmp")
                    write_wav(tmp, audio, RATE)
                    tmp.replace(path)
            self._mem[name] = audio
        return self._mem[name]

    @staticmethod
    def recording(path: str) -> np.ndarray:
        return raw_or_wav(path, RATE)


def white_noise(seconds: float, dbfs: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 32768 * 10 ** (dbfs / 20), int(seconds * RATE))


def pink_noise(seconds: float, dbfs: float, seed: int) -> np.ndarray:
    """1/f noise (FFT-shaped white noise), scaled to ``dbfs`` RMS."""
    n = int(seconds * RATE)
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    x = np.fft.irfft(spectrum, n)
    scaled: np.ndarray = x / np.sqrt(np.mean(x * x)) * 32768 * 10 ** (dbfs / 20)
    return scaled


def cough(ms: int, dbfs: float, seed: int) -> np.ndarray:
    """A cough-like noise burst: band-limited (150..3000 Hz) noise, 5 ms attack, exponential decay."""
    n = int(RATE * ms / 1000)
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.normal(0.0, 1.0, n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(freqs < 150) | (freqs > 3000)] = 0
    x = np.fft.irfft(spectrum, n)
    t = np.arange(n) / RATE
    envelope = np.minimum(1.0, t / 0.005) * np.exp(-t / max(0.01, ms / 1000 / 2.5))
    x *= envelope
    x = x / np.sqrt(np.mean(x * x)) * 32768 * 10 ** (dbfs / 20)
    return _pad(np.clip(x, -32768, 32767))


def clicks(count: int, peak: float, spacing_ms: int = 120) -> np.ndarray:
    """``count`` 5 ms impulses (a sharp edge ringing down), ``spacing_ms`` apart."""
    one = np.zeros(int(RATE * 0.005))
    one[0] = 1.0
    one[1:] = np.exp(-np.arange(1, len(one)) / 6.0) * np.cos(np.arange(1, len(one)) * 2.1)
    step = int(RATE * spacing_ms / 1000)
    x = np.zeros(step * (count - 1) + len(one))
    for i in range(count):
        x[i * step: i * step + len(one)] += one
    return _pad(x * peak * 32767)


def active_dbfs(audio: np.ndarray, threshold_dbfs: float = -40.0) -> float:
    """RMS level (dBFS) of the 10 ms blocks above ``threshold_dbfs`` (the speech, not the pauses)."""
    block = RATE // 100
    n = len(audio) // block
    blocks = audio[: n * block].astype(np.float64).reshape(n, block)
    power = np.mean(blocks * blocks, axis=1)
    loud = power[10 * np.log10(power / 32768**2 + 1e-12) > threshold_dbfs]
    return float(10 * np.log10(np.mean(loud) / 32768**2)) if len(loud) else -120.0


def longest_pause_ms(audio: np.ndarray, threshold_dbfs: float = -40.0) -> int:
    """The longest quiet stretch between the first and last loud 10 ms block (the same rule as the ground truth)."""
    block = RATE // 100
    n = len(audio) // block
    if n == 0:
        return 0
    blocks = audio[: n * block].astype(np.float64).reshape(n, block)
    level = 20 * np.log10(np.sqrt(np.mean(blocks * blocks, axis=1)) / 32768 + 1e-12)
    loud = np.flatnonzero(level > threshold_dbfs)
    return int((np.diff(loud).max() - 1) * 10) if len(loud) > 1 else 0


def _pad(x: np.ndarray, ms: int = 20) -> np.ndarray:
    """A little digital silence around a synthetic sound (so its bounds are inside the clip)."""
    z = np.zeros(RATE * ms // 1000)
    return np.concatenate([z, x, z])


# --------------------------------------------------------------- one call


@dataclass
class Case:
    """One simulated call: a clip said after the prompt (``mode`` after) or over it (over), plus line effects."""

    kind: str  # intent | barge | false
    node: str
    clip: np.ndarray | None
    label: str
    mode: str = "after"  # after | over
    at_ms: int = 0
    expect: str = ""
    source: str = "synth"  # synth | human | backchannel | cough | click | noise | echo
    noise: np.ndarray | None = None
    echo_db: float | None = None
    echo_delay_ms: int = 40
    ref_text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    """What one case produced: the timeline entries and the machine's turns, plus ground truth."""

    case: Case
    entries: list[dict[str, Any]]
    turns: list[Any]
    clip_start: float | None
    onset: float | None
    end: float | None
    first_play: int | None
    prompt_started: float | None
    prompt_over: bool  # the first prompt had finished (naturally) before the clip's onset
    wall_s: float
    echo_rejected: int = 0  # voiced caller frames the echo gate took for the bot's echo
    echo_learned: tuple[int, float] | None = None  # the echo gate's learned (delay ms, gain dB) at the end
    finals: list[AsrResult] = field(default_factory=list)  # what the recogniser returned, turn by turn


class Bench:
    """The loaded pipeline, per-node flows, and the loop that runs a case."""

    def __init__(self, pipeline: Pipeline, gap_ms: int, no_hints: bool, extra_hints: tuple[str, ...] = ()) -> None:
        self.pipeline = pipeline
        self.gap_s = gap_ms / 1000
        self.no_hints = no_hints
        self.extra_hints = extra_hints
        self._at: dict[str, Pipeline] = {}

    def session(self, node: str) -> CallSession:
        if node not in self._at:
            self._at[node] = replace(self.pipeline, flow=replace(self.pipeline.flow, start=node))
        session = self._at[node].session(charge_compute=True, handoff=SimAgents())
        if self.no_hints or self.extra_hints:
            session.asr = _Hints(session.asr, None if self.no_hints else self.extra_hints)
        session.asr = _Finals(session.asr)
        return session

    def run(self, case: Case, max_s: float = 60.0) -> Run:
        wall = time.perf_counter()
        session = self.session(case.node)
        machine = session.machine
        clip = case.clip.astype(np.float64) if case.clip is not None else None
        onset_s, end_s = _speech_bounds(case.clip, RATE) if case.clip is not None else (0.0, 0.0)
        bounds = (float(onset_s), float(end_s))
        clip_start: float | None = None
        bot_started: float | None = None
        first_play: int | None = None
        heard_bot, quiet_since = False, None
        echo: list[np.ndarray] = []
        echo_gain = 10 ** (case.echo_db / 20) if case.echo_db is not None else 0.0
        delay = max(1, case.echo_delay_ms // 20)
        prompt_over = False
        session.start(0.0, {})
        t, seq = 0.0, 0
        while t < max_s and not session.ended:
            if clip is not None and clip_start is None:
                if case.mode == "over" and bot_started is not None and t - bot_started >= case.at_ms / 1000 - 1e-9:
                    clip_start = t
                    prompt_over = not session.player.talking
                elif case.mode == "after" and heard_bot and quiet_since is not None and t - quiet_since >= self.gap_s - 1e-9:
                    clip_start = t
            frame = np.zeros(FRAME)
            if clip is not None and clip_start is not None:
                i = seq - round(clip_start / TICK_S)
                piece = clip[i * FRAME: (i + 1) * FRAME]
                frame[: len(piece)] += piece
            if case.noise is not None:
                piece = case.noise[seq * FRAME: (seq + 1) * FRAME]
                frame[: len(piece)] += piece
            if echo_gain and len(echo) >= delay:
                frame += echo[-delay] * echo_gain
            samples = np.clip(np.round(frame), -32768, 32767).astype(np.int16)
            session.caller_frame(AudioFrame(samples.tobytes(), RATE, seq, t))
            if session.ended:
                break
            bot = session.bot_frame(t)
            if bot_started is None and session.player.prompts_started:
                bot_started, first_play = t, session.player.play_id
            talking = bot is not None and bool(np.any(bot))
            heard_bot = heard_bot or talking
            quiet_since = None if talking else (quiet_since if quiet_since is not None else t)
            echo.append(bot.astype(np.float64) if bot is not None else np.zeros(FRAME))
            t, seq = round(t + TICK_S, 6), seq + 1
            if self._done(case, session, clip_start, bounds, t, first_play):
                break
        turns = list(machine.outcome.turns)
        session.asr.close()
        onset = clip_start + bounds[0] if clip_start is not None else None
        end = clip_start + bounds[1] if clip_start is not None else None
        return Run(case, list(session.timeline.entries), turns, clip_start, onset, end, first_play, bot_started,
                   prompt_over, time.perf_counter() - wall, session.turns.echo_rejected, _echo_learned(session),
                   list(session.asr.finals))

    @staticmethod
    def _done(case: Case, session: CallSession, clip_start: float | None, bounds: tuple[float, float],
              t: float, first_play: int | None) -> bool:
        machine = session.machine
        if case.kind == "intent":
            if clip_start is None:
                return False
            return bool(machine.outcome.turns) or t > clip_start + bounds[1] + 5.0
        if case.kind == "barge":
            if clip_start is None:
                return False
            said = t > clip_start + bounds[1]
            return (said and any(not turn.ignored for turn in machine.outcome.turns)) or t > clip_start + bounds[1] + 4.0
        # false barge-in: until the first prompt is over (naturally or stopped) and the caller's clip is said
        playing = session.player.play_id == first_play and first_play is not None
        clip_said = case.clip is None or (clip_start is not None and t > clip_start + len(case.clip) / RATE + 1.0)
        return first_play is not None and not playing and clip_said


def _echo_learned(session: CallSession) -> tuple[int, float] | None:
    """The echo gate's learned echo path (delay in ms, gain in dB), or None while it still uses its fallback."""
    gate = session.turns.echo
    if gate.delay_frames is None or gate.learned < gate.learn_frames:
        return None
    return round(gate.delay_ms), round(10 * float(np.log10(max(gate.gain, 1e-12))), 1)


class _Finals:
    """An ASR stream that keeps every final it returns (for the rejection what-ifs)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.finals: list[AsrResult] = []

    def finish(self) -> AsrResult:
        result: AsrResult = self._inner.finish()
        self.finals.append(result)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Hints:
    """An ASR stream whose node hints are dropped (``extra`` None: the full LM) or extended: what-if runs only."""

    def __init__(self, inner: Any, extra: tuple[str, ...] | None) -> None:
        self._inner = inner
        self._extra = extra

    def set_hints(self, phrases: Any) -> None:
        self._inner.set_hints(() if self._extra is None else (*phrases, *self._extra))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# ------------------------------------------------------------- the cases


def flow_with(flow: Flow, end_silence_ms: int | None, min_speech_ms: int | None, min_words: int | None) -> Flow:
    """The flow with every listening node's end silence and/or barge-in min_speech_ms / min_words overridden."""
    nodes = {}
    for node_id, node in flow.nodes.items():
        if node.listen is not None and end_silence_ms is not None:
            node = replace(node, listen=replace(node.listen, end_silence_ms=end_silence_ms))
        if min_speech_ms is not None:
            node = replace(node, barge_in=replace(node.barge_in, min_speech_ms=min_speech_ms))
        if min_words is not None:
            node = replace(node, barge_in=replace(node.barge_in, min_words=min_words))
        nodes[node_id] = node
    return replace(flow, nodes=nodes)


def turn_with(turn: TurnSettings, assignments: list[str]) -> TurnSettings:
    """``turn`` with FIELD=VALUE assignments applied (values converted to the field's type)."""
    for item in assignments:
        name, _, value = item.partition("=")
        if name not in vars(turn):
            raise SystemExit(f"--turn {item}: TurnSettings has no field {name!r}; fields: {', '.join(vars(turn))}")
        turn = replace(turn, **{name: type(getattr(turn, name))(value)})
    return turn


def intent_cases(spec: dict[str, Any], audio: CallerAudio, quick: bool, takes: int = 1) -> list[Case]:
    """One case per turn of the set; synthesized lines ``takes`` times (different takes), recordings once."""
    out = []
    for item in spec["turns"]:
        if quick and not item.get("quick"):
            continue
        expect = str(item["expect"])
        if "say" in item:
            text = str(item["say"])
            out += [Case("intent", item["node"], audio.say(text, take), text, expect=expect, source="synth", ref_text=text,
                         extra={"take": take}) for take in range(takes)]
        else:
            path = str(item.get("wav") or item.get("raw"))
            out.append(Case("intent", item["node"], audio.recording(path), Path(path).name, expect=expect,
                            source="human", ref_text=str(item.get("text", ""))))
    return out


def default_policy_nodes(flow: Flow, wanted: list[str]) -> list[str]:
    """The wanted nodes whose barge-in policy is plain ``on`` (the flow default)."""
    return [n for n in wanted if flow.nodes[n].listen is not None and flow.nodes[n].barge_in.mode is BargeInMode.ON]


def barge_cases(spec: dict[str, Any], flow: Flow, audio: CallerAudio, quick: bool) -> list[Case]:
    cfg = spec["barge_in"]
    lines = cfg["lines"][: int(cfg.get("quick_lines", 2))] if quick else cfg["lines"]
    at_list = cfg["at_ms"][:2] if quick else cfg["at_ms"]
    nodes = default_policy_nodes(flow, cfg["nodes"])
    out = [Case("barge", node, audio.say(line), line, mode="over", at_ms=int(at), source="clean", ref_text=line)
           for node in nodes for at in at_list for line in lines]
    echo = spec["false_barge_in"]
    out += [Case("barge", node, audio.say(line), line, mode="over", at_ms=int(at_list[0]), source="echo",
                 echo_db=float(echo["echo_db"]), echo_delay_ms=int(echo["echo_delay_ms"]), ref_text=line)
            for node in (nodes[:1] if quick else nodes) for line in lines]
    gain = 10 ** (QUIET_DB / 20)
    out += [Case("barge", node, (audio.say(line) * gain).astype(np.int16), line, mode="over", at_ms=int(at_list[0]),
                 source="quiet", ref_text=line)
            for node in (nodes[:1] if quick else nodes) for line in lines]
    return out


def false_cases(spec: dict[str, Any], flow: Flow, audio: CallerAudio, quick: bool) -> list[Case]:
    cfg = spec["false_barge_in"]
    nodes = default_policy_nodes(flow, cfg["nodes"])
    at_list = [int(a) for a in cfg["at_ms"]]
    out: list[Case] = []
    long_s = 40.0
    for node in nodes[:1] if quick else nodes:
        for at in at_list[:1] if quick else at_list:
            for word in cfg["backchannels"]:
                out.append(Case("false", node, audio.say(word), word, mode="over", at_ms=at, source="backchannel",
                                ref_text=word))
        at = at_list[0]
        coughs = [(ms, db) for ms in cfg["coughs_ms"] for db in cfg["cough_dbfs"]]
        for k, (ms, db) in enumerate(coughs[-2:] if quick else coughs):
            out.append(Case("false", node, cough(int(ms), float(db), seed=100 + k), f"cough {ms} ms {db} dBFS",
                            mode="over", at_ms=at, source="cough"))
        click_sets = [(n, p) for n in cfg["clicks"] for p in cfg["click_peak"]]
        for n, p in click_sets[-1:] if quick else click_sets:
            out.append(Case("false", node, clicks(int(n), float(p)), f"{n} click(s) 5 ms peak {p}", mode="over",
                            at_ms=at, source="click"))
        levels = cfg["noise_dbfs"][:1] if quick else cfg["noise_dbfs"]
        for k, db in enumerate(levels):
            out.append(Case("false", node, None, f"white noise {db} dBFS", source="noise",
                            noise=white_noise(long_s, float(db), seed=200 + k)))
            out.append(Case("false", node, None, f"pink noise {db} dBFS", source="noise",
                            noise=pink_noise(long_s, float(db), seed=300 + k)))
        echo_db, delay = float(cfg["echo_db"]), int(cfg["echo_delay_ms"])
        out.append(Case("false", node, None, f"bot echo {echo_db:g} dB {delay} ms", source="echo",
                        echo_db=echo_db, echo_delay_ms=delay))
        if not quick:
            out.append(Case("false", node, None, f"bot echo {echo_db:g} dB + white noise -50 dBFS", source="echo",
                            echo_db=echo_db, echo_delay_ms=delay, noise=white_noise(long_s, -50.0, seed=400)))
            for word in cfg["backchannels"][:2]:
                out.append(Case("false", node, audio.say(word), f"{word} + bot echo {echo_db:g} dB", mode="over",
                                at_ms=at, source="backchannel", echo_db=echo_db, echo_delay_ms=delay, ref_text=word))
    return out


# ------------------------------------------------------------- analysis


def pct(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    p50, p95 = np.percentile(values, [50, 95])
    return {"n": len(values), "p50": round(float(p50)), "p95": round(float(p95)), "max": round(float(max(values)))}


def fmt(stats: dict[str, Any]) -> str:
    if not stats["n"]:
        return "n=0"
    return f"p50 {stats['p50']} ms, p95 {stats['p95']} ms, max {stats['max']} ms (n={stats['n']})"


def text_intent(machine: DialogMachine, node: str, text: str) -> str:
    """What the dialog machine's matcher makes of ``text`` in ``node`` (no audio involved)."""
    match = machine._match(machine.flow.nodes[node], text)  # the machine's own rule: node routes + globals, ties
    return match.intent if match else "none"


def after(entries: list[dict[str, Any]], kind: str, since: float) -> list[dict[str, Any]]:
    return [e for e in entries if e["kind"] == kind and e["t"] >= since - 1e-9]


WHATIF_FIT = (None, -20.0, -18.0, -17.0, -16.0, -15.0, -14.0)  # off-script rejection thresholds (fit below: none)
WHATIF_POSTERIOR = (0.0, 0.2, 0.3, 0.4)  # word posterior below which a word is [unk]


def rejection_intent(reference: DialogMachine, node: str, final: AsrResult, fit: float | None, posterior: float) -> str:
    """The intent the first final would give with these rejection thresholds (same words, same fit, same rules)."""
    speech_s = sum(w.end_s - w.start_s for w in final.words)
    if fit is not None and final.fit is not None and final.fit < fit and speech_s >= OFFSCRIPT_MIN_SPEECH_S:
        return "none"
    hints = [" ".join(re.findall(r"[a-z0-9']+", h.lower()))
             for h in reference.matcher.hint_phrases(reference._allowed_intents(reference.flow.nodes[node]))]
    text = sure_text(final.words, hints, posterior) if final.words else final.text
    return text_intent(reference, node, text)


def analyse_intent(run: Run, reference: DialogMachine) -> dict[str, Any]:
    case = run.case
    heard = [e["text"] for e in after(run.entries, "final", run.clip_start or 0.0)]
    turn = next((tn for tn in run.turns if not tn.ignored), None)
    got = (turn.intent or "none") if turn is not None else "none"
    ends = after(run.entries, "speech_end", run.clip_start or 0.0)
    finals = after(run.entries, "final", run.clip_start or 0.0)
    record: dict[str, Any] = {
        "node": case.node, "source": case.source, "label": case.label, "said": case.ref_text, "expect": case.expect,
        "take": case.extra.get("take", 0), "got": got, "ok": got == case.expect, "heard": heard[0] if heard else None,
        "finals": heard, "score": round(turn.score, 3) if turn is not None else None,
        "text_intent": text_intent(reference, case.node, case.ref_text) if case.source == "synth" else "none",
        "onset_s": run.onset, "end_s": run.end, "wall_s": round(run.wall_s, 3),
        "inner_pause_ms": longest_pause_ms(case.clip) if case.clip is not None else 0,
        "fit": round(run.finals[0].fit, 2) if run.finals and run.finals[0].fit is not None else None,
        "words": [(w.text, round(w.confidence, 2)) for w in run.finals[0].words] if run.finals else [],
    }
    record["whatif"] = {f"{fit}|{post}": rejection_intent(reference, case.node, run.finals[0], fit, post)
                        for fit in WHATIF_FIT for post in WHATIF_POSTERIOR} if run.finals else {}
    if ends and finals and run.end is not None:
        end, final = ends[0], finals[0]
        record["speech_end_reason"] = end.get("reason")
        record["confidence"] = final.get("confidence")
        record["compute_ms"] = final.get("compute_ms")
        # a turn that ended at an inner pause (VAD end dated well before the true end) is split, not timed
        record["split"] = bool(end["t"] < run.end - 0.1)
        record["eot_ms"] = None if record["split"] else round(1000 * (final["t"] - run.end))
        record["vad_end_ms"] = round(1000 * (end["t"] - run.end))
    else:
        record.update(speech_end_reason=None, confidence=None, compute_ms=None, split=False, eot_ms=None, vad_end_ms=None)
    return record


def analyse_barge(run: Run) -> dict[str, Any]:
    case = run.case
    since = run.clip_start or 0.0
    pauses = after(run.entries, "pause", since)
    stops = [e for e in after(run.entries, "stop", since) if e.get("play_id") == run.first_play]
    resumes = after(run.entries, "resume", since)
    heard = [e["text"] for e in after(run.entries, "final", since)]
    turn = next((tn for tn in run.turns if not tn.ignored), None)
    # the bot falls silent at the first pause, or at the stop when a partial met min_words in the same frame
    silent = min([e["t"] for e in pauses] + [e["t"] for e in stops], default=None)
    record: dict[str, Any] = {
        "node": case.node, "at_ms": case.at_ms, "said": case.ref_text, "line": case.source, "onset_s": run.onset,
        "prompt_over": run.prompt_over, "paused": silent is not None, "stopped": bool(stops), "resumed": bool(resumes),
        "pause_ms": round(1000 * (silent - run.onset)) if silent is not None and run.onset is not None else None,
        "via": "pause" if pauses and (not stops or pauses[0]["t"] <= stops[0]["t"]) else ("stop" if stops else None),
        "stop_ms": round(1000 * (stops[0]["t"] - run.onset)) if stops and run.onset is not None else None,
        "heard": heard, "intent": (turn.intent or "none") if turn is not None else None,
        "echo_rejected": run.echo_rejected, "echo_learned": run.echo_learned,
        "level_dbfs": round(active_dbfs(case.clip), 1) if case.clip is not None else None,
        "wall_s": round(run.wall_s, 3),
    }
    return record


def analyse_false(run: Run) -> dict[str, Any]:
    case = run.case
    prompt_start = run.prompt_started or 0.0
    stops = [e for e in run.entries if e["kind"] == "stop" and e.get("play_id") == run.first_play]
    pauses = [e for e in run.entries if e["kind"] == "pause" and e.get("play_id") == run.first_play]
    resumes = [e for e in run.entries if e["kind"] == "resume" and e.get("play_id") == run.first_play]
    finals = [e for e in run.entries if e["kind"] == "final" and e["t"] >= prompt_start]
    stop_partial = None
    if stops:
        partials = [e["text"] for e in run.entries if e["kind"] == "partial" and e["t"] <= stops[0]["t"] + 1e-9]
        stop_partial = partials[-1] if partials else None
    return {
        "pause_at_ms": [round(1000 * (e["t"] - prompt_start)) for e in pauses],
        "stop_partial": stop_partial,
        "node": case.node, "source": case.source, "label": case.label, "at_ms": case.at_ms,
        "prompt_over": run.prompt_over, "pauses": len(pauses), "resumes": len(resumes), "stopped": bool(stops),
        "speech_starts": len([e for e in run.entries if e["kind"] == "speech_start" and e["t"] >= prompt_start]),
        "heard": [e["text"] for e in finals if e["text"]],
        "echo_learned": run.echo_learned, "wall_s": round(run.wall_s, 3),
    }


# ----------------------------------------------------------------- report


def report_intents(records: list[dict[str, Any]]) -> dict[str, Any]:
    ok = sum(r["ok"] for r in records)
    n = len(records)
    acc = ok / n if n else 0.0
    by_source = {s: (sum(r["ok"] for r in records if r["source"] == s), sum(r["source"] == s for r in records))
                 for s in ("synth", "human")}
    verdict = "PASS" if acc >= TARGET_ACCURACY and n >= TARGET_MIN_TURNS else "FAIL"
    if n < TARGET_MIN_TURNS:
        verdict += f" (only {n} turns: quick mode)" if n else ""
    print("== 1. intent recognition: VAD + ASR (PocketSphinx, node hints) + intent matching, 8 kHz ==")
    print(f"intent accuracy: {ok}/{n} = {100 * acc:.1f}%  (target >= {100 * TARGET_ACCURACY:.0f}% over >= "
          f"{TARGET_MIN_TURNS} turns): {verdict}")
    print(f"  synthesized lines (Piper default voice): {by_source['synth'][0]}/{by_source['synth'][1]};  "
          f"human clips (pocketsphinx-testdata, off-script, expected 'none': a false accept is a miss): "
          f"{by_source['human'][0]}/{by_source['human'][1]}")
    takes = sorted({r["take"] for r in records if r["source"] == "synth"})
    by_take = {t: (sum(r["ok"] for r in records if r["source"] == "synth" and r["take"] == t),
                   sum(r["source"] == "synth" and r["take"] == t for r in records)) for t in takes}
    if len(takes) > 1:
        print(f"  {len(takes)} takes of each synthesized line, correct per take: "
              + ", ".join(f"{ok_t}/{n_t}" for ok_t, n_t in by_take.values()))
    per_node = Counter(r["node"] for r in records)
    per_node_ok = Counter(r["node"] for r in records if r["ok"])
    print("  per node: " + ", ".join(f"{k} {per_node_ok[k]}/{v}" for k, v in per_node.items()))
    expected_none = [r for r in records if r["expect"] == "none"]
    print(f"  expected 'none' (off-script): {sum(r['ok'] for r in expected_none)}/{len(expected_none)} rejected; "
          f"expected an intent: {sum(r['ok'] for r in records if r['expect'] != 'none')}/"
          f"{sum(r['expect'] != 'none' for r in records)}")
    misses = [r for r in records if not r["ok"]]
    print(f"  misses ({len(misses)}):" if misses else "  misses: none")
    for r in misses:
        said = r["said"] or r["label"]
        if r["text_intent"] != r["expect"]:
            cause = f"matcher/flow: the reference text itself gives {r['text_intent']}"
        elif r["split"]:
            cause = f"turn cut at an inner pause ({r['speech_end_reason']} end of turn), then ASR"
        elif r["heard"] is None:
            cause = "no transcript (VAD heard no turn)"
        else:
            cause = "ASR"
        more = f" (then {r['finals'][1:]!r})" if len(r["finals"]) > 1 else ""
        print(f"    [{r['node']}] {r['source']}: said {said!r}  expected {r['expect']}, got {r['got']}; "
              f"ASR heard {r['heard']!r}{more}  -> {cause}" + (f" [{r['label']}]" if r["source"] == "human" else ""))
    gate = report_rejection(records)
    return {"ok": ok, "n": n, "accuracy": round(acc, 4), "by_source": by_source, "takes": len(takes),
            "synth_by_take": list(by_take.values()), "verdict": verdict, "rejection_whatif": gate}


def report_rejection(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What-if table: the same first finals under other off-script (fit) and word-posterior thresholds."""
    timed = [r for r in records if r["whatif"]]
    print(f"  what-if, same audio and words ({len(timed)} turns with a final): correct / false accepts (off-script "
          "matched an intent) / false rejects (an intent turn matched none) by off-script fit threshold (rows) "
          "and word posterior for [unk] (columns):")
    print("    fit \\ posterior " + "".join(f"{p:>14g}" for p in WHATIF_POSTERIOR))
    table: dict[str, Any] = {}
    for fit in WHATIF_FIT:
        cells = []
        for post in WHATIF_POSTERIOR:
            key = f"{fit}|{post}"
            got = [(r["whatif"][key], r["expect"]) for r in timed]
            ok = sum(g == e for g, e in got)
            fa = sum(e == "none" and g != "none" for g, e in got)
            fr = sum(e != "none" and g == "none" for g, e in got)
            table[key] = {"ok": ok, "false_accepts": fa, "false_rejects": fr}
            cells.append(f"{ok:>6}/{fa}/{fr}".rjust(14))
        print(f"    {'off' if fit is None else f'{fit:g}':>17} " + "".join(cells))
    return table


def report_barge(barges: list[dict[str, Any]], falses: list[dict[str, Any]], policy: str, prompt_dbfs: float,
                 echo_loss_db: float) -> dict[str, Any]:
    valid = [b for b in barges if not b["prompt_over"]]
    clean = [b for b in valid if b["line"] == "clean"]
    echoed = [b for b in valid if b["line"] == "echo"]
    quiet = [b for b in valid if b["line"] == "quiet"]
    lat = pct([b["pause_ms"] for b in clean if b["pause_ms"] is not None])
    lat_echo = pct([b["pause_ms"] for b in echoed if b["pause_ms"] is not None])
    lat_quiet = pct([b["pause_ms"] for b in quiet if b["pause_ms"] is not None])
    level = pct([b["level_dbfs"] for b in clean])
    stop_lat = pct([b["stop_ms"] for b in clean if b["stop_ms"] is not None])
    not_paused = [b for b in valid if not b["paused"]]
    not_stopped = [b for b in valid if b["paused"] and not b["stopped"]]
    verdict = "PASS" if lat["n"] and lat["p95"] <= TARGET_BARGE_P95_MS else "FAIL"
    print(f"\n== 2. barge-in: policy {policy} ==")
    print(f"barge-in latency (true speech onset -> bot pauses, or stops if that comes first): {fmt(lat)}  "
          f"(target p95 <= {TARGET_BARGE_P95_MS} ms): {verdict}")
    print(f"  caller lines at {level['p50']} dBFS (speech-active RMS, p50) over prompts at "
          f"{prompt_dbfs:g} dBFS; echo gate (learned echo path, bot level - {echo_loss_db:g} dB until learned) "
          f"rejected caller frames in {sum(b['echo_rejected'] > 0 for b in clean)}/{len(clean)} "
          f"(max {max((b['echo_rejected'] for b in clean), default=0)} frames)")
    learned = Counter(str(tuple(b["echo_learned"])) if b["echo_learned"] else "not learned" for b in echoed)
    print(f"  same lines with the bot's echo on the line: {fmt(lat_echo)}; learned (delay ms, gain dB): "
          + ", ".join(f"{k} x{v}" for k, v in learned.most_common()))
    print(f"  same lines {-QUIET_DB} dB quieter: {fmt(lat_quiet)}; echo gate rejected frames in "
          f"{sum(b['echo_rejected'] > 0 for b in quiet)}/{len(quiet)}")
    print(f"  onset -> confirmed stop (words made it a request: partial or final; the bot was silent already): "
          f"{fmt(stop_lat)}")
    print(f"  real interruptions: {len(valid)} ({len(barges) - len(valid)} skipped: prompt already over); "
          f"never paused: {len(not_paused)}; paused but not stopped (resumed): {len(not_stopped)}")
    for b in not_paused + not_stopped:
        print(f"    [{b['node']} +{b['at_ms']} ms, {b['line']}] {b['said']!r}: paused={b['paused']} "
              f"stopped={b['stopped']} heard {b['heard']!r}")
    valid_false = [f for f in falses if not f["prompt_over"]]
    stops = [f for f in valid_false if f["stopped"]]
    hesitations = [f for f in valid_false if f["pauses"] and not f["stopped"]]
    verdict_f = "PASS" if not stops else "FAIL"
    print(f"false barge-ins (confirmed stops): {len(stops)}/{len(valid_false)}  (target 0): {verdict_f};  "
          f"hesitations (paused then resumed, not a stop): {len(hesitations)}/{len(valid_false)}")
    print(f"  {'set':<12} {'cases':>5} {'stops':>5} {'hesit.':>6}  stopped on partial -> final heard")
    for source in ("backchannel", "cough", "click", "noise", "echo"):
        group = [f for f in valid_false if f["source"] == source]
        if not group:
            continue
        why = Counter(f"{f['stop_partial']!r}->{f['heard'][0] if f['heard'] else ''!r}" for f in group if f["stopped"])
        print(f"  {source:<12} {len(group):>5} {sum(f['stopped'] for f in group):>5} "
              f"{sum(bool(f['pauses']) and not f['stopped'] for f in group):>6}  "
              f"{', '.join(f'{k} x{v}' for k, v in why.most_common()) or '-'}")
    for f in stops:
        print(f"    FALSE BARGE-IN [{f['node']} +{f['at_ms']} ms] {f['label']}: stopped on partial {f['stop_partial']!r}, "
              f"final {f['heard']!r}")
    grouped: dict[str, list[dict[str, Any]]] = {}
    for f in hesitations:
        grouped.setdefault(f["label"], []).append(f)
    for label, group in grouped.items():
        at = sorted({ms for f in group for ms in f["pause_at_ms"]})
        heard = sorted({h for f in group for h in f["heard"]})
        where = f"said +{sorted({f['at_ms'] for f in group})} ms" if group[0]["source"] not in ("noise", "echo") \
            else "whole call"
        print(f"    hesitation x{len(group)} ({', '.join(f['node'] for f in group)}) {label} [{where}]: paused at {at} ms "
              f"into the prompt, final {heard or '(empty)'}")
    return {"latency": lat, "latency_with_echo": lat_echo, "latency_quiet": lat_quiet, "stop_latency": stop_lat,
            "interruptions": len(valid),
            "never_paused": len(not_paused), "not_stopped": len(not_stopped), "false_cases": len(valid_false),
            "false_stops": len(stops), "hesitations": len(hesitations), "verdict_latency": verdict,
            "verdict_false": verdict_f}


def report_eot(records: list[dict[str, Any]], end_silence: dict[str, int], turn: TurnSettings) -> dict[str, Any]:
    timed = [r for r in records if r["eot_ms"] is not None]
    all_stats = pct([r["eot_ms"] for r in timed])
    early = pct([r["eot_ms"] for r in timed if r["speech_end_reason"] == "early"])
    silence = pct([r["eot_ms"] for r in timed if r["speech_end_reason"] == "silence"])
    held = pct([r["eot_ms"] for r in timed if r["speech_end_reason"] == "held"])
    other = [r for r in timed if r["speech_end_reason"] not in ("early", "silence", "held")]
    vad = pct([r["vad_end_ms"] for r in timed])
    split = [r for r in records if r["split"]]
    verdict = "PASS" if all_stats["n"] and all_stats["p50"] <= TARGET_EOT_P50_MS else "FAIL"
    silences = sorted(set(end_silence.values()))
    print("\n== 3. end of turn: true end of speech -> final transcript (ASR compute charged) ==")
    print(f"end of turn: all {fmt(all_stats)}  (target p50 <= {TARGET_EOT_P50_MS} ms): {verdict}")
    print(f"  early end-of-turn fired ({turn.early_end_silence_ms} ms silence, partial scored >= {turn.early_end_score}, "
          f">= {turn.early_end_min_words} words or stable {turn.early_end_stable_ms} ms): {fmt(early)}")
    print(f"  end silence ({'/'.join(map(str, silences))} ms, the nodes' end_silence_ms): {fmt(silence)}"
          + (f";  other reasons: {len(other)}" if other else ""))
    print(f"  held (partial ended in a filler/conjunction: end silence + {turn.hold_extra_ms} ms): {fmt(held)}")
    print(f"  VAD's last voiced frame vs true end: {fmt(vad)};  turns cut at an inner pause (not timed): {len(split)} "
          f"({sum(r['source'] == 'human' for r in split)} human)")
    for source, name in (("synth", "synthesized"), ("human", "human")):
        pauses = [r["inner_pause_ms"] for r in records if r["source"] == source]
        if pauses:
            print(f"  longest pause inside each {name} caller line (audio < -40 dBFS): {fmt(pct(pauses))}; "
                  f">= {min(silences)} ms in {sum(p >= min(silences) for p in pauses)}, "
                  f">= {turn.early_end_silence_ms} ms in {sum(p >= turn.early_end_silence_ms for p in pauses)}")
    return {"all": all_stats, "early": early, "silence": silence, "held": held, "vad_end": vad, "split": len(split),
            "verdict": verdict}


def report_compute(records: list[dict[str, Any]], barges: list[dict[str, Any]], entries_compute: list[int]) -> dict[str, Any]:
    stats = pct([float(x) for x in entries_compute])
    print("\n== 4. ASR finish compute per turn (decoder end_utt; the cost study is bench/asr_bench.py) ==")
    print(f"asr finish compute: {fmt(stats)}")
    return stats


# ------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small subset (smoke test, < 60 s)")
    parser.add_argument("--set", type=Path, default=SET_PATH, help="the test set YAML")
    parser.add_argument("--json", type=Path, default=None, help=f"results file (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--only", choices=("intent", "barge", "all"), default="all")
    parser.add_argument("--end-silence-ms", type=int, help="what-if: every listening node's end_silence_ms")
    parser.add_argument("--min-speech-ms", type=int, help="what-if: every node's barge-in min_speech_ms")
    parser.add_argument("--min-words", type=int, help="what-if: every node's barge-in min_words")
    parser.add_argument("--early-end-silence-ms", type=int, help="what-if: TurnSettings.early_end_silence_ms")
    parser.add_argument("--early-end-score", type=float, help="what-if: TurnSettings.early_end_score")
    parser.add_argument("--echo-loss-db", type=float, help="what-if: TurnSettings.echo_return_loss_db")
    parser.add_argument("--turn", action="append", default=[], metavar="FIELD=VALUE",
                        help="what-if: any TurnSettings field, e.g. --turn hold_extra_ms=200 (repeatable)")
    parser.add_argument("--vad", choices=("webrtc", "silero"), default="webrtc")
    parser.add_argument("--no-hints", action="store_true", help="what-if: decode with the full LM, no node hints")
    parser.add_argument("--extra-hints", default="", help="what-if: comma-separated phrases added to every node's hints")
    parser.add_argument("--takes", type=int, default=1,
                        help="takes of each synthesized intent line (default 1; recordings count once): a figure "
                             "over several takes does not hang on one lucky or unlucky take")
    parser.add_argument("--fresh-takes", action="store_true",
                        help="synthesize new takes of the caller lines (not read from or written to the cache)")
    parser.add_argument("--verbose", action="store_true", help="print every case as it runs")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    log = io.StringIO()
    configure(json=True, stream=log)  # the pipeline's log lines are summarised at the end, not interleaved
    spec = yamlutil.load(args.set.read_text(encoding="utf-8"))
    flow = flow_with(load_flow(FLOW_PATH), args.end_silence_ms, args.min_speech_ms, args.min_words)
    turn = TurnSettings()
    if args.early_end_silence_ms is not None:
        turn = replace(turn, early_end_silence_ms=args.early_end_silence_ms)
    if args.early_end_score is not None:
        turn = replace(turn, early_end_score=args.early_end_score)
    if args.echo_loss_db is not None:
        turn = replace(turn, echo_return_loss_db=args.echo_loss_db)
    turn = turn_with(turn, args.turn)
    config = PipelineConfig(rate=RATE, vad=args.vad, vad_options={} if args.vad == "silero" else {"aggressiveness": 2},
                            cache_dir=PROMPT_CACHE, turn=turn)
    pipeline = load_pipeline(flow, config)
    extra = tuple(h.strip() for h in args.extra_hints.split(",") if h.strip())
    bench = Bench(pipeline, int(spec.get("gap_ms", 400)), args.no_hints, extra)
    audio = CallerAudio(pipeline, args.fresh_takes)
    reference = DialogMachine(flow, matcher=pipeline.matcher)
    options = {k: v for k, v in vars(args).items() if k not in ("set", "json", "verbose") and v not in (None, False, "")}
    print(f"hearing bench: flow {flow.id}, {RATE} Hz, VAD {args.vad}, ASR {pipeline.asr.name}"
          f"{' (no hints)' if args.no_hints else ' with node hints'}{f' + {list(extra)}' if extra else ''}; "
          f"loaded in {pipeline.load_seconds:.1f} s"
          + (f"; options {options}" if options else ""), flush=True)

    cases: list[Case] = []
    if args.only in ("intent", "all"):
        cases += intent_cases(spec, audio, args.quick, args.takes)
    if args.only in ("barge", "all"):
        cases += barge_cases(spec, flow, audio, args.quick) + false_cases(spec, flow, audio, args.quick)
    print(f"{len(cases)} simulated calls ({dict(Counter(c.kind for c in cases))}); caller lines synthesized now: "
          f"{audio.synthesized}{' (fresh takes)' if args.fresh_takes else f', others from {CALLER_CACHE.relative_to(ROOT)}/'}"
          " (Piper samples each take: a new take can change a result)", flush=True)

    intents, barges, falses, computes = [], [], [], []
    for i, case in enumerate(cases):
        run = bench.run(case)
        computes += [e["compute_ms"] for e in run.entries if e["kind"] == "final" and run.clip_start is not None
                     and e["t"] >= run.clip_start and case.kind == "intent"]
        if case.kind == "intent":
            rec = analyse_intent(run, reference)
            intents.append(rec)
        elif case.kind == "barge":
            rec = analyse_barge(run)
            barges.append(rec)
        else:
            rec = analyse_false(run)
            falses.append(rec)
        if args.verbose:
            print(f"  [{i + 1}/{len(cases)}] {case.kind} {case.node} {case.label!r}: "
                  f"{ {k: rec.get(k) for k in ('got', 'heard', 'eot_ms', 'pause_ms', 'stopped', 'pauses')} }",
                  flush=True)
    print()
    summary: dict[str, Any] = {}
    if intents:
        summary["intent"] = report_intents(intents)
    if barges or falses:
        policies = sorted({f"{b.mode.value}, min_speech_ms {b.min_speech_ms}, min_words {b.min_words}, action {b.action.value}"
                           for b in (flow.nodes[n].barge_in for n in default_policy_nodes(flow, spec["barge_in"]["nodes"]))})
        summary["barge_in"] = report_barge(barges, falses, "; ".join(policies), pipeline.cache.pack.loudness_target_dbfs,
                                           turn.echo_return_loss_db)
    if intents:
        end_silence = {n.id: n.listen.end_silence_ms for n in flow.nodes.values() if n.listen is not None}
        summary["end_of_turn"] = report_eot(intents, end_silence, turn)
        summary["asr_finish_compute_ms"] = report_compute(intents, barges, computes)
    warnings: Counter[tuple[str, str]] = Counter()
    for line in log.getvalue().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("warning", "error", "critical"):
            warnings[(entry.get("event"), json.dumps(entry.get("words") or entry.get("error") or ""))] += 1
    for (event, detail), count in warnings.items():
        print(f"pipeline log: {event} {detail} x{count}")
    wall = time.perf_counter() - started
    print(f"\n{len(cases)} calls in {wall:.0f} s wall"
          f" ({sum(r['wall_s'] for r in intents + barges + falses):.0f} s in calls)")
    out = args.json or RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "flow": flow.id, "rate": RATE, "quick": args.quick, "options": options,
        "turn_settings": vars(turn), "summary": summary,
        "intent_turns": intents, "barge_ins": barges, "false_barge_ins": falses,
        "wall_s": round(wall, 1),
    }, indent=1, default=str), encoding="utf-8")
    print(f"results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
