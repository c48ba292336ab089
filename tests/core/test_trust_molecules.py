"""Calibrated uncertainty and the applicability domain of the shipped molecular models: the
ESOL interval and the Tox21 sets come from the manifests' split-conformal calibration, cover
the test part of the training split as fit_molecule_conformal.py says, and `molecules predict`
withholds an out-of-domain answer unless --force."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from rdkit import Chem

from healthfm_desktop.core.chemistry.featurize import featurize_mols
from healthfm_desktop.core.chemistry.predictors import predict_mols, shipped_models

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "models" / "training"))


def test_interval_and_sets_sit_beside_each_answer():
    aspirin, platinum = Chem.MolFromSmiles("CC(=O)Oc1ccccc1C(=O)O"), Chem.MolFromSmiles("[Pt](Cl)(Cl)(N)N")
    first, second = predict_mols([aspirin, platinum])
    low, high = first.intervals["solubility_logS"]
    assert low < first.values["solubility_logS"] < high and 1.0 < high - low < 3.5
    for key, labels in first.prediction_sets.items():
        assert key.startswith("tox21:") and labels and set(labels) <= {"active", "inactive"}
        assert labels[0] == ("active" if first.values[key] >= 0.5 else "inactive")  # most probable first
    assert len(first.prediction_sets) == 12 and second.intervals["solubility_logS"]


def test_esol_intervals_cover_the_untouched_test_part_at_about_90_percent():
    from molecule_training import DATA, random_split, read_rows

    rows, mols = read_rows(DATA / "esol.csv.gz")
    y = np.array([float(r["logS"]) for r in rows])
    _, _, test = random_split(len(y), 20240601)
    predictions = predict_mols([mols[i] for i in test])
    covered = [p.intervals["solubility_logS"][0] <= y[i] <= p.intervals["solubility_logS"][1] for p, i in zip(predictions, test)]
    assert 0.85 <= np.mean(covered) <= 0.97  # fit_molecule_conformal.py printed 91.1 % of 90
    assert featurize_mols(mols[:1]).shape[0] == 1 and shipped_models()


def test_cli_withholds_out_of_domain_values_and_force_gives_them(tmp_path):
    path = tmp_path / "two.smi"
    path.write_text("CC(=O)Oc1ccccc1C(=O)O aspirin\n[Pt](Cl)(Cl)(N)N cisplatin\n", encoding="utf-8")

    def run(*extra):
        out = subprocess.run([sys.executable, "-m", "healthfm_desktop", "molecules", "predict", str(path), "--json", *extra],
                             capture_output=True, text=True, cwd=REPO, timeout=300)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    aspirin, cisplatin = run()
    assert aspirin["predictions"]["solubility_logS"] is not None and aspirin["intervals"]["solubility_logS"]
    assert cisplatin["in_domain"]["solubility_logS"] is False and cisplatin["predictions"]["solubility_logS"] is None
    assert cisplatin["intervals"]["solubility_logS"] is None and cisplatin["forced"] is False
    _, forced = run("--force")
    assert isinstance(forced["predictions"]["solubility_logS"], float) and forced["forced"] is True
