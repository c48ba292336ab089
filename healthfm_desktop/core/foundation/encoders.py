"""The one encoder per kind of input, found through the model registry by task
(image-embedding, text-embedding) or, for molecules, the built-in RDKit featurisation; each
turns items into a float32 (n, d) array with progress and cancel."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from healthfm_desktop.core.errors import ModelError

KINDS = ("image", "text", "molecule")
ENCODER_TASKS = {"image": "image-embedding", "text": "text-embedding"}
MOLECULE_ENCODER = "molecule_features"

Progress = Callable[[int, int], None]
Cancelled = Callable[[], bool]


@dataclass(frozen=True)
class EncoderInfo:
    kind: str
    name: str
    version: str
    dim: int


class MoleculeEncoder:
    """Morgan radius-2 count fingerprint (2048, log1p) + RDKit 2D descriptors, the featurisation
    the shipped molecule models use (core/chemistry/featurize.py). Chosen over a learned encoder
    because it measured better (see models/molecule_features.md)."""

    def __init__(self):
        from healthfm_desktop.core.chemistry.featurize import FEATURE_SIZE

        self.dim = FEATURE_SIZE

    def embed(self, mols: Sequence, progress: Progress | None = None, cancelled: Cancelled | None = None) -> np.ndarray:
        # RDKit descriptors cost ~25 ms a molecule, single-threaded: past a few hundred the chunks
        # go to the one process pool (core/processes.py); the features are the same either way
        from healthfm_desktop.core.processes import CHEMISTRY_PRELOAD, map_ordered

        out = np.zeros((len(mols), self.dim), dtype=np.float32)
        chunks = [list(mols[i:i + _CHUNK]) for i in range(0, len(mols), _CHUNK)]
        workers = None if len(mols) >= _POOL_FROM else 1
        done = 0
        for rows in map_ordered(((_featurize_chunk, chunk) for chunk in chunks), workers=workers,
                                purpose="molecule featurisation", cancel=cancelled, preload=CHEMISTRY_PRELOAD):
            out[done:done + len(rows)] = rows
            done += len(rows)
            if progress is not None:
                progress(done, len(mols))
        if done < len(mols):
            raise InterruptedError("cancelled")
        return out


#: molecules per task, and the count from which a pool pays for its start (~1-2 s)
_CHUNK = 32
_POOL_FROM = 200


def _featurize_chunk(mols: list) -> np.ndarray:
    from healthfm_desktop.core.chemistry.featurize import featurize_mol

    return np.stack([featurize_mol(mol) for mol in mols]).astype(np.float32)


_CACHE: dict[tuple, object] = {}
_LOCK = threading.Lock()


def encoder_name(kind: str, registry=None) -> str:
    if kind not in KINDS:
        raise ModelError(f"unknown kind {kind!r} (image, text or molecule)")
    if kind == "molecule":
        return MOLECULE_ENCODER
    from healthfm_desktop.core.inference.registry import load_registry

    registry = registry or load_registry()
    shipped = registry.by_task(ENCODER_TASKS[kind], source="shipped")
    if not shipped:
        raise ModelError(f"no shipped {kind} encoder is installed (a {ENCODER_TASKS[kind]} model)")
    return shipped[0].name


def encoder_info(kind: str, registry=None) -> EncoderInfo:
    if kind == "molecule":
        from healthfm_desktop.core.chemistry.featurize import FEATURE_SIZE
        from rdkit import rdBase

        return EncoderInfo(kind, MOLECULE_ENCODER, f"rdkit-{rdBase.rdkitVersion}", FEATURE_SIZE)
    from healthfm_desktop.core.inference.registry import load_registry

    registry = registry or load_registry()
    manifest = registry.get(encoder_name(kind, registry))
    return EncoderInfo(kind, manifest.name, manifest.version, int(manifest.extra["embedding_dim"]))


def load_encoder(kind: str, registry=None, name: str | None = None, threads: int = 1):
    """The encoder of ``kind`` (verified against its sha256, loaded once per file stamp)."""
    if kind == "molecule":
        return MoleculeEncoder()
    from healthfm_desktop.core.inference.registry import load_registry

    registry = registry or load_registry()
    name = name or encoder_name(kind, registry)
    manifest = registry.verify(name)
    stat = manifest.model_path.stat()
    key = (str(manifest.model_path), stat.st_mtime_ns, stat.st_size, threads)
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            if kind == "image":
                from healthfm_desktop.core.foundation.images import ImageEmbedder

                cached = ImageEmbedder(manifest.model_path, manifest.preprocessing["steps"], threads=threads)
            else:
                from healthfm_desktop.core.foundation.text import TextEmbedder

                step = manifest.preprocessing["steps"][0]
                cached = TextEmbedder(manifest.model_path, manifest.side_file("tokenizer"),
                                      max_tokens=int(step.get("max_tokens", 256)), threads=threads,
                                      max_windows=int(step.get("max_windows", 1)))
            _CACHE[key] = cached
    return cached
