#!/usr/bin/env bash
# Wrap dist/healthfm/ into a .deb that installs under /opt/healthfm with a launcher, a desktop
# entry and a MIME association for DICOM files.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:?version}
ROOT=build/deb/healthfm_${VERSION}_amd64
rm -rf "$ROOT"
mkdir -p "$ROOT/DEBIAN" "$ROOT/opt" "$ROOT/usr/bin" "$ROOT/usr/share/applications" "$ROOT/usr/share/mime/packages"
cp -a dist/healthfm "$ROOT/opt/healthfm"
ln -s /opt/healthfm/healthfm "$ROOT/usr/bin/healthfm"
cp packaging/healthfm.desktop "$ROOT/usr/share/applications/"
cp packaging/healthfm-dicom.xml "$ROOT/usr/share/mime/packages/"
SIZE=$(du -sk "$ROOT/opt" | cut -f1)
cat > "$ROOT/DEBIAN/control" <<CONTROL
Package: healthfm-desktop
Version: ${VERSION}
Architecture: amd64
Maintainer: HealthFM Desktop developers <healthfm@localhost>
Installed-Size: ${SIZE}
Depends: libegl1, libgl1, libfontconfig1, libxkbcommon0, libxkbcommon-x11-0, libdbus-1-3, libglib2.0-0, libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, libxcb-image0, libxcb-render-util0, libxcb-shape0, libxcb-xkb1, libxcb-randr0, libxcb-xinerama0
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
POSTINST
chmod 755 "$ROOT/DEBIAN/postinst"
cp "$ROOT/DEBIAN/postinst" "$ROOT/DEBIAN/postrm"
dpkg-deb --root-owner-group -Zgzip -z1 --build "$ROOT" "dist/healthfm_${VERSION}_amd64.deb" >/dev/null
echo "deb: dist/healthfm_${VERSION}_amd64.deb $(du -h "dist/healthfm_${VERSION}_amd64.deb" | cut -f1)"
