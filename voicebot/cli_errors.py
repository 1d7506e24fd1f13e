"""The one error path of the ``voicebot`` command: exit codes, and user mistakes as one line each.

Every command's user mistake ends as ``voicebot: <what>: <cause>; <fix>`` on stderr with one of the
exit codes below (documented in docs/cli.md); anything unexpected prints one line and the hint to run
with ``--debug``, which shows the traceback instead.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

from voicebot.asr.base import ModelError
from voicebot.audio.wav import WavFormatError
from voicebot.config import ConfigError
from voicebot.dialog.loader import FlowError
from voicebot.sim.caller import CallerScriptError
from voicebot.sim.flowtest import FlowTestError
from voicebot.sim.script import ScriptError
from voicebot.tts.base import VoiceError

EXIT_OK = 0  # the command did what it was asked
EXIT_FAILED = 1  # what it checked failed: validate found errors, a flow test failed, a recording failed to import
EXIT_USAGE = 2  # bad input: wrong arguments, a missing/empty/binary/invalid file, an unknown variable
EXIT_UNREACHABLE = 3  # FreeSWITCH's event socket cannot be reached (voicebot call)
EXIT_ORIGINATE = 4  # FreeSWITCH refused the call, or it never reached the engine (voicebot call)
EXIT_NO_AUDIO = 5  # no audio within 5 s (voicebot call --caller)
EXIT_PORT_IN_USE = 6  # a port the engine listens on is taken (voicebot serve, voicebot call)
EXIT_BROKEN_PIPE = 141  # stdout was closed (`voicebot chat ... | head`): 128 + SIGPIPE, as a C tool would end
EXIT_INTERNAL = 70  # a bug: an exception nobody expected (EX_SOFTWARE); --debug shows the traceback
EXIT_INTERRUPTED = 130  # Ctrl-C

USER_ERRORS = (FlowError, FlowTestError, ScriptError, ModelError, VoiceError, CallerScriptError, ConfigError,
               WavFormatError)


class UsageError(ValueError):
    """A mistake on the command line; the message is ``<what>: <cause>; <fix>``."""


class PortInUse(OSError):
    """A port the engine must listen on is taken; the message names the port and its config key."""

    def __init__(self, key: str, host: str, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"{host}:{port} ({key}) is already in use by another program; stop it, "
                         f"or set another {key} in the config")
        self.key, self.host, self.port = key, host, port

    def __str__(self) -> str:
        return str(self.strerror)


def run(command: Callable[[], int], debug: bool) -> int:
    """Run ``command`` and map what it raises to an exit code and one line on stderr (``debug``: raise it)."""
    try:
        status = int(command())
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        return _broken_pipe()
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            raise
        return report(exc)


def report(exc: Exception) -> int:
    """Print ``exc`` as one line and return its exit code."""
    if isinstance(exc, PortInUse):
        return _say(exc, EXIT_PORT_IN_USE)
    if isinstance(exc, (UsageError, *USER_ERRORS)):
        return _say(exc, EXIT_USAGE)
    if isinstance(exc, OSError) and exc.filename is not None:
        return _say(f"{exc.filename}: {exc.strerror or exc}; check the path and its permissions", EXIT_USAGE)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return _say(f"unexpected error: {type(exc).__name__}{': ' + text if text else ''}; run with --debug for the "
                "traceback (and report it)", EXIT_INTERNAL)


def _say(message: object, status: int) -> int:
    print(f"voicebot: {message}", file=sys.stderr)
    return status


def _broken_pipe() -> int:
    """Point stdout at /dev/null so nothing more is written to the closed pipe (Python's own advice)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (captured in tests): nothing to redirect
        pass
    return EXIT_BROKEN_PIPE
