"""How FreeSWITCH splits the arguments of ``originate`` and of the ``socket`` app, for the test double.

A real FreeSWITCH (1.11.1, switch_utils.c ``switch_separate_string`` with a blank delimiter, as
mod_commands' ``originate`` and mod_event_socket's ``socket`` app call it):

- splits on spaces outside single quotes; a backslash keeps the next character from splitting;
- then strips each token's quotes (a ``'`` is a quote when another one follows it, or it closes one)
  and resolves ``\\'``, ``\\"``, ``\\\\``, ``\\n``, ``\\r``, ``\\t``, ``\\s`` escapes.

So ``originate {...}ENDPOINT &socket(127.0.0.1:8084 async full)`` gives the tokens
``&socket(127.0.0.1:8084``, ``async`` and ``full)``: the socket app gets ``127.0.0.1:8084`` alone and
connects in sync (``Socket-Mode: static``), non-full (``Control: single-channel``) mode, where
mod_event_socket refuses every command but a few (:data:`NON_FULL_COMMANDS`) with ``-ERR command not
found``. Quoted, ``&socket('127.0.0.1:8084 async full')`` is one token, and the app gets all three
words. A dialplan's ``<action application="socket" data="127.0.0.1:8084 async full"/>`` reaches the app
unsplit.
"""

from __future__ import annotations

from dataclasses import dataclass

from fsdouble.config import require_loopback

ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "s": " "}
ORIGINATE_MAX_ARGS = 7  # <call url> <exten> [<dialplan>] [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]

# What mod_event_socket's parse_command serves on an outbound socket without ``full`` (besides exit):
# everything else falls through to "-ERR command not found".
NON_FULL_COMMANDS = frozenset({"connect", "getvar", "myevents", "divert_events", "sendmsg", "resume", "filter"})


def _raw_tokens(text: str) -> list[str]:
    """First pass: split on spaces outside single quotes; ``\\`` protects the next character."""
    tokens: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            current += [char, text[i + 1]]
            i += 2
            continue
        if char == "'":
            quoted = not quoted
        if char == " " and not quoted:
            if current:
                tokens.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    if current:
        tokens.append("".join(current))
    return tokens


def _cleanup(token: str) -> str:
    """Second pass (``cleanup_separated_string``): strip quotes and trailing spaces, resolve escapes."""
    out: list[str] = []
    end: int | None = None
    quoted = False
    i = 0
    token = token.lstrip(" ")
    while i < len(token):
        char = token[i]
        follower = token[i + 1] if i + 1 < len(token) else ""
        if char == "\\" and follower and (follower in "'\"\\" or follower in ESCAPES):
            out.append(ESCAPES.get(follower, follower))
            end, i = len(out), i + 2
            continue
        if char == "'" and (quoted or "'" in token[i + 1:]):
            quoted = not quoted
            end = len(out) if quoted else end
        else:
            out.append(char)
            end = len(out) if char != " " or quoted else end
        i += 1
    return "".join(out if end is None else out[:end])


def separate_blank(text: str) -> list[str]:
    """``switch_separate_string(text, ' ', ...)``: the arguments FreeSWITCH sees."""
    return [_cleanup(token) for token in _raw_tokens(text)]


@dataclass(frozen=True, slots=True)
class OriginateArgs:
    """An ``originate`` command as mod_commands reads it."""

    aleg: str  # ``{vars}ENDPOINT``
    app: str  # "socket", "park", ... ; "inline" for ``'a:b,c:d' inline``; "transfer" for an extension
    arg: str  # the app's argument, the inline dialplan, or the extension


def parse_originate(args: str) -> OriginateArgs | None:
    """``<call url> <exten>|&<app>(<args>) [<dialplan>] ...`` → its parts; None when FreeSWITCH answers USAGE.

    ``&app(arg)``: the token after ``&``, cut at its first ``)``, then split at its first ``(``."""
    tokens = separate_blank(args)
    if not 2 <= len(tokens) <= ORIGINATE_MAX_ARGS:
        return None
    aleg, exten = tokens[0], tokens[1]
    dialplan = tokens[2] if len(tokens) > 2 else "XML"
    if exten.startswith("&") and len(exten) > 1:
        name, _, arg = exten[1:].split(")", 1)[0].partition("(")
        return OriginateArgs(aleg, name, arg)
    if dialplan == "inline":
        return OriginateArgs(aleg, "inline", exten)
    return OriginateArgs(aleg, "transfer", exten)


@dataclass(frozen=True, slots=True)
class SocketTarget:
    """The ``socket`` app's argument: where to connect, and in which mode."""

    host: str
    port: int
    asynchronous: bool  # ``async``: the channel parks and a listener thread serves the socket
    full: bool  # ``full``: every ESL command; otherwise only NON_FULL_COMMANDS

    @property
    def socket_mode(self) -> str:
        """The connect reply's ``Socket-Mode`` header."""
        return "async" if self.asynchronous else "static"

    @property
    def control(self) -> str:
        """The connect reply's ``Control`` header."""
        return "full" if self.full else "single-channel"

    @property
    def data(self) -> str:
        """The app data as FreeSWITCH reports it back (``current_application_data``)."""
        flags = [word for word, on in (("async", self.asynchronous), ("full", self.full)) if on]
        return " ".join([f"{self.host}:{self.port}", *flags])


def parse_socket_arg(arg: str) -> SocketTarget:
    """``127.0.0.1:8084 async full`` → SocketTarget; ValueError unless the address is a loopback host:port.

    The app splits its data as originate does; ``async`` and ``full`` count in any case, anywhere after
    the address."""
    words = separate_blank(arg)
    host, _, port = (words[0] if words else "").rpartition(":")
    if not port.isdigit():
        raise ValueError(f"bad socket address {arg!r}")
    require_loopback(host)
    flags = {word.lower() for word in words[1:]}
    return SocketTarget(host, int(port), "async" in flags, "full" in flags)
