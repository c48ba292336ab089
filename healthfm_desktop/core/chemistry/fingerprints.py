"""2048-bit Morgan radius-2 fingerprints exactly as RDKit's GetMorganGenerator(radius=2,
fpSize=2048) sets them, packed 8 bits a byte (bit i of the vector = bit i%8 of byte i//8), and
exact Tanimoto on packed fingerprints (RDKit's c / (a + b - c) in double precision)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

FP_BITS = 2048
FP_BYTES = FP_BITS // 8
BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


@lru_cache(maxsize=1)
def morgan_generator():
    return rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=FP_BITS)


def morgan_fingerprint(mol: Chem.Mol):
    """RDKit's ExplicitBitVect (for BulkTanimotoSimilarity and for checks)."""
    return morgan_generator().GetFingerprint(mol)


def pack_bitvect(fp) -> np.ndarray:
    """ExplicitBitVect -> 256 uint8, bit i in byte i // 8 at position i % 8."""
    return np.packbits(np.frombuffer(fp.ToBitString().encode("ascii"), dtype=np.uint8) - 48, bitorder="little")


def packed_morgan(mol: Chem.Mol) -> np.ndarray:
    bits = morgan_generator().GetFingerprintAsNumPy(mol).astype(np.uint8)
    return np.packbits(bits, bitorder="little")


def packed_morgan_many(mols) -> np.ndarray:
    out = np.zeros((len(mols), FP_BYTES), dtype=np.uint8)
    for i, mol in enumerate(mols):
        out[i] = packed_morgan(mol)
    return out


def popcounts(packed: np.ndarray) -> np.ndarray:
    return BYTE_POPCOUNT[packed].sum(axis=-1, dtype=np.int32)


def rdkit_tanimoto(query_fp, fps) -> list[float]:
    return list(DataStructs.BulkTanimotoSimilarity(query_fp, fps))
