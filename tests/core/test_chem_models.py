"""The shipped molecular models: one featurisation for training and app (identical tensors),
keys exactly as CLI.md, applicability domain checked against its sha256, training scripts run
on a tiny subset, and the analogue generator's validity/novelty."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from healthfm_desktop.core.chemistry.featurize import featurize_mols
from healthfm_desktop.core.chemistry.reading import read_molecules
from healthfm_desktop.core.errors import ModelError

REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "models" / "training"
TASKS = ["NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD", "NR-PPAR-gamma",
         "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53"]


def test_training_and_app_featurise_identically():
    sys.path.insert(0, str(TRAINING))
    try:
        from molecule_training import DATA, read_rows
    finally:
        sys.path.remove(str(TRAINING))
    rows, mols = read_rows(DATA / "esol.csv.gz", limit=25)
    training = featurize_mols(mols)
    app = featurize_mols([r.mol for r in read_molecules(DATA / "esol.csv.gz")][:25])
    assert training.dtype == np.float32 and np.array_equal(training, app)


def test_keys_and_domain_as_cli_md():
    from healthfm_desktop.core.chemistry.predictors import predict_mols

    aspirin, far = Chem.MolFromSmiles("CC(=O)Oc1ccccc1C(=O)O"), Chem.MolFromSmiles("[Pt](Cl)(Cl)(N)N")
    first, second = predict_mols([aspirin, far], neighbours=3)
    assert set(first.values) == {"solubility_logS", *(f"tox21:{t}" for t in TASKS)}
    assert set(first.in_domain) == set(first.values)
    assert -4 < first.values["solubility_logS"] < 0  # aspirin: measured about -1.7
    assert all(0 <= first.values[f"tox21:{t}"] <= 1 for t in TASKS)
    assert first.in_domain["solubility_logS"] and not second.in_domain["solubility_logS"]
    near = first.neighbours["esol_solubility"]
    assert len(near) == 3 and near[0].similarity >= near[1].similarity and "logS" in near[0].values


def test_tampered_domain_file_is_refused(tmp_path, monkeypatch):
    from healthfm_desktop.core.chemistry.predictors import MoleculeModel
    from healthfm_desktop.core.inference import registry

    for path in (REPO / "models").glob("esol_solubility*"):
        shutil.copy(path, tmp_path / path.name)
    data = bytearray((tmp_path / "esol_solubility_ad.npz").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "esol_solubility_ad.npz").write_bytes(bytes(data))
    monkeypatch.setenv("HEALTHFM_MODELS_DIR", str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", None)
    with pytest.raises(ModelError, match="applicability-domain"):
        MoleculeModel("esol_solubility")


@pytest.mark.parametrize("script,limit", [("train_esol.py", "80"), ("train_tox21.py", "200")])
def test_training_scripts_run_on_a_tiny_subset(tmp_path, script, limit):
    result = subprocess.run(
        [sys.executable, str(TRAINING / script), "--limit", limit, "--seeds", "1", "--epochs", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert manifest["applicability_domain"]["file"] in {p.name for p in tmp_path.iterdir()}
    assert (tmp_path / manifest["file"]).stat().st_size > 0 and next(tmp_path.glob("*.md"))


def test_analogues_are_valid_unique_novel_and_ranked():
    from healthfm_desktop.core.chemistry.analogues import generate_analogues

    known = {Chem.MolToSmiles(r.mol) for r in read_molecules(REPO / "resources" / "samples" / "molecules" / "approved_drugs.csv")}
    seed = Chem.MolFromSmiles("CC(C)Cc1ccc(C(C)C(=O)O)cc1")
    analogues, report = generate_analogues(seed, count=15, known=known, predict=False, source="mutation")
    assert report.validity >= 0.95 and report.novelty >= 0.8
    smiles = [a.smiles for a in analogues]
    assert len(smiles) == 15 == len(set(smiles)) and not set(smiles) & known
    assert all(Chem.MolToSmiles(Chem.MolFromSmiles(s)) == s for s in smiles)
    assert [a.score for a in analogues] == sorted((a.score for a in analogues), reverse=True)
