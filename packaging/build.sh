#!/usr/bin/env bash
# Build the offline one-dir bundle (dist/healthfm/) and the Debian package (dist/healthfm_<v>_amd64.deb).
# Usage: bash packaging/build.sh [python]   (default: .venv/bin/python, with .[packaging] installed)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
"$PY" -m pip install -q ".[packaging]"
rm -rf build/pyinstaller dist/healthfm
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --workpath build/pyinstaller --distpath dist packaging/healthfm.spec
"$PY" packaging/strip_bundle.py dist/healthfm
echo "bundle: built in $(( $(date +%s) - start )) s, $(du -sh dist/healthfm | cut -f1)"
"$PY" packaging/check_licences.py build/pyinstaller/healthfm   # no GPL inside the MIT bundle
PYTHON="$PY" bash packaging/make_deb.sh "$("$PY" -c 'import healthfm_desktop; print(healthfm_desktop.__version__)')"
