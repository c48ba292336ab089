"""The Molecules session model without Qt: rows keep the ids, names and tags of their file; a
table search is a filter (the table kept, "show all" lifts it); library hits are a list beside
the table; duplicates (same standardised structure) are marked and merged; export keeps the
file's columns; a library's index is built once and reused while the file is unchanged."""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from healthfm_desktop.core.chemistry.session import HITS, TABLE, MoleculeRow, MoleculeSession
from healthfm_desktop.core.chemistry.table import export_rows, import_rows
from healthfm_desktop.core.chemistry.workspace_search import (
    IndexCache, Rate, SearchCancelled, estimate_records, open_library, search_library, search_rows,
)

REPO = Path(__file__).resolve().parents[2]
CSV = REPO / "resources" / "samples" / "molecules" / "approved_drugs.csv"
SDF = REPO / "tests" / "data" / "molecules" / "NCI_aids_few.sdf"
MOSES = REPO / "tests" / "data" / "molecules" / "moses_subset_10k.csv.gz"


def _run(steps):
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def _session(*paths, standardise=True) -> MoleculeSession:
    session = MoleculeSession()
    for path in paths:
        session.add_rows(_run(import_rows(path, None, standardise, False)))
    return session


def _events(session):
    seen = []
    for name in ("rows_changed", "view_changed", "index_changed"):
        getattr(session.events, name).connect(lambda *values, name=name: seen.append(name))
    return seen


def test_rows_keep_the_files_ids_names_and_sd_tags():
    session = _session(CSV, SDF)
    file_rows = list(csv.DictReader(open(CSV, encoding="utf-8")))
    table = session.rows[: len(file_rows)]
    assert [(r.id, r.fields["name"]) for r in table] == [(f["id"], f["name"]) for f in file_rows]
    sd_titles = [m.GetProp("_Name") for m in Chem.SDMolSupplier(str(SDF)) if m is not None]
    sd_rows = session.rows[len(file_rows):]
    assert [r.id for r in sd_rows if r.mol is not None] == sd_titles
    tags = set(next(m for m in Chem.SDMolSupplier(str(SDF)) if m is not None).GetPropNames())
    assert tags and tags <= set(sd_rows[0].fields)
    assert "name" in session.field_names()
    # the filter text finds names and tags, not only ids and SMILES
    session.set_filters(text="ibuprofen")
    assert [r.id for r in session.visible()] == ["CHEMBL521"]


def test_a_table_search_is_a_filter_and_show_all_lifts_it():
    session = _session(CSV)
    seen = _events(session)
    everything = {r.key for r in session.rows}
    query = "CC(=O)Oc1ccccc1C(=O)O"
    scored = _run(search_rows(session.rows, query, "similar", 0.2, None))
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps = [generator.GetFingerprint(Chem.MolFromSmiles(r.smiles)) for r in session.rows]
    scores = DataStructs.BulkTanimotoSimilarity(generator.GetFingerprint(Chem.MolFromSmiles(query)), fps)
    expected = sorted(((-s, i) for i, s in enumerate(scores) if s >= 0.2))
    assert scored == [(session.rows[i].key, -s) for s, i in expected]
    session.apply_table_search("similar to aspirin", scored, len(session.rows))
    assert [r.key for r in session.visible()] == [k for k, _ in scored]  # best first
    assert {r.key for r in session.rows} == everything  # nothing replaced
    assert session.score_of(session.visible()[0]) == 1.0
    assert "view_changed" in seen
    session.show_all()
    assert len(session.visible()) == len(everything) and session.table_search is None
    # the hit limit keeps the best
    assert _run(search_rows(session.rows, query, "similar", 0.0, 3)) == _run(search_rows(session.rows, query, "similar",
                                                                                        0.0, None))[:3]


def test_a_search_narrowed_to_some_rows_searches_only_those():
    session = _session(CSV)
    session.set_filters(text="chembl1")
    narrowed = session.visible()
    assert 0 < len(narrowed) < len(session.rows)
    hits = _run(search_rows(narrowed, "c1ccccc1", "substructure", None, None))
    expected = [r.key for r in narrowed if Chem.MolFromSmiles(r.smiles).HasSubstructMatch(Chem.MolFromSmarts("c1ccccc1"))]
    assert [k for k, _ in hits] == expected


def test_library_hits_sit_beside_the_table(tmp_path):
    session = _session(CSV)
    table = list(session.rows)
    hit = MoleculeRow(id="L1", smiles="CCO", source="CCO", mol=Chem.MolFromSmiles("CCO"), score=0.5)
    same = MoleculeRow(id="L2", smiles=table[0].smiles, source=table[0].smiles, mol=table[0].mol, score=0.4)
    session.show_hits("hits in lib", [hit, same])
    assert session.view == HITS and session.shown == [hit, same] and session.rows == table
    session.show_all()
    assert session.view == TABLE and session.shown == table
    session.show_hit_list()
    assert session.add_hits_to_table() == 1  # the structure already in the table is left out
    assert session.rows == [*table, hit] and session.view == TABLE


def test_duplicates_are_marked_and_merged(tmp_path):
    path = tmp_path / "dups.csv"
    # aspirin three times: as written, as its sodium salt (standardised away) and reordered
    path.write_text("id,name,smiles\nA1,aspirin,CC(=O)Oc1ccccc1C(=O)O\nA2,aspirin sodium,CC(=O)Oc1ccccc1C(=O)[O-].[Na+]\n"
                    "B1,ethanol,CCO\nA3,,OC(=O)c1ccccc1OC(C)=O\n", encoding="utf-8")
    session = _session(path)
    a1, a2, b1, a3 = session.rows
    assert [session.duplicate_count(r) for r in session.rows] == [3, 3, 1, 3]
    assert session.duplicate_label(a3) == "3× (first: A1)"
    session.set_filters(duplicates_only=True)
    assert session.visible() == [a1, a2, a3]
    session.set_filters(duplicates_only=False)
    assert session.merge_duplicates() == 2
    assert [r.id for r in session.rows] == ["A1; A2; A3", "B1"]
    assert session.rows[0].fields["name"] == "aspirin; aspirin sodium"
    # without standardisation the salt is another structure
    assert [r.id for r in _session(path, standardise=False).duplicate_groups()[Chem.CanonSmiles("CC(=O)Oc1ccccc1C(=O)O")]] == ["A1", "A3"]


def test_export_keeps_ids_names_and_tags(tmp_path):
    session = _session(CSV, SDF)
    out = tmp_path / "out.csv"
    assert export_rows(out, session.rows) == len(session.rows)
    exported = list(csv.DictReader(open(out, encoding="utf-8")))
    assert [(r["id"], r["name"]) for r in exported[:19]] == [(r.id, r.fields["name"]) for r in session.rows[:19]]
    sd_tag = next(iter(session.rows[19].fields))
    assert exported[19][sd_tag] == session.rows[19].fields[sd_tag]
    sdf = tmp_path / "out.sdf"
    readable = [r for r in session.rows if r.mol is not None]
    assert export_rows(sdf, session.rows) == len(readable)
    back = [m for m in Chem.SDMolSupplier(str(sdf)) if m is not None]
    assert [m.GetProp("_Name") for m in back] == [r.id for r in readable]
    assert back[0].GetProp("name") == "ASPIRIN" and back[19].GetProp(sd_tag) == readable[19].fields[sd_tag]


_FIELD_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)


@settings(max_examples=30, deadline=None)
@given(names=st.lists(_FIELD_TEXT, min_size=1, max_size=6))
def test_exported_csv_reads_back_to_the_same_ids_and_names(tmp_path_factory, names):
    folder = tmp_path_factory.mktemp("roundtrip")
    rows = [MoleculeRow(id=f"m{i},{n}".strip(), smiles="CCO", source="CCO", mol=Chem.MolFromSmiles("CCO"), fields={"name": n})
            for i, n in enumerate(names)]
    out = folder / "out.csv"
    export_rows(out, rows)
    back = list(_run(import_rows(out, None, False, False)))
    assert [(r.id, r.fields["name"]) for r in back] == [(r.id, r.fields["name"]) for r in rows]


def _library(tmp_path, n=600) -> Path:
    with gzip.open(MOSES, "rt") as handle:
        lines = [line for line, _ in zip(handle, range(n + 1))]
    path = tmp_path / "library.csv"
    path.write_text("".join(lines))
    return path


def test_a_library_index_is_built_once_and_reused_while_the_file_is_unchanged(tmp_path):
    library = _library(tmp_path)
    cache = IndexCache(tmp_path / "cache")
    rates: list[Rate] = []
    index, state = open_library(library, cache, rates.append, lambda: False)
    assert not state.reused and state.size == 600 and state.build_seconds is not None
    assert rates[-1].done == 600 and rates[-1].total == 600 and "of about 600 molecules" in rates[-1].message()
    assert [r.done for r in rates] == sorted(r.done for r in rates)
    again, state = open_library(library, cache, rates.append, lambda: False)
    assert state.reused and again.size == 600 and "reused" in state.describe()
    hits = _run(search_library(again, "c1ccccc1", "substructure", None, 5))
    pattern = Chem.MolFromSmarts("c1ccccc1")
    with open(library) as handle:
        expected = [r["id"] for r in csv.DictReader(handle) if Chem.MolFromSmiles(r["smiles"]).HasSubstructMatch(pattern)]
    assert [h.id for h in hits] == expected[:5]
    library.write_text(library.read_text() + "extra,CCO\n")
    os.utime(library, ns=(1, 1))
    _, state = open_library(library, cache, rates.append, lambda: False)
    assert not state.reused and state.size == 601


def test_a_cancelled_build_leaves_nothing(tmp_path):
    library = _library(tmp_path, 2000)
    cache = IndexCache(tmp_path / "cache")
    asked = []

    def cancelled():
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(SearchCancelled):
        open_library(library, cache, lambda rate: None, cancelled)
    assert list((tmp_path / "cache").iterdir()) == []
    assert cache.lookup(library) is None


def test_estimate_records_counts_lines_and_sd_records():
    assert estimate_records(CSV) == 19
    assert estimate_records(SDF) == len(Chem.SDMolSupplier(str(SDF)))
    with gzip.open(MOSES, "rt") as handle:
        assert estimate_records(MOSES) == sum(1 for _ in handle) - 1
