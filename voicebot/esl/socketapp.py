"""The ``socket`` app as an originate runs it, and the mode FreeSWITCH says it connected in.

The quoting trap (FreeSWITCH 1.11.1): ``originate {...}ENDPOINT &socket(127.0.0.1:8084 async full)``
is split on spaces by the originate command, so the socket app gets only ``127.0.0.1:8084`` and
connects in sync (``Socket-Mode: static``), non-full (``Control: single-channel``) mode, where
mod_event_socket answers ``event``, ``linger`` and ``api`` with ``-ERR command not found``. Single
quotes keep the argument whole: ``&socket('127.0.0.1:8084 async full')``. A dialplan's
``<action application="socket" data="127.0.0.1:8084 async full"/>`` is not split.
"""

from __future__ import annotations

from collections.abc import Mapping

UNCARRIED = ("'", ",", "{", "}", "\n", "\r", "\\")  # no quoting carries these through originate's {...}
QUOTING_TRAP = ("an originate's socket app argument must be single-quoted, "
                "&socket('HOST:PORT async full'): unquoted, the originate splits it on spaces")


def originate_socket_app(address: str) -> str:
    """The originate's app for an engine at ``address`` (``host:port``): ``&socket('host:port async full')``."""
    if "'" in address or " " in address:
        raise ValueError(f"a socket address has no quotes or spaces: {address!r}")
    return f"&socket('{address} async full')"


def originate_vars(variables: Mapping[str, str]) -> str:
    """The inside of an originate's ``{...}``: ``a=1,b='x y'``. A value with a space is single-quoted (the
    originate splits on spaces outside quotes, which would cut the dial string in two). ValueError, naming the
    variable, for a value holding a quote, comma, brace, backslash or line break."""
    parts = []
    for name, value in variables.items():
        bad = [c for c in UNCARRIED if c in name + value] + ([" "] if " " in name else [])
        if bad:
            raise ValueError(f"call variable {name!r} holds {bad[0]!r}, which an originate cannot carry")
        parts.append(f"{name}='{value}'" if " " in value else f"{name}={value}")
    return ",".join(parts)


def socket_mode_problem(headers: Mapping[str, str]) -> str | None:
    """None when the ``connect`` reply says ``Socket-Mode: async`` and ``Control: full``; else what is wrong,
    naming the quoting trap. A reply without these headers (an old switch, a stub) passes."""
    mode, control = headers.get("Socket-Mode", "async"), headers.get("Control", "full")
    if mode == "async" and control == "full":
        return None
    return f"the socket connected as Socket-Mode {mode}, Control {control} (need async, full): {QUOTING_TRAP}"
