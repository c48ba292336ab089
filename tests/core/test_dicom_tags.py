"""The tag tree: every element, sequences with items, readable values, filter."""

from __future__ import annotations

import pydicom

from healthfm_desktop.core.imaging.scanning import scan_paths
from healthfm_desktop.core.imaging.tags import element_tree, filter_tree
from tests.core.dicom_manifest import DICOM


def _count(elements) -> int:
    return sum(1 + sum(_count(item) for item in e.get("items", [])) for e in elements)


def test_tree_has_every_element_and_nested_sequences():
    path = DICOM / "single" / "MR_enhanced_siemens_xa10.dcm"
    header = scan_paths([path]).series[0].first.header
    tree = element_tree(header)
    reference = pydicom.dcmread(path, stop_before_pixels=True)
    expected = len(list(reference.iterall())) + len(reference.file_meta)
    assert _count(tree) == expected
    by_keyword = {e["keyword"]: e for e in tree}
    assert by_keyword["TransferSyntaxUID"]["value"] == "1.2.840.10008.1.2.1"
    per_frame = by_keyword["PerFrameFunctionalGroupsSequence"]
    assert per_frame["vr"] == "SQ" and per_frame["value"] == "6 item(s)" and len(per_frame["items"]) == 6
    assert by_keyword["Rows"]["tag"] == "(0028,0010)" and by_keyword["Rows"]["value"] == "64"


def test_private_and_binary_values_are_shown_safely():
    header = pydicom.dcmread(sorted((DICOM / "series" / "MR_T1_3D_MPRAGE_sag_philips_1mm_170sl").glob("*.dcm"))[0])
    tree = element_tree(header)
    assert any(e["private"] for e in tree)
    pixel = next(e for e in tree if e["tag"] == "(7FE0,0010)")
    assert pixel["value"].startswith("<") and "bytes" in pixel["value"]
    assert all(len(str(e["value"])) <= 200 for e in tree)


def test_filter_keeps_matching_elements_and_the_sequences_that_hold_them():
    header = scan_paths([DICOM / "single" / "MR_enhanced_siemens_xa10.dcm"]).series[0].first.header
    tree = element_tree(header)
    hits = filter_tree(tree, "ImagePositionPatient")
    assert [e["keyword"] for e in hits] == ["PerFrameFunctionalGroupsSequence"]
    assert filter_tree(tree, "") == tree
    assert filter_tree(tree, "(0028,0010)")[0]["keyword"] == "Rows"
