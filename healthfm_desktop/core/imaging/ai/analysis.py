"""One "Analyse" of the image on screen, as the viewer needs it: pick the model for the image
(the one whose scope fits, or the user's choice), run it, and return plain values to draw: the
label, calibrated probability and conformal set, the saliency heat map or the head mask as RGBA
overlays, the fitted ellipse outline with its circumference, the latency, and, for an image out
of the model's scope, the reasons instead of an answer (unless the user runs it anyway)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from healthfm_desktop.core.errors import UserFacingError
from healthfm_desktop.core.imaging.ai.classification import ClassificationResult, classify
from healthfm_desktop.core.imaging.ai.models import CLASSIFICATION, SEGMENTATION, load_model, model_for
from healthfm_desktop.core.imaging.ai.preprocessing import SourceImage, read_dicom_bytes
from healthfm_desktop.core.imaging import raster
from healthfm_desktop.core.imaging.ai.segmentation import SegmentationResult, segment

AUTOMATIC, CLASSIFY, SEGMENT = "auto", "classify", "segment"
USER_MODEL = "user:"  # + the name of an image model the user adapted (the registry finds it by manifest)
ULTRASOUND_MODALITIES = {"US", "IVUS"}


@dataclass
class AnalysisOutcome:
    task: str  # CLASSIFY or SEGMENT
    image: SourceImage
    model: str
    model_version: str
    provider: str
    provider_notes: list[str]
    latency_ms: float
    headline: str  # "pneumonia 0.93" / "head circumference 175.2 mm"
    overlay_rgba: np.ndarray | None  # uint8 (H, W, 4) at the image's size; None when the answer is withheld
    overlay_name: str
    contour_xy: list[tuple[float, float]] = field(default_factory=list)
    contour_label: str = ""
    details: dict = field(default_factory=dict)
    in_scope: bool = True
    scope_reasons: list[str] = field(default_factory=list)  # why the model's answer is withheld / doubtful
    forced: bool = False  # run anyway on an out-of-scope image: the answer is shown, marked
    classification: ClassificationResult | None = None
    segmentation: SegmentationResult | None = None

    @property
    def withheld(self) -> bool:
        return not self.in_scope and not self.forced


def task_for(image: SourceImage, choice: str) -> str:
    if choice in (CLASSIFY, SEGMENT):
        return choice
    return SEGMENT if (image.modality or "").upper() in ULTRASOUND_MODALITIES else CLASSIFY


def saliency_rgba(saliency: np.ndarray) -> np.ndarray:
    """JET colours, alpha following the saliency so weak evidence stays transparent (and strong
    evidence never hides the anatomy completely)."""
    rgba = np.empty(saliency.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = raster.jet(np.clip(saliency * 255, 0, 255).astype(np.uint8))
    rgba[..., 3] = np.clip(saliency * 200, 0, 200).astype(np.uint8)
    return rgba


def colour_scale_rgb(width: int = 256, height: int = 12) -> np.ndarray:
    """The saliency colours from 0 (left) to 1 (right), uint8 (height, width, 3), for a colour bar."""
    ramp = np.tile(np.linspace(0, 255, width).astype(np.uint8), (height, 1))
    return np.ascontiguousarray(raster.jet(ramp))


def mask_rgba(mask: np.ndarray, colour=(0, 200, 255)) -> np.ndarray:
    rgba = np.zeros(mask.shape + (4,), dtype=np.uint8)
    rgba[mask > 0] = (*colour, 255)
    return rgba


def image_from_dicom_object(data: bytes, frame: int = 0, name: str | None = None) -> SourceImage:
    """The viewer's current image (a DICOM object's bytes and frame) read the way the command
    line reads files, so both give the same answer."""
    from pathlib import Path

    return read_dicom_bytes(data, frame=frame, path=Path(name) if name else None)


def read_for_analysis(source, frame: int, name: str) -> SourceImage:
    """The image the AI panel analyses: a PNG / JPEG file through the command line's reader,
    a DICOM object through the DICOM reader (both as ``images classify`` reads them)."""
    from healthfm_desktop.core.imaging.ai.preprocessing import read_raster
    from healthfm_desktop.core.imaging.plain_images import plain_image_kind

    if source.member is None and plain_image_kind(source.path) is not None:
        return read_raster(source.path)
    return image_from_dicom_object(source.read_bytes(), frame, name)


WITHHELD = "No answer: this image is outside what {model} was made for"
SALIENCY_CAPTION = (
    "Colour: class activation map (CAM) of the predicted label, scaled to its own maximum "
    "(red = the regions that pushed the 28x28 network most towards it, blue = least; weak values are drawn transparent). It shows where "
    "the network looked, not where the disease is, and is coarse (28x28 cells over the centre square).")


def analyse(
    image: SourceImage, choice: str = AUTOMATIC, pixel_spacing_mm: float | None = None, force: bool = False
) -> Iterator[tuple[float, str]]:
    """A generator: yields (fraction, step) between steps (where a job can be cancelled) and
    returns an AnalysisOutcome. Automatic: the model preferred by modality if the image is in
    its scope, else the other if it is in that one's, else the preferred one with its answer
    withheld and every model's reasons. ``force`` gives an out-of-scope answer, marked."""
    if choice.startswith(USER_MODEL):
        return (yield from _run_user_model(image, choice, force))
    task = task_for(image, choice)
    outcome = yield from _run(image, task, pixel_spacing_mm, force)
    if choice == AUTOMATIC and not outcome.in_scope and not force:
        other = SEGMENT if task == CLASSIFY else CLASSIFY
        alternative = yield from _run(image, other, pixel_spacing_mm, False)
        if alternative.in_scope:
            alternative.details["choice_note"] = (
                f"Automatic chose {alternative.model}: the image is outside the scope of {outcome.model} ("
                + "; ".join(outcome.scope_reasons) + ")")
            return alternative
        outcome.scope_reasons = [f"{outcome.model}: {r}" for r in outcome.scope_reasons] + [
            f"{alternative.model}: {r}" for r in alternative.scope_reasons]
        outcome.headline = "No answer: no shipped model is made for this kind of image"
    return outcome


def _run_user_model(image: SourceImage, choice: str, force: bool):
    """One of the user's adapted image models on the image: label with probabilities and its
    conformal set (or value and interval), withheld when the image's embedding is outside the
    model's applicability domain. The outcome's task is ``choice``, so Run anyway reruns it."""
    import time

    from healthfm_desktop.core.foundation.adaptation import AdaptedModel
    from healthfm_desktop.core.inference.registry import load_registry

    name = choice[len(USER_MODEL):]
    yield 0.2, "loading the model"
    manifest = load_registry().get(name)
    if manifest.source != "user" or manifest.task not in ("image-classification", "image-regression"):
        raise UserFacingError(f"{name} is not one of your image models")
    model = AdaptedModel.load(manifest)
    yield 0.4, f"running {name}"
    started = time.perf_counter()
    record = model.predict([image.pixels])[0]
    latency_ms = (time.perf_counter() - started) * 1000.0
    in_domain = bool(record["in_domain"])
    reasons = [] if in_domain else ["the image is unlike the images the model was trained on "
                                    "(nearest-neighbour distance of its embedding above the model's threshold)"]
    details = {"user_model": True, "in_domain": in_domain}
    if "label" in record:
        answer = f"{record['label']} (p = {record['probabilities'][record['label']]:.2f})"
        details.update(label=record["label"], probabilities=record["probabilities"],
                       prediction_set=record["prediction_set"])
    else:
        answer = f"{record['value']:.4g}"
        details.update(value=record["value"], interval=record["interval"])
    if in_domain:
        headline = answer
    elif force:
        headline = answer + " (run anyway, outside the model's domain)"
    else:
        headline = WITHHELD.format(model=name)
    return AnalysisOutcome(
        task=choice, image=image, model=name, model_version=str(manifest.version), provider="CPUExecutionProvider",
        provider_notes=[], latency_ms=latency_ms, headline=headline, overlay_rgba=None, overlay_name="ai-user-model",
        details=details, in_scope=in_domain, scope_reasons=reasons, forced=force and not in_domain)


def _run(image: SourceImage, task: str, pixel_spacing_mm: float | None, force: bool):
    yield 0.2, "loading the model"
    model = load_model(model_for(CLASSIFICATION if task == CLASSIFY else SEGMENTATION, image.modality))
    yield 0.4, f"running {model.label}"
    if task == CLASSIFY:
        result = classify(image, model, force=force)
        yield 0.9, "drawing the saliency map"
        scope = result.scope
        if result.answer is None:
            headline, overlay = WITHHELD.format(model=result.model), None
        else:
            headline = f"{result.label} (p = {result.probability:.2f})"
            if result.forced and not scope.in_scope:
                headline += " (run anyway, outside the model's scope)"
            overlay = saliency_rgba(result.saliency)
        details = {"probabilities": result.probabilities, "calibration": "temperature-scaled on the validation split",
                   "prediction_set": result.prediction_set if result.answer is not None else None,
                   "set_coverage": result.set_coverage, "saliency_caption": SALIENCY_CAPTION,
                   "colour_scale": colour_scale_rgb(),
                   "nearest_examples": result.nearest_examples if result.answer is not None else []}
        return AnalysisOutcome(
            task=task, image=image, model=result.model, model_version=result.model_version,
            provider=result.provider, provider_notes=list(model.provider.notes), latency_ms=result.latency_ms,
            headline=headline, overlay_rgba=overlay, overlay_name="ai-saliency", details=details,
            in_scope=scope.in_scope, scope_reasons=list(scope.reasons), forced=force and not scope.in_scope,
            classification=result,
        )
    result = segment(image, pixel_spacing_mm, model, force=force)
    yield 0.9, "fitting the head ellipse"
    hc = result.head_circumference_mm
    contour, contour_label = [], ""
    if result.withheld:
        headline = WITHHELD.format(model=result.model)
    elif result.ellipse is None:
        headline = "no fetal head found"
    elif hc is None:
        headline = "head outlined; no pixel spacing, so no circumference in mm"
        contour = [tuple(map(float, p)) for p in result.ellipse.polygon()]
        contour_label = f"HC {result.measurements['head_circumference_px']:.0f} px"
    else:
        headline = f"head circumference {hc:.1f} mm"
        contour = [tuple(map(float, p)) for p in result.ellipse.polygon()]
        contour_label = f"HC {hc:.1f} mm"
    if result.forced and not result.scope.in_scope:
        headline += " (run anyway, outside the model's scope)"
    return AnalysisOutcome(
        task=task, image=image, model=result.model, model_version=result.model_version,
        provider=result.provider, provider_notes=list(model.provider.notes), latency_ms=result.latency_ms,
        headline=headline, overlay_rgba=None if result.withheld else mask_rgba(result.mask),
        overlay_name="ai-segmentation", contour_xy=contour, contour_label=contour_label,
        details={"measurements": result.measurements, "pixel_spacing_source": result.spacing_source},
        in_scope=result.scope.in_scope, scope_reasons=list(result.scope.reasons),
        forced=force and not result.scope.in_scope, segmentation=result,
    )


def export_results(outcome: AnalysisOutcome, folder) -> list:
    """Write the result next to nothing else: DICOM SEG + SR for DICOM sources, JSON otherwise.
    Returns the paths written."""
    from pathlib import Path

    from healthfm_desktop.core.imaging.ai import dicom_export

    if outcome.withheld:
        raise UserFacingError("there is no result to export: the answer was withheld (the image is outside the model's scope)")
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserFacingError(f"cannot create {folder}: {exc.strerror or exc}") from exc
    written = []
    if outcome.image.dicom is not None:
        uid = str(outcome.image.dicom.SOPInstanceUID)[-12:]
        if outcome.segmentation is not None and outcome.segmentation.ellipse is not None:
            seg = dicom_export.segmentation_to_dicom_seg(outcome.image, outcome.segmentation)
            written.append(dicom_export.save_dataset(seg, folder / f"SEG_{uid}.dcm"))
        measured = outcome.segmentation is not None and outcome.segmentation.head_circumference_mm is not None
        if outcome.classification is not None or measured:
            sr = dicom_export.results_to_sr(outcome.image, outcome.classification, outcome.segmentation)
            written.append(dicom_export.save_dataset(sr, folder / f"SR_{uid}.dcm"))
    else:
        record = dicom_export.results_to_json(str(outcome.image.path or "image"), outcome.classification, outcome.segmentation)
        written.append(dicom_export.save_json(record, folder / "analysis.json"))
    return written


@dataclass
class SeriesAnalysis:
    """Every image of a series through one model: a line per image, a summary, and the full
    outcome (with its overlay) for the image that was on screen."""

    task: str
    model: str
    per_image: list[dict]
    summary: str
    on_screen: AnalysisOutcome | None


def run_to_end(steps) -> AnalysisOutcome:
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def summarise_series(task: str, per_image: list[dict]) -> str:
    withheld = [r for r in per_image if r.get("withheld")]
    per_image = [r for r in per_image if not r.get("withheld")]
    note = f"; {len(withheld)} withheld (outside the model's scope)" if withheld else ""
    if not per_image:
        return f"{len(withheld)} images: every answer withheld (outside the model's scope)"
    if task.startswith(USER_MODEL):
        labels = [r["label"] for r in per_image if r.get("label") is not None]
        if labels:
            counts = ", ".join(f"{label} on {labels.count(label)}" for label in sorted(set(labels)))
            return f"{len(per_image)} images answered: {counts}{note}"
        values = [r["value"] for r in per_image if r.get("value") is not None]
        return (f"{len(per_image)} images answered: {min(values):.4g}-{max(values):.4g} "
                f"(median {float(np.median(values)):.4g}){note}")
    if task == CLASSIFY:
        # the finding is the classifier's last label (its manifest lists the normal class first)
        finding = list(per_image[0]["probabilities"])[-1]
        positives = [r for r in per_image if r["label"] == finding]
        top = max(per_image, key=lambda r: r["probabilities"].get(finding, 0.0))
        return (f"{len(per_image)} images answered: {finding} on {len(positives)}; highest p({finding}) "
                f"{top['probabilities'][finding]:.2f} on image {top['index'] + 1}{note}")
    measured = [r for r in per_image if r.get("head_circumference_mm") is not None]
    if not measured:
        found = sum(1 for r in per_image if r["head_found"])
        return f"{len(per_image)} images: a head outlined on {found}; no circumference in mm (no pixel spacing){note}"
    values = [r["head_circumference_mm"] for r in measured]
    return (f"{len(per_image)} images: head measured on {len(measured)}; circumference "
            f"{min(values):.1f}-{max(values):.1f} mm (median {float(np.median(values)):.1f} mm){note}")


def _series_record(index: int, outcome: AnalysisOutcome) -> dict:
    """One image's row of a SeriesAnalysis: plain values, the same here and from a cluster task."""
    record = {"index": index, "headline": outcome.headline, "in_scope": outcome.in_scope,
              "scope_reasons": outcome.scope_reasons, "withheld": outcome.withheld}
    if outcome.task.startswith(USER_MODEL):
        record.update(label=None if outcome.withheld else outcome.details.get("label"),
                      value=None if outcome.withheld else outcome.details.get("value"))
    elif outcome.classification is not None:
        record.update(label=outcome.classification.answer, probabilities=outcome.classification.probabilities)
    else:
        record.update(head_found=outcome.segmentation.ellipse is not None,
                      head_circumference_mm=outcome.segmentation.head_circumference_mm)
    return record


def analyse_frames(frames: list[tuple], task: str, pixel_spacing_mm: float | None = None,
                   force: bool = False) -> list[dict]:
    """One cluster task of "Analyse series" on Settings > Compute: ``frames`` are (index,
    SourceRef, frame number, name) read where the worker is (a path it shares), each run through
    ``task``'s model; their records, as ``analyse_series`` makes them here."""
    records = []
    for index, source, frame, name in frames:
        outcome = run_to_end(analyse(read_for_analysis(source, frame, name), task, pixel_spacing_mm, force))
        records.append(_series_record(index, outcome))
    return records


SERIES_TASK_FRAMES = 8  # images per cluster task of "Analyse series"


def analyse_series(
    load_image, count: int, on_screen: int, choice: str = AUTOMATIC, pixel_spacing_mm: float | None = None,
    force: bool = False, cluster: tuple | None = None,
):
    """A generator over ``count`` images (``load_image(i)`` -> SourceImage): yields (fraction,
    step) after each image, returns a SeriesAnalysis. The task is chosen on the first image
    when ``choice`` is automatic (the model whose scope fits it), so a series goes through one model.
    With ``cluster`` = (Dask client, frames as ``analyse_frames`` takes them), the first image and
    the one on screen (whose overlay is drawn) run here and the others on the cluster."""
    if count <= 0:
        raise UserFacingError("the series has no images")
    if cluster is not None:
        return (yield from _analyse_series_on_cluster(load_image, count, on_screen, choice, pixel_spacing_mm,
                                                      force, *cluster))
    per_image: list[dict] = []
    task = None
    kept: AnalysisOutcome | None = None
    for index in range(count):
        image = load_image(index)
        outcome = run_to_end(analyse(image, task or choice, pixel_spacing_mm, force))
        task = task or outcome.task
        per_image.append(_series_record(index, outcome))
        if index == on_screen:
            kept = outcome
        yield (index + 1) / count, f"image {index + 1} of {count}"
    model = kept.model if kept is not None else outcome.model
    return SeriesAnalysis(task, model, per_image, summarise_series(task, per_image), kept)


def _analyse_series_on_cluster(load_image, count, on_screen, choice, pixel_spacing_mm, force, client, frames):
    from healthfm_desktop.core.cluster import chunked, map_ordered

    first = run_to_end(analyse(load_image(0), choice, pixel_spacing_mm, force))
    task = first.task
    here = {0: first}
    if 0 < on_screen < count:
        here[on_screen] = run_to_end(analyse(load_image(on_screen), task, pixel_spacing_mm, force))
    rest = [frame for frame in frames[:count] if frame[0] not in here]
    per_image = {index: _series_record(index, outcome) for index, outcome in here.items()}
    yield len(per_image) / count, f"image {len(per_image)} of {count}"
    for records in map_ordered(analyse_frames, list(chunked(rest, SERIES_TASK_FRAMES)), task, pixel_spacing_mm,
                               force, client=client, label="analyse-series"):
        per_image.update((record["index"], record) for record in records)
        yield len(per_image) / count, f"image {len(per_image)} of {count} (on the cluster)"
    rows = [per_image[index] for index in range(count)]
    return SeriesAnalysis(task, first.model, rows, summarise_series(task, rows), here.get(on_screen))
