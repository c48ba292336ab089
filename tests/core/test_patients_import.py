"""Reading ICU stays: the long CSV, PhysioNet record files and FHIR Bundles give the same stays;
units are checked and converted; bad rows are reported by line and the rest kept; impossible
values are kept as excluded points; and no input makes a reader fail with anything but a
UserFacingError (hypothesis)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError
from healthfm_desktop.core.patients.cleaning import describe_exclusion, exclusion_codes
from healthfm_desktop.core.patients.fhir_bundle import bundle_from_record, read_fhir_bundle
from healthfm_desktop.core.patients.importing import read_long_csv
from healthfm_desktop.core.patients.reading import read_patient_file
from healthfm_desktop.core.patients.variables import VARIABLE_INDEX, VARIABLE_NAMES
from healthfm_desktop.core.routing import PATIENTS, route_file

DATA = Path(__file__).resolve().parents[1] / "data" / "patients"


@pytest.fixture(scope="module")
def cohort():
    return read_patient_file(DATA / "timeseries.csv.gz")


def _write(tmp_path: Path, text: str, name: str = "stays.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_long_csv_reads_every_stay_with_descriptors_from_patients_csv(cohort):
    assert len(cohort) == 61 and not cohort.bad_rows
    stay = cohort.by_id("133863")
    assert stay.descriptors == {"Age": 53.0, "Gender": 0.0, "Height": 160.0, "ICUType": 1.0, "Weight": 68.0}
    gz_rows = sum(1 for _ in gzip.open(DATA / "timeseries.csv.gz", "rt")) - 1
    assert sum(r.n_observations for r in cohort.records) == gz_rows
    # the stay listed only in patients.csv (no rows) is there, with its descriptors
    empty = cohort.by_id("140501")
    assert empty.n_observations == 0 and empty.descriptors["Age"] == 31
    # an impossible height (13 cm) is treated as unknown
    assert math.isnan(cohort.by_id("143666").descriptors["Height"])


@pytest.mark.parametrize("source", ["records", "fhir_bundle.json"])
def test_record_files_and_fhir_give_the_same_stays_as_the_csv(cohort, source):
    other = read_patient_file(DATA / source)
    assert other.records and not other.bad_rows
    for stay in other.records:
        reference = cohort.by_id(stay.patient_id)
        assert stay.descriptors == pytest.approx(reference.descriptors, nan_ok=True)
        np.testing.assert_array_equal(stay.time, reference.time)
        np.testing.assert_array_equal(stay.variable, reference.variable)
        np.testing.assert_allclose(stay.value, reference.value)


def test_routing_sends_all_three_formats_to_patients():
    for path in (DATA / "timeseries.csv.gz", DATA / "records" / "133863.txt", DATA / "fhir_bundle.json"):
        assert route_file(path)[0] == PATIENTS, path.name


def test_bad_rows_are_reported_with_line_numbers_and_the_rest_kept(tmp_path):
    path = _write(tmp_path, (
        "patient_id,time,variable,value,unit\n"
        "7,0,HR,80,bpm\n"           # 2 ok
        "7,x,HR,80,bpm\n"           # 3 bad time
        "7,5,Foo,1,\n"              # 4 unknown variable
        "7,6,Temp,kelvin,degC\n"    # 5 bad value
        "7,7,Temp,310,K\n"          # 6 unit not known for Temp
        "7,8,HR,81\n"               # 7 too few fields
        ",9,HR,82,bpm\n"            # 8 no patient
        "7,-5,HR,83,bpm\n"          # 9 before admission
        "7,02:30,HR,84,/min\n"      # 10 ok, HH:MM and a UCUM unit
    ))
    cohort = read_long_csv(path)
    assert [b.line for b in cohort.bad_rows] == [3, 4, 5, 6, 7, 8, 9]
    messages = [b.format(path.name) for b in cohort.bad_rows]
    assert messages[0] == "stays.csv:3: time 'x' is not minutes or HH:MM"
    assert "unknown variable 'Foo'" in messages[1]
    assert "not a number" in messages[2]
    assert "'K' is not a unit for Temp (expected degC)" in messages[3]
    assert "before ICU admission" in messages[6]
    stay = cohort.by_id("7")
    assert stay.series("HR")[0].tolist() == [0, 150]


def test_units_are_converted_to_the_canonical_unit(tmp_path):
    path = _write(tmp_path, (
        "patient_id,time,variable,value,unit\n"
        "1,0,Temp,98.6,degF\n1,0,FiO2,50,%\n1,0,Weight,176.37,lb\n1,0,Glucose,5.5,mmol/L\n1,0,Age,70,years\n"
        "1,0,Height,70,in\n1,60,Creatinine,88.42,umol/L\n"
    ))
    stay = read_long_csv(path).by_id("1")
    values = {VARIABLE_NAMES[v]: x for v, x in zip(stay.variable, stay.value)}
    assert values["Temp"] == pytest.approx(37.0)
    assert values["FiO2"] == pytest.approx(0.5)
    assert values["Weight"] == pytest.approx(80.0, abs=0.01)
    assert values["Glucose"] == pytest.approx(99.1, abs=0.1)
    assert values["Creatinine"] == pytest.approx(1.0)
    assert stay.descriptors["Weight"] == pytest.approx(80.0, abs=0.01)
    assert stay.descriptors["Height"] == pytest.approx(177.8)
    assert stay.descriptors["Age"] == 70


def test_descriptor_rows_and_missing_weight_follow_the_physionet_convention(tmp_path):
    path = _write(tmp_path, (
        "patient_id,time,variable,value\n"
        "5,0,RecordID,5\n5,0,Age,64\n5,0,Gender,1\n5,0,Height,-1\n5,0,ICUType,3\n5,0,Weight,-1\n"
        "5,30,Weight,70\n5,40,HR,90\n6,0,RecordID,9\n"
    ))
    cohort = read_long_csv(path)
    stay = cohort.by_id("5")
    assert stay.descriptors["Age"] == 64 and stay.descriptors["ICUType"] == 3
    assert math.isnan(stay.descriptors["Height"]) and math.isnan(stay.descriptors["Weight"])
    assert stay.series("Weight")[1].tolist() == [70.0]  # -1 at time 0 is "unknown", not a point
    assert [b.line for b in cohort.bad_rows] == [10] and "does not match" in cohort.bad_rows[0].reason


def test_impossible_values_are_kept_as_excluded_points(tmp_path):
    path = _write(tmp_path, (
        "patient_id,time,variable,value\n"
        "3,0,SysABP,0\n3,1,SysABP,120\n3,2,Temp,-17.8\n3,3,Temp,20\n3,4,pH,735\n3,5,pH,7.35\n"
        "3,6,Weight,5\n3,7,HR,400\n3,8,FiO2,21\n3,9,HR,0\n"
    ))
    stay = read_long_csv(path).by_id("3")
    assert stay.n_observations == 10 and stay.n_excluded == 8
    assert stay.series("SysABP")[1].tolist() == [120.0]
    assert stay.series("pH")[1].tolist() == [7.35]
    reasons = {name: [r for _, _, r in stay.excluded_points(name)] for name in ("SysABP", "Temp", "pH", "Weight", "HR", "FiO2")}
    assert reasons["SysABP"] == ["zero blood pressure or heart rate (sensor disconnected)"]
    assert reasons["Temp"] == ["negative value", "temperature below 25 °C (probe not on the patient)"]
    assert "pH outside" in reasons["pH"][0]
    assert reasons["Weight"] == ["weight below 20 kg"]
    assert reasons["HR"] == ["outside the physiologically possible range", "zero blood pressure or heart rate (sensor disconnected)"]
    assert reasons["FiO2"] == ["outside the physiologically possible range"]


def test_cleaning_counts_on_the_real_test_stays(cohort):
    excluded = np.concatenate([r.excluded for r in cohort.records])
    assert excluded.size > 20000 and 0 < np.count_nonzero(excluded) < 0.01 * excluded.size
    assert describe_exclusion(0) == ""
    assert exclusion_codes(np.array([VARIABLE_INDEX["DiasABP"]]), np.array([0.0]))[0] == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("a,b,c\n1,2,3\n", "not a patient file"),
        ("patient_id,time,value\n1,2,3\n", "not a patient file"),
    ],
)
def test_files_that_are_not_patient_files_are_refused_clearly(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(UnreadableFileError, match=message):
        read_patient_file(path)


def test_header_without_required_columns_is_refused(tmp_path):
    path = _write(tmp_path, "patient_id,time,variable,amount\n1,0,HR,80\n")
    with pytest.raises(UnreadableFileError, match="lacks value"):
        read_long_csv(path)


def test_non_utf8_and_damaged_gzip_are_refused(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("patient_id,time,variable,value\n1,0,HR,80\n".encode() + b"2,0,HR,\xe9\xff\n")
    with pytest.raises(UnreadableFileError, match="UTF-8"):
        read_long_csv(latin)
    damaged = tmp_path / "cut.csv.gz"
    damaged.write_bytes((DATA / "timeseries.csv.gz").read_bytes()[:5000])
    with pytest.raises(UnreadableFileError, match="damaged"):
        read_long_csv(damaged)


def test_fhir_bad_entries_are_reported_and_the_rest_kept(cohort, tmp_path):
    bundle = bundle_from_record(cohort.by_id("133863"))
    bundle["entry"][5]["resource"]["status"] = 12  # invalid Observation
    bundle["entry"][6]["resource"]["valueQuantity"]["unit"] = "furlongs"
    bundle["entry"].append({"resource": {"resourceType": "Observation", "status": "final",
                                         "code": {"text": "Body mass index"}, "subject": {"reference": "Patient/133863"},
                                         "effectiveDateTime": "2012-01-01T05:00:00+00:00",
                                         "valueQuantity": {"value": 25, "unit": "kg/m2"}}})
    del bundle["entry"][0]["resource"]["gender"]
    bundle["entry"][0]["resource"]["birthDate"] = "1950-06-01"
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    read = read_fhir_bundle(path)
    assert [(b.line, b.where) for b in read.bad_rows] == [(6, "entry"), (7, "entry")]
    assert read.bad_rows[0].format("bundle.json").startswith("bundle.json: entry 6: invalid Observation")
    assert "furlongs" in read.bad_rows[1].reason
    assert read.notes == ["1 Observations with codes the risk model does not use were skipped"]
    stay = read.records[0]
    assert stay.n_observations == cohort.by_id("133863").n_observations - 2
    assert stay.descriptors["Age"] == 53  # from the age Observation, which wins over birthDate


def test_fhir_that_is_not_a_bundle_is_refused(tmp_path):
    path = tmp_path / "patient.json"
    path.write_text(json.dumps({"resourceType": "Patient", "id": "x"}), encoding="utf-8")
    with pytest.raises(UnreadableFileError, match="not a FHIR Bundle"):
        read_fhir_bundle(path)


# --------------------------------------------------------------------------- fuzzing
_cell = st.one_of(
    st.sampled_from(["HR", "Temp", "pH", "Age", "Weight", "RecordID", "MechVent", "GCS", "hr", "Foo", ""]),
    st.sampled_from(["0", "12", "02:30", "99:99", "-1", "1e400", "nan", "7.4", "735", "x", " 5 "]),
    st.sampled_from(["bpm", "degF", "%", "", "kelvin", "mmHg", "lb"]),
    st.text(max_size=8),
)
_row = st.lists(_cell, min_size=0, max_size=7).map(lambda cells: ",".join(c.replace("\n", " ") for c in cells))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.sampled_from(["patient_id,time,variable,value,unit", "patient_id,time,variable,value", "unit,value,variable,time,patient_id"]),
       rows=st.lists(_row, max_size=25), tail=st.binary(max_size=20))
def test_fuzz_long_csv_reader_fails_only_with_clear_errors(tmp_path, header, rows, tail):
    path = tmp_path / "fuzz.csv"
    path.write_bytes(("\n".join([header, *rows]) + "\n").encode("utf-8") + tail)
    try:
        cohort = read_patient_file(path)
    except UserFacingError as exc:
        assert str(exc)
        return
    for record in cohort.records:
        assert np.all(np.isfinite(record.value)) and np.all(record.time >= 0)
    for bad in cohort.bad_rows:
        assert bad.line >= 2 and bad.reason


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.sampled_from(["00:00", "01:30", "1:5", "48:00", "xx", "-01:00", ""]),
                               st.sampled_from(["RecordID", "Age", "HR", "pH", "Weight", "Gender", "Bogus", ""]),
                               st.one_of(st.sampled_from(["-1", "80", "7.2", "abc", "inf", ""]), st.text(max_size=5))),
                     max_size=20))
def test_fuzz_physionet_record_reader_fails_only_with_clear_errors(tmp_path, rows):
    path = tmp_path / "132539.txt"
    lines = ["Time,Parameter,Value"] + [",".join(r).replace("\n", " ") for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        cohort = read_patient_file(path)
    except UserFacingError as exc:
        assert str(exc)
        return
    assert len(cohort.records) <= 1 or all(r.patient_id for r in cohort.records)


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, width=32), st.text(max_size=6))
_json = st.recursive(_json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=12)
_observation = st.fixed_dictionaries({
    "resourceType": st.just("Observation"),
    "status": st.sampled_from(["final", "bogus", 3]),
    "code": st.one_of(st.just({"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}), st.just({"text": "pH"}), _json),
    "subject": st.one_of(st.just({"reference": "Patient/1"}), _json),
    "effectiveDateTime": st.one_of(st.sampled_from(["2012-01-01T00:00:00Z", "2012-01-01", "2011-12-31T23:00:00+00:00", "nope"]), _json),
    "valueQuantity": st.one_of(st.just({"value": 80, "unit": "bpm"}), st.just({"value": 7.3}), _json),
})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(st.one_of(st.builds(lambda r: {"resource": r}, _observation), _json), max_size=8),
       kind=st.sampled_from(["Bundle", "Bundle", "Patient", 5]))
def test_fuzz_fhir_reader_fails_only_with_clear_errors(tmp_path, entries, kind):
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps({"resourceType": kind, "type": "collection", "entry": entries}), encoding="utf-8")
    try:
        cohort = read_fhir_bundle(path)
    except UserFacingError as exc:
        assert str(exc)
        return
    for bad in cohort.bad_rows:
        assert bad.where in ("entry", "line") and bad.reason


def test_fast_path_gives_the_same_stays_as_row_by_row_checking(cohort):
    import csv as csv_module

    from healthfm_desktop.core.patients.importing import ObservationRows, _read_patient_table

    rows = ObservationRows()
    with gzip.open(DATA / "timeseries.csv.gz", "rt", encoding="utf-8") as handle:
        reader = csv_module.reader(handle)
        next(reader)
        for row in reader:
            rows.add(reader.line_num, *row)
    _read_patient_table(DATA / "patients.csv", rows.builder)
    slow = rows.build("slow")
    assert [r.patient_id for r in slow.records] == [r.patient_id for r in cohort.records]
    for a, b in zip(slow.records, cohort.records):
        assert a.descriptors == pytest.approx(b.descriptors, nan_ok=True)
        for field in ("time", "variable", "value", "excluded"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
