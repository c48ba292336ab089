"""Applicability domain by embedding distance: the mean distance of an item to its k nearest
training embeddings, against a threshold set at a quantile of held-out items' distances."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from healthfm_desktop.core.storage.atomic import atomic_write_bytes

METRICS = ("cosine", "euclidean")


@dataclass(frozen=True)
class DomainAssessment:
    in_domain: np.ndarray  # (n,) bool
    distance: np.ndarray  # (n,) mean distance to the k nearest training embeddings
    threshold: float
    nearest: np.ndarray  # (n, k) indices into the training embeddings, nearest first

    def reasons(self) -> list[str | None]:
        """None for an item inside the domain, else a sentence saying how far out it is."""
        return [None if inside else
                f"unlike the training data: distance {d:.3f} to its nearest training items, "
                f"above the {self.threshold:.3f} that covers the validation items"
                for inside, d in zip(self.in_domain, self.distance)]


class EmbeddingDomain:
    """kNN applicability domain over a model's training embeddings."""

    def __init__(self, reference: np.ndarray, threshold: float, k: int = 5, metric: str = "cosine",
                 quantile: float = 0.95, center: np.ndarray | None = None, scale: np.ndarray | None = None):
        """``center``/``scale``: standardise every embedding first (features on unlike scales,
        such as fingerprints beside descriptors); ``reference`` is given unstandardised."""
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}")
        self.center = None if center is None else np.asarray(center, dtype=np.float32)
        self.scale = None if scale is None else np.maximum(np.asarray(scale, dtype=np.float32), 1e-12)
        reference = self._standardise(np.asarray(reference, dtype=np.float32))
        if reference.ndim != 2 or reference.shape[0] == 0:
            raise ValueError("the training embeddings must be a non-empty (n, d) array")
        self.metric = metric
        self.reference = _unit(reference) if metric == "cosine" else reference
        self.k = int(min(k, self.reference.shape[0]))
        self.threshold = float(threshold)
        self.quantile = float(quantile)

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        if self.center is None:
            return x
        return ((x - self.center) / self.scale).astype(np.float32)

    @classmethod
    def fit(cls, train: np.ndarray, validation: np.ndarray | None = None, quantile: float = 0.95,
            k: int = 5, metric: str = "cosine", standardise: bool = False) -> "EmbeddingDomain":
        """Threshold = ``quantile`` of the validation items' distances; without validation items,
        of the training items' leave-one-out distances (each item's own match excluded)."""
        train = np.asarray(train, dtype=np.float32)
        center = train.mean(axis=0) if standardise else None
        scale = train.std(axis=0) if standardise else None
        domain = cls(train, np.inf, k, metric, quantile, center, scale)
        if validation is not None and len(validation):
            distances = domain.distances(validation)
        else:
            if domain.reference.shape[0] < 2:
                raise ValueError("a domain needs validation items or at least two training items")
            domain.k = min(domain.k, domain.reference.shape[0] - 1)
            distances = domain._distances(domain.reference, skip_self=True)[0]
        domain.threshold = float(np.quantile(distances, quantile))
        return domain

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        return self._distances(self._prepare(embeddings))[0]

    def in_domain(self, embeddings: np.ndarray) -> np.ndarray:
        return self.distances(embeddings) <= self.threshold

    def assess(self, embeddings: np.ndarray) -> DomainAssessment:
        distance, nearest = self._distances(self._prepare(embeddings))
        return DomainAssessment(distance <= self.threshold, distance, self.threshold, nearest)

    def _prepare(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if x.shape[1] != self.reference.shape[1]:
            raise ValueError(f"embeddings have {x.shape[1]} dimensions; the domain was fitted on "
                             f"{self.reference.shape[1]}")
        x = self._standardise(x)
        return _unit(x) if self.metric == "cosine" else x

    def _distances(self, x: np.ndarray, skip_self: bool = False, block: int = 1024):
        k = self.k + (1 if skip_self else 0)
        means, nearest = [], []
        ref_sq = (self.reference.astype(np.float64) ** 2).sum(axis=1)
        for start in range(0, x.shape[0], block):
            part = x[start:start + block]
            if self.metric == "cosine":
                dist = 1.0 - part.astype(np.float64) @ self.reference.T.astype(np.float64)
            else:
                sq = (part.astype(np.float64) ** 2).sum(axis=1)[:, None] + ref_sq[None, :]
                dist = np.sqrt(np.maximum(sq - 2.0 * part.astype(np.float64) @ self.reference.T, 0.0))
            idx = np.argpartition(dist, k - 1, axis=1)[:, :k]
            part_d = np.take_along_axis(dist, idx, axis=1)
            order = np.argsort(part_d, axis=1, kind="stable")
            idx, part_d = np.take_along_axis(idx, order, axis=1), np.take_along_axis(part_d, order, axis=1)
            if skip_self:
                idx, part_d = idx[:, 1:], part_d[:, 1:]
            means.append(np.maximum(part_d, 0.0).mean(axis=1))
            nearest.append(idx)
        return np.concatenate(means), np.concatenate(nearest)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        # the reference is stored as used (standardised, unit length for cosine): loading must
        # not standardise it again, hence raw=True below
        extra = {} if self.center is None else {"center": self.center, "scale": self.scale}
        np.savez_compressed(buffer, reference=self.reference.astype(np.float32),
                            threshold=np.float64(self.threshold), k=np.int64(self.k),
                            metric=np.array(self.metric), quantile=np.float64(self.quantile), **extra)
        return buffer.getvalue()

    def save(self, path: Path | str) -> None:
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: Path | str | io.BytesIO) -> "EmbeddingDomain":
        with np.load(path, allow_pickle=False) as data:
            domain = cls(data["reference"], float(data["threshold"]), int(data["k"]), str(data["metric"]),
                         float(data["quantile"]))
            if "center" in data:
                domain.center, domain.scale = data["center"], data["scale"]
            return domain


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
