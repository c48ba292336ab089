"""Head circumference from a mask: Ramanujan's perimeter, the ellipse fit, and agreement with
the sonographers' HC on real HC18 ground-truth masks; metric helpers against known values."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from PIL import Image

from healthfm_desktop.core.imaging.ai.evaluation import bootstrap_ci, dice, expected_calibration_error, roc_auc
from healthfm_desktop.core.imaging.ai.head_circumference import (
    fit_head_ellipse,
    head_circumference_mm,
    largest_region,
    ramanujan_circumference,
)
from tests.core.test_image_ai_helpers import IMAGE_TEST_DATA


def test_ramanujan_matches_circle_and_numeric_perimeter():
    assert ramanujan_circumference(10, 10) == pytest.approx(2 * math.pi * 10)
    a, b = 60.0, 35.0
    t = np.linspace(0, 2 * np.pi, 200001)
    numeric = np.sum(np.hypot(np.diff(a * np.cos(t)), np.diff(b * np.sin(t))))
    assert ramanujan_circumference(a, b) == pytest.approx(numeric, rel=1e-7)
    assert ramanujan_circumference(b, a) == ramanujan_circumference(a, b)
    assert ramanujan_circumference(0, 0) == 0


def test_fitted_ellipse_of_a_drawn_ellipse_gives_its_circumference():
    mask = np.zeros((300, 400), np.uint8)
    cv2.ellipse(mask, (200, 150), (120, 80), 30, 0, 360, 1, thickness=-1)
    mask[10:14, 10:14] = 1  # a speck elsewhere must not disturb the fit
    ellipse = fit_head_ellipse(mask)
    expected = ramanujan_circumference(120, 80) * 0.25
    assert head_circumference_mm(ellipse, (0.25, 0.25)) == pytest.approx(expected, rel=0.01)
    # anisotropic pixels: the same physical ellipse sampled with 2x taller rows
    squashed = np.zeros((150, 400), np.uint8)
    cv2.ellipse(squashed, (200, 75), (120, 40), 0, 0, 360, 1, thickness=-1)
    physical = ramanujan_circumference(120 * 0.25, 40 * 0.5)
    assert head_circumference_mm(fit_head_ellipse(squashed), (0.5, 0.25)) == pytest.approx(physical, rel=0.015)


def test_no_head_means_no_ellipse():
    assert fit_head_ellipse(np.zeros((144, 208), np.uint8)) is None
    tiny = np.zeros((144, 208), np.uint8)
    tiny[5:7, 5:7] = 1
    assert fit_head_ellipse(tiny) is None


def test_largest_region_fills_holes():
    ring = np.zeros((100, 100), np.uint8)
    cv2.circle(ring, (50, 50), 30, 1, thickness=5)
    filled = largest_region(ring)
    assert filled[50, 50] == 1 and filled.sum() > ring.sum()


def test_ground_truth_masks_give_the_sonographers_head_circumference():
    cases = json.loads((IMAGE_TEST_DATA / "cases.json").read_text())["hc18"]
    for case in cases:
        mask = np.asarray(Image.open(IMAGE_TEST_DATA / case["truth_mask"])) > 0
        spacing = case["pixel_spacing_mm"]
        hc = head_circumference_mm(fit_head_ellipse(mask), (spacing, spacing))
        assert hc == pytest.approx(case["hc_mm"], rel=0.025)


def test_metrics_against_hand_computed_values():
    labels = np.array([0, 0, 1, 1])
    assert roc_auc(labels, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert dice(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == pytest.approx(0.5)
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    assert expected_calibration_error(labels, probabilities, bins=10) == pytest.approx(0.25)
    point, low, high = bootstrap_ci(lambda i: float(np.mean(np.arange(100)[i])), 100, resamples=300)
    assert point == pytest.approx(49.5) and low < 49.5 < high
