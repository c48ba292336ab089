"""Measurements in mm against hand computations, ROI statistics in HU, JSON round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.imaging.measure import (
    Measurement,
    angle,
    describe_measurement,
    distance,
    measurements_from_json,
    measurements_to_json,
    roi_statistics,
)
from healthfm_desktop.core.imaging.scanning import scan_paths
from tests.core.dicom_manifest import DICOM


def test_distance_in_mm_with_anisotropic_pixel_spacing():
    series = scan_paths([DICOM / "dicomdir" / "98892001" / "CT2N" / "6924"]).series[0]
    frame = series.frames[0]
    assert frame.pixel_spacing == pytest.approx((0.545455, 0.596847))  # (rows, columns)
    assert frame.spacing_source == "PixelSpacing"
    # 3 columns right, 4 rows down: sqrt(1.790541^2 + 2.181820^2) = sqrt(7.966375) = 2.82248 mm
    values, text = describe_measurement("distance", [(2, 5), (5, 9)], None, frame.pixel_spacing, frame.spacing_source)
    assert values["length"] == pytest.approx(2.82248, abs=1e-4)
    assert values["unit"] == "mm" and text.startswith("2.8 mm")


def test_distance_says_when_imager_pixel_spacing_is_used():
    series = scan_paths([DICOM / "dicomdir" / "77654033" / "CR1" / "6154"]).series[0]
    frame = series.frames[0]
    assert frame.spacing_source == "ImagerPixelSpacing"
    values, text = describe_measurement("distance", [(0, 0), (10, 0)], None, frame.pixel_spacing, frame.spacing_source)
    assert values["length"] == pytest.approx(1.0) and values["spacing_source"] == "ImagerPixelSpacing"
    assert "ImagerPixelSpacing" in text and "magnification" in text


def test_without_spacing_lengths_are_in_pixels_and_say_so():
    length, unit = distance([(0, 0), (3, 4)], None)
    assert (length, unit) == (5.0, "px")
    _, text = describe_measurement("distance", [(0, 0), (3, 4)], None, None, None)
    assert "px" in text and "no pixel spacing" in text


def test_angle_at_the_middle_point():
    assert angle([(10, 0), (0, 0), (0, 10)]) == pytest.approx(90.0)
    assert angle([(10, 0), (0, 0), (10, 10)]) == pytest.approx(45.0)
    # with 2:1 pixels the same clicks make a different physical angle: atan(2) = 63.43 deg
    assert angle([(10, 0), (0, 0), (10, 10)], pixel_spacing=(2.0, 1.0)) == pytest.approx(math.degrees(math.atan(2.0)))
    with pytest.raises(UserFacingError):
        angle([(0, 0), (0, 0), (1, 1)])


def test_rectangle_roi_in_hu_against_numpy_slicing():
    series = scan_paths([DICOM / "single" / "CT_small.dcm"]).series[0]
    pixels = series.load_frame(0)
    spacing = series.frames[0].pixel_spacing
    # corners (30, 10) and (50, 20): pixel centres 30.5..49.5 x 10.5..19.5 = rows 10-19, cols 30-49
    stats = roi_statistics("rectangle", [(30, 10), (50, 20)], pixels, spacing)
    block = pixels[10:20, 30:50].astype(np.float64)
    assert stats["pixels"] == 200
    assert stats["mean"] == pytest.approx(block.mean())
    assert stats["sd"] == pytest.approx(block.std())
    assert (stats["min"], stats["max"]) == (block.min(), block.max())
    assert stats["area"] == pytest.approx(20 * 0.661468 * 10 * 0.661468)
    assert stats["area_unit"] == "mm²"
    values, text = describe_measurement("rectangle", [(30, 10), (50, 20)], pixels, spacing, "PixelSpacing", "HU")
    assert "HU" in text and values["unit"] == "HU"


def test_ellipse_roi_area_and_mask():
    pixels = np.arange(100 * 100, dtype=np.float32).reshape(100, 100)
    stats = roi_statistics("ellipse", [(20, 30), (60, 50)], pixels, (0.5, 0.25))
    # semi-axes 20 px x 10 px = 5 mm x 5 mm in physical space: pi * 5 * 5 mm²
    assert stats["area"] == pytest.approx(math.pi * 5 * 5)
    assert abs(stats["pixels"] - math.pi * 20 * 10) < 0.03 * math.pi * 20 * 10
    centre_value = pixels[40, 40]
    assert stats["min"] > pixels[30, 20] and stats["mean"] == pytest.approx(centre_value, rel=0.02)


def test_empty_roi_is_a_clear_error():
    with pytest.raises(UserFacingError, match="no pixel centre"):
        roi_statistics("rectangle", [(1.1, 1.1), (1.2, 1.2)], np.zeros((10, 10)), None)


def test_measurements_round_trip_through_json():
    series = scan_paths([DICOM / "single" / "CT_small.dcm"]).series[0]
    frame = series.frames[0]
    values, text = describe_measurement("distance", [(1, 1), (4, 5)], None, frame.pixel_spacing, frame.spacing_source)
    saved = [Measurement("distance", [[1, 1], [4, 5]], series.study_uid, series.series_uid,
                         frame.instance.sop_instance_uid, 0, "Distance 1", values, text)]
    text_json = measurements_to_json(saved)
    json.loads(text_json)  # valid JSON
    assert measurements_from_json(text_json) == saved
    with pytest.raises(UserFacingError):
        measurements_from_json("{not json")
