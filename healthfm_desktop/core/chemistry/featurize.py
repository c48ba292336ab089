"""Model featurisation, defined once for training scripts and the app: Morgan radius-2 count
fingerprint (2048, log1p) followed by a fixed list of RDKit 2D descriptors, as float32."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from rdkit import Chem
from rdkit.Chem import Descriptors, rdFingerprintGenerator

MORGAN_RADIUS = 2
MORGAN_SIZE = 2048
# Ipc spans 1e0..1e30 and carries nothing the others lack; the BCUT2D/charge descriptors fail on
# uncommon elements (NaN), which the clip below would turn into noise
_EXCLUDED = {"Ipc"}
DESCRIPTOR_NAMES = tuple(name for name, _ in Descriptors._descList if name not in _EXCLUDED)
FEATURE_SIZE = MORGAN_SIZE + len(DESCRIPTOR_NAMES)
_CLIP = 1e5
FEATURISATION = {
    "name": "morgan_counts_log1p+rdkit_descriptors",
    "morgan": {"radius": MORGAN_RADIUS, "fpSize": MORGAN_SIZE, "counts": True, "transform": "log1p"},
    "descriptors": list(DESCRIPTOR_NAMES),
    "descriptor_clip": _CLIP,
    "non_finite": 0.0,
    "module": "healthfm_desktop.core.chemistry.featurize",
}


@lru_cache(maxsize=1)
def _morgan_generator():
    return rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS, fpSize=MORGAN_SIZE)


_FUNCTIONS = dict(Descriptors._descList)


@lru_cache(maxsize=1)
def _blas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def descriptor_vector(mol: Chem.Mol) -> np.ndarray:
    values = np.zeros(len(DESCRIPTOR_NAMES), dtype=np.float64)
    # AvgIpc is RDKit's Le Verrier-Faddeev characteristic polynomial (repeated numpy.dot), which
    # magnifies the last-bit differences between BLAS thread counts to ~1e-4: with one BLAS
    # thread here, a Dask worker (OPENBLAS_NUM_THREADS=1) and this process give equal features
    with _blas().limit(limits=1, user_api="blas"):
        for i, name in enumerate(DESCRIPTOR_NAMES):
            try:
                value = float(_FUNCTIONS[name](mol))
            except Exception:  # a descriptor that fails on an exotic molecule counts as missing
                value = 0.0
            values[i] = value if math.isfinite(value) else 0.0
    return np.clip(values, -_CLIP, _CLIP).astype(np.float32)


def morgan_count_vector(mol: Chem.Mol) -> np.ndarray:
    counts = _morgan_generator().GetCountFingerprintAsNumPy(mol).astype(np.float32)
    return np.log1p(counts)


def featurize_mol(mol: Chem.Mol) -> np.ndarray:
    return np.concatenate([morgan_count_vector(mol), descriptor_vector(mol)])


def featurize_mols(mols) -> np.ndarray:
    out = np.zeros((len(mols), FEATURE_SIZE), dtype=np.float32)
    for i, mol in enumerate(mols):
        out[i] = featurize_mol(mol)
    return out
