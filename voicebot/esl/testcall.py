"""``voicebot call DEST --caller FILE``: a test call without a phone, through FreeSWITCH's own dialplan.

Over one inbound ESL connection it originates ``loopback/DEST/<context> &park()``.
Leg B runs the dialplan (extension 7000: ``socket 127.0.0.1:8084 async full``, the
engine); leg A is the simulated caller's phone, parked here. What A hears is the bot.

Rules:

1. Unicast on A only once A is answered (CHANNEL_ANSWER seen) and parked, never
   before: unicast on an unanswered channel crashes FreeSWITCH (docs/freeswitch.md).
   :class:`LegState` refuses otherwise (:class:`UnicastBeforeAnswer`).
2. The caller side is sans-I/O (:class:`CallerSide`, time injected): a WAV is played
   as it is (resampled to the channel's rate); a caller script (the audio format of
   :mod:`voicebot.sim.caller`, or the text list of ``voicebot chat --script``) is
   played by :class:`~voicebot.sim.caller.SimCaller`, which hears the bot through
   :class:`BotActivity`, an energy detector: a frame above ``threshold_dbfs`` is
   speech, and an utterance ends after ``hangover_s`` of quiet (so prompts are told
   apart by a pause of that length; the caller's ``gap_ms`` counts from there, so a
   sentence pause inside a prompt is not taken for its end). Text lines are
   synthesized before the call, in a native thread, with the project's Piper voice.
3. Frames go out every ptime on the media clock of :class:`~voicebot.esl.unicast.UnicastMedia`;
   what comes back is placed by arrival time, so the stereo WAV (caller left, bot
   right) keeps both sides aligned.
4. The call ends when A hangs up (the engine hung up B), the script hangs up, the
   script is done and the bot has been quiet for ``linger_s``, or after ``max_s``.
   Exit status (:attr:`CallReport.status`): 0 the call ran; 3 FreeSWITCH unreachable;
   4 the originate failed (FreeSWITCH's cause in the message); 5 no audio within
   ``first_audio_s`` (no packet at all, or nothing audible from the bot).
"""

from __future__ import annotations

import contextlib
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import numpy as np

from voicebot.audio.resample import resample
from voicebot.audio.wav import read_wav, write_stereo_wav
from voicebot.esl.connection import EslError, EslFailure, InboundConnection, UnicastBeforeAnswer
from voicebot.esl.protocol import ChannelMedia, EslEvent, channel_media
from voicebot.esl.unicast import PortPool, PortsExhausted, UnicastMedia
from voicebot.native import native_lock
from voicebot.player import Chunk
from voicebot.records.model import CallRecord
from voicebot.sim.caller import CallerScript, SimCaller, Synth, load_caller, raw_or_wav

EXIT_OK, EXIT_UNREACHABLE, EXIT_ORIGINATE, EXIT_NO_AUDIO = 0, 3, 4, 5
LEG_EVENTS = ("CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE")
Printer = Callable[[str], None]


def dial_string(destination: str, context: str = "voicebot", variables: dict[str, str] | None = None) -> str:
    """``7000`` → ``{loopback_bowout=false,vb_var_k=v}loopback/7000/voicebot``; a dial string with ``/`` is kept."""
    target = destination if "/" in destination else f"loopback/{destination}/{context}"
    escaped = {k: v.replace(",", "\\,") for k, v in (variables or {}).items()}  # a comma would end the variable
    pairs = ["loopback_bowout=false", *(f"vb_var_{k}={v}" for k, v in escaped.items())]
    return "{" + ",".join(pairs) + "}" + target


def caller_ports(media_ports: tuple[int, int], pairs: int = 10) -> tuple[int, int]:
    """The top ``pairs`` port pairs of the engine's range, aligned with its pairs (a clash is skipped, not shared)."""
    low, high = media_ports
    total = (high - low + 1) // 2
    start = low + 2 * max(0, total - pairs)
    return start, low + 2 * total - 1


# ---------------------------------------------------------------- sans-I/O: what the caller hears and says


class BotActivity:
    """Energy detector over what the caller hears: ("start", t) and ("stop", t) of each bot utterance (rule 2)."""

    def __init__(self, threshold_dbfs: float = -45.0, hangover_s: float = 0.4) -> None:
        self.threshold_dbfs, self.hangover_s = threshold_dbfs, hangover_s
        self.talking = False
        self.started_at = 0.0
        self.last_loud: float | None = None  # end time (s) of the last loud frame
        self.utterances = 0

    def loud(self, samples: Chunk) -> bool:
        """True when the frame's RMS is above the threshold."""
        x = samples.astype(np.float64)
        return len(x) > 0 and 20 * np.log10(np.sqrt(np.mean(x * x)) / 32768 + 1e-12) > self.threshold_dbfs

    def feed(self, samples: Chunk, t: float, duration_s: float = 0.02) -> list[tuple[str, float]]:
        """One frame heard at ``t`` (s); the utterance starts and stops it reveals."""
        events: list[tuple[str, float]] = []
        if self.loud(samples):
            if not self.talking:
                self.talking, self.started_at = True, t
                self.utterances += 1
                events.append(("start", t))
            self.last_loud = t + duration_s
        elif self.talking and self.last_loud is not None and t - self.last_loud >= self.hangover_s:
            self.talking = False
            events.append(("stop", self.last_loud))
        return events


@dataclass
class CallerSide:
    """The simulated caller on leg A: frames out, bot frames in, live lines; ``t`` in s since unicast was armed."""

    caller: SimCaller
    rate: int
    ptime_ms: int = 20
    printer: Printer = print
    activity: BotActivity = field(default_factory=BotActivity)
    lines: list[tuple[float, str, str]] = field(default_factory=list)  # (t, BOT|CALLER|KEY, text)
    caller_frames: dict[int, Chunk] = field(default_factory=dict)
    bot_frames: dict[int, Chunk] = field(default_factory=dict)
    actions: list[tuple[float, str, str]] = field(default_factory=list)  # (t, dtmf|hangup, value) to carry out
    _said: int = 0
    _phase: float | None = None

    def heard(self, samples: Chunk, t: float) -> None:
        """A frame of what leg A heard (the bot), arrived at ``t``; placed on the frame clock (rule 3)."""
        period = self.ptime_ms / 1000
        if self._phase is None:  # arrivals are regular but not on our ticks: measure from the first one
            self._phase = t % period
        slot = round((t - self._phase) / period)
        while slot in self.bot_frames:  # two in one slot: a late frame and its successor, back to back
            slot += 1
        self.bot_frames[slot] = samples
        for kind, at in self.activity.feed(samples, t, self.ptime_ms / 1000):
            if kind == "start":
                self.caller.prompt_started(at)
                self._line(at, "BOT", "speaking")
            else:
                self._line(at, "BOT", f"stopped ({at - self.activity.started_at:.1f} s)")
        if not self.activity.talking:  # quiet only after the hangover (rule 2)
            self.caller.hear(None, t)
        else:  # SimCaller takes a frame with a non-zero sample for talking: mark digital silence with 1 LSB (-90 dBFS)
            self.caller.hear(samples if np.any(samples) else np.ones_like(samples), t)

    def next_frame(self, t: float) -> bytes:
        """The caller's frame for the tick at ``t`` (s16le at ``rate``)."""
        frame = self.caller.next_frame(t)
        self.caller_frames[round(t * 1000 / self.ptime_ms)] = frame
        for turn in self.caller.spoken[self._said:]:
            self._line(turn.onset, "CALLER", turn.text or "(recording)")
        self._said = len(self.caller.spoken)
        for at, kind, value in self.caller.actions:
            self.actions.append((at, kind, value))
            self._line(at, "KEY" if kind == "dtmf" else "CALLER", value if kind == "dtmf" else "(hangs up)")
        self.caller.actions.clear()
        return frame.astype("<i2").tobytes()

    def quiet_for(self, t: float) -> float:
        """Seconds the bot has been quiet at ``t`` (0 while it talks)."""
        if self.activity.talking:
            return 0.0
        return t - (self.activity.last_loud or 0.0)

    def tracks(self) -> tuple[Chunk, Chunk]:
        """(caller, bot) as int16 tracks aligned on the frame clock."""
        n = self.rate * self.ptime_ms // 1000
        slots = max([*self.caller_frames, *self.bot_frames, -1]) + 1
        out = [np.zeros(slots * n, dtype=np.int16) for _ in range(2)]
        for track, frames in zip(out, (self.caller_frames, self.bot_frames), strict=True):
            for k, frame in frames.items():
                if k >= 0:
                    track[k * n:k * n + len(frame[:n])] = frame[:n]
        return out[0], out[1]

    def _line(self, t: float, who: str, text: str) -> None:
        self.lines.append((t, who, text))
        self.printer(f"[{t:7.2f}s] {who:<7} {text}")


@dataclass
class LegState:
    """Leg A as its events tell it (rule 1): answered, parked, hung up, cause, media, the B leg's uuid."""

    uuid: str
    answered: bool = False
    parked: bool = False
    hung_up: bool = False
    cause: str = ""
    media: ChannelMedia | None = None
    other_leg: str = ""

    def on_event(self, event: EslEvent) -> None:
        """An event from the inbound connection (others' events are ignored)."""
        if event.unique_id != self.uuid:
            return
        if event.name == "CHANNEL_ANSWER" or event.get("Answer-State") == "answered":
            self.answered = True
        if event.name == "CHANNEL_PARK":
            self.parked = True
        if event.name.startswith("CHANNEL_HANGUP"):
            self.hung_up, self.cause = True, event.get("Hangup-Cause") or self.cause
        self.other_leg = event.get("variable_other_loopback_leg_uuid") or self.other_leg
        if event.get("Channel-Read-Codec-Name"):
            with contextlib.suppress(ValueError):
                self.media = channel_media(event.headers)

    def check_unicast(self) -> None:
        """Raise :class:`UnicastBeforeAnswer` unless A is answered, parked and up (rule 1)."""
        if not (self.answered and self.parked) or self.hung_up:
            raise UnicastBeforeAnswer(f"leg {self.uuid}: answered={self.answered} parked={self.parked} "
                                      f"hung_up={self.hung_up}; unicast now could crash FreeSWITCH")


# ---------------------------------------------------------------- I/O


@dataclass(frozen=True)
class CallOptions:
    """One test call: where to dial, who the caller is, where FreeSWITCH is, limits (s)."""

    destination: str
    caller: Path
    out_dir: Path
    esl_host: str = "127.0.0.1"
    esl_port: int = 8021
    esl_password: str = "ClueCon"
    context: str = "voicebot"
    variables: dict[str, str] = field(default_factory=dict)
    media_ip: str = "127.0.0.1"
    media_ports: tuple[int, int] = (40980, 40999)
    cache_dir: Path | None = None
    records_db: str | None = None
    max_s: float = 120.0
    linger_s: float = 10.0
    first_audio_s: float = 5.0
    connect_s: float = 5.0
    originate_s: float = 30.0


@dataclass
class CallReport:
    """How the test call went: exit status and message, legs, lines, outputs, the engine's record if found."""

    status: int
    message: str
    a_uuid: str = ""
    b_uuid: str = ""
    ended: str = ""
    duration_s: float = 0.0
    rate: int = 0
    lines: list[tuple[float, str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    record: CallRecord | None = None


def run_caller_call(options: CallOptions, printer: Printer = print) -> CallReport:
    """Place the test call (rules 1-4) and write ``call.wav`` and ``transcript.txt`` to ``options.out_dir``.

    FreeSWITCH's failures come back as the report's status and message, not as exceptions.
    """
    script = load_caller(options.caller)
    audio = _prepare(script, options.cache_dir)
    inbound = InboundConnection(options.esl_host, options.esl_port, options.esl_password)
    inbound.start()
    try:
        if not _wait(lambda: inbound.up or inbound.state().attempts >= 2, options.connect_s) or not inbound.up:
            return CallReport(EXIT_UNREACHABLE, f"FreeSWITCH is not reachable at {options.esl_host}:{options.esl_port}: "
                              f"{inbound.state().last_error or 'no answer'}")
        return _call(inbound, options, script, audio, printer)
    finally:
        inbound.stop()


def _prepare(script: CallerScript, cache_dir: Path | None) -> tuple[Synth, Synth]:
    """(synth, read_audio) for :class:`SimCaller`: every text line rendered and every recording read now, in a
    native thread (the hub keeps running); on the call they are only resampled to the channel's rate."""
    texts = sorted({t.text for t in script.turns if t.kind in ("say", "barge") and t.text.strip()})
    paths = sorted({t.path for t in script.turns if t.kind == "wav"})

    def load() -> tuple[int, dict[str, Chunk], dict[str, tuple[Chunk, int]]]:
        recordings = {path: _recording(path) for path in paths}
        if not texts:
            return 0, {}, recordings
        from voicebot.tts.pack import caller_pack
        from voicebot.tts.render import PromptCache

        pack = caller_pack(script.voice or "default")
        cache = PromptCache(pack, cache_dir)
        native = pack.voice.sample_rate
        return native, {text: cache.render(text, native)[0] for text in texts}, recordings

    native, spoken, recordings = gevent.get_hub().threadpool.apply(load)
    return (lambda text, rate: resample(spoken[text], native, rate),
            lambda path, rate: resample(recordings[path][0], recordings[path][1], rate))


def _recording(path: str) -> tuple[Chunk, int]:
    """A caller recording at its own rate: .wav (any rate) or .raw (s16le mono 16 kHz, pocketsphinx-testdata)."""
    if path.endswith(".raw"):
        return raw_or_wav(path, 16000), 16000
    return read_wav(path)


def _call(inbound: InboundConnection, options: CallOptions, script: CallerScript,
          audio: tuple[Synth, Synth], printer: Printer) -> CallReport:
    leg = LegState(str(uuidlib.uuid4()))
    sub = inbound.on_event(leg.on_event)
    try:
        return _originate_and_talk(inbound, leg, options, script, audio, printer)
    finally:
        sub.close()


def _originate_and_talk(inbound: InboundConnection, leg: LegState, options: CallOptions, script: CallerScript,
                        audio: tuple[Synth, Synth], printer: Printer) -> CallReport:
    dial = dial_string(options.destination, options.context, options.variables)
    printer(f"calling {dial.split('}', 1)[1]} (caller: {options.caller.name})")
    try:
        inbound.originate(dial, "&park()", uuid=leg.uuid, timeout=options.originate_s)
        if not _wait(lambda: (leg.answered and leg.parked) or leg.hung_up, 5.0) or leg.hung_up:
            return CallReport(EXIT_ORIGINATE, f"leg A {leg.uuid} was not answered and parked "
                              f"(answered={leg.answered}, parked={leg.parked}, hangup cause {leg.cause or '-'})", leg.uuid)
        media = leg.media or _media_of(inbound, leg.uuid)
    except EslError as err:
        cause = err.reply.strip().removeprefix("-ERR").strip() or str(err)
        return CallReport(EXIT_ORIGINATE, f"the originate to {options.destination} failed: {cause}", leg.uuid)
    except EslFailure as err:
        return CallReport(EXIT_ORIGINATE, f"the originate to {options.destination} failed: {err}", leg.uuid)
    side = CallerSide(SimCaller(script, media.rate, *audio), media.rate, media.ptime_ms, printer)
    printer(f"[   0.00s] answered: {media.codec} {media.rate} Hz, {media.ptime_ms} ms")
    report = _converse(inbound, leg, side, media, options)
    report.a_uuid, report.b_uuid, report.rate, report.lines = leg.uuid, leg.other_leg, media.rate, side.lines
    if report.status == EXIT_OK:
        report.record = _engine_record(options.records_db, leg.other_leg)
        report.files = _write_outputs(options, side, report)
    return report


def _converse(inbound: InboundConnection, leg: LegState, side: CallerSide, media: ChannelMedia,
              options: CallOptions) -> CallReport:
    """Arm unicast on A, play the caller, listen to the bot, until the call ends (rules 3, 4)."""
    greenlets: list[gevent.Greenlet] = []
    started = time.monotonic()
    unicast: UnicastMedia | None = None
    try:
        unicast = UnicastMedia.open(PortPool(*options.media_ports), media, host=options.media_ip,
                                    label=f"test call {leg.uuid}")
        _arm(inbound, leg, unicast, options.media_ip)
        t0 = time.monotonic()
        lock = native_lock()  # the caller's frames are taken on the send clock's thread, the bot's heard on the hub

        def caller_frame(t: float) -> bytes:
            with lock:
                return side.next_frame(t - t0)
        greenlets = [gevent.spawn(_receive, unicast, side, t0, lock),
                     gevent.spawn(unicast.send_loop, caller_frame, start_at=t0)]
        leg.other_leg = leg.other_leg or _getvar(inbound, leg.uuid, "other_loopback_leg_uuid")  # once audio flows
        status, ended = _watch(inbound, leg, side, unicast, options, t0)
    except (EslFailure, UnicastBeforeAnswer, PortsExhausted) as err:
        status, ended = EXIT_NO_AUDIO, f"no audio: unicast on leg A could not be armed ({err})"
    finally:
        gevent.killall(greenlets, timeout=1)
        if unicast is not None:
            unicast.close()
        if not leg.hung_up:
            _kill(inbound, leg.uuid)
    duration = time.monotonic() - started
    return CallReport(status, ended if status else f"the call ran {duration:.1f} s: {ended}", ended=ended,
                      duration_s=duration)


def _arm(inbound: InboundConnection, leg: LegState, unicast: UnicastMedia, ip: str) -> None:
    """``sendmsg <A-uuid>`` with ``call-command: unicast`` over the inbound connection, once A may have it (rule 1)."""
    assert unicast.ports is not None
    leg.check_unicast()
    inbound.unicast(leg.uuid, ip, unicast.ports.local, ip, unicast.ports.remote)
    unicast.armed()


def _receive(unicast: UnicastMedia, side: CallerSide, t0: float, lock: Any) -> None:
    for frame in unicast.frames():
        with lock:  # held by the send clock's thread only while it takes one caller frame
            side.heard(frame.to_array(), frame.captured_at - t0)


def _watch(inbound: InboundConnection, leg: LegState, side: CallerSide, unicast: UnicastMedia,
           options: CallOptions, t0: float) -> tuple[int, str]:
    """Carry out the script's keys and hang-up; (status, how it ended) once it is over."""
    while True:
        gevent.sleep(0.05)
        t = time.monotonic() - t0
        while side.actions:  # appended on the send clock's thread: take one at a time (pop is atomic)
            _, kind, value = side.actions.pop(0)
            if kind == "hangup":
                _kill(inbound, leg.uuid)
                return EXIT_OK, "the caller hung up (script)"
            _dtmf(inbound, leg, value)
        if leg.hung_up:
            return EXIT_OK, f"the engine hung up ({leg.cause or 'no cause given'})"
        if t >= options.first_audio_s and not side.activity.utterances:
            heard = unicast.stats().frames_in
            why = "no packet from FreeSWITCH on leg A" if not heard else f"{heard} frames, all silent: the bot said nothing"
            return EXIT_NO_AUDIO, f"no audio came back within {options.first_audio_s:g} s ({why})"
        if side.caller.done and side.quiet_for(t) >= options.linger_s:
            return EXIT_OK, f"the script is done and the bot was quiet for {options.linger_s:g} s"
        if t >= options.max_s:
            return EXIT_OK, f"--max-s {options.max_s:g} reached"


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        gevent.sleep(0.01)
    return True


def _getvar(inbound: InboundConnection, uuid: str, name: str) -> str:
    try:
        value = inbound.api(f"uuid_getvar {uuid} {name}").strip()
    except EslFailure:
        return ""
    return "" if value in ("_undef_", "") or value.startswith("-ERR") else value


def _media_of(inbound: InboundConnection, uuid: str) -> ChannelMedia:
    """Leg A's frame format from its variables (its events named no codec)."""
    headers = {f"variable_{name}": _getvar(inbound, uuid, name) for name in ("read_codec", "read_rate")}
    return channel_media(headers)


def _dtmf(inbound: InboundConnection, leg: LegState, digit: str) -> None:
    """The caller presses ``digit``: the engine's leg (B) receives it."""
    with contextlib.suppress(EslFailure):
        if leg.other_leg:
            inbound.uuid_recv_dtmf(leg.other_leg, digit)
        else:
            inbound.api(f"uuid_send_dtmf {leg.uuid} {digit}")


def _kill(inbound: InboundConnection, uuid: str) -> None:
    with contextlib.suppress(EslFailure):
        inbound.uuid_kill(uuid, "NORMAL_CLEARING", timeout=2.0)


def _engine_record(db: str | None, call_id: str, wait_s: float = 3.0) -> CallRecord | None:
    """The engine's record of leg B, if its records database is readable from here (None otherwise)."""
    if not db or not call_id or ("://" not in db and not Path(db).is_file()):
        return None
    from voicebot.records.store import open_store

    try:
        store = open_store(db)
    except Exception:  # another machine's database, a driver missing: the test call still ran
        return None
    try:
        deadline = time.monotonic() + wait_s
        while (record := store.get(call_id)) is None and time.monotonic() < deadline:
            gevent.sleep(0.1)
        return record
    finally:
        store.close()


def _write_outputs(options: CallOptions, side: CallerSide, report: CallReport) -> list[Path]:
    """``call.wav`` (caller left, bot right, at the channel's rate) and ``transcript.txt``."""
    options.out_dir.mkdir(parents=True, exist_ok=True)
    wav, text = options.out_dir / "call.wav", options.out_dir / "transcript.txt"
    caller, bot = side.tracks()
    write_stereo_wav(wav, caller, bot, side.rate)
    lines = [f"# test call to {options.destination}: leg A {report.a_uuid}, leg B (the engine's) {report.b_uuid or '?'}",
             f"# {report.message}", *(f"[{t:7.2f}s] {who:<7} {said}" for t, who, said in sorted(side.lines))]
    record = report.record
    if record is not None:
        lines += [f"# the engine's record: disposition={record.disposition} path={' > '.join(record.path)}",
                  *(f"[{line.t:7.2f}s] {line.speaker:<7} {line.text or line.dtmf}" for line in record.transcript)]
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [wav, text]
