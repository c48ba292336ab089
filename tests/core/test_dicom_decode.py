"""Decoding every transfer syntax and photometric interpretation in the manifest, checked against
pydicom's own pixel_array (+ Modality LUT / colour conversion) file by file."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_color_lut, apply_modality_lut

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.imaging.scanning import scan_paths
from tests.core.dicom_manifest import DICOM, MR_SERIES, rows_where

LOSSY_JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}
DECODABLE = [r for r in rows_where("single/") + rows_where("dicomdir/") + rows_where("bad/") if r["decodes"] == "yes"]


def _gdcm_reference(path) -> np.ndarray:
    """GDCM's own file reader: the reference where pydicom has no decoder left (12-bit JPEG
    Extended, once the GPL-3 libjpeg plugin is gone)."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(str(path))
    assert reader.Read()
    image = reader.GetImage()
    data = image.GetBuffer().encode("utf-8", "surrogateescape")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    dtype = np.int16 if int(ds.get("PixelRepresentation", 0)) else np.uint16
    return np.frombuffer(data, dtype).reshape(int(ds.Rows), int(ds.Columns))


def _reference_frames(path, forced=False):
    ds = pydicom.dcmread(path, force=forced)
    try:
        arr = ds.pixel_array
    except Exception:  # no decoder left for it in pydicom (12-bit JPEG Extended without libjpeg)
        arr = _gdcm_reference(path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        arr = arr[np.newaxis]
    return ds, arr


@pytest.mark.parametrize("row", DECODABLE, ids=lambda r: r["path"])
def test_every_decodable_file_matches_pydicom(row):
    path = DICOM / row["path"]
    result = scan_paths([path])
    assert len(result.series) == 1 and not result.rejected
    series = result.series[0]
    ds, reference = _reference_frames(path)
    expected_shape = tuple(int(x) for x in row["pixel_shape"].split("x"))
    for index, pixels in series.iter_frames():
        frame = series.frames[index]
        ref = reference[frame.frame_index]
        if row["photometric"] == "PALETTE COLOR":
            rgb = apply_color_lut(ref, ds)
            rgb = (rgb >> 8) if rgb.max() > 255 else rgb
            assert pixels.dtype == np.uint8 and pixels.shape == ref.shape + (3,)
            np.testing.assert_array_equal(pixels, rgb.astype(np.uint8))
        elif int(row["samples_per_pixel"] or 1) == 3:
            assert pixels.dtype == np.uint8 and pixels.shape[-1] == 3
            assert pixels.shape == expected_shape[-3:]
            # lossy JPEG: libjpeg (ours) and the reference's decoder may differ by IDCT rounding
            tolerance = 3 if row["transfer_syntax_uid"] in LOSSY_JPEG else 0
            np.testing.assert_allclose(pixels.astype(int), ref.astype(int), atol=tolerance)
        else:
            assert pixels.dtype == np.float32 and pixels.shape == expected_shape[-2:]
            if "PerFrameFunctionalGroupsSequence" in ds:
                expected = ref * frame.modality_transform.slope + frame.modality_transform.intercept
            else:
                expected = apply_modality_lut(ref, ds)
            tolerance = 3 if row["transfer_syntax_uid"] in LOSSY_JPEG else 1e-3
            np.testing.assert_allclose(pixels, expected, rtol=1e-6, atol=tolerance)


def test_mr_series_slices_decode_like_pydicom():
    series = scan_paths([MR_SERIES]).series[0]
    for index in (0, 85, 169):
        path = series.frames[index].instance.source.path
        ds = pydicom.dcmread(path)
        np.testing.assert_allclose(series.load_frame(index), apply_modality_lut(ds.pixel_array, ds), rtol=1e-6)


def test_file_without_file_meta_is_decoded_with_the_guessed_transfer_syntax():
    path = DICOM / "bad" / "OT_palette_no_meta_implicit.dcm"
    series = scan_paths([path]).series[0]
    assert series.first.forced and series.first.transfer_syntax_guessed
    pixels = series.load_frame(0)
    ds = pydicom.dcmread(path, force=True)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    rgb = apply_color_lut(ds.pixel_array, ds)
    rgb = (rgb >> 8) if rgb.max() > 255 else rgb
    np.testing.assert_array_equal(pixels, rgb.astype(np.uint8))


def test_stray_leading_byte_before_a_bare_dataset():
    path = DICOM / "bad" / "CT_no_preamble_no_meta.dcm"
    series = scan_paths([path]).series[0]
    assert series.first.byte_offset == 1
    reference = scan_paths([DICOM / "single" / "CT_small.dcm"]).series[0]
    np.testing.assert_array_equal(series.load_frame(0), reference.load_frame(0))  # the same CT body


@pytest.mark.parametrize("name", ["NM_jpeg2000_corrupt_codestream.dcm", "NM_jpeg_extended_bad_SOS.dcm"])
def test_corrupt_codestreams_raise_a_clear_error(name):
    series = scan_paths([DICOM / "bad" / name]).series[0]
    with pytest.raises(UnreadableFileError, match="corrupt or undecodable"):
        series.load_frame(0)
    with pytest.raises(UnreadableFileError):
        list(series.iter_frames())


def test_decode_in_parallel_gives_the_same_frames_as_one_by_one():
    series = scan_paths([MR_SERIES]).series[0]
    indices = list(range(40, 60))
    parallel = dict(series.iter_frames(indices, workers=2))
    serial = dict(series.iter_frames(indices, workers=1))
    assert list(parallel) == indices
    for i in indices:
        np.testing.assert_array_equal(parallel[i], serial[i])


def test_multiframe_frames_and_zip_members_decode_lazily():
    cine = scan_paths([DICOM / "single" / "US_YBR_FULL_422_jpeg_cine_30f.dcm"]).series[0]
    assert cine.frame_count == 30
    ds = pydicom.dcmread(DICOM / "single" / "US_YBR_FULL_422_jpeg_cine_30f.dcm")
    np.testing.assert_allclose(cine.load_frame(17).astype(int), ds.pixel_array[17].astype(int), atol=3)
    zipped = scan_paths([DICOM / "zip" / "series_MR700_7files.zip"]).series[0]
    member = zipped.frames[0].instance.source
    ref = pydicom.dcmread(io.BytesIO(member.read_bytes()))
    np.testing.assert_allclose(zipped.load_frame(0), apply_modality_lut(ref.pixel_array, ref))


def test_decoding_in_worker_processes_gives_the_same_frames():
    from healthfm_desktop.core.imaging.parallel_decode import process_pool_available

    series = scan_paths([DICOM / "series" / "CT_head_phantom_philips_1mm_20sl"]).series[0]
    serial = dict(series.iter_frames(range(6), workers=1))
    # the pool forks from a fork server, never from this (threaded, Qt-capable) process
    assert process_pool_available()
    forked = dict(series.iter_frames(range(6), processes=2))
    from healthfm_desktop.core.imaging.parallel_decode import shared_pool

    pool = shared_pool()
    assert pool is not None and pool.ready and pool.failed is None  # really decoded by the workers
    assert list(forked) == list(range(6))
    for i in range(6):
        np.testing.assert_array_equal(forked[i], serial[i])
    corrupt = scan_paths([DICOM / "bad" / "NM_jpeg2000_corrupt_codestream.dcm", DICOM / "single" / "NM_jpeg_lossless_sv1.dcm"])
    with pytest.raises(UnreadableFileError):
        list(corrupt.series[0].iter_frames(processes=2))


def test_modality_lut_sequence_is_applied(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(DICOM / "single" / "CT_small.dcm")
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "HU"
    item.LUTData = (np.arange(4096) * 2).astype("<u2").tobytes()
    item["LUTData"].VR = "OW"
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.ModalityLUTSequence = Sequence([item])
    path = tmp_path / "modality_lut.dcm"
    ds.save_as(path)
    series = scan_paths([path]).series[0]
    assert series.frames[0].modality_transform.lut_dataset is not None
    reread = pydicom.dcmread(path)
    expected = apply_modality_lut(reread.pixel_array, reread)
    np.testing.assert_array_equal(series.load_frame(0), expected)
    np.testing.assert_array_equal(series.load_frame(0), np.clip(reread.pixel_array, 0, 4095) * 2)


def test_pixel_data_read_from_its_place_in_the_file_even_with_trailing_elements(tmp_path):
    ds = pydicom.dcmread(DICOM / "single" / "CT_jpegls_near_lossless.dcm")
    ds.DataSetTrailingPadding = b"\x00" * 64  # (FFFC,FFFC): after the pixel data in the file
    path = tmp_path / "padded.dcm"
    ds.save_as(path)
    series = scan_paths([path]).series[0]
    assert series.first.pixel_value_offset is not None and series.first.pixel_value_length is None
    reference = scan_paths([DICOM / "single" / "CT_jpegls_near_lossless.dcm"]).series[0]
    np.testing.assert_array_equal(series.load_frame(0), reference.load_frame(0))
