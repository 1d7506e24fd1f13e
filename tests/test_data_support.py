"""Missing data the project installs fails the tests that need it (naming the package), unless skipping is asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data_support import ALLOW_MISSING_ENV, missing, require_module

ROOT = Path(__file__).resolve().parent.parent


def test_missing_data_fails_naming_the_package_and_the_setup_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_MISSING_ENV, raising=False)
    with pytest.raises(pytest.fail.Exception, match=r"pocketsphinx-testdata is not installed.*scripts/setup\.sh"):
        missing("pocketsphinx-testdata")


def test_missing_data_skips_only_when_the_environment_allows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_MISSING_ENV, "1")
    with pytest.raises(pytest.skip.Exception, match=r"pocketsphinx-testdata is not installed"):
        missing("pocketsphinx-testdata")


def test_a_missing_module_fails_naming_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_MISSING_ENV, raising=False)
    assert require_module("json", "python").dumps(1) == "1"
    with pytest.raises(pytest.fail.Exception, match=r"some-package is not installed \(no module no_such_module_x\)"):
        require_module("no_such_module_x", "some-package")


def _run_marked_test(tmp_path: Path, allow: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_configure, pytest_runtest_setup  # noqa: F401\n")
    (tmp_path / "test_needs.py").write_text(
        "from tests.data_support import needs_data\n\n\n@needs_data(False, 'pkg-x')\ndef test_x() -> None:\n    pass\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(ALLOW_MISSING_ENV, None)
    if allow:
        env[ALLOW_MISSING_ENV] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_test_marked_needs_data_fails_when_the_data_is_missing(tmp_path: Path) -> None:
    failed = _run_marked_test(tmp_path, allow=False)
    assert failed.returncode == 1 and "1 error" in failed.stdout, failed.stdout + failed.stderr
    assert "pkg-x is not installed: run scripts/setup.sh" in failed.stdout
    skipped = _run_marked_test(tmp_path, allow=True)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout and "pkg-x" in skipped.stdout, skipped.stdout
