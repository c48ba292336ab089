"""The data-quality report of an import: for molecules, patients, DICOM and notes, the counts and
items it lists are what the files hold (duplicates, blanks, unreadable records, excluded values,
missing slices), checked against files made for it and by a property test."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from rdkit import Chem

from healthfm_desktop.core.chemistry.reading import read_molecules
from healthfm_desktop.core.data_quality import molecule_report, report_for

REPO = Path(__file__).resolve().parents[2]
POOL = ["CCO", "OCC", "c1ccccc1", "C1=CC=CC=C1", "CC(=O)O", "C1CC", "N#N", "", "Cl[Na]Cl(", "CCN"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(POOL), min_size=0, max_size=25))
def test_molecule_report_counts_what_the_file_holds(tmp_path_factory, smiles):
    smiles = ["CCN", *smiles]  # a file with no record at all is refused by the reader
    path = tmp_path_factory.mktemp("q") / "library.csv"
    path.write_text("id,smiles\n" + "".join(f"m{i},{s}\n" for i, s in enumerate(smiles)), encoding="utf-8")
    report = molecule_report(list(read_molecules(path)), str(path))
    parsed = [Chem.MolFromSmiles(s) if s else None for s in smiles]
    canonical = [Chem.MolToSmiles(m) for m in parsed if m is not None]
    assert report.items == len(smiles)
    assert report.counts["missing"] == smiles.count("")
    assert report.counts["unreadable"] == sum(1 for s, m in zip(smiles, parsed) if s and m is None)
    assert report.counts["duplicated"] == len(canonical) - len(set(canonical))
    assert report.counts["out_of_range"] == 0
    for item, detail in report.found["duplicated"]:
        first = detail.split("the same molecule as ")[1].split(" ")[0]
        assert int(first[1:]) < int(item[1:])  # the earlier record is named


def test_patients_dicom_and_notes_reports(tmp_path):
    stays = tmp_path / "stays.csv"
    stays.write_text("patient_id,time,variable,value\n1,0,HR,80\n1,0,HR,80\n1,5,SysABP,0\n1,9,HR,fast\n", encoding="utf-8")
    report = report_for(stays)
    assert report.workspace == "patients" and report.items == 1
    assert report.counts == {"unreadable": 1, "out_of_range": 1, "duplicated": 1, "missing": 1}
    assert "not enough data to score" in report.found["missing"][0][1]
    series = sorted((REPO / "tests/data/dicom/series/CT_head_phantom_philips_1mm_20sl").iterdir())
    folder = tmp_path / "ct"
    folder.mkdir()
    for path in series[:4] + series[7:]:  # slices 5-7 left out
        shutil.copy(path, folder / path.name)
    shutil.copy(series[0], folder / "again.dcm")
    (folder / "broken.dcm").write_bytes(b"DICM" * 10)
    report = report_for(folder)
    assert report.workspace == "images" and report.counts["duplicated"] == 1 and report.counts["unreadable"] >= 1
    assert "about 3 slice(s) missing" in report.found["missing"][0][1]
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"id": "a", "text": "Chest pain."}\n{"id": "b", "text": "Chest pain."}\nnot json\n', encoding="utf-8")
    report = report_for(notes)
    assert report.workspace == "notes" and report.counts["duplicated"] == 1 and report.counts["unreadable"] == 1


def test_cli_prints_one_object_per_input_and_exits_1_for_what_it_cannot_read(tmp_path):
    library = tmp_path / "library.csv"
    library.write_text("id,smiles\na,CCO\nb,OCC\n", encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "healthfm_desktop", "data-quality", str(library), str(tmp_path / "nope"), "--json"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 1 and run.stderr.startswith(f"{tmp_path / 'nope'}: ")
    (row,) = [json.loads(line) for line in run.stdout.splitlines()]
    assert row["workspace"] == "molecules" and row["duplicated"] == 1 and row["issues"][0]["item"] == "b"
