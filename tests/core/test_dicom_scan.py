"""Import: folders, zips, DICOMDIR, files without preamble, hostile archives, grouping, sorting,
splitting; driven by tests/data/dicom/manifest.csv."""

from __future__ import annotations

import os
import shutil
import zipfile

import numpy as np
import pytest

from healthfm_desktop.core.errors import UnsafeArchiveError
from healthfm_desktop.core.imaging.scanning import scan_paths
from healthfm_desktop.core.imaging.sources import check_archive
from tests.core.dicom_manifest import CT_SERIES, DICOM, MR_SERIES, manifest_rows, rows_where


def _reasons(result) -> dict[str, str]:
    return {p.rsplit("/", 1)[-1]: r for p, r in result.rejected}


def test_single_files_match_the_manifest_header_facts():
    for row in rows_where("single/"):
        result = scan_paths([DICOM / row["path"]])
        assert not result.rejected, (row["path"], result.rejected)
        assert len(result.series) == 1, row["path"]
        series = result.series[0]
        assert series.modality == row["modality"], row["path"]
        assert series.photometric == row["photometric"], row["path"]
        assert (series.rows, series.columns) == (int(row["rows"]), int(row["cols"])), row["path"]
        assert series.frame_count == int(row["frames"]), row["path"]
        assert series.transfer_syntaxes == [row["transfer_syntax_uid"]], row["path"]


def test_ct_series_sorted_by_position_not_file_name(tmp_path):
    # copies named in the reverse of their slice order: sorting must follow the geometry
    originals = sorted(CT_SERIES.glob("*.dcm"), key=lambda p: int(p.name[1:-4]))
    for k, path in enumerate(reversed(originals)):
        shutil.copy(path, tmp_path / f"slice_{k:02d}.dcm")
    result = scan_paths([tmp_path])
    assert len(result.series) == 1 and not result.rejected
    series = result.series[0]
    assert series.frame_count == 20
    locations = [series.slice_location(i) for i in range(series.frame_count)]
    assert np.all(np.diff(locations) > 0)
    np.testing.assert_allclose(np.diff(locations), 1.0, atol=1e-3)
    names = [f.instance.source.path.name for f in series.frames]
    assert names == sorted(names, reverse=True)


def test_mr_series_170_slices_one_stack_with_overlay_facts():
    result = scan_paths([MR_SERIES])
    assert [s.frame_count for s in result.series] == [170]
    series = result.series[0]
    assert series.stack_count == 1 and series.modality == "MR"
    assert series.pixel_spacing == pytest.approx((1.0, 1.0), abs=0.01)
    assert series.spacing_source == "PixelSpacing"
    assert series.patient_name  # overlays have something to show
    assert len({row["series_uid"] for row in rows_where("series/MR_")}) == 1
    assert series.series_uid == rows_where("series/MR_")[0]["series_uid"]


def test_folder_scan_reports_every_bad_file_and_never_stops():
    result = scan_paths([DICOM / "bad"])
    reasons = _reasons(result)
    assert "path traversal" in reasons["zip_slip.zip"]
    assert "zip bomb" in reasons["zip_bomb.zip"]
    assert "truncated" in reasons["MR_truncated_pixeldata.dcm"]
    assert "no pixel data" in reasons["SR_no_pixel_data.dcm"]
    assert "no pixel data" in reasons["RTPLAN_no_meta_explicit_LE.dcm"]
    assert "NumberOfFrames" in reasons["RTDOSE_bad_VR_value.dcm"]
    assert "meta_missing_transfer_syntax.dcm" in reasons
    indexed = {f.instance.source.path.name for s in result.series for f in s.frames}
    # files without preamble/File Meta are force-read when they parse as a dataset
    assert {"CT_no_preamble_no_meta.dcm", "OT_palette_no_meta_implicit.dcm", "CT_explicit_VR_all_UN.dcm"} <= indexed


def test_unsafe_archives_raise_unsafe_archive_error():
    with pytest.raises(UnsafeArchiveError, match="path traversal"):
        check_archive(DICOM / "bad" / "zip_slip.zip")
    with pytest.raises(UnsafeArchiveError, match="zip bomb"):
        check_archive(DICOM / "bad" / "zip_bomb.zip")


def test_zip_with_too_many_members_is_refused(tmp_path, monkeypatch):
    from healthfm_desktop.core.imaging import sources

    monkeypatch.setattr(sources, "MAX_ARCHIVE_MEMBERS", 3)
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for k in range(5):
            zf.writestr(f"f{k}.dcm", b"x")
    result = scan_paths([archive])
    assert "members" in result.rejected[0][1]


def test_good_zip_and_dicomdir_and_folder_agree():
    from_zip = scan_paths([DICOM / "zip" / "series_MR700_7files.zip"])
    assert not from_zip.rejected
    assert sum(s.frame_count for s in from_zip.series) == 7
    assert all(f.instance.source.in_archive for s in from_zip.series for f in s.frames)
    pixels = from_zip.series[0].load_frame(0)
    assert pixels.shape == (16, 16) and pixels.dtype == np.float32

    from_dicomdir = scan_paths([DICOM / "dicomdir" / "DICOMDIR"])
    rows = rows_where("dicomdir/")
    image_rows = [r for r in rows if r["decodes"] == "yes"]
    assert sum(s.frame_count for s in from_dicomdir.series) == len(image_rows) == 31
    assert not from_dicomdir.rejected
    # the DICOMDIR's own records (read with pydicom) are the reference: 6 studies, 13 series
    import pydicom

    records = pydicom.dcmread(DICOM / "dicomdir" / "DICOMDIR").DirectoryRecordSequence
    assert len(from_dicomdir.studies) == sum(r.DirectoryRecordType == "STUDY" for r in records) == 6
    assert len({s.series_uid for s in from_dicomdir.series}) == sum(r.DirectoryRecordType == "SERIES" for r in records)
    assert {s.series_uid for s in from_dicomdir.series} == {r["series_uid"] for r in image_rows}

    from_folder = scan_paths([DICOM / "dicomdir"])
    assert sum(s.frame_count for s in from_folder.series) == 31  # DICOMDIR not counted twice


def test_series_with_mixed_sizes_is_split_with_a_note(tmp_path):
    for name in ("US_palette_cropped.dcm", "US_palette_rle.dcm"):  # one series UID, 350x800 and 600x800
        shutil.copy(DICOM / "single" / name, tmp_path / name)
    result = scan_paths([tmp_path])
    assert sorted(s.rows for s in result.series) == [350, 600]
    assert {s.stack_count for s in result.series} == {2}
    assert len({s.key for s in result.series}) == 2
    assert any("split into 2" in note for note in result.notes)


def test_enhanced_multiframe_uses_per_frame_geometry():
    series = scan_paths([DICOM / "single" / "MR_enhanced_siemens_xa10.dcm"]).series[0]
    assert series.frame_count == 6
    positions = [f.position for f in series.frames]
    assert all(p is not None for p in positions) and len(set(positions)) == 6
    np.testing.assert_allclose(np.diff([series.slice_location(i) for i in range(6)]), 2.4, atol=1e-3)
    assert all(f.pixel_spacing == pytest.approx((3.375, 3.375)) for f in series.frames)
    assert series.frames[0].spacing_source == "PixelSpacing"
    # per-frame VOI from the Frame VOI LUT Sequence, not one window for all
    assert len({f.window_centers for f in series.frames}) > 1

    ct = scan_paths([DICOM / "single" / "CT_enhanced_2f_supplemental_palette.dcm"]).series[0]
    assert [f.frame_index for f in ct.frames] == [1, 0]  # frame 2 lies lower: shown first
    assert all(f.modality_transform.intercept == -1024.0 for f in ct.frames)


def test_progress_and_cancel():
    calls = []
    result = scan_paths([CT_SERIES], progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (20, 20)
    cancelled = scan_paths([CT_SERIES], cancel=lambda: True)
    assert cancelled.cancelled and not cancelled.series
    assert result.series[0].frame_count == 20


def test_non_dicom_and_missing_paths_are_rejected_with_reasons(tmp_path):
    (tmp_path / "notes.txt").write_text("chest pain, no fever\n" * 20)
    (tmp_path / "empty.dcm").write_bytes(b"")
    result = scan_paths([tmp_path, tmp_path / "missing.dcm"])
    reasons = _reasons(result)
    assert "not a DICOM file" in reasons["notes.txt"]
    assert "empty" in reasons["empty.dcm"]
    assert "no such file" in reasons["missing.dcm"]


def test_manifest_lists_exactly_the_files_present():
    listed = {row["path"] for row in manifest_rows()}
    present = {
        str(p.relative_to(DICOM))
        for p in DICOM.rglob("*")
        if p.is_file() and p.name not in ("README.md", "manifest.csv", "make_zip_cases.py", "make_bad_jpeg_lossless.py")
    }
    assert listed == present


def test_body_encoded_implicit_although_the_meta_says_explicit_is_read_not_called_truncated():
    """pydicom's SC_rgb_jpeg.dcm declares Explicit VR (JPEG Baseline) but its data set is encoded
    Implicit VR; pydicom decodes it, so must we (the VR of the pixel element decides, not the
    declared syntax)."""
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file("SC_rgb_jpeg.dcm")
    result = scan_paths([path])
    assert not result.rejected, result.rejected
    (series,) = result.series
    frame = series.load_frame(0)
    assert frame.shape == pydicom.dcmread(path).pixel_array.shape == (256, 256, 3)


def _opened_files(monkeypatch, under) -> list[str]:
    """Every file under ``under`` this process opens from now on (builtins.open and os.open)."""
    import builtins
    import os

    root, opened = os.path.realpath(under), []
    real_open, real_os_open = builtins.open, os.open

    def record(path) -> None:
        if isinstance(path, (str, os.PathLike)) and os.path.realpath(path).startswith(root):
            opened.append(os.path.realpath(path))

    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: record(path) or real_open(path, *a, **k))
    monkeypatch.setattr(os, "open", lambda path, *a, **k: record(path) or real_os_open(path, *a, **k))
    return opened


def _series_facts(result) -> list:
    return [(s.series_uid, s.stack_number, [(str(f.instance.source), f.frame_index, f.position) for f in s.frames])
            for s in result.series]


def test_files_the_routing_read_are_not_opened_again_and_give_the_same_series(monkeypatch, tmp_path):
    from healthfm_desktop.core.routing import route_paths

    plain = scan_paths([CT_SERIES])
    opened = _opened_files(monkeypatch, CT_SERIES)
    routing = route_paths([CT_SERIES], keep_contents=True)
    assert len(routing.contents) == len(set(opened)) == 16  # the routing sniffs 16 files, each read whole once
    offered = []
    scanned = scan_paths([CT_SERIES], read_ahead=routing.contents, first=lambda instance: offered.append(instance) or True)
    files = sorted(os.path.realpath(p) for p in CT_SERIES.iterdir() if p.is_file())
    assert sorted(opened) == files  # every file opened once, the routing's 16 and the scan's others
    assert _series_facts(scanned) == _series_facts(plain) and not scanned.rejected
    # the first file offered is the middle one in name order, and it is indexed once
    assert [i.source.path.name for i in offered] == [sorted(p.name for p in CT_SERIES.iterdir())[len(files) // 2]]
    assert offered[0] in [f.instance for f in scanned.series[0].frames]


def test_a_zip_without_its_name_is_found_by_the_scan_with_the_same_result(monkeypatch, tmp_path):
    renamed = tmp_path / "study_export"
    shutil.copy(DICOM / "zip" / "series_MR700_7files.zip", renamed)
    (tmp_path / "zz_after.dcm").write_bytes((DICOM / "single" / "CT_small.dcm").read_bytes())
    named = scan_paths([DICOM / "zip" / "series_MR700_7files.zip", tmp_path / "zz_after.dcm"])
    found = scan_paths([tmp_path])
    assert not found.rejected and not named.rejected
    # the members are indexed where the zip stood in the folder (before zz_after.dcm)
    facts = [[(f.instance.source.member, f.position) for f in s.frames] for s in found.series]
    assert facts == [[(f.instance.source.member, f.position) for f in s.frames] for s in named.series]
    assert sum(s.frame_count for s in found.series) == 8 and facts[-1] == [(None, found.series[-1].frames[0].position)]
