#!/usr/bin/env bash
# Fresh Debian machine with Python 3.11 -> the app running on the bundled sample data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/venv.sh
exec .venv/bin/healthfm gui --demo "$@"
