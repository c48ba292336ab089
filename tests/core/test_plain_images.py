"""PNG / JPEG files as one-frame viewer images: values kept (8 or 16 bit, grey or colour), no
patient or spacing, the same pixels the AI reader gets, and only clear errors on bad bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.imaging.ai.preprocessing import read_raster
from healthfm_desktop.core.imaging.plain_images import (
    open_plain_image,
    open_rejected_plain_images,
    plain_image_kind,
)
from healthfm_desktop.core.imaging.ai.analysis import read_for_analysis
from healthfm_desktop.core.imaging.sources import SourceRef

IMAGES = Path(__file__).resolve().parents[1] / "data" / "images"
CHEST = IMAGES / "pneumoniamnist_test_013_normal.png"
ULTRASOUND = IMAGES / "hc18_test_228_HC.png"


def test_a_real_png_is_a_one_frame_series_with_its_own_values():
    series = open_plain_image(CHEST)
    pixels = series.load_frame(0)
    expected = np.asarray(Image.open(CHEST))
    assert series.frame_count == 1 and series.modality == "PNG" and not series.is_colour
    assert np.array_equal(pixels, expected.astype(np.float32))
    assert series.frames[0].pixel_spacing is None and series.frame_of_reference_uid == ""
    assert series.patient_name == "" and "Not DICOM" in series.notes[0]
    assert open_plain_image(CHEST).key == series.key  # stable: measurements come back
    with pytest.raises(IndexError):
        series.load_frame(1)


def test_16_bit_grey_jpeg_and_colour(tmp_path):
    grey = np.asarray(Image.open(ULTRASOUND).convert("L")).astype(np.uint16) * 257
    Image.fromarray(grey).save(tmp_path / "deep.png")
    assert np.array_equal(open_plain_image(tmp_path / "deep.png").load_frame(0), grey.astype(np.float32))
    Image.open(ULTRASOUND).convert("L").save(tmp_path / "a.jpg", quality=90)
    jpeg = open_plain_image(tmp_path / "a.jpg")
    assert jpeg.modality == "JPEG" and jpeg.load_frame(0).shape == grey.shape
    rgb = np.zeros((8, 9, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(tmp_path / "red.png")
    colour = open_plain_image(tmp_path / "red.png")
    assert colour.is_colour and colour.load_frame(0).dtype == np.uint8 and colour.load_frame(0).shape == (8, 9, 3)
    Image.fromarray(np.stack([grey.astype(np.uint8)] * 3, -1)).save(tmp_path / "grey_as_rgb.png")
    assert not open_plain_image(tmp_path / "grey_as_rgb.png").is_colour  # equal channels: grey, W/L works


def test_the_analysis_reads_the_file_as_the_command_line_does():
    from_viewer = read_for_analysis(SourceRef(CHEST), 0, str(CHEST))
    assert np.array_equal(from_viewer.pixels, read_raster(CHEST).pixels) and from_viewer.kind == "png"


def test_rejected_dicom_scan_entries_become_plain_images_or_keep_a_reason(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "cut.png").write_bytes(CHEST.read_bytes()[:30])
    rejected = [(str(CHEST), "not a DICOM file"), (str(tmp_path / "notes.txt"), "not a DICOM file"),
                (str(tmp_path / "cut.png"), "not a DICOM file")]
    series, still = open_rejected_plain_images(rejected)
    assert [s.description for s in series] == [CHEST.name]
    reasons = dict(still)
    assert reasons[str(tmp_path / "notes.txt")] == "not a DICOM file"
    assert "not a readable PNG image" in reasons[str(tmp_path / "cut.png")]
    assert plain_image_kind(tmp_path / "notes.txt") is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), cut=st.integers(min_value=0, max_value=2000), header=st.sampled_from(["png", "jpeg"]))
def test_fuzzed_png_and_jpeg_bytes_give_clear_errors_only(tmp_path, data, cut, header):
    buffer = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buffer, format=header.upper())
    raw = buffer.getvalue()
    path = tmp_path / f"fuzz.{header}"
    path.write_bytes(raw[: min(cut, len(raw))] + data if cut > 8 else raw[:8] + data)
    try:
        series = open_plain_image(path)
        series.load_frame(0)
    except UnreadableFileError as exc:
        assert str(exc)


def test_png_and_jpeg_route_to_images_by_content_whatever_their_name(tmp_path):
    from healthfm_desktop.core.routing import IMAGES, route_file

    unnamed = tmp_path / "IMG0001"
    unnamed.write_bytes(CHEST.read_bytes())
    assert route_file(unnamed)[0] == IMAGES
    jpeg = tmp_path / "scan.txt"
    Image.open(CHEST).save(jpeg, format="JPEG")
    assert route_file(jpeg)[0] == IMAGES
    assert plain_image_kind(jpeg) == "JPEG" and open_plain_image(jpeg).modality == "JPEG"
