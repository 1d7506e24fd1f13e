"""The flow model: what a YAML call flow means, as frozen dataclasses.

A flow is loaded and validated by :mod:`voicebot.dialog.loader`; everything here
is plain data that the dialog machine reads. Times are milliseconds (``*_ms``)
or seconds (``*_s``) as their names say.

Special node targets (usable wherever a node id is expected):

- ``return``: go back to the node that was listening before a global intent
  took over (e.g. after answering "are you a robot?"), and ask again;
- ``repeat``: say the current node's prompt again and keep listening.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

RETURN = "return"
REPEAT = "repeat"
SPECIAL_TARGETS = (RETURN, REPEAT)
LEVELS = ("A", "B", "C", "D")
LANGUAGES = ("en", "zh")
VARIABLE_TYPES = ("string", "int", "float", "bool", "phone", "date")


class BargeInMode(StrEnum):
    """Whether the caller may interrupt a prompt."""

    OFF = "off"
    ON = "on"
    PROTECTED = "protected"  # off for the first ``protect_ms``, then on


class BargeInAction(StrEnum):
    """What an accepted barge-in does once the caller has finished speaking."""

    ANSWER = "answer"  # act on what the caller said
    REPEAT = "repeat"  # say the interrupted prompt again


@dataclass(frozen=True)
class BargeIn:
    """A node's barge-in policy (:mod:`voicebot.dialog.interruption` applies it).

    Defaults: on, 80 ms of speech pauses the bot, 2 key words (not backchannels, fillers or function words) stop it.
    """

    mode: BargeInMode = BargeInMode.ON
    protect_ms: int = 0
    min_speech_ms: int = 80
    min_words: int = 2
    action: BargeInAction = BargeInAction.ANSWER


class AsrPass(StrEnum):
    """Which recogniser gives a turn's final words (:mod:`voicebot.dialog.twopass` states the rule)."""

    FAST = "fast"  # the streaming pass's final
    ACCURATE = "accurate"  # Whisper on the turn's audio, always
    AUTO = "auto"  # the fast final when it surely matches an intent, else Whisper


@dataclass(frozen=True)
class Listen:
    """How a node listens. Defaults: 6 s of no input, 15 s max speech, 700 ms end silence, ``asr`` auto."""

    no_input_ms: int = 6000
    max_speech_ms: int = 15000
    end_silence_ms: int = 700
    asr: AsrPass = AsrPass.AUTO


@dataclass(frozen=True)
class Utterance:
    """One thing the bot can say: template text, a recorded prompt id, or both.

    ``text`` may hold ``{{variable}}`` templates. When ``prompt`` names a
    recording, the recording is played and ``text`` is what it says (for logs,
    the transcript and synthesis when the recording is missing).
    """

    text: str = ""
    prompt: str = ""


@dataclass(frozen=True)
class Say:
    """What a node says: one of several variants, chosen in turn or at random."""

    variants: tuple[Utterance, ...] = ()
    order: str = "in_turn"  # "in_turn" | "random"


@dataclass(frozen=True)
class Retry:
    """No-input or no-match handling: re-prompt up to ``retries`` times, then go to ``then``."""

    retries: int = 2
    reprompt: Say = field(default_factory=Say)
    then: str = ""  # node id; empty means hang up with disposition "no_response"


@dataclass(frozen=True)
class Transfer:
    """Hand the call to an agent group; hold prompt while nobody is ready."""

    group: str
    hold: Say = field(default_factory=Say)
    timeout_s: float = 30.0
    on_timeout: str = ""  # node id; empty: hang up with disposition "no_agent"
    on_fail: str = ""  # node id; empty: same as on_timeout
    after_agent: str = ""  # node id when the agent leaves after the bridge; empty: the flow's handoff.after_agent


@dataclass(frozen=True)
class Route:
    """Where an intent or key leads. ``goto`` is a node id or a special target."""

    goto: str


@dataclass(frozen=True)
class Node:
    """One step of the flow.

    On entry the node applies its effects (tags, level, notify, prepare), says
    its prompt, then either listens (when it has routes) or moves to ``next``,
    transfers, or hangs up.
    """

    id: str
    say: Say = field(default_factory=Say)
    listen: Listen | None = None  # None: the node does not wait for the caller
    barge_in: BargeIn = field(default_factory=BargeIn)
    routes: Mapping[str, str] = field(default_factory=dict)  # intent -> target
    dtmf: Mapping[str, str] = field(default_factory=dict)  # key -> target
    default: str = ""  # target for speech that matches no intent (instead of no_match)
    no_input: Retry = field(default_factory=Retry)
    no_match: Retry = field(default_factory=Retry)
    next: str = ""  # target after saying, for nodes that do not listen
    tags: tuple[str, ...] = ()
    level: str = ""  # "", or one of LEVELS
    capture: Mapping[str, str] = field(default_factory=dict)  # slot name -> slot type
    notify: tuple[str, ...] = ()
    prepare: str = ""  # agent group to prepare on entry
    transfer: Transfer | None = None
    hangup: str = ""  # disposition: hang up after saying
    globals_enabled: bool = True  # whether global intents apply while here


@dataclass(frozen=True)
class Variable:
    """A per-call variable: filled from a dial list, SIP headers or the CLI."""

    name: str
    type: str = "string"
    default: str | None = None  # None: required
    pii: bool = False  # phone numbers, names: kept out of log message text


@dataclass(frozen=True)
class IntentDef:
    """An intent's phrases for one language, and what the bot asks before acting on an unsure hearing of it."""

    name: str
    keywords: tuple[str, ...] = ()
    regex: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    confirm: Say = field(default_factory=Say)  # said before acting on an unsure hearing; empty: never confirmed


@dataclass(frozen=True)
class HandoffSettings:
    """Flow-wide handoff settings.

    ``group``: the agent group the call is meant for (the engine picks the bot's
    voice from it at call start); ``prepare_at_level``: prepare ``group`` as soon
    as the intent level reaches this level or better (A is best); ``after_agent``:
    node to return to when an agent leaves a call they took (empty: hang up).
    """

    group: str = ""
    prepare_at_level: str = ""
    after_agent: str = ""


@dataclass(frozen=True)
class Flow:
    """A whole call flow, ready for the dialog machine."""

    id: str
    version: str
    language: str
    start: str
    nodes: Mapping[str, Node]
    voice: str = "default"
    variables: Mapping[str, Variable] = field(default_factory=dict)
    intents: Mapping[str, IntentDef] = field(default_factory=dict)
    global_routes: Mapping[str, str] = field(default_factory=dict)  # intent -> target
    max_duration_s: float = 600.0
    max_turns: int = 30
    on_limit: str = ""  # node to go to when a limit is hit; empty: hang up
    min_intent_score: float = 0.5
    confirm_below: float = 0.9  # an intent with ``confirm`` heard with a score or confidence below this is confirmed
    hangup_notify: tuple[str, ...] = ()  # notifications sent with the outcome at hang-up
    handoff: HandoffSettings = field(default_factory=HandoffSettings)
    source: str = ""  # file the flow came from, for messages
