"""Train the ICU in-hospital mortality model shipped as models/icu_mortality.onnx.

Data: PhysioNet/CinC Challenge 2012 (ODC-By 1.0) in models/training/data/patients/ (long CSV,
patients.csv, outcomes.csv). Protocol as the challenge: train on sets a+b, test on set c.

Model: two learners on the same features (healthfm_desktop.core.patients.features, shared with
the app): an L2 logistic regression on median-imputed, standardised, clipped features, and a
gradient-boosted tree ensemble (sklearn GradientBoostingClassifier) on the imputed features.
Their logits are combined by a logistic regression fitted on 5-fold out-of-fold logits of the
training set: a cross-validated Platt scaling of the ensemble, which calibrates it. The same is
done with the stays truncated at 12, 24 and 36 h, so that the risk trajectory the app shows is
calibrated at each time (output ``risk_by_horizon``).

The ONNX graph is written by hand with onnx.helper (imputation, the linear model, the trees as
an ai.onnx.ml TreeEnsembleRegressor, the stacker and a sigmoid), because skl2onnx cannot be used
under protobuf 7 here; the script checks it against sklearn before saving.

    nice -n 10 python models/training/train_icu_mortality.py            # full run (~5-10 min)
    python models/training/train_icu_mortality.py --data tests/data/patients --out /tmp/m --quick
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageDraw
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # model_cards beside this script
from model_cards import with_when_not_to_use  # noqa: E402  (beside this script)

from healthfm_desktop.core.inference.registry import write_manifest  # noqa: E402
from healthfm_desktop.core.patients.cleaning import RULES  # noqa: E402
from healthfm_desktop.core.patients.features import (  # noqa: E402
    FEATURE_NAMES,
    FEATURE_VERSION,
    HORIZON_MINUTES,
    N_FEATURES,
    STATS,
    TRAJECTORY_HOURS,
    cohort_features,
)
from healthfm_desktop.core.patients.importing import read_long_csv  # noqa: E402

NAME = "icu_mortality"
VERSION = "1.0.0"
SEED = 2012
CLIP = 5.0
LR_C = 0.05
GB_PARAMS = dict(n_estimators=400, learning_rate=0.04, max_depth=3, subsample=0.8, min_samples_leaf=20, max_features=0.3)
QUICK_GB_PARAMS = dict(n_estimators=20, learning_rate=0.1, max_depth=2, subsample=0.8, min_samples_leaf=3, max_features=0.5)
DEFAULT_DATA = REPO / "models" / "training" / "data" / "patients"
DEFAULT_OUT = REPO / "models"


# --------------------------------------------------------------------------- data
def load_dataset(folder: Path):
    series = next((folder / n for n in ("timeseries.csv.gz", "timeseries.csv") if (folder / n).is_file()), None)
    if series is None:
        raise SystemExit(f"no timeseries.csv(.gz) in {folder}")
    cohort = read_long_csv(series, folder / "patients.csv")
    if cohort.bad_rows:
        print(f"warning: {len(cohort.bad_rows)} bad rows in {series.name}", file=sys.stderr)
    with open(folder / "outcomes.csv", newline="", encoding="utf-8") as handle:
        outcomes = {row["patient_id"]: row for row in csv.DictReader(handle)}
    records = [r for r in cohort.records if r.patient_id in outcomes]
    y = np.array([int(outcomes[r.patient_id]["in_hospital_death"]) for r in records])
    split = np.array([outcomes[r.patient_id]["source_set"] for r in records])
    saps = np.array([float(outcomes[r.patient_id]["saps_i"] or "nan") for r in records])
    return records, y, split, saps


# --------------------------------------------------------------------------- models
class LinearPart:
    """Median imputation, standardisation, clipping to +-CLIP, L2 logistic regression."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> "LinearPart":
        with warnings.catch_warnings():  # a variable never measured in a tiny subset: median 0
            warnings.simplefilter("ignore", RuntimeWarning)
            self.median = np.nan_to_num(np.nanmedian(X, axis=0), nan=0.0)
        imputed = np.where(np.isnan(X), self.median, X)
        self.mean = imputed.mean(axis=0)
        self.scale = imputed.std(axis=0)
        self.scale[self.scale == 0] = 1.0
        self.model = LogisticRegression(C=LR_C, max_iter=5000).fit(self._standardise(imputed), y)
        return self

    def _standardise(self, imputed: np.ndarray) -> np.ndarray:
        return np.clip((imputed - self.mean) / self.scale, -CLIP, CLIP)

    def logit(self, X: np.ndarray) -> np.ndarray:
        return self.model.decision_function(self._standardise(np.where(np.isnan(X), self.median, X)))


class TreePart:
    def __init__(self, median: np.ndarray, params: dict):
        self.median = median
        self.model = GradientBoostingClassifier(random_state=SEED, **params)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "TreePart":
        self.model.fit(np.where(np.isnan(X), self.median, X), y)
        return self

    def logit(self, X: np.ndarray) -> np.ndarray:
        return self.model.decision_function(np.where(np.isnan(X), self.median, X))


def fit_parts(X, y, gb_params):
    linear = LinearPart().fit(X, y)
    trees = TreePart(linear.median, gb_params).fit(X, y)
    return linear, trees


# --------------------------------------------------------------------------- ONNX
def _float32_at_or_below(threshold: float) -> np.float32:
    """sklearn tests float32(x) <= float64 threshold; the ONNX graph compares in float32, so
    use the largest float32 not above the threshold to keep every decision identical."""
    t32 = np.float32(threshold)
    if float(t32) > threshold:
        t32 = np.nextafter(t32, np.float32(-np.inf))
    return t32


def tree_ensemble_node(gb: GradientBoostingClassifier, base_value: float, input_name: str, output_name: str):
    attrs = {k: [] for k in (
        "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
        "nodes_truenodeids", "nodes_falsenodeids", "target_ids", "target_nodeids", "target_treeids", "target_weights",
    )}
    for tree_id, estimator in enumerate(gb.estimators_[:, 0]):
        tree = estimator.tree_
        for node in range(tree.node_count):
            leaf = tree.children_left[node] == -1
            attrs["nodes_treeids"].append(tree_id)
            attrs["nodes_nodeids"].append(node)
            attrs["nodes_featureids"].append(0 if leaf else int(tree.feature[node]))
            attrs["nodes_modes"].append("LEAF" if leaf else "BRANCH_LEQ")
            attrs["nodes_values"].append(0.0 if leaf else float(_float32_at_or_below(tree.threshold[node])))
            attrs["nodes_truenodeids"].append(0 if leaf else int(tree.children_left[node]))
            attrs["nodes_falsenodeids"].append(0 if leaf else int(tree.children_right[node]))
            if leaf:
                attrs["target_ids"].append(0)
                attrs["target_nodeids"].append(node)
                attrs["target_treeids"].append(tree_id)
                attrs["target_weights"].append(float(gb.learning_rate * tree.value[node, 0, 0]))
    return helper.make_node(
        "TreeEnsembleRegressor", [input_name], [output_name], domain="ai.onnx.ml",
        n_targets=1, aggregate_function="SUM", post_transform="NONE", base_values=[float(base_value)], **attrs,
    )


def build_onnx(linear: LinearPart, trees: TreePart, stacker: LogisticRegression, horizon_stackers: list) -> onnx.ModelProto:
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    X0 = np.zeros((1, N_FEATURES))
    tree_base = float(trees.model.decision_function(X0)[0] - sum(
        trees.model.learning_rate * e.predict(X0)[0] for e in trees.model.estimators_[:, 0]
    ))
    init = [
        numpy_helper.from_array(f32(linear.median), "median"),
        numpy_helper.from_array(f32(linear.mean), "mean"),
        numpy_helper.from_array(f32(linear.scale), "scale"),
        numpy_helper.from_array(f32(-CLIP), "clip_low"),
        numpy_helper.from_array(f32(CLIP), "clip_high"),
        numpy_helper.from_array(f32(linear.model.coef_.reshape(-1, 1)), "linear_weight"),
        numpy_helper.from_array(f32(linear.model.intercept_), "linear_bias"),
        numpy_helper.from_array(f32(stacker.coef_.reshape(-1, 1)), "stack_weight"),
        numpy_helper.from_array(f32(stacker.intercept_), "stack_bias"),
        numpy_helper.from_array(f32(np.column_stack([h.coef_[0] for h in horizon_stackers])), "horizon_weight"),
        numpy_helper.from_array(f32([h.intercept_[0] for h in horizon_stackers]), "horizon_bias"),
    ]
    nodes = [
        helper.make_node("IsNaN", ["features"], ["missing"]),
        helper.make_node("Where", ["missing", "median", "features"], ["imputed"]),
        helper.make_node("Sub", ["imputed", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["standardised"]),
        helper.make_node("Clip", ["standardised", "clip_low", "clip_high"], ["clipped"]),
        helper.make_node("MatMul", ["clipped", "linear_weight"], ["linear_mm"]),
        helper.make_node("Add", ["linear_mm", "linear_bias"], ["linear_logit"]),
        tree_ensemble_node(trees.model, tree_base, "imputed", "tree_logit"),
        helper.make_node("Concat", ["linear_logit", "tree_logit"], ["components"], axis=1),
        helper.make_node("MatMul", ["components", "stack_weight"], ["stack_mm"]),
        helper.make_node("Add", ["stack_mm", "stack_bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["risk"]),
        helper.make_node("MatMul", ["components", "horizon_weight"], ["horizon_mm"]),
        helper.make_node("Add", ["horizon_mm", "horizon_bias"], ["horizon_logit"]),
        helper.make_node("Sigmoid", ["horizon_logit"], ["risk_by_horizon"]),
    ]
    graph = helper.make_graph(
        nodes, NAME, [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", N_FEATURES])],
        [
            helper.make_tensor_value_info("risk", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info("components", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("risk_by_horizon", TensorProto.FLOAT, ["N", len(TRAJECTORY_HOURS)]),
        ],
        initializer=init,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
        producer_name="healthfm train_icu_mortality.py",
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------- metrics
def event1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    best, best_t = -1.0, 0.5
    for t in np.unique(np.round(p, 4)):
        predicted = p >= t
        tp = np.sum(predicted & (y == 1))
        if predicted.sum() == 0:
            continue
        score = min(tp / max(1, y.sum()), tp / predicted.sum())
        if score > best:
            best, best_t = score, float(t)
    return best_t


def event1(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float, float]:
    predicted = p >= threshold
    tp = float(np.sum(predicted & (y == 1)))
    se = tp / max(1.0, float(y.sum()))
    ppv = tp / max(1.0, float(predicted.sum()))
    return min(se, ppv), se, ppv


def hosmer_lemeshow(y: np.ndarray, p: np.ndarray, groups: int = 10) -> float:
    """H statistic over deciles of predicted risk (the challenge's event 2)."""
    order = np.argsort(p, kind="stable")
    h = 0.0
    for chunk in np.array_split(order, groups):
        n, observed, expected = len(chunk), y[chunk].sum(), p[chunk].sum()
        if n and 0 < expected < n:
            h += (observed - expected) ** 2 / (expected * (1 - expected / n))
    return float(h)


def bootstrap_ci(y, p, metric, n_boot: int, seed: int = SEED) -> list[float]:
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if 0 < y[idx].sum() < len(idx):
            values.append(metric(y[idx], p[idx]))
    return [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])] if values else [float("nan")] * 2


def reliability_png(y: np.ndarray, p: np.ndarray, path: Path, bins: int = 10) -> list[dict]:
    """A small reliability diagram (observed vs predicted risk per decile) drawn with Pillow."""
    size, margin = 320, 40
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    span = size - 2 * margin

    def xy(px: float, py: float) -> tuple[float, float]:
        return margin + px * span, size - margin - py * span

    draw.rectangle([xy(0, 1), xy(1, 0)], outline="black")
    for tick in (0.25, 0.5, 0.75):
        draw.line([xy(tick, 0), xy(tick, 0.015)], fill="black")
        draw.line([xy(0, tick), xy(0.015, tick)], fill="black")
        draw.text((xy(tick, 0)[0] - 10, size - margin + 4), f"{tick:.2f}", fill="black")
        draw.text((4, xy(0, tick)[1] - 6), f"{tick:.2f}", fill="black")
    draw.line([xy(0, 0), xy(1, 1)], fill=(150, 150, 150))
    order = np.argsort(p, kind="stable")
    points = []
    for chunk in np.array_split(order, bins):
        if len(chunk):
            points.append({"predicted": float(p[chunk].mean()), "observed": float(y[chunk].mean()), "n": int(len(chunk))})
    draw.line([xy(pt["predicted"], pt["observed"]) for pt in points], fill=(200, 40, 40), width=2)
    for pt in points:
        cx, cy = xy(pt["predicted"], pt["observed"])
        draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=(200, 40, 40))
    draw.text((margin, 8), "Reliability on set c (deciles of risk)", fill="black")
    draw.text((size // 2 - 40, size - 16), "predicted risk", fill="black")
    draw.text((2, margin - 14), "observed", fill="black")
    image.save(path, optimize=True)
    return points


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--quick", action="store_true", help="tiny trees, 2 folds, 50 bootstraps (for the test)")
    args = parser.parse_args(argv)
    np.random.seed(SEED)
    started = time.perf_counter()
    gb_params = QUICK_GB_PARAMS if args.quick else GB_PARAMS
    folds = 2 if args.quick else 5
    n_boot = 50 if args.quick else 1000

    records, y, split, saps = load_dataset(args.data)
    X = cohort_features(records).astype(np.float64)
    train, test = split != "c", split == "c"
    print(f"{len(records)} stays, {X.shape[1]} features; train a+b {train.sum()}, test c {test.sum()} "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    X_train, y_train = X[train], y[train]

    # out-of-fold logits of both learners, on the 48 h window and on the truncated ones
    windows = {hours: (X if hours * 60 == HORIZON_MINUTES else cohort_features(records, hours * 60).astype(np.float64))[train]
               for hours in TRAJECTORY_HOURS}
    oof = {hours: np.zeros((train.sum(), 2)) for hours in TRAJECTORY_HOURS}
    for fold, (fit_idx, val_idx) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=SEED).split(X_train, y_train)):
        linear, trees = fit_parts(X_train[fit_idx], y_train[fit_idx], gb_params)
        for hours, X_window in windows.items():
            oof[hours][val_idx, 0] = linear.logit(X_window[val_idx])
            oof[hours][val_idx, 1] = trees.logit(X_window[val_idx])
        print(f"fold {fold + 1}/{folds} done ({time.perf_counter() - started:.0f} s)", flush=True)
    horizon_stackers = [LogisticRegression(C=1e6, max_iter=1000).fit(oof[hours], y_train) for hours in TRAJECTORY_HOURS]
    stacker = horizon_stackers[TRAJECTORY_HOURS.index(HORIZON_MINUTES // 60)]
    oof_risk = stacker.predict_proba(oof[HORIZON_MINUTES // 60])[:, 1]
    threshold = event1_threshold(y_train, oof_risk)

    linear, trees = fit_parts(X_train, y_train, gb_params)
    model = build_onnx(linear, trees, stacker, horizon_stackers)
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / f"{NAME}.onnx"
    onnx_path.write_bytes(model.SerializeToString())

    # check the exported graph against sklearn, then evaluate the exported graph itself
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    risk_all, logit_all, components, _ = session.run(None, {"features": X.astype(np.float32)})
    expected = np.column_stack([linear.logit(X), trees.logit(X)])
    gap = float(np.max(np.abs(components - expected)))
    if gap > 1e-3:
        raise SystemExit(f"ONNX graph differs from sklearn by {gap}")
    risk = risk_all[:, 0].astype(np.float64)
    y_test, p_test = y[test], risk[test]

    auroc = roc_auc_score(y_test, p_test)
    auprc = average_precision_score(y_test, p_test)
    e1, se, ppv = event1(y_test, p_test, threshold)
    h = hosmer_lemeshow(y_test, p_test)
    known_saps = test & ~np.isnan(saps)
    saps_auroc = roc_auc_score(y[known_saps], saps[known_saps]) if 0 < y[known_saps].sum() < known_saps.sum() else float("nan")
    lr_only = 1 / (1 + np.exp(-components[test, 0]))
    gb_only = 1 / (1 + np.exp(-components[test, 1]))
    trajectory = {}
    test_records = [records[i] for i in np.flatnonzero(test)]
    for column, hours in enumerate(TRAJECTORY_HOURS):
        Xh = cohort_features(test_records, hours * 60)
        ph = session.run(["risk_by_horizon"], {"features": Xh})[0][:, column].astype(np.float64)
        trajectory[f"{hours}h"] = {
            "auroc": round(float(roc_auc_score(y_test, ph)), 4),
            "mean_predicted_risk": round(float(ph.mean()), 4),
            "hosmer_lemeshow_h": round(hosmer_lemeshow(y_test, ph), 2),
        }
    metrics = {
        "split": "PhysioNet 2012 set c (shared part, held out from training)",
        "n_test": int(test.sum()),
        "deaths_test": int(y_test.sum()),
        "auroc": round(float(auroc), 4),
        "auroc_95ci": bootstrap_ci(y_test, p_test, roc_auc_score, n_boot),
        "auprc": round(float(auprc), 4),
        "auprc_95ci": bootstrap_ci(y_test, p_test, average_precision_score, n_boot),
        "event1_score_min_se_ppv": round(e1, 4),
        "event1_95ci": bootstrap_ci(y_test, p_test, lambda a, b: event1(a, b, threshold)[0], n_boot),
        "event1_sensitivity": round(se, 4),
        "event1_ppv": round(ppv, 4),
        "event1_threshold": round(threshold, 4),
        "hosmer_lemeshow_h": round(h, 2),
        "mean_predicted_risk": round(float(p_test.mean()), 4),
        "observed_rate": round(float(y_test.mean()), 4),
        "auroc_logistic_part_only": round(float(roc_auc_score(y_test, lr_only)), 4),
        "auroc_tree_part_only": round(float(roc_auc_score(y_test, gb_only)), 4),
        "trajectory_calibrated_per_window": trajectory,
        "onnx_vs_sklearn_max_abs_logit_gap": gap,
        "baselines": {
            "saps_i_auroc_computed_here": round(float(saps_auroc), 4),
            "logistic_regression_48h_summaries_readme": {"auroc": 0.866, "auprc": 0.548},
            "challenge_best_event1": 0.5353,
            "challenge_best_hosmer_lemeshow_h": 17.88,
            "gru_d_auroc_literature": 0.84,
            "mtand_auroc_literature": 0.86,
        },
    }
    points = reliability_png(y_test, p_test, args.out / f"{NAME}_reliability.png")
    metrics["reliability_deciles"] = [{k: round(v, 4) if isinstance(v, float) else v for k, v in pt.items()} for pt in points]
    elapsed = time.perf_counter() - started
    print(json.dumps({k: v for k, v in metrics.items() if k != "reliability_deciles"}, indent=1), flush=True)

    training_data = {
        "source": "PhysioNet/CinC Challenge 2012, v1.0.0 (https://physionet.org/content/challenge-2012/1.0.0/), "
                  "MIMIC-II ICU stays; Silva et al., Computing in Cardiology 2012;39:245-248",
        "license": "ODC-By 1.0 (attribution required)",
        "split": f"train: sets a+b ({int(train.sum())} stays, {folds}-fold out-of-fold logits for calibration); "
                 f"test: set c ({int(test.sum())} stays)" + (" [QUICK TEST RUN]" if args.quick else ""),
        "data_folder": str(args.data.relative_to(REPO)) if args.data.is_relative_to(REPO) else str(args.data),
    }
    manifest = {
        "name": NAME,
        "version": VERSION,
        "file": onnx_path.name,
        "task": "tabular-classification",
        "task_description": "binary risk: in-hospital death from the first 48 h of an ICU stay",
        "inputs": [{"name": "features", "shape": ["N", N_FEATURES], "dtype": "float32"}],
        "outputs": [
            {"name": "risk", "shape": ["N", 1], "dtype": "float32", "meaning": "calibrated probability of in-hospital death"},
            {"name": "logit", "shape": ["N", 1], "dtype": "float32"},
            {"name": "components", "shape": ["N", 2], "dtype": "float32", "meaning": "logistic and tree logits"},
            {"name": "risk_by_horizon", "shape": ["N", len(TRAJECTORY_HOURS)], "dtype": "float32",
             "meaning": "risk calibrated for features computed on the first 12/24/36/48 h (use the column of the window)"},
        ],
        "labels": ["survived", "died in hospital"],
        "preprocessing": {
            "features": "healthfm_desktop.core.patients.features.cohort_features",
            "feature_version": FEATURE_VERSION,
            "feature_names": list(FEATURE_NAMES),
            "statistics": list(STATS),
            "horizon_minutes": HORIZON_MINUTES,
            "trajectory_hours": list(TRAJECTORY_HOURS),
            "missing": "NaN; imputed inside the graph with training medians",
            "cleaning_rules": {name: text for name, text in RULES.values()},
            "event1_threshold": round(threshold, 4),
        },
        "training_data": training_data,
        "metrics": metrics,
        "license": "model: MIT (project); trained on ODC-By 1.0 data, attribution: PhysioNet/CinC Challenge 2012",
        "intended_use": "Research and teaching: show how an ICU stay's first 48 h relate to in-hospital mortality. "
                        "Not a medical device; not for decisions about individual patients.",
        "limitations": "Trained on one US hospital's ICU stays from 2001-2008 (MIMIC-II); adults; stays under 48 h "
                       "excluded. Scores at 12/24/36 h apply the 48 h learners to shorter windows, recalibrated per "
                       "window (lower discrimination, see metrics). Treatment limitations (DNR/CMO) are not known to the model.",
        "training_script": "models/training/train_icu_mortality.py",
        "training_seconds": round(elapsed, 1),
        "n_trees": int(trees.model.n_estimators_),
    }
    write_manifest(args.out / f"{NAME}.json", manifest)
    write_card(args.out / f"{NAME}.md", manifest)
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size // 1024} KiB) in {elapsed:.0f} s")
    return 0


def write_card(path: Path, manifest: dict) -> None:
    m = manifest["metrics"]
    b = m["baselines"]
    text = io.StringIO()
    w = text.write
    w(f"# Model card: {manifest['name']} {manifest['version']}\n\n")
    w(f"**Task**: {manifest['task']}.\n\n**Intended use**: {manifest['intended_use']}\n\n")
    w("## Model\n\nFeatures (`healthfm_desktop/core/patients/features.py`, shared with the app): for each of the 37 "
      "PhysioNet 2012 variables the count, first, last, min, max, mean and SD of its values in the first 48 h after "
      "impossible values are excluded (rules in `core/patients/cleaning.py`), the admission descriptors (age, sex, "
      "height, weight, ICU type), total urine output and the number of observations "
      f"({len(manifest['preprocessing']['feature_names'])} features).\n\n"
      "An L2 logistic regression (C = 0.05, standardised features clipped at +-5) and a gradient-boosted tree "
      f"ensemble ({manifest['n_trees']} trees of depth 3) are combined by a logistic regression fitted on their "
      "5-fold out-of-fold logits on the training sets: a cross-validated Platt scaling that also calibrates "
      "(one such calibration per window: 12, 24, 36 and 48 h). "
      "Missing values are imputed inside the ONNX graph with the training medians. Per-patient explanations in the "
      "app are occlusion contributions: the change in log-odds when all features of one variable are replaced by "
      "the training median.\n\n")
    w(f"## Data\n\n{manifest['training_data']['source']}. License: {manifest['training_data']['license']}. "
      f"Split: {manifest['training_data']['split']}.\n\n")
    w(f"## Results on set c ({m['n_test']} stays, {m['deaths_test']} deaths; 95 % bootstrap CIs)\n\n")
    w("| metric | this model | baseline |\n|---|---|---|\n")
    w(f"| AUROC | **{m['auroc']}** ({m['auroc_95ci'][0]}-{m['auroc_95ci'][1]}) | LR on 48 h summaries 0.866; "
      f"SAPS-I {b['saps_i_auroc_computed_here']} (computed here); GRU-D ~0.84, mTAND ~0.86 (literature) |\n")
    w(f"| AUPRC | **{m['auprc']}** ({m['auprc_95ci'][0]}-{m['auprc_95ci'][1]}) | LR on 48 h summaries 0.548 |\n")
    w(f"| Event 1, min(Se, PPV) | **{m['event1_score_min_se_ppv']}** ({m['event1_95ci'][0]}-{m['event1_95ci'][1]}); "
      f"Se {m['event1_sensitivity']}, PPV {m['event1_ppv']} at risk >= {m['event1_threshold']} (threshold chosen on "
      f"training out-of-fold risks) | challenge best 0.5353 |\n")
    w(f"| Hosmer-Lemeshow H (deciles) | **{m['hosmer_lemeshow_h']}** | challenge best 17.88 |\n")
    w(f"| mean predicted vs observed risk | {m['mean_predicted_risk']} vs {m['observed_rate']} | |\n")
    w(f"| AUROC, logistic part / tree part alone | {m['auroc_logistic_part_only']} / {m['auroc_tree_part_only']} | |\n")
    t = m["trajectory_calibrated_per_window"]
    w("\n**Risk over time** (the same learners on the first 12/24/36/48 h, calibrated per window on training "
      "out-of-fold logits):\n\n| window | AUROC | mean predicted risk (observed " + f"{m['observed_rate']}" + ") | H |\n|---|---|---|---|\n")
    for window, values in t.items():
        w(f"| {window} | {values['auroc']} | {values['mean_predicted_risk']} | {values['hosmer_lemeshow_h']} |\n")
    w("\n")
    w("Note: this is the shared 80 % of set c (3,200 stays); the challenge scored all 4,000 of set c.\n\n")
    w(f"![Reliability diagram on set c]({manifest['name']}_reliability.png)\n\n")
    w(f"## Limitations\n\n{manifest['limitations']}\n\n")
    w(f"## License and attribution\n\n{manifest['license']}. Data: Silva I, Moody G, Scott DJ, Celi LA, Mark RG. "
      "Predicting In-Hospital Mortality of ICU Patients: The PhysioNet/Computing in Cardiology Challenge 2012. "
      "Computing in Cardiology 2012;39:245-248. Goldberger AL, et al. PhysioBank, PhysioToolkit, and PhysioNet. "
      "Circulation 2000;101(23):e215-e220.\n\n")
    w(f"Reproduce: `nice -n 10 python {manifest['training_script']}` (seeded, CPU, "
      f"{manifest['training_seconds']:.0f} s here).\n")
    path.write_text(with_when_not_to_use(text.getvalue(), manifest["name"]), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
