"""Turn a frame in modality units into a QImage for the screen: the core's VOI window to 8 bits,
MONOCHROME1 inverted, colour frames passed through; plus RGBA overlays to QImage."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

try:  # the core's display module lands in parallel; until then the same PS3.3 formula here
    from healthfm_desktop.core.imaging.display import apply_window_uint8
except ImportError:  # pragma: no cover - replaced once core.imaging.display exists

    def apply_window_uint8(frame: np.ndarray, center: float, width: float) -> np.ndarray:
        width = max(float(width), 1.0)
        low = float(center) - 0.5 - (width - 1.0) / 2.0
        scale = 255.0 / (width - 1.0) if width > 1.0 else 255.0
        scaled = (frame.astype(np.float32, copy=False) - np.float32(low)) * np.float32(scale)
        return np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)


class RenderedImage:
    """A QImage with the numpy buffer it points into kept alive (QImage does not own it)."""

    __slots__ = ("image", "_buffer")

    def __init__(self, image: QImage, buffer: np.ndarray):
        self.image = image
        self._buffer = buffer


def _qimage_from_uint8(pixels: np.ndarray) -> RenderedImage:
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    if pixels.ndim == 2:
        image = QImage(pixels.data, width, height, pixels.strides[0], QImage.Format.Format_Grayscale8)
    elif pixels.shape[2] == 3:
        image = QImage(pixels.data, width, height, pixels.strides[0], QImage.Format.Format_RGB888)
    elif pixels.shape[2] == 4:
        image = QImage(pixels.data, width, height, pixels.strides[0], QImage.Format.Format_RGBA8888)
    else:
        raise ValueError(f"cannot display an image with {pixels.shape[2]} channels")
    return RenderedImage(image, pixels)


def render_frame(frame: np.ndarray, center: float, width: float, invert: bool = False) -> RenderedImage:
    """Window ``frame`` (modality units; greyscale HxW or colour HxWx3) to an 8-bit QImage.

    Greyscale goes through the core's linear VOI function (PS3.3 C.11.2.1.2); colour frames that
    are already 8-bit are shown as they are (their values are display values, not a quantity)."""
    if frame.ndim == 3 and frame.dtype == np.uint8:
        pixels = frame
    else:
        pixels = apply_window_uint8(frame, center, width)
    if invert:
        pixels = np.subtract(255, pixels, dtype=np.uint8)
    return _qimage_from_uint8(pixels)


def rgba_to_qimage(rgba: np.ndarray) -> RenderedImage:
    """An HxWx4 uint8 overlay (straight alpha) as a QImage."""
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
        raise ValueError("an overlay must be a uint8 array of shape (height, width, 4)")
    return _qimage_from_uint8(rgba)
