"""Analogue generation from two sources. *mutation*: fragment-level RDKit reactions (ring-nitrogen
scan, small substituents on aromatic CH, halogen swaps, bioisosteric swaps such as acid →
tetrazole, ester → amide, OH → OMe/F, demethylation; one or two steps). *model*: the SMILES
language model (core/chemistry/generator.py) completes prefixes of SMILES strings of the seed
(mostly its canonical SMILES, some rooted at other atoms), so proposals keep a piece of the seed
and vary the rest.
Every proposal is sanitised, standardised, de-duplicated, new to the input set, at least as
similar to the seed as asked (Tanimoto on Morgan r=2), then scored (QED, alerts, optional
predictors) and ranked."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from rdkit import Chem, DataStructs
from rdkit.Chem import rdChemReactions

from healthfm_desktop.core.chemistry.fingerprints import morgan_fingerprint
from healthfm_desktop.core.chemistry.reading import capture_rdkit_log
from healthfm_desktop.core.chemistry.standardize import standardize
from healthfm_desktop.core.errors import ModelError

MUTATIONS = {
    "ring N scan": "[cH:1]>>[n:1]",
    "add F": "[cH:1]>>[c:1]F",
    "add Cl": "[cH:1]>>[c:1]Cl",
    "add methyl": "[cH:1]>>[c:1]C",
    "add methoxy": "[cH:1]>>[c:1]OC",
    "add hydroxy": "[cH:1]>>[c:1]O",
    "add amino": "[cH:1]>>[c:1]N",
    "add nitrile": "[cH:1]>>[c:1]C#N",
    "add CF3": "[cH:1]>>[c:1]C(F)(F)F",
    "halogen to F": "[*:1][Cl,Br,I]>>[*:1]F",
    "halogen to Cl": "[*:1][F,Br,I]>>[*:1]Cl",
    "demethylation": "[*:1]-[CH3]>>[*:1]",
    "CH2 to O": "[C:2][CH2][C:3]>>[C:2]O[C:3]",
    "CH2 to NH": "[C:2][CH2][C:3]>>[C:2]N[C:3]",
    "acid to tetrazole": "[*:1][CX3](=O)[OX2H1]>>[*:1]c1nn[nH]n1",
    "ester to amide": "[*:1][CX3:2](=[O:3])[OX2][#6:4]>>[*:1][C:2](=[O:3])N[#6:4]",
    "OH to OMe": "[c:1][OH]>>[c:1]OC",
    "OH to F": "[c:1][OH]>>[c:1]F",
    "phenyl to thienyl": "[c:1]1[cH][cH][cH][cH][cH]1>>[c:1]1[cH][cH][cH]s1",
}


@lru_cache(maxsize=1)
def _reactions():
    out = {}
    for name, smarts in MUTATIONS.items():
        reaction = rdChemReactions.ReactionFromSmarts(smarts)
        reaction.Initialize()
        out[name] = reaction
    return out


@dataclass
class Analogue:
    smiles: str
    mol: Chem.Mol
    route: list[str]
    similarity: float
    qed: float
    origin: str = "mutation"  # "mutation" or "model"
    alerts: list[str] = field(default_factory=list)
    predictions: dict[str, float] = field(default_factory=dict)
    in_domain: dict[str, bool] = field(default_factory=dict)
    score: float = 0.0


@dataclass
class GenerationReport:
    attempted: int = 0
    valid: int = 0
    unique: int = 0
    novel: int = 0
    model_samples: int = 0  # sequences sampled from the SMILES model
    model_valid: int = 0  # of which RDKit parsed and standardised
    notes: list[str] = field(default_factory=list)  # why a source gave nothing, for the user

    @property
    def validity(self) -> float:
        return self.valid / self.attempted if self.attempted else 0.0

    @property
    def uniqueness(self) -> float:
        return self.unique / self.valid if self.valid else 0.0

    @property
    def novelty(self) -> float:
        return self.novel / self.unique if self.unique else 0.0


def _one_step(mol: Chem.Mol, report: GenerationReport) -> list[tuple[str, Chem.Mol, str]]:
    products = []
    for name, reaction in _reactions().items():
        with capture_rdkit_log():
            outcomes = reaction.RunReactants((mol,), maxProducts=50)
        for outcome in outcomes:
            report.attempted += 1
            product = Chem.Mol(outcome[0])
            with capture_rdkit_log():
                try:
                    Chem.SanitizeMol(product)
                    product = standardize(product)
                    smiles = Chem.MolToSmiles(product)
                except Exception:  # RDKit rejects the product (valence, aromaticity): not valid
                    continue
                check = Chem.MolFromSmiles(smiles)
            if check is None:
                continue
            report.valid += 1
            products.append((smiles, check, name))
    return products


SOURCES = ("both", "model", "mutation")


def seed_prefixes(seed: Chem.Mol, generator, rng: np.random.Generator, count: int = 64) -> list[list[int]]:
    """Token-id prefixes of SMILES of ``seed`` (no stereo: the training SMILES carry none), each
    cut after 35–85 % of its tokens: the model keeps that piece of the seed and writes the rest.
    Three in four come from the canonical SMILES, the writing the model learnt (measured: 98–99 %
    of its completions valid, against 67–82 % for SMILES rooted at other atoms); the rest from
    SMILES rooted at each atom, so other ends of the seed are kept too. Prefixes holding a token
    the model never learnt are skipped."""
    flat = Chem.Mol(seed)
    Chem.RemoveStereochemistry(flat)

    def encoded(smiles_list):
        out = []
        for smiles in smiles_list:
            try:
                out.append(generator.encode_prefix(smiles))
            except ValueError:
                continue
        return out

    canonical = encoded([Chem.MolToSmiles(flat)])
    rooted = encoded(sorted({Chem.MolToSmiles(flat, rootedAtAtom=a.GetIdx()) for a in flat.GetAtoms()}))
    if not canonical and not rooted:
        return []
    prefixes = []
    for _ in range(count):
        pool = canonical if canonical and (not rooted or rng.random() < 0.75) else rooted
        ids = pool[int(rng.integers(len(pool)))]
        cut = max(1, int(round(len(ids) * rng.uniform(0.35, 0.85))))
        prefixes.append(ids[:cut])
    return prefixes


def model_proposals(seed: Chem.Mol, samples: int, report: GenerationReport, rng: np.random.Generator,
                    temperature: float | None = None, generator=None):
    """Generator: yields the fraction sampled, returns (canonical SMILES, molecule, route) for
    the valid, standardised samples of the SMILES model primed with pieces of the seed."""
    from healthfm_desktop.core.chemistry.generator import SmilesGenerator

    generator = generator or SmilesGenerator()
    prefixes = seed_prefixes(seed, generator, rng)
    if not prefixes:
        report.notes.append("the seed holds atoms or charges the SMILES model never learnt; no model proposals")
        return []
    steps = generator.sample_steps(samples, temperature=temperature, rng=rng, prefixes=prefixes, batch=128)
    while True:
        try:
            done, total = next(steps)
        except StopIteration as stop:
            drawn = stop.value
            break
        yield done / total
    report.model_samples += len(drawn)
    report.attempted += len(drawn)
    out = []
    for smiles in drawn:
        with capture_rdkit_log():
            mol = Chem.MolFromSmiles(smiles) if smiles else None
            if mol is None:
                continue
            try:
                mol = standardize(mol)
            except ValueError:
                continue
            canonical = Chem.MolToSmiles(mol)
            check = Chem.MolFromSmiles(canonical)
        if check is None:
            continue
        report.valid += 1
        report.model_valid += 1
        out.append((canonical, check, "SMILES model"))
    return out


def mutation_proposals(seed: Chem.Mol, steps: int, report: GenerationReport) -> list[tuple[str, Chem.Mol, list[str]]]:
    """(canonical SMILES, molecule, route) for one- and two-step mutations of the seed."""
    out = []
    seen = set()
    frontier = [(seed, [])]
    for _ in range(steps):
        next_frontier = []
        for mol, route in frontier:
            for smiles, product, name in _one_step(mol, report):
                if smiles in seen:
                    continue
                seen.add(smiles)
                out.append((smiles, product, route + [name]))
                next_frontier.append((product, route + [name]))
        # the second step starts from a bounded, diverse slice so that a large seed stays fast
        frontier = next_frontier[:: max(1, len(next_frontier) // 20)]
    return out


def generate_analogues(seed: Chem.Mol, count: int = 50, **options) -> tuple[list[Analogue], GenerationReport]:
    """``generate_analogues_steps`` run to the end."""
    steps = generate_analogues_steps(seed, count, **options)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def generate_analogues_steps(seed: Chem.Mol, count: int = 50, known: set[str] | None = None, steps: int = 2,
                             predict: bool = True, source: str = "both", min_similarity: float = 0.0,
                             model_samples: int | None = None, temperature: float | None = None, random_seed: int = 0,
                             generator=None) -> Generator[tuple[float, str], None, tuple[list[Analogue], GenerationReport]]:
    """Generator yielding (fraction done, what it is doing), returning up to ``count`` ranked analogues of ``seed`` from ``source`` ("both", "model" or
    "mutation"), each with Tanimoto similarity to the seed >= ``min_similarity``; ``known``
    canonical SMILES (the input set) are never proposed. The model draws ``model_samples``
    sequences (default 40 × count, at least 1,000). Rank: QED, minus 0.15 per structural alert,
    plus 0.3 × similarity to the seed, minus 0.2 when a model flags the analogue out of its domain."""
    from healthfm_desktop.core.chemistry.properties import describe_mol

    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    if not 0.0 <= min_similarity <= 1.0:
        raise ValueError("minimum similarity must be between 0 and 1")
    report = GenerationReport()
    seed = standardize(seed)
    seed_smiles = Chem.MolToSmiles(seed)
    known = set(known or ()) | {seed_smiles}
    seen: dict[str, tuple[Chem.Mol, list[str], str]] = {}
    if source in ("both", "mutation"):
        yield 0.0, "mutating the seed…"
        for smiles, product, route in mutation_proposals(seed, steps, report):
            if smiles != seed_smiles:
                seen.setdefault(smiles, (product, route, "mutation"))
    if source in ("both", "model"):
        samples = model_samples or max(1000, 40 * count)
        rng = np.random.default_rng(random_seed)
        sampling = model_proposals(seed, samples, report, rng, temperature, generator)
        while True:
            try:
                fraction = next(sampling)
            except StopIteration as stop:
                proposals = stop.value
                break
            except ModelError as exc:
                if source == "model":
                    raise
                # with both sources a missing or damaged model leaves the mutations, and says so
                report.notes.append(f"mutations only: {exc}")
                proposals = []
                break
            yield 0.05 + 0.8 * fraction, "sampling the SMILES model…"
        for smiles, product, route in proposals:
            if smiles != seed_smiles:
                seen.setdefault(smiles, (product, [route], "model"))
    report.unique = len(seen)
    novel = {s: v for s, v in seen.items() if s not in known}
    report.novel = len(novel)
    yield 0.85, "scoring proposals…"
    seed_fp = morgan_fingerprint(seed)
    # alerts and QED cost milliseconds each: only the closest 5 × count analogues get them
    scored = ((DataStructs.TanimotoSimilarity(seed_fp, morgan_fingerprint(mol)), smiles, mol, route, origin)
              for smiles, (mol, route, origin) in novel.items())
    by_similarity = sorted((t for t in scored if t[0] >= min_similarity), key=lambda t: (-t[0], t[1]))
    if not by_similarity and novel:
        report.notes.append(f"no proposal reaches similarity {min_similarity:.2f}; lower the minimum")
    # with both sources, each keeps a fair share of the candidates so neither crowds out the other
    shortlist, per_origin = [], {}
    for t in by_similarity:
        if per_origin.get(t[4], 0) < 5 * count:
            per_origin[t[4]] = per_origin.get(t[4], 0) + 1
            shortlist.append(t)
    candidates = []
    for sim, smiles, mol, route, origin in shortlist:
        props = describe_mol(mol)
        candidates.append(Analogue(smiles, mol, route, sim, props["qed"], origin=origin, alerts=props["alerts"]))
    for a in candidates:
        a.score = a.qed - 0.15 * len(a.alerts) + 0.3 * a.similarity
    candidates.sort(key=lambda a: (-a.score, a.smiles))
    chosen = candidates[:count]
    if predict and chosen:
        from healthfm_desktop.core.chemistry.predictors import predict_mols

        yield 0.95, "predicting…"
        for analogue, prediction in zip(chosen, predict_mols([a.mol for a in chosen])):
            analogue.predictions = prediction.values
            analogue.in_domain = prediction.in_domain
            if not all(prediction.in_domain.values()):
                analogue.score -= 0.2
        chosen.sort(key=lambda a: (-a.score, a.smiles))
    return chosen, report
