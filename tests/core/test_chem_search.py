"""The search index returns exactly RDKit's hits and scores: similarity (threshold and top-k,
BulkTanimotoSimilarity on GetMorganGenerator(radius=2, fpSize=2048)) and substructure (a plain
HasSubstructMatch loop), on 10,000 real library molecules."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from healthfm_desktop.core.chemistry.search_index import LibraryIndex, build_index

LIBRARY = Path(__file__).resolve().parents[1] / "data" / "molecules" / "moses_subset_10k.csv.gz"


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    with gzip.open(LIBRARY, "rt") as handle:
        rows = list(csv.DictReader(handle))
    mols = [Chem.MolFromSmiles(r["smiles"]) for r in rows]
    index = build_index([LIBRARY], tmp_path_factory.mktemp("index"), workers=2)
    return rows, mols, LibraryIndex.open(index.folder)


@pytest.mark.parametrize("dense", [True, False], ids=["ranges-scored-at-once", "bit-sliced-per-bin"])
def test_similarity_equals_rdkit(library, monkeypatch, dense):
    from healthfm_desktop.core.chemistry import search_index

    if not dense:  # the path of large libraries: per popcount bin, compared in bit-sliced form
        monkeypatch.setattr(search_index, "_DENSE_POSITIONS", 0)
    rows, mols, index = library
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps = [gen.GetFingerprint(m) for m in mols]
    rng = np.random.default_rng(3)
    for qi in rng.choice(len(mols), 12, replace=False):
        query = Chem.MolFromSmiles(Chem.MolToSmiles(mols[qi]) + ".C")  # not a library member
        sims = np.array(DataStructs.BulkTanimotoSimilarity(gen.GetFingerprint(query), fps))
        ranking = np.lexsort((np.arange(len(sims)), -sims))
        for threshold, top in [(0.4, None), (None, 25), (0.0, 100), (0.6, 5)]:
            hits = index.similar(query, threshold=threshold, top=top)
            keep = [i for i in ranking if sims[i] >= (threshold or 0.0)][:top]
            assert [(h.row, h.score) for h in hits] == [(int(i), float(sims[i])) for i in keep]
            assert [h.id for h in hits] == [rows[i]["id"] for i in keep]


def test_kth_best_is_exact_when_the_sample_guesses_too_high():
    from healthfm_desktop.core.chemistry.search_index import _kth_best

    rng = np.random.default_rng(5)
    n, k = 20000, 100
    stride = n // (16 * k)
    cases = [rng.integers(0, 40, n) / 40.0,  # many equal scores
             np.zeros(n), rng.random(n)]
    high_in_sample = np.zeros(n)
    high_in_sample[::stride][:2 * k // stride + 1] = 1.0  # the sample's guess is 1.0, reached by < k scores
    cases.append(high_in_sample)
    for scores in cases:
        for top in (1, 5, k, 999):
            assert _kth_best(scores, top) == np.sort(scores)[-top]


def test_common_bit_counts_equal_a_plain_count():
    from healthfm_desktop.core.chemistry.search_index import _bit_planes, _common_counts

    rng = np.random.default_rng(9)
    packed = rng.integers(0, 256, (1000, 256), dtype=np.uint8)
    planes = _bit_planes(packed)
    bits = np.unpackbits(packed, axis=1, bitorder="little")
    for query in (np.array([3]), rng.choice(2048, 40, replace=False), rng.choice(2048, 300, replace=False)):
        query = np.sort(query)
        counts = _common_counts(planes, query, 0, planes.shape[1])[:1000]
        assert np.array_equal(counts, bits[:, query].sum(axis=1))
        assert np.array_equal(_common_counts(planes, query, 3, 10), bits[3 * 64:10 * 64, query].sum(axis=1))


@pytest.mark.parametrize("smarts", [
    "c1ccccc1C(=O)N", "S(=O)(=O)N", "c1ccc2[nH]ccc2c1", "[#7;R]@[#6;R]", "C(F)(F)F",
    # unselective (the screen keeps most molecules) and queries on what the trusted-SMILES
    # molecules must recompute: H counts, valence, ring sizes and counts, hybridisation
    "c1ccccc1", "[#7]", "[r5]", "[R2]", "[N^3]", "[O;h1]",
    # few candidates after the pattern screen (matched directly): rare scaffolds, and none at all
    "C1C2CC3CC1CC(C2)C3", "C1CCC2C(C1)CCC1C2CCC2CCCC12", "c1ccccc1[Si]", "P(=O)(O)O",
])
def test_substructure_equals_rdkit(library, smarts):
    rows, mols, index = library
    query = Chem.MolFromSmarts(smarts)
    expected = [i for i, m in enumerate(mols) if m.HasSubstructMatch(query)]
    assert [h.row for h in index.substructure(query)] == expected


@pytest.mark.parametrize("smarts", [
    "C1CCC2C(C1)CCC1C2CCC2CCCC12", "C1CCCCC1", "c1ccc2ccccc2c1", "c1ccc2occc2c1", "C1CC2CCC1C2",
    "c1ccc2c(c1)CCN2", "[#6]1~[#6]~[#6]~[#6]~[#6]~[#6]1", "[r5]1@[r5]@[r5]@[r5]@[r5]1", "c1ccncc1", "C1CCNCC1",
    "[R2]1@[R1]@[R1]@[R1]@[R1]@[R2]1",
])
def test_ring_systems_left_out_by_their_atom_counts_hold_no_match(library, smarts):
    """The ring-system screen matches only the systems big enough by atoms, bonds and repeated
    query atoms: the same rows as matching every system, and as a plain RDKit loop."""
    from rdkit import Chem as _Chem

    rows, mols, index = library
    index.build_substructure()
    query = _Chem.MolFromSmarts(smarts)
    query.UpdatePropertyCache(strict=False)
    _Chem.FastFindRings(query)
    written = _Chem.MolToSmarts(query)
    big = index._systems_that_may_hold(query, written)
    assert big is not None, "a ring-system query"
    every = np.arange(len(index._ring_systems().atoms))
    assert np.array_equal(index._ring_system_screen(query, written, big), index._ring_system_screen(query, written, every))
    expected = [i for i, m in enumerate(mols) if m.HasSubstructMatch(query)]
    assert [h.row for h in index.substructure(query)] == expected
    if smarts.startswith("C1CCC2"):  # the steroid core: left to at most a few systems
        assert len(big) <= 3 < len(every)


def test_substructure_top_gives_the_first_hits_in_library_order(library):
    rows, mols, index = library
    query = Chem.MolFromSmarts("C(=O)N")
    expected = [i for i, m in enumerate(mols) if m.HasSubstructMatch(query)][:7]
    assert [h.row for h in index.substructure(query, top=7)] == expected


def test_index_v2_files_and_an_old_index_is_refused_with_a_rebuild_message(library, tmp_path):
    import json
    import shutil

    from healthfm_desktop.core.chemistry.search_index import INDEX_VERSION, trusted_mol
    from healthfm_desktop.core.errors import UnreadableFileError

    rows, mols, index = library
    index.build_substructure()
    meta = json.loads((index.folder / "index.json").read_text())
    assert meta["version"] == INDEX_VERSION == 4 and meta["size"] == len(mols) and meta["substructure"]
    # the stored canonical SMILES rebuild each library molecule (same canonical SMILES)
    trusted = index._substructure_files().trusted
    for row in (0, 1234, len(mols) - 1):
        start, end = index.trusted_offsets[row], index.trusted_offsets[row + 1]
        text = bytes(trusted[start:end - 1]).decode()
        assert text == Chem.MolToSmiles(mols[row])
        assert Chem.MolToSmiles(trusted_mol(text, rings=True)) == text
    old = tmp_path / "old"
    shutil.copytree(index.folder, old)
    meta["version"] = 1
    (old / "index.json").write_text(json.dumps(meta))
    with pytest.raises(UnreadableFileError, match="rebuild the index with `healthfm molecules index"):
        LibraryIndex.open(old)


def test_top_k_at_the_edges(library):
    rows, mols, index = library
    query = mols[42]
    best = index.similar(query, top=1)
    assert [(h.row, h.score) for h in best] == [(42, 1.0)] or best[0].score == 1.0
    everything = index.similar(query, top=len(mols) + 5)
    assert len(everything) == len(mols)
    assert [h.score for h in everything] == sorted((h.score for h in everything), reverse=True)


# queries that read rings (queries that do not are matched on RDKit's threads instead)
@pytest.mark.parametrize("smarts, top", [("c1ccccc1[C;!R]", None), ("[CH2;R]@[CH2;R]", None), ("S(=O)(=O)N[C;R]", None),
                                         ("C(=O)N[C;!R]", 3000)])
def test_substructure_on_worker_processes_equals_in_process(library, monkeypatch, smarts, top):
    """Thresholds forced low: the candidates are matched on worker processes (the pool runs
    afterwards), merged in library order, with exactly the in-process hits."""
    from healthfm_desktop.core.chemistry import search_index

    rows, mols, index = library
    query = Chem.MolFromSmarts(smarts)
    monkeypatch.setattr(search_index, "_PARALLEL_MIN_CANDIDATES", 10**9)
    monkeypatch.setattr(search_index, "_PARALLEL_MIN_CANDIDATES_COLD", 10**9)
    in_process = index.substructure(query, top=top)
    monkeypatch.setattr(search_index, "_PARALLEL_MIN_CANDIDATES", 1)
    monkeypatch.setattr(search_index, "_PARALLEL_MIN_CANDIDATES_COLD", 1)
    monkeypatch.setattr(search_index, "_PARALLEL_CHUNK", 700)  # several chunks to merge
    parallel = index.substructure(query, top=top)
    assert search_index._pool is not None
    assert [(h.row, h.id, h.smiles, h.score) for h in parallel] == [(h.row, h.id, h.smiles, h.score) for h in in_process]
    assert len(parallel) > 0


def test_substructure_matches_in_process_when_no_worker_can_start(library, monkeypatch):
    from healthfm_desktop.core import processes
    from healthfm_desktop.core.chemistry import search_index

    rows, mols, index = library
    query = Chem.MolFromSmarts("[#7]")
    expected = [i for i, m in enumerate(mols) if m.HasSubstructMatch(query)]
    search_index._drop_pool()
    monkeypatch.setattr(processes, "start_method", lambda: None)
    monkeypatch.setattr(search_index, "_PARALLEL_MIN_CANDIDATES_COLD", 1)
    assert not search_index.warm_substructure_workers(2)
    assert [h.row for h in index.substructure(query)] == expected
    assert search_index._pool is None
