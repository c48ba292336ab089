"""Measures the molecular applicability domain (core/inference/domain.py, "tanimoto", k = 1):
for a head adapted on ClinTox's scaffold-split train part, the share of its valid+test molecules
inside the domain and the verdict on molecules no drug model should answer for, beside the
cosine-on-standardised-features rule adapted heads used before.

Usage: python models/training/check_molecule_domains.py"""

from __future__ import annotations

import csv
import gzip
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

from healthfm_desktop.core.chemistry.featurize import MORGAN_SIZE  # noqa: E402
from healthfm_desktop.core.chemistry.reading import parse_smiles  # noqa: E402
from healthfm_desktop.core.foundation.encoders import load_encoder  # noqa: E402
from healthfm_desktop.core.inference.domain import EmbeddingDomain  # noqa: E402

ODD = {"sodium chloride": "[Na+].[Cl-]", "water": "O", "iron": "[Fe]",
       "C60": "c12c3c4c5c1c1c6c7c2c2c8c3c3c9c4c4c%10c5c5c1c1c6c6c%11c7c2c2c7c8c3c3c8c9c4c4c9c%10c5c5c1c1c6c6c%11c2c2c7c3c3c8c4c4c9c5c1c1c6c2c3c41",
       "perfluorooctane": "FC(F)(F)C(F)(F)C(F)(F)C(F)(F)C(F)(F)C(F)(F)C(F)(F)C(F)(F)F"}


def main() -> int:
    encoder = load_encoder("molecule")
    with gzip.open(REPO / "models" / "training" / "data" / "molecules" / "clintox.csv.gz", "rt", newline="") as handle:
        rows = [(parse_smiles(r["smiles"])[0], r["smiles"], r["scaffold_split"]) for r in csv.DictReader(handle)]
    rows = [r for r in rows if r[0] is not None]
    split = np.array([r[2] for r in rows])
    x = encoder.embed([r[0] for r in rows])
    train, held_out = x[split == "train"], x[split != "train"]
    odd = encoder.embed([parse_smiles(s)[0] for s in ODD.values()])
    train_smiles = [r[1] for r, s in zip(rows, split) if s == "train"]
    rules = {"tanimoto, nearest molecule (now)": EmbeddingDomain.fit(train, k=1, metric="tanimoto", fingerprint_bits=MORGAN_SIZE),
             "cosine on standardised features, k=5 (before)": EmbeddingDomain.fit(train, k=5, metric="cosine", standardise=True)}
    print(f"ClinTox CT_TOX, scaffold split: {len(train)} train molecules; threshold = 95 % quantile of their leave-one-out distances")
    for name, domain in rules.items():
        inside = domain.in_domain(held_out)
        verdicts = ", ".join(f"{label} {'in' if v else 'OUT'}" for label, v in zip(ODD, domain.in_domain(odd)))
        print(f"- {name}: {inside.mean():.1%} of {len(held_out)} valid+test molecules in domain; {verdicts}")
    nearest = rules["tanimoto, nearest molecule (now)"].assess(odd[-1:])
    print(f"perfluorooctane's nearest training molecule: {train_smiles[int(nearest.nearest[0, 0])]} "
          f"(Tanimoto {1 - nearest.distance[0]:.2f}): perfluorocarbons are approved drugs in ClinTox")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
