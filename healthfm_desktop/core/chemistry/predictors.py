"""The shipped molecular models (ESOL solubility, Tox21): featurise once, run each ONNX model
through the registry, and add each model's applicability domain (max Tanimoto to its training
set against the threshold in its manifest) with the nearest training neighbours."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from rdkit import Chem

from healthfm_desktop.core.chemistry.applicability import ApplicabilityDomain, Neighbour
from healthfm_desktop.core.chemistry.featurize import featurize_mols
from healthfm_desktop.core.chemistry.fingerprints import packed_morgan
from healthfm_desktop.core.errors import ModelError
from healthfm_desktop.core.inference.registry import load_registry

MOLECULE_MODELS = ("esol_solubility", "tox21_multitask")


@dataclass
class Prediction:
    values: dict[str, float] = field(default_factory=dict)  # key -> value
    in_domain: dict[str, bool] = field(default_factory=dict)  # key -> flag
    similarity: dict[str, float] = field(default_factory=dict)  # model -> max Tanimoto
    neighbours: dict[str, list[Neighbour]] = field(default_factory=dict)  # model -> nearest


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

    def run(self, features: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: features.astype(np.float32)})[0]
        return np.asarray(out, dtype=np.float64).reshape(len(features), -1)


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
    packed = [packed_morgan(m) for m in mols]
    results = [Prediction() for _ in mols]
    for model in models:
        outputs = model.run(features)
        for i, result in enumerate(results):
            sim, inside, near = model.domain.assess(packed[i], k=neighbours or 1)
            result.similarity[model.name] = sim
            if neighbours:
                result.neighbours[model.name] = near
            for j, key in enumerate(model.keys):
                result.values[key] = float(outputs[i, j])
                result.in_domain[key] = bool(inside)
    return results
