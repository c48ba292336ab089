#!/usr/bin/env bash
# Install the .deb on this machine and check the installed bundle offline: --version and the
# self-test (models' sha256 + one run, workspaces' core paths on the samples, main window).
set -euo pipefail
cd "$(dirname "$0")/.."
DEB=$(ls dist/healthfm_*_amd64.deb | head -1)
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "./$DEB" >/dev/null
test -x /opt/healthfm/healthfm
test -f /usr/share/applications/healthfm.desktop
grep -q "application/dicom" /usr/share/mime/packages/healthfm-dicom.xml
# no network at all for the bundle: a fresh network namespace has only a down loopback
if unshare --net true 2>/dev/null; then OFFLINE="unshare --net"; else OFFLINE=""; echo "(unshare unavailable: not isolating the network)"; fi
export QT_QPA_PLATFORM=offscreen HEALTHFM_HOME=$(mktemp -d)
$OFFLINE healthfm --version
start=$(date +%s%N)
$OFFLINE healthfm self-test
echo "bundle self-test passed in $(( ($(date +%s%N) - start) / 1000000 )) ms"
start=$(date +%s%N)
gui_log=$(mktemp)
$OFFLINE healthfm gui --quit-after-show 2>&1 | tee "$gui_log"
# a traceback on the way in or out is a defect even when the exit status is 0
if grep -q "Traceback" "$gui_log"; then echo "bundle gui start/quit printed a traceback" >&2; exit 1; fi
echo "bundle cold start to main window and quit: $(( ($(date +%s%N) - start) / 1000000 )) ms"
du -sh /opt/healthfm | sed 's/^/installed bundle size: /' 
