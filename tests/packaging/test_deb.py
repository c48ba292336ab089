"""The .deb declares the system libraries Qt's xcb plugin links (make_deb.sh refuses to build one
that misses any), installs a launcher, a desktop entry and the icon it names, and removes /opt."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packaging"))
import deb_depends  # noqa: E402

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("dpkg-deb", "dpkg-query", "readelf", "ldconfig")),
                                reason="needs a Debian system with binutils")


def _qt() -> Path:
    import PySide6

    return Path(PySide6.__file__).resolve().parent / "Qt"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A bundle holding Qt's real xcb platform plugin and xcb support library (as the spec keeps
    them), the other Qt libraries they link as placeholders, and an executable."""
    root = tmp_path_factory.mktemp("bundle") / "healthfm"
    plugins = root / "_internal/PySide6/Qt/plugins/platforms"
    lib = root / "_internal/PySide6/Qt/lib"
    plugins.mkdir(parents=True)
    lib.mkdir(parents=True)
    shutil.copy(_qt() / "plugins/platforms/libqxcb.so", plugins)
    shutil.copy(_qt() / "lib/libQt6XcbQpa.so.6", lib)
    for path in (plugins / "libqxcb.so", lib / "libQt6XcbQpa.so.6"):
        for soname in deb_depends.needed(path):
            if soname.startswith(("libQt6", "libicu")) and not (lib / soname).exists():
                (lib / soname).write_bytes(b"placeholder")
    (root / "healthfm").write_text("#!/bin/sh\n", encoding="utf-8")
    (root / "healthfm").chmod(0o755)
    return root


@pytest.fixture(scope="module")
def deb(bundle, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    env = {**os.environ, "STAGING": str(out / "staging"), "SYSTEM_PACKAGES": os.devnull, "PYTHON": sys.executable}
    subprocess.run(["bash", str(REPO / "packaging/make_deb.sh"), "9.9.9", str(bundle), str(out)],
                   check=True, env=env, timeout=300, capture_output=True, text=True)
    return out / "healthfm_9.9.9_amd64.deb"


def _field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], check=True, capture_output=True, text=True).stdout


def test_depends_names_every_library_the_xcb_plugin_links(bundle, deb):
    declared = deb_depends.declared("Depends: " + _field(deb, "Depends"))
    linked = {soname for path in (bundle / "_internal/PySide6/Qt").rglob("*.so*")
              for soname in deb_depends.needed(path) if soname.startswith(("libxcb", "libX11", "libxkbcommon"))}
    assert len(linked) >= 15  # the xcb family Qt 6 loads: cursor, icccm, image, keysyms, randr, xkb...
    assert {deb_depends.debian_name(soname) for soname in linked} <= declared
    assert {"libxcb-cursor0", "libxkbcommon-x11-0", "libx11-xcb1", "libegl1", "libfontconfig1"} <= declared


def test_a_library_left_out_of_depends_is_named_with_its_user(bundle, deb):
    control = "Depends: " + _field(deb, "Depends")
    without_cursor = control.replace("libxcb-cursor0, ", "")
    assert deb_depends.gaps(bundle / "_internal", deb_depends.declared(control)) == {}
    gaps = deb_depends.gaps(bundle / "_internal", deb_depends.declared(without_cursor))
    assert list(gaps) == ["libxcb-cursor.so.0"]
    package, users = gaps["libxcb-cursor.so.0"]
    assert package == "libxcb-cursor0" and "PySide6/Qt/plugins/platforms/libqxcb.so" in users


def test_a_dropped_bundle_library_still_linked_is_a_gap(bundle, deb, tmp_path):
    """A symlink left to a library the spec dropped does not count as the bundle carrying it."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy, symlinks=True)
    (copy / "_internal/PySide6/Qt/lib/libQt6Gui.so.6").unlink()
    (copy / "_internal/libQt6Gui.so.6").symlink_to("PySide6/Qt/lib/libQt6Gui.so.6")
    gaps = deb_depends.gaps(copy / "_internal", deb_depends.declared("Depends: " + _field(deb, "Depends")))
    assert list(gaps) == ["libQt6Gui.so.6"]


def test_debian_names_of_sonames():
    assert deb_depends.debian_name("libxcb-render-util.so.0") == "libxcb-render-util0"
    assert deb_depends.debian_name("libX11-xcb.so.1") == "libx11-xcb1"
    assert deb_depends.debian_name("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"
    assert deb_depends.debian_name("libwayland-egl.so.1") == "libwayland-egl1"
    assert deb_depends.declared("Depends: libc6 (>= 2.36), liba1 | libb2,\n libc3") == {"libc6", "liba1", "libb2", "libc3"}


def test_the_package_installs_a_launcher_a_desktop_entry_and_its_icon(deb):
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
    paths = {line.split()[5] for line in listing.splitlines()}
    assert "./usr/bin/healthfm -> /opt/healthfm/healthfm" in listing
    assert {"./opt/healthfm/healthfm", "./usr/share/applications/healthfm.desktop",
            "./usr/share/icons/hicolor/scalable/apps/healthfm.svg", "./usr/share/icons/hicolor/256x256/apps/healthfm.png",
            "./usr/share/mime/packages/healthfm-dicom.xml"} <= paths
    entry = configparser.ConfigParser(interpolation=None)
    entry.read(REPO / "packaging/healthfm.desktop", encoding="utf-8")
    desktop = entry["Desktop Entry"]
    assert desktop["Exec"].split()[0] == "/opt/healthfm/healthfm" and desktop["Exec"].split()[1] == "gui"
    assert desktop["Icon"] == "healthfm" and "application/dicom" in desktop["MimeType"]
    if shutil.which("desktop-file-validate"):  # no error, no hint (two main categories listed it twice)
        validated = subprocess.run(["desktop-file-validate", str(REPO / "packaging/healthfm.desktop")],
                                   capture_output=True, text=True)
        assert (validated.returncode, validated.stdout + validated.stderr) == (0, "")
    postrm = subprocess.run(["dpkg-deb", "-I", str(deb), "postrm"], check=True, capture_output=True, text=True).stdout
    assert "rm -rf /opt/healthfm" in postrm  # what the app wrote into its folder goes too
