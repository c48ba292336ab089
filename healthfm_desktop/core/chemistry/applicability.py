"""Applicability domain of a shipped molecular model: the app's one domain rule
(core/inference/domain.py, "tanimoto", k = 1: the maximum Tanimoto of a molecule's 2048-bit
Morgan r=2 bits to the model's training set, against a threshold chosen on validation data),
plus the nearest training neighbours with their measured values (shown in the UI).

The training fingerprints ship next to the model as ``<model>_ad.npz`` (packed bits, SMILES,
measured values), listed in the manifest with their own sha256."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from healthfm_desktop.core.errors import ModelError
from healthfm_desktop.core.inference.domain import EmbeddingDomain
from healthfm_desktop.core.inference.registry import sha256_of


@dataclass
class Neighbour:
    smiles: str
    similarity: float
    values: dict[str, float | None]


class ApplicabilityDomain:
    def __init__(self, packed: np.ndarray, smiles: np.ndarray, values: np.ndarray, labels: list[str], threshold: float):
        self.packed = packed
        self.smiles = smiles
        self.values = values  # (n, len(labels)), NaN where not measured
        self.labels = labels
        self.threshold = float(threshold)  # a similarity: in domain when the nearest is at least this
        self.domain = EmbeddingDomain(packed, 1.0 - self.threshold, k=1, metric="tanimoto",
                                      fingerprint_bits=packed.shape[1] * 8)

    @classmethod
    def load(cls, path: Path, sha256: str, threshold: float) -> "ApplicabilityDomain":
        if not path.is_file():
            raise ModelError(f"applicability-domain file {path.name} is missing")
        if sha256_of(path) != sha256:
            raise ModelError(f"applicability-domain file {path.name} does not match its manifest; reinstall the model")
        with np.load(path, allow_pickle=False) as data:
            return cls(data["packed"], data["smiles"], data["values"], [str(x) for x in data["labels"]], threshold)

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path, packed=self.packed, smiles=self.smiles.astype(str), values=self.values.astype(np.float32),
            labels=np.array(self.labels, dtype=str),
        )

    def assess_many(self, packed: np.ndarray, k: int = 3, block: int = 256) -> list[tuple[float, bool, list[Neighbour], str | None]]:
        """Per molecule (packed rows): the similarity of the nearest training molecule, in
        domain or not, the ``k`` nearest with their measured values, and the domain's reason
        when outside it; one matrix product per ``block`` molecules."""
        results = []
        for start in range(0, len(packed), block):
            sims = self.domain.similarities(packed[start:start + block])
            order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
            best = np.take_along_axis(sims, order[:, :1], axis=1)[:, 0] if sims.shape[1] else np.zeros(len(sims))
            verdict = self.domain.judge(1.0 - best, order[:, :1])
            for row, chosen, value, inside, reason in zip(sims, order, best, verdict.in_domain, verdict.reasons()):
                neighbours = [Neighbour(smiles=str(self.smiles[i]), similarity=float(row[i]),
                                        values={label: (None if np.isnan(v) else float(v)) for label, v in zip(self.labels, self.values[i])})
                              for i in chosen]
                results.append((float(value), bool(inside), neighbours, reason))
        return results


def choose_threshold(validation_max_similarity: np.ndarray, coverage: float = 0.9) -> float:
    """The similarity above which ``coverage`` of validation molecules lie, rounded down to 0.01:
    a query less similar to the training set than 90 % of held-out molecules is out of domain."""
    return float(np.floor(np.quantile(validation_max_similarity, 1.0 - coverage) * 100) / 100)
