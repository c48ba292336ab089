"""Which shipped image model to load, and a loaded model with its session and manifest.

The user's Settings choose the float or the INT8 variant (``inference/quantized``) and the
execution provider (``inference/provider``); an INT8 variant is used only if one was shipped,
which the training scripts do only when it kept the test metric within 0.5 points."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from healthfm_desktop.core.config import read_setting
from healthfm_desktop.core.inference.registry import ModelManifest, ModelRegistry, load_registry
from healthfm_desktop.core.inference.runtime import ProviderChoice

CLASSIFICATION, SEGMENTATION = "image-classification", "image-segmentation"
QUANTIZED_SUFFIX = "_int8"
# The shipped graphs are small: one intra-op thread keeps latency and its tail down when other
# programs load the CPU, and leaves a core to the UI thread (onnxruntime's pool spin-waits).
# benchmarks/bench_image_ai.py on 2 busy cores: segmenter p50 14.4 vs 20.9 ms, p95 24 vs 44 ms.
INTRA_OP_THREADS = 1


def model_for(task: str, modality: str | None = None, registry: ModelRegistry | None = None) -> str:
    """The shipped model of ``task`` (image-classification / image-segmentation) whose intended
    use lists the image's modality, else the first shipped one of that task: chosen by manifest,
    so a new shipped model needs no code. INT8 variants are picked later by ``model_name``."""
    registry = registry or load_registry()
    candidates = [m for m in registry.by_task(task, source="shipped") if "float_model" not in m.extra]
    if not candidates:
        from healthfm_desktop.core.errors import ModelError

        raise ModelError(f"no shipped {task} model is installed")
    wanted = (modality or "").upper()
    for manifest in candidates:
        if wanted and wanted in manifest.extra.get("intended_use_profile", {}).get("modalities", []):
            return manifest.name
    return candidates[0].name


def default_classifier(registry: ModelRegistry | None = None) -> str:
    return model_for(CLASSIFICATION, registry=registry)


def default_segmenter(registry: ModelRegistry | None = None) -> str:
    return model_for(SEGMENTATION, registry=registry)


def wants_quantized() -> bool:
    return read_setting("inference/quantized").strip().lower() in ("1", "true", "yes", "on")


def model_name(base: str, registry: ModelRegistry, quantized: bool | None = None) -> str:
    """``base`` or its INT8 variant, per the setting (or ``quantized`` when given)."""
    if quantized is None:
        quantized = wants_quantized()
    candidate = base + QUANTIZED_SUFFIX
    if quantized and candidate in registry.manifests:
        return candidate
    return base


@dataclass
class LoadedModel:
    session: object
    manifest: ModelManifest
    provider: ProviderChoice

    @property
    def label(self) -> str:
        return f"{self.manifest.name} {self.manifest.version}"


_CACHE: dict[tuple, LoadedModel] = {}
_LOCK = threading.Lock()


def load_model(
    base: str, quantized: bool | None = None, provider: str | None = None, registry: ModelRegistry | None = None
) -> LoadedModel:
    """Verify and load (cached per name, provider and file stamp). Raises ModelError."""
    registry = registry or load_registry()
    name = model_name(base, registry, quantized)
    override = provider if provider is not None else read_setting("inference/provider")
    manifest = registry.verify(name)
    stat = manifest.model_path.stat()
    key = (str(registry.folder), name, override, stat.st_mtime, stat.st_size)
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            session, manifest, choice = registry.session(name, override=override, threads=INTRA_OP_THREADS)
            cached = _CACHE[key] = LoadedModel(session, manifest, choice)
    return cached
