"""Hostile molecule input (issue 18, cases 4 and 9): giant chains, macrocycles and SD records
get a per-record error and the good records still come out; a tab inside a SMILES cell is a
row error, not a shorter molecule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from healthfm_desktop.core.chemistry.reading import MAX_RECORD_ATOMS, parse_molblock, parse_smiles, read_molecules

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> tuple[int, list[dict], str]:
    done = subprocess.run([sys.executable, "-m", "healthfm_desktop", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def _v3000_chain(atoms: int, title: str) -> str:
    lines = [title, "  hostile", "", "  0  0  0     0  0            999 V3000", "M  V30 BEGIN CTAB",
             f"M  V30 COUNTS {atoms} {atoms - 1} 0 0 0", "M  V30 BEGIN ATOM"]
    lines += [f"M  V30 {k + 1} C {k * 1.5:.4f} 0 0 0" for k in range(atoms)]
    lines += ["M  V30 END ATOM", "M  V30 BEGIN BOND"] + [f"M  V30 {k + 1} 1 {k + 1} {k + 2}" for k in range(atoms - 1)]
    lines += ["M  V30 END BOND", "M  V30 END CTAB", "M  END"]
    return "\n".join(lines) + "\n"


ETHANOL_BLOCK = """ethanol
     RDKit          2D

  3  2  0  0  0  0  0  0  0  0999 V2000
    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    1.2990    0.7500    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    2.5981   -0.0000    0.0000 O   0  0  0  0  0  0  0  0  0  0  0  0
  1  2  1  0
  2  3  1  0
M  END
"""


def test_giant_chain_and_macrocycle_smiles_get_a_size_error():
    mol, error = parse_smiles("C" * 5000)
    assert mol is None and error == f"too large: 5000 heavy atoms (limit {MAX_RECORD_ATOMS} for one molecule)"
    mol, error = parse_smiles("C1" + "C" * 9998 + "C1")
    assert mol is None and error.startswith("too large: a SMILES of 10002 characters")
    assert parse_smiles("C1" + "C" * (MAX_RECORD_ATOMS - 2) + "C1")[0].GetNumAtoms() == MAX_RECORD_ATOMS


def _ladder_smiles(rungs: int) -> str:
    """A ladder of fused four-membered rings: 2 x rungs atoms, rungs - 1 rings."""
    from rdkit import Chem

    mol = Chem.RWMol()
    for _ in range(2 * rungs):
        mol.AddAtom(Chem.Atom(6))
    for k in range(rungs):
        mol.AddBond(2 * k, 2 * k + 1, Chem.BondType.SINGLE)
        if k:
            mol.AddBond(2 * k - 2, 2 * k, Chem.BondType.SINGLE)
            mol.AddBond(2 * k - 1, 2 * k + 1, Chem.BondType.SINGLE)
    return Chem.MolToSmiles(mol)


def test_fused_ring_count_is_limited():
    mol, error = parse_smiles(_ladder_smiles(151))  # 302 atoms, under the atom limit
    assert mol is None and error == "too large: 150 rings (limit 100 for one molecule)"
    assert parse_smiles(_ladder_smiles(101))[0] is not None


def test_molblock_declaring_50k_atoms_is_refused_before_parsing():
    mol, error = parse_molblock(_v3000_chain(50_000, "big"))
    assert mol is None and error == f"too large: the record declares 50000 atoms (limit {MAX_RECORD_ATOMS} heavy atoms for one molecule)"


@pytest.mark.timeout(300)
def test_sdf_with_a_50k_atom_second_record_describes_the_first(tmp_path):
    path = tmp_path / "two.sdf"
    path.write_text(ETHANOL_BLOCK + "$$$$\n" + _v3000_chain(50_000, "big") + "$$$$\n" + ETHANOL_BLOCK.replace("ethanol", "again", 1) + "$$$$\n")
    code, rows, stderr = _cli("molecules", "describe", str(path), "--json")
    assert code == 1
    assert [r["id"] for r in rows] == ["ethanol", "big", "again"]
    assert rows[0]["smiles"] == "CCO" and rows[0]["mw"] == pytest.approx(46.069, abs=1e-3)
    assert rows[1]["error"].startswith("too large: the record declares 50000 atoms")
    assert rows[2]["smiles"] == "CCO"
    assert f"{path}: record big: too large" in stderr


@pytest.mark.timeout(300)
def test_predict_of_a_5000_atom_chain_gives_that_row_an_error(tmp_path):
    path = tmp_path / "chain.smi"
    path.write_text("C" * 5000 + " chain\nCCO ethanol\n")
    code, rows, stderr = _cli("molecules", "predict", str(path), "--json")
    assert code == 1
    assert rows[0]["id"] == "chain" and rows[0]["error"].startswith("too large: 5000 heavy atoms")
    assert rows[1]["id"] == "ethanol" and "solubility_logS" in rows[1]["predictions"]


def test_tab_inside_a_smiles_cell_is_a_row_error_not_ethane(tmp_path):
    path = tmp_path / "tab.csv"
    path.write_text("id,smiles\na,CC\tCC\nb,CCO\n")
    records = list(read_molecules(path))
    assert [r.id for r in records] == ["a", "b"]
    assert records[0].mol is None and records[0].error == "not one SMILES: a tab inside it ('CC\\tCC')"
    assert records[1].smiles == "CCO"


@pytest.mark.timeout(300)
def test_cli_predict_reports_the_tab_row(tmp_path):
    path = tmp_path / "tab.csv"
    path.write_text("id,smiles\na,CC\tCC\nb,CCO\n")
    code, rows, stderr = _cli("molecules", "predict", str(path), "--json")
    assert code == 1 and rows[0] == {"id": "a", "smiles": "CC\tCC", "error": "not one SMILES: a tab inside it ('CC\\tCC')"}
    assert "predictions" in rows[1]
