"""Fuzz: mutated, truncated and spliced DICOM and zip bytes give results or clear
UserFacingErrors, never another exception (hypothesis); what comes out holds: the one input is
either indexed or rejected with a reason, and a rendered frame has the series' size as uint8."""

from __future__ import annotations

import io
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.imaging.display import render_frame
from healthfm_desktop.core.imaging.scanning import scan_paths
from healthfm_desktop.core.imaging.tags import element_tree
from tests.core.dicom_manifest import DICOM

SEEDS = [
    (DICOM / "single" / "MR_small_explicit.dcm").read_bytes(),
    (DICOM / "single" / "MR_small_implicit.dcm").read_bytes(),
    (DICOM / "single" / "MR_small_bigendian.dcm").read_bytes(),
    (DICOM / "single" / "MR_small_RLE.dcm").read_bytes(),
    (DICOM / "single" / "MR_small_jpegls_lossless.dcm").read_bytes(),
    (DICOM / "bad" / "CT_no_preamble_no_meta.dcm").read_bytes(),
]


@st.composite
def mutated_dicom(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite_header"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:  # hit the header, where lengths and VRs live
            head = draw(st.integers(0, min(len(data), 1200) - 1))
            data[head : head + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(data)


def _exercise(path: Path) -> None:
    result = scan_paths([path])  # must never raise for a bad input
    # one file (or one zip member) in: exactly one object indexed, or it is rejected
    indexed = sum(len(series.instances) for series in result.series)
    assert (indexed, len(result.rejected)) in ((1, 0), (0, 1)), (indexed, result.rejected)
    for series in result.series:
        assert series.frame_count >= 1 and series.rows > 0 and series.columns > 0
        element_tree(series.first.header)
        for name in ("description", "patient_name", "study_date", "study_description", "institution"):
            assert isinstance(getattr(series, name), str)
        for index in range(min(series.frame_count, 3)):
            try:
                shown = render_frame(series, index)
            except UserFacingError as exc:
                assert str(exc)  # a reason a person can read
                continue
            assert shown.dtype == np.uint8 and shown.shape[:2] == (series.rows, series.columns)
    for _, reason in result.rejected:
        assert isinstance(reason, str) and reason


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_dicom())
def test_mutated_dicom_never_crashes(data):
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(folder) / "fuzz.dcm"
        path.write_bytes(data)
        _exercise(path)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_are_rejected_cleanly(data):
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(folder) / "random.dcm"
        path.write_bytes(data)
        _exercise(path)


@settings(max_examples=40, deadline=None)
@given(mutated_dicom(), st.sampled_from(["a.dcm", "dir/b.dcm", "../x.dcm", "/abs.dcm", "c\\..\\..\\d.dcm"]),
       st.integers(0, 200))
def test_mutated_zip_archives_never_crash(member_bytes, name, cut):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, member_bytes)
    raw = buffer.getvalue()
    raw = raw[: len(raw) - cut] if cut else raw
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(folder) / "fuzz.zip"
        path.write_bytes(raw)
        result = scan_paths([path])
        if cut == 0 and (".." in name or name.startswith("/")):
            assert not result.series and "path traversal" in result.rejected[0][1]
        _exercise(path)
