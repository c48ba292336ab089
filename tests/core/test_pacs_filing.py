"""Filing objects received from a peer: a hostile or broken object is refused with a clear error,
never written half, never written outside the store."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthfm_desktop.core.errors import UnreadableFileError
from healthfm_desktop.core.imaging.pacs.contexts import MAX_CONTEXTS, RETRIEVE_TRANSFER_SYNTAXES, retrieve_contexts
from healthfm_desktop.core.imaging.pacs.contexts import STORAGE_CLASSES
from healthfm_desktop.core.imaging.pacs.filing import file_encoded_object, safe_uid_name

CT_SMALL = Path(__file__).resolve().parent.parent / "data" / "dicom" / "single" / "CT_small.dcm"


def test_received_object_is_filed_by_uids(tmp_path):
    filed = file_encoded_object(CT_SMALL.read_bytes(), tmp_path)
    ds = pydicom.dcmread(CT_SMALL, stop_before_pixels=True)
    assert filed.path == tmp_path / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    assert filed.path.read_bytes() == CT_SMALL.read_bytes()
    assert filed.record.sop_uid == ds.SOPInstanceUID and filed.record.modality == "CT"


def test_hostile_uids_cannot_escape_the_store(tmp_path):
    ds = pydicom.dcmread(CT_SMALL)
    ds.StudyInstanceUID = "../../../../etc"
    ds.SOPInstanceUID = "/tmp/evil"
    from io import BytesIO

    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    filed = file_encoded_object(buffer.getvalue(), tmp_path / "store")
    assert (tmp_path / "store") in filed.path.parents
    assert ".." not in filed.path.parts
    assert safe_uid_name("1.2.3") == "1.2.3" and safe_uid_name("..").startswith("x")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=1024), st.integers(min_value=0, max_value=4000))
def test_fuzzed_objects_are_refused_cleanly(tmp_path, noise, cut):
    real = CT_SMALL.read_bytes()
    for data in (noise, real[:cut] + noise, b"\0" * 128 + b"DICM" + noise):
        try:
            filed = file_encoded_object(data, tmp_path)
        except UnreadableFileError as exc:
            assert str(exc)
        else:
            assert filed.path.is_file() and filed.path.read_bytes() == data
            assert filed.record.sop_uid  # the database record of what was filed
    assert not list(tmp_path.rglob("*.part"))


@pytest.mark.parametrize("count", [1, 7, 8, 40, 200])
def test_retrieve_contexts_stay_within_128(count):
    contexts, roles = retrieve_contexts(STORAGE_CLASSES[:count])
    assert len(contexts) <= MAX_CONTEXTS
    per_syntax = [cx for cx in contexts if len(cx.transfer_syntax) == 1 and cx.abstract_syntax in STORAGE_CLASSES]
    if count <= 7:  # each class once per syntax: the peer never needs to transcode
        assert len(per_syntax) == count * len(RETRIEVE_TRANSFER_SYNTAXES)
    assert len(roles) == min(count, len(STORAGE_CLASSES), MAX_CONTEXTS - 2)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_peer_address_and_query_fields_fail_only_with_clear_errors(text):
    from healthfm_desktop.core.errors import UserFacingError
    from healthfm_desktop.core.imaging.pacs import DicomPeer, StudyQuery, parse_peer_address

    for attempt in (
        lambda: parse_peer_address(text),
        lambda: DicomPeer(text, "127.0.0.1", 104),
        lambda: StudyQuery(study_date=text).identifier(),
        lambda: StudyQuery(patient_name=text, patient_id=text, modality=text[:16]).identifier(),
    ):
        try:
            attempt()
        except UserFacingError as exc:
            assert str(exc)
