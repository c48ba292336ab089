"""`healthfm dicom scan / render / mpr` to the CLI.md contract: fields, JSON Lines only on
stdout, `path: reason` on stderr, exit codes."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from healthfm_desktop.cli import main
from tests.core.dicom_manifest import CT_SERIES, DICOM, MR_SERIES, rows_where

SERIES_FIELDS = {"study_uid", "series_uid", "modality", "description", "instances", "frames", "rows", "columns",
                 "transfer_syntaxes", "decodable"}


def _scan(capsys, *paths):
    code = main(["dicom", "scan", *map(str, paths), "--json"])
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]  # every stdout line is JSON
    return code, records, captured.err


def test_scan_singles_reports_every_series_like_the_manifest(capsys):
    code, records, err = _scan(capsys, DICOM / "single")
    assert code == 0 and "Traceback" not in err
    series = [r for r in records if "series_uid" in r]
    assert all(SERIES_FIELDS <= set(r) for r in series)
    rows = rows_where("single/")
    by_uid: dict[str, list] = {}
    for row in rows:
        by_uid.setdefault(row["series_uid"], []).append(row)
    manifest_uids = {uid for uid in by_uid if uid}
    assert manifest_uids <= {r["series_uid"] for r in series}
    for record in series:
        members = by_uid.get(record["series_uid"])
        if not members:
            continue
        assert record["instances"] == len(members)
        assert record["frames"] == sum(int(m["frames"]) for m in members)
        assert set(record["transfer_syntaxes"]) == {m["transfer_syntax_uid"] for m in members}
        assert record["decodable"] is all(m["decodes"] == "yes" for m in members)
        assert isinstance(record["rows"], int) and isinstance(record["columns"], int)


def test_scan_bad_folder_lists_rejected_files_and_exits_1(capsys):
    code, records, err = _scan(capsys, DICOM / "bad")
    assert code == 1
    rejected = {r["path"].rsplit("/", 1)[-1]: r["error"] for r in records if "error" in r}
    assert set(rejected) >= {"zip_slip.zip", "zip_bomb.zip", "MR_truncated_pixeldata.dcm", "SR_no_pixel_data.dcm",
                             "RTDOSE_bad_VR_value.dcm", "meta_missing_transfer_syntax.dcm"}
    assert all(set(r) == {"path", "error"} for r in records if "error" in r)
    undecodable = [r for r in records if r.get("decodable") is False]
    assert undecodable  # the corrupt JPEG / JPEG 2000 codestreams
    assert "NM_jpeg2000_corrupt_codestream.dcm: corrupt or undecodable" in err
    assert "Traceback" not in err


def test_scan_series_folder_counts(capsys):
    code, records, _ = _scan(capsys, MR_SERIES, CT_SERIES)
    assert code == 0
    frames = sorted(r["frames"] for r in records)
    assert frames == [20, 170]
    assert all(r["decodable"] and r["transfer_syntaxes"] == ["1.2.840.10008.1.2.4.80"] for r in records)


def test_render_errors_are_clear_and_exit_non_zero(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["dicom", "render", str(DICOM / "single" / "CT_small.dcm"), "--series", "1.2.3", "--out", str(out)]) == 1
    assert "no series 1.2.3" in capsys.readouterr().err
    uid = "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322"
    assert main(["dicom", "render", str(DICOM / "single" / "CT_small.dcm"), "--series", uid, "--index", "3", "--out", str(out)]) == 1
    assert "out of range" in capsys.readouterr().err
    assert main(["dicom", "render", str(DICOM / "single" / "CT_small.dcm"), "--series", uid, "--window", "40", "0", "--out", str(out)]) == 2
    assert not out.exists()


def test_render_colour_and_multiframe_index(tmp_path):
    out = tmp_path / "us.png"
    path = DICOM / "single" / "US_YBR_FULL_422_jpeg_cine_30f.dcm"
    uid = "1.2.840.114340.3.8251017118051.2.20160503.120850.2171"
    assert main(["dicom", "render", str(path), "--series", uid, "--index", "29", "--out", str(out)]) == 0
    image = Image.open(out)
    assert image.mode == "RGB" and image.size == (320, 240)


def test_mpr_cli_writes_each_plane_with_physical_aspect(tmp_path, capsys):
    uid = rows_where("series/CT_")[0]["series_uid"]
    sizes = {}
    for plane in ("axial", "coronal", "sagittal"):
        out = tmp_path / f"{plane}.png"
        assert main(["dicom", "mpr", str(CT_SERIES), "--series", uid, "--plane", plane, "--out", str(out)]) == 0
        sizes[plane] = Image.open(out).size
    assert sizes["axial"] == (512, 512)
    # 20 slices of 1 mm against 0.451 mm pixels: 20 / 0.451 = 44 rows
    assert sizes["coronal"] == (512, 44) and sizes["sagittal"] == (512, 44)
    out = tmp_path / "bad.png"
    assert main(["dicom", "mpr", str(CT_SERIES), "--series", uid, "--plane", "axial", "--index", "99", "--out", str(out)]) == 1
    assert "out of range" in capsys.readouterr().err
    assert main(["dicom", "mpr", str(DICOM / "single" / "CT_small.dcm"), "--series",
                 "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322", "--plane", "axial", "--out", str(out)]) == 1
    assert "at least 3 slices" in capsys.readouterr().err


def test_mpr_axial_index_matches_render_index_on_an_axial_series(tmp_path):
    uid = rows_where("series/CT_")[0]["series_uid"]
    a, b = tmp_path / "mpr.png", tmp_path / "render.png"
    assert main(["dicom", "mpr", str(CT_SERIES), "--series", uid, "--plane", "axial", "--index", "4", "--out", str(a)]) == 0
    assert main(["dicom", "render", str(CT_SERIES), "--series", uid, "--index", "4", "--out", str(b)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_self_test_check_scans_the_bundled_sample():
    from healthfm_desktop.checks import collect_checks

    checks = dict(collect_checks())
    assert "6 frames decoded" in checks["DICOM samples scan + decode"]()
    assert "6 object(s) de-identified" in checks["DICOM de-identification"]()
