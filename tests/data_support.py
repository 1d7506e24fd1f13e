"""Tests that need data the project installs (scripts/setup.sh) fail when it is missing, naming the package.

A machine without the data can run the rest with ``VOICEBOT_TEST_ALLOW_MISSING_DATA=1``: those tests then skip (the
suite prints skips, ``-rs``). Only tests/test_real_freeswitch.py skips by default (it needs a real FreeSWITCH).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest

ALLOW_MISSING_ENV = "VOICEBOT_TEST_ALLOW_MISSING_DATA"
POCKETSPHINX_TESTDATA = Path("/usr/share/pocketsphinx/test/data")  # Debian's pocketsphinx-testdata


def missing(package: str, what: str = "") -> None:
    """Fail the test because ``package`` is not installed, or skip it when ``ALLOW_MISSING_ENV`` is ``1``."""
    message = (f"{package} is not installed{f' ({what})' if what else ''}: run scripts/setup.sh "
               f"(or set {ALLOW_MISSING_ENV}=1 to skip the tests that need it)")
    if os.environ.get(ALLOW_MISSING_ENV) == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


def needs_data(present: bool, package: str, what: str = "") -> pytest.MarkDecorator:
    """A mark for tests that need ``package``: tests/conftest.py calls ``missing`` before each one when not present."""
    return pytest.mark.needs_data(present=present, package=package, what=what)


def require_module(name: str, package: str) -> ModuleType:
    """Module ``name``, installed with ``package``; ``missing(package)`` when it cannot be imported."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(package, f"no module {name}")
        raise  # unreachable: missing() raises
