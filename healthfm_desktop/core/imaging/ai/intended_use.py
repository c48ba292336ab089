"""The "outside intended use" check: does an input look like the images a model was trained on?
The training script stores a profile of its training set in the model manifest (modalities,
per-image intensity statistics, aspect ratio); an input outside it gets plain-language notes.
The model still runs: the note tells the user not to trust the result."""

from __future__ import annotations

from typing import Any

import numpy as np

from healthfm_desktop.core.imaging.ai.preprocessing import SourceImage, intensity_statistics


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


def intended_use_notes(image: SourceImage, profile: dict[str, Any], pixels_for_stats: np.ndarray | None = None) -> list[str]:
    """Reasons why ``image`` is outside the model's intended use; empty when it looks in-domain.
    ``pixels_for_stats`` is what the model actually sees (e.g. the 28x28 crop) when the
    statistics were gathered on that."""
    notes: list[str] = []
    if not profile:
        return notes
    modalities = profile.get("modalities") or []
    description = profile.get("description", "the training images")
    if image.modality and modalities and image.modality.upper() not in modalities:
        notes.append(f"modality {image.modality} is not one the model was trained on ({', '.join(modalities)})")
    if image.was_colour:
        notes.append("the image is in colour; the model was trained on grey-scale images")
    height, width = image.shape
    if min(height, width) < int(profile.get("min_side_px", 0)):
        notes.append(f"the image is very small ({width}x{height} px)")
    low_ratio, high_ratio = profile.get("aspect_ratio_range", [0, float("inf")])
    ratio = width / max(height, 1)
    if not low_ratio <= ratio <= high_ratio:
        notes.append(f"the aspect ratio {ratio:.2f} is far from the training images'")
    mean, std = intensity_statistics(image.pixels if pixels_for_stats is None else pixels_for_stats)
    low_mean, high_mean = profile.get("mean_intensity_range", [0.0, 1.0])
    low_std, high_std = profile.get("std_intensity_range", [0.0, 1.0])
    if not low_mean <= mean <= high_mean:
        notes.append(f"the brightness (mean {mean:.2f}) is outside the range of {description} ({low_mean:.2f}-{high_mean:.2f})")
    if not low_std <= std <= high_std:
        notes.append(f"the contrast (std {std:.2f}) is outside the range of {description} ({max(low_std, 0.0):.2f}-{high_std:.2f})")
    return notes
