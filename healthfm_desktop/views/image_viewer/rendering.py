"""Wrap 8-bit pixels (greyscale, RGB, RGBA) in QImages without copying, keeping the numpy
buffer alive. The window/level itself is the core's VOI function, which the controller hands
to the viewports as a ``WindowRenderer`` (views never import the DICOM layer)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtGui import QImage

#: (pixels, centre, width, invert, scale, offset) -> uint8 pixels of the same height/width,
#: where modality value = pixels * scale + offset and the window is in modality units
WindowRenderer = Callable[[np.ndarray, float, float, bool, float, float], np.ndarray]


class RenderedImage:
    """A QImage with the numpy buffer it points into kept alive (QImage does not own it)."""

    __slots__ = ("image", "_buffer")

    def __init__(self, image: QImage, buffer: np.ndarray):
        self.image = image
        self._buffer = buffer


def qimage_from_uint8(pixels: np.ndarray) -> RenderedImage:
    """uint8 HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA, straight alpha) as a QImage."""
    if pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {pixels.dtype}")
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    if pixels.ndim == 2:
        fmt = QImage.Format.Format_Grayscale8
    elif pixels.shape[2] == 3:
        fmt = QImage.Format.Format_RGB888
    elif pixels.shape[2] == 4:
        fmt = QImage.Format.Format_RGBA8888
    else:
        raise ValueError(f"cannot display an image with {pixels.shape[2]} channels")
    return RenderedImage(QImage(pixels.data, width, height, pixels.strides[0], fmt), pixels)


def rgba_to_qimage(rgba: np.ndarray) -> RenderedImage:
    """An HxWx4 uint8 overlay (straight alpha) as a QImage."""
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
        raise ValueError("an overlay must be a uint8 array of shape (height, width, 4)")
    return qimage_from_uint8(rgba)
