"""Substructure search with the index's stored rings and atom types returns exactly a plain
RDKit loop's hits (``Chem.MolFromSmiles`` of every library SMILES, then ``HasSubstructMatch``):
ring-size / ring-count / ring-bond queries, one-atom queries decided by the atom types alone,
queries the atom types cannot decide (recursive SMARTS), on real molecules (3,000 MOSES
molecules, the ChEMBL and NCI SD files) plus molecules chosen for what MOSES lacks (cages,
spiro and bridged rings, charges, isotopes, radicals, explicit hydrogens, chirality)."""

from __future__ import annotations

import csv
import gzip
import json
import logging
import shutil
from pathlib import Path

import pytest
from rdkit import Chem

from healthfm_desktop.core.chemistry import search_index
from healthfm_desktop.core.chemistry.search_index import LibraryIndex, build_index, parse_query_smiles

DATA = Path(__file__).resolve().parents[1] / "data" / "molecules"

# what MOSES lacks: cubane, adamantane, a spiro and a bridged bicycle, cyclopropane and
# cyclobutane fused, a macrocycle, charges, isotopes, a radical, explicit [H], stereo centres
EXTRA = [
    "C12C3C4C1C5C2C3C45", "C1C2CC3CC1CC(C2)C3", "C1CCC2(C1)CCCC2", "C1CC2CCC1C2", "C1CC2CC12",
    "C1CCCCCCCCCCC1", "C[N+](C)(C)CC(=O)[O-]", "[13CH3]C(=O)O", "[CH2]CC", "[H]OC([H])([H])C",
    "C[C@H](N)C(=O)O", "c1ccc2c(c1)[nH]c1ccccc12", "O=c1cc[nH]cc1", "C1=CC=CC=C1", "[Na+].[Cl-]",
    "c1ccc(cc1)-c1ccccc1", "C1CC1C1CC1", "OC1C2CC3CC1CC(C2)C3", "FC(F)(F)c1ccncc1", "B1OC(C)(C)C(C)(C)O1",
    "[CH]1CCCC1", "C1CC2(CC1)OCCO2", "c1cc2ccc3cccc4ccc(c1)c2c34", "[O-][n+]1ccccc1", "C1=CC2=CC=CC=CC2=C1",
]

QUERIES = [
    # ring sizes, ring counts, ring bonds (need the stored rings)
    "[r5]", "[R2]", "[x3]", "*@*", "[r3,r4]", "C1CC1", "[r6]@[r5]", "[R0;D3]", "[#6;!R]@*", "C1CCCCC1",
    "[x2;r3]", "*1**1", "[R3]", "[x4]",
    # hybridisation, hydrogens, valence, degree, neighbours, charge, isotope, radical, chirality
    "[N^3]", "[C^2;R]", "[#7;H1]", "[nH]", "[O;h1]", "[v4;X4]", "[d3]", "[D4]", "[z2]", "[Z1]", "[+]", "[O-]",
    "[13C]", "[C@H]", "[#1]", "Cl", "[Cl,Br]", "[a]", "[A;R]", "*", "[!#6;!#1]",
    # decided on the ring systems (connected, every bond on a ring, ring-system-safe primitives)
    "c1ccncc1", "[C,N]1CCCC1", "[r5;R2]@[#6]", "c1ccc2ccccc2c1", "C12CCC1CC2", "[x3]@[x3]", "[+;R]@*", "[n+]1ccccc1",
    "[#6]1~[#6]~[#6]~[#6]~[#6]1", "[R2]@[R2]", "C1CCC2(CC1)OCCO2", "c:c", "*@;:*", "[!#6;R]@[#6]",
    # star-shaped (one atom and its neighbours): decided by the atom types
    "C(=O)N", "S(=O)(=O)N", "cC", "C=O", "[#7;H1]C", "[#6]~[#7]", "N#C", "O=C(N)N", "CC(C)(C)C", "[r6]-!@C", "c:n",
    "[Pt]~[#7]", "[#6;R]!@[#8]",
    # multi-atom, unselective, and recursive (not typed)
    "c1ccccc1", "C(=O)N", "[#7]", "c1ccc2[nH]ccc2c1", "[$([NX3;H2])]", "[$(C=O);R]", "C-,:c", "[CH2;R]~[NH;R]",
    # screened by each query atom with its neighbours (the arms), then matched
    "c1ccccc1C", "C(=O)NC", "[CH2;R]@[#7;R]", "NC(=O)c1ccccc1", "[#6]:[#6]-[#7;H1]", "[O;H1]-c:c", "C-C(=O)-O-C",
    "[CH3]-c1ccncc1", "[+]-[O-]", "[#1]-[#8]-C", "Cl-c:c-Cl", "[13C]-C", "C=C-C=C", "[N;R0]=[N+;R0]=[N-]", "*-*-*",
]


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screens")
    with gzip.open(DATA / "moses_subset_10k.csv.gz", "rt") as handle:
        smiles = [row["smiles"] for row, _ in zip(csv.DictReader(handle), range(3000))]
    for sdf in ("chembl_example_compounds.sdf", "NCI_aids_few.sdf"):
        smiles += [Chem.MolToSmiles(m) for m in Chem.SDMolSupplier(str(DATA / sdf)) if m is not None]
    smiles += EXTRA
    path = folder / "library.smi"
    path.write_text("".join(f"{s} m{i}\n" for i, s in enumerate(smiles)))
    index = build_index([path], folder / "index", workers=2)
    assert index.size == len(smiles)
    return [Chem.MolFromSmiles(s) for s in smiles], LibraryIndex.open(index.folder)


def _plain_loop(mols, query):
    return [i for i, m in enumerate(mols) if m.HasSubstructMatch(query)]


@pytest.mark.parametrize("smarts", QUERIES)
def test_hits_equal_a_plain_rdkit_loop(library, smarts):
    mols, index = library
    query = Chem.MolFromSmarts(smarts)
    assert [h.row for h in index.substructure(query)] == _plain_loop(mols, query)


@pytest.mark.parametrize("smiles", ["c1ccccc1", "C1CC1", "N", "[NH3+]C", "O=C[O-]", "C[C@H](N)C(=O)O", "[CH2]C",
                                    "CN", "C(=O)O", "Cc1ccccc1", "C[N+](C)(C)C", "[13CH3]C"])
def test_smiles_queries_equal_a_plain_rdkit_loop(library, smiles):
    mols, index = library
    query = parse_query_smiles(smiles)
    assert [h.row for h in index.substructure(query)] == _plain_loop(mols, query)


@pytest.mark.parametrize("smarts", ["[r5]", "[R2]", "[#7;H1]", "*"])
def test_one_atom_queries_are_decided_by_the_atom_types_without_matching(library, monkeypatch, smarts):
    mols, index = library

    def no_matching(*args, **kwargs):
        raise AssertionError("a one-atom query should not rebuild molecules")

    monkeypatch.setattr(search_index, "_match_rows", no_matching)
    monkeypatch.setattr(search_index, "_match_in_workers", no_matching)
    monkeypatch.setattr(search_index, "_match_threaded", no_matching)
    query = Chem.MolFromSmarts(smarts)
    expected = _plain_loop(mols, query)
    assert [h.row for h in index.substructure(query)] == expected
    assert [h.row for h in index.substructure(query, top=5)] == expected[:5]


def test_atom_types_screen_out_molecules_the_fingerprint_keeps(library):
    """[r3]~[r3] has the pattern-fingerprint bits of any two bonded atoms: the atom types keep
    only the molecules with a three-membered ring."""
    mols, index = library
    query = Chem.MolFromSmarts("[r3]~[r3]")
    kept = index._screen(query)
    typed = index._type_screen(query, Chem.MolToSmarts(query))
    assert len(kept[typed[kept]]) < len(kept) / 20
    assert set(_plain_loop(mols, query)) <= set(kept[typed[kept]].tolist())


@pytest.mark.parametrize("smarts", ["c1ccccc1C", "C(=O)NC", "[CH2;R]@[#7;R]"])
def test_neighbours_of_the_atom_types_screen_out_what_the_types_alone_keep(library, smarts):
    """c1ccccc1C: a methylpyridine beside a phenyl has the fingerprint bits and the atom types of
    toluene; only an aromatic carbon bonded to two aromatic carbons and an aliphatic one tells
    them apart. The screen keeps every hit."""
    mols, index = library
    query = Chem.MolFromSmarts(smarts)
    query.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(query)
    kept = index._screen(query)
    with_arms = kept[index._type_screen(query, Chem.MolToSmarts(query))[kept]]
    alone = set()
    for row in kept.tolist():  # the atom types alone: some atom of the molecule matches each query atom
        if all(any(q.Match(a) for a in mols[row].GetAtoms()) for q in query.GetAtoms()):
            alone.add(row)
    assert set(_plain_loop(mols, query)) <= set(with_arms.tolist()) < alone
    assert len(with_arms) < 0.9 * len(alone)


def test_stored_rings_rebuild_the_rdkit_ring_information(library):
    mols, index = library
    files = index._substructure_files()
    # the radicals: a trusted (unsanitised) parse would not assign them, so they are matched on a full parse
    assert files.full_parse == {len(mols) - len(EXTRA) + EXTRA.index("[CH2]CC"), len(mols) - len(EXTRA) + EXTRA.index("[CH]1CCCC1")}
    for row in list(range(0, len(mols), 97)) + list(range(len(mols) - len(EXTRA), len(mols))):
        if row in files.full_parse:
            continue
        text = bytes(files.trusted[files.trusted_offsets[row]:files.trusted_offsets[row + 1] - 1]).decode()
        blob = files.rings[files.ring_offsets[row]:files.ring_offsets[row + 1]]
        rebuilt = search_index.trusted_mol(text, True, blob)
        perceived = Chem.MolFromSmiles(text)
        assert sorted(map(sorted, rebuilt.GetRingInfo().AtomRings())) == sorted(map(sorted, perceived.GetRingInfo().AtomRings()))
        assert sorted(map(sorted, rebuilt.GetRingInfo().BondRings())) == sorted(map(sorted, perceived.GetRingInfo().BondRings()))
        assert [a.GetHybridization() for a in rebuilt.GetAtoms()] == [a.GetHybridization() for a in perceived.GetAtoms()]


@pytest.mark.parametrize("smarts", ["[CH2;R]@[CH2;R]", "[r6;H1]~[#7]~[#6]", "[N^3]CC", "c1ccccc1[CH2;R]"])
def test_ring_queries_on_worker_processes_equal_in_process(library, monkeypatch, smarts):
    """Queries the types and ring systems do not decide, matched on the worker processes with
    the stored rings (and hybridisation), equal RDKit's loop."""
    mols, index = library
    monkeypatch.setattr(search_index, "_PARALLEL_MIN_CANDIDATES", 1)
    monkeypatch.setattr(search_index, "_PARALLEL_MIN_CANDIDATES_COLD", 1)
    monkeypatch.setattr(search_index, "_PARALLEL_CHUNK", 500)
    on_workers = []
    match_in_workers = search_index._match_in_workers
    monkeypatch.setattr(search_index, "_match_in_workers",
                        lambda *a, **k: on_workers.append(match_in_workers(*a, **k)) or on_workers[-1])
    query = Chem.MolFromSmarts(smarts)
    assert [h.row for h in index.substructure(query)] == _plain_loop(mols, query)
    assert on_workers and on_workers[0] is not None


# (the steroid core, a fused-ring query, is decided on the library's ring systems first since
# da60874: test_chem_search's ring-system tests hold it to RDKit's loop)
@pytest.mark.parametrize("smarts", ["c1ccccc1C", "c[N+](=O)[O-]", "[CH2]CC", "CC(=O)OC",
                                    "[$([NX3;H2])]c", "CC(N)C(=O)O"])
def test_queries_without_rings_on_rdkit_threads_equal_a_plain_loop(library, monkeypatch, smarts):
    """Queries that read no rings are matched by SubstructLibrary's threads over the screen's
    candidates (the radicals apart, on a full parse): RDKit's loop's hits, and a top is the
    first ones in library order."""
    mols, index = library
    monkeypatch.setattr(search_index, "_THREAD_MIN_ROWS", 1)
    monkeypatch.setattr(search_index, "_THREAD_CHUNK", 700)
    monkeypatch.setattr(search_index, "_threads", lambda: 2)
    threaded = []
    match_threaded = search_index._match_threaded
    monkeypatch.setattr(search_index, "_match_threaded",
                        lambda *a, **k: threaded.append(match_threaded(*a, **k)) or threaded[-1])
    query = Chem.MolFromSmarts(smarts)
    expected = _plain_loop(mols, query)
    assert [h.row for h in index.substructure(query)] == expected
    assert [h.row for h in index.substructure(query, top=3)] == expected[:3]
    assert threaded


def test_an_atom_type_that_no_longer_fits_its_atom_turns_the_screen_off(library, tmp_path, caplog):
    mols, index = library
    index.build_substructure()
    copy = tmp_path / "index"
    shutil.copytree(index.folder, copy)
    types = json.loads((copy / "atom_types.json").read_text())
    types["keys"][0][0] += 1  # the element of the first type's standing atom
    (copy / "atom_types.json").write_text(json.dumps(types))
    tampered = LibraryIndex.open(copy)
    query = Chem.MolFromSmarts("[r5]")
    with caplog.at_level(logging.WARNING):
        hits = [h.row for h in tampered.substructure(query)]
    assert hits == _plain_loop(mols, query)
    assert "without the atom-type screen" in caplog.text


def test_an_index_missing_its_ring_file_is_refused(library, tmp_path):
    from healthfm_desktop.core.errors import UnreadableFileError

    mols, index = library
    index.build_substructure()
    copy = tmp_path / "index"
    shutil.copytree(index.folder, copy)
    (copy / "rings.bin").unlink()
    with pytest.raises(UnreadableFileError, match="rings.bin missing"):
        LibraryIndex.open(copy)


@pytest.mark.parametrize("query, decided", [
    ("c1ccccc1", True), ("*@*", True), ("[r5]@[r6]", True), ("C1CCCC1", True), ("[n+]1ccccc1", True),
    # an H count, a bond that may leave the ring, a recursive atom, two fragments, no bond
    ("[CH2]1CC1", False), ("cC", False), ("[$(C=O)]1CC1", False), ("C1CC1.C1CC1", False), ("[r5]", False),
])
def test_ring_system_queries_are_decided_without_matching_the_molecules(library, monkeypatch, query, decided):
    """Matched on the library's distinct ring systems only; the molecules themselves are matched
    only for the radical (trusted SMILES do not rebuild it), so the hits are still RDKit's."""
    mols, index = library
    matched = []
    def spy(match):
        def spied(files, rows, *args, **kwargs):
            matched.extend(rows.tolist())
            return match(files, rows, *args, **kwargs)
        return spied

    monkeypatch.setattr(search_index, "_match_rows", spy(search_index._match_rows))
    monkeypatch.setattr(search_index, "_match_threaded", spy(search_index._match_threaded))
    monkeypatch.setattr(search_index, "_PARALLEL_MIN_CANDIDATES", 10**9)
    q = Chem.MolFromSmarts(query)
    assert [h.row for h in index.substructure(q)] == _plain_loop(mols, q)
    assert (index._ring_system_screen(q, Chem.MolToSmarts(q)) is not None) == decided
    if decided:
        assert set(matched) <= index._substructure_files().full_parse


@pytest.mark.parametrize("query, decided", [
    ("C(=O)N", True), ("S(=O)(=O)N", True), ("[#7;H1]C", True), ("CC(C)C", True), ("c:n", True),
    # one bond: tried from either end (the outer atom must read only element and aromaticity)
    ("C[#7;H1]", True), ("C[CH2]", True),
    # an outer atom reading H count or charge, a chain, a ring, one atom
    ("[CH2]C[CH2]", False), ("C(=O)[O-]", False), ("CCCC", False), ("C1CC1", False), ("[r5]", False),
])
def test_star_queries_are_decided_by_the_atom_types(library, monkeypatch, query, decided):
    mols, index = library

    def no_matching(*args, **kwargs):
        raise AssertionError("a star-shaped query should not rebuild molecules")

    q = Chem.MolFromSmarts(query)
    expected = _plain_loop(mols, q)
    assert (index._star_screen(q, Chem.MolToSmarts(q)) is not None) == decided
    if decided:
        monkeypatch.setattr(search_index, "_match_rows", no_matching)
        monkeypatch.setattr(search_index, "_match_in_workers", no_matching)
        monkeypatch.setattr(search_index, "_match_threaded", no_matching)
    assert [h.row for h in index.substructure(q)] == expected


@pytest.mark.parametrize("smarts, absent", [
    ("[U]c1ccccc1", True), ("c1ccccc1[Xe]", True), ("[2H]C", True), ("c[N+](=O)[O-]", None), ("[13C]C", None),
    ("[O-]C(=O)C", None), ("c1ccccc1Cl", False), ("CC(C)O", False),
])
def test_a_query_atom_no_library_atom_matches_ends_the_search_exactly(library, monkeypatch, smarts, absent):
    """Few candidates after the fingerprint screen: a query atom that matches no atom type of
    the library means no hits, found without matching a molecule; otherwise the candidates are
    matched as before. Either way RDKit's loop's hits."""
    mols, index = library
    monkeypatch.setattr(search_index, "_THREAD_MIN_ROWS", 1)
    query = Chem.MolFromSmarts(smarts)
    expected = _plain_loop(mols, query)
    index.build_substructure()
    found = index._absent_atom(query, smarts)
    assert found is absent or absent is None
    assert not (found and expected)
    assert [h.row for h in index.substructure(query)] == expected


@pytest.mark.parametrize("few", [0, 10**9])
@pytest.mark.parametrize("smarts", ["C1CCC2C(C1)CCC1C2CCC2CCCC12", "C1C2CC3CC1CC(C2)C3", "c1ccccc1", "[Si]", "C(=O)N",
                                    "c1ccc2[nH]ccc2c1", "[#7]", "*"])
def test_the_pattern_screen_keeps_the_same_molecules_rarest_bits_first(library, monkeypatch, few, smarts):
    """The screen ANDs the rarest bits first and, with few molecules left, reads the other bits
    at their positions only: the same candidates as ANDing every plane in turn."""
    import numpy as np

    mols, index = library
    index.build_substructure()
    query = Chem.MolFromSmarts(smarts)
    monkeypatch.setattr(search_index, "_SCREEN_FEW", few)
    ordered = index._screen(query)
    monkeypatch.setattr(index, "_pattern_counts", lambda: None)
    assert np.array_equal(ordered, index._screen(query))
    assert set(_plain_loop(mols, query)) <= set(ordered.tolist())
