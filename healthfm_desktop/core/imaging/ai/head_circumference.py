"""Fetal head biometry from a segmentation mask: the largest connected region's outline, an
ellipse fitted to it (least squares, as OpenCV's fitEllipse: core/imaging/raster.py) in millimetres, and its circumference by
Ramanujan's second approximation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from healthfm_desktop.core.imaging import raster


@dataclass(frozen=True)
class HeadEllipse:
    """An ellipse in pixel coordinates of the mask (x = column, y = row)."""

    centre_xy: tuple[float, float]
    axes_px: tuple[float, float]  # full axis lengths along the ellipse's own axes, in pixels
    angle_deg: float
    contour_xy: np.ndarray  # (N, 2) outline of the region the ellipse was fitted to
    area_px: float

    def polygon(self, points: int = 72) -> np.ndarray:
        """(points, 2) x/y points on the ellipse, for drawing."""
        theta = np.linspace(0, 2 * np.pi, points, endpoint=False)
        a, b = self.axes_px[0] / 2, self.axes_px[1] / 2
        angle = math.radians(self.angle_deg)
        x = a * np.cos(theta)
        y = b * np.sin(theta)
        cx, cy = self.centre_xy
        return np.stack([cx + x * math.cos(angle) - y * math.sin(angle), cy + x * math.sin(angle) + y * math.cos(angle)], axis=1)


def ramanujan_circumference(semi_a: float, semi_b: float) -> float:
    """Ramanujan's second approximation of an ellipse's perimeter (error < 1e-9 for heads)."""
    a, b = max(semi_a, semi_b), min(semi_a, semi_b)
    if a <= 0:
        return 0.0
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def largest_region(mask: np.ndarray) -> np.ndarray:
    """The largest foreground region of a binary mask (by the area its outline encloses), holes
    filled: a head is one closed region; specks elsewhere are segmentation noise."""
    return raster.largest_filled_region(mask)


def fit_head_ellipse(mask: np.ndarray) -> HeadEllipse | None:
    """Fit an ellipse to the outline of the mask's largest region; None when there is no head
    (fewer than 5 outline points, or a region too small to be one)."""
    region = largest_region(mask)
    area = float(region.sum())
    if area < 20:
        return None
    contour = raster.trace_outline(region)
    if len(contour) < 5:
        return None
    (cx, cy), (width, height), angle = raster.fit_ellipse(contour)
    return HeadEllipse((cx, cy), (width, height), angle, contour.astype(np.float32), area)


def head_circumference_mm(ellipse: HeadEllipse, spacing_mm: tuple[float, float]) -> float:
    """Circumference of the fitted ellipse in mm; ``spacing_mm`` is (row, column) as in DICOM
    PixelSpacing. Anisotropic pixels are handled by fitting again in millimetre space."""
    row_mm, col_mm = float(spacing_mm[0]), float(spacing_mm[1])
    if abs(row_mm - col_mm) <= 1e-6 * max(row_mm, col_mm):
        return ramanujan_circumference(ellipse.axes_px[0] / 2 * col_mm, ellipse.axes_px[1] / 2 * row_mm)
    points = ellipse.contour_xy * np.array([col_mm, row_mm], dtype=np.float32)
    _, (width, height), _ = raster.fit_ellipse(points)
    return ramanujan_circumference(width / 2, height / 2)


def ellipse_axes_mm(ellipse: HeadEllipse, spacing_mm: tuple[float, float]) -> tuple[float, float]:
    """(major, minor) full axis lengths in mm (isotropic pixels; the mean spacing otherwise)."""
    mean = (float(spacing_mm[0]) + float(spacing_mm[1])) / 2
    a, b = sorted(ellipse.axes_px, reverse=True)
    return a * mean, b * mean
