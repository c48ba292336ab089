#!/usr/bin/env bash
# Wrap dist/healthfm/ into a .deb that installs under /opt/healthfm with a launcher, a desktop
# entry, an icon and a MIME association for DICOM files, declaring the system libraries the
# bundle does not carry (Qt's X11/xcb and OpenGL stack); removing it leaves nothing behind.
# Usage: bash packaging/make_deb.sh VERSION [BUNDLE (dist/healthfm)] [OUT (dist)]
# (STAGING: where the package tree is laid out, build/deb; PYTHON: a Python 3 for the Depends check)
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:?version}
BUNDLE=${2:-dist/healthfm}
OUT=${3:-dist}
ROOT=${STAGING:-build/deb}/healthfm_${VERSION}_amd64
rm -rf "$ROOT"
ICONS="$ROOT/usr/share/icons/hicolor"
mkdir -p "$ROOT/DEBIAN" "$ROOT/opt" "$ROOT/usr/bin" "$ROOT/usr/share/applications" "$ROOT/usr/share/mime/packages" \
    "$ICONS/scalable/apps" "$ICONS/256x256/apps"
cp -a "$BUNDLE" "$ROOT/opt/healthfm"
ln -s /opt/healthfm/healthfm "$ROOT/usr/bin/healthfm"
cp packaging/healthfm.desktop "$ROOT/usr/share/applications/"
cp packaging/healthfm-dicom.xml "$ROOT/usr/share/mime/packages/"
cp resources/icons/healthfm.svg "$ICONS/scalable/apps/healthfm.svg"
cp resources/icons/healthfm.png "$ICONS/256x256/apps/healthfm.png"
SIZE=$(du -sk "$ROOT/opt" | cut -f1)
# The libraries Qt's xcb platform plugin, EGL/OpenGL and fonts load from the system (the bundle
# carries Qt itself), and the packages of the system libraries the spec left out of the bundle
# (build/pyinstaller/system-packages.txt); deb_depends.py below fails the build on a library left out.
SYSTEM_PACKAGES=${SYSTEM_PACKAGES:-build/pyinstaller/system-packages.txt}
DEPENDS=$( (cat "$SYSTEM_PACKAGES" 2>/dev/null || true; cat <<'LIBS'
libc6 (>= 2.36)
libgcc-s1
libstdc++6
libegl1
libgl1
libopengl0
libfontconfig1
libfreetype6
libx11-6
libx11-xcb1
libxext6
libxrender1
libxcb1
libxcb-cursor0
libxcb-glx0
libxcb-icccm4
libxcb-image0
libxcb-keysyms1
libxcb-randr0
libxcb-render0
libxcb-render-util0
libxcb-shape0
libxcb-shm0
libxcb-sync1
libxcb-util1
libxcb-xfixes0
libxcb-xinerama0
libxcb-xkb1
libxkbcommon0
libxkbcommon-x11-0
libdbus-1-3
libglib2.0-0
libwayland-client0
libwayland-cursor0
libwayland-egl1
LIBS
) | sort -u | paste -sd, - | sed 's/,/, /g')
cat > "$ROOT/DEBIAN/control" <<CONTROL
Package: healthfm-desktop
Version: ${VERSION}
Architecture: amd64
Maintainer: HealthFM Desktop developers <healthfm@localhost>
Installed-Size: ${SIZE}
Depends: ${DEPENDS}
Recommends: shared-mime-info, desktop-file-utils
Section: science
Priority: optional
Description: Offline medical AI workstation
 DICOM viewer, clinical-note annotator, molecule panel and patient view with
 on-device ONNX models. Runs fully offline.
CONTROL
cat > "$ROOT/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
command -v update-mime-database >/dev/null && update-mime-database /usr/share/mime || true
command -v update-desktop-database >/dev/null && update-desktop-database /usr/share/applications || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t /usr/share/icons/hicolor || true
POSTINST
cat > "$ROOT/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
# files the bundle wrote into its own folder at run time (caches) are not dpkg's: remove them
# too, so that nothing of the package is left under /opt
if [ "$1" = remove ] || [ "$1" = purge ]; then
    rm -rf /opt/healthfm
fi
command -v update-mime-database >/dev/null && update-mime-database /usr/share/mime || true
command -v update-desktop-database >/dev/null && update-desktop-database /usr/share/applications || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t /usr/share/icons/hicolor || true
POSTRM
chmod 755 "$ROOT/DEBIAN/postinst" "$ROOT/DEBIAN/postrm"
# every library a file of the bundle links and the bundle lacks must come from a package in Depends
"${PYTHON:-python3}" packaging/deb_depends.py "$ROOT/opt/healthfm" "$ROOT/DEBIAN/control"
# xz (every dpkg reads it): about half the size of gzip for this bundle; level 9 (64 MiB window)
# finds the repeats across the bundle's many similar libraries
dpkg-deb --root-owner-group -Zxz -z9 --threads-max="$(nproc)" --build "$ROOT" "$OUT/healthfm_${VERSION}_amd64.deb" >/dev/null
echo "deb: $OUT/healthfm_${VERSION}_amd64.deb $(du -h "$OUT/healthfm_${VERSION}_amd64.deb" | cut -f1), $(stat -c %s "$OUT/healthfm_${VERSION}_amd64.deb") bytes"
