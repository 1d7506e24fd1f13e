"""Fixtures shared by the test modules: the FreeSWITCH double, the engine side it connects to, outbound servers.

Two kinds of module use them:

- a module that declares ``ENGINE = EngineSetup(...)`` (tests/engine_support.py) runs one real engine for all its
  tests: ``fs`` is then the module's double (password ``PASSWORD``) the engine is connected to, and ``engine`` is
  that engine (its ``on_session`` hook is cleared after each test);
- a module that declares ``SHARED_DOUBLE = True`` shares one such double without an engine;
- any other module gets a fresh double per test (password ``ClueCon``) as ``fs``, and as ``engine`` a listening
  socket on 127.0.0.1 standing in for the engine (the double's socket application connects to it).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fsdouble.double import FreeSwitchDouble
from tests.data_support import missing
from tests.engine_support import PASSWORD, EngineSetup, engine_config, running_engine
from voicebot.engine import Engine
from voicebot.esl.connection import OutboundServer

FRESH_PASSWORD = "ClueCon"  # FreeSWITCH's default event-socket password, used by the double-only tests


def _engine_setup(request: pytest.FixtureRequest) -> EngineSetup | None:
    setup = getattr(request.module, "ENGINE", None)
    assert setup is None or isinstance(setup, EngineSetup), "a module's ENGINE is an EngineSetup"
    return setup


@pytest.fixture(scope="module")
def module_double() -> Iterator[FreeSwitchDouble]:
    """One double for the whole module, password ``PASSWORD``."""
    with FreeSwitchDouble(password=PASSWORD) as double:
        yield double


@pytest.fixture(scope="module")
def module_engine(request: pytest.FixtureRequest, module_double: FreeSwitchDouble,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The module's engine as its ``ENGINE`` says, connected to ``module_double``, records under a temp dir."""
    setup = _engine_setup(request)
    assert setup is not None, f"{request.module.__name__} declares no ENGINE = EngineSetup(...)"
    tmp = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    config = engine_config(module_double.inbound_port, tmp, setup.media_ports, **setup.options)
    with running_engine(config, wait_up=setup.wait_up) as eng:
        yield eng


@pytest.fixture
def fs(request: pytest.FixtureRequest) -> Iterator[FreeSwitchDouble]:
    """The test's FreeSWITCH double: the module's shared one, or a fresh one (see the module docstring)."""
    if _engine_setup(request) is not None or getattr(request.module, "SHARED_DOUBLE", False):
        yield request.getfixturevalue("module_double")
        return
    with FreeSwitchDouble(password=FRESH_PASSWORD) as double:
        yield double


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The module's running ``Engine``, or a listening socket standing in for one (see the module docstring)."""
    if _engine_setup(request) is not None:
        eng: Engine = request.getfixturevalue("module_engine")
        try:
            yield eng
        finally:
            eng.on_session = None
        return
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(5)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., OutboundServer]]:
    """Starts outbound (socket-application) servers on ephemeral ports: ``serve(handler, **kwargs)``; stops them after."""
    servers: list[OutboundServer] = []

    def start(handler: Callable[..., None], **kwargs: Any) -> OutboundServer:
        server = OutboundServer("127.0.0.1", 0, handler, **kwargs)
        server.start()
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.stop(timeout=0.1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_data(present, package, what): fails the test when package's data is missing")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Data the project installs and a test needs: missing, the test fails (tests/data_support.py)."""
    for mark in item.iter_markers("needs_data"):
        if not mark.kwargs["present"]:
            missing(mark.kwargs["package"], mark.kwargs.get("what", ""))
