"""Which reader a patient file needs, decided by its content: the long CSV and PhysioNet records
(importing.py) or a FHIR Bundle (fhir_bundle.py)."""

from __future__ import annotations

from pathlib import Path

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.patients.fhir_bundle import read_fhir_bundle
from healthfm_desktop.core.patients.importing import (
    LONG_CSV_COLUMNS, RECORD_HEADER, open_text, read_long_csv, read_physionet_records,
)
from healthfm_desktop.core.patients.record import PatientCohort


def sniff_patient_format(path: Path) -> str | None:
    """"long_csv", "record", "fhir" or None, from the first bytes of the file."""
    try:
        with open_text(path) as handle:
            head = handle.read(4096)
    except (UnreadableFileError, UnicodeDecodeError, OSError, EOFError):
        return None
    stripped = head.lstrip()
    if stripped.startswith("{"):
        return "fhir" if '"resourceType"' in head else None
    first = stripped.splitlines()[0] if stripped else ""
    columns = [c.strip().casefold() for c in first.split(",")]
    if tuple(columns[:3]) == RECORD_HEADER:
        return "record"
    if all(c in columns for c in LONG_CSV_COLUMNS):
        return "long_csv"
    return None


def read_patient_file(path: str | Path) -> PatientCohort:
    """Any supported patient file (or a folder of PhysioNet record files), by content."""
    path = Path(path)
    if path.is_dir():
        records = sorted(p for p in path.iterdir() if p.is_file() and sniff_patient_format(p) == "record")
        if not records:
            raise UnreadableFileError(f"{path.name} holds no PhysioNet record files")
        return read_physionet_records(records)
    kind = sniff_patient_format(path)
    if kind == "long_csv":
        return read_long_csv(path)
    if kind == "record":
        return read_physionet_records([path])
    if kind == "fhir":
        return read_fhir_bundle(path)
    if not path.exists():
        raise UnreadableFileError(f"{path.name} does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise UnreadableFileError(f"{path.name} is empty")
    raise UnreadableFileError(
        f"{path.name} is not a patient file (expected a CSV patient_id,time,variable,value[,unit], "
        "a PhysioNet record file Time,Parameter,Value, or a FHIR Bundle of Observations)"
    )
