"""Model registry (manifest + sha256 + card) and the onnxruntime session factory."""

from healthfm_desktop.core.inference.registry import ModelManifest, ModelRegistry, load_registry
from healthfm_desktop.core.inference.runtime import (
    PROVIDER_PREFERENCE,
    choose_providers,
    create_session,
    probe_provider,
)

__all__ = [
    "ModelManifest",
    "ModelRegistry",
    "load_registry",
    "PROVIDER_PREFERENCE",
    "choose_providers",
    "create_session",
    "probe_provider",
]
