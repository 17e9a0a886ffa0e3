#!/usr/bin/env bash
# Set up .venv if needed, then start the web demo at http://127.0.0.1:7860 (no arguments), or run the
# facepose CLI with the given arguments (e.g. `detect PHOTOS OUT`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
if [ $# -eq 0 ]; then
  exec .venv/bin/python app.py
fi
exec .venv/bin/facepose "$@"
