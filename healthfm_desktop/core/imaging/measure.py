"""Measurements on one frame: distance (mm from PixelSpacing or ImagerPixelSpacing, saying
which), angle, and rectangle / ellipse ROI statistics in modality units with area in mm².
Points are image coordinates ``(column, row)`` where pixel ``(r, c)`` covers
``[c, c+1) x [r, r+1)`` (its centre is at ``c + 0.5, r + 0.5``), as Qt draws an image."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from healthfm_desktop.core.errors import UserFacingError

KINDS = ("distance", "angle", "rectangle", "ellipse")

_SPACING_NOTES = {
    "PixelSpacing": "",
    "ImagerPixelSpacing": "at the detector (ImagerPixelSpacing): not corrected for magnification",
    "NominalScannedPixelSpacing": "nominal scanner spacing (NominalScannedPixelSpacing)",
}


class MeasurementError(UserFacingError):
    """A measurement that cannot be computed from the points given."""


def _points(points, count: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as exc:
        raise MeasurementError("measurement points must be (column, row) pairs") from exc
    if count is not None and len(arr) != count:
        raise MeasurementError(f"this measurement needs {count} points, got {len(arr)}")
    if not np.all(np.isfinite(arr)):
        raise MeasurementError("measurement points must be finite numbers")
    return arr


def distance(points, pixel_spacing: tuple[float, float] | None) -> tuple[float, str]:
    """Length between two points: ``(value, unit)``, mm when spacing is known, else pixels.
    ``pixel_spacing`` is (between rows, between columns) in mm, as DICOM orders it."""
    (c0, r0), (c1, r1) = _points(points, 2)
    if pixel_spacing:
        row_mm, col_mm = pixel_spacing
        return math.hypot((c1 - c0) * col_mm, (r1 - r0) * row_mm), "mm"
    return math.hypot(c1 - c0, r1 - r0), "px"


def angle(points, pixel_spacing: tuple[float, float] | None = None) -> float:
    """Angle in degrees at the middle point of three (in physical space when spacing is known,
    so anisotropic pixels do not distort it)."""
    a, vertex, c = _points(points, 3)
    scale = np.array([pixel_spacing[1], pixel_spacing[0]]) if pixel_spacing else np.ones(2)
    u, v = (a - vertex) * scale, (c - vertex) * scale
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        raise MeasurementError("an angle needs three distinct points")
    cosine = float(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))
    return math.degrees(math.acos(cosine))


def roi_mask(kind: str, points, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centres lie inside the rectangle or ellipse spanned by two corner points."""
    (c0, r0), (c1, r1) = _points(points, 2)
    left, right = sorted((c0, c1))
    top, bottom = sorted((r0, r1))
    rows, cols = shape
    rr = np.arange(rows, dtype=np.float64)[:, None] + 0.5
    cc = np.arange(cols, dtype=np.float64)[None, :] + 0.5
    if kind == "rectangle":
        return (rr >= top) & (rr <= bottom) & (cc >= left) & (cc <= right)
    if kind == "ellipse":
        a, b = (right - left) / 2.0, (bottom - top) / 2.0
        if a <= 0 or b <= 0:
            return np.zeros(shape, dtype=bool)
        cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
        return ((cc - cx) / a) ** 2 + ((rr - cy) / b) ** 2 <= 1.0
    raise MeasurementError(f"unknown ROI kind {kind!r}")


def roi_statistics(kind: str, points, pixels: np.ndarray, pixel_spacing: tuple[float, float] | None) -> dict[str, Any]:
    """Mean, SD (population), min, max of the modality values inside the ROI, the pixel count
    and the drawn shape's area (mm² with spacing, else px²). Colour frames use luminance."""
    values = np.asarray(pixels)
    if values.ndim == 3:
        values = values[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    mask = roi_mask(kind, points, values.shape[:2])
    inside = values[mask].astype(np.float64)
    (c0, r0), (c1, r1) = _points(points, 2)
    width, height = abs(c1 - c0), abs(r1 - r0)
    if pixel_spacing:
        width_mm, height_mm = width * pixel_spacing[1], height * pixel_spacing[0]
        unit = "mm²"
    else:
        width_mm, height_mm = width, height
        unit = "px²"
    area = width_mm * height_mm if kind == "rectangle" else math.pi * width_mm * height_mm / 4.0
    if inside.size == 0:
        raise MeasurementError("the region contains no pixel centre: draw it larger")
    return {
        "mean": float(inside.mean()),
        "sd": float(inside.std()),
        "min": float(inside.min()),
        "max": float(inside.max()),
        "pixels": int(inside.size),
        "area": float(area),
        "area_unit": unit,
    }


def _fmt(value: float) -> str:
    return f"{value:.1f}" if abs(value) < 1e5 else f"{value:.4g}"


def describe_measurement(
    kind: str,
    points,
    pixels: np.ndarray | None,
    pixel_spacing: tuple[float, float] | None,
    spacing_source: str | None,
    units: str = "",
) -> tuple[dict[str, Any], str]:
    """Compute a measurement: ``(values, text)``; ``values`` is JSON-serialisable and says
    which spacing was used (``spacing_source``), ``text`` is the label for the image."""
    if kind not in KINDS:
        raise MeasurementError(f"unknown measurement kind {kind!r}")
    spacing = tuple(float(v) for v in pixel_spacing) if pixel_spacing else None
    note = _SPACING_NOTES.get(spacing_source or "", spacing_source or "") if spacing else "no pixel spacing in the file: pixels"
    values: dict[str, Any] = {"spacing_source": spacing_source if spacing else None}
    if kind == "distance":
        length, unit = distance(points, spacing)
        values.update(length=length, unit=unit)
        text = f"{length:.1f} {unit}"
    elif kind == "angle":
        degrees = angle(points, spacing)
        values.update(angle=degrees, unit="°")
        return values, f"{degrees:.1f}°"
    else:
        if pixels is None:
            raise MeasurementError("region statistics need the image")
        stats = roi_statistics(kind, points, pixels, spacing)
        stats["unit"] = units
        values.update(stats)
        u = f" {units}" if units else ""
        text = (
            f"mean {_fmt(stats['mean'])}{u}, SD {_fmt(stats['sd'])}\n"
            f"min {_fmt(stats['min'])}, max {_fmt(stats['max'])}{u}\n"
            f"area {stats['area']:.1f} {stats['area_unit']}"
        )
    if note:
        text += f"\n({note})"
    return values, text


@dataclass
class Measurement:
    """A measurement saved with the study (JSON): where it was drawn and what it found."""

    kind: str
    points: list[list[float]]
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    frame_index: int = 0
    label: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Measurement":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def measurements_to_json(measurements: list[Measurement]) -> str:
    return json.dumps({"version": 1, "measurements": [m.to_dict() for m in measurements]}, indent=1)


def measurements_from_json(text: str) -> list[Measurement]:
    try:
        data = json.loads(text)
        return [Measurement.from_dict(item) for item in data.get("measurements", [])]
    except (ValueError, TypeError, AttributeError) as exc:
        raise UserFacingError(f"the saved measurements are not readable ({exc})") from exc
