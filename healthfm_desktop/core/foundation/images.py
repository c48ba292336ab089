"""Image embeddings: the shipped general grey-scale encoder (any DICOM frame, PNG or JPEG),
its input prepared by the steps its manifest declares. ``embed_images`` is the Qt-free entry
point the viewer, the scope gate and the adaptation heads use."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from healthfm_desktop.core.inference.image_steps import apply_steps

IMAGE_ENCODER = "image_encoder"
BATCH = 64


class ImageEmbedder:
    def __init__(self, model_path: Path | str, steps: list[dict], threads: int = 0):
        from healthfm_desktop.core.inference.runtime import create_session

        self.steps = steps
        self.session, _ = create_session(Path(model_path), threads=threads)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, images: Sequence[np.ndarray], progress: Callable[[int, int], None] | None = None,
              cancelled: Callable[[], bool] | None = None) -> np.ndarray:
        """uint8 grey (H, W) arrays of any size -> (n, dim) float32."""
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for start in range(0, len(images), BATCH):
            if cancelled is not None and cancelled():
                raise InterruptedError("cancelled")
            batch = np.concatenate([apply_steps(p, self.steps) for p in images[start:start + BATCH]])
            (out[start:start + len(batch)],) = self.session.run([self.output_name], {self.input_name: batch})
            if progress is not None:
                progress(start + len(batch), len(images))
        return out


def image_embedder(registry=None, name: str = IMAGE_ENCODER, threads: int = 1) -> ImageEmbedder:
    """The registry's image encoder, verified (sha256) and loaded; cached per file stamp."""
    from healthfm_desktop.core.foundation.encoders import load_encoder

    return load_encoder("image", registry=registry, name=name, threads=threads)


def embed_images(images: Sequence, progress: Callable[[int, int], None] | None = None,
                 cancelled: Callable[[], bool] | None = None, registry=None) -> np.ndarray:
    """Embeddings (n, dim) of ``SourceImage``s or uint8 grey arrays with the shipped encoder."""
    pixels = [getattr(image, "pixels", image) for image in images]
    return image_embedder(registry).embed(pixels, progress, cancelled)
