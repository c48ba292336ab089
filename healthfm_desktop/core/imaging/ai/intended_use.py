"""The scope gate of an image model: is this input the kind of image the model was made for?
Decided from the DICOM tags where the file has them (modality, body part, view, photometric,
bit depth, size) and, for every input, from two kNN distances to the model's training images,
each with its threshold set on validation images: of gradient/intensity features
(``<model>_scope.npz``) and of the image encoder's embedding (``<model>_scope_embedding.npz``).
An input is in scope only when both call it near."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from healthfm_desktop.core.errors import ModelError
from healthfm_desktop.core.imaging import raster
from healthfm_desktop.core.imaging.ai.preprocessing import SourceImage
from healthfm_desktop.core.inference.domain import EmbeddingDomain
from healthfm_desktop.core.inference.registry import sha256_of
from healthfm_desktop.core.storage.atomic import atomic_write_bytes

# Gradient-orientation histograms (4x4 cells, 8 orientations) and a 16-bin intensity histogram
# of what the model sees: chosen on development images (PneumoniaMNIST val, HC18, CT/MR slices,
# photos) over raw pixels, PCA of pixels and the classifier's activation maps, which let
# photographs through (models/training/fit_image_scope.py prints the figures).
CELLS, ORIENTATIONS, INTENSITY_BINS = 4, 8, 16


@dataclass(frozen=True)
class ScopeDecision:
    in_scope: bool
    reasons: list[str] = field(default_factory=list)  # why not, in words; empty when in scope
    distance: float | None = None  # to the training images (mean over k nearest, scaled features)
    threshold: float | None = None
    # indices of the nearest training images, nearest first: by the image encoder's embedding
    # where the scope has one, else by the image features
    nearest: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"in_scope": self.in_scope, "scope_reasons": list(self.reasons)}


def image_features(pixels_uint8: np.ndarray) -> np.ndarray:
    """float32 (CELLS*CELLS*ORIENTATIONS + INTENSITY_BINS,) description of one grey image."""
    image = np.asarray(pixels_uint8, dtype=np.float32) / 255.0
    gx = raster.sobel(image, axis=1)
    gy = raster.sobel(image, axis=0)
    magnitude = np.hypot(gx, gy)
    orientation = ((np.arctan2(gy, gx) % np.pi) / np.pi * ORIENTATIONS).astype(np.int64) % ORIENTATIONS
    height, width = image.shape
    cells = []
    for i in range(CELLS):
        for j in range(CELLS):
            rows = slice(i * height // CELLS, (i + 1) * height // CELLS)
            cols = slice(j * width // CELLS, (j + 1) * width // CELLS)
            cells.append(np.bincount(orientation[rows, cols].ravel(), magnitude[rows, cols].ravel(), ORIENTATIONS))
    gradients = np.concatenate(cells)
    gradients = gradients / (np.linalg.norm(gradients) + 1e-6)
    levels = np.asarray(pixels_uint8, dtype=np.uint8).ravel() // (256 // INTENSITY_BINS)
    histogram = np.bincount(levels, minlength=INTENSITY_BINS) / levels.size
    return np.concatenate([gradients, histogram]).astype(np.float32)


def features_of(batch_uint8) -> np.ndarray:
    return np.stack([image_features(p) for p in batch_uint8])


_LOADED: dict[tuple, "ImageScope"] = {}  # per file stamp: checked and read once, not once per image
_LOCK = threading.Lock()


@dataclass
class ImageScope:
    """A model's scope: the tag rules of its manifest entry and the kNN domain of its npz."""

    spec: dict[str, Any]
    domain: EmbeddingDomain | None
    feature_scale: np.ndarray | None
    examples: np.ndarray | None = None  # uint8 (n, h, w) training pictures, when shipped
    example_labels: list[str] = field(default_factory=list)
    embedding_domain: EmbeddingDomain | None = None  # over the image encoder's embeddings

    def example(self, index: int) -> tuple[np.ndarray, str] | None:
        """A training picture and its label, for "the most similar training images"."""
        if self.examples is None or not 0 <= index < len(self.examples):
            return None
        return self.examples[index], self.example_labels[index]

    @classmethod
    def of_manifest(cls, manifest) -> "ImageScope | None":
        """The scope a model's manifest declares (None when it declares none: a user's model)."""
        spec = manifest.extra.get("scope")
        if not spec:
            return None
        path = Path(manifest.model_path).parent / spec["file"]
        try:
            stat = path.stat()
        except OSError:
            raise ModelError(f"scope file {path.name} of model {manifest.name!r} is missing; reinstall the model") from None
        key = (str(path), spec["sha256"], stat.st_mtime_ns, stat.st_size)
        with _LOCK:
            cached = _LOADED.get(key)
        if cached is not None:
            return cached
        if sha256_of(path) != spec["sha256"]:
            raise ModelError(f"scope file {path.name} does not match the manifest of {manifest.name!r}; reinstall the model")
        with np.load(path, allow_pickle=False) as data:
            scale = np.asarray(data["feature_scale"], dtype=np.float32)
            examples = data["examples"] if "examples" in data.files else None
            labels = [str(x) for x in data["example_labels"]] if "example_labels" in data.files else []
        scope = cls(spec, EmbeddingDomain.load(path), scale, examples, labels, _embedding_domain(manifest, spec))
        with _LOCK:
            _LOADED[key] = scope
        return scope

    def decide(self, image: SourceImage, model_pixels: np.ndarray) -> ScopeDecision:
        """``model_pixels``: the uint8 picture the model sees (the 28x28 crop, the letterbox)."""
        reasons = tag_reasons(image, self.spec)
        distance = threshold = None
        nearest: list[int] = []
        if self.domain is not None:
            query = image_features(scope_pixels(model_pixels, self.spec)) / self.feature_scale
            assessment = self.domain.assess(query[None])
            distance, threshold = float(assessment.distance[0]), self.domain.threshold
            nearest = [int(i) for i in assessment.nearest[0]]
            if distance > threshold:
                reasons.append(
                    f"it does not look like {self.spec.get('description', 'the training images')}: its distance to the "
                    f"nearest training images is {distance:.1f}, above the {threshold:.1f} that "
                    f"{self.domain.quantile:.1%} of the validation images stay within"
                )
        if self.embedding_domain is not None:
            from healthfm_desktop.core.foundation.images import embed_images

            far = self.embedding_domain.assess(embed_images([model_pixels]))
            # the most similar training images are the encoder's neighbours (its rows are the
            # training pictures in the order of ``examples``: fit_scope embeds the same list)
            nearest = [int(i) for i in far.nearest[0]]
            if not far.in_domain[0]:
                reasons.append(
                    f"the image encoder places it far from {self.spec.get('description', 'the training images')}: "
                    f"distance {far.distance[0]:.2f} to the nearest training images, above the "
                    f"{self.embedding_domain.threshold:.2f} that {self.embedding_domain.quantile:.1%} of the validation images stay within"
                )
        return ScopeDecision(not reasons, reasons, distance, threshold, nearest)


def _embedding_domain(manifest, spec: dict[str, Any]) -> EmbeddingDomain | None:
    """The embedding half of the gate, checked against its sha256 and against the image encoder
    it was fitted with (another encoder's embeddings would be measured against the wrong map)."""
    entry = spec.get("embedding")
    if not entry:
        return None
    from healthfm_desktop.core.inference.registry import load_registry

    path = Path(manifest.model_path).parent / entry["file"]
    if not path.is_file() or sha256_of(path) != entry["sha256"]:
        raise ModelError(f"scope file {entry['file']} of model {manifest.name!r} is missing or altered; reinstall the model")
    encoder = load_registry().get(entry["encoder"])
    if encoder.sha256 != entry["encoder_sha256"]:
        raise ModelError(f"the scope of {manifest.name!r} was fitted with another {entry['encoder']}; "
                         "refit it (models/training/fit_image_trust.py)")
    return EmbeddingDomain.load(path)


def scope_pixels(model_pixels: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """The model's picture at the scope's feature grid (area resize), as uint8."""
    height, width = spec.get("feature_grid", list(np.asarray(model_pixels).shape[:2]))
    pixels = np.asarray(model_pixels, dtype=np.uint8)
    if pixels.shape[:2] == (height, width):
        return pixels
    return raster.resize(pixels, (int(width), int(height)), "area")


def _tag(dataset, keyword: str) -> str:
    value = getattr(dataset, keyword, None) if dataset is not None else None
    return str(value).strip().upper() if value not in (None, "") else ""


def tag_reasons(image: SourceImage, spec: dict[str, Any]) -> list[str]:
    """Reasons from what the file says about itself (DICOM tags) and its size and colour."""
    reasons: list[str] = []
    what = spec.get("description", "the training images")
    dataset = image.dicom
    modalities = spec.get("modalities") or []
    if image.modality and modalities and image.modality.upper() not in modalities:
        reasons.append(f"its modality is {image.modality}; the model is made for {what} ({', '.join(modalities)})")
    body_parts = spec.get("body_parts") or []
    body_part = _tag(dataset, "BodyPartExamined")
    if body_part and body_parts and body_part not in body_parts:
        reasons.append(f"the body part is {body_part}; the model is made for {', '.join(body_parts).lower()} images")
    views = spec.get("views") or []
    view = _tag(dataset, "ViewPosition")
    if view and views and view not in views:
        reasons.append(f"the view is {view}; the model is made for {'/'.join(views)} views")
    photometric = _tag(dataset, "PhotometricInterpretation")
    if photometric and not photometric.startswith("MONOCHROME"):
        reasons.append(f"the image is stored in colour ({photometric}); the model is made for grey-scale images")
    elif image.was_colour:
        reasons.append("the image is in colour; the model is made for grey-scale images")
    bits = _tag(dataset, "BitsStored")
    if bits.isdigit() and int(bits) < int(spec.get("min_bits_stored", 0)):
        reasons.append(f"it has {bits} bits per pixel; the model needs at least {spec['min_bits_stored']}")
    height, width = image.shape
    if min(height, width) < int(spec.get("min_side_px", 0)):
        reasons.append(f"it is {width}x{height} px, smaller than the {spec['min_side_px']} px the model needs on each side")
    low, high = spec.get("aspect_ratio_range", [0.0, float("inf")])
    if not low <= width / max(height, 1) <= high:
        reasons.append(f"its aspect ratio {width / max(height, 1):.2f} is outside the training images' ({low:.2f}-{high:.2f})")
    return reasons


def fit_scope(train_pixels, validation_pixels, spec: dict[str, Any], path: Path, quantile: float, k: int = 5,
              example_labels: list[str] | None = None) -> dict:
    """Fit and save a model's scope file from its training and validation pictures (uint8, as
    the model sees them); returns the manifest's ``scope`` entry. With ``example_labels`` the
    training pictures are stored too, to be shown as the most similar training images."""
    train_pixels, validation_pixels = list(train_pixels), list(validation_pixels)
    train = features_of(scope_pixels(p, spec) for p in train_pixels)
    scale = train.std(axis=0) + 1e-6
    validation = features_of(scope_pixels(p, spec) for p in validation_pixels)
    domain = EmbeddingDomain.fit(train / scale, validation / scale, quantile=quantile, k=k, metric="euclidean")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, reference=domain.reference.astype(np.float32), threshold=np.float64(domain.threshold),
                        k=np.int64(domain.k), metric=np.array(domain.metric), quantile=np.float64(domain.quantile),
                        feature_scale=scale.astype(np.float32),
                        **({"examples": np.stack(train_pixels).astype(np.uint8), "example_labels": np.array(example_labels)}
                           if example_labels is not None else {}))
    atomic_write_bytes(path, buffer.getvalue())
    from healthfm_desktop.core.foundation.images import IMAGE_ENCODER, embed_images
    from healthfm_desktop.core.inference.registry import load_registry

    embedded = EmbeddingDomain.fit(embed_images(train_pixels), embed_images(validation_pixels), quantile=quantile,
                                   k=k, metric="euclidean")
    embedding_path = Path(path).with_name(Path(path).stem + "_embedding.npz")
    embedded.save(embedding_path)
    return {**spec, "file": Path(path).name, "sha256": sha256_of(path), "threshold": round(domain.threshold, 4),
            "quantile": quantile, "k": domain.k, "n_reference": int(len(train)),
            "embedding": {"file": embedding_path.name, "sha256": sha256_of(embedding_path), "encoder": IMAGE_ENCODER,
                          "encoder_sha256": load_registry().get(IMAGE_ENCODER).sha256, "metric": "euclidean",
                          "k": embedded.k, "quantile": quantile, "threshold": round(embedded.threshold, 4)}}


def training_profile(images_uint8: np.ndarray, modalities: list[str], description: str) -> dict[str, Any]:
    """Summarise a training set (N, H, W uint8) for the manifest's ``intended_use_profile``."""
    values = np.asarray(images_uint8, dtype=np.float32) / 255.0
    means = values.mean(axis=(1, 2))
    stds = values.std(axis=(1, 2))
    height, width = images_uint8.shape[1:3]
    return {
        "description": description,
        "modalities": modalities,
        "mean_intensity_range": [round(float(np.quantile(means, 0.001)) - 0.05, 4), round(float(np.quantile(means, 0.999)) + 0.05, 4)],
        "std_intensity_range": [round(max(float(np.quantile(stds, 0.001)) - 0.04, 0.0), 4), round(float(np.quantile(stds, 0.999)) + 0.04, 4)],
        "aspect_ratio_range": [round(width / height / 1.6, 3), round(width / height * 1.6, 3)],
        "min_side_px": int(min(height, width) // 2),
    }

