"""A simulated caller that talks, listens and reacts to the bot in time, and the one loader of caller files.

:func:`load_caller` reads every caller format (docs/callers.md): a recording, a list of actions
(voicebot.sim.script, the format of ``chat``) or an audio caller script (YAML)::

    voice: default          # who speaks text lines: default (the bot's own voice), kokoro:<style> (Mandarin),
                            #   or a voice pack folder (relative to the script)
    gap_ms: 400             # how long after the bot stops the caller answers
    line: {noise_dbfs: -60, echo_db: -18, echo_delay_ms: 40}   # optional line effects
    turns:
      - say: yes, speaking
      - wav: /usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav
        text: he was not an ill disposed young man      # what the recording says (for the report)
      - barge: wait, are you a robot                    # interrupt the bot's next prompt...
        at_ms: 1500                                     # ...1.5 s after it starts
        prompt: 1                                       # (2: the one after next, ...)
      - silence: 7000       # stay silent this long once the bot has finished
      - dtmf: 1
      - hangup

The caller only acts on what it hears: a ``say`` waits until the bot has been
quiet for ``gap_ms`` after speaking; a ``barge`` waits for the bot to start a
prompt. Each turn's true speech onset and end (from the audio itself) are kept
as ground truth for latency at the caller's ear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from voicebot import yamlutil
from voicebot.audio.resample import resample
from voicebot.audio.wav import read_wav_at
from voicebot.player import Chunk
from voicebot.sim.script import ScriptError, action_from_item
from voicebot.sim.text import CallerAction

Synth = Callable[[str, int], Chunk]  # (text, rate) -> int16 audio


class CallerScriptError(ValueError):
    """An audio caller script that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class CallerTurn:
    """One thing the caller does."""

    kind: str  # say | wav | barge | silence | dtmf | hangup
    text: str = ""
    path: str = ""
    at_ms: int = 0
    ms: int = 0
    nth: int = 1  # barge: interrupt the nth prompt the bot starts after the caller's previous turn


@dataclass(frozen=True)
class LineEffects:
    """What the phone line adds to the caller's side: noise and the bot's echo (dB relative to the bot)."""

    noise_dbfs: float | None = None
    echo_db: float | None = None
    echo_delay_ms: int = 40


@dataclass(frozen=True)
class CallerScript:
    """A whole simulated caller."""

    turns: tuple[CallerTurn, ...]
    gap_ms: int = 400
    voice: str = "default"
    line: LineEffects = field(default_factory=LineEffects)
    free_running: bool = False  # play the turns back to back from the start, ignoring the bot (a plain recording)


@dataclass
class SpokenTurn:
    """Ground truth of one caller turn: true speech onset and end (s), from the audio."""

    kind: str
    text: str
    onset: float
    end: float


RECORDINGS = (".wav", ".raw")
FORMATS_HINT = "see docs/callers.md for the two caller-script formats"


def load_caller(path: Path) -> CallerScript:
    """Any caller: a ``.wav``/``.raw`` recording (played as is), an audio caller script (a mapping with ``turns:``),
    or a chat caller script (a list of actions). Every recording it names is read now, so a bad one is reported
    before the call starts. :class:`CallerScriptError` names the file, the cause and the fix."""
    if path.suffix.lower() in RECORDINGS:
        check_recording(path, str(path))
        return CallerScript((CallerTurn("wav", path=str(path)),), gap_ms=0, free_running=True)
    data = read_caller_yaml(path)
    if isinstance(data, list):
        return CallerScript(tuple(_turn_from_action(item, f"{path}: item {i + 1}") for i, item in enumerate(data)))
    return _script_from_mapping(data, path)


def load_caller_script(path: Path) -> CallerScript:
    """The same as :func:`load_caller` (kept for callers of the old name)."""
    return load_caller(path)


def load_caller_actions(path: Path) -> list[CallerAction]:
    """A caller for the text simulator (``chat --script``): a list of actions, or an audio script whose ``wav``
    turns say what they say with ``text:``."""
    if path.suffix.lower() in RECORDINGS:
        raise CallerScriptError(f"{path}: chat is text only and cannot play a recording; "
                                f"use `voicebot simulate FLOW --caller {path}`")
    data = read_caller_yaml(path)
    if isinstance(data, list):
        return [action_from_item(item, f"{path}: item {i + 1}") for i, item in enumerate(data)]
    return [_action_from_turn(turn, f"{path}: turns[{i}]") for i, turn in enumerate(_script_from_mapping(data, path).turns)]


def read_caller_yaml(path: Path) -> Any:
    """The YAML of a caller script, or :class:`CallerScriptError` for a missing, empty, binary or malformed file."""
    if path.is_dir():
        raise CallerScriptError(f"{path}: a directory, not a caller script; give a .yaml script or a .wav recording")
    if not path.is_file():
        raise CallerScriptError(f"{path}: no such file; give a caller script (.yaml) or a recording (.wav)")
    raw = path.read_bytes()
    if not raw.strip():
        raise CallerScriptError(f"{path}: the file is empty; write the caller's turns in it ({FORMATS_HINT})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = "\x00"
    if "\x00" in text:
        raise CallerScriptError(f"{path}: a binary file, not a YAML caller script (a recording must end in .wav "
                                f"or .raw); {FORMATS_HINT}")
    try:
        data = yamlutil.load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f":{where.line + 1}" if where is not None else ""
        raise CallerScriptError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', None) or exc}); "
                                f"{FORMATS_HINT}") from None
    if not isinstance(data, (list, dict)):
        raise CallerScriptError(f"{path}: a caller script is a YAML list of actions or a mapping with `turns:`; "
                                f"{FORMATS_HINT}")
    return data


def check_recording(path: Path, where: str) -> None:
    """Read a caller recording now (so a bad one fails before the call): CallerScriptError naming it otherwise."""
    if not path.is_file():
        raise CallerScriptError(f"{where}: no such recording{'' if str(path) == where else f': {path}'}; "
                                "check the path (relative paths are from the script's folder)")
    try:
        samples = raw_or_wav(str(path), 8000)
    except ValueError as exc:  # WavFormatError names the file, says what it is and what is read
        prefix = "" if where == str(path) else f"{where}: "
        raise CallerScriptError(f"{prefix}{exc}; convert it, e.g. `sox IN -b 16 OUT.wav`") from None
    if len(samples) == 0:
        raise CallerScriptError(f"{where}: the recording {path} has no audio in it; record the caller's turn again")


def _script_from_mapping(data: dict[str, Any], path: Path) -> CallerScript:
    if not isinstance(data.get("turns"), list):
        raise CallerScriptError(f"{path}: an audio caller script is a mapping with a `turns:` list; {FORMATS_HINT}")
    turns = tuple(_turn(item, f"{path}: turns[{i}]", path.parent) for i, item in enumerate(data["turns"]))
    line = data.get("line") or {}
    try:
        effects = LineEffects(line.get("noise_dbfs"), line.get("echo_db"), int(line.get("echo_delay_ms", 40)))
        gap_ms = int(data.get("gap_ms", 400))
    except (TypeError, ValueError, AttributeError) as exc:
        raise CallerScriptError(f"{path}: gap_ms and line: {{...}} take numbers ({exc}); {FORMATS_HINT}") from None
    return CallerScript(turns, gap_ms, _voice(data.get("voice", "default"), path), effects)


def _voice(value: Any, path: Path) -> str:
    """The caller's ``voice:``: ``default``, ``kokoro:<style>`` or a voice pack folder (relative to the script)."""
    from voicebot.tts.pack import KOKORO_PREFIX, KOKORO_STYLES, PACK_FILE

    text = str(value).strip()
    if text in ("", "default"):
        return "default"
    if text.startswith(KOKORO_PREFIX):
        if text.removeprefix(KOKORO_PREFIX) not in KOKORO_STYLES:
            raise CallerScriptError(f"{path}: voice: {text}: no such Kokoro style; use kokoro: followed by one of "
                                    f"{', '.join(KOKORO_STYLES)}")
        return text
    pack = (path.parent / text).resolve()
    if not (pack / PACK_FILE).is_file():
        raise CallerScriptError(f"{path}: voice: {text}: no voice pack at {pack} (expected a folder with {PACK_FILE}); "
                                f"use default, kokoro:<style> or a voice pack folder")
    return str(pack)


def _turn_from_action(item: Any, where: str) -> CallerTurn:
    """A list-style (chat) action as an audio caller turn: ``wait: MS`` and ``silence`` become silences."""
    try:
        action = action_from_item(item, where)
    except ScriptError as exc:
        raise CallerScriptError(str(exc)) from None
    if action.kind == "wait":
        return CallerTurn("silence", ms=action.at_ms)
    if action.kind == "silence":
        return CallerTurn("silence", ms=7000)
    return CallerTurn(action.kind, action.text, at_ms=action.at_ms)


def _action_from_turn(turn: CallerTurn, where: str) -> CallerAction:
    """An audio caller turn for the text simulator; a recording needs its ``text:``."""
    if turn.kind == "wav":
        if not turn.text:
            raise CallerScriptError(f"{where}: chat cannot hear the recording {turn.path}; add `text:` with what it says")
        return CallerAction("say", turn.text)
    if turn.kind == "barge":
        return CallerAction("barge", turn.text, turn.at_ms)
    return CallerAction(turn.kind, turn.text)


def _turn(item: Any, where: str, base: Path) -> CallerTurn:
    if isinstance(item, str) and item in ("hangup", "silence"):
        return CallerTurn(item, ms=7000 if item == "silence" else 0)
    if isinstance(item, str):
        return CallerTurn("say", item)
    if not isinstance(item, dict):
        raise CallerScriptError(f"{where}: expected text or a mapping such as {{say: ...}}")
    kinds = [k for k in ("say", "wav", "barge", "silence", "dtmf", "hangup") if k in item]
    if len(kinds) != 1:
        raise CallerScriptError(f"{where}: needs exactly one of say, wav, barge, silence, dtmf, hangup")
    kind = kinds[0]
    value = item[kind]
    try:
        if kind == "wav":
            wav = Path(str(value)) if Path(str(value)).is_absolute() else base / str(value)
            check_recording(wav, f"{where}: {value}")
            return CallerTurn("wav", str(item.get("text", "")), str(wav))
        if kind == "silence":
            return CallerTurn("silence", ms=int(value or 7000))
        return CallerTurn(kind, "" if value is None else str(value), at_ms=int(item.get("at_ms", 1000)),
                          nth=int(item.get("prompt", 1)))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, CallerScriptError):
            raise
        raise CallerScriptError(f"{where}: silence, at_ms and prompt take whole numbers ({exc})") from None


class SimCaller:
    """Plays the script turn by turn, reacting to whether the bot is talking."""

    def __init__(self, script: CallerScript, rate: int, synth: Synth, read_audio: Callable[[str, int], Chunk]) -> None:
        self.script, self.rate = script, rate
        self.frame = rate // 50
        self.synth, self.read_audio = synth, read_audio
        self.spoken: list[SpokenTurn] = []
        self.actions: list[tuple[float, str, str]] = []  # (t, "dtmf"|"hangup", value) for the driver
        self._next = 0
        self._audio = np.zeros(0, dtype=np.int16)
        self._bot_heard_since_turn = False
        self._prompts_since_turn = 0
        self._bot_quiet_since: float | None = 0.0
        self._bot_started_at: float | None = None
        self._silent_until = 0.0
        self._echo: list[Chunk] = []
        self._rng = np.random.default_rng(7)

    @property
    def done(self) -> bool:
        """True when every turn has been performed and said."""
        return self._next >= len(self.script.turns) and len(self._audio) == 0

    def prompt_started(self, t: float) -> None:
        """The bot started a prompt at ``t`` (the harness tells the caller; audio alone cannot separate prompts)."""
        self._bot_started_at = t
        self._prompts_since_turn += 1

    def hear(self, bot: Chunk | None, t: float) -> None:
        """The bot's frame for the tick at ``t`` (None: silence)."""
        talking = bot is not None and bool(np.any(bot))
        self._bot_quiet_since = None if talking else (self._bot_quiet_since if self._bot_quiet_since is not None else t)
        if talking and len(self._audio) == 0:  # only what the bot says after the caller stopped is an answer to react to
            self._bot_heard_since_turn = True
        self._echo.append(bot if bot is not None else np.zeros(self.frame, dtype=np.int16))

    def next_frame(self, t: float) -> Chunk:
        """The caller's frame for the tick at ``t``, line effects included."""
        if len(self._audio) == 0 and not self.done:
            self._maybe_start_turn(t)
        frame, self._audio = self._audio[: self.frame], self._audio[self.frame:]
        if len(frame) < self.frame:
            frame = np.concatenate([frame, np.zeros(self.frame - len(frame), dtype=np.int16)])
        return self._line(frame)

    def _maybe_start_turn(self, t: float) -> None:
        if self._next >= len(self.script.turns) or t < self._silent_until:
            return
        turn = self.script.turns[self._next]
        if not self._ready(turn, t):
            return
        self._next += 1
        self._bot_heard_since_turn = False
        self._prompts_since_turn = 0
        if turn.kind == "silence":
            self._silent_until = t + turn.ms / 1000
        elif turn.kind in ("dtmf", "hangup"):
            self.actions.append((t, turn.kind, turn.text))
        else:
            self._speak(turn, t)

    def _ready(self, turn: CallerTurn, t: float) -> bool:
        if self.script.free_running:
            return True
        if turn.kind == "barge":
            return self._bot_started_at is not None and self._bot_quiet_since is None and \
                t - self._bot_started_at >= turn.at_ms / 1000 and self._prompts_since_turn >= turn.nth
        quiet = self._bot_quiet_since is not None and t - self._bot_quiet_since >= self.script.gap_ms / 1000
        return quiet and self._bot_heard_since_turn

    def _speak(self, turn: CallerTurn, t: float) -> None:
        audio = self.read_audio(turn.path, self.rate) if turn.kind == "wav" else self.synth(turn.text, self.rate)
        onset, end = _speech_bounds(audio, self.rate)
        self.spoken.append(SpokenTurn(turn.kind, turn.text, t + onset, t + end))
        self._audio = audio

    def _line(self, frame: Chunk) -> Chunk:
        line = self.script.line
        out = frame.astype(np.float64)
        delay = max(1, line.echo_delay_ms // 20)
        if line.echo_db is not None and len(self._echo) >= delay:
            out += self._echo[-delay].astype(np.float64) * 10 ** (line.echo_db / 20)
        if line.noise_dbfs is not None:
            out += self._rng.normal(0, 32768 * 10 ** (line.noise_dbfs / 20), len(out))
        return np.clip(out, -32768, 32767).astype(np.int16)


def _speech_bounds(audio: Chunk, rate: int, threshold_dbfs: float = -40.0) -> tuple[float, float]:
    """Start and end (s) of the audible part of ``audio``: first and last 10 ms block above the threshold."""
    block = max(1, rate // 100)
    n = len(audio) // block
    if n == 0:
        return 0.0, 0.0
    blocks = audio[: n * block].astype(np.float64).reshape(n, block)
    level = 20 * np.log10(np.sqrt(np.mean(blocks * blocks, axis=1)) / 32768 + 1e-12)
    loud = np.flatnonzero(level > threshold_dbfs)
    if len(loud) == 0:
        return 0.0, 0.0
    return loud[0] * block / rate, (loud[-1] + 1) * block / rate


def raw_or_wav(path: str, rate: int) -> Chunk:
    """Read a caller recording: .wav (any rate) or .raw (s16le mono 16 kHz, as in pocketsphinx-testdata)."""
    if path.lower().endswith(".raw"):
        raw = Path(path).read_bytes()
        return resample(np.frombuffer(raw[: len(raw) - len(raw) % 2], dtype="<i2"), 16000, rate)
    return read_wav_at(path, rate)
