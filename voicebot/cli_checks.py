"""Checks the ``voicebot`` command makes before it starts slow work: files, ``--var`` names, ports, the switch.

Each raises :class:`~voicebot.cli_errors.UsageError` (or :class:`~voicebot.cli_errors.PortInUse`) with a
message of the form ``<what>: <cause>; <fix>``, so a mistake is reported in a second, not after the models
have loaded or the call has started.
"""

from __future__ import annotations

import difflib
import errno
import socket
from collections.abc import Iterable
from pathlib import Path

from voicebot.cli_errors import PortInUse, UsageError
from voicebot.dialog.flow import Flow

CONNECT_TIMEOUT_S = 2.0  # how long `voicebot call` waits for FreeSWITCH's event socket to accept a connection


def check_text_file(path: Path, what: str, fix: str) -> None:
    """``path`` is an existing, non-empty UTF-8 text file; ``what`` names it (e.g. "flow test file")."""
    if path.is_dir():
        raise UsageError(f"{path}: a directory, not a {what}; {fix}")
    if not path.is_file():
        raise UsageError(f"{path}: no such file; {fix}")
    raw = path.read_bytes()
    if not raw.strip():
        raise UsageError(f"{path}: the {what} is empty; {fix}")
    if is_binary(raw):
        raise UsageError(f"{path}: a binary file, not a {what} (YAML text, UTF-8); {fix}")


def is_binary(raw: bytes) -> bool:
    """True for bytes that are not UTF-8 text (a NUL byte, or not UTF-8 at all)."""
    if b"\x00" in raw:
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def parse_variables(pairs: list[str], known: Iterable[str] | None, where: str = "") -> dict[str, str]:
    """``--var K=V`` pairs as a dict; with ``known``, a name outside it is an error with a did-you-mean."""
    names = sorted(set(known)) if known is not None else None
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--var {pair}: expects KEY=VALUE; write e.g. --var customer_name=Alex")
        if names is not None and key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else "check the spelling"
            listed = ", ".join(names) or "none"
            raise UsageError(f"--var {key}: {where or 'the flow'} has no variable {key!r} ({hint}); "
                             f"its variables: {listed}")
        out[key] = value
    return out


def flow_variable_names(flow: Flow) -> set[str]:
    """What ``--var`` may set for ``flow``: its declared variables and the slots its nodes capture."""
    return set(flow.variables) | {slot for node in flow.nodes.values() for slot in node.capture}


def check_port_free(host: str, port: int, key: str) -> None:
    """:class:`PortInUse` when ``host:port`` cannot be bound (port 0: any free port, nothing to check)."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no clash
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(key, host, port) from None
            raise UsageError(f"{host}:{port} ({key}): cannot listen there ({exc.strerror}); "
                             f"set another {key} in the config") from None


def check_switch_reachable(host: str, port: int) -> str | None:
    """None when FreeSWITCH's event socket accepts a TCP connection, else why not (in words)."""
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
