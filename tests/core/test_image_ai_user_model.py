"""The viewer's Analyse over a user's adapted image model (core): one image and a series give
the model's own answers, and a name that is not a user image model is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.foundation.adaptation import AdaptedModel, train_adapted_model
from healthfm_desktop.core.foundation.datasets import Items
from healthfm_desktop.core.imaging.ai.analysis import USER_MODEL, analyse, analyse_series, run_to_end
from healthfm_desktop.core.imaging.ai.preprocessing import SourceImage
from healthfm_desktop.core.inference.registry import load_registry

DATA = Path(__file__).resolve().parents[2] / "models" / "training" / "data" / "images"


@pytest.fixture
def pneumonia_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path / "home"))
    with np.load(DATA / "pneumoniamnist_28.npz") as d:
        labels = d["train_labels"].ravel()
        chosen = np.concatenate([np.flatnonzero(labels == 0)[:30], np.flatnonzero(labels == 1)[:30]])
        images, labels = d["train_images"][chosen], labels[chosen]
        test = d["test_images"][:5]
    items = Items("image")
    for i, (image, label) in enumerate(zip(images, labels)):
        items.add(str(i), image, "pneumonia" if label else "normal")
    train_adapted_model("image", items, "my_pneumonia")
    return AdaptedModel.load(load_registry().get("my_pneumonia")), test


def test_analyse_and_series_give_the_models_own_answers(pneumonia_model):
    model, test = pneumonia_model
    expected = model.predict(list(test))
    outcome = run_to_end(analyse(SourceImage(test[0]), USER_MODEL + "my_pneumonia", force=True))
    assert outcome.model == "my_pneumonia" and outcome.overlay_rgba is None
    assert outcome.details["label"] == expected[0]["label"]
    assert outcome.details["prediction_set"] == expected[0]["prediction_set"]
    assert outcome.in_scope == expected[0]["in_domain"]
    series = run_to_end(analyse_series(lambda i: SourceImage(test[i]), len(test), 2, USER_MODEL + "my_pneumonia",
                                       force=True))
    assert [r["label"] for r in series.per_image] == [e["label"] for e in expected]
    for label in {e["label"] for e in expected}:
        assert f"{label} on {sum(e['label'] == label for e in expected)}" in series.summary


def test_a_shipped_model_is_not_run_as_a_user_model(pneumonia_model):
    _, test = pneumonia_model
    with pytest.raises(UserFacingError, match="not one of your image models"):
        run_to_end(analyse(SourceImage(test[0]), USER_MODEL + "pneumonia_resnet"))
