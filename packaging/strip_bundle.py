"""Strip the symbol tables a bundle's shared libraries still carry (numpy's and scipy's OpenBLAS,
OpenCV's codecs, ml_dtypes): `python packaging/strip_bundle.py dist/healthfm`."""

import subprocess
import sys
from pathlib import Path

# Qt and the interpreter stay as shipped; so does OpenBLAS: with scipy's copy stripped, the GUI
# start printed ~90 shiboken signature-parser warnings (found by bisection; PyInstaller's
# strip=True, which strips everything, showed the same)
KEEP = ("PySide6/", "shiboken6/", "libpython")


def _elf_with_symtab(path: Path) -> bool:
    with path.open("rb") as handle:
        if handle.read(4) != b"\x7fELF":
            return False
    sections = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    return " .symtab " in sections


def main(bundle: str) -> None:
    internal = Path(bundle) / "_internal"
    saved = 0
    for path in sorted(internal.rglob("*.so*")):
        relative = path.relative_to(internal).as_posix()
        if path.is_symlink() or not path.is_file() or relative.startswith(KEEP) or "openblas" in path.name or not _elf_with_symtab(path):
            continue
        before = path.stat().st_size
        subprocess.run(["strip", "--strip-unneeded", str(path)], check=True)
        saved += before - path.stat().st_size
    print(f"strip_bundle: {saved / 2**20:.1f} MB of symbol tables removed")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "dist/healthfm")
