#!/usr/bin/env bash
# Create .venv with Python 3.11 and install the project into it with the given extras.
# Usage: bash scripts/venv.sh [extras]   e.g. "test,train"
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ -n "${1:-}" ]; then .venv/bin/pip install -q ".[$1]"; else .venv/bin/pip install -q .; fi
