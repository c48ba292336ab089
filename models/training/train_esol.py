"""Train the aqueous-solubility model (ESOL, log10 mol/L) and write models/esol_solubility.onnx,
its manifest, model card and applicability-domain file.

    nice -n 10 python models/training/train_esol.py [--limit N] [--out DIR] [--seeds K]

Random 80/10/10 split (MoleculeNet's recommendation for ESOL), seeded; an MLP ensemble on
log1p Morgan counts + RDKit descriptors (healthfm_desktop.core.chemistry.featurize)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout this script belongs to, not an installed copy
sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_cards import with_when_not_to_use  # noqa: E402  (beside this script)
from molecule_training import (  # noqa: E402
    DATA, MODELS, bootstrap_ci, fit_domain, make_mlp_ensemble, random_split, read_rows, save_model, seed_everything,
)

from healthfm_desktop.core.chemistry.applicability import ApplicabilityDomain  # noqa: E402
from healthfm_desktop.core.chemistry.featurize import FEATURE_SIZE, FEATURISATION, MORGAN_SIZE, featurize_mols  # noqa: E402
from healthfm_desktop.core.chemistry.fingerprints import packed_morgan_many  # noqa: E402

NAME = "esol_solubility"
SEED = 20240601
KEY = "solubility_logS"


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="use only the first N molecules (smoke test)")
    parser.add_argument("--out", type=Path, default=MODELS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=300)
    args = parser.parse_args(argv)
    seed_everything(SEED)
    start = time.time()
    rows, mols = read_rows(DATA / "esol.csv.gz", args.limit)
    y = np.array([float(r["logS"]) for r in rows], dtype=np.float32)
    x = featurize_mols(mols)
    packed = packed_morgan_many(mols)
    smiles = np.array([r["smiles"] for r in rows])
    train, valid, test = random_split(len(y), SEED)
    print(f"ESOL: {len(y)} molecules, split {len(train)}/{len(valid)}/{len(test)}; features {x.shape[1]}")
    ones = np.ones((len(y), 1), dtype=np.float32)
    model = make_mlp_ensemble(
        x[train], y[train, None], ones[train], x[valid], y[valid, None], ones[valid], "regression",
        seeds=range(args.seeds), hidden=(256, 64), dropout=0.1, epochs=args.epochs, lr=3e-4, weight_decay=1e-2,
        batch=32, columns=slice(MORGAN_SIZE, None),
    )
    import torch

    with torch.no_grad():
        pred = model(torch.tensor(x)).numpy()[:, 0]
    test_rmse = rmse(y[test], pred[test])
    test_mae = float(np.mean(np.abs(y[test] - pred[test])))
    ci = bootstrap_ci(rmse, y[test], pred[test], SEED)
    valid_rmse = rmse(y[valid], pred[valid])
    ss_res = float(np.sum((y[test] - pred[test]) ** 2))
    r2 = 1 - ss_res / float(np.sum((y[test] - y[test].mean()) ** 2))
    print(f"validation RMSE {valid_rmse:.3f}; test RMSE {test_rmse:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}), MAE {test_mae:.3f}, R2 {r2:.3f}")

    threshold, inside = fit_domain(packed, train, valid, test)
    in_rmse = round(rmse(y[test][inside], pred[test][inside]), 4) if inside.any() else None
    out_rmse = round(rmse(y[test][~inside], pred[test][~inside]), 4) if (~inside).any() else None
    print(f"AD threshold {threshold:.2f}: test in-domain {inside.sum()}/{len(test)} RMSE {in_rmse}, out-of-domain RMSE {out_rmse}")

    metrics = {
        "split": "random 80/10/10 (seed 20240601) of the 900 shared ESOL molecules",
        "test_n": int(len(test)),
        "test_rmse": round(test_rmse, 4),
        "test_rmse_ci95": [round(ci[0], 4), round(ci[1], 4)],
        "test_mae": round(test_mae, 4),
        "test_r2": round(r2, 4),
        "validation_rmse": round(valid_rmse, 4),
        "test_in_domain": {"n": int(inside.sum()), "rmse": in_rmse, "out_of_domain_rmse": out_rmse},
        "baselines_moleculenet_rmse": {"MPNN": 0.58, "Weave": 0.61, "GraphConv": 0.97, "XGBoost": 0.99, "RF": 1.07, "ESOL equation": 1.0},
    }
    manifest = {
        "name": NAME,
        "version": "1.0.0",
        "file": f"{NAME}.onnx",
        "task": "molecule-regression",
        "task_description": "regression: aqueous solubility log10(mol/L)",
        "inputs": [{"name": "features", "shape": ["batch", FEATURE_SIZE], "dtype": "float32"}],
        "outputs": [{"name": KEY, "shape": ["batch", 1], "dtype": "float32", "unit": "log10 mol/L"}],
        "labels": [KEY],
        "preprocessing": FEATURISATION,
        "training_data": {
            "source": "ESOL (Delaney 2004), MoleculeNet version via deepchem (models/training/data/molecules/esol.csv.gz)",
            "license": "MIT (deepchem); data from Delaney, J. Chem. Inf. Comput. Sci. 2004, 44, 1000",
            "split": metrics["split"],
        },
        "metrics": metrics,
        "license": "MIT",
        "intended_use": "Ranking and triage of small organic molecules by predicted aqueous solubility in research; not for regulatory or clinical decisions.",
        "limitations": "Trained on 720 mostly small, neutral organic molecules (pesticides, solvents, drugs); unreliable for salts, metals, peptides and large drug-like molecules far from the training set (see in_domain).",
        "training_script": "models/training/train_esol.py",
    }
    domain = ApplicabilityDomain(packed[train], smiles[train], y[train, None], ["logS"], threshold)
    save_model(args.out, model, KEY, domain, manifest, write_card, start)
    return 0


def write_card(path: Path, manifest: dict, seconds: float) -> None:
    m = manifest["metrics"]
    ad = manifest["applicability_domain"]
    text = f"""# Model card: {manifest['name']} (aqueous solubility, ESOL)

**Output** `{KEY}`: predicted log10 solubility in mol/L. **Input**: {manifest['preprocessing']['name']}
({FEATURE_SIZE} float32 features computed by `healthfm_desktop.core.chemistry.featurize`).
**Model**: ensemble of 3 MLPs (2 hidden layers 256/64, dropout 0.1) on the RDKit-descriptor part of the
features (standardised inside the model), mean of members; trained by
`models/training/train_esol.py` (seeded, CPU, {seconds:.0f} s).

## Data
ESOL (Delaney 2004, MoleculeNet version), the 900 molecules of the shared copy (226 are held back
for acceptance checks and were never seen). {m['split']}.

## Test metrics (n = {m['test_n']})
| metric | this model | 95 % bootstrap CI |
|---|---|---|
| RMSE (log mol/L) | **{m['test_rmse']:.3f}** | {m['test_rmse_ci95'][0]:.3f} – {m['test_rmse_ci95'][1]:.3f} |
| MAE | {m['test_mae']:.3f} | |
| R² | {m['test_r2']:.3f} | |

Validation RMSE {m['validation_rmse']:.3f}.

MoleculeNet baselines (random split, full 1,128 molecules, Wu et al. 2018): MPNN 0.58 ± 0.03,
Weave 0.61 ± 0.07, GraphConv 0.97 ± 0.01, XGBoost 0.99 ± 0.14, RF 1.07 ± 0.19; the ESOL equation
≈ 1.0. The split here is a different random draw on 80 % of the data: reference levels, not a
head-to-head comparison.

## Applicability domain
{ad['measure']} ({ad['fingerprint']}); **in domain when ≥ {ad['threshold']:.2f}**
({ad['threshold_rule']}). On the test split: {m['test_in_domain']['n']} of {m['test_n']} in domain,
RMSE in domain {m['test_in_domain']['rmse']}, out of domain {m['test_in_domain']['out_of_domain_rmse']}.
The app shows the three nearest training molecules with their measured logS.

## Intended use and limitations
{manifest['intended_use']} {manifest['limitations']}
"""
    path.write_text(with_when_not_to_use(text, manifest["name"]), encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
