"""Split-conformal calibration of the shipped molecular models at 90 %, on the validation part of
the training scripts' own random 80/10/10 split (the part used there only for early stopping),
written into the manifests; prints the empirical coverage and size on the untouched test part.

- esol_solubility: intervals prediction +- q (absolute-residual score);
- tox21_multitask: one class-conditional (Mondrian) set per assay over {inactive, active}, so that
  the rare actives are covered at 90 % too, not only the molecules overall.

    python models/training/fit_molecule_conformal.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

from molecule_training import DATA, MODELS, random_split, read_rows  # noqa: E402
from train_tox21 import TASKS  # noqa: E402

from healthfm_desktop.core.chemistry.featurize import featurize_mols  # noqa: E402
from healthfm_desktop.core.inference.conformal import ConformalClassifier, ConformalRegressor  # noqa: E402
from healthfm_desktop.core.inference.registry import write_manifest  # noqa: E402

SEED = 20240601  # the training scripts' split
COVERAGE = 0.9
SET_LABELS = ["inactive", "active"]
PER_CLASS = "--per-class" in sys.argv


def run_onnx(name: str, features: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(MODELS / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
    name_in = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name_in: features.astype(np.float32)})[0], dtype=np.float64).reshape(len(features), -1)


def update_manifest(name: str, conformal: dict) -> None:
    path = MODELS / f"{name}.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["conformal"] = conformal
    write_manifest(path, manifest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="measure with the manifests' calibration; write nothing")
    parser.add_argument("--per-class", action="store_true", help="class-conditional (Mondrian) Tox21 sets")
    args = parser.parse_args(argv)

    rows, mols = read_rows(DATA / "esol.csv.gz")
    y = np.array([float(r["logS"]) for r in rows])
    pred = run_onnx("esol_solubility", featurize_mols(mols))[:, 0]
    train, valid, test = random_split(len(y), SEED)
    if not args.check:
        update_manifest("esol_solubility", ConformalRegressor.calibrate(pred[valid], y[valid], COVERAGE).to_dict())
    regressor = ConformalRegressor.from_dict(json.loads((MODELS / "esol_solubility.json").read_text())["conformal"])
    low, high = regressor.intervals(pred[test]).T
    covered = (y[test] >= low) & (y[test] <= high)
    print(f"esol_solubility {COVERAGE:.0%} intervals (val n={regressor.n_calibration}): test coverage {covered.mean():.1%} "
          f"of {len(test)}, width {2 * regressor.half_width:.2f} log units")

    rows, mols = read_rows(DATA / "tox21.csv.gz")
    labels = np.array([[float(r[t]) if r[t] != "" else np.nan for t in TASKS] for r in rows])
    prob = run_onnx("tox21_multitask", featurize_mols(mols))
    train, valid, test = random_split(len(labels), SEED)
    if not args.check:
        calibration = {}
        for t, task in enumerate(TASKS):
            sel = valid[~np.isnan(labels[valid, t])]
            two = np.stack([1 - prob[sel, t], prob[sel, t]], axis=1)
            calibration[f"tox21:{task}"] = ConformalClassifier.calibrate(
                two, labels[sel, t].astype(int), COVERAGE, per_class=PER_CLASS).to_dict()
        update_manifest("tox21_multitask", {"kind": "per-label", "labels": SET_LABELS, "by_key": calibration})
    stored = json.loads((MODELS / "tox21_multitask.json").read_text())["conformal"]["by_key"]
    coverages, actives, sizes = [], [], []
    for t, task in enumerate(TASKS):
        classifier = ConformalClassifier.from_dict(stored[f"tox21:{task}"])
        sel = test[~np.isnan(labels[test, t])]
        truth = labels[sel, t].astype(int)
        members = classifier.membership(np.stack([1 - prob[sel, t], prob[sel, t]], axis=1))
        hit = members[np.arange(len(sel)), truth]
        coverages.append(hit.mean())
        actives.append(hit[truth == 1].mean())
        sizes.append(members.sum(axis=1).mean())
        print(f"  tox21:{task}: test coverage {hit.mean():.1%} of {len(sel)} (actives {hit[truth == 1].mean():.1%} of "
              f"{int(truth.sum())}), mean set size {members.sum(axis=1).mean():.2f}")
    print(f"tox21_multitask {COVERAGE:.0%} sets per assay (class-conditional, val): mean test coverage "
          f"{np.mean(coverages):.1%} (range {min(coverages):.1%}-{max(coverages):.1%}), actives {np.mean(actives):.1%}, "
          f"mean set size {np.mean(sizes):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
