"""De-identification (PS3.15 Annex E basic profile): consistent new UIDs across a study, private
tags and identifying attributes gone, pixels byte-identical, burned-in annotation warned."""

from __future__ import annotations

import shutil

import pydicom

from healthfm_desktop.cli import main
from healthfm_desktop.core.imaging.anonymise import Anonymiser, anonymise_paths, anonymise_series
from healthfm_desktop.core.imaging.scanning import scan_paths
from tests.core.dicom_manifest import CT_SERIES, DICOM, MR_SERIES


def _read_all(folder):
    return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]


def test_a_series_keeps_its_structure_under_new_uids(tmp_path):
    originals = [pydicom.dcmread(p) for p in sorted(CT_SERIES.glob("*.dcm"))]
    report = anonymise_paths([CT_SERIES], tmp_path / "out")
    assert len(report.written) == 20 and not report.rejected
    copies = _read_all(tmp_path / "out")
    assert len({c.StudyInstanceUID for c in copies}) == 1
    assert len({c.SeriesInstanceUID for c in copies}) == 1
    assert len({c.FrameOfReferenceUID for c in copies}) == 1
    assert len({c.SOPInstanceUID for c in copies}) == 20
    old_uids = {o.StudyInstanceUID for o in originals} | {o.SeriesInstanceUID for o in originals} | {o.SOPInstanceUID for o in originals}
    new_uids = {c.StudyInstanceUID for c in copies} | {c.SeriesInstanceUID for c in copies} | {c.SOPInstanceUID for c in copies}
    assert not old_uids & new_uids
    assert all(c.file_meta.MediaStorageSOPInstanceUID == c.SOPInstanceUID for c in copies)
    assert all(c.SOPClassUID == originals[0].SOPClassUID for c in copies)  # class UIDs kept
    # pixels untouched: the compressed bytes are identical, matched by geometry
    by_position = {tuple(o.ImagePositionPatient): o.PixelData for o in originals}
    for copy in copies:
        assert copy.PixelData == by_position[tuple(copy.ImagePositionPatient)]
        assert copy.file_meta.TransferSyntaxUID == originals[0].file_meta.TransferSyntaxUID
    # the copies still form one sorted, decodable series
    rescanned = scan_paths([tmp_path / "out"])
    assert [s.frame_count for s in rescanned.series] == [20]
    rescanned.series[0].load_frame(3)


def test_identifying_attributes_and_private_tags_are_removed(tmp_path):
    path = sorted(MR_SERIES.glob("*.dcm"))[0]
    original = pydicom.dcmread(path)
    assert any(e.tag.is_private for e in original)
    out = tmp_path / "out"
    report = anonymise_paths([path], out)
    copy = pydicom.dcmread(report.written[0])
    assert not any(e.tag.is_private for e in copy)
    assert not any(e.tag.is_private for e in copy.iterall())
    for keyword in ("InstitutionName", "StationName", "DeviceSerialNumber", "PatientBirthTime", "OperatorsName",
                    "AcquisitionDate", "SeriesDate", "ReferringPhysicianName", "PatientAge", "PatientWeight"):
        if keyword in copy:
            assert copy.data_element(keyword).value in ("", None), keyword
    if original.get("PatientName"):
        assert str(copy.PatientName) != str(original.PatientName)
    assert copy.get("StudyDate", "") == "" and copy.get("PatientBirthDate", "") == ""
    assert copy.PatientIdentityRemoved == "YES"
    assert copy.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert copy.PixelData == original.PixelData
    assert copy.Rows == original.Rows and copy.ImagePositionPatient == original.ImagePositionPatient


def test_same_session_same_mapping_other_session_other_mapping(tmp_path):
    session = Anonymiser()
    files = sorted(CT_SERIES.glob("*.dcm"))
    a = anonymise_paths(files[:3], tmp_path / "a", session)
    b = anonymise_paths(files[3:6], tmp_path / "b", session)
    c = anonymise_paths(files[:3], tmp_path / "c")
    study = {pydicom.dcmread(p).StudyInstanceUID for p in a.written + b.written}
    assert len(study) == 1  # a study sent in two batches stays one study
    assert not study & {pydicom.dcmread(p).StudyInstanceUID for p in c.written}


def test_burned_in_annotation_is_honoured_with_a_warning(tmp_path):
    marked = tmp_path / "marked.dcm"
    ds = pydicom.dcmread(DICOM / "single" / "US_RGB_explicit_LE_cropped.dcm")
    ds.BurnedInAnnotation = "YES"
    ds.save_as(marked)
    report = anonymise_paths([marked], tmp_path / "out")
    assert any("Burned In Annotation = YES" in w for w in report.warnings)
    copy = pydicom.dcmread(report.written[0])
    assert copy.BurnedInAnnotation == "YES" and copy.PixelData == ds.PixelData


def test_anonymise_a_series_from_the_viewer_and_refuse_hostile_inputs(tmp_path):
    series = scan_paths([DICOM / "single" / "MR_enhanced_siemens_xa10.dcm"]).series[0]
    report = anonymise_series(series, tmp_path / "series")
    assert len(report.written) == 1 and not report.rejected
    bad = anonymise_paths([DICOM / "bad" / "zip_slip.zip", DICOM / "bad" / "RTPLAN_truncated.dcm",
                           DICOM / "bad" / "SR_no_pixel_data.dcm"], tmp_path / "bad")
    reasons = dict(bad.rejected)
    assert "path traversal" in reasons[str(DICOM / "bad" / "zip_slip.zip")]
    assert len(bad.written) >= 1  # the SR (no pixels) is still de-identified


def test_cli_anonymize_writes_files_and_reports_bad_inputs(tmp_path, capsys):
    folder = tmp_path / "in"
    shutil.copytree(DICOM / "dicomdir" / "98892003" / "MR700", folder)
    (folder / "readme.txt").write_text("not dicom")
    code = main(["dicom", "anonymize", str(folder), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1  # the text file is reported, the rest goes on
    assert "readme.txt: not a DICOM file" in captured.err
    assert len(list((tmp_path / "out").glob("*.dcm"))) == 7
    assert main(["dicom", "anonymize", str(DICOM / "single" / "CT_small.dcm"), "--out", str(tmp_path / "ok")]) == 0


def test_the_modified_dates_and_keep_descriptions_options_and_readable_folders(tmp_path):
    """PS3.15's Retain Longitudinal Temporal Information with Modified Dates Option: every date
    moves back by one offset for the export (intervals kept), the birth date still goes;
    descriptions kept when asked; Patient/Study/Series folders named from de-identified values."""
    import datetime
    from pathlib import Path

    import pydicom

    from healthfm_desktop.core.imaging.anonymise import DeidOptions, MODIFIED_DATES_CODE
    from healthfm_desktop.core.imaging.scanning import scan_paths

    source = Path(__file__).resolve().parents[1] / "data" / "dicom" / "series" / "CT_head_phantom_philips_1mm_20sl"
    series = scan_paths([source]).series[0]
    original = pydicom.dcmread(series.instances[0].source.path)
    session = Anonymiser(options=DeidOptions(shift_dates=True, keep_descriptions=True))
    report = anonymise_series(series, tmp_path / "export", session, folders=True)
    assert len(report.written) == len(series.instances) and not report.rejected
    assert not report.burned_in
    out = pydicom.dcmread(report.written[0])
    day = datetime.timedelta(days=session.date_shift_days)
    parse = lambda text: datetime.datetime.strptime(text, "%Y%m%d").date()  # noqa: E731
    assert parse(out.StudyDate) == parse(original.StudyDate) - day
    if original.get("AcquisitionDate"):
        assert parse(out.AcquisitionDate) == parse(original.AcquisitionDate) - day
    assert out.get("PatientBirthDate", "") == ""
    assert out.StudyDescription == original.StudyDescription and out.SeriesDescription == original.SeriesDescription
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert MODIFIED_DATES_CODE[0] in [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    # one readable folder per series, from the new values only
    folders = {p.parent.relative_to(tmp_path / "export") for p in report.written}
    assert len(folders) == 1
    (patient, study, series_folder) = next(iter(folders)).parts
    assert patient == out.PatientID and out.StudyDate[:4] in study and out.Modality in series_folder
    names = " ".join(next(iter(folders)).parts)
    assert str(original.PatientID) not in names and original.StudyDate not in names.replace("-", "")
    # the basic profile alone: dates emptied or removed, descriptions gone, one flat folder
    flat = anonymise_series(series, tmp_path / "flat")
    basic = pydicom.dcmread(flat.written[0])
    assert basic.get("StudyDate", "") in ("", None) and basic.LongitudinalTemporalInformationModified == "REMOVED"
    assert basic.get("SeriesDescription", "") != original.SeriesDescription or not original.SeriesDescription
    assert {p.parent for p in flat.written} == {tmp_path / "flat"}
