"""Risk features and the shipped icu_mortality model: the training script and the app compute
identical features, the features are the statistics they claim to be, the model's scores,
trajectory and explanations behave, the model card reports the figures, and the training script
runs end to end on a tiny subset."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from healthfm_desktop.core.errors import ModelError
from healthfm_desktop.core.inference.registry import load_registry
from healthfm_desktop.core.patients.features import FEATURE_NAMES, N_FEATURES, cohort_features, record_features
from healthfm_desktop.core.patients.importing import read_long_csv
from healthfm_desktop.core.patients.reading import read_patient_file
from healthfm_desktop.core.patients.risk import (
    MIN_OBSERVATIONS,
    MIN_VARIABLES,
    TRAJECTORY_HOURS,
    RiskModel,
    check_inputs,
)

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "patients"
SCRIPT = REPO / "models" / "training" / "train_icu_mortality.py"


def _training_module():
    spec = importlib.util.spec_from_file_location("train_icu_mortality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cohort():
    return read_patient_file(DATA / "timeseries.csv.gz")


@pytest.fixture(scope="module")
def model():
    return RiskModel()


def test_training_script_and_app_compute_identical_features(cohort):
    training = _training_module()
    records, y, split, _ = training.load_dataset(DATA)
    from_training = cohort_features(records)
    app_records = [cohort.by_id(r.patient_id) for r in records]
    from_app = cohort_features(app_records)
    assert from_training.shape == (61, N_FEATURES) and from_training.dtype == np.float32
    np.testing.assert_array_equal(from_training, from_app)
    assert set(split) == {"a", "b", "c"} and y.sum() >= 18


def test_features_are_the_documented_statistics(tmp_path):
    path = tmp_path / "one.csv"
    path.write_text(
        "patient_id,time,variable,value\n"
        "1,0,Age,70\n1,0,ICUType,2\n1,10,HR,100\n1,20,HR,80\n1,30,HR,0\n1,3000,HR,120\n1,60,Urine,50\n1,120,Urine,30\n",
        encoding="utf-8",
    )
    stay = read_long_csv(path).by_id("1")
    features = dict(zip(FEATURE_NAMES, record_features(stay).tolist()))
    # HR 0 is excluded (rule 1) and the value at 50 h is past the 48 h window
    assert [features[f"HR:{s}"] for s in ("count", "first", "last", "min", "max", "mean")] == [2, 100, 80, 80, 100, 90]
    assert features["HR:std"] == pytest.approx(10.0)
    assert features["Age"] == 70 and features["ICUType=2"] == 1 and features["ICUType=3"] == 0
    assert features["Urine:total"] == 80 and features["all:count"] == 4
    assert features["Lactate:count"] == 0 and math.isnan(features["Lactate:mean"])
    early = dict(zip(FEATURE_NAMES, record_features(stay, 15).tolist()))
    assert early["HR:count"] == 1 and early["HR:last"] == 100


def test_scores_are_probabilities_and_rank_deaths_higher(cohort, model):
    outcomes = {line.split(",")[0]: line.strip().split(",")[-1] for line in (DATA / "outcomes.csv").read_text().splitlines()[1:]}
    risks = model.score(cohort.records)
    assert risks.shape == (61,) and np.all((risks > 0) & (risks < 1))
    died = np.array([outcomes[r.patient_id] == "1" for r in cohort.records])
    assert risks[died].mean() > 2 * risks[~died].mean()
    # scoring one stay at a time gives the same numbers as the batch
    assert model.score(cohort.records[:1])[0] == pytest.approx(risks[0], abs=1e-6)


def test_trajectory_and_explanations(cohort, model):
    stay = cohort.by_id("136183")
    assessment = model.assess(stay)
    assert [h for h, _ in assessment.trajectory] == list(TRAJECTORY_HOURS)
    assert assessment.risk == pytest.approx(model.score([stay])[0])
    assert assessment.risk == pytest.approx(assessment.trajectory[-1][1], abs=1e-6)
    # each point of the trajectory is the score of the stay as known at that hour
    for hours, risk in assessment.trajectory:
        assert risk == pytest.approx(model.score([stay.truncated(hours * 60)], hours)[0], abs=1e-6)
    contributions = assessment.contributions
    assert 3 <= len(contributions) <= 6
    magnitudes = [abs(c.points) for c in contributions]
    assert magnitudes == sorted(magnitudes, reverse=True)
    # an explanation is what the model does: removing that variable changes the risk by that many points
    top = contributions[0]
    features = record_features(stay)[None, :].copy()
    base = model._run(features, "risk")[0]
    masked = features.copy()
    masked[0, [i for i, name in enumerate(FEATURE_NAMES) if name.split(":")[0].split("=")[0] == top.source]] = np.nan
    assert (base - model._run(masked, "risk")[0]) * 100 == pytest.approx(top.points, abs=1e-3)
    assert top.summary


def test_a_stay_with_too_little_data_gets_no_number_and_says_why(cohort, model):
    empty = cohort.by_id("140501")
    assessment = model.assess(empty)
    assert assessment.risk is None and assessment.reason.startswith("not enough data to score")
    assert assessment.contributions == [] and assessment.trajectory == []
    assert "HR" in assessment.inputs.missing
    scored = dict(zip((r.patient_id for r in cohort.records), model.score_or_withhold(cohort.records)))
    assert scored["140501"] == (None, assessment.reason)
    full = [r for r in cohort.records if check_inputs(r).enough]
    assert full and all(0 < scored[r.patient_id][0] < 1 and scored[r.patient_id][1] is None for r in full)


def test_every_training_stay_below_the_minimum_is_withheld_and_the_rest_scored():
    # the rule, not the sample: a stay is scored exactly when it has the data the minimum asks for
    from healthfm_desktop.core.patients.reading import read_patient_file

    cohort = read_patient_file(REPO / "models" / "training" / "data" / "patients" / "timeseries.csv.gz")
    records = cohort.records[:1500]
    for record in records:
        check = check_inputs(record)
        kept = (record.time <= 2880) & (record.excluded == 0)
        sparse = kept.sum() < MIN_OBSERVATIONS or len(np.unique(record.variable[kept])) < MIN_VARIABLES
        assert check.enough is not sparse
    truncated = [r.truncated(60) for r in records[:200]]  # one hour of data: mostly too little
    assert sum(not check_inputs(r).enough for r in truncated) > 100


@pytest.mark.slow
def test_the_shipped_model_scores_set_c_as_its_manifest_says():
    # re-run the shipped model on the held-out set c shipped with the training data, then
    # compare with what the manifest and card claim (not the manifest's numbers against themselves)
    from sklearn.metrics import average_precision_score, roc_auc_score

    training = _training_module()
    records, y, split, _ = training.load_dataset(REPO / "models" / "training" / "data" / "patients")
    test = split == "c"
    risk = RiskModel().risk_of_features(cohort_features([r for r, t in zip(records, test) if t]))
    manifest = load_registry().get("icu_mortality")
    metrics = manifest.metrics
    assert roc_auc_score(y[test], risk) == pytest.approx(metrics["auroc"], abs=1e-3)
    assert average_precision_score(y[test], risk) == pytest.approx(metrics["auprc"], abs=1e-3)
    assert metrics["auroc"] >= 0.87 and metrics["auprc"] >= 0.55
    assert metrics["auroc_95ci"][0] < metrics["auroc"] < metrics["auroc_95ci"][1]
    assert abs(float(risk.mean()) - float(y[test].mean())) < 0.03, "calibrated on set c's event rate"
    assert manifest.preprocessing["feature_names"] == list(FEATURE_NAMES)
    card = (REPO / "models" / "icu_mortality.md").read_text(encoding="utf-8")
    assert "icu_mortality_reliability.png" in card and f"**{metrics['auroc']}**" in card
    assert (REPO / "models" / "icu_mortality_reliability.png").stat().st_size < 50_000


def test_a_model_built_for_other_features_is_refused(tmp_path, monkeypatch):
    for suffix in (".onnx", ".md"):
        (tmp_path / f"icu_mortality{suffix}").write_bytes((REPO / "models" / f"icu_mortality{suffix}").read_bytes())
    manifest = json.loads((REPO / "models" / "icu_mortality.json").read_text())
    manifest["preprocessing"]["feature_names"] = manifest["preprocessing"]["feature_names"][:-1]
    (tmp_path / "icu_mortality.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("HEALTHFM_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelError, match="feature layout"):
        RiskModel()


def test_training_script_runs_on_a_tiny_subset(tmp_path):
    training = _training_module()
    assert training.main(["--data", str(DATA), "--out", str(tmp_path), "--quick"]) == 0
    registry = load_registry(tmp_path)
    session, manifest, _ = registry.session("icu_mortality")
    assert manifest.metrics["n_test"] == 20 and "QUICK" in manifest.training_data["split"]
    risk, logit, components, by_window = session.run(None, {"features": np.full((2, N_FEATURES), np.nan, dtype=np.float32)})
    assert risk.shape == (2, 1) and np.all((risk > 0) & (risk < 1)) and by_window.shape == (2, 4)
    assert (tmp_path / "icu_mortality_reliability.png").is_file() and (tmp_path / "icu_mortality.md").is_file()
