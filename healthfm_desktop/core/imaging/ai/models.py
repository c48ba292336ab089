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

CLASSIFIER = "pneumonia_resnet"
SEGMENTER = "hc18_unet"
QUANTIZED_SUFFIX = "_int8"
# Both graphs are small: one intra-op thread keeps latency and its tail down when other
# programs load the CPU, and leaves a core to the UI thread (onnxruntime's pool spin-waits).
# benchmarks/bench_image_ai.py on 2 busy cores: segmenter p50 14.4 vs 20.9 ms, p95 24 vs 44 ms.
INTRA_OP_THREADS = {CLASSIFIER: 1, SEGMENTER: 1}


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
            threads = INTRA_OP_THREADS.get(base, 0)
            session, manifest, choice = registry.session(name, override=override, threads=threads)
            cached = _CACHE[key] = LoadedModel(session, manifest, choice)
    return cached
