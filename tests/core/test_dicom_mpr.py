"""MPR: int16 volume, planes in patient orientation with physical spacing, uneven spacing and
gantry tilt flagged, clear errors for what cannot be reformatted."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from healthfm_desktop.core.imaging.mpr import PLANES, MprError, _PLANE_AXES, build_volume, square_pixels
from healthfm_desktop.core.imaging.scanning import scan_paths
from healthfm_desktop.core.imaging.series import Series
from tests.core.dicom_manifest import CT_SERIES, DICOM, MR_SERIES


@pytest.fixture(scope="module")
def mr_series():
    return scan_paths([MR_SERIES]).series[0]


@pytest.fixture(scope="module")
def mr_volume(mr_series):
    return build_volume(mr_series)


def test_volume_is_int16_of_the_expected_size(mr_volume):
    assert mr_volume.data.dtype == np.int16
    assert mr_volume.shape == (170, 256, 256)
    assert mr_volume.nbytes == 170 * 256 * 256 * 2
    assert mr_volume.spacing == pytest.approx((1.0, 1.0, 1.0), abs=0.01)
    assert not [n for n in mr_volume.notes if "uneven" in n or "tilt" in n]


def test_sagittal_plane_of_a_sagittal_acquisition_is_the_acquired_slice(mr_series, mr_volume):
    # rows run head->feet and columns front->back, as acquired; the index runs right->left
    # while the acquisition's slice normal points to the patient's right
    for k in (0, 50, 169):
        image, spacing = mr_volume.plane_image("sagittal", k)
        np.testing.assert_allclose(image, mr_series.load_frame(169 - k))
        assert spacing == pytest.approx((1.0, 1.0), abs=0.01)


def _lps(series: Series, voxel) -> np.ndarray:
    """Patient position of a voxel (slice, row, column) from the DICOM geometry directly."""
    s, r, c = voxel
    frame = series.frames[int(round(s))]
    row_dir, col_dir = np.array(frame.orientation[:3]), np.array(frame.orientation[3:])
    row_mm, col_mm = frame.pixel_spacing
    return np.array(frame.position) + c * col_mm * row_dir + r * row_mm * col_dir


@pytest.mark.parametrize("plane", PLANES)
def test_planes_are_in_patient_orientation(plane, mr_series, mr_volume):
    """Moving along a plane's index, rows and columns moves the patient point along the axis
    (and the direction) the plane promises: e.g. axial columns go right->left (+x)."""
    centre = mr_volume.voxel_to_plane(plane, (85, 128, 128))
    index, col, row = centre
    origin = _lps(mr_series, mr_volume.plane_to_voxel(plane, index, col, row))
    steps = {
        0: mr_volume.plane_to_voxel(plane, index + 10, col, row),
        1: mr_volume.plane_to_voxel(plane, index, col, row + 10),
        2: mr_volume.plane_to_voxel(plane, index, col + 10, row),
    }
    for position, (patient_axis, sign) in enumerate(_PLANE_AXES[plane]):
        delta = _lps(mr_series, steps[position]) - origin
        assert int(np.argmax(np.abs(delta))) == patient_axis, (plane, position, delta)
        assert np.sign(delta[patient_axis]) == sign, (plane, position, delta)


def test_voxel_plane_round_trip(mr_volume):
    voxel = (12.0, 34.0, 200.0)
    for plane in PLANES:
        index, col, row = mr_volume.voxel_to_plane(plane, voxel)
        assert mr_volume.plane_to_voxel(plane, index, col, row) == pytest.approx(voxel)
        image, (row_mm, col_mm) = mr_volume.plane_image(plane, int(index))
        assert image.shape[0] > row and image.shape[1] > col
        assert image[int(row), int(col)] == pytest.approx(mr_volume.data[12, 34, 200] * mr_volume.scale + mr_volume.offset)


def test_ct_volume_in_hu_and_axial_equals_the_slices():
    series = scan_paths([CT_SERIES]).series[0]
    volume = build_volume(series)
    assert volume.data.dtype == np.int16
    image, spacing = volume.plane_image("axial", 5)
    np.testing.assert_array_equal(image, series.load_frame(5))
    assert spacing == pytest.approx((0.451171875, 0.451171875))
    coronal, (row_mm, col_mm) = volume.plane_image("coronal", 256)
    assert coronal.shape == (20, 512) and row_mm == pytest.approx(1.0) and col_mm == pytest.approx(0.451171875)
    np.testing.assert_array_equal(coronal[0], series.load_frame(19)[256])  # superior slice on top
    assert square_pixels(coronal, (row_mm, col_mm)).shape == (44, 512)
    # a volume from frames already decoded (the viewer's cache) is the same
    from_slices = build_volume(series, [series.load_frame(i) for i in range(20)])
    np.testing.assert_array_equal(from_slices.plane_image("sagittal", 100)[0], volume.plane_image("sagittal", 100)[0])


def test_missing_slice_is_resampled_onto_an_even_grid():
    series = scan_paths([CT_SERIES]).series[0]
    gappy = dataclasses.replace(series, frames=series.frames[:8] + series.frames[9:])
    volume = build_volume(gappy)
    assert any("uneven slice spacing" in note and "resampled to 20 slices" in note for note in volume.notes)
    assert volume.shape == (20, 512, 512) and volume.spacing[0] == pytest.approx(1.0)
    assert volume.data.dtype == np.int16
    for k in (0, 7, 9, 19):  # acquired slices come through untouched
        np.testing.assert_array_equal(volume.plane_image("axial", k)[0], series.load_frame(k))
    # the missing slice 8 is the mean of its neighbours
    expected = np.rint((series.load_frame(7) + series.load_frame(9)) / 2)
    np.testing.assert_allclose(volume.plane_image("axial", 8)[0], expected, atol=1.0)


def test_gantry_tilt_is_flagged_and_corrected():
    """A stack tilted so each slice moves one pixel row along +y (24.3°): the content of slice k
    sits k rows higher in its image. The volume must undo exactly that shear."""
    series = scan_paths([CT_SERIES]).series[0]
    row_mm = series.pixel_spacing[0]
    originals = [series.load_frame(i) for i in range(series.frame_count)]
    tilted_frames, tilted_pixels = [], []
    for k, frame in enumerate(series.frames):
        x, y, z = frame.position
        tilted_frames.append(dataclasses.replace(frame, position=(x, y + k * row_mm, z)))
        shifted = np.full_like(originals[k], originals[k].min())
        shifted[: 512 - k] = originals[k][k:]
        tilted_pixels.append(shifted)
    tilted = dataclasses.replace(series, frames=tilted_frames)
    volume = build_volume(tilted, tilted_pixels)
    angle = np.degrees(np.arctan(row_mm / 1.0))
    assert any("gantry tilt" in note and f"{angle:.1f}°" in note for note in volume.notes)
    assert volume.spacing[0] == pytest.approx(1.0)
    for k in (0, 7, 19):
        np.testing.assert_array_equal(volume.data[k][20:490], originals[k][20:490])
    # and a tilted geometry without the pixel shear would now be sheared: the note says so
    untouched = build_volume(tilted, originals)
    assert not np.array_equal(untouched.data[19][20:490], originals[19][20:490])


def test_what_cannot_be_reformatted_says_why():
    single = scan_paths([DICOM / "single" / "CT_small.dcm"]).series[0]
    with pytest.raises(MprError, match="at least 3 slices"):
        build_volume(single)
    cine = scan_paths([DICOM / "single" / "US_YBR_FULL_422_jpeg_cine_30f.dcm"]).series[0]
    with pytest.raises(MprError, match="colour"):
        build_volume(cine)
    repeated = scan_paths([DICOM / "single" / "MR_small_explicit.dcm", DICOM / "single" / "MR_small_implicit.dcm",
                           DICOM / "single" / "MR_small_RLE.dcm"]).series[0]
    with pytest.raises(MprError):
        build_volume(repeated)


@pytest.mark.parametrize("plane", PLANES)
def test_slabs_equal_the_projection_of_their_planes_and_fit_a_frame(plane, mr_volume):
    import time

    count = mr_volume.plane_count(plane)
    for index, thickness in ((count // 2, 9), (0, 5), (count - 1, 6), (count // 2, 200)):
        first = max(0, index - (thickness - 1) // 2)
        last = min(count - 1, first + thickness - 1)
        planes = np.stack([mr_volume.plane_image(plane, k)[0] for k in range(first, last + 1)])
        for mode, reduce in (("mip", np.max), ("minip", np.min), ("mean", np.mean)):
            slab, spacing = mr_volume.plane_slab(plane, index, thickness, mode)
            assert spacing == mr_volume.plane_image(plane, index)[1] and slab.dtype == np.float32
            np.testing.assert_allclose(slab, reduce(planes, axis=0), rtol=1e-5, atol=1e-4)  # mean: float64 sum
    negative = dataclasses.replace(mr_volume, scale=-1.0, offset=0.0)  # a negative rescale slope
    np.testing.assert_array_equal(negative.plane_slab(plane, count // 2, 7, "mip")[0],
                                  np.max([negative.plane_image(plane, k)[0] for k in range(count // 2 - 3, count // 2 + 4)], axis=0))
    start = time.perf_counter()
    mr_volume.plane_slab(plane, count // 2, 200, "mip")
    print(f"{plane}: 200-plane MIP in {(time.perf_counter() - start) * 1000:.1f} ms")
