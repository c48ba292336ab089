"""`healthfm patients risk FILE --json` to the letter of CLI.md: one JSON object per stay with
exactly patient_id, risk, model; bad rows reported as FILE:line: reason with exit 1 while the
stays are still scored; unreadable files as path: reason with exit 1; and the self-test check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from healthfm_desktop.checks import collect_checks
from healthfm_desktop.core.patients.reading import read_patient_file
from healthfm_desktop.core.patients.risk import RiskModel

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "patients"


def healthfm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "healthfm_desktop", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_risk_json_gives_one_object_per_stay():
    result = healthfm("patients", "risk", str(DATA / "timeseries.csv.gz"), "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(objects) == 61
    scored = [o for o in objects if o["risk"] is not None]
    withheld = [o for o in objects if o["risk"] is None]
    assert all(list(o) == ["patient_id", "risk", "model", "inputs_missing", "inputs_out_of_range"] for o in scored)
    assert all(isinstance(o["patient_id"], str) and 0 < o["risk"] < 1 and o["model"] == "icu_mortality" for o in scored)
    # a stay with too little data gets no number, and says so
    assert "140501" in {o["patient_id"] for o in withheld}
    assert all(list(o) == ["patient_id", "risk", "model", "reason", "inputs_missing", "inputs_out_of_range"]
               and o["reason"].startswith("not enough data to score") for o in withheld)
    by_stay = {o["patient_id"]: o for o in objects}
    assert "HR" in by_stay["140501"]["inputs_missing"]
    assert any(o["inputs_out_of_range"] for o in scored)  # e.g. zero blood pressures, excluded and listed
    cohort = read_patient_file(DATA / "timeseries.csv.gz")
    by_id = {o["patient_id"]: o["risk"] for o in objects}
    records = [r for r in cohort.records if by_id[r.patient_id] is not None]
    assert len(records) == len(scored) >= 55
    expected = RiskModel().score(records)
    assert [by_id[r.patient_id] for r in records] == pytest.approx(expected.tolist(), abs=1e-5)


def test_bad_rows_are_reported_and_the_stays_still_scored(tmp_path):
    path = tmp_path / "stays.csv"
    path.write_text("patient_id,time,variable,value,unit\n1,0,HR,80,bpm\n1,5,HR,fast,bpm\n2,0,Temp,37,kelvin\n2,3,pH,7.3,\n",
                    encoding="utf-8")
    result = healthfm("patients", "risk", str(path), "--json")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}:3: value 'fast' is not a number",
        f"{path}:4: unit 'kelvin' is not a unit for Temp (expected degC)",
    ]
    assert [json.loads(line)["patient_id"] for line in result.stdout.splitlines()] == ["1", "2"]


def test_impossible_values_are_cleaned_not_errors(tmp_path):
    path = tmp_path / "stays.csv"
    path.write_text("patient_id,time,variable,value\n1,0,SysABP,0\n1,10,pH,735\n1,20,HR,88\n", encoding="utf-8")
    result = healthfm("patients", "risk", str(path), "--json")
    assert result.returncode == 0 and result.stderr == ""
    assert len(result.stdout.splitlines()) == 1


@pytest.mark.parametrize("content", [None, b"", b"\x89PNG\r\n\x1a\n....", b"name,smiles\nx,CCO\n"])
def test_unreadable_files_fail_with_a_message(tmp_path, content):
    path = tmp_path / "input.csv"
    if content is not None:
        path.write_bytes(content)
    result = healthfm("patients", "risk", str(path), "--json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"{path}: ") and "Traceback" not in result.stderr


def test_plain_output_and_the_record_and_fhir_formats():
    result = healthfm("patients", "risk", str(DATA / "records" / "133863.txt"))
    assert result.returncode == 0 and result.stdout.startswith("133863\t0.")
    result = healthfm("patients", "risk", str(DATA / "fhir_bundle.json"), "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["patient_id"] == "157072"


def test_self_test_check_scores_the_bundled_samples():
    check = dict(collect_checks())["model icu_mortality"]
    assert check().startswith("sha256 ok, 4 sample stays from 2 files")
