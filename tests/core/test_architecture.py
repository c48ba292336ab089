"""The house rules of ARCHITECTURE.md, checked: import-linter contracts (core imports no Qt,
views import no model runtime/DICOM/chemistry/NLP library, nothing imports torch, layers)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run([lint], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" not in result.stdout.lower().replace("0 broken", "")


def test_no_torch_import_even_lazily():
    pattern = re.compile(r"^\s*(import torch|from torch)", re.MULTILINE)
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "healthfm_desktop").rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_no_network_client_in_the_app():
    pattern = re.compile(r"urlopen|requests\.get|hf_hub_download|from_pretrained\(|urllib\.request")
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "healthfm_desktop").rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
