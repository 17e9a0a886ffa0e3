#!/usr/bin/env bash
# Set up .venv if needed, then run the facepose CLI with the given arguments
# (default: annotate ../shared/data/photos into out/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
if [ $# -eq 0 ]; then
  set -- detect ../shared/data/photos out --overwrite
fi
exec .venv/bin/facepose "$@"
