#!/usr/bin/env bash
# Install the .deb on this machine, check the installed bundle offline (--version, the self-test:
# models' sha256 + one run, workspaces' core paths on the samples, main window; the GUI start),
# that it links no library the system lacks and its desktop entry and icon are in place; then
# remove it and check that nothing of it is left; purge it and list any file that is new since
# before the install and that no installed package owns.
set -euo pipefail
cd "$(dirname "$0")/.."
DEB=$(ls dist/healthfm_*_amd64.deb | head -1)
export DEBIAN_FRONTEND=noninteractive
snapshot() { find /opt /usr /etc -xdev 2>/dev/null | grep -v "/__pycache__" | sort; }  # (bytecode others compile: not ours)
before_install=$(mktemp)
snapshot > "$before_install"
apt-get install -y -qq "./$DEB" >/dev/null
test -x /opt/healthfm/healthfm
test -f /usr/share/applications/healthfm.desktop
grep -q "^Icon=healthfm$" /usr/share/applications/healthfm.desktop
test -f /usr/share/icons/hicolor/scalable/apps/healthfm.svg
test -f /usr/share/icons/hicolor/256x256/apps/healthfm.png
grep -q "application/dicom" /usr/share/mime/packages/healthfm-dicom.xml
if command -v desktop-file-validate >/dev/null; then desktop-file-validate /usr/share/applications/healthfm.desktop; fi
# every shared object of the bundle finds its libraries (the bundle's own, or the .deb's Depends)
missing=$(find /opt/healthfm -name "*.so*" -type f -print0 | LD_LIBRARY_PATH=/opt/healthfm/_internal xargs -0 -n 50 ldd 2>/dev/null \
          | grep "not found" | sort -u || true)
if [ -n "$missing" ]; then echo "libraries the bundle needs and the system lacks:" >&2; echo "$missing" >&2; exit 1; fi
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
# uninstall: the package's files, the folder under /opt and the menu entry all go
files=$(dpkg -L healthfm-desktop | grep -v "^/\.$")
apt-get remove -y -qq healthfm-desktop >/dev/null
left=""
for path in /opt/healthfm /usr/bin/healthfm /usr/share/applications/healthfm.desktop \
            /usr/share/mime/packages/healthfm-dicom.xml /usr/share/icons/hicolor/scalable/apps/healthfm.svg \
            /usr/share/icons/hicolor/256x256/apps/healthfm.png; do
    if [ -e "$path" ] || [ -L "$path" ]; then left="$left $path"; fi
done
for path in $files; do
    case "$path" in /opt/*) if [ -e "$path" ]; then left="$left $path"; fi ;; esac
done
if [ -n "$left" ]; then echo "left after removing the package:$left" >&2; exit 1; fi
if dpkg -s healthfm-desktop 2>/dev/null | grep -q "^Status: install"; then echo "still installed" >&2; exit 1; fi
echo "removed cleanly: nothing of the package is left"
dpkg -P healthfm-desktop >/dev/null
if dpkg -s healthfm-desktop >/dev/null 2>&1; then echo "dpkg still knows the package after purging it" >&2; exit 1; fi
# new files are fine when a package owns them (a dependency apt installed with it); others are the package's
left=""
while IFS= read -r path; do
    dpkg -S "$path" >/dev/null 2>&1 || left="$left $path"
done < <(snapshot | comm -13 "$before_install" -)
if [ -n "$left" ]; then echo "left after purging the package (new since the install, owned by no package):$left" >&2; exit 1; fi
echo "purged cleanly: no file it or its scripts wrote is left under /opt, /usr or /etc"
