"""The DICOM test corpus (tests/data/dicom) and its manifest, shared by the DICOM tests."""

from __future__ import annotations

import csv
from pathlib import Path

DICOM = Path(__file__).resolve().parents[1] / "data" / "dicom"
MR_SERIES = DICOM / "series" / "MR_T1_3D_MPRAGE_sag_philips_1mm_170sl"
CT_SERIES = DICOM / "series" / "CT_head_phantom_philips_1mm_20sl"


def manifest_rows() -> list[dict[str, str]]:
    with open(DICOM / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def rows_where(prefix: str) -> list[dict[str, str]]:
    return [row for row in manifest_rows() if row["path"].startswith(prefix)]
