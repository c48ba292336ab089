"""Display transforms: VOI windowing (PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT, SIGMOID), the VOI
LUT Sequence, MONOCHROME1 inversion, default windows, per-modality presets and fast uint8
rendering (a precomputed lookup table for integer stored values)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_voi

from healthfm_desktop.core.imaging.decoding import ModalityTransform
from healthfm_desktop.core.imaging.series import Frame, Series


@dataclass(frozen=True)
class Window:
    """A VOI window: centre and width in modality units, and the VOI LUT function."""

    center: float
    width: float
    function: str = "LINEAR"  # LINEAR | LINEAR_EXACT | SIGMOID
    label: str = ""

    @classmethod
    def from_range(cls, low: float, high: float, label: str = "min/max") -> "Window":
        """The LINEAR window whose output is 0 exactly at ``low`` and 255 exactly at ``high``."""
        width = max(float(high) - float(low), 1.0)
        return cls(center=(float(low) + float(high)) / 2.0, width=width, label=label)


# Common radiology presets (centre, width) in HU.
CT_PRESETS: dict[str, Window] = {
    "Brain": Window(40, 80, label="Brain"),
    "Subdural": Window(75, 215, label="Subdural"),
    "Stroke": Window(40, 40, label="Stroke"),
    "Lung": Window(-600, 1500, label="Lung"),
    "Mediastinum": Window(50, 350, label="Mediastinum"),
    "Abdomen": Window(40, 400, label="Abdomen"),
    "Liver": Window(60, 160, label="Liver"),
    "Bone": Window(400, 1800, label="Bone"),
}


def presets_for(modality: str) -> dict[str, Window]:
    """W/L presets offered for a modality (CT has the standard HU presets; others none, since
    MR/US/NM values have no absolute scale)."""
    return dict(CT_PRESETS) if modality.upper() == "CT" else {}


def windows_from_file(frame: Frame) -> list[Window]:
    """Every window centre/width pair the file (or the frame's functional groups) declares."""
    windows = []
    for k, (c, w) in enumerate(zip(frame.window_centers, frame.window_widths)):
        if w is None or not np.isfinite(w) or c is None or not np.isfinite(c):
            continue
        # C.11.2.1.2: LINEAR needs a width of at least 1, the other functions a positive one
        if w < 1 if (frame.voi_function or "LINEAR").upper() == "LINEAR" else w <= 0:
            continue
        label = frame.window_explanations[k] if k < len(frame.window_explanations) else f"File {k + 1}"
        windows.append(Window(float(c), float(w), frame.voi_function, label or f"File {k + 1}"))
    return windows


def default_window(frame: Frame, pixels: np.ndarray) -> Window:
    """The file's first window, else the frame's min/max (CLI.md: default window from the
    file, else min/max). ``pixels`` are the modality values of the frame."""
    from_file = windows_from_file(frame)
    if from_file:
        return from_file[0]
    finite = pixels[np.isfinite(pixels)] if np.issubdtype(pixels.dtype, np.floating) else pixels
    if finite.size == 0:
        return Window(0.0, 1.0, label="min/max")
    return Window.from_range(float(finite.min()), float(finite.max()))


def apply_window(values: np.ndarray, window: Window, y_min: float = 0.0, y_max: float = 255.0) -> np.ndarray:
    """The VOI LUT function of PS3.3 C.11.2.1.2 (and C.11.2.1.3 for LINEAR_EXACT / SIGMOID),
    as float32 in [y_min, y_max]."""
    x = np.asarray(values, dtype=np.float32)
    c, w = float(window.center), float(window.width)
    span = y_max - y_min
    function = (window.function or "LINEAR").upper()
    if function == "SIGMOID":
        out = span / (1.0 + np.exp(-4.0 * (x - c) / w)) + y_min
        return out.astype(np.float32)
    if function == "LINEAR_EXACT":
        if w <= 0:
            raise ValueError("window width must be > 0 for LINEAR_EXACT")
        out = ((x - c) / w + 0.5) * span + y_min
        return np.clip(out, y_min, y_max).astype(np.float32)
    if w < 1:
        raise ValueError("window width must be >= 1 for LINEAR")
    if w == 1:
        # the standard's formula divides by zero here: a threshold at c - 0.5
        return np.where(x <= c - 0.5, y_min, y_max).astype(np.float32)
    # y = ((x - (c - 0.5)) / (w - 1) + 0.5) * (y_max - y_min) + y_min, clipped: identical to the
    # piecewise definition since the formula reaches y_min / y_max exactly at the two bounds
    out = (x - np.float32(c - 0.5)) * np.float32(span / (w - 1)) + np.float32(0.5 * span + y_min)
    return np.clip(out, y_min, y_max, out=out)


def _to_uint8(y: np.ndarray, invert: bool) -> np.ndarray:
    out = np.floor(y + 0.5).astype(np.uint8) if y.dtype.kind == "f" else y.astype(np.uint8)
    if invert:
        np.subtract(255, out, out=out)
    return out


def window_lut_for_stored(
    bits_allocated: int, signed: bool, transform: ModalityTransform, window: Window, invert: bool = False
) -> np.ndarray:
    """A uint8 table indexed by the stored value's bit pattern (uint8/uint16 view), composing the
    Modality LUT, the VOI window and MONOCHROME1 inversion."""
    count = 1 << (8 if bits_allocated <= 8 else 16)
    pattern = np.arange(count, dtype=np.uint16 if count > 256 else np.uint8)
    stored = pattern.view(np.int16 if count > 256 else np.int8) if signed else pattern
    return _to_uint8(apply_window(transform.apply(stored), window), invert)


def render_stored(stored: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Apply a ``window_lut_for_stored`` table: one gather per pixel."""
    view = stored.view(np.uint16) if stored.dtype.itemsize == 2 else stored.view(np.uint8)
    return np.take(lut, view)


def apply_voi_lut_sequence(values: np.ndarray, voi_lut_dataset: Dataset, index: int = 0) -> np.ndarray:
    """Apply the file's VOI LUT Sequence (pydicom) and scale its output to 0..255."""
    item = voi_lut_dataset.VOILUTSequence[index]
    descriptor = item.LUTDescriptor
    values = np.asarray(values)
    if values.dtype.kind == "f" and np.array_equal(values, np.round(values)):
        values = values.astype(np.int64)  # LUT entries are indexed by integer input values
    out = apply_voi(values, voi_lut_dataset, index=index).astype(np.float32)
    bits = int(descriptor[2]) if len(descriptor) > 2 else 16
    top = float((1 << bits) - 1)
    if out.size and out.max() <= 255 and bits > 8 and top > 255:
        # LUTs declared 16-bit that really hold 8-bit values are common
        top = 255.0
    return np.clip(out * (255.0 / top), 0, 255).astype(np.float32)


def render_uint8(pixels: np.ndarray, window: Window | None = None, *, invert: bool = False) -> np.ndarray:
    """Grey modality values -> uint8 via the window (min/max if None); colour passes through."""
    if pixels.ndim == 3:
        return pixels if pixels.dtype == np.uint8 else np.clip(pixels, 0, 255).astype(np.uint8)
    if window is None:
        finite = pixels[np.isfinite(pixels)] if pixels.dtype.kind == "f" else pixels
        window = Window.from_range(float(finite.min()), float(finite.max())) if finite.size else Window(0, 1)
    return _to_uint8(apply_window(pixels, window), invert)


def needs_inversion(series: Series, index: int = 0) -> bool:
    return series.frames[index].instance.photometric == "MONOCHROME1"


def render_frame(series: Series, index: int, window: Window | None = None, *, use_voi_lut: bool = True) -> np.ndarray:
    """Frame ``index`` of ``series`` as displayed: uint8 H x W (grey) or H x W x 3 (colour).

    Grey: Modality LUT, then the VOI (``window`` if given, else the file's VOI LUT Sequence or
    first window, else min/max), then MONOCHROME1 inversion.
    """
    pixels = series.load_frame(index)
    if pixels.ndim == 3:
        return pixels
    frame = series.frames[index]
    invert = needs_inversion(series, index)
    if window is None and use_voi_lut and frame.voi_lut_dataset is not None and not frame.window_centers:
        y = apply_voi_lut_sequence(pixels, frame.voi_lut_dataset)
        return _to_uint8(y, invert)
    if window is None:
        window = default_window(frame, pixels)
    return _to_uint8(apply_window(pixels, window), invert)


def apply_window_uint8(pixels: np.ndarray, center: float, width: float, invert: bool = False, function: str = "LINEAR") -> np.ndarray:
    """Grey modality values -> uint8 through the window (PS3.3 C.11.2.1.2), optionally inverted
    (MONOCHROME1). Colour (H x W x 3) passes through. Integer input uses a lookup table."""
    if pixels.ndim == 3:
        return render_uint8(pixels)
    window = Window(float(center), max(float(width), 1.0), function)
    if pixels.dtype in (np.uint16, np.int16, np.uint8, np.int8):
        lut = window_lut_for_stored(pixels.dtype.itemsize * 8, pixels.dtype.kind == "i", ModalityTransform(), window, invert)
        return render_stored(pixels, lut)
    return _to_uint8(apply_window(pixels, window), invert)
