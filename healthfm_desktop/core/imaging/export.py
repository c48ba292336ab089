"""Export of rendered images: uint8 grey or RGB arrays to PNG (Pillow), written atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from healthfm_desktop.core.errors import UserFacingError


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG encoding of a uint8 H x W (grey) or H x W x 3 (RGB) array."""
    arr = np.ascontiguousarray(pixels)
    if arr.dtype != np.uint8:
        raise ValueError(f"PNG export needs uint8 pixels, got {arr.dtype}")
    if arr.ndim == 2:
        image = Image.fromarray(arr, mode="L")
    elif arr.ndim == 3 and arr.shape[2] == 3:
        image = Image.fromarray(arr, mode="RGB")
    elif arr.ndim == 3 and arr.shape[2] == 4:
        image = Image.fromarray(arr, mode="RGBA")
    else:
        raise ValueError(f"PNG export needs H x W or H x W x 3 pixels, got shape {arr.shape}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(pixels: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``pixels`` as a PNG at ``path`` (parent folders created)."""
    from healthfm_desktop.core.storage.atomic import atomic_write_bytes

    target = Path(path)
    data = png_bytes(pixels)
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise UserFacingError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target
