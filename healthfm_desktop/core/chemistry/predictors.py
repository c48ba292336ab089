"""The shipped molecular models (ESOL solubility, Tox21): featurise once, run each ONNX model
through the registry, and add each model's applicability domain (max Tanimoto to its training
set against the threshold in its manifest) with the nearest training neighbours, and its
split-conformal interval (regression) or set (classification) at the manifest's coverage."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from rdkit import Chem

from healthfm_desktop.core.chemistry.applicability import ApplicabilityDomain, Neighbour
from healthfm_desktop.core.chemistry.featurize import featurize_mols
from healthfm_desktop.core.chemistry.fingerprints import packed_morgan
from healthfm_desktop.core.errors import ModelError
from healthfm_desktop.core.inference.conformal import ConformalClassifier, ConformalRegressor, conformal_from_dict
from healthfm_desktop.core.inference.registry import load_registry

MOLECULE_MODELS = ("esol_solubility", "tox21_multitask")


@dataclass
class Prediction:
    values: dict[str, float] = field(default_factory=dict)  # key -> value
    in_domain: dict[str, bool] = field(default_factory=dict)  # key -> flag
    similarity: dict[str, float] = field(default_factory=dict)  # model -> max Tanimoto
    neighbours: dict[str, list[Neighbour]] = field(default_factory=dict)  # model -> nearest
    intervals: dict[str, list[float]] = field(default_factory=dict)  # key -> [low, high] (regression)
    prediction_sets: dict[str, list[str]] = field(default_factory=dict)  # key -> labels (classification)
    reasons: dict[str, str | None] = field(default_factory=dict)  # key -> why it is outside the domain (None: inside)


class MoleculeModel:
    def __init__(self, name: str):
        registry = load_registry()
        self.session, self.manifest, _ = registry.session(name)
        self.name = name
        self.keys = list(self.manifest.labels)
        ad = self.manifest.extra.get("applicability_domain")
        if not ad:
            raise ModelError(f"model {name!r} has no applicability domain in its manifest")
        self.domain = ApplicabilityDomain.load(self.manifest.model_path.parent / ad["file"], ad["sha256"], ad["threshold"])
        self.input_name = self.manifest.inputs[0]["name"]
        self.conformal, self.set_labels = _conformal_of(self.manifest.extra.get("conformal"), self.keys)

    def run(self, features: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: features.astype(np.float32)})[0]
        return np.asarray(out, dtype=np.float64).reshape(len(features), -1)


def _conformal_of(entry, keys) -> tuple[dict[str, ConformalClassifier | ConformalRegressor], list[str]]:
    """The manifest's calibration per output key: one for a single-output model, or one per key
    (``kind: per-label``, binary sets over ``labels``)."""
    if not entry:
        return {}, []
    if entry.get("kind") == "per-label":
        return {key: conformal_from_dict(entry["by_key"][key]) for key in keys if key in entry["by_key"]}, list(entry["labels"])
    return {keys[0]: conformal_from_dict(entry)}, []


@lru_cache(maxsize=1)
def shipped_models() -> tuple[MoleculeModel, ...]:
    """Every molecular model in the registry (raises ModelError for a missing/tampered one)."""
    registry = load_registry()
    names = [n for n in MOLECULE_MODELS if n in registry.manifests or n in registry.problems]
    if not names:
        raise ModelError("no molecular model is installed (esol_solubility, tox21_multitask)")
    return tuple(MoleculeModel(n) for n in names)


def predict_mols(mols: list[Chem.Mol], neighbours: int = 0) -> list[Prediction]:
    """Predictions for parsed molecules, every shipped model, in one batch."""
    if not mols:
        return []
    models = shipped_models()
    features = featurize_mols(mols)
    packed = np.stack([packed_morgan(m) for m in mols])
    results = [Prediction() for _ in mols]
    for model in models:
        outputs = model.run(features)
        for i, (result, (sim, inside, near, reason)) in enumerate(zip(results, model.domain.assess_many(packed, k=neighbours or 1))):
            result.similarity[model.name] = sim
            if neighbours:
                result.neighbours[model.name] = near
            for j, key in enumerate(model.keys):
                result.values[key] = float(outputs[i, j])
                result.in_domain[key] = bool(inside)
                result.reasons[key] = reason
        for j, key in enumerate(model.keys):
            calibration = model.conformal.get(key)
            if isinstance(calibration, ConformalRegressor):
                for result, (low, high) in zip(results, calibration.intervals(outputs[:, j])):
                    result.intervals[key] = [round(float(low), 4), round(float(high), 4)]
            elif isinstance(calibration, ConformalClassifier):
                two = np.stack([1.0 - outputs[:, j], outputs[:, j]], axis=1)
                for result, labels in zip(results, calibration.prediction_sets(two, model.set_labels)):
                    result.prediction_sets[key] = labels
    return results
