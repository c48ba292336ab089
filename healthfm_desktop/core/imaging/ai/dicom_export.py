"""Export of image-AI results as DICOM objects that reference their source image (highdicom):
the head mask as a binary DICOM Segmentation, the classification (and the head measurements)
as a Comprehensive 3D SR measurement report (TID 1500), and a plain JSON alternative for
images that did not come from DICOM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from healthfm_desktop import __version__
from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.imaging.ai.classification import ClassificationResult
from healthfm_desktop.core.imaging.ai.preprocessing import SourceImage
from healthfm_desktop.core.imaging.ai.segmentation import SegmentationResult
from healthfm_desktop.core.storage.atomic import atomic_write_bytes

MANUFACTURER = "HealthFM Desktop"
# An answer the user asked for although the input is outside the model's intended use ("Run
# anyway", --force) keeps that mark in every export: a coded evaluation and the reasons as text in
# its SR measurement group, and the series description of the SR and the SEG
FORCED_SERIES_DESCRIPTION = "AI result run anyway: input outside the model's intended use"
OUTSIDE_INTENDED_USE = ("OUTSIDESCOPE", "99HEALTHFM", "Input outside the model's intended use")


def _forced(result: ClassificationResult | SegmentationResult | None) -> bool:
    return result is not None and result.forced and not result.scope.in_scope


def _forced_items(result) -> tuple[list, list]:
    """(qualitative evaluations, text items) that mark a forced result, or two empty lists."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if not _forced(result):
        return [], []
    evaluation = hd.sr.QualitativeEvaluation(name=hd.sr.CodedConcept(*OUTSIDE_INTENDED_USE), value=codes.SCT.Yes)
    reasons = "; ".join(result.scope.reasons) or "outside the model's intended use"
    comment = hd.sr.TextContentItem(
        name=hd.sr.CodedConcept("121106", "DCM", "Comment"),
        value=f"Run anyway at the user's request; the model's intended use excludes this input: {reasons}"[:1024],
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    return [evaluation], [comment]


def _with_items(group, items: list):
    """The measurement group with ``items`` added to its container's content."""
    for item in items:
        group[0].ContentSequence.append(item)
    return group


def _require_dicom(image: SourceImage):
    if image.dicom is None:
        raise UserFacingError("DICOM SEG/SR export needs a DICOM source image; use the JSON export for PNG/JPEG")
    return image.dicom


def _algorithm(name: str, version: str):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.AlgorithmIdentificationSequence(name=name, family=codes.cid7162.ArtificialIntelligence, version=version)


def segmentation_to_dicom_seg(image: SourceImage, result: SegmentationResult):
    """A binary DICOM SEG (one segment, "Fetal head") on the source image's pixel grid."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    source = _require_dicom(image)
    if result.mask.shape != (int(source.Rows), int(source.Columns)):
        raise UserFacingError("the mask does not match the source image's size")
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Fetal head",
        segmented_property_category=codes.SCT.Anatomy if hasattr(codes.SCT, "Anatomy") else codes.cid7150.Tissue,
        segmented_property_type=hd.sr.CodedConcept("268445003", "SCT", "Fetal head"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=_algorithm(result.model, result.model_version),
    )
    try:
        return hd.seg.Segmentation(
            source_images=[source],
            pixel_array=(result.mask > 0).astype(np.uint8)[None],
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[description],
            series_instance_uid=hd.UID(),
            series_number=900,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=result.model,
            software_versions=__version__,
            device_serial_number="0",
            content_description="Fetal head segmentation",
            series_description=FORCED_SERIES_DESCRIPTION if _forced(result) else "Fetal head segmentation",
        )
    except (ValueError, AttributeError, TypeError, KeyError) as exc:
        raise UserFacingError(f"a DICOM SEG cannot be made for this image: {exc}") from exc


def _finding_code(label: str):
    import highdicom as hd

    return {
        "pneumonia": hd.sr.CodedConcept("233604007", "SCT", "Pneumonia"),
        "normal": hd.sr.CodedConcept("17621005", "SCT", "Normal"),
    }.get(label, hd.sr.CodedConcept(label[:16], "99HEALTHFM", label))


def results_to_sr(
    image: SourceImage,
    classification: ClassificationResult | None = None,
    segmentation: SegmentationResult | None = None,
):
    """A Comprehensive 3D SR (TID 1500 measurement report) with the classification finding and
    its calibrated probability and/or the head measurements, referencing the source image."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    source = _require_dicom(image)
    if classification is None and segmentation is None:
        raise UserFacingError("nothing to export")
    groups = []
    source_ref = [hd.sr.SourceImageForMeasurementGroup.from_source_image(source)]
    if classification is not None:
        algorithm = hd.sr.AlgorithmIdentification(name=classification.model, version=classification.model_version)
        forced_evaluations, forced_text = _forced_items(classification)
        groups.append(_with_items(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="Image classification"),
                algorithm_id=algorithm,
                source_images=source_ref,
                qualitative_evaluations=[
                    hd.sr.QualitativeEvaluation(
                        name=hd.sr.CodedConcept("121071", "DCM", "Finding"), value=_finding_code(classification.label)
                    ),
                    *forced_evaluations,
                ],
                measurements=[
                    hd.sr.Measurement(
                        # no standard code exists for a model's calibrated probability
                        name=hd.sr.CodedConcept("probability", "99HEALTHFM", "Calibrated probability of finding"),
                        value=round(float(classification.probability), 6),
                        unit=hd.sr.CodedConcept("1", "UCUM", "no units"),
                        algorithm_id=algorithm,
                    )
                ],
            ), forced_text)
        )
    if segmentation is not None and segmentation.head_circumference_mm is not None:
        algorithm = hd.sr.AlgorithmIdentification(name=segmentation.model, version=segmentation.model_version)
        mm = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
        measurements = [
            hd.sr.Measurement(name=hd.sr.CodedConcept("11984-2", "LN", "Fetal Head Circumference"), value=segmentation.measurements["head_circumference_mm"], unit=mm, algorithm_id=algorithm),
            hd.sr.Measurement(name=hd.sr.CodedConcept("11820-8", "LN", "Biparietal Diameter"), value=segmentation.measurements["biparietal_diameter_mm"], unit=mm, algorithm_id=algorithm),
            hd.sr.Measurement(name=hd.sr.CodedConcept("11851-3", "LN", "Occipital-Frontal Diameter"), value=segmentation.measurements["occipitofrontal_diameter_mm"], unit=mm, algorithm_id=algorithm),
        ]
        forced_evaluations, forced_text = _forced_items(segmentation)
        groups.append(_with_items(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="Fetal head biometry"),
                algorithm_id=algorithm,
                source_images=source_ref,
                measurements=measurements,
                qualitative_evaluations=forced_evaluations or None,
            ), forced_text)
        )
    observer = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(uid=hd.UID(), name=MANUFACTURER),
        )
    )
    report = hd.sr.MeasurementReport(
        observation_context=observer,
        procedure_reported=hd.sr.CodedConcept("363679005", "SCT", "Imaging procedure"),
        imaging_measurements=groups,
    )
    try:
        return hd.sr.Comprehensive3DSR(
            evidence=[source],
            content=report,
            series_instance_uid=hd.UID(),
            series_number=901,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            series_description=FORCED_SERIES_DESCRIPTION if _forced(classification) or _forced(segmentation) else "AI results",
        )
    except (ValueError, AttributeError, TypeError, KeyError) as exc:
        raise UserFacingError(f"a DICOM SR cannot be made for this image: {exc}") from exc


def results_to_json(
    source_path: str, classification: ClassificationResult | None = None, segmentation: SegmentationResult | None = None
) -> dict:
    """The same content as the SR, as JSON (for PNG/JPEG sources)."""
    record: dict = {"source": source_path, "software": f"{MANUFACTURER} {__version__}"}
    if classification is not None:
        record["classification"] = {
            "label": classification.label,
            "probabilities": classification.probabilities,
            "model": classification.model,
            "model_version": classification.model_version,
            **classification.scope.to_json(),
            "forced": _forced(classification),
        }
    if segmentation is not None:
        record["segmentation"] = {
            "model": segmentation.model,
            "model_version": segmentation.model_version,
            "measurements": segmentation.measurements,
            "pixel_spacing_mm": list(segmentation.spacing_mm) if segmentation.spacing_mm else None,
            "pixel_spacing_source": segmentation.spacing_source,
            **segmentation.scope.to_json(),
            "forced": _forced(segmentation),
        }
    return record


def save_dataset(dataset, path: Path) -> Path:
    """Write a pydicom Dataset atomically (a crash never leaves half a file)."""
    import io

    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def save_json(record: dict, path: Path) -> Path:
    atomic_write_bytes(Path(path), (json.dumps(record, indent=2) + "\n").encode("utf-8"))
    return Path(path)
