"""An index is built with what similarity needs; its substructure data are built by the first
substructure search (or at once with ``substructure=True``), with progress and cancel, and give
the same files and RDKit's hits either way."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from healthfm_desktop.core.chemistry import search_index
from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.chemistry.search_index import (
    _SUBSTRUCTURE_FILES, IndexBuildCancelled, LibraryIndex, build_index,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "molecules"


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lazy")
    with gzip.open(DATA / "moses_subset_10k.csv.gz", "rt") as handle:
        smiles = [row["smiles"] for row, _ in zip(csv.DictReader(handle), range(1500))]
    smiles += ["[CH2]CC", "not a smiles", "C[N+](C)(C)CC(=O)[O-]", "C12C3C4C1C5C2C3C45"]
    path = folder / "library.smi"
    path.write_text("".join(f"{s} m{i}\n" for i, s in enumerate(smiles)))
    return path, [m for m in (Chem.MolFromSmiles(s) for s in smiles) if m is not None]


def _plain_loop(mols, query):
    return [i for i, m in enumerate(mols) if m.HasSubstructMatch(query)]


def test_the_build_leaves_the_substructure_data_to_the_first_substructure_search(library, tmp_path):
    path, mols = library
    index = build_index([path], tmp_path / "index", workers=1)
    meta = json.loads((index.folder / "index.json").read_text())
    assert meta["substructure"] is False and index.size == len(mols)
    assert not any((index.folder / name).exists() for name in _SUBSTRUCTURE_FILES + (search_index.PATTERN_FILE,))
    assert index.similar(mols[3], top=1)[0].row == 3
    query = Chem.MolFromSmarts("c1ccc2[nH]ccc2c1")
    assert [h.row for h in index.substructure(query)] == _plain_loop(mols, query)
    meta = json.loads((index.folder / "index.json").read_text())
    assert meta["substructure"] is True and meta["atom_types"] > 0 and meta["ring_systems"] > 0
    reopened = LibraryIndex.open(index.folder)  # built once: the next session finds them
    assert reopened.has_substructure_data
    query = Chem.MolFromSmarts("[CH2]C")
    assert [h.row for h in reopened.substructure(query)] == _plain_loop(mols, query)


def test_built_later_or_at_once_the_substructure_files_are_the_same(library, tmp_path):
    path, mols = library
    at_once = build_index([path], tmp_path / "at_once", workers=1, substructure=True)
    later = build_index([path], tmp_path / "later", workers=1)
    later.build_substructure(workers=2)  # on the process pool
    for name in _SUBSTRUCTURE_FILES + (search_index.PATTERN_FILE, "morgan_planes.npy", "records.tsv", "order.npy"):
        assert (at_once.folder / name).read_bytes() == (later.folder / name).read_bytes(), name
    assert json.loads((at_once.folder / "index.json").read_text()) == json.loads((later.folder / "index.json").read_text())


def test_the_substructure_data_build_reports_progress_and_can_be_cancelled(library, tmp_path, monkeypatch):
    path, mols = library
    monkeypatch.setattr(search_index, "_SUBSTRUCTURE_CHUNK", 300)
    index = build_index([path], tmp_path / "index", workers=1)
    seen = []
    with pytest.raises(IndexBuildCancelled):
        index.build_substructure(workers=1, progress=seen.append, cancel=lambda: len(seen) >= 2)
    assert seen == [300 / index.size, 600 / index.size]
    assert not index.has_substructure_data
    assert json.loads((index.folder / "index.json").read_text())["substructure"] is False
    seen.clear()
    query = Chem.MolFromSmarts("C(=O)N")
    assert [h.row for h in index.substructure(query, progress=seen.append)] == _plain_loop(mols, query)
    assert seen[:6] == sorted(seen[:6]) and 1.0 in seen


def test_a_read_only_index_folder_keeps_the_data_elsewhere_for_the_session(library, tmp_path, monkeypatch, caplog):
    path, mols = library
    index = build_index([path], tmp_path / "index", workers=1)
    write = search_index._SubstructureParts.write

    def refuse_the_index_folder(self, out, order):
        if Path(out) == index.folder:
            raise PermissionError(13, "Permission denied")
        return write(self, out, order)

    monkeypatch.setattr(search_index._SubstructureParts, "write", refuse_the_index_folder)
    query = Chem.MolFromSmarts("[r5]@[r6]")
    assert [h.row for h in index.substructure(query)] == _plain_loop(mols, query)
    assert index.data_folder != index.folder and "cannot write its substructure data" in caplog.text
    assert json.loads((index.folder / "index.json").read_text())["substructure"] is False
    shutil.rmtree(index.data_folder)


def test_a_version_3_index_is_still_read(library, tmp_path):
    path, mols = library
    index = build_index([path], tmp_path / "index", workers=1, substructure=True)
    meta = json.loads((index.folder / "index.json").read_text())
    del meta["substructure"]
    meta["version"] = 3
    (index.folder / "index.json").write_text(json.dumps(meta))
    # version 3 kept the pattern planes uncompressed, memory-mapped
    np.save(index.folder / "pattern_planes.npy", LibraryIndex.open(index.folder).pattern)
    (index.folder / search_index.PATTERN_FILE).unlink()
    old = LibraryIndex.open(index.folder)
    assert old.has_substructure_data
    query = Chem.MolFromSmarts("C1CCCCC1")
    assert [h.row for h in old.substructure(query)] == _plain_loop(mols, query)


def test_the_molecule_workspace_says_it_prepares_substructure_search_and_can_cancel_it(library, tmp_path, monkeypatch):
    from healthfm_desktop.core.chemistry.workspace_search import SearchCancelled, search_library

    path, mols = library
    monkeypatch.setattr(search_index, "_SUBSTRUCTURE_CHUNK", 500)
    index = build_index([path], tmp_path / "index", workers=1)
    steps = []

    def run(cancelled):
        search = search_library(index, "c1ccncc1", "substructure", None, None, cancelled=cancelled,
                                progress=steps.append)
        while True:
            try:
                next(search)
            except StopIteration as stop:
                return stop.value

    with pytest.raises(SearchCancelled):
        run(lambda: len(steps) >= 1)
    assert "preparing substructure search over 1,503 molecules" in steps[0].message
    assert not index.has_substructure_data
    steps.clear()
    rows = run(lambda: False)
    assert len(rows) == len(_plain_loop(mols, Chem.MolFromSmarts("c1ccncc1")))
    assert any("preparing" in step.message for step in steps) and index.has_substructure_data


def test_the_pattern_planes_are_stored_compressed_and_read_back_exactly(library, tmp_path):
    path, mols = library
    index = build_index([path], tmp_path / "index", workers=1, substructure=True)
    stored = index.folder / search_index.PATTERN_FILE
    planes = search_index._bit_planes(np.array([search_index._pattern_packed(m) for m in mols])[index.order])
    assert np.array_equal(LibraryIndex.open(index.folder).pattern, planes)
    assert stored.stat().st_size < planes.nbytes / 2
    stored.write_bytes(stored.read_bytes()[:-40])  # cut short
    with pytest.raises(UnreadableFileError, match="damaged molecule search index: pattern_planes.zlib"):
        LibraryIndex.open(index.folder).substructure(Chem.MolFromSmarts("C1CCCCC1"))
