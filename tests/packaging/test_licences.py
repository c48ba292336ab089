"""No GPL code inside the MIT bundle (issue 18, case 12): the licence check CI runs on the
PyInstaller build fails on a GPL distribution, and the spec keeps out every GPL package the
runtime dependencies pull in."""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packaging"))
import check_licences  # noqa: E402


@pytest.mark.parametrize("licence, gpl", [
    ("GPL", True), ("GNU General Public License v3 (GPLv3)", True), ("AGPL-3.0-only", True),
    ("GNU General Public License v2 or later (GPLv2+)", True), ("Apache-2.0 AND GPL-3.0-only", True),
    ("LGPL-3.0-only OR GPL-2.0-only OR GPL-3.0-only", False),  # PySide6: taken under the LGPL
    ("GNU Lesser General Public License v3 (LGPLv3)", False), ("MIT OR GPL-3.0-only", False),
    ("GPLv2-or-later with a special exception which allows to use PyInstaller", False),
    ("MIT", False), ("BSD-3-Clause", False), ("MPL-2.0 AND MIT", False), ("", False),
])
def test_gpl_is_recognised(licence, gpl):
    assert check_licences.is_gpl(licence) is gpl


def _toc(path: Path, sources: list[Path]) -> None:
    path.write_text(repr([(f"m{k}", str(s), "PYMODULE") for k, s in enumerate(sources)]))


def test_a_gpl_file_in_the_bundle_fails_the_check(tmp_path):
    gpl = next((d for d in metadata.distributions() if check_licences.is_gpl(check_licences.licence_of(d))
                and not re.search("exception", d.metadata.get("License") or "", re.I) and d.files), None)
    if gpl is None:
        pytest.skip("no GPL distribution installed here to put in a bundle")
    clean = Path(importlib.util.find_spec("pydicom").origin)
    _toc(tmp_path / "PYZ-00.toc", [clean])
    assert check_licences.main([str(tmp_path)]) == 0
    _toc(tmp_path / "COLLECT-00.toc", [Path(gpl.locate_file(next(f for f in gpl.files if "site-packages" not in str(f))))])
    assert check_licences.gpl_in_bundle(tmp_path) == {gpl.metadata["Name"]: check_licences.licence_of(gpl)}
    assert check_licences.main([str(tmp_path)]) == 1


def _runtime_closure() -> dict[str, metadata.Distribution]:
    pending = [Requirement(r).name for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]
    seen: dict[str, metadata.Distribution] = {}
    while pending:
        name = pending.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            seen[key] = dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return seen


def test_the_spec_excludes_every_gpl_package_the_runtime_pulls_in():
    spec = (REPO / "packaging" / "healthfm.spec").read_text()
    excluded = set(re.findall(r'"([\w.]+)"', spec[spec.index("excludes=["):spec.index("]", spec.index("excludes=["))]))
    assert "pylibjpeg-libjpeg" not in _runtime_closure()
    for name, dist in _runtime_closure().items():
        if check_licences.is_gpl(check_licences.licence_of(dist)):
            top_level = (dist.read_text("top_level.txt") or name.replace("-", "_")).split()
            assert set(top_level) <= excluded, f"{name} is GPL and would be bundled: exclude it in the spec"


def test_medspacy_runs_without_unidecode_under_the_runtime_hook():
    script = f"""
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name == "unidecode":
            raise ImportError("unidecode is not in the bundle")
sys.meta_path.insert(0, Blocked())
import runpy
runpy.run_path({str(REPO / "packaging" / "rthook_no_quickumls.py")!r})
from healthfm_desktop.core.records.pipeline import build_pipeline
note = next(iter(build_pipeline().annotate_many([("n", "Patient denies chest pain.")])))
print(sorted((e.text, e.negated) for e in note.entities))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "('chest pain', True)" in done.stdout
