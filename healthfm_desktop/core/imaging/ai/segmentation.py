"""Fetal head segmentation: the shipped U-Net on one image, its mask back at the image's own
size, and the head circumference from an ellipse fitted to that mask."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from healthfm_desktop.core.errors import ModelError, UserFacingError
from healthfm_desktop.core.imaging.ai import preprocessing as prep
from healthfm_desktop.core.imaging.ai.head_circumference import (
    HeadEllipse,
    ellipse_axes_mm,
    fit_head_ellipse,
    head_circumference_mm,
    largest_region,
    ramanujan_circumference,
)
from healthfm_desktop.core.imaging.ai.intended_use import ImageScope, ScopeDecision
from healthfm_desktop.core.imaging.ai.models import LoadedModel, default_segmenter, load_model

THRESHOLD = 0.5


def mask_from_probability(probability: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Probability map -> uint8 {0, 1} mask: the largest region above threshold, holes filled."""
    return largest_region(np.asarray(probability) > threshold)


@dataclass
class SegmentationResult:
    mask: np.ndarray  # uint8 {0, 1} at the source image's size
    model: str
    model_version: str
    provider: str
    latency_ms: float
    ellipse: HeadEllipse | None
    spacing_mm: tuple[float, float] | None
    spacing_source: str | None  # "dicom", "user" or None
    measurements: dict[str, float] = field(default_factory=dict)
    scope: ScopeDecision = field(default_factory=lambda: ScopeDecision(True))
    forced: bool = False  # the user asked for the answer although the image is out of scope

    @property
    def withheld(self) -> bool:
        """The image is out of the model's scope and the user did not ask to run it anyway."""
        return not self.scope.in_scope and not self.forced

    @property
    def head_circumference_mm(self) -> float | None:
        return self.measurements.get("head_circumference_mm")


def parse_spacing(value: float | None) -> tuple[float, float] | None:
    if value is None:
        return None
    if not np.isfinite(value) or value <= 0 or value > 100:
        raise UserFacingError(f"pixel spacing must be a positive number of mm (got {value})")
    return (float(value), float(value))


def measure(mask: np.ndarray, spacing_mm: tuple[float, float] | None) -> tuple[HeadEllipse | None, dict[str, float]]:
    ellipse = fit_head_ellipse(mask)
    if ellipse is None:
        return None, {}
    measurements = {
        "head_circumference_px": round(ramanujan_circumference(ellipse.axes_px[0] / 2, ellipse.axes_px[1] / 2), 2),
        "head_area_px": float(ellipse.area_px),
    }
    if spacing_mm is not None:
        major, minor = ellipse_axes_mm(ellipse, spacing_mm)
        measurements["head_circumference_mm"] = round(head_circumference_mm(ellipse, spacing_mm), 2)
        measurements["occipitofrontal_diameter_mm"] = round(major, 2)
        measurements["biparietal_diameter_mm"] = round(minor, 2)
        measurements["head_area_mm2"] = round(ellipse.area_px * spacing_mm[0] * spacing_mm[1], 1)
    return ellipse, measurements


def segment(
    image: prep.SourceImage, pixel_spacing_mm: float | None = None, model: LoadedModel | None = None,
    force: bool = False,
) -> SegmentationResult:
    """Run the shipped segmenter (float or INT8 per Settings) on one image and measure the head.
    Spacing: the file's own (DICOM) first, else ``pixel_spacing_mm``, else no mm values. An
    image out of the model's scope gets an empty mask and no measurement unless ``force``."""
    model = model or load_model(default_segmenter())
    started = time.perf_counter()
    tensor, letterbox = prep.segmenter_input(image)
    try:
        (probability,) = model.session.run(["probability"], {"image": tensor})
    except Exception as exc:  # onnxruntime errors have no common base class
        raise ModelError(f"the segmenter failed to run: {type(exc).__name__}") from exc
    mask = mask_from_probability(letterbox.to_source(probability[0, 0]))
    if image.pixel_spacing_mm is not None:
        spacing, source = image.pixel_spacing_mm, "dicom"
    else:
        spacing = parse_spacing(pixel_spacing_mm)
        source = "user" if spacing is not None else None
    ellipse, measurements = measure(mask, spacing)
    latency = (time.perf_counter() - started) * 1000
    frame, _ = prep.letterbox_pixels(image.pixels)
    gate = ImageScope.of_manifest(model.manifest)
    scope = gate.decide(image, frame) if gate is not None else ScopeDecision(True)
    if not scope.in_scope and not force:
        mask, ellipse, measurements = np.zeros_like(mask), None, {}
    return SegmentationResult(
        mask=mask,
        model=model.manifest.name,
        model_version=model.manifest.version,
        provider=model.provider.active,
        latency_ms=latency,
        ellipse=ellipse,
        spacing_mm=spacing,
        spacing_source=source,
        measurements=measurements,
        scope=scope,
        forced=force,
    )
