#!/usr/bin/env bash
# Debian packages the app and its tests need on a fresh machine: Qt's runtime libraries
# (xcb platform plugin included), Xvfb for real-screen screenshots, Orthanc and DCMTK for the
# PACS tests. Skipped when they are already there, or when apt-get cannot be used.
# When another package manager holds apt's lock (a fresh machine's first automatic update),
# it waits for it, saying so, up to HEALTHFM_APT_LOCK_TIMEOUT seconds (default 900).
set -euo pipefail
LOCK_TIMEOUT="${HEALTHFM_APT_LOCK_TIMEOUT:-900}"
POLL="${HEALTHFM_APT_LOCK_POLL:-5}"
WANT=(libegl1 libgl1 libfontconfig1 libxkbcommon0 libxkbcommon-x11-0 libdbus-1-3 libglib2.0-0
      libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0
      libxcb-xkb1 libxcb-randr0 libxcb-xinerama0 fonts-dejavu-core)
if [ "${1:-}" = "--with-test-tools" ]; then WANT+=(xvfb orthanc dcmtk openssl); fi
missing=()
for pkg in "${WANT[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! command -v apt-get >/dev/null; then echo "apt-get not found; install: ${missing[*]}" >&2; exit 0; fi
export DEBIAN_FRONTEND=noninteractive

# apt_get ARGS...: apt-get, waiting while another process holds apt's or dpkg's lock
apt_get() {
  local waited=0 out status
  while true; do
    status=0
    out=$($SUDO apt-get -o DPkg::Lock::Timeout=0 "$@" 2>&1) || status=$?
    if [ "$status" -eq 0 ]; then return 0; fi
    if ! grep -qiE "could not get lock|unable to lock|is another process using it" <<<"$out"; then
      echo "$out" >&2; return "$status"
    fi
    if [ "$waited" -ge "$LOCK_TIMEOUT" ]; then
      echo "system-deps.sh: apt is still locked by another process after ${waited} s (an automatic update?);" \
           "run 'bash scripts/system-deps.sh' again when it has finished." >&2
      return 100
    fi
    [ "$waited" -eq 0 ] && echo "system-deps.sh: another process holds apt's lock (an automatic update?);" \
                                "waiting for it, up to ${LOCK_TIMEOUT} s…" >&2
    sleep "$POLL"; waited=$((waited + POLL))
  done
}
apt_get update -qq
apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts Orthanc as a service on install; the tests start their own on free ports
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop orthanc 2>/dev/null || true; fi
$SUDO service orthanc stop >/dev/null 2>&1 || true
