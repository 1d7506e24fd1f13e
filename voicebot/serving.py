"""``voicebot serve`` and ``voicebot call`` around the :class:`~voicebot.engine.Engine`: loading with progress,
serving until stopped, and one test call (docs/cli.md)."""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import gevent

from voicebot.cli_errors import EXIT_ORIGINATE, EXIT_UNREACHABLE
from voicebot.config import EngineConfig
from voicebot.engine import Engine, print_progress
from voicebot.esl.socketapp import originate_socket_app, originate_vars

__all__ = ["one_call_config", "place_test_call", "run_engine"]


def one_call_config(config: EngineConfig) -> EngineConfig:
    """For an engine that serves one call (``voicebot call``): the recogniser in-process, not in a pool of
    worker processes (one call decodes on one core either way; the pool costs start-up time and a process per core)."""
    if config.asr_backend.endswith("-pool"):
        return replace(config, asr_backend=config.asr_backend.removesuffix("-pool"))
    return config


def run_engine(config: EngineConfig) -> int:
    """``voicebot serve``: load (saying what takes long) and serve until stopped."""
    engine = Engine(config, accurate_model=config.asr_accurate)
    try:
        engine.load(progress=print_progress)
        print_progress("ready")
        engine.serve_forever()
    finally:  # a port in use or a bad flow found late: the model workers already started stop with it
        engine.close_models()
    return 0


def place_test_call(config: EngineConfig, destination: str, variables: dict[str, str],
                    on_entry: Callable[[dict[str, Any]], None], *, timeout_s: float = 600.0) -> tuple[int, str]:
    """``voicebot call``: an engine of our own, an originate over ESL to ``destination`` with the socket app
    pointing back at it; returns (exit status, a one-line summary): 0 the call ran, 2 a variable cannot be
    dialed, 3 FreeSWITCH unreachable, 4 the call never reached the engine (docs/cli.md)."""
    try:
        call_vars = originate_vars({"origination_uuid": str(uuidlib.uuid4()),
                                    **{f"vb_var_{k}": v for k, v in variables.items()}})
    except ValueError as err:
        return 2, f"voicebot call: {err}"
    engine = Engine(one_call_config(config), on_session=lambda s: setattr(s.timeline, "listener", on_entry))
    engine.load()
    engine.start()
    try:
        if not engine.inbound.wait_up(10.0):
            state = engine.inbound.state()
            return EXIT_UNREACHABLE, (f"FreeSWITCH is not reachable at {config.esl_host}:{config.esl_port}: "
                                      f"{state.last_error}" + (f"; {state.hint}" if state.hint else ""))
        engine.inbound.originate(f"{{{call_vars}}}{destination}",
                                 originate_socket_app(f"{config.outbound_host}:{engine.server.port}"))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and (engine.metrics.calls_total == 0 or engine.metrics.active_calls):
            gevent.sleep(0.1)
        engine.flush_records()
        record = engine.store.list(limit=1)
        if not record:
            return EXIT_ORIGINATE, "the call never reached the engine"
        r = record[0]
        return 0, f"call {r.call_id}: disposition={r.disposition} level={r.level or '-'} path={' > '.join(r.path)}"
    finally:
        engine.shutdown()
