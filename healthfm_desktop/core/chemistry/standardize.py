"""Standardisation with RDKit's MolStandardize: cleanup, largest fragment, neutralise, and the
canonical tautomer as an option. The original molecule is never modified."""

from __future__ import annotations

from functools import lru_cache

from rdkit import Chem
from rdkit.Chem.MolStandardize import rdMolStandardize

from healthfm_desktop.core.chemistry.reading import capture_rdkit_log


@lru_cache(maxsize=1)
def _tools():
    return (rdMolStandardize.LargestFragmentChooser(preferOrganic=True), rdMolStandardize.Uncharger(),
            rdMolStandardize.TautomerEnumerator())


def standardize(mol: Chem.Mol, canonical_tautomer: bool = False) -> Chem.Mol:
    """A standardised copy: cleanup (normalise groups), largest organic fragment, neutralised,
    optionally RDKit's canonical tautomer. Raises ValueError if RDKit cannot standardise it."""
    chooser, uncharger, tautomers = _tools()
    with capture_rdkit_log() as log:
        try:
            out = rdMolStandardize.Cleanup(Chem.Mol(mol))
            out = chooser.choose(out)
            out = uncharger.uncharge(out)
            if canonical_tautomer:
                out = tautomers.Canonicalize(out)
            Chem.SanitizeMol(out)
        except Exception as exc:
            raise ValueError(f"cannot standardise: {exc} {log.messages}".strip()) from exc
    return out


def standardized_smiles(mol: Chem.Mol, canonical_tautomer: bool = False) -> str:
    return Chem.MolToSmiles(standardize(mol, canonical_tautomer))
