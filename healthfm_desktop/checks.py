"""The offline checks behind `healthfm self-test` and Tools > Self-test: every shipped model
verifies its sha256 and runs once; each workspace's core path runs once on the bundled samples;
the traps of a frozen bundle (provider libraries, spaCy registries, RDKit data, DICOM codec
plugins) are probed. The GUI check is added by `selftest`."""

from __future__ import annotations

import importlib
import importlib.util
import time
from collections.abc import Callable

import numpy as np

Check = tuple[str, Callable[[], str]]
DOMAINS = ("dicom", "images", "notes", "molecules", "patients", "pacs")


def _check_onnxruntime() -> str:
    from healthfm_desktop.core.config import read_setting
    from healthfm_desktop.core.inference.runtime import choose_providers, probe_provider

    if not probe_provider("CPUExecutionProvider"):
        raise RuntimeError("the CPU execution provider does not run")
    choice = choose_providers(read_setting("inference/provider"))
    return f"active provider {choice.active}" + (f" ({'; '.join(choice.notes)})" if choice.notes else "")


def _zeros_for(spec: dict) -> np.ndarray:
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.get("shape", [1])]
    return np.zeros(shape, dtype=np.dtype(spec.get("dtype", "float32")))


def _model_check(name: str) -> Check:
    def run() -> str:
        from healthfm_desktop.core.inference.registry import load_registry

        session, manifest, choice = load_registry().session(name)
        feeds = {spec["name"]: _zeros_for(spec) for spec in manifest.inputs}
        start = time.perf_counter()
        outputs = session.run(None, feeds)
        ms = (time.perf_counter() - start) * 1000
        if not all(np.all(np.isfinite(o)) for o in outputs if np.issubdtype(np.asarray(o).dtype, np.floating)):
            raise RuntimeError("the model returned non-finite values")
        return f"sha256 ok, ran on {choice.active} in {ms:.1f} ms"

    return f"model {name}", run


def _check_spacy_registry() -> str:
    import medspacy
    import spacy

    spacy.blank("en")
    nlp = medspacy.load()
    doc = nlp("No evidence of pneumonia.")
    return f"medspaCy pipeline {', '.join(nlp.pipe_names)} ran on {len(doc)} tokens"


def _check_rdkit_data() -> str:
    from rdkit.Chem import Descriptors

    fragment_descriptors = [n for n, _ in Descriptors._descList if n.startswith("fr_")]
    if len(fragment_descriptors) < 80:
        raise RuntimeError(f"only {len(fragment_descriptors)} fr_* descriptors: RDKit's Data folder is missing")
    return f"{len(Descriptors._descList)} descriptors, {len(fragment_descriptors)} fr_*"


def _check_dicom_codecs() -> str:
    from pydicom.pixels import get_decoder
    from pydicom.uid import (
        HTJ2KLossless,
        JPEG2000Lossless,
        JPEGBaseline8Bit,
        JPEGLSLossless,
        RLELossless,
    )

    missing = [
        str(uid.name)
        for uid in (JPEGBaseline8Bit, JPEGLSLossless, JPEG2000Lossless, HTJ2KLossless, RLELossless)
        if not get_decoder(uid).is_available
    ]
    if missing:
        raise RuntimeError("no decoder plugin for " + ", ".join(missing))
    return "JPEG, JPEG-LS, JPEG 2000, HTJ2K and RLE decoders available"


def _check_samples() -> str:
    from healthfm_desktop.core.paths import samples_dir
    from healthfm_desktop.core.routing import route_paths

    folder = samples_dir()
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "README.md") if folder.is_dir() else []
    if not entries:
        raise RuntimeError(f"no bundled samples in {folder}")
    routing = route_paths(entries)
    if routing.rejected:
        raise RuntimeError("samples not recognised: " + ", ".join(p.name for p, _ in routing.rejected))
    return ", ".join(f"{len(v)} {k}" for k, v in sorted(routing.by_workspace.items()))


def collect_checks() -> list[Check]:
    from healthfm_desktop.core.inference.registry import load_registry

    checks: list[Check] = [
        ("onnxruntime", _check_onnxruntime),
        ("spaCy/medspaCy registries", _check_spacy_registry),
        ("RDKit data", _check_rdkit_data),
        ("DICOM codecs", _check_dicom_codecs),
        ("bundled samples", _check_samples),
    ]
    registry = load_registry()
    for name, problem in sorted(registry.problems.items()):
        checks.append((f"model {name}", lambda problem=problem: (_ for _ in ()).throw(RuntimeError(problem))))
    domain_checks: list[Check] = []
    for domain in DOMAINS:
        module_name = f"healthfm_desktop.batch.{domain}"
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        provider = getattr(module, "self_test_checks", None)
        if provider is not None:
            domain_checks.extend(provider())
    covered = {label for label, _ in domain_checks}
    for name in registry.names():
        label, check = _model_check(name)
        if label not in covered:
            checks.append((label, check))
    checks.extend(domain_checks)
    return checks
