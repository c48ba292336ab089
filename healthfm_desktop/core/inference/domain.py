"""The one applicability domain of every model (image scope, shipped and adapted heads): the mean
distance of an item to its k nearest training items, against a threshold set at a quantile of
held-out items' distances. Molecules use 1 - Tanimoto on the Morgan bits their embedding begins
with, so a salt, a metal or a lone water is far from everything a drug model learnt."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from healthfm_desktop.core.storage.atomic import atomic_write_bytes

METRICS = ("cosine", "euclidean", "tanimoto")
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@dataclass(frozen=True)
class DomainAssessment:
    in_domain: np.ndarray  # (n,) bool
    distance: np.ndarray  # (n,) mean distance to the k nearest training embeddings
    threshold: float
    nearest: np.ndarray  # (n, k) indices into the training embeddings, nearest first
    metric: str = "cosine"

    def reasons(self) -> list[str | None]:
        """None for an item inside the domain, else a sentence saying how far out it is."""
        if self.metric == "tanimoto":
            return [None if inside else
                    f"unlike the training molecules: Tanimoto {1 - d:.2f} to the nearest, below the "
                    f"{1 - self.threshold:.2f} that the held-out molecules reach"
                    for inside, d in zip(self.in_domain, self.distance)]
        return [None if inside else
                f"unlike the training data: distance {d:.3f} to its nearest training items, "
                f"above the {self.threshold:.3f} that covers the validation items"
                for inside, d in zip(self.in_domain, self.distance)]


class EmbeddingDomain:
    """kNN applicability domain over a model's training embeddings."""

    def __init__(self, reference: np.ndarray, threshold: float, k: int = 5, metric: str = "cosine",
                 quantile: float = 0.95, center: np.ndarray | None = None, scale: np.ndarray | None = None,
                 fingerprint_bits: int = 0):
        """``center``/``scale``: standardise every embedding first (features on unlike scales,
        such as fingerprints beside descriptors); ``reference`` is given unstandardised.
        "tanimoto": the first ``fingerprint_bits`` columns of an embedding are a fingerprint
        (a column > 0 is a set bit); ``reference`` may also be packed bits (uint8, np.packbits)."""
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}")
        if metric == "tanimoto" and fingerprint_bits <= 0:
            raise ValueError("the tanimoto metric needs the fingerprint's width (fingerprint_bits)")
        self.metric = metric
        self.fingerprint_bits = int(fingerprint_bits)
        self.center = None if center is None else np.asarray(center, dtype=np.float32)
        self.scale = None if scale is None else np.maximum(np.asarray(scale, dtype=np.float32), 1e-12)
        reference = np.asarray(reference)
        if reference.ndim != 2 or reference.shape[0] == 0:
            raise ValueError("the training embeddings must be a non-empty (n, d) array")
        if metric == "tanimoto":
            self.reference = reference if reference.dtype == np.uint8 and reference.shape[1] * 8 == self.fingerprint_bits \
                else self._packed(reference)
            self._counts = _POPCOUNT[self.reference].sum(axis=1, dtype=np.int64).astype(np.float64)
            self._bits: np.ndarray | None = None  # unpacked on first use
        else:
            reference = self._standardise(reference.astype(np.float32))
            self.reference = _unit(reference) if metric == "cosine" else reference
        self.k = int(min(k, self.reference.shape[0]))
        self.threshold = float(threshold)
        self.quantile = float(quantile)

    def _packed(self, embeddings: np.ndarray) -> np.ndarray:
        if embeddings.shape[1] < self.fingerprint_bits:
            raise ValueError(f"embeddings have {embeddings.shape[1]} dimensions; the fingerprint alone has {self.fingerprint_bits}")
        return np.packbits(embeddings[:, : self.fingerprint_bits] > 0, axis=1)

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        if self.center is None:
            return x
        return ((x - self.center) / self.scale).astype(np.float32)

    @classmethod
    def fit(cls, train: np.ndarray, validation: np.ndarray | None = None, quantile: float = 0.95,
            k: int = 5, metric: str = "cosine", standardise: bool = False, fingerprint_bits: int = 0) -> "EmbeddingDomain":
        """Threshold = ``quantile`` of the validation items' distances; without validation items,
        of the training items' leave-one-out distances (each item's own match excluded)."""
        train = np.asarray(train, dtype=np.float32)
        center = train.mean(axis=0) if standardise else None
        scale = train.std(axis=0) if standardise else None
        domain = cls(train, np.inf, k, metric, quantile, center, scale, fingerprint_bits)
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
        return self.judge(*self._distances(self._prepare(embeddings)))

    def judge(self, distance: np.ndarray, nearest: np.ndarray) -> DomainAssessment:
        """The verdict on distances measured elsewhere (a caller that already has them)."""
        distance = np.asarray(distance, dtype=np.float64)
        return DomainAssessment(distance <= self.threshold, distance, self.threshold, np.asarray(nearest), self.metric)

    def assess_fingerprints(self, packed: np.ndarray) -> DomainAssessment:
        """``assess`` for molecules given as packed fingerprint bits (tanimoto domains)."""
        if self.metric != "tanimoto":
            raise ValueError("only a tanimoto domain assesses fingerprints")
        packed = np.atleast_2d(np.asarray(packed, dtype=np.uint8))
        return self.judge(*self._distances(packed))

    def _prepare(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if self.metric == "tanimoto":
            return self._packed(x)
        if x.shape[1] != self.reference.shape[1]:
            raise ValueError(f"embeddings have {x.shape[1]} dimensions; the domain was fitted on "
                             f"{self.reference.shape[1]}")
        x = self._standardise(x)
        return _unit(x) if self.metric == "cosine" else x

    def _distances(self, x: np.ndarray, skip_self: bool = False, block: int = 1024):
        k = self.k + (1 if skip_self else 0)
        means, nearest = [], []
        ref_sq = (self.reference.astype(np.float64) ** 2).sum(axis=1) if self.metric == "euclidean" else None
        for start in range(0, x.shape[0], block):
            part = x[start:start + block]
            if self.metric == "tanimoto":
                dist = 1.0 - self._tanimoto(part)
            elif self.metric == "cosine":
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

    def similarities(self, packed: np.ndarray) -> np.ndarray:
        """(n, n_reference) Tanimoto of packed fingerprints to the training molecules."""
        if self.metric != "tanimoto":
            raise ValueError("only a tanimoto domain has similarities")
        return self._tanimoto(np.atleast_2d(np.asarray(packed, dtype=np.uint8)))

    def _tanimoto(self, packed: np.ndarray) -> np.ndarray:
        """(n, n_reference) Tanimoto of packed queries: the common bits as a product of 0/1
        matrices (counts up to 2048 are exact in float32)."""
        if self._bits is None:
            self._bits = np.unpackbits(self.reference, axis=1).astype(np.float32)
        bits = np.unpackbits(packed, axis=1).astype(np.float32)
        common = (bits @ self._bits.T).astype(np.float64)
        union = _POPCOUNT[packed].sum(axis=1, dtype=np.int64)[:, None] + self._counts[None, :] - common
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, common / union, 0.0)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        # the reference is stored as used (standardised, unit length for cosine): loading must
        # not standardise it again, hence raw=True below
        extra = {} if self.center is None else {"center": self.center, "scale": self.scale}
        if self.metric == "tanimoto":
            extra["fingerprint_bits"] = np.int64(self.fingerprint_bits)
        np.savez_compressed(buffer, reference=self.reference if self.metric == "tanimoto" else self.reference.astype(np.float32),
                            threshold=np.float64(self.threshold), k=np.int64(self.k),
                            metric=np.array(self.metric), quantile=np.float64(self.quantile), **extra)
        return buffer.getvalue()

    def save(self, path: Path | str) -> None:
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: Path | str | io.BytesIO) -> "EmbeddingDomain":
        with np.load(path, allow_pickle=False) as data:
            domain = cls(data["reference"], float(data["threshold"]), int(data["k"]), str(data["metric"]),
                         float(data["quantile"]), fingerprint_bits=int(data["fingerprint_bits"]) if "fingerprint_bits" in data else 0)
            if "center" in data:
                domain.center, domain.scale = data["center"], data["scale"]
            return domain


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
