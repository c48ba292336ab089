"""Properties equal RDKit's own calls; the screened alert catalog and screened QED give exactly
what RDKit's FilterCatalog and QED.qed give, on library molecules and approved drugs."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
from rdkit import Chem
from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdMolDescriptors
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

from healthfm_desktop.core.chemistry.properties import ALERT_CATALOGS, describe_mol, describe_records
from healthfm_desktop.core.chemistry.reading import read_molecules

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "tests" / "data" / "molecules" / "moses_subset_10k.csv.gz"
SAMPLES = REPO / "resources" / "samples" / "molecules"


@pytest.fixture(scope="module")
def molecules():
    with gzip.open(LIBRARY, "rt") as handle:
        smiles = [row["smiles"] for _, row in zip(range(300), csv.DictReader(handle))]
    smiles += [r.source for r in read_molecules(SAMPLES / "approved_drugs.csv")]
    smiles += ["O=[N+]([O-])c1ccc(N=Nc2ccccc2)cc1", "C=CC(=O)Cl", "[Na+].[Cl-]", "OC1=CC(=O)C=CC1=O"]
    # QED's aromatic-ring count differs from the aromatic rings here (fluorenones, fused
    # aliphatic rings); explicit isotopic H atoms stay in the graph; a charged amine acceptor
    smiles += ["CC(=O)c1ccc2c(c1)C(=O)c1cc(C(C)=O)ccc1-2", "c1ccc2c(c1)Cc1ccccc1-2", "[2H]C1CCc2ccccc21",
               "C[N+](C)(C)CCOC(=O)C", "CN1CCC(CC1)N(C)C(=O)c1ccccc1"]
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    # unusual real structures: NCI AIDS screen (metals, charges, odd valences) and ChEMBL examples
    mols += [r.mol for name in ("NCI_aids_few.sdf", "chembl_example_compounds.sdf")
             for r in read_molecules(REPO / "tests" / "data" / "molecules" / name) if r.mol is not None]
    return mols


def test_alerts_and_qed_equal_rdkit(molecules):
    catalogs = {}
    for name, cid in ALERT_CATALOGS.items():
        params = FilterCatalogParams()
        params.AddCatalog(cid)
        catalogs[name] = FilterCatalog(params)
    with_alerts = 0
    for mol in molecules:
        row = describe_mol(mol)
        expected = sorted(f"{n}:{e.GetDescription()}" for n, c in catalogs.items() for e in c.GetMatches(mol))
        assert sorted(row["alerts"]) == expected, Chem.MolToSmiles(mol)
        assert row["qed"] == QED.qed(mol)
        with_alerts += bool(expected)
    assert with_alerts > 20


def test_describe_columns_are_rdkits(molecules):
    mol = molecules[-5]
    row = describe_mol(mol, with_alert_atoms=True)
    assert row["mw"] == Descriptors.MolWt(mol) and row["logp"] == Crippen.MolLogP(mol)
    assert row["tpsa"] == rdMolDescriptors.CalcTPSA(mol)
    assert (row["hbd"], row["hba"]) == (Lipinski.NumHDonors(mol), Lipinski.NumHAcceptors(mol))
    assert row["rotb"] == rdMolDescriptors.CalcNumRotatableBonds(mol)
    assert row["fsp3"] == rdMolDescriptors.CalcFractionCSP3(mol)
    azo = describe_mol(Chem.MolFromSmiles("O=[N+]([O-])c1ccc(N=Nc2ccccc2)cc1"), with_alert_atoms=True)
    assert any("azo" in label.lower() for label in azo["alert_atoms"])
    assert all(atoms for atoms in azo["alert_atoms"].values())


def test_describe_records_in_parallel_keeps_order_and_errors(tmp_path):
    path = tmp_path / "mixed.smi"
    lines = ["CCO a", "C1CC b", "c1ccccc1 c", "N(C)(C)(C)(C)C d"] * 30
    path.write_text("\n".join(lines))
    rows = list(describe_records(read_molecules(path), workers=2, chunk_size=7))
    assert [r["id"] for r in rows] == [line.split()[1] for line in lines]
    assert ["error" in r for r in rows[:4]] == [False, True, False, True]
    assert "valence" in rows[3]["error"]


def test_parallel_describe_of_unparsed_records_equals_serial():
    """The CLI's path (SMILES parsed on worker processes started by the fork server) gives
    exactly the rows of describing in-process molecules parsed while reading."""
    rows = [r for _, r in zip(range(1200), read_molecules(LIBRARY, parse=False))]
    assert all(r.unparsed for r in rows)
    parallel = list(describe_records(rows, workers=2, chunk_size=100))
    serial = list(describe_records([r for _, r in zip(range(1200), read_molecules(LIBRARY))], workers=1))
    assert parallel == serial
    assert len(parallel) == 1200 and sum(bool(r.get("alerts")) for r in parallel) > 50


def test_describe_goes_on_in_process_when_no_pool_can_start(monkeypatch):
    from healthfm_desktop.core import processes

    monkeypatch.setattr(processes, "start_method", lambda: None)
    rows = list(describe_records(read_molecules(SAMPLES / "approved_drugs.csv", parse=False), workers=2))
    assert rows == list(describe_records(read_molecules(SAMPLES / "approved_drugs.csv"), workers=1))


def test_relaxed_alert_queries_are_weaker_than_the_originals(molecules):
    """Each relaxed query (recursive atoms replaced by weaker plain atoms) matches every
    molecule its original matches, so screening with it never drops a true alert; and it
    screens: on these molecules it rejects some that reach the original query's match call."""
    from healthfm_desktop.core.chemistry.properties import _first_atom_union, alert_catalog

    assert _first_atom_union("[$([N+](=O)[O-]),$(N(=O)=O)]").GetSmarts() == "[N&+,N]"
    assert _first_atom_union("[C&H2,$(C(F)F);R0]").GetSmarts() == "[C&H2,C;R0]"
    # a $(A) inside an AND gives A's first atom; the negated one is dropped
    assert _first_atom_union("[$([C&H1&$(C-F)]),$(C(F)F)]").GetSmarts() == "[C&H1&C,C]"
    assert _first_atom_union("[$([N&+0&X3&v3])&!$(N[C,S]=O)]").GetSmarts() == "[N&+0&X3&v3]"
    assert _first_atom_union("[!$(N)&!$([O&D1])]").GetSmarts() == "*"  # only negations: nothing weaker known
    relaxed = [m for m in alert_catalog().screen.matchers if m is not None and m.relaxed is not None]
    assert len(relaxed) > 50
    rejected = 0
    for mol in molecules[::4]:
        for matcher in relaxed:
            weaker = mol.HasSubstructMatch(matcher.relaxed)
            if mol.HasSubstructMatch(matcher.query):
                assert weaker, (Chem.MolToSmiles(mol), Chem.MolToSmarts(matcher.query))
            rejected += not weaker
    assert rejected > 0


def test_qed_equals_rdkit_whichever_rotatable_mode_is_the_default(monkeypatch):
    from healthfm_desktop.core.chemistry import properties

    # RDKit's default mode counts as QED's strict one: describe reuses that count for QED
    assert properties._DEFAULT_ROTATABLE_IS_STRICT
    mol = Chem.MolFromSmiles("CC(=O)NC(C)C(F)(F)C(c1ccccc1)CC(=O)Nc1ccccc1")  # strict ≠ non-strict
    expected = QED.qed(mol)
    assert describe_mol(mol)["qed"] == expected
    # were the default changed, QED's strict count is computed on its own
    monkeypatch.setattr(properties, "_DEFAULT_ROTATABLE_IS_STRICT", False)
    assert describe_mol(mol)["qed"] == expected


def test_qed_counts_from_atom_signatures_equal_qed_properties(molecules):
    """QED's acceptor and aromatic-ring counts taken from the one pass over atoms and bonds
    (signatures, cycle rank) equal QED.properties' own SMARTS matches and SSSR."""
    from healthfm_desktop.core.chemistry.properties import _qed_atom_facts, alert_catalog

    screen, counts = alert_catalog().screen.local_screen, _qed_atom_facts()
    differs_from_aromatic_rings = 0
    for mol in molecules:
        if mol.GetNumAtoms() != mol.GetNumHeavyAtoms():
            mol = Chem.RemoveHs(mol)
        facts = screen.present(mol)
        expected = QED.properties(mol)
        assert counts.acceptors(mol, facts) == expected.HBA, Chem.MolToSmiles(mol)
        assert counts.aromatic_rings(facts) == expected.AROM, Chem.MolToSmiles(mol)
        differs_from_aromatic_rings += expected.AROM != rdMolDescriptors.CalcNumAromaticRings(mol)
    assert differs_from_aromatic_rings > 0  # the molecules include the cases where QED counts differently


def test_local_screen_only_drops_queries_rdkit_does_not_match(molecules):
    """Every alert query RDKit matches on a molecule is among the screened candidates, and the
    screens leave few of the ~800 queries to RDKit."""
    from healthfm_desktop.core.chemistry.properties import alert_catalog

    screen = alert_catalog().screen
    kept = 0
    for mol in molecules[::3]:
        if mol.GetNumAtoms() != mol.GetNumHeavyAtoms():
            mol = Chem.RemoveHs(mol)
        candidates = set(screen.candidates(mol).tolist())
        kept += len(candidates)
        for i, matcher in enumerate(screen.matchers):
            if matcher is not None and mol.HasSubstructMatch(matcher.query):
                assert i in candidates, (Chem.MolToSmiles(mol), Chem.MolToSmarts(matcher.query))
    assert kept / len(molecules[::3]) < 0.1 * screen.n
