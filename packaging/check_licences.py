"""Fail the build when GPL code is inside the MIT bundle.

``python packaging/check_licences.py build/pyinstaller/healthfm`` reads the PyInstaller work
folder's TOC files (every module, extension and data file the bundle holds, with the path it came
from), maps each file to the installed distribution whose RECORD lists it, and checks that
distribution's licence metadata (License-Expression, License, classifiers). GPL and AGPL fail;
LGPL, an ``OR`` with a non-GPL choice, and GPL with a linking/bootloader exception (PyInstaller's
own runtime) pass. Exit 0 when clean, 1 with one line per offending distribution.
"""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import os
import re
import sys
from pathlib import Path

_GPL = re.compile(r"(?<![L\w])A?GPL|GNU (Affero )?General Public License", re.IGNORECASE)
_LESSER = re.compile(r"LGPL|Lesser General Public", re.IGNORECASE)
_EXCEPTION = re.compile(r"exception", re.IGNORECASE)


def is_gpl(licence: str) -> bool:
    """Whether a licence text or SPDX expression obliges GPL terms on the bundle."""
    for choice in re.split(r"\s+OR\s+", licence.strip()):
        if not choice:
            continue
        if not _GPL.search(choice) or _LESSER.search(choice) or _EXCEPTION.search(choice):
            return False  # this alternative is not GPL: the licence can be taken under it
    return bool(licence.strip())


def licence_of(dist: metadata.Distribution) -> str:
    """The licence a distribution declares: its SPDX expression, else its classifiers, else its
    License field (often a whole licence text)."""
    meta = dist.metadata
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return expression
    classifiers = [c.split("::", 2)[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    classifiers = [c for c in classifiers if c not in ("OSI Approved", "Other/Proprietary License")]
    if classifiers:
        return " OR ".join(classifiers)
    return (meta.get("License") or "").strip().splitlines()[0] if (meta.get("License") or "").strip() else ""


def owners_of_files() -> dict[str, metadata.Distribution]:
    """Path of every installed file relative to its site-packages folder -> its distribution."""
    owners: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        for file in dist.files or []:
            owners[Path(file).as_posix()] = dist
    return owners


def _site_relative(source: str) -> str | None:
    marker = "/site-packages/"
    at = source.rfind(marker)
    return source[at + len(marker):] if at >= 0 else None


def bundled_sources(work_dir: Path) -> set[str]:
    """Source paths of everything the PyInstaller TOCs put in the bundle."""
    sources: set[str] = set()
    for toc in sorted(work_dir.glob("*.toc")):
        try:
            data = ast.literal_eval(toc.read_text(encoding="utf-8"))
        except (ValueError, SyntaxError, OSError):
            continue
        stack = [data]
        while stack:
            item = stack.pop()
            if isinstance(item, (list, tuple)):
                if len(item) == 3 and all(isinstance(x, str) for x in item) and os.path.isabs(item[1]):
                    sources.add(item[1])
                else:
                    stack.extend(item)
    return sources


def gpl_in_bundle(work_dir: Path) -> dict[str, str]:
    """Distribution name -> licence, for each GPL distribution with a file in the bundle."""
    owners = owners_of_files()
    found: dict[str, str] = {}
    for source in bundled_sources(work_dir):
        relative = _site_relative(Path(source).as_posix())
        dist = owners.get(relative) if relative else None
        if dist is None:
            continue
        name = dist.metadata["Name"]
        if name not in found:
            licence = licence_of(dist)
            # a GPL classifier beside a License field granting an exception (PyInstaller's
            # bootloader exception for what it puts in the bundle) passes
            granted = _EXCEPTION.search((dist.metadata.get("License") or "")[:500])
            found[name] = licence if is_gpl(licence) and not granted else ""
    return {name: licence for name, licence in sorted(found.items()) if licence}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_licences.py PYINSTALLER_WORK_DIR (e.g. build/pyinstaller/healthfm)", file=sys.stderr)
        return 2
    work_dir = Path(argv[0])
    if not any(work_dir.glob("*.toc")):
        print(f"check_licences: {work_dir}: no PyInstaller TOC files (build the bundle first)", file=sys.stderr)
        return 2
    offending = gpl_in_bundle(work_dir)
    for name, licence in offending.items():
        print(f"check_licences: GPL inside the bundle: {name} ({licence})", file=sys.stderr)
    if offending:
        print("check_licences: the bundle is MIT; replace these or exclude them in packaging/healthfm.spec", file=sys.stderr)
        return 1
    print("check_licences: no GPL distribution inside the bundle")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
