#!/usr/bin/env bash
# Set up .venv with the test dependencies if needed, then lint (ruff) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev >&2
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
