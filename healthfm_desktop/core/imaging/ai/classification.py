"""Pneumonia classification of a chest X-ray with its saliency map: one ONNX run gives the
temperature-calibrated probabilities and the class activation map (CAM) of every class; the
scope gate decides whether the label may be given, the conformal set goes beside it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from healthfm_desktop.core.errors import ModelError
from healthfm_desktop.core.imaging import raster
from healthfm_desktop.core.imaging.ai import preprocessing as prep
from healthfm_desktop.core.imaging.ai.intended_use import ImageScope, ScopeDecision
from healthfm_desktop.core.imaging.ai.models import LoadedModel, default_classifier, load_model
from healthfm_desktop.core.inference.image_steps import apply_steps, frame_pixels


@dataclass
class ClassificationResult:
    label: str
    probabilities: dict[str, float]
    model: str  # manifest name
    model_version: str
    provider: str
    latency_ms: float  # preprocessing + inference
    class_activation: np.ndarray  # float32 (28, 28) activation map of the predicted label
    source_shape: tuple[int, int]
    scope: ScopeDecision = field(default_factory=lambda: ScopeDecision(True))
    forced: bool = False  # the user asked for the answer although the image is out of scope
    prediction_set: list[str] | None = None  # conformal set at the manifest's coverage
    set_coverage: float | None = None
    nearest_examples: list[tuple[np.ndarray, str]] = field(default_factory=list, repr=False)  # training (picture, label)
    _saliency: np.ndarray | None = field(default=None, repr=False)

    @property
    def probability(self) -> float:
        return self.probabilities[self.label]

    @property
    def answer(self) -> str | None:
        """The label the user is given: None when the image is out of scope and not forced."""
        return self.label if self.scope.in_scope or self.forced else None

    @property
    def saliency(self) -> np.ndarray:
        """float32 (H, W) in 0..1 at the source image's size (made when first asked for: a
        full-size X-ray's map costs more than the model run)."""
        if self._saliency is None:
            self._saliency = saliency_at_source(self.class_activation, self.source_shape)
        return self._saliency

    def to_json(self, path: str) -> dict:
        record = {"path": path, "label": self.answer, "probabilities": self.probabilities, "model": self.model,
                  **self.scope.to_json(), "forced": self.forced and not self.scope.in_scope}
        if self.prediction_set is not None:
            record["prediction_set"] = self.prediction_set if self.answer is not None else None
        return record


def saliency_at_source(cam: np.ndarray, source_shape: tuple[int, int]) -> np.ndarray:
    """A 28x28 activation map -> 0..1 map over the source image. Negative evidence is dropped
    (as Grad-CAM's ReLU does); the map covers the centre square the classifier saw."""
    cam = np.maximum(np.asarray(cam, dtype=np.float32), 0.0)
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else np.zeros_like(cam)
    height, width = source_shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    out = np.zeros((height, width), dtype=np.float32)
    out[top : top + side, left : left + side] = raster.resize(cam, (side, side), "linear")
    return out


def classify(image: prep.SourceImage, model: LoadedModel | None = None, force: bool = False) -> ClassificationResult:
    """Run the shipped classifier (float or INT8 per Settings) on one image. The probabilities
    are always computed; ``answer`` is None for an out-of-scope image unless ``force``."""
    model = model or load_model(default_classifier())
    started = time.perf_counter()
    steps = model.manifest.preprocessing["steps"]
    small = frame_pixels(image.pixels, steps)
    tensor = apply_steps(small, steps)
    outputs = [o["name"] for o in model.manifest.outputs]
    try:
        results = dict(zip(outputs, model.session.run(outputs, {model.manifest.inputs[0]["name"]: tensor})))
    except Exception as exc:  # onnxruntime errors have no common base class
        raise ModelError(f"the classifier failed to run: {type(exc).__name__}") from exc
    probabilities = results.get("probabilities", results[outputs[0]])
    # a classifier brought by the user may have no class activation output: no saliency then
    cams = results.get("class_activation", np.zeros((1, len(model.manifest.labels)) + small.shape, np.float32))
    labels = list(model.manifest.labels)
    probs = probabilities[0].astype(np.float64)
    index = int(np.argmax(probs))
    latency = (time.perf_counter() - started) * 1000
    scope = ImageScope.of_manifest(model.manifest)
    conformal = model.manifest.extra.get("conformal")
    prediction_set = None
    if conformal:
        from healthfm_desktop.core.inference.conformal import ConformalClassifier

        prediction_set = ConformalClassifier.from_dict(conformal).prediction_sets(probs[None], labels)[0]
    decision = scope.decide(image, small) if scope is not None else ScopeDecision(True)
    nearest = [scope.example(i) for i in decision.nearest[:3]] if scope is not None else []
    return ClassificationResult(
        label=labels[index],
        probabilities={label: round(float(p), 6) for label, p in zip(labels, probs)},
        model=model.manifest.name,
        model_version=model.manifest.version,
        provider=model.provider.active,
        latency_ms=latency,
        class_activation=np.ascontiguousarray(cams[0, index]),
        source_shape=image.shape,
        scope=decision,
        nearest_examples=[example for example in nearest if example is not None],
        forced=force,
        prediction_set=prediction_set,
        set_coverage=float(conformal["coverage"]) if conformal else None,
    )


def saliency_overlay(image: prep.SourceImage, saliency: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """RGB uint8 picture: the image in grey with the saliency as a JET heat map over it."""
    grey = np.repeat(np.asarray(image.pixels)[..., None], 3, axis=-1)
    heat = raster.jet(np.clip(saliency * 255, 0, 255).astype(np.uint8))
    alpha = (opacity * saliency)[..., None]
    return np.clip(grey * (1 - alpha) + heat * alpha, 0, 255).astype(np.uint8)
