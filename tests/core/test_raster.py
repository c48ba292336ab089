"""core/imaging/raster.py against OpenCV (a test dependency only): the same pixels, outlines and
ellipses, so the validated image-model figures hold without OpenCV in the bundle."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from healthfm_desktop.core.imaging import raster
from tests.core.test_image_ai_helpers import REPO

FLAGS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
SOURCES = [(28, 28), (56, 56), (120, 160), (57, 43), (540, 800), (13, 9), (224, 224), (7, 3)]
TARGETS = [(28, 28), (144, 208), (100, 80), (57, 43), (300, 200), (33, 17), (1, 9), (64, 64)]


@pytest.mark.parametrize("name", sorted(FLAGS))
@pytest.mark.parametrize("source", SOURCES)
def test_resize_matches_opencv(name, source):
    rng = np.random.default_rng(sum(source))
    grey = rng.integers(0, 256, source).astype(np.uint8)
    floats = rng.random(source).astype(np.float32)
    colour = rng.integers(0, 256, (*source, 3)).astype(np.uint8)
    for height, width in TARGETS:
        for image in (grey, colour):
            expected = cv2.resize(image, (width, height), interpolation=FLAGS[name])
            assert np.array_equal(raster.resize(image, (width, height), name), expected), (source, height, width)
        expected = cv2.resize(floats, (width, height), interpolation=FLAGS[name])
        got = raster.resize(floats, (width, height), name)
        # 8-bit results are bit-identical; float linear differs in the last bits of large shrinks
        assert got.dtype == np.float32 and np.abs(got - expected).max() < 1e-4, (source, height, width)


def test_resize_refuses_bad_sizes_with_a_message():
    with pytest.raises(ValueError, match="interpolation"):
        raster.resize(np.zeros((4, 4), np.uint8), (2, 2), "cubic")
    with pytest.raises(ValueError, match="cannot resize"):
        raster.resize(np.zeros((0, 4), np.uint8), (2, 2))


def test_colour_grey_sobel_and_shift_match_opencv():
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (120, 90, 3)).astype(np.uint8)
    assert np.array_equal(raster.rgb_to_grey(rgb), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    ramp = np.arange(256, dtype=np.uint8)[None]
    jet = cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    assert np.abs(raster.jet(ramp).astype(int) - jet).max() <= 1  # one half rounds the other way
    image = rng.random((64, 80)).astype(np.float32)
    assert np.abs(raster.sobel(image, axis=1) - cv2.Sobel(image, cv2.CV_32F, 1, 0)).max() < 1e-5
    assert np.abs(raster.sobel(image, axis=0) - cv2.Sobel(image, cv2.CV_32F, 0, 1)).max() < 1e-5
    plane = (rng.random((50, 60)) * 1000).astype(np.float32)
    for dy, dx in ((0.3, -1.7), (2.49, 0.01), (-3.2, 4.9), (0.0157, 0.5), (-7.0, 0.0)):
        expected = cv2.warpAffine(plane, np.float32([[1, 0, dx], [0, 1, dy]]), (60, 50), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=float(plane.min()))
        assert np.abs(raster.shift_linear(plane, dy, dx, float(plane.min())) - expected).max() < 1e-3


def test_png_bytes_round_trip():
    rgb = np.random.default_rng(2).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(raster.png_bytes(rgb)))), rgb)


def _opencv_region_and_outline(mask):
    binary = (mask > 0).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(binary)
    if contours:
        biggest = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
        cv2.drawContours(filled, [biggest], -1, 1, thickness=cv2.FILLED)
    outline, _ = cv2.findContours(filled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return filled, (max(outline, key=cv2.contourArea)[:, 0, :] if outline else None)


def test_regions_outlines_and_ellipses_match_opencv_on_hc18_masks():
    """The HC18 validation masks, and the same with specks and holes punched in: the same filled
    region, the same outline points (with repeats) and the same ellipse as OpenCV."""
    masks = np.load(REPO / "models" / "training" / "data" / "images" / "hc18_seg_144x208.npz")["val_masks"]
    rng = np.random.default_rng(11)
    noisy = []
    for mask in masks[:40]:
        mask = (mask > 0).astype(np.uint8)
        noise = rng.random(mask.shape)
        mask[noise < 0.01], mask[noise > 0.995] = 1, 0
        noisy.append(mask)
    checked = 0
    for mask in [*masks, *noisy]:
        expected_region, expected_outline = _opencv_region_and_outline(mask)
        region = raster.largest_filled_region(mask)
        assert np.array_equal(region, expected_region)
        if region.sum() < 20:
            continue
        outline = raster.trace_outline(region)
        assert sorted(map(tuple, outline)) == sorted(map(tuple, expected_outline))
        (cx, cy), (w, h), angle = cv2.fitEllipse(expected_outline.astype(np.float32))
        (mx, my), (mw, mh), mangle = raster.fit_ellipse(outline)
        assert np.allclose([mx, my, mw, mh], [cx, cy, w, h], atol=1e-3) and abs(mangle - angle) < 1e-3
        checked += 1
    assert checked >= len(masks)


def test_fit_ellipse_matches_opencv_on_noisy_ellipses():
    rng = np.random.default_rng(5)
    for _ in range(100):
        t = rng.uniform(0, 2 * np.pi, 200)
        a, b = rng.uniform(5, 100, 2)
        theta = rng.uniform(-np.pi, np.pi)
        x, y = a * np.cos(t), b * np.sin(t)
        points = np.stack([300 + x * np.cos(theta) - y * np.sin(theta), 200 + x * np.sin(theta) + y * np.cos(theta)], 1)
        points = (points + rng.normal(0, 1, points.shape)).astype(np.float32)
        (cx, cy), (w, h), angle = cv2.fitEllipse(points)
        (mx, my), (mw, mh), mangle = raster.fit_ellipse(points)
        assert np.allclose([mx, my, mw, mh, mangle], [cx, cy, w, h, angle], atol=1e-3)
    with pytest.raises(ValueError, match="5 points"):
        raster.fit_ellipse(np.zeros((4, 2)))


def test_an_empty_mask_has_no_region():
    assert raster.largest_filled_region(np.zeros((10, 10), np.uint8)).sum() == 0
    assert len(raster.trace_outline(np.zeros((10, 10), bool))) == 0
