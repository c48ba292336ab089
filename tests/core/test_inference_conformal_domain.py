"""Split-conformal sets/intervals reach their coverage on held-out real data; the embedding
domain keeps held-out items of the training kind in and another modality out."""

from __future__ import annotations

import csv
import gzip
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from healthfm_desktop.core.inference.conformal import (
    ConformalClassifier,
    ConformalRegressor,
    conformal_from_dict,
    conformal_quantile,
)
from healthfm_desktop.core.inference.domain import EmbeddingDomain

DATA = Path(__file__).resolve().parents[2] / "models" / "training" / "data"


@pytest.fixture(scope="module")
def pneumonia():
    with np.load(DATA / "images" / "pneumoniamnist_28.npz") as data:
        return {k: data[k] for k in ("train_images", "train_labels", "val_images", "val_labels",
                                     "test_images", "test_labels")}


def _pixels(images):
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def test_classification_sets_cover_held_out_pneumonia_images(pneumonia):
    model = LogisticRegression(C=0.01, max_iter=300).fit(
        _pixels(pneumonia["train_images"]), pneumonia["train_labels"].ravel())
    # val and test differ in class mix; pooled and split at random they are exchangeable,
    # which is the condition split conformal needs
    x = np.concatenate([_pixels(pneumonia["val_images"]), _pixels(pneumonia["test_images"])])
    y = np.concatenate([pneumonia["val_labels"].ravel(), pneumonia["test_labels"].ravel()]).astype(int)
    p = model.predict_proba(x)
    rng = np.random.default_rng(0)
    coverages, sizes = [], []
    for _ in range(20):
        order = rng.permutation(len(y))
        cal, held = order[: len(y) // 2], order[len(y) // 2:]
        conformal = ConformalClassifier.calibrate(p[cal], y[cal], coverage=0.9)
        inside = conformal.membership(p[held])
        coverages.append(inside[np.arange(len(held)), y[held]].mean())
        sizes.append(inside.sum(axis=1).mean())
    assert 0.88 <= float(np.mean(coverages)) <= 0.95
    assert 1.0 <= float(np.mean(sizes)) < 2.0  # informative: not every label every time
    sets = conformal.prediction_sets(p[held[:5]], ["normal", "pneumonia"])
    assert all(s and s[0] == ["normal", "pneumonia"][int(np.argmax(p[i]))] for s, i in zip(sets, held[:5]))


def test_regression_intervals_cover_held_out_esol_measurements():
    with gzip.open(DATA / "molecules" / "esol.csv.gz", "rt", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    predicted = np.array([float(r["esol_predicted_logS"]) for r in rows])  # Delaney's ESOL equation
    measured = np.array([float(r["logS"]) for r in rows])
    rng = np.random.default_rng(1)
    coverages = []
    for _ in range(20):
        order = rng.permutation(len(rows))
        cal, held = order[: len(rows) // 2], order[len(rows) // 2:]
        conformal = ConformalRegressor.calibrate(predicted[cal], measured[cal], coverage=0.9)
        low, high = conformal.intervals(predicted[held]).T
        coverages.append(np.mean((measured[held] >= low) & (measured[held] <= high)))
    assert 0.88 <= float(np.mean(coverages)) <= 0.95
    assert 0.5 < conformal.half_width < 3.0  # log units: ESOL's RMSE is ~1


def test_conformal_quantile_finite_sample_rank_and_round_trip():
    scores = np.arange(1, 11, dtype=float)  # 10 items
    assert conformal_quantile(scores, 0.9) == 10.0  # rank ceil(11 * 0.9) = 10
    assert conformal_quantile(scores[:8], 0.9) == math.inf  # rank ceil(8.1) = 9 > 8 items
    assert conformal_quantile(scores, 0.8) == 9.0  # ceil(8.8) = 9
    assert conformal_quantile(np.arange(1, 20, dtype=float), 0.9) == 18.0  # ceil(18) = 18
    small = ConformalClassifier.calibrate(np.array([[0.9, 0.1]]), np.array([0]), coverage=0.9)
    assert small.threshold == math.inf  # one item cannot promise 90 %: every label is in the set
    assert small.prediction_sets(np.array([[0.99, 0.01]]), ["a", "b"]) == [["a", "b"]]
    again = conformal_from_dict(small.to_dict())
    assert again == small
    reg = ConformalRegressor.calibrate(np.zeros(30), np.linspace(-1, 1, 30), coverage=0.9, scales=np.full(30, 2.0))
    assert conformal_from_dict(reg.to_dict()) == reg
    np.testing.assert_allclose(reg.intervals(np.zeros(1), scales=np.array([2.0])), [[-reg.half_width * 2, reg.half_width * 2]])
    with pytest.raises(ValueError):
        reg.intervals(np.zeros(1))


def test_conformal_quantile_equals_rank_statistic_for_random_scores():
    rng = np.random.default_rng(3)
    for n in (19, 50, 333):
        scores = rng.normal(size=n)
        rank = math.ceil((n + 1) * 0.9)
        assert conformal_quantile(scores, 0.9) == np.sort(scores)[rank - 1]


def _hc18_as_28px(count):
    with np.load(DATA / "images" / "hc18_seg_144x208.npz") as data:
        images = data["test_images"][:count]
    # a centred 140x140 square, block-averaged 5x5 to 28x28 like the chest X-rays
    crop = images[:, 2:142, 34:174]
    return crop.reshape(count, 28, 5, 28, 5).mean(axis=(2, 4))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_domain_keeps_chest_xrays_in_and_ultrasound_out(pneumonia, metric):
    train = _pixels(pneumonia["train_images"])
    domain = EmbeddingDomain.fit(train, _pixels(pneumonia["val_images"]), quantile=0.95, k=5, metric=metric)
    held = domain.in_domain(_pixels(pneumonia["test_images"]))
    assert 0.88 <= held.mean() <= 1.0
    ultrasound = _hc18_as_28px(60).reshape(60, -1).astype(np.float32) / 255.0
    result = domain.assess(ultrasound)
    assert result.in_domain.mean() < 0.1
    reasons = result.reasons()
    assert all((r is None) == bool(inside) for r, inside in zip(reasons, result.in_domain))
    assert result.nearest.shape == (60, 5)


def test_domain_leave_one_out_and_save_load(tmp_path, pneumonia):
    train = _pixels(pneumonia["train_images"][:400])
    domain = EmbeddingDomain.fit(train, k=3)
    # without validation items the threshold comes from leave-one-out distances: not zero
    assert domain.threshold > 0
    nearest = domain.assess(train[:10]).nearest
    assert (nearest[:, 0] == np.arange(10)).all()  # an item's nearest reference is itself
    path = tmp_path / "domain.npz"
    domain.save(path)
    again = EmbeddingDomain.load(path)
    assert again.threshold == domain.threshold and again.k == domain.k and again.metric == "cosine"
    np.testing.assert_array_equal(again.in_domain(train[:50]), domain.in_domain(train[:50]))
    with pytest.raises(ValueError, match="dimensions"):
        domain.in_domain(np.zeros((1, 5)))


def test_tanimoto_domain_equals_rdkit_similarity_and_round_trips(tmp_path):
    from rdkit import DataStructs

    from healthfm_desktop.core.chemistry.featurize import MORGAN_SIZE
    from healthfm_desktop.core.chemistry.fingerprints import morgan_fingerprint
    from healthfm_desktop.core.chemistry.reading import parse_smiles
    from healthfm_desktop.core.foundation.encoders import load_encoder

    path = Path(__file__).resolve().parents[2] / "models" / "training" / "data" / "molecules" / "esol.csv.gz"
    with gzip.open(path, "rt", newline="") as handle:
        smiles = [row["smiles"] for row in csv.DictReader(handle)][:120]
    mols = [m for m in (parse_smiles(s)[0] for s in smiles) if m is not None]
    train, held_out = mols[:100], mols[100:]
    encoder = load_encoder("molecule")
    domain = EmbeddingDomain.fit(encoder.embed(train), k=1, metric="tanimoto", fingerprint_bits=MORGAN_SIZE)
    assessment = domain.assess(encoder.embed(held_out))
    fps = [morgan_fingerprint(m) for m in train]
    for mol, distance, (nearest,) in zip(held_out, assessment.distance, assessment.nearest):
        rdkit = DataStructs.BulkTanimotoSimilarity(morgan_fingerprint(mol), fps)
        assert 1 - distance == pytest.approx(max(rdkit), abs=1e-12) and rdkit[nearest] == pytest.approx(max(rdkit), abs=1e-12)
    # leave-one-out: 95 % of the training molecules have a neighbour within the threshold
    loo = domain._distances(domain.reference, skip_self=True)[0]
    assert np.mean(loo <= domain.threshold) >= 0.95
    domain.save(tmp_path / "d.npz")
    again = EmbeddingDomain.load(tmp_path / "d.npz")
    assert again.metric == "tanimoto" and again.threshold == domain.threshold
    np.testing.assert_array_equal(again.assess(encoder.embed(held_out)).distance, assessment.distance)
    far = domain.assess(encoder.embed([parse_smiles("[Fe]")[0]]))
    assert not far.in_domain[0] and far.reasons()[0].startswith("unlike the training molecules: Tanimoto 0.00")
