"""Dropped or opened paths go to the workspace their content belongs to, whatever their name;
anything else is refused with a reason. Checked on the real files the workspaces read."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthfm_desktop.core.routing import IMAGES, MOLECULES, NOTES, PATIENTS, route_file, route_paths

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
SAMPLES = REPO / "resources" / "samples"


@pytest.mark.parametrize(
    "relative, workspace",
    [
        ("tests/data/dicom/single/CT_small.dcm", IMAGES),
        ("tests/data/dicom/single/US_RGB_HTJ2K_lossless.dcm", IMAGES),
        ("tests/data/dicom/bad/CT_no_preamble_no_meta.dcm", IMAGES),
        ("tests/data/dicom/dicomdir/DICOMDIR", IMAGES),
        ("tests/data/dicom/zip/series_MR700_7files.zip", IMAGES),
        ("resources/samples/images/chest_xray_normal.png", IMAGES),
        ("resources/samples/notes/discharge_summary.txt", NOTES),
        ("resources/samples/notes/case_reports.jsonl", NOTES),
        ("tests/data/molecules/chembl_example_compounds.sdf", MOLECULES),
        ("tests/data/molecules/rdkit_book_chiral.mol", MOLECULES),
        ("tests/data/molecules/moses_subset_10k.csv.gz", MOLECULES),
        ("resources/samples/molecules/approved_drugs.csv", MOLECULES),
        ("resources/samples/patients/icu_stays.csv", PATIENTS),
        ("tests/data/patients/timeseries.csv.gz", PATIENTS),
        ("tests/data/patients/records/133863.txt", PATIENTS),
        ("tests/data/patients/fhir_bundle.json", PATIENTS),
    ],
)
def test_real_files_go_to_their_workspace(relative, workspace):
    assert route_file(REPO / relative)[0] == workspace


def test_content_wins_over_the_name(tmp_path):
    # a DICOM file with a misleading name, and a bare dataset without preamble or meta
    raw = (DATA / "dicom/single/CT_small.dcm").read_bytes()
    renamed = tmp_path / "report.txt"
    renamed.write_bytes(raw)
    assert route_file(renamed)[0] == IMAGES
    meta_length = struct.unpack("<I", raw[140:144])[0]
    bare = tmp_path / "IM000001"
    bare.write_bytes(raw[144 + meta_length:])
    assert route_file(bare)[0] == IMAGES


def test_gzipped_sdf_and_smiles_file(tmp_path):
    sdf = tmp_path / "library.sdf.gz"
    sdf.write_bytes(gzip.compress((DATA / "molecules/rdkit_book_5ht3ligs.sdf").read_bytes()))
    assert route_file(sdf)[0] == MOLECULES
    smi = tmp_path / "hits.smi"
    smi.write_text("CC(=O)Oc1ccccc1C(=O)O aspirin\n", encoding="utf-8")
    assert route_file(smi)[0] == MOLECULES


def test_folders_go_where_most_of_their_files_go(tmp_path):
    shutil.copytree(DATA / "dicom/dicomdir", tmp_path / "cd")
    (tmp_path / "cd" / "readme.txt").write_text("Burned by the PACS export tool.", encoding="utf-8")
    routing = route_paths([tmp_path / "cd"])
    assert list(routing.by_workspace) == [IMAGES]


def test_a_folder_whose_first_files_agree_is_decided_without_reading_the_rest(tmp_path, monkeypatch):
    from healthfm_desktop.core import routing as routing_module

    series = DATA / "dicom/series/CT_head_phantom_philips_1mm_20sl"
    shutil.copytree(series, tmp_path / "ct")
    opened = []
    real = routing_module.route_file
    monkeypatch.setattr(routing_module, "route_file", lambda path, routing=None: opened.append(path) or real(path, routing))
    assert list(route_paths([tmp_path / "ct"]).by_workspace) == [IMAGES]
    assert len(opened) == routing_module._FOLDER_AGREE < len(list(series.iterdir()))
    # notes first in name order: the first files disagree, so every file is sniffed and the majority decides
    for k in range(5):
        (tmp_path / "ct" / f"A_note_{k}.txt").write_text("No acute distress.", encoding="utf-8")
    opened.clear()
    assert list(route_paths([tmp_path / "ct"]).by_workspace) == [IMAGES]
    assert len(opened) == 25


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.dcm", b"", "empty"),
        ("archive.bin", bytes(range(256)) * 8, "not a DICOM"),
        ("broken.zip", b"PK\x03\x04 not really", "not a valid zip"),
        ("table.csv", b"a,b,c\n1,2,3\n", "not a DICOM"),
    ],
)
def test_unknown_files_are_refused_with_a_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    routing = route_paths([path, tmp_path / "missing.dcm"])
    assert not routing.by_workspace
    reasons = dict((p.name, r) for p, r in routing.rejected)
    assert reason in reasons[name]
    assert "no such file" in reasons["missing.dcm"]


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.binary(max_size=600),
    suffix=st.sampled_from(["", ".dcm", ".txt", ".csv", ".csv.gz", ".jsonl", ".json", ".sdf", ".zip", ".png"]),
)
def test_routing_never_crashes(tmp_path, content, suffix):
    path = tmp_path / f"dropped{suffix}"
    path.write_bytes(content)
    routing = route_paths([path])
    assert len(routing.rejected) + sum(map(len, routing.by_workspace.values())) == 1
