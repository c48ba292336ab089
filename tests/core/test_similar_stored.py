"""`healthfm similar` over what the user has stored: the study database's series and an
annotation project's notes, with the labels the user gave them in the workspace."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from healthfm_desktop.cli import main
from healthfm_desktop.core.foundation.labelling import LabelSession
from healthfm_desktop.core.storage.annotations import AnnotationProject
from healthfm_desktop.core.storage.studies import StudyDatabase

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    return tmp_path


def _hits(capsys):
    out = capsys.readouterr()
    return [json.loads(line) for line in out.out.splitlines() if line.strip()], out.err


def test_similar_over_the_study_database_finds_the_stored_series_with_its_label(home, capsys):
    path = home / "studies.sqlite"
    with StudyDatabase(path) as database:
        assert database.index_files([DATA / "dicom" / "dicomdir"]).added == 31
        series = [row for study in database.search() for row in database.series(study.study_uid)]
        middles = {row.series_uid: database.instance_paths(series_uid=row.series_uid) for row in series}
    chosen = next(uid for uid, paths in middles.items() if len(paths) >= 3)
    query = middles[chosen][len(middles[chosen]) // 2]
    LabelSession("images").tag([chosen], "angiography")
    assert main(["similar", "--kind", "image", "--library", str(path), "--query", str(query), "--top", "50",
                 "--json"]) == 0
    hits, _ = _hits(capsys)
    assert {h["id"] for h in hits} == set(middles)  # every stored series, once
    assert hits[0]["id"] == chosen and hits[0]["score"] > 0.999 and hits[0]["label"] == "angiography"
    assert all("label" not in h for h in hits[1:])


def test_similar_over_an_annotation_project_finds_the_stored_note(home, capsys):
    rows = [json.loads(line) for line in (DATA / "text" / "phi_surrogate_notes.jsonl").open(encoding="utf-8")][:12]
    project = AnnotationProject(home / "notes.hfmnotes")
    for r in rows:
        project.add_note(r["id"], r["text"])
    project.close()
    LabelSession("notes").tag([rows[4]["id"]], "discharge")
    query = home / "query.txt"
    query.write_text(rows[4]["text"], encoding="utf-8")
    assert main(["similar", "--kind", "text", "--library", str(home / "notes.hfmnotes"), "--query", str(query),
                 "--top", "3", "--json"]) == 0
    hits, _ = _hits(capsys)
    assert len(hits) == 3 and hits[0]["id"] == rows[4]["id"] and hits[0]["label"] == "discharge"


def test_a_sqlite_file_that_is_no_store_is_refused_and_left_as_it_was(home, capsys):
    other = home / "other.sqlite"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE t (x)")
    connection.close()
    before = other.read_bytes()
    query = DATA / "images" / "pneumoniamnist_test_045_pneumonia.png"
    assert main(["similar", "--kind", "image", "--library", str(other), str(query), "--query", str(query),
                 "--json"]) == 1
    hits, err = _hits(capsys)
    assert "not a study database" in err and [h["id"] for h in hits] == [str(query)]
    assert other.read_bytes() == before


def test_an_unreachable_pacs_is_one_error_saying_why(tmp_path):
    from healthfm_desktop.core.foundation.stored import pacs_series
    from healthfm_desktop.core.imaging.pacs.peers import DicomPeer
    from tests.orthanc import free_port

    peer = DicomPeer(ae_title="NOBODY", host="127.0.0.1", port=free_port())  # nothing listens there
    items = pacs_series(peer, "HEALTHFM", ["1.2.3"], tmp_path / "cache")
    assert len(items) == 0 and len(items.errors) == 1
    where, why = items.errors[0]
    assert where == peer.label() and why
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.dcm"))
