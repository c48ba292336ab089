"""Orientation letters (PS3.3 C.7.6.1.1.1: L/R, P/A, H/F) of image edges from direction
cosines in the patient's LPS frame, as radiology viewers print them at each edge."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_POSITIVE, _NEGATIVE = "LPH", "RAF"
#: a component counts towards an oblique direction's letters when at least this large
OBLIQUE_COMPONENT = 0.25


def direction_letters(vector: Sequence[float]) -> str:
    """Letters of the direction a unit vector points to, strongest first: (0, 0, -1) is "F",
    an axial tilted 30 degrees "PH" style pairs for obliques; "" for a zero vector."""
    values = np.asarray(vector, dtype=float)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or not np.any(values):
        return ""
    order = np.argsort(-np.abs(values), kind="stable")
    return "".join((_POSITIVE if values[axis] > 0 else _NEGATIVE)[axis] for axis in order
                   if abs(values[axis]) >= OBLIQUE_COMPONENT)


def edge_letters(right: Sequence[float], down: Sequence[float]) -> dict[str, str]:
    """Letters at the four edges of an image whose columns increase along ``right`` and rows
    along ``down`` (ImageOrientationPatient's row and column cosines)."""
    right_v, down_v = np.asarray(right, dtype=float), np.asarray(down, dtype=float)
    return {"right": direction_letters(right_v), "left": direction_letters(-right_v),
            "bottom": direction_letters(down_v), "top": direction_letters(-down_v)}


def frame_edge_letters(orientation: Sequence[float] | None) -> dict[str, str] | None:
    """Edge letters of a frame from its Image Orientation (Patient), or None without one."""
    if orientation is None or len(orientation) != 6:
        return None
    letters = edge_letters(orientation[:3], orientation[3:])
    return letters if all(letters.values()) else None
