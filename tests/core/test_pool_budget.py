"""The per-record time budget of the worker pool (issue 18, case 4): a record that runs past it
is that record's error, its worker is replaced, and the rest of the run comes out in order."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from healthfm_desktop.core import processes

REPO = Path(__file__).resolve().parents[2]


def _upper_or_stuck(records: list[str]) -> list[str]:
    """Upper-case each record; "stuck" blocks in a C call for a minute, as a library call on a
    pathological input does: no Python signal handler or exception can end it from inside."""
    out = []
    for record in records:
        if record == "stuck":
            ctypes.CDLL(ctypes.util.find_library("c")).sleep(60)
        out.append(record.upper())
    return out


def _stopped(record: str, seconds: float) -> str:
    return f"stopped after {seconds:g} s: {record}"


@pytest.mark.timeout(120)
def test_a_record_stuck_in_a_c_call_is_its_error_and_the_rest_streams_in_order():
    tasks = [["a", "b"], ["c", "stuck", "d"], ["e"], ["f", "stuck"], ["g", "h"]]
    started = time.monotonic()
    out = list(processes.map_ordered([(_upper_or_stuck, t) for t in tasks], workers=2,
                                     budget=processes.RecordBudget(1.0, _stopped)))
    elapsed = time.monotonic() - started
    assert out == [["A", "B"], ["C", "stopped after 1 s: stuck", "D"], ["E"], ["F", "stopped after 1 s: stuck"],
                   ["G", "H"]]
    assert elapsed < 45  # two records of 60 s each were stopped (about 1 s each plus a fresh pool)


def test_without_a_stuck_record_the_budgeted_map_gives_the_plain_results():
    tasks = [[str(k), str(k + 1)] for k in range(0, 40, 2)]
    budgeted = list(processes.map_ordered([(_upper_or_stuck, t) for t in tasks], workers=2,
                                          budget=processes.RecordBudget(30.0, _stopped)))
    assert budgeted == [_upper_or_stuck(t) for t in tasks]


# --- a real slow molecule through `molecules describe` -------------------------------------


def _big_ring_block() -> str:
    """A 1,000-carbon macrocycle with its 2,000 hydrogens written out: at the size limits (1,000
    heavy atoms, 3,000 declared), about 0.14-0.3 s to describe against ~1-3 ms for a drug-like record."""
    from rdkit import Chem

    mol = Chem.AddHs(Chem.MolFromSmiles("C1" + "C" * 998 + "C1"))  # no coordinates: all 0, as some tools write
    mol.SetProp("_Name", "ring1000")
    return Chem.MolToV3KMolBlock(mol, includeStereo=False)  # RDKit's stereo perception here takes a minute


def _ethanol(name: str) -> str:
    from rdkit import Chem

    mol = Chem.MolFromSmiles("CCO")
    mol.SetProp("_Name", name)
    # a data field, so that fewer than the ~200 molecules after which the alert screen tunes
    # itself once (~20 ms) fill the file past the size the worker pool starts at
    return Chem.MolToMolBlock(mol) + "> <note>\n" + "ethanol, solvent grade. " * 12 + "\n\n"


def _describe(path: Path, *extra: str) -> tuple[int, list[dict], str]:
    done = subprocess.run([sys.executable, "-m", "healthfm_desktop", "molecules", "describe", str(path), "--json",
                           *extra], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr


@pytest.mark.timeout(300)
def test_describe_stops_a_molecule_past_its_time_budget_and_describes_the_rest(tmp_path):
    path = tmp_path / "slow.sdf"
    names = ["first", "ring1000"] + [f"e{k}" for k in range(150)]
    path.write_text("$$$$\n".join([_ethanol("first"), _big_ring_block()] + [_ethanol(n) for n in names[2:]]) + "$$$$\n")
    assert path.stat().st_size > 256 * 1024  # large enough for the worker pool (smaller files stay in-process)
    code, rows, stderr = _describe(path)  # the default budget (10 s): the ring is described
    assert code == 0 and [r["id"] for r in rows] == names
    assert "error" not in rows[1] and rows[1]["mw"] == pytest.approx(14027.0, rel=1e-3)
    code, rows, stderr = _describe(path, "--time-budget", "0.02")  # the ring takes ~0.14 s on an idle core, an ethanol ~1 ms
    assert code == 1 and [r["id"] for r in rows] == names
    assert rows[1] == {"id": "ring1000", "smiles": "",
                       "error": "took longer than the time budget of 0.02 s for one molecule (stopped)"}
    assert all(r["smiles"] == "CCO" and r["mw"] == pytest.approx(46.069, abs=1e-3) for r in rows[:1] + rows[2:])
    assert f"{path}: record ring1000: took longer than the time budget" in stderr and "Traceback" not in stderr


def test_time_budget_must_be_a_positive_number(tmp_path):
    path = tmp_path / "one.smi"
    path.write_text("CCO ethanol\n")
    for bad in ("0", "-1", "soon", "inf"):
        done = subprocess.run([sys.executable, "-m", "healthfm_desktop", "molecules", "describe", str(path), "--json",
                               "--time-budget", bad], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "not a positive number of seconds" in done.stderr
