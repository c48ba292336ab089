#!/usr/bin/env bash
# Debian packages the app and its tests need on a fresh machine: Qt's runtime libraries
# (xcb platform plugin included), Xvfb for real-screen screenshots, Orthanc and DCMTK for the
# PACS tests. Skipped when they are already there, or when apt-get cannot be used.
set -euo pipefail
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
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts Orthanc as a service on install; the tests start their own on free ports
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop orthanc 2>/dev/null || true; fi
$SUDO service orthanc stop >/dev/null 2>&1 || true
