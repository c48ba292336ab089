"""Metrics for the image models, in numpy, shared by the training scripts (test-split figures
in the model cards) and the tests: ROC AUC, accuracy, expected calibration error, Dice, and
percentile-bootstrap 95% confidence intervals."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties averaged."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.asarray(labels) == np.asarray(predicted)))


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> float:
    """ECE of the top-class confidence (Guo et al. 2017), equal-width bins. ``probabilities``
    is (N, C)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of two binary masks (1.0 when both are empty)."""
    predicted = np.asarray(predicted) > 0
    truth = np.asarray(truth) > 0
    total = predicted.sum() + truth.sum()
    if total == 0:
        return 1.0
    return float(2.0 * np.logical_and(predicted, truth).sum() / total)


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float], n: int, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(point estimate, low, high): ``statistic`` takes an index array into the n cases."""
    rng = np.random.default_rng(seed)
    point = statistic(np.arange(n))
    values = []
    for _ in range(resamples):
        value = statistic(rng.integers(0, n, n))
        if np.isfinite(value):
            values.append(value)
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(point), float(low), float(high)


def metric_with_ci(point_low_high: tuple[float, float, float], digits: int = 4) -> dict[str, float]:
    point, low, high = point_low_high
    return {"value": round(point, digits), "ci95": [round(low, digits), round(high, digits)]}
