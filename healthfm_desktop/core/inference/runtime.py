"""onnxruntime session factory: picks CUDA -> DirectML -> CPU by checking that a provider
really runs (get_available_providers() only lists what the wheel was built with), and falls
back cleanly to the CPU."""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

from healthfm_desktop.core.errors import ModelError

log = logging.getLogger(__name__)

PROVIDER_PREFERENCE = ("CUDAExecutionProvider", "DmlExecutionProvider", "CPUExecutionProvider")
CPU = "CPUExecutionProvider"

# A 91-byte ONNX graph y = x + x (opset 13), made with onnx.helper; see
# tests/core/test_inference_runtime.py, which rebuilds it with onnx and compares the bytes.
# It lets us run a provider for real before trusting it with a model.
PROBE_MODEL = base64.b64decode(
    "CAgSDmhlYWx0aGZtLXByb2JlOkEKDgoBeAoBeBIBeSIDQWRkEgVwcm9iZVoTCgF4Eg4KDAgBEggKAggBCgIIBGITCgF5"
    "Eg4KDAgBEggKAggBCgIIBEIECgAQDQ=="
)


@lru_cache(maxsize=None)
def probe_provider(provider: str) -> bool:
    """True when ``provider`` builds a session and computes a correct result on this machine."""
    if provider not in ort.get_available_providers():
        return False
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(PROBE_MODEL, sess_options=options, providers=[provider])
        if session.get_providers()[0] != provider:
            return False  # onnxruntime fell back silently (e.g. CUDA libraries missing)
        x = np.arange(4, dtype=np.float32).reshape(1, 4)
        (y,) = session.run(None, {"x": x})
        return bool(np.allclose(y, 2 * x))
    except Exception as exc:  # any failure of a provider means: do not use it
        log.info("execution provider %s failed its probe: %s", provider, type(exc).__name__)
        return False


@dataclass
class ProviderChoice:
    providers: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def active(self) -> str:
        return self.providers[0]


def choose_providers(override: str = "auto") -> ProviderChoice:
    """Providers in order of preference, checked to run. ``override`` is the user's setting:
    "auto" or a provider name; an override that does not run falls back to auto with a note."""
    notes: list[str] = []
    if override and override != "auto":
        if probe_provider(override):
            return ProviderChoice([override] + ([CPU] if override != CPU else []), notes)
        notes.append(f"{override} is not usable on this machine; falling back to automatic choice")
    working = [p for p in PROVIDER_PREFERENCE if p != CPU and probe_provider(p)]
    return ProviderChoice(working + [CPU], notes)


def create_session(model: bytes | str | Path, override: str = "auto", threads: int = 0):
    """An InferenceSession on the best working provider. Returns (session, ProviderChoice)."""
    choice = choose_providers(override)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # idle pool threads must sleep, not spin: spinning steals the UI thread's core on a 2-core desk
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    source = model if isinstance(model, bytes) else str(model)
    try:
        session = ort.InferenceSession(source, sess_options=options, providers=choice.providers)
    except Exception as exc:
        if choice.providers == [CPU]:
            raise ModelError(f"the model could not be loaded by onnxruntime: {exc}") from exc
        choice.notes.append(f"{choice.active} could not load the model; using the CPU")
        choice = ProviderChoice([CPU], choice.notes)
        try:
            session = ort.InferenceSession(source, sess_options=options, providers=[CPU])
        except Exception as exc2:
            raise ModelError(f"the model could not be loaded by onnxruntime: {exc2}") from exc2
    actual = session.get_providers()
    if actual and actual[0] != choice.active:
        choice = ProviderChoice(actual, choice.notes + [f"onnxruntime chose {actual[0]}"])
    return session, choice
