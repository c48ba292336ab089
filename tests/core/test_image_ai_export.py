"""DICOM SEG and SR export of image-AI results: written with highdicom, read back with pydicom,
referencing the source image."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from PIL import Image

from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.imaging.ai.classification import classify
from healthfm_desktop.core.imaging.ai.dicom_export import (
    results_to_json,
    results_to_sr,
    save_dataset,
    save_json,
    segmentation_to_dicom_seg,
)
from healthfm_desktop.core.imaging.ai.preprocessing import read_image
from healthfm_desktop.core.imaging.ai.segmentation import segment
from tests.core.test_image_ai_helpers import IMAGE_SAMPLES, IMAGE_TEST_DATA, make_dicom


@pytest.fixture
def ultrasound_dicom(tmp_path):
    return read_image(IMAGE_SAMPLES / "fetal_head_ultrasound.dcm")


@pytest.fixture
def xray_dicom(tmp_path):
    pixels = np.asarray(Image.open(IMAGE_TEST_DATA / "pneumoniamnist_test_001_pneumonia.png"))
    return read_image(make_dicom(tmp_path / "cr.dcm", pixels, "CR"))


def test_head_mask_round_trips_as_dicom_seg(ultrasound_dicom, tmp_path):
    result = segment(ultrasound_dicom)
    assert result.mask.sum() > 0
    path = save_dataset(segmentation_to_dicom_seg(ultrasound_dicom, result), tmp_path / "seg.dcm")

    seg = pydicom.dcmread(path)
    assert seg.Modality == "SEG"
    assert seg.SegmentationType == "BINARY"
    assert seg.SegmentSequence[0].SegmentLabel == "Fetal head"
    referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert referenced.ReferencedSOPInstanceUID == ultrasound_dicom.dicom.SOPInstanceUID
    assert seg.StudyInstanceUID == ultrasound_dicom.dicom.StudyInstanceUID
    frame = seg.pixel_array.reshape(result.mask.shape)
    np.testing.assert_array_equal(frame > 0, result.mask > 0)


def test_classification_and_measurements_round_trip_as_sr(xray_dicom, ultrasound_dicom, tmp_path):
    classification = classify(xray_dicom)
    path = save_dataset(results_to_sr(xray_dicom, classification=classification), tmp_path / "sr.dcm")
    sr = pydicom.dcmread(path)
    assert sr.Modality == "SR"
    assert sr.StudyInstanceUID == xray_dicom.dicom.StudyInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert evidence.ReferencedSOPInstanceUID == xray_dicom.dicom.SOPInstanceUID
    text = str(sr)
    assert ("Pneumonia" if classification.label == "pneumonia" else "Normal") in text
    assert classification.model in text

    segmentation = segment(ultrasound_dicom)
    sr2 = pydicom.dcmread(save_dataset(results_to_sr(ultrasound_dicom, segmentation=segmentation), tmp_path / "sr2.dcm"))
    values = [
        float(item.MeasuredValueSequence[0].NumericValue)
        for item in _walk(sr2.ContentSequence)
        if item.get("ValueType") == "NUM" and item.ConceptNameCodeSequence[0].CodeValue == "11984-2"
    ]
    assert values == [pytest.approx(segmentation.head_circumference_mm, abs=0.01)]


def _walk(sequence):
    for item in sequence:
        yield item
        if "ContentSequence" in item:
            yield from _walk(item.ContentSequence)


def test_png_sources_export_json_and_refuse_dicom(tmp_path):
    image = read_image(IMAGE_TEST_DATA / "pneumoniamnist_test_013_normal.png")
    classification = classify(image)
    with pytest.raises(UserFacingError, match="DICOM source"):
        results_to_sr(image, classification=classification)
    record = json.loads(save_json(results_to_json("x.png", classification), tmp_path / "r.json").read_text())
    assert record["classification"]["label"] == classification.label
    assert record["classification"]["probabilities"] == classification.probabilities


def test_a_result_run_anyway_outside_the_intended_use_stays_marked_in_sr_and_seg(xray_dicom, ultrasound_dicom, tmp_path):
    import highdicom as hd

    forced = classify(ultrasound_dicom, force=True)  # the pneumonia model on an ultrasound
    assert forced.forced and not forced.scope.in_scope and forced.scope.reasons
    path = save_dataset(results_to_sr(ultrasound_dicom, classification=forced), tmp_path / "forced.dcm")
    sr = pydicom.dcmread(path)
    assert sr.SeriesDescription == "AI result run anyway: input outside the model's intended use"
    items = list(_walk(sr.ContentSequence))
    marks = [i for i in items if i.get("ValueType") == "CODE" and i.ConceptNameCodeSequence[0].CodeValue == "OUTSIDESCOPE"]
    assert [m.ConceptCodeSequence[0].CodeMeaning for m in marks] == ["Yes"]
    comments = [i.TextValue for i in items if i.get("ValueType") == "TEXT" and i.ConceptNameCodeSequence[0].CodeValue == "121106"]
    assert len(comments) == 1 and comments[0].startswith("Run anyway") and forced.scope.reasons[0][:40] in comments[0]
    hd.sr.Comprehensive3DSR.from_dataset(sr)  # still a valid TID 1500 report for highdicom

    segmentation = segment(xray_dicom, force=True)  # the head segmenter on a chest X-ray
    assert segmentation.forced and not segmentation.scope.in_scope
    seg = pydicom.dcmread(save_dataset(segmentation_to_dicom_seg(xray_dicom, segmentation), tmp_path / "seg.dcm"))
    assert seg.SeriesDescription == "AI result run anyway: input outside the model's intended use"

    in_scope = classify(xray_dicom)
    plain = pydicom.dcmread(save_dataset(results_to_sr(xray_dicom, classification=in_scope), tmp_path / "plain.dcm"))
    assert plain.SeriesDescription == "AI results"
    assert not [i for i in _walk(plain.ContentSequence) if "ConceptNameCodeSequence" in i
                and i.ConceptNameCodeSequence[0].CodeValue in ("OUTSIDESCOPE", "121106")]
    assert results_to_json("u.dcm", forced)["classification"]["forced"] is True
