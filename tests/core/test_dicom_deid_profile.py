"""PS3.15 Annex E Table E.1-1 (Basic Profile), row by row: every table attribute present in the
real test files, and a synthesised dataset carrying many table attributes (inside sequences
too), come out as their action code says."""

from __future__ import annotations

import json

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian

from healthfm_desktop.core.imaging import anonymise
from healthfm_desktop.core.imaging.anonymise import (
    Anonymiser,
    ProfileTable,
    anonymise_paths,
    burned_in_risk,
    profile_table,
    resolve_action,
)
from tests.core.dicom_manifest import CT_SERIES, DICOM

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"


def test_the_table_is_the_full_basic_profile_column():
    from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c

    table = profile_table()
    rows = len(table.exact) + len(table.repeating)
    # every row of the package's lists, none lost to a tag listed twice (2026c: 655 rows, plus
    # the Private Attributes row)
    assert rows == len(dicomfields_2026c.ALL_TAGS) > 600
    actions = {action for action, _ in table.exact.values()} | {row[2] for row in table.repeating}
    assert actions == {"X", "Z", "D", "U", "X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"}

    def action(keyword):
        return table.row_for(Tag(keyword))[0]

    # spot checks against the published table
    assert action("PatientName") == "Z" and action("StudyInstanceUID") == "U"
    assert action("PatientAge") == "X" and action("InstitutionName") == "X/Z/D"
    assert action("ContentDate") == "Z/D" and action("ReferencedImageSequence") == "X/Z/U*"
    assert table.row_for(0x60023000)[0] == "X" and table.row_for(0x50100020)[0] == "X"  # overlays, curves
    assert table.row_for(0x60023001) is None  # (60xx,3000) only, not its neighbours
    assert table.private_action == "X"
    assert "2026c" in table.source and "dicom-anonymizer" in table.source


def test_the_built_table_is_cached_per_package_versions(monkeypatch, tmp_path):
    monkeypatch.setenv("HEALTHFM_HOME", str(tmp_path))
    versions = anonymise._package_versions()
    assert "dicom-anonymizer 2.1.0" in versions and "highdicom" in versions
    built = ProfileTable.load()  # nothing cached yet: built and written
    cache = anonymise._cache_file(versions)
    assert cache.parent == tmp_path / "cache" and cache.is_file()
    assert ProfileTable.load() == built == profile_table()
    # a cache from other package versions, or a damaged one, is rebuilt, never trusted
    stale = json.loads(cache.read_text())
    stale["versions"], stale["rows"] = "format 0", []
    cache.write_text(json.dumps(stale))
    assert ProfileTable.load() == built
    cache.write_text('{"rows": [')
    assert ProfileTable.load() == built
    assert json.loads(cache.read_text())["versions"] == versions


@pytest.mark.parametrize(
    "action, kind, expected",
    [("X/Z", "3", "X"), ("X/Z", "2", "Z"), ("X/Z", "2C", "Z"), ("X/D", "3", "X"), ("X/D", "1", "D"),
     ("X/Z/D", "3", "X"), ("X/Z/D", "2", "Z"), ("X/Z/D", "1C", "D"), ("Z/D", "3", "Z"), ("Z/D", "1", "D"),
     ("X/Z/U*", "3", "X"), ("X/Z/U*", "2", "Z"), ("X/Z/U*", "1", "U*"), ("U", "1", "U"), ("X", "1", "X")],
)
def test_combined_actions_follow_iod_conformance(action, kind, expected):
    assert resolve_action(action, kind) == expected


def test_attribute_types_come_from_the_iod():
    table = profile_table()
    ct, enhanced = table.iod_of(CT_IMAGE), table.iod_of(ENHANCED_CT)
    assert table.attribute_type("DeviceSerialNumber", (), ct) == "3"  # General Equipment
    assert table.attribute_type("DeviceSerialNumber", (), enhanced) == "1"  # Enhanced General Equipment
    assert table.attribute_type("ContentDate", (), ct) == "2C"
    assert table.attribute_type("ContentDate", (), enhanced) == "1"
    assert table.attribute_type("PatientID", (), ct) == "2"
    assert table.attribute_type("PatientID", (), None) == "3"  # unknown SOP class: remove


# ------------------------------------------------------------------------- real files
def _walk(ds: Dataset, path=()):
    """(path of (sequence tag, item index), element) for every element, depth first."""
    for element in ds:
        yield path, element
        if element.VR == "SQ":
            for i, item in enumerate(element.value or []):
                yield from _walk(item, path + ((element.tag, i),))


def _find(ds: Dataset, path, tag):
    for seq_tag, i in path:
        if seq_tag not in ds or len(ds[seq_tag].value or []) <= i:
            return None
        ds = ds[seq_tag].value[i]
    return ds[tag] if tag in ds else None


def _keywords(ds: Dataset, path) -> tuple[str, ...]:
    return tuple(pydicom.datadict.keyword_for_tag(seq_tag) for seq_tag, _ in path)


def _is_empty(element) -> bool:
    value = element.value
    return value is None or value == "" or value == b"" or (element.VR == "SQ" and len(value) == 0) or (
        isinstance(value, (list, tuple)) and not value)


def _check(original: Dataset, copy: Dataset, session_uids: dict, table) -> set[str]:
    """Assert each table attribute of ``original`` is handled per its action in ``copy``;
    return the names of the rows exercised."""
    exercised = set()
    iod = table.iod_of(str(original.get("SOPClassUID", "")))
    for path, element in _walk(original):
        tag = element.tag
        out = _find(copy, path, tag)
        if tag.is_private:
            assert out is None, f"private {tag} kept"
            continue
        row = table.row_for(tag)
        if row is None:
            continue
        action, name = row
        parents = _keywords(original, path)
        if any(table.row_for(seq_tag) is not None and resolve_action(
                table.row_for(seq_tag)[0], table.attribute_type(
                    pydicom.datadict.keyword_for_tag(seq_tag), parents[:k], iod)) in ("X", "Z")
               for k, (seq_tag, _) in enumerate(path)):
            continue  # inside a sequence the table removes or empties as a whole
        exercised.add(name)
        kind = table.attribute_type(element.keyword, parents, iod)
        concrete = resolve_action(action, kind)
        where = f"{name} {tag} at {parents} ({action} -> {concrete}, type {kind})"
        if concrete == "X":
            assert out is None, where
        elif concrete == "Z":
            assert out is not None, where
            if element.keyword in ("PatientName", "PatientID") and not path and element.value:
                assert str(out.value).startswith(("ANONYMOUS^", "ANON-")), where
            else:
                assert _is_empty(out), where
        elif concrete in ("D", "U*"):
            assert out is not None and (not _is_empty(out) or _is_empty(element)), where
            if element.VR not in ("SQ", "UI") and not _is_empty(element):
                assert out.value != element.value or str(element.value).upper() in ("ANONYMOUS", "0"), where
        elif concrete == "U":
            assert out is not None, where
            olds = list(element.value) if element.VM > 1 else [element.value]
            news = list(out.value) if out.VM > 1 else [out.value]
            for old, new in zip(olds, news):
                if not str(old):
                    continue
                assert UID(str(new)).is_valid and str(new) != str(old), where
                assert session_uids.setdefault(str(old), str(new)) == str(new), f"{where}: UID not consistent"
    assert not any(e.tag.is_private for _, e in _walk(copy))
    return exercised


REAL_INPUTS = [DICOM / "single", DICOM / "dicomdir", CT_SERIES]


def test_every_table_attribute_in_the_real_files_follows_its_action(tmp_path):
    session = Anonymiser()
    table = session.table
    originals = {}
    for root in REAL_INPUTS:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "DICOMDIR"):
            try:
                ds = pydicom.dcmread(path)
            except Exception:  # noqa: BLE001 - not a DICOM object; the scan tests cover these
                continue
            originals[path] = ds
    report = anonymise_paths(list(originals), tmp_path / "out", session)
    assert not report.rejected
    assert len(report.written) == len(originals)
    by_sop = {}
    for written in report.written:
        copy = pydicom.dcmread(written)
        by_sop[copy.SOPInstanceUID] = copy
    session_uids: dict = {}
    exercised: set[str] = set()
    for original in originals.values():
        copy = by_sop[session.uid_map[str(original.SOPInstanceUID)]]
        exercised |= _check(original, copy, session_uids, table)
        assert copy.PatientIdentityRemoved == "YES"
        assert copy.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert copy.file_meta.MediaStorageSOPInstanceUID == copy.SOPInstanceUID
    # the real files exercise a good part of the table, and every kind of action
    assert len(exercised) >= 40, sorted(exercised)


# --------------------------------------------------------------------- synthesised dataset
def _item(**values) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _synthetic(sop_class: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7.100"
    ds.file_meta.SourceApplicationEntityTitle = "HOSPITAL_PACS"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "1.2.3.4.5.6.7.100"
    ds.StudyInstanceUID = "1.2.3.4.5.6.7.1"
    ds.SeriesInstanceUID = "1.2.3.4.5.6.7.2"
    ds.FrameOfReferenceUID = "1.2.3.4.5.6.7.3"
    ds.Modality = "CT"
    ds.PatientName = "Doe^Jane"  # Z
    ds.PatientID = "MRN12345"  # Z/D
    ds.PatientBirthDate = "19700101"  # Z
    ds.PatientSex = "F"  # Z
    ds.PatientAge = "055Y"  # X
    ds.PatientAddress = "1 Main Street"  # X
    ds.OtherPatientIDs = "ALT-1"  # X
    ds.StudyDate = "20240102"  # Z
    ds.StudyTime = "101010"  # Z
    ds.AccessionNumber = "ACC1"  # Z
    ds.ReferringPhysicianName = "Who^Doctor"  # Z
    ds.StudyID = "S1"  # Z
    ds.SeriesDate = "20240102"  # X/D
    ds.AcquisitionDate = "20240102"  # X/Z
    ds.ContentDate = "20240102"  # Z/D
    ds.ContentTime = "101010"  # Z/D
    ds.InstitutionName = "General Hospital"  # X/Z/D
    ds.StationName = "CT01"  # X/Z/D
    ds.DeviceSerialNumber = "SN-42"  # X/Z/D
    ds.OperatorsName = "Op^One"  # X/Z/D
    ds.ProtocolName = "Head routine for Jane"  # X/D
    ds.ContrastBolusAgent = "Iodine"  # Z/D
    ds.ImageComments = "Jane's scan"  # X
    ds.StudyDescription = "Head"  # X
    ds.IrradiationEventUID = "1.2.3.4.5.6.7.9"  # U
    ds.ReferencedImageSequence = Sequence([_item(ReferencedSOPClassUID=CT_IMAGE,
                                                 ReferencedSOPInstanceUID="1.2.3.4.5.6.7.101")])  # X/Z/U*
    ds.ReferencedStudySequence = Sequence([_item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1",
                                                 ReferencedSOPInstanceUID="1.2.3.4.5.6.7.1")])  # X/Z
    ds.RequestAttributesSequence = Sequence([_item(RequestedProcedureID="RP1")])  # X
    ds.ContributingEquipmentSequence = Sequence([_item(  # not in the table: kept, items cleaned
        Manufacturer="ACME", InstitutionName="Other Hospital", StationName="WS9", DeviceSerialNumber="SN-7",
        ContributionDescription="edited by Dr Who", ContributionDateTime="20240103101010")])
    content = _item(ValueType="PNAME", PersonName="Smith^Ann", DateTime="20240102101010", UID="1.2.3.4.5.6.7.55",
                    RelationshipType="CONTAINS")
    concept = _item(CodeValue="121106", CodingSchemeDesignator="DCM", CodeMeaning="Comment")
    content.ContentSequence = Sequence([_item(ValueType="TEXT", TextValue="Seen by Dr Smith, Jane Doe's GP",
                                              ConceptNameCodeSequence=Sequence([concept]))])
    content.add_new(0x00091010, "LO", "private inside a sequence")
    ds.ContentSequence = Sequence([content])  # D: kept, its items de-identified
    ds.add_new(0x00291010, "LO", "private at the top")
    ds.add_new(0x50003000, "OW", b"\x00\x01")  # curve data: X
    ds.add_new(0x60000010, "US", 2)  # overlay plane whose data (X) goes: the plane goes
    ds.add_new(0x60003000, "OW", b"\xff\x00")
    ds.add_new(0x60024000, "LT", "overlay comment naming Jane")  # X
    ds.Rows, ds.Columns = 2, 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = b"\x01\x00\x02\x00\x03\x00\x04\x00"
    return ds


def test_each_action_on_a_synthesised_ct_dataset():
    ds = _synthetic(CT_IMAGE)
    session = Anonymiser(salt=b"fixed salt")
    session.anonymise_dataset(ds)
    # Z: present, empty (patient name / id: a per-session pseudonym dummy)
    for keyword in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "AccessionNumber",
                    "ReferringPhysicianName", "StudyID"):
        assert keyword in ds and ds.data_element(keyword).value in ("", None), keyword
    assert str(ds.PatientName).startswith("ANONYMOUS^") and "Jane" not in str(ds.PatientName)
    assert ds.PatientID.startswith("ANON-") and "12345" not in ds.PatientID  # Z/D, type 2 in CT
    assert ds.ContentDate == "" and ds.ContentTime == ""  # Z/D, type 2C in CT
    assert ds.ContrastBolusAgent == ""  # Z/D, type 2 in the Contrast/Bolus module
    # X and combined actions resolving to X (type 3 in the CT Image IOD)
    for keyword in ("PatientAge", "PatientAddress", "OtherPatientIDs", "SeriesDate", "AcquisitionDate",
                    "InstitutionName", "StationName", "DeviceSerialNumber", "OperatorsName", "ProtocolName",
                    "ImageComments", "StudyDescription", "ReferencedImageSequence", "ReferencedStudySequence",
                    "RequestAttributesSequence"):
        assert keyword not in ds, keyword
    # U: new UIDs, consistent within the session
    assert ds.StudyInstanceUID == session.new_uid("1.2.3.4.5.6.7.1") != "1.2.3.4.5.6.7.1"
    assert ds.IrradiationEventUID == session.uid_map["1.2.3.4.5.6.7.9"]
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == session.uid_map["1.2.3.4.5.6.7.100"]
    assert ds.SOPClassUID == CT_IMAGE  # a class UID is not identifying
    # sequences: a kept sequence is cleaned inside, a D sequence keeps its items de-identified
    equipment = ds.ContributingEquipmentSequence[0]
    assert equipment.Manufacturer == "ACME"
    for keyword in ("InstitutionName", "StationName", "DeviceSerialNumber", "ContributionDescription",
                    "ContributionDateTime"):
        assert keyword not in equipment, keyword
    content = ds.ContentSequence[0]
    assert str(content.PersonName) == "ANONYMOUS"  # D
    assert content.DateTime == "19000101000000"  # D, a dummy of the VR
    assert content.UID == session.uid_map["1.2.3.4.5.6.7.55"]  # U inside a sequence
    text = content.ContentSequence[0]  # nested content: free text replaced, the structure kept
    assert text.TextValue == "ANONYMOUS" and text.ValueType == "TEXT" and content.RelationshipType == "CONTAINS"
    assert text.ConceptNameCodeSequence[0].CodeValue == "121106"
    assert 0x00091010 not in content and 0x00291010 not in ds  # private tags, at any depth
    # curves and the overlay plane whose data is removed, overlay comments
    assert not any(0x5000 <= e.tag.group <= 0x60FF for e in ds)
    assert "SourceApplicationEntityTitle" not in ds.file_meta
    # recorded
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert ds.DeidentificationMethodCodeSequence[0].CodingSchemeDesignator == "DCM"
    assert ds.PixelData == b"\x01\x00\x02\x00\x03\x00\x04\x00"


def test_type_1_attributes_get_dummies_in_an_iod_that_requires_them():
    ds = _synthetic(ENHANCED_CT)
    Anonymiser().anonymise_dataset(ds)
    assert ds.DeviceSerialNumber == "ANONYMOUS"  # X/Z/D, type 1 in Enhanced General Equipment
    assert ds.ContentDate == "19000101" and ds.ContentTime == "000000"  # Z/D, type 1
    assert "InstitutionName" not in ds  # still type 3 there


def test_rows_of_the_2026_edition_apply_even_to_tags_pydicom_does_not_know():
    ds = _synthetic(CT_IMAGE)
    ds.add_new(0x00100011, "LO", "Jane's other name")  # added to Table E.1-1 after 2024e: X
    ds.add_new(0x00081301, "LO", "CONSENT-77")  # likewise: X
    ds.TableTopPositionAlignmentUID = "1.2.3.4.5.6.7.60"  # U (2026c)
    ds.UnformattedTextValue = "Annotated by Dr Smith"  # D (2026c)
    session = Anonymiser()
    session.anonymise_dataset(ds)
    assert 0x00100011 not in ds and 0x00081301 not in ds
    assert ds.TableTopPositionAlignmentUID == session.uid_map["1.2.3.4.5.6.7.60"]
    assert ds.UnformattedTextValue == "ANONYMOUS"


def test_referenced_uids_stay_consistent_with_the_referenced_objects(tmp_path):
    files = sorted(CT_SERIES.glob("*.dcm"))[:4]
    first = pydicom.dcmread(files[0])
    referencing = _synthetic(CT_IMAGE)
    referencing.StudyInstanceUID = first.StudyInstanceUID
    referencing.ContentSequence[0].UID = first.SOPInstanceUID
    path = tmp_path / "ref.dcm"
    referencing.save_as(path, enforce_file_format=True)
    session = Anonymiser()
    report = anonymise_paths(files + [path], tmp_path / "out", session)
    copies = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in report.written}
    ref_copy = copies[session.uid_map[str(referencing.SOPInstanceUID)]]
    assert ref_copy.ContentSequence[0].UID in copies  # points at the de-identified CT slice
    assert len({c.StudyInstanceUID for c in copies.values()}) == 1


def test_burned_in_risk_by_flag_modality_and_sop_class():
    ds = Dataset()
    ds.Rows, ds.Columns = 2, 2
    ds.Modality = "CT"
    assert burned_in_risk(ds) is None
    ds.BurnedInAnnotation = "YES"
    assert "Burned In Annotation = YES" in burned_in_risk(ds)
    ds.Modality, ds.BurnedInAnnotation = "US", "NO"
    assert burned_in_risk(ds) is None
    del ds.BurnedInAnnotation
    assert "has modality US" in burned_in_risk(ds)
    ds.Modality, ds.SOPClassUID = "CT", "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    assert burned_in_risk(ds) is not None


def test_cli_exports_a_burned_in_image_with_a_warning_and_records_it(tmp_path, capsys):
    # CLI.md's `dicom anonymize PATH... --out DIR` has no confirm/refuse option: the files are
    # written, stderr warns, the summary line and the file itself record it
    from healthfm_desktop.cli import main

    marked = tmp_path / "marked.dcm"
    ds = pydicom.dcmread(DICOM / "single" / "CT_small.dcm")
    ds.BurnedInAnnotation = "YES"
    ds.save_as(marked)
    code = main(["dicom", "anonymize", str(marked), str(DICOM / "single" / "MR_small_RLE.dcm"),
                 "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 0
    assert f"warning: {marked}: declares Burned In Annotation = YES" in captured.err
    assert "2 file(s) de-identified" in captured.out and "1 may show burned-in identifying text" in captured.out
    copies = [pydicom.dcmread(p) for p in (tmp_path / "out").glob("*.dcm")]
    flagged = [c for c in copies if c.get("BurnedInAnnotation") == "YES"]
    assert len(flagged) == 1 and "burned-in text possible" in flagged[0].DeidentificationMethod[1]
    other = next(c for c in copies if c.get("BurnedInAnnotation") != "YES")
    assert other.DeidentificationMethod == "PS3.15 E.1 Basic Application Confidentiality Profile"


def test_cli_output_folder_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    from healthfm_desktop.cli import main

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["dicom", "anonymize", str(DICOM / "single" / "CT_small.dcm"), "--out", str(blocker)]) == 1
    err = capsys.readouterr().err
    assert "cannot use" in err and "output folder" in err and "Traceback" not in err
