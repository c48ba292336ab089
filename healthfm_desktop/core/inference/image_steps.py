"""Image preprocessing declared in a model's manifest as data: a list of steps applied to a
grey-scale uint8 image, so a user's model can say how it wants its input without Python.

    "preprocessing": {"steps": [{"op": "pad_square"}, {"op": "resize", "size": [64, 64]},
                                {"op": "scale", "divide": 255}, {"op": "normalise", "mean": 0.5, "std": 0.25}]}

Ops: ``centre_square``, ``pad_square``, ``letterbox`` (size, keep aspect, zero pad), ``resize``
(size [h, w], interpolation area|linear|nearest; area when shrinking by default), ``scale``
(divide), ``normalise`` (mean, std; one value or one per channel), ``channels`` (count 1 or 3:
grey repeated). The result is float32 (1, channels, h, w)."""

from __future__ import annotations

from typing import Any

import numpy as np

from healthfm_desktop.core.errors import ModelError
from healthfm_desktop.core.imaging import raster

OPS = ("centre_square", "pad_square", "letterbox", "resize", "scale", "normalise", "channels")
_INTERPOLATION = raster.INTERPOLATIONS


def check_steps(steps: Any) -> list[str]:
    """Problems with a step list, as sentences (empty when it can be run)."""
    if not isinstance(steps, list) or not steps:
        return ["preprocessing.steps must be a non-empty list"]
    problems = []
    sized = False
    for index, step in enumerate(steps):
        op = step.get("op") if isinstance(step, dict) else None
        where = f"preprocessing step {index + 1}"
        if op not in OPS:
            problems.append(f"{where}: unknown op {op!r} (known: {', '.join(OPS)})")
            continue
        if op in ("resize", "letterbox"):
            size = step.get("size")
            if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and 1 <= v <= 4096 for v in size)):
                problems.append(f"{where}: {op} needs size [height, width] in pixels (1..4096)")
            sized = True
            if step.get("interpolation", "area") not in _INTERPOLATION:
                problems.append(f"{where}: interpolation must be one of {', '.join(_INTERPOLATION)}")
        if op == "scale" and not _positive_number(step.get("divide")):
            problems.append(f"{where}: scale needs a positive 'divide'")
        if op == "normalise":
            std = step.get("std")
            stds = std if isinstance(std, list) else [std]
            if not all(_positive_number(s) for s in stds) or "mean" not in step:
                problems.append(f"{where}: normalise needs 'mean' and a positive 'std'")
        if op == "channels" and step.get("count") not in (1, 3):
            problems.append(f"{where}: channels count must be 1 or 3")
    if not sized:
        problems.append("preprocessing.steps must fix the input size with a resize or letterbox step")
    return problems


GEOMETRY_OPS = ("centre_square", "pad_square", "letterbox", "resize")


def frame_pixels(pixels: np.ndarray, steps: list[dict[str, Any]]) -> np.ndarray:
    """The image after the geometric steps only (still uint8): what the network sees, before scaling."""
    return apply_steps(pixels, [s for s in steps if s["op"] in GEOMETRY_OPS], as_float=False)


def apply_steps(pixels: np.ndarray, steps: list[dict[str, Any]], as_float: bool = True) -> np.ndarray:
    """uint8 (H, W) grey image -> float32 (1, C, h, w) network input (``as_float=False``: the
    (h, w) array as the steps left it)."""
    image: np.ndarray = np.asarray(pixels)
    if image.ndim != 2:
        raise ModelError("preprocessing expects a grey-scale image")
    channels = 1
    for step in steps:
        op = step["op"]
        if op == "centre_square":
            h, w = image.shape[:2]
            side = min(h, w)
            image = image[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        elif op == "pad_square":
            h, w = image.shape[:2]
            side = max(h, w)
            frame = np.zeros((side, side), dtype=image.dtype)
            frame[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = image
            image = frame
        elif op == "letterbox":
            image = _letterbox(image, tuple(step["size"]), step.get("interpolation"))
        elif op == "resize":
            image = _resize(image, tuple(step["size"]), step.get("interpolation"))
        elif op == "scale":
            image = image.astype(np.float32) / np.float32(step["divide"])
        elif op == "normalise":
            image = image.astype(np.float32)
            mean = np.asarray(step["mean"], dtype=np.float32).reshape(-1, 1, 1)
            std = np.asarray(step["std"], dtype=np.float32).reshape(-1, 1, 1)
            image = ((image[None] if image.ndim == 2 else image) - mean) / std
            image = image[0] if image.shape[0] == 1 else image
        elif op == "channels":
            channels = int(step["count"])
    if not as_float:
        return image
    image = image.astype(np.float32)
    if image.ndim == 2:
        image = np.repeat(image[None], channels, axis=0)
    return image[None]


def _resize(image: np.ndarray, size: tuple[int, int], interpolation: str | None) -> np.ndarray:
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrinking = image.shape[0] > height or image.shape[1] > width
    flag = interpolation or ("area" if shrinking else "linear")
    return raster.resize(image, (width, height), flag)


def _letterbox(image: np.ndarray, size: tuple[int, int], interpolation: str | None) -> np.ndarray:
    height, width = size
    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    new_h, new_w = max(1, min(height, round(h * scale))), max(1, min(width, round(w * scale)))
    resized = _resize(image, (new_h, new_w), interpolation)
    frame = np.zeros((height, width), dtype=resized.dtype)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    frame[top:top + new_h, left:left + new_w] = resized
    return frame


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
