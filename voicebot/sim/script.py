"""Caller scripts: what a simulated caller says and does, as YAML or chat commands.

A caller script is a YAML list; each item is one action::

    - yes, speaking                 # a plain string: say it after the bot finishes
    - say: tell me more
    - barge: not interested         # interrupt the current prompt...
      at_ms: 800                    # ...800 ms after it started (default 500)
    - dtmf: 1                       # press a key
    - silence                       # say nothing until the bot reacts
    - wait: 2000                    # let 2000 ms pass
    - say: yes, speaking            # a misheard line: the recogniser's final is `heard`...
      heard: not really
      confidence: 0.4               # ...with this confidence (0..1; default 1)
    - hangup

The same actions typed in ``voicebot chat``: plain text, ``/barge [ms] text``,
``/dtmf 1``, ``/silence``, ``/wait 2000``, ``/hangup``.
"""

from __future__ import annotations

from typing import Any

from voicebot.sim.text import ACTION_KINDS, CallerAction

DEFAULT_BARGE_MS = 500
ACTION_OPTIONS = ("at_ms", "heard", "confidence")  # keys beside the action's own: barge's delay, a misheard say/barge


class ScriptError(ValueError):
    """A caller script item that cannot be understood; the message says which and why."""


def action_from_item(item: Any, where: str = "") -> CallerAction:
    """Turn one YAML caller-script item into a :class:`CallerAction`."""
    prefix = f"{where}: " if where else ""
    if isinstance(item, str):
        if item in ("silence", "hangup"):
            return CallerAction(item)
        return CallerAction("say", item)
    if isinstance(item, (int, float)):
        return CallerAction("say", str(item))
    if not isinstance(item, dict):
        raise ScriptError(f"{prefix}expected text or a mapping like {{say: ...}}, got {type(item).__name__}")
    kinds = [k for k in item if k in ACTION_KINDS]
    unknown = [k for k in item if k not in ACTION_KINDS and k not in ACTION_OPTIONS]
    if len(kinds) != 1 or unknown:
        raise ScriptError(f"{prefix}an action needs exactly one of {', '.join(ACTION_KINDS)}"
                          + (f"; unknown key(s): {', '.join(map(str, unknown))}" if unknown else ""))
    kind = kinds[0]
    value = item[kind]
    if kind == "wait":
        return CallerAction("wait", at_ms=_int(value, f"{prefix}wait"))
    if kind in ("say", "barge"):
        at_ms = _int(item.get("at_ms", DEFAULT_BARGE_MS), f"{prefix}at_ms") if kind == "barge" else 0
        heard = None if item.get("heard") is None else str(item["heard"])
        text = "" if value is None else str(value)
        return CallerAction(kind, text, at_ms, heard, _confidence(item.get("confidence", 1.0), prefix))
    if "heard" in item or "confidence" in item:
        raise ScriptError(f"{prefix}'heard' and 'confidence' go with say or barge, not {kind}")
    if kind == "dtmf" and str(value) not in set("0123456789*#"):
        raise ScriptError(f"{prefix}dtmf must be one key of 0-9, * or #, got {value!r}")
    return CallerAction(kind, "" if value is None else str(value))


def action_from_command(line: str) -> CallerAction:
    """Turn one line typed in ``voicebot chat`` into a :class:`CallerAction`."""
    line = line.strip()
    if not line.startswith("/"):
        return CallerAction("say", line)
    word, _, rest = line[1:].partition(" ")
    rest = rest.strip()
    if word in ("silence", "hangup"):
        return CallerAction(word)
    if word == "dtmf":
        return action_from_item({"dtmf": rest})
    if word == "wait":
        return CallerAction("wait", at_ms=_int(rest, "/wait"))
    if word == "barge":
        first, _, text = rest.partition(" ")
        if first.isdigit() and text:
            return CallerAction("barge", text.strip(), int(first))
        return CallerAction("barge", rest, DEFAULT_BARGE_MS)
    raise ScriptError(f"unknown command /{word}; try /barge [ms] text, /dtmf KEY, /silence, /wait MS, /hangup, /quit")


def _int(value: Any, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ScriptError(f"{what} must be a whole number of milliseconds, got {value!r}") from None
    if number < 0:
        raise ScriptError(f"{what} must not be negative, got {number}")
    return number


def _confidence(value: Any, prefix: str) -> float:
    """A recogniser confidence from a script: a number from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ScriptError(f"{prefix}confidence must be a number from 0 to 1, got {value!r}")
    return float(value)
