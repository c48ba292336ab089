"""Rebuild the derived test files and the app's bundled samples of this folder from timeseries.csv.gz + patients.csv (the real
PhysioNet 2012 rows copied here): PhysioNet-format record files (records/<RecordID>.txt, the
challenge's original layout) and a FHIR R4 Bundle (fhir_bundle.json); and resources/samples/patients/ from four set-c stays
of models/training/data/patients (held out from training). Run from the repo root:

    python tests/data/patients/build_test_data.py
"""

from __future__ import annotations

import csv
import gzip
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))
RECORD_IDS = ("133863", "143666", "136197", "159958")  # sets a, b, a, c; see README
FHIR_ID = "157072"
SAMPLE_CSV_IDS = ("155011", "153772", "156135")  # long CSV with descriptor rows at time 0
SAMPLE_RECORD_ID = "161502"  # PhysioNet record file
SAMPLES = HERE.parents[2] / "resources" / "samples" / "patients"
TRAINING = HERE.parents[2] / "models" / "training" / "data" / "patients"


def record_file_text(record_id: str, patient: dict, rows: list[dict]) -> str:
    lines = ["Time,Parameter,Value", f"00:00,RecordID,{record_id}"]
    for name, column in (("Age", "age"), ("Gender", "gender"), ("Height", "height_cm"), ("ICUType", "icu_type")):
        lines.append(f"00:00,{name},{patient[column] or -1}")
    if not patient["weight_kg"]:
        lines.append("00:00,Weight,-1")
    for row in rows:
        minutes = int(row["time"])
        lines.append(f"{minutes // 60:02d}:{minutes % 60:02d},{row['variable']},{row['value']}")
    return "\n".join(lines) + "\n"


def build_samples() -> None:
    wanted = set(SAMPLE_CSV_IDS) | {SAMPLE_RECORD_ID}
    rows = defaultdict(list)
    with gzip.open(TRAINING / "timeseries.csv.gz", "rt", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["patient_id"] in wanted:
                rows[row["patient_id"]].append(row)
    with open(TRAINING / "patients.csv", newline="", encoding="utf-8") as handle:
        patients = {row["patient_id"]: row for row in csv.DictReader(handle) if row["patient_id"] in wanted}
    SAMPLES.mkdir(parents=True, exist_ok=True)
    lines = ["patient_id,time,variable,value,unit"]
    for pid in SAMPLE_CSV_IDS:
        p = patients[pid]
        for name, column, unit in (("Age", "age", "years"), ("Gender", "gender", ""), ("Height", "height_cm", "cm"), ("ICUType", "icu_type", "")):
            if p[column]:
                lines.append(f"{pid},0,{name},{p[column]},{unit}")
        lines += [f"{pid},{r['time']},{r['variable']},{r['value']},{r['unit']}" for r in rows[pid]]
    (SAMPLES / "icu_stays.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (SAMPLES / f"{SAMPLE_RECORD_ID}.txt").write_text(
        record_file_text(SAMPLE_RECORD_ID, patients[SAMPLE_RECORD_ID], rows[SAMPLE_RECORD_ID]), encoding="utf-8"
    )


def main() -> None:
    rows = defaultdict(list)
    with gzip.open(HERE / "timeseries.csv.gz", "rt", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows[row["patient_id"]].append(row)
    with open(HERE / "patients.csv", newline="", encoding="utf-8") as handle:
        patients = {row["patient_id"]: row for row in csv.DictReader(handle)}
    (HERE / "records").mkdir(exist_ok=True)
    for record_id in RECORD_IDS:
        text = record_file_text(record_id, patients[record_id], rows[record_id])
        (HERE / "records" / f"{record_id}.txt").write_text(text, encoding="utf-8")

    from healthfm_desktop.core.patients.fhir_bundle import bundle_from_record
    from healthfm_desktop.core.patients.importing import read_long_csv

    cohort = read_long_csv(HERE / "timeseries.csv.gz")
    bundle = bundle_from_record(cohort.by_id(FHIR_ID))
    (HERE / "fhir_bundle.json").write_text(json.dumps(bundle, separators=(",", ":")), encoding="utf-8")
    build_samples()


if __name__ == "__main__":
    main()
