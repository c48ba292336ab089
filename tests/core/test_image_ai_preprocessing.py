"""The one preprocessing: a file read by the app becomes exactly the tensor the training script
made from the same pixels; readers refuse bad files with a clear UserFacingError."""

from __future__ import annotations

import os
import importlib.util
import io
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError
from healthfm_desktop.core.imaging.ai import preprocessing as prep
from tests.core.test_image_ai_helpers import REPO, make_dicom

TRAINING = REPO / "models" / "training"
DATA = TRAINING / "data" / "images"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, TRAINING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pneumonia_script():
    return _load_script("train_pneumonia")


@pytest.fixture(scope="module")
def hc18_script():
    return _load_script("train_hc18_unet")


def test_classifier_tensor_from_png_and_dicom_equals_training_tensor(pneumonia_script, tmp_path):
    data = np.load(DATA / "pneumoniamnist_28.npz")
    images = data["test_images"][:12]
    training = pneumonia_script.model_inputs(images)
    for i, pixels in enumerate(images):
        png = tmp_path / f"{i}.png"
        Image.fromarray(pixels).save(png)
        dicom = make_dicom(tmp_path / f"{i}.dcm", pixels, "CR")
        for path in (png, dicom):
            tensor = prep.classifier_input(prep.read_image(path))
            assert tensor.dtype == np.float32 and tensor.shape == (1, 1, 28, 28)
            np.testing.assert_array_equal(tensor[0], training[i])


def test_segmenter_tensor_from_png_and_dicom_equals_training_tensor(hc18_script, tmp_path):
    data = np.load(DATA / "hc18_seg_144x208.npz")
    images = data["test_images"][:4]
    training = hc18_script.model_inputs(images)
    for i, pixels in enumerate(images):
        png = tmp_path / f"{i}.png"
        Image.fromarray(pixels).save(png)
        dicom = make_dicom(tmp_path / f"{i}.dcm", pixels, "US", 0.5)
        for path in (png, dicom):
            tensor, letterbox = prep.segmenter_input(prep.read_image(path))
            np.testing.assert_array_equal(tensor[0], training[i])
            assert letterbox.source_shape == (144, 208)


def test_monochrome1_and_16_bit_dicom_read_as_display_values(tmp_path):
    pixels = np.asarray(Image.open(REPO / "resources/samples/images/chest_xray_normal.png"))
    inverted = prep.read_image(make_dicom(tmp_path / "m1.dcm", 255 - pixels, "CR", photometric="MONOCHROME1"))
    np.testing.assert_array_equal(inverted.pixels, pixels)
    wide = prep.read_image(make_dicom(tmp_path / "16.dcm", pixels.astype(np.uint16) * 16 + 100, "CR", bits=16))
    assert wide.pixels.dtype == np.uint8 and wide.pixels.min() == 0 and wide.pixels.max() == 255
    assert np.corrcoef(wide.pixels.ravel(), pixels.ravel())[0, 1] > 0.999  # min-max stretched, same picture
    assert wide.modality == "CR"


def test_letterbox_places_and_restores_a_full_size_ultrasound():
    source = np.zeros((540, 800), dtype=np.uint8)
    source[100:440, 200:600] = 200
    frame, box = prep.letterbox_pixels(source)
    assert frame.shape == (144, 208)
    assert box.content_shape[1] == 208 and box.top > 0
    back = box.to_source(frame.astype(np.float32) / 255.0)
    assert back.shape == source.shape
    assert np.mean((back > 0.5) == (source > 0)) > 0.99


def test_colour_images_are_flagged_and_grey_rgb_is_not(tmp_path):
    grey = np.asarray(Image.open(REPO / "resources/samples/images/chest_xray_normal.png"))
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(tmp_path / "grey_rgb.jpg", quality=95)
    rgb = np.stack([grey, np.zeros_like(grey), 255 - grey], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    assert not prep.read_image(tmp_path / "grey_rgb.jpg").was_colour
    assert prep.read_image(tmp_path / "colour.png").was_colour


def test_missing_folder_and_empty_files_give_clear_errors(tmp_path):
    with pytest.raises(UnreadableFileError, match="no such file"):
        prep.read_image(tmp_path / "absent.png")
    with pytest.raises(UnreadableFileError, match="folder"):
        prep.read_image(tmp_path)
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(UnreadableFileError):
        prep.read_image(tmp_path / "empty.dcm")


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.open(REPO / "resources/samples/images/chest_xray_normal.png").save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png_bytes()
DICOM = (REPO / "resources/samples/images/fetal_head_ultrasound.dcm").read_bytes()


@settings(max_examples=int(os.environ.get("HEALTHFM_FUZZ_EXAMPLES", 80)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.sampled_from([PNG, DICOM]),
    cut=st.integers(min_value=0, max_value=4000),
    flips=st.lists(st.tuples(st.integers(0, 40000), st.integers(0, 255)), max_size=8),
    suffix=st.sampled_from([".png", ".jpg", ".dcm", ""]),
)
def test_damaged_files_never_crash_the_reader(tmp_path, base, cut, flips, suffix):
    data = bytearray(base[: max(1, len(base) - cut)])
    for position, value in flips:
        if position < len(data):
            data[position] = value
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(bytes(data))
    try:
        image = prep.read_image(path)
    except UserFacingError:
        return
    assert image.pixels.dtype == np.uint8 and image.pixels.ndim == 2
    prep.classifier_input(image)
    prep.segmenter_input(image)
