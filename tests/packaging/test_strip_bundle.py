"""packaging/strip_bundle.py on the installed wheels' real libraries: closing patchelf's holes keeps
every segment's bytes and the library loads and works; the ICU subset keeps what Qt needs."""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packaging"))
import strip_bundle  # noqa: E402

SITE = Path(importlib.util.find_spec("rdkit").origin).resolve().parents[1]
PYSIDE = Path(importlib.util.find_spec("PySide6").origin).resolve().parent
needs_binutils = pytest.mark.skipif(shutil.which("objcopy") is None or shutil.which("ld") is None,
                                    reason="binutils (objcopy, ld) build the bundle; not installed here")


def _segments(path: Path) -> list[tuple[int, bytes]]:
    """(address, bytes) of each LOAD segment, the ELF, program and section headers blanked (the
    offsets in them are what compaction changes)."""
    data = bytearray(path.read_bytes())
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    size, count, shsize, shcount = struct.unpack_from("<HHHH", data, 0x36)
    headers = [(0, phoff + size * count), (shoff, shoff + shsize * shcount)]
    out = []
    for i in range(count):
        kind, _, offset, vaddr, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", data, phoff + i * size)
        if kind == 1:
            segment = bytearray(data[offset:offset + filesz])
            for start, end in headers:
                low, high = max(start, offset), min(end, offset + filesz)
                if low < high:
                    segment[low - offset:high - offset] = bytes(high - low)
            out.append((vaddr, bytes(segment)))
    return out


def test_closing_patchelfs_holes_keeps_segments_and_the_library_works(tmp_path):
    """RDKit's vendored cairo stack carries 2 MiB holes: after compaction the same segments sit at
    the same addresses, and RDKit draws a PNG through the compacted libraries."""
    shutil.copytree(SITE / "rdkit", tmp_path / "rdkit")
    shutil.copytree(SITE / "rdkit.libs", tmp_path / "rdkit.libs")
    cairo = next((tmp_path / "rdkit.libs").glob("libcairo-*.so*"))
    before_segments, before_size = _segments(cairo), cairo.stat().st_size
    saved = sum(strip_bundle.compact_elf(path) for path in (tmp_path / "rdkit.libs").iterdir())
    assert saved > 20 * 2**20, "RDKit's wheel no longer carries the holes: this step can go"
    assert _segments(cairo) == before_segments and cairo.stat().st_size < before_size / 2
    assert strip_bundle.compact_elf(cairo) == 0  # nothing left to close
    script = ("from rdkit import Chem; from rdkit.Chem.Draw import rdMolDraw2D; "
              "d = rdMolDraw2D.MolDraw2DCairo(200, 200); d.DrawMolecule(Chem.MolFromSmiles('c1ccccc1O')); "
              "d.FinishDrawing(); print(d.GetDrawingText()[:4])")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=120)
    assert run.returncode == 0 and "PNG" in run.stdout, run.stderr


def test_icu_subset_keeps_properties_root_collation_and_english():
    library = PYSIDE / "Qt" / "lib"
    icudata = next(library.glob("libicudata.so.*"))
    blob = _rodata(icudata)
    subset = strip_bundle.subset_icu_data(blob)
    names = _icu_names(subset)
    assert names == sorted(names)  # ICU finds items by binary search
    prefix = names[0].split("/")[0] + "/"
    for kept in ("nfkc.nrm", "cnvalias.icu", "coll/ucadata.icu", "coll/root.res", "root.res", "en.res",
                 "zoneinfo64.res", "ibm-5348_P100-1997.cnv", "brkitr/word.brk"):
        assert prefix + kept in names, kept
    for gone in ("de.res", "coll/zh.res", "brkitr/cjdict.dict", "gb18030.cnv", "translit/root.res", "unames.icu",
                 "curr/en.res", "unit/root.res"):
        assert prefix + gone not in names, gone
    assert len(subset) < len(blob) / 4


@needs_binutils
def test_qt_sorts_and_formats_with_the_icu_subset(tmp_path):
    """Qt with the rebuilt libicudata: English collation and ICU case mapping as before; other
    locales fall back to root collation."""
    for name in ("PySide6", "shiboken6"):
        shutil.copytree(PYSIDE.parent / name, tmp_path / name, symlinks=True)
    icudata = next((tmp_path / "PySide6" / "Qt" / "lib").glob("libicudata.so.*"))
    assert strip_bundle.slim_icu_data(icudata) > 20 * 2**20
    script = ("from PySide6.QtCore import QCollator, QLocale; "
              "words = ['zebra', 'Äpfel', 'apple', 'éclair', 'B', 'b', '10', '9']; "
              "print(sorted(words, key=QCollator(QLocale('en_US')).sortKey)); "
              "print(QLocale('tr_TR').toUpper('istanbul'), QLocale('de_DE').toString(1234.5, 'f', 1))")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"}, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == str(['10', '9', 'Äpfel', 'apple', 'b', 'B', 'éclair', 'zebra'])
    assert lines[1] == "İSTANBUL 1.234,5"


def _rodata(library: Path) -> bytes:
    data = library.read_bytes()
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    size, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * size) for i in range(count)]
    names = headers[names_index]
    for header in headers:
        label = data[names[4] + header[0]:data.index(b"\0", names[4] + header[0])]
        if label == b".rodata":
            return data[header[4]:header[4] + header[5]]
    raise AssertionError("no .rodata")


def _icu_names(blob: bytes) -> list[str]:
    toc = struct.unpack_from("<H", blob, 0)[0]
    count = struct.unpack_from("<I", blob, toc)[0]
    names = []
    for i in range(count):
        at = struct.unpack_from("<I", blob, toc + 4 + 8 * i)[0]
        names.append(blob[toc + at:blob.index(b"\0", toc + at)].decode())
    return names
