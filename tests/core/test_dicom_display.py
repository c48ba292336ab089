"""Display: the VOI LUT function of PS3.3 C.11.2.1.2 exactly, renders (CLI and core) against a
pydicom reference, MONOCHROME1 inversion, presets, the fast LUT path."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_windowing

from healthfm_desktop.cli import main
from healthfm_desktop.core.imaging.decoding import ModalityTransform
from healthfm_desktop.core.imaging.display import (
    Window,
    apply_window,
    apply_window_uint8,
    default_window,
    presets_for,
    render_frame,
    render_stored,
    window_lut_for_stored,
    windows_from_file,
)
from healthfm_desktop.core.imaging.scanning import scan_paths
from tests.core.dicom_manifest import CT_SERIES, DICOM, MR_SERIES


def pydicom_reference(path, frame: int = 0, window: tuple[float, float] | None = None) -> np.ndarray:
    """Modality LUT, then pydicom's windowing (C.11.2.1.2), scaled from pydicom's output range
    to 0..255; the file's window, else min/max; MONOCHROME1 inverted."""
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        stored = stored[frame]
    values = apply_modality_lut(stored, ds).astype(np.float64)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
        ds.VOILUTFunction = "LINEAR"
    elif "WindowCenter" not in ds:
        lo, hi = float(values.min()), float(values.max())
        ds.WindowCenter, ds.WindowWidth = (lo + hi) / 2, max(hi - lo, 1)
    y = apply_windowing(values, ds)
    bits = int(ds.BitsStored)
    y_min, y_max = (0, 2**bits - 1) if ds.PixelRepresentation == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        y_min = y_min * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        y_max = y_max * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    out = np.floor((y - y_min) / (y_max - y_min) * 255 + 0.5).astype(np.uint8)
    return 255 - out if ds.PhotometricInterpretation == "MONOCHROME1" else out


def _series_uid(path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


CASES = [
    ("single/CT_small.dcm", None),
    ("single/CT_small.dcm", (40.0, 400.0)),
    ("single/CR_MONOCHROME1_jpeg2000_lossy.dcm", None),
    ("single/MR_small_explicit.dcm", None),
    ("single/NM_jpeg_lossless_sv1.dcm", None),
    ("single/CT_jpegls_near_lossless.dcm", (-600.0, 1500.0)),
    ("dicomdir/77654033/CR1/6154", None),
]


@pytest.mark.parametrize("relative,window", CASES, ids=lambda c: str(c))
def test_cli_render_matches_the_pydicom_reference(relative, window, tmp_path):
    path = DICOM / relative
    out = tmp_path / "frame.png"
    argv = ["dicom", "render", str(path), "--series", _series_uid(path), "--out", str(out)]
    if window:
        argv += ["--window", str(window[0]), str(window[1])]
    assert main(argv) == 0
    rendered = np.asarray(Image.open(out))
    reference = pydicom_reference(path, window=window)
    assert rendered.shape == reference.shape
    assert np.abs(rendered.astype(int) - reference.astype(int)).max() <= 1


def test_cli_render_index_is_display_order_in_a_series(tmp_path):
    series = scan_paths([CT_SERIES]).series[0]
    out = tmp_path / "slice.png"
    assert main(["dicom", "render", str(CT_SERIES), "--series", series.series_uid, "--index", "7", "--out", str(out)]) == 0
    reference = pydicom_reference(series.frames[7].instance.source.path)
    assert np.abs(np.asarray(Image.open(out)).astype(int) - reference.astype(int)).max() <= 1


def test_linear_function_is_c_11_2_1_2_piecewise():
    c, w = 40.0, 80.0
    x = np.arange(-100, 200, 0.25, dtype=np.float32)
    lower, upper = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
    expected = np.where(x <= lower, 0.0, np.where(x > upper, 255.0, ((x - (c - 0.5)) / (w - 1) + 0.5) * 255))
    np.testing.assert_allclose(apply_window(x, Window(c, w)), expected, atol=1e-3)
    # width 1 is a threshold at c - 0.5
    np.testing.assert_array_equal(apply_window(np.array([39.4, 39.5, 39.6]), Window(40, 1)), [0, 0, 255])
    exact = apply_window(np.array([20.0, 40.0, 60.0]), Window(40, 40, "LINEAR_EXACT"))
    np.testing.assert_allclose(exact, [0, 127.5, 255])
    sigmoid = apply_window(np.array([40.0]), Window(40, 80, "SIGMOID"))
    np.testing.assert_allclose(sigmoid, [127.5])


def test_lut_path_equals_float_path_for_16_bit_data():
    rng = np.random.default_rng(0)
    stored = rng.integers(-2000, 3000, size=(512, 512)).astype(np.int16)
    transform = ModalityTransform(slope=1.0, intercept=-1024.0)
    window = Window(40, 400)
    lut = window_lut_for_stored(16, True, transform, window)
    fast = render_stored(stored, lut)
    slow = np.floor(apply_window(transform.apply(stored), window) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(apply_window_uint8(stored, 40, 400), np.floor(apply_window(stored, window) + 0.5).astype(np.uint8))


def test_file_windows_all_values_and_default_and_presets():
    mr = scan_paths([DICOM / "single" / "MR_enhanced_siemens_xa10.dcm"]).series[0]
    assert windows_from_file(mr.frames[0])[0].center == 625.0
    ct = scan_paths([DICOM / "single" / "CT_small.dcm"]).series[0]
    pixels = ct.load_frame(0)
    window = default_window(ct.frames[0], pixels)
    assert window.label == "min/max" and window.center == (pixels.min() + pixels.max()) / 2
    assert set(presets_for("CT")) >= {"Brain", "Lung", "Bone", "Abdomen", "Mediastinum"}
    assert presets_for("CT")["Lung"] == Window(-600, 1500, label="Lung")
    assert presets_for("MR") == {}


def test_render_frame_monochrome1_inverts_and_colour_passes_through():
    cr = scan_paths([DICOM / "single" / "CR_MONOCHROME1_jpeg2000_lossy.dcm"]).series[0]
    pixels = cr.load_frame(0)
    window = windows_from_file(cr.frames[0])[0]
    plain = np.floor(apply_window(pixels, window) + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(render_frame(cr, 0), 255 - plain)
    us = scan_paths([DICOM / "single" / "US_RGB_explicit_LE_cropped.dcm"]).series[0]
    np.testing.assert_array_equal(render_frame(us, 0), us.load_frame(0))


def test_voi_lut_sequence_is_applied():
    series = scan_paths([DICOM / "single" / "MR_voi_lut_sequence.dcm"]).series[0]
    frame = series.frames[0]
    assert frame.voi_lut_dataset is not None and not frame.window_centers
    image = render_frame(series, 0)
    ds = pydicom.dcmread(DICOM / "single" / "MR_voi_lut_sequence.dcm")
    from pydicom.pixels import apply_voi_lut

    reference = apply_voi_lut(ds.pixel_array, ds).astype(np.float64)
    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    top = 255.0 if reference.max() <= 255 else float(2**bits - 1)
    expected = np.floor(np.clip(reference * 255.0 / top, 0, 255) + 0.5)
    assert np.abs(image.astype(int) - expected.astype(int)).max() <= 1


def test_mr_series_render_uses_the_file_window():
    series = scan_paths([MR_SERIES]).series[0]
    image = render_frame(series, 85)
    reference = pydicom_reference(series.frames[85].instance.source.path)
    assert np.abs(image.astype(int) - reference.astype(int)).max() <= 1
