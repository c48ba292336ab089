"""Hostile DICOM input (issue 18, cases 1-3 and 12): FIFOs and device links in a folder, a
JPEG-LS frame of height 0, zips with many members or one huge member, truncated pixel data in
a series, and the GPL-3 libjpeg plugin kept out of decoding."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import UID

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.imaging import decoding, sources
from healthfm_desktop.core.imaging.scanning import scan_paths
from tests.core.dicom_manifest import CT_SERIES, DICOM

REPO = Path(__file__).resolve().parents[2]
GOOD = DICOM / "single" / "MR_small_explicit.dcm"
JPEG_LS = DICOM / "single" / "MR_small_jpegls_lossless.dcm"
MR_SMALL_SERIES = "1.3.6.1.4.1.5962.1.3.4.1.20040826185059.5457"


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "healthfm_desktop", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))


# --- case 1: the folder walk reads regular files only ------------------------------------


@pytest.mark.timeout(60)  # the old walk blocked forever in open() on the FIFO
def test_a_fifo_in_a_folder_is_rejected_without_being_opened(tmp_path):
    shutil.copy(GOOD, tmp_path / "good.dcm")
    os.mkfifo(tmp_path / "pipe.dcm")
    result = scan_paths([tmp_path])
    assert [s.series_uid for s in result.series] == [MR_SMALL_SERIES]
    assert result.rejected == [(str(tmp_path / "pipe.dcm"), "not read: a named pipe (FIFO), not a regular file")]


@pytest.mark.timeout(60)
def test_a_link_to_dev_zero_is_rejected_and_the_scan_goes_on(tmp_path):
    shutil.copy(GOOD, tmp_path / "good.dcm")
    os.symlink("/dev/zero", tmp_path / "zero.dcm")
    os.symlink(tmp_path / "missing.dcm", tmp_path / "broken.dcm")
    result = scan_paths([tmp_path])
    assert len(result.series) == 1 and result.series[0].load_frame(0).shape == (64, 64)
    reasons = dict(result.rejected)
    assert reasons[str(tmp_path / "zero.dcm")] == "not read: a device (through a link), not a regular file"
    assert reasons[str(tmp_path / "broken.dcm")] == "no such file (or a broken link)"


@pytest.mark.timeout(120)
def test_cli_scan_of_a_folder_with_a_fifo_reports_it_and_exits_1(tmp_path):
    shutil.copy(GOOD, tmp_path / "good.dcm")
    os.mkfifo(tmp_path / "pipe.dcm")
    done = _cli("dicom", "scan", str(tmp_path), "--json")
    assert done.returncode == 1
    objects = [json.loads(line) for line in done.stdout.splitlines()]
    assert {"path": str(tmp_path / "pipe.dcm"), "error": "not read: a named pipe (FIFO), not a regular file"} in objects
    assert any(o.get("series_uid") == MR_SMALL_SERIES and o["decodable"] for o in objects)
    assert f"{tmp_path / 'pipe.dcm'}: not read: a named pipe (FIFO)" in done.stderr


def test_a_file_over_the_size_cap_is_not_read(tmp_path, monkeypatch):
    from healthfm_desktop.core import user_files

    shutil.copy(GOOD, tmp_path / "good.dcm")
    monkeypatch.setattr(user_files, "MAX_USER_FILE_BYTES", 1000)
    with pytest.raises(UnreadableFileError, match="over the 0 GiB limit"):
        user_files.open_regular_file(tmp_path / "good.dcm", max_bytes=user_files.MAX_USER_FILE_BYTES)


# --- case 2: a frame's declared geometry is checked before any decoder runs ----------------


def _with_sof_height(tmp_path: Path, height: int) -> Path:
    raw = bytearray(JPEG_LS.read_bytes())
    sof = raw.find(b"\xff\xf7")  # JPEG-LS SOF55: length(2) precision(1) height(2) width(2)
    raw[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    path = tmp_path / f"jls_height_{height}.dcm"
    path.write_bytes(bytes(raw))
    return path


def test_zero_height_jpeg_ls_frame_is_refused_before_decoding(tmp_path, monkeypatch):
    path = _with_sof_height(tmp_path, 0)
    series = scan_paths([path]).series[0]

    def no_decoder(*args, **kwargs):
        raise AssertionError("a decoder was called on a frame whose geometry is known to be wrong")

    monkeypatch.setattr(decoding, "pixel_array", no_decoder)
    with pytest.raises(decoding.DecodeError, match="codestream declares a 64 x 0 frame"):
        series.load_frame(0)


def test_jpeg_ls_frame_taller_than_its_header_is_refused(tmp_path):
    series = scan_paths([_with_sof_height(tmp_path, 4096)]).series[0]
    with pytest.raises(decoding.DecodeError, match="holds a 64 x 4096 frame but the header says 64 x 64"):
        series.load_frame(0)


@pytest.mark.timeout(120)
def test_cli_render_of_a_zero_height_frame_exits_1_with_the_reason(tmp_path):
    path = _with_sof_height(tmp_path, 0)
    done = _cli("dicom", "render", str(path), "--series", MR_SMALL_SERIES, "--out", str(tmp_path / "x.png"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{path}: " in done.stderr and "64 x 0 frame" in done.stderr
    assert not (tmp_path / "x.png").exists()


def test_bad_scan_header_is_reported_not_rendered():
    # GDCM prints "Invalid SOS parameters" and still returns pixels: they are known wrong
    series = scan_paths([DICOM / "bad" / "NM_jpeg_extended_bad_SOS.dcm"]).series[0]
    with pytest.raises(decoding.DecodeError, match=r"invalid scan \(SOS\) parameters for sequential JPEG"):
        series.load_frame(0)


# --- case 12: the GPL-3 libjpeg plugin is never used ---------------------------------------


@pytest.mark.parametrize("uid", sorted(decoding._LIBJPEG_SYNTAXES))
def test_jpeg_syntaxes_never_use_the_gpl_libjpeg_plugin(uid):
    plugins = decoding._plugins_for(UID(uid))
    assert plugins and "pylibjpeg" not in plugins


def test_twelve_bit_jpeg_extended_decodes_without_libjpeg():
    path = DICOM / "single" / "NM_jpeg_extended_12bit.dcm"
    stored = scan_paths([path]).series[0].load_stored(0).astype(np.int64)
    # what pylibjpeg-libjpeg 2.2.0 decoded (before it was dropped); lossy: IDCT rounding differs by 1
    assert stored.shape == (1024, 256) and stored.min() == 0 and abs(int(stored.max()) - 264) <= 1
    assert abs(int(stored.sum()) - 3_770_427) <= 4000
    np.testing.assert_allclose(stored[500, 100:110], [31, 28, 24, 21, 24, 24, 23, 22, 22, 21], atol=1)


# --- held-back case: truncated pixel data inside a series -----------------------------------


def test_truncated_compressed_file_is_that_files_error_and_the_series_stays_usable(tmp_path):
    files = sorted(CT_SERIES.iterdir())[:4]
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    victim = tmp_path / files[2].name
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size * 2 // 3])
    result = scan_paths([tmp_path])
    usable = [s for s in result.series if s.frame_count]
    rejected = dict(result.rejected)
    if str(victim) in rejected:  # refused at indexing
        assert "truncated" in rejected[str(victim)]
        assert sum(s.frame_count for s in usable) == 3
    else:  # indexed, refused when decoded
        series = usable[0]
        outcomes = {}
        for k in range(series.frame_count):
            try:
                outcomes[series.frames[k].instance.source.path.name] = series.load_frame(k).shape
            except UnreadableFileError as exc:
                outcomes[series.frames[k].instance.source.path.name] = str(exc)
        assert "truncated" in outcomes.pop(victim.name)
        assert set(outcomes.values()) == {(512, 512)}


def test_truncated_native_file_in_a_series_is_rejected_and_the_rest_loads(tmp_path):
    shutil.copy(GOOD, tmp_path / "good.dcm")
    shutil.copy(DICOM / "bad" / "MR_truncated_pixeldata.dcm", tmp_path / "truncated.dcm")
    result = scan_paths([tmp_path])
    assert dict(result.rejected)[str(tmp_path / "truncated.dcm")].startswith("truncated: pixel data has")
    assert result.series[0].frame_count == 1 and result.series[0].load_frame(0).shape == (64, 64)


# --- held-back case: a JPEG Lossless codestream whose values are known wrong ----------------

BAD_LOSSLESS = DICOM / "bad" / "CT_jpeg_lossless_bad_codestream.dcm"  # slice I700, Huffman bytes damaged
CT_SERIES_UID = "1.3.46.670589.33.1.3963937485511329090.25659488233390035616"


def test_damaged_lossless_scan_is_that_files_error_and_its_series_stays_usable(tmp_path):
    import pydicom
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(BAD_LOSSLESS)
    codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
    # every marker and header is valid: only the decoder can tell, and it still returns pixels
    decoding.check_codestream(codestream, 512, 512, ds.file_meta.TransferSyntaxUID, 16)
    for name in ("I690.dcm", "I710.dcm"):
        shutil.copy(CT_SERIES / name, tmp_path / name)
    shutil.copy(BAD_LOSSLESS, tmp_path / "I700.dcm")
    result = scan_paths([tmp_path])
    assert not result.rejected and len(result.series) == 1 and result.series[0].frame_count == 3
    series = result.series[0]
    outcomes = {}
    for k in range(3):
        name = series.frames[k].instance.source.path.name
        try:
            outcomes[name] = series.load_stored(k)
        except UnreadableFileError as exc:
            outcomes[name] = str(exc)
    assert "the decoder reports \"Corrupt JPEG data" in outcomes["I700.dcm"]
    assert "values are wrong" in outcomes["I700.dcm"]
    for name in ("I690.dcm", "I710.dcm"):  # the neighbours decode to their own values
        np.testing.assert_array_equal(outcomes[name], pydicom.dcmread(CT_SERIES / name).pixel_array)


@pytest.mark.timeout(120)
def test_cli_render_of_the_damaged_lossless_file_exits_1(tmp_path):
    done = _cli("dicom", "render", str(BAD_LOSSLESS), "--series", CT_SERIES_UID, "--out", str(tmp_path / "x.png"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{BAD_LOSSLESS}: corrupt JPEG Lossless" in done.stderr and "values are wrong" in done.stderr
    assert not (tmp_path / "x.png").exists()
    good = _cli("dicom", "render", str(CT_SERIES / "I700.dcm"), "--series", CT_SERIES_UID, "--out", str(tmp_path / "y.png"))
    assert good.returncode == 0 and (tmp_path / "y.png").stat().st_size > 1000


def test_lossless_sv1_scan_with_another_predictor_is_refused(tmp_path):
    # Transfer syntax .70 allows selection value 1 only; GDCM decodes predictor 6 without a word
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    source = DICOM / "single" / "NM_jpeg_lossless_sv1.dcm"
    ds = pydicom.dcmread(source)
    codestream = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    sos = codestream.find(b"\xff\xda")
    predictor_at = sos + 5 + 2 * codestream[sos + 4]
    assert codestream[predictor_at] == 1
    codestream[predictor_at] = 6
    ds.PixelData = encapsulate([bytes(codestream)])
    ds.save_as(tmp_path / "predictor6.dcm")
    assert scan_paths([source]).series[0].load_stored(0).shape == (1024, 256)
    series = scan_paths([tmp_path / "predictor6.dcm"]).series[0]
    with pytest.raises(decoding.DecodeError, match="the scan uses predictor 6 but its transfer syntax"):
        series.load_stored(0)


# --- case 3: zips -------------------------------------------------------------------------


def test_many_member_zip_parses_its_directory_once(tmp_path, monkeypatch):
    path = tmp_path / "many.zip"
    body = GOOD.read_bytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for k in range(2000):
            archive.writestr(f"m/{k:05d}.dcm", body if k < 3 else b"not dicom")
    opened = []
    real = zipfile.ZipFile

    class CountingZipFile(real):
        def __init__(self, *args, **kwargs):
            opened.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sources.zipfile, "ZipFile", CountingZipFile)
    monkeypatch.setattr(sources, "_open_archives", sources._OpenArchives())
    result = scan_paths([path])
    assert len(opened) == 1  # was once per member: quadratic in the member count
    assert len(result.rejected) == 1997 and result.series[0].frame_count == 3  # 3 copies of one SOP


def write_big_member_zip(path: Path, frames: int, rows: int = 2048, columns: int = 2048) -> int:
    """A zip whose member ``big.dcm`` is a valid DICOM object of ``frames`` 16-bit frames of
    sparse random values: it deflates about 25:1, under the ratio a zip bomb is refused at."""
    import io

    import pydicom

    ds = pydicom.dcmread(GOOD)
    del ds.PixelData
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    head = io.BytesIO()
    ds.save_as(head, enforce_file_format=True)
    frame = np.zeros(rows * columns * 2, np.uint8)
    frame[::64] = np.random.default_rng(0).integers(0, 256, len(frame[::64]))
    length = frame.size * frames
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("big.dcm", "w", force_zip64=True) as handle:
            handle.write(head.getvalue() + b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little"))
            for _ in range(frames):
                handle.write(frame.tobytes())
        archive.write(GOOD, "ok.dcm")
    return length


def test_a_large_member_is_indexed_without_holding_it_in_memory(tmp_path):
    path = tmp_path / "large.zip"
    size = write_big_member_zip(path, frames=12)  # 96 MiB, as the 900 MiB member of the report
    assert zipfile.ZipFile(path).getinfo("big.dcm").compress_size * 20 < size
    tracemalloc.start()
    try:
        result = scan_paths([path])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 * 1024**2  # it was read whole (and copied) to read its header
    assert not result.rejected
    big = next(s for s in result.series if s.rows == 2048)
    assert big.frame_count == 12 and big.load_stored(11).shape == (2048, 2048)


def test_total_expansion_per_import_is_capped(tmp_path, monkeypatch):
    from healthfm_desktop.core.imaging import scanning

    for name in ("a.zip", "b.zip"):
        with zipfile.ZipFile(tmp_path / name, "w") as archive:
            archive.write(GOOD, "x.dcm")
    monkeypatch.setattr(scanning, "MAX_IMPORT_ARCHIVE_BYTES", GOOD.stat().st_size + 10)
    result = scan_paths([tmp_path / "a.zip", tmp_path / "b.zip"])
    assert len(result.series) == 1
    (path, reason), = result.rejected
    assert path == str(tmp_path / "b.zip") and "per import" in reason


@pytest.mark.timeout(300)
def test_cli_scan_of_a_large_multiframe_member_checks_it_frame_by_frame(tmp_path, monkeypatch):
    from healthfm_desktop.batch import dicom as batch_dicom

    path = tmp_path / "large.zip"
    write_big_member_zip(path, frames=6, rows=1024, columns=1024)  # 12 MiB of frames
    monkeypatch.setattr(batch_dicom, "_WHOLE_OBJECT_BYTES", 4 * 1024**2)
    asked = []
    from healthfm_desktop.core.imaging import decoding

    original = decoding.decode_stored

    def spy(instance, index=None):
        asked.append(index)
        return original(instance, index)

    monkeypatch.setattr(decoding, "decode_stored", spy)
    result = scan_paths([path])
    assert batch_dicom._decode_failures(result.series, workers=1) == []
    assert None in asked and sorted(i for i in asked if i is not None) == list(range(6))  # ok.dcm whole, big by frame


def test_jpeg_lossless_precision_beyond_bits_allocated_is_reported(tmp_path):
    import pydicom

    ds = pydicom.dcmread(DICOM / "single" / "NM_jpeg_lossless_sv1.dcm")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7  # the 16-bit codestream cannot fit: values wrong
    path = tmp_path / "lossless_bits.dcm"
    ds.save_as(path)
    series = scan_paths([path]).series[0]
    with pytest.raises(decoding.DecodeError, match="16-bit samples but the header allocates 8 bits"):
        series.load_frame(0)


def test_truncated_jpeg_codestream_is_reported_not_padded(tmp_path):
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(DICOM / "single" / "NM_jpeg_lossless_sv1.dcm")
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) * 3 // 4]])  # cut, still a well-formed encapsulation
    path = tmp_path / "lossless_cut.dcm"
    ds.save_as(path)
    series = scan_paths([path]).series[0]
    with pytest.raises(decoding.DecodeError, match="no end-of-image marker"):
        series.load_frame(0)
