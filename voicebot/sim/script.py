"""Caller scripts: what a simulated caller says and does, as YAML or chat commands.

A caller script is a YAML list; each item is one action::

    - yes, speaking                 # a plain string: say it after the bot finishes
    - say: tell me more
    - barge: not interested         # interrupt the current prompt...
      at_ms: 800                    # ...800 ms after it started (default 500)
    - dtmf: 1                       # press a key
    - silence                       # say nothing until the bot reacts
    - wait: 2000                    # let 2000 ms pass
    - hangup

The same actions typed in ``voicebot chat``: plain text, ``/barge [ms] text``,
``/dtmf 1``, ``/silence``, ``/wait 2000``, ``/hangup``.
"""

from __future__ import annotations

from typing import Any

from voicebot.sim.text import ACTION_KINDS, CallerAction

DEFAULT_BARGE_MS = 500


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
    unknown = [k for k in item if k not in ACTION_KINDS and k != "at_ms"]
    if len(kinds) != 1 or unknown:
        raise ScriptError(f"{prefix}an action needs exactly one of {', '.join(ACTION_KINDS)}"
                          + (f"; unknown key(s): {', '.join(map(str, unknown))}" if unknown else ""))
    kind = kinds[0]
    value = item[kind]
    if kind == "wait":
        return CallerAction("wait", at_ms=_int(value, f"{prefix}wait"))
    if kind == "barge":
        return CallerAction("barge", str(value), _int(item.get("at_ms", DEFAULT_BARGE_MS), f"{prefix}at_ms"))
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
