#!/usr/bin/env bash
# Runs the whole test suite: lint (ruff) and type checks (mypy) run inside it as tests.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest "$@"
