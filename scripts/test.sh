#!/usr/bin/env bash
# Fresh Debian machine with Python 3.11 -> all tests. Installs system packages, creates .venv,
# installs the project with a plain `pip install ".[test,train]"`, runs pytest headless.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh --with-test-tools
bash scripts/venv.sh test,train
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
