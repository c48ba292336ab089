"""Split-conformal prediction: class sets and regression intervals at a target coverage,
calibrated on held-out data (Vovk et al.; Angelopoulos & Bates 2021, "A gentle introduction").

Our own ~60 lines rather than crepes/MAPIE: both wrap a scikit-learn estimator at fit time,
whereas here the model is an ONNX graph and the calibration must travel as a few numbers in
its manifest and be applied to probabilities the runtime already produced."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The ceil((n+1)*coverage)/n empirical quantile of the calibration scores: the finite-sample
    correction that makes the coverage guarantee hold; +inf when n is too small for it."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be between 0 and 1, not {coverage}")
    n = scores.size
    if n == 0:
        raise ValueError("conformal calibration needs at least one held-out item")
    rank = math.ceil((n + 1) * coverage)
    if rank > n:
        return math.inf
    return float(np.sort(scores)[rank - 1])


@dataclass(frozen=True)
class ConformalClassifier:
    """Sets {label: p(label) >= 1 - threshold} (the LAC score 1 - p(true label)).
    ``class_thresholds`` (Mondrian, per class) is used when every class had enough items."""

    threshold: float
    coverage: float
    n_calibration: int
    class_thresholds: tuple[float, ...] | None = None

    @classmethod
    def calibrate(
        cls, probabilities: np.ndarray, labels: np.ndarray, coverage: float = 0.9, per_class: bool = False
    ) -> "ConformalClassifier":
        probabilities = np.asarray(probabilities, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64).ravel()
        if probabilities.ndim != 2 or probabilities.shape[0] != labels.size:
            raise ValueError("probabilities must be (n, classes) with one label per row")
        scores = 1.0 - probabilities[np.arange(labels.size), labels]
        class_thresholds = None
        if per_class:
            per = [conformal_quantile(scores[labels == c], coverage) if np.any(labels == c) else math.inf
                   for c in range(probabilities.shape[1])]
            if all(math.isfinite(t) for t in per):
                class_thresholds = tuple(per)
        return cls(conformal_quantile(scores, coverage), coverage, int(labels.size), class_thresholds)

    def membership(self, probabilities: np.ndarray) -> np.ndarray:
        """(n, classes) bool: which labels are in each item's set. The most probable label is
        always in (an empty set would say nothing; coverage can only rise)."""
        probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
        thresholds = np.asarray(self.class_thresholds if self.class_thresholds else self.threshold)
        inside = (1.0 - probabilities) <= thresholds + 1e-12
        inside[np.arange(probabilities.shape[0]), probabilities.argmax(axis=1)] = True
        return inside

    def prediction_sets(self, probabilities: np.ndarray, labels: list[str]) -> list[list[str]]:
        """Each item's set as label names, most probable first."""
        probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
        inside = self.membership(probabilities)
        sets = []
        for row, mask in zip(probabilities, inside):
            order = np.argsort(-row, kind="stable")
            sets.append([labels[i] for i in order if mask[i]])
        return sets

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "classification", "score": "1 - p(label)", "threshold": _finite(self.threshold),
                "coverage": self.coverage, "n_calibration": self.n_calibration,
                "class_thresholds": None if self.class_thresholds is None else list(self.class_thresholds)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConformalClassifier":
        per = data.get("class_thresholds")
        return cls(_from_finite(data["threshold"]), float(data["coverage"]), int(data["n_calibration"]),
                   None if per is None else tuple(float(t) for t in per))


@dataclass(frozen=True)
class ConformalRegressor:
    """Intervals prediction ± half_width (absolute-residual score), or ± half_width * scale
    when calibrated with per-item scales (normalised conformal, e.g. scale = neighbour distance)."""

    half_width: float
    coverage: float
    n_calibration: int
    normalised: bool = False

    @classmethod
    def calibrate(cls, predictions: np.ndarray, targets: np.ndarray, coverage: float = 0.9,
                  scales: np.ndarray | None = None) -> "ConformalRegressor":
        predictions = np.asarray(predictions, dtype=np.float64).ravel()
        targets = np.asarray(targets, dtype=np.float64).ravel()
        if predictions.shape != targets.shape:
            raise ValueError("one target per prediction")
        scores = np.abs(targets - predictions)
        if scales is not None:
            scores = scores / _positive(scales)
        return cls(conformal_quantile(scores, coverage), coverage, int(scores.size), scales is not None)

    def intervals(self, predictions: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
        """(n, 2) array of [low, high]."""
        predictions = np.asarray(predictions, dtype=np.float64).ravel()
        width = np.full(predictions.shape, self.half_width)
        if self.normalised:
            if scales is None:
                raise ValueError("this calibration is normalised: pass the items' scales")
            width = width * _positive(scales)
        return np.stack([predictions - width, predictions + width], axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "regression", "score": "|y - prediction|" + (" / scale" if self.normalised else ""),
                "half_width": _finite(self.half_width), "coverage": self.coverage,
                "n_calibration": self.n_calibration, "normalised": self.normalised}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConformalRegressor":
        return cls(_from_finite(data["half_width"]), float(data["coverage"]), int(data["n_calibration"]),
                   bool(data.get("normalised", False)))


def conformal_from_dict(data: dict[str, Any]) -> ConformalClassifier | ConformalRegressor:
    kind = data.get("kind")
    if kind == "classification":
        return ConformalClassifier.from_dict(data)
    if kind == "regression":
        return ConformalRegressor.from_dict(data)
    raise ValueError(f"unknown conformal calibration kind {kind!r}")


def _positive(scales: np.ndarray) -> np.ndarray:
    return np.maximum(np.asarray(scales, dtype=np.float64).ravel(), 1e-12)


def _finite(value: float) -> float | None:
    # JSON has no infinity: None stands for "too few calibration items: the set is every label"
    return value if math.isfinite(value) else None


def _from_finite(value: float | None) -> float:
    return math.inf if value is None else float(value)
