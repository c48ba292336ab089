"""The local study database: indexing real files, duplicates, search, damaged and missing files,
atomic imports, and a damaged database file."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.storage.studies import (
    InstanceRecord,
    StudyDatabase,
    StudyDatabaseError,
    open_study_database,
    read_instance_record,
)

DICOM = Path(__file__).resolve().parent.parent / "data" / "dicom"


@pytest.fixture
def database(tmp_path) -> StudyDatabase:
    db = StudyDatabase(tmp_path / "studies.sqlite")
    yield db
    db.close()


def test_indexes_a_dicomdir_tree_into_patients_studies_series(database):
    report = database.index_files([DICOM / "dicomdir"])
    assert report.added == 31 and not report.rejected and not report.duplicates
    studies = database.search()
    assert len(studies) == 6
    assert {s.patient_name for s in studies} == {"Doe^Peter", "Doe^Archibald"}
    brain = next(s for s in studies if s.description == "Brain-MRA")
    assert brain.series == 3 and brain.instances == 11 and brain.modalities == ["MR"]
    series = database.series(brain.study_uid)
    assert sum(s.instances for s in series) == 11
    assert len(database.instance_paths(brain.study_uid)) == 11
    assert len(database.instance_paths(series_uid=series[0].series_uid)) == series[0].instances
    # WAL journal, as promised
    assert database._query("PRAGMA journal_mode")[0][0] == "wal"


def test_search_by_words_modality_and_dates(database):
    database.index_files([DICOM / "dicomdir"])
    assert {s.patient_name for s in database.search("peter")} == {"Doe^Peter"}
    assert {s.patient_name for s in database.search("doe archibald")} == {"Doe^Archibald"}
    assert [s.description for s in database.search("carotids")] == ["Carotids"]
    assert {s.patient_id for s in database.search("77654033")} == {"77654033"}
    assert all("CT" in s.modalities for s in database.search(modality="ct"))
    assert len(database.search(modality="CT")) == 2
    dated = database.search(date_from="20030101", date_to="20031231")
    assert dated and all(s.study_date.startswith("2003") for s in dated)
    assert database.search("no such patient") == []
    assert database.search("100%_") == []  # LIKE wildcards are taken literally


def test_duplicates_are_recognised_by_sop_instance_uid(database, tmp_path):
    original = DICOM / "single" / "MR_small_explicit.dcm"
    database.index_files([original])
    # the same object in other encodings has the same SOP Instance UID
    report = database.index_files([DICOM / "single" / "MR_small_implicit.dcm", DICOM / "single" / "MR_small_RLE.dcm"])
    assert report.added == 0 and len(report.duplicates) == 2
    assert report.duplicates[0][1] == str(original.resolve())
    assert database.index_files([original]).unchanged == 1
    # a moved file is relinked, not duplicated
    moved = tmp_path / "moved.dcm"
    shutil.copy(original, moved)
    copy_db = StudyDatabase(tmp_path / "other.sqlite")
    copy_db.index_files([moved])
    moved.rename(tmp_path / "moved-again.dcm")
    assert copy_db.index_files([tmp_path / "moved-again.dcm"]).relinked == 1
    assert copy_db.instance_paths() == [(tmp_path / "moved-again.dcm").resolve()]


def test_corrupt_and_deleted_files_are_reported_not_raised(database, tmp_path):
    bad = sorted((DICOM / "bad").glob("*.dcm"))
    report = database.index_files(bad)
    rejected = dict(report.rejected)
    assert str(DICOM / "bad" / "MR_truncated_pixeldata.dcm") in rejected
    assert all(reason for reason in rejected.values())
    # files that were fine when indexed and later deleted or damaged
    work = tmp_path / "work"
    shutil.copytree(DICOM / "dicomdir" / "98892003", work)
    database.index_files([work])
    files = sorted(p for p in work.rglob("*") if p.is_file())
    files[0].unlink()
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) // 2])
    files[2].write_bytes(b"\0" * len(files[2].read_bytes()))
    problems = {Path(p.path).name: p.reason for p in database.verify()}
    assert set(problems) == {files[0].name, files[1].name, files[2].name}
    assert "deleted" in problems[files[0].name]
    assert "size" in problems[files[1].name]
    assert "damaged" in problems[files[2].name]


def test_an_import_is_all_or_nothing(database):
    records = [read_instance_record(p) for p in sorted((DICOM / "dicomdir" / "77654033").rglob("*")) if p.is_file()]
    broken = InstanceRecord(**{**records[0].__dict__, "sop_uid": "1.2.3", "series_uid": None})  # NOT NULL violated
    with pytest.raises(StudyDatabaseError):
        database.add_instances([*records, broken])
    assert database.instance_count() == 0 and database.search() == []
    assert database.add_instances(records).added == len(records)


def test_damaged_database_file_is_set_aside(tmp_path):
    path = tmp_path / "studies.sqlite"
    path.write_bytes(b"this is not an sqlite database" * 100)
    database, message = open_study_database(path)
    assert message and "set aside" in message
    assert database.index_files([DICOM / "single" / "CT_small.dcm"]).added == 1
    assert list(tmp_path.glob("studies.sqlite.damaged-*"))
    # opened directly, the same damage is a clear error, not an sqlite3 traceback
    other = tmp_path / "other.sqlite"
    other.write_bytes(b"garbage" * 1000)
    with pytest.raises(StudyDatabaseError, match="cannot be opened"):
        StudyDatabase(other)


def test_remove_study_forgets_it_but_keeps_files(database):
    database.index_files([DICOM / "dicomdir"])
    study = database.search("carotids")[0]
    paths = database.instance_paths(study.study_uid)
    database.remove_study(study.study_uid)
    assert database.search("carotids") == []
    assert all(p.exists() for p in paths)
    assert database._query("SELECT count(*) FROM instances WHERE path = ?", (str(paths[0]),))[0][0] == 0


def test_concurrent_writers_from_threads(database):
    import threading

    folders = [DICOM / "dicomdir" / name for name in ("77654033", "98892001", "98892003")]
    threads = [threading.Thread(target=database.index_files, args=([folder],)) for folder in folders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert database.instance_count() == 31


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2048), st.integers(min_value=0, max_value=3000))
def test_fuzzed_files_give_clear_errors_only(tmp_path, noise, cut):
    """Random bytes, and a real header cut short or with noise spliced in."""
    real = (DICOM / "single" / "CT_small.dcm").read_bytes()
    for index, data in enumerate((noise, real[:cut] + noise, real[:132] + noise)):
        path = tmp_path / f"fuzz{index}.dcm"
        path.write_bytes(data)
        try:
            record = read_instance_record(path)
        except UnreadableFileError as exc:
            assert str(exc)
        else:
            assert record.sop_uid and record.series_uid and record.study_uid


def test_sqlite_is_really_in_wal_with_foreign_keys(tmp_path):
    StudyDatabase(tmp_path / "s.sqlite").close()
    conn = sqlite3.connect(tmp_path / "s.sqlite")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
