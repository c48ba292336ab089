"""`healthfm images classify|segment` (CLI.md): run the shipped image models over DICOM, PNG and
JPEG files (or folders of them), JSON Lines on stdout, ``path: reason`` on stderr for files that
cannot be processed, exit 1 at the end if any could not. An image outside a model's scope gets
``in_scope: false`` and its ``scope_reasons``, and no answer unless ``--force``."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from healthfm_desktop.batch.output import emit_json, progress, report_bad_input
from healthfm_desktop.core.errors import ModelError, UserFacingError
from healthfm_desktop.core.imaging import raster

# an adapted head's scope is its embedding applicability domain (core/inference/domain.py)
ADAPTED_OUT_OF_DOMAIN = ("it is unlike the images this adapted model was trained on: its image-encoder embedding is "
                         "further from them than the validation images' threshold")
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}


def _expand(paths: list[str]) -> list[Path]:
    """Files as given; folders recursively (image suffixes, or DICOM files without one)."""
    from healthfm_desktop.core.routing import is_dicom_file

    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if child.suffix.lower() in _IMAGE_SUFFIXES or (not child.suffix and is_dicom_file(child)):
                    files.append(child)
        else:
            files.append(path)
    return files


def _png_bytes(pixels) -> bytes:
    return raster.png_bytes(pixels)


def _write_png(path: Path, png: bytes) -> None:
    from healthfm_desktop.core.storage.atomic import atomic_write_bytes

    atomic_write_bytes(path, png)


def _output_name(folder: Path, source: Path, suffix: str, used: set[str]) -> Path:
    """``<stem><suffix>.png`` in ``folder``, numbered when two inputs share a stem."""
    stem = source.stem or source.name
    name = f"{stem}{suffix}.png"
    counter = 2
    while name in used:
        name = f"{stem}_{counter}{suffix}.png"
        counter += 1
    used.add(name)
    return folder / name


def _prepare_folder(value: str | None) -> Path | None:
    if value is None:
        return None
    folder = Path(value)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserFacingError(f"cannot create the output folder {folder}: {exc.strerror or exc}") from exc
    if not folder.is_dir():
        raise UserFacingError(f"{folder} is not a folder")
    return folder


def _computed(path: str, compute, *args):
    """``compute(path, *args)``, or ``UserFacingError`` returned for a bad file (a missing or
    tampered model, ModelError, is raised: it stops the run)."""
    try:
        return compute(Path(path), *args)
    except ModelError:
        raise
    except UserFacingError as exc:
        return exc


def _each_image(paths: list[str], command: str, handle, compute, compute_args: tuple = (),
                scheduler: str | None = None) -> int:
    """``handle(path, compute(path, *compute_args))`` on every image, in input order; compute
    runs here or, with ``scheduler``, as tasks on that Dask cluster. A bad file is reported
    (`path: reason`) and the rest go on; a missing or tampered model stops the run. Exit 1 if
    any file failed or none found."""
    from healthfm_desktop.core.cluster import map_ordered

    files = _expand(paths)
    failed = 0
    results = map_ordered(_computed, [str(f) for f in files], compute, *compute_args, scheduler=scheduler, label=command)
    for path, computed in zip(files, results if scheduler else progress(results, total=len(files), label=command)):
        if isinstance(computed, UserFacingError):
            failed += 1
            report_bad_input(path, computed)
        else:
            handle(path, computed)
    if not files:
        report_bad_input(f"images {command}", "no image files found")
        return 1
    return 1 if failed else 0


def _scope_notes(path: Path, scope) -> None:
    for reason in scope.reasons:
        print(f"{path}: note: outside the model's scope: {reason}", file=sys.stderr)


@lru_cache(maxsize=4)
def _model(name: str):
    from healthfm_desktop.core.imaging.ai.models import load_model

    return load_model(name)


def classify_image(path: Path, name: str, force: bool, saliency: bool):
    """(result, saliency overlay PNG bytes or None) of one image: here or as a cluster task."""
    from healthfm_desktop.core.imaging.ai.classification import classify as run_classifier
    from healthfm_desktop.core.imaging.ai.classification import saliency_overlay
    from healthfm_desktop.core.imaging.ai.preprocessing import read_image

    image = read_image(path)
    result = run_classifier(image, _model(name), force=force)
    png = None
    if saliency and result.answer is not None:
        png = _png_bytes(saliency_overlay(image, result.saliency))
    return result, png


def classify(args) -> int:
    from healthfm_desktop.core.imaging.ai.models import default_classifier

    saliency_dir = _prepare_folder(args.saliency)
    name = getattr(args, "model", None)
    if name:
        from healthfm_desktop.core.inference.registry import load_registry

        manifest = load_registry().get(name)
        if manifest.task != "image-classification":
            raise ModelError(f"model {name!r} is a {manifest.task} model, not an image classifier")
        if manifest.encoder:
            return _classify_with_head(args, manifest)
    # a missing or tampered model stops the run (exit 1)
    name = name or default_classifier()
    _model(name)
    used: set[str] = set()

    def one(path: Path, computed) -> None:
        result, saliency_png = computed
        record = result.to_json(str(path))
        if saliency_dir is not None and result.answer is not None:
            out = _output_name(saliency_dir, path, "_saliency", used)
            _write_png(out, saliency_png)
            record["saliency_path"] = str(out)
        if args.json:
            emit_json(record)
        elif result.answer is None:
            print(f"{path}: no answer (outside the scope of {result.model}; --force to run anyway)")
        else:
            forced = " RUN ANYWAY, outside the model's scope" if record["forced"] else ""
            in_set = f", {result.set_coverage:.0%} set {{{', '.join(result.prediction_set)}}}" if result.prediction_set else ""
            print(f"{path}: {result.label} (p={result.probability:.3f}{in_set}, {result.model}){forced}")
        _scope_notes(path, result.scope)

    return _each_image(args.paths, "classify", one, classify_image, (name, args.force, saliency_dir is not None),
                       getattr(args, "scheduler", None))


def _classify_with_head(args, manifest) -> int:
    """An adapted classifier (a head on the image encoder's embedding), in `images classify` shape."""
    if args.saliency:
        raise ModelError(f"model {manifest.name!r} is a head on embeddings: it has no saliency map")
    _adapted_model(manifest.name)

    def one(path: Path, result: dict) -> None:
        inside = bool(result["in_domain"])
        reasons = [] if inside else [ADAPTED_OUT_OF_DOMAIN]
        shown = inside or args.force
        record = {"path": str(path), "label": result["label"] if shown else None, "probabilities": result["probabilities"],
                  "model": manifest.name, "prediction_set": result["prediction_set"] if shown else None,
                  "in_domain": inside, "in_scope": inside, "scope_reasons": reasons, "forced": args.force and not inside}
        if args.json:
            emit_json(record)
        elif not shown:
            print(f"{path}: no answer (outside the scope of {manifest.name}; --force to run anyway)")
        else:
            forced = " RUN ANYWAY, outside the model's scope" if record["forced"] else ""
            print(f"{path}: {record['label']} (p={record['probabilities'][record['label']]:.3f}, {manifest.name}){forced}")
        for reason in reasons:
            print(f"{path}: note: outside the model's scope: {reason}", file=sys.stderr)

    return _each_image(args.paths, "classify", one, classify_with_head, (manifest.name,), getattr(args, "scheduler", None))


@lru_cache(maxsize=4)
def _adapted_model(name: str):
    from healthfm_desktop.core.foundation.adaptation import AdaptedModel
    from healthfm_desktop.core.inference.registry import load_registry

    return AdaptedModel.load(load_registry().get(name))


def classify_with_head(path: Path, name: str) -> dict:
    from healthfm_desktop.core.imaging.ai.preprocessing import read_image

    (result,) = _adapted_model(name).predict([read_image(path).pixels])
    return result


def segment_image(path: Path, name: str, pixel_spacing: float | None, force: bool):
    """(result, mask PNG bytes or None) of one image: here or as a cluster task."""
    from healthfm_desktop.core.imaging.ai.preprocessing import read_image
    from healthfm_desktop.core.imaging.ai.segmentation import segment as run_segmenter

    result = run_segmenter(read_image(path), pixel_spacing, _model(name), force=force)
    png = None if result.withheld else _png_bytes((result.mask > 0).astype("uint8") * 255)
    return result, png


def segment(args) -> int:
    from healthfm_desktop.core.imaging.ai.models import default_segmenter
    from healthfm_desktop.core.imaging.ai.segmentation import parse_spacing

    try:
        parse_spacing(args.pixel_spacing)
    except UserFacingError as exc:  # a bad --pixel-spacing is bad usage (exit 2), before any work
        print(f"healthfm images segment: --pixel-spacing: {exc}", file=sys.stderr)
        return 2
    out_dir = _prepare_folder(args.out)
    name = default_segmenter()
    _model(name)
    used: set[str] = set()

    def one(path: Path, computed) -> None:
        result, mask_png = computed
        mask_path = None
        if not result.withheld:
            mask_path = _output_name(out_dir, path, "_mask", used)
            _write_png(mask_path, mask_png)
        record = {"path": str(path), "model": result.model, "mask_path": None if mask_path is None else str(mask_path),
                  "measurements": result.measurements, **result.scope.to_json(),
                  "forced": result.forced and not result.scope.in_scope}
        if result.spacing_mm is not None:
            record["pixel_spacing_mm"] = list(result.spacing_mm)
            record["pixel_spacing_source"] = result.spacing_source
        if args.json:
            emit_json(record)
        elif result.withheld:
            print(f"{path}: no answer (outside the scope of {result.model}; --force to run anyway)")
        else:
            hc = result.measurements.get("head_circumference_mm")
            forced = " RUN ANYWAY, outside the model's scope" if record["forced"] else ""
            print(f"{path}: mask {mask_path}" + (f", head circumference {hc:.1f} mm" if hc is not None else "") + forced)
        _scope_notes(path, result.scope)
        if result.withheld:
            return
        if result.ellipse is None:
            print(f"{path}: note: no fetal head found, so nothing was measured", file=sys.stderr)
        elif result.spacing_mm is None:
            print(
                f"{path}: note: no pixel spacing (not in the file and no --pixel-spacing given), "
                "so no measurement in mm",
                file=sys.stderr,
            )

    return _each_image(args.paths, "segment", one, segment_image, (name, args.pixel_spacing, args.force),
                       getattr(args, "scheduler", None))
