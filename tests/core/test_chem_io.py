"""Molecule readers on real files: SDF properties as fields, the 13 real malformed files with
RDKit's own reason per bad record, CSV/TSV column detection (and its ambiguity), gzip, and
hypothesis fuzzing: only MoleculeRecords or UserFacingErrors, never a crash."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rdkit import Chem

from healthfm_desktop.core.chemistry.reading import AmbiguousSmilesColumnError, read_molecules
from healthfm_desktop.core.chemistry.standardize import standardize
from healthfm_desktop.core.errors import UserFacingError

DATA = Path(__file__).resolve().parents[1] / "data" / "molecules"
MALFORMED = DATA / "malformed"


def test_sdf_properties_become_fields():
    records = list(read_molecules(DATA / "NCI_aids_few.sdf"))
    assert len(records) == 16 and all(r.ok for r in records)
    assert records[0].fields["NSC"] and "CAS_RN" in records[0].fields
    reference = [m for m in Chem.SDMolSupplier(str(DATA / "NCI_aids_few.sdf"))]
    assert [r.smiles for r in records] == [Chem.MolToSmiles(m) for m in reference]


@pytest.mark.parametrize("row", list(csv.DictReader(open(MALFORMED / "MANIFEST.csv"))), ids=lambda r: r["file"])
def test_malformed_files_keep_every_record_with_rdkits_reason(row):
    path = MALFORMED / row["file"]
    if row["file"] == "empty.sdf":
        with pytest.raises(UserFacingError, match="no molecule"):
            list(read_molecules(path))
        return
    records = list(read_molecules(path))
    assert len(records) == int(row["records"])
    bad = [r for r in records if not r.ok]
    assert len(bad) == int(row["rdkit_failed_records"])
    for record in bad:
        assert record.error and "Stacktrace" not in record.error and not record.error.startswith("[")


def test_reasons_are_rdkits_messages():
    by_file = {p.name: [r.error for r in read_molecules(p) if not r.ok] for p in MALFORMED.glob("*.*") if p.suffix != ".csv" and p.name != "empty.sdf"}
    assert by_file["Issue269.mol"] == ["Element 'Mv' not found"]
    assert "valence" in by_file["sdErrors2.sdf"][0]
    assert "M  END" in by_file["github88.v3k.mol"][0]


def test_csv_and_tsv_detect_the_smiles_column_gzipped_or_not(tmp_path):
    plain = tmp_path / "list.tsv"
    plain.write_text("name\tstructure_smiles\tpIC50\naspirin\tCC(=O)Oc1ccccc1C(=O)O\t5\nbad\tC1CC\t4\n")
    records = list(read_molecules(plain))
    assert [r.ok for r in records] == [True, False]
    assert records[1].error.startswith("SMILES Parse Error") and records[1].id == "2"
    packed = tmp_path / "list.csv.gz"
    with gzip.open(packed, "wt") as handle:
        handle.write("id,col_a,value\nm1,c1ccccc1,1\nm2,CCO,2\n")
    records = list(read_molecules(packed))
    assert [r.id for r in records] == ["m1", "m2"] and records[0].fields["value"] == "1"


def test_ambiguous_columns_are_surfaced_and_resolvable(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("reactant,product\nCCO,CC=O\nc1ccccc1,c1ccccc1O\n")
    with pytest.raises(AmbiguousSmilesColumnError) as info:
        list(read_molecules(path))
    assert info.value.candidates == ["reactant", "product"]
    assert [r.smiles for r in read_molecules(path, smiles_column="product")] == ["CC=O", "Oc1ccccc1"]


def test_standardisation_keeps_the_original():
    mol = Chem.MolFromSmiles("CC(=O)[O-].[Na+]")
    before = Chem.MolToSmiles(mol)
    assert Chem.MolToSmiles(standardize(mol)) == "CC(=O)O"
    assert Chem.MolToSmiles(mol) == before
    assert Chem.MolToSmiles(standardize(Chem.MolFromSmiles("Oc1ccccn1"), canonical_tautomer=True)) == "O=c1cccc[nH]1"


_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_all(path):
    try:
        return list(read_molecules(path))
    except UserFacingError:
        return []


@_SETTINGS
@given(st.lists(st.text(alphabet="CNOcn1234()=#[]+-@H.Cl", max_size=30), max_size=8))
def test_fuzz_smiles_files(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("smi") / "fuzz.smi"
    path.write_text("\n".join(lines))
    for record in _read_all(path):
        assert record.ok or record.error


@_SETTINGS
@given(st.binary(max_size=400), st.sampled_from(["x.sdf", "x.mol", "x.csv", "x.tsv", "x.smi", "x.csv.gz", "x.dat"]))
def test_fuzz_arbitrary_bytes(tmp_path_factory, data, name):
    path = tmp_path_factory.mktemp("bytes") / name
    path.write_bytes(data)
    for record in _read_all(path):
        assert record.ok or record.error


@_SETTINGS
@given(st.integers(0, 3000), st.binary(max_size=20))
def test_fuzz_damaged_sdf(tmp_path_factory, cut, junk):
    source = (DATA / "rdkit_book_5ht3ligs.sdf").read_bytes()
    path = tmp_path_factory.mktemp("sdf") / "damaged.sdf"
    path.write_bytes(source[:cut] + junk + source[cut + len(junk):])
    for record in _read_all(path):
        assert record.ok or record.error
