"""Per-molecule properties for the grid and `molecules describe`: RDKit's MolWt, MolLogP, TPSA,
Lipinski HBD/HBA, rotatable bonds, rings, Fsp3, QED; rule-of-five and Veber flags; structural
alerts from RDKit's FilterCatalog (PAINS A/B/C, Brenk, NIH) with the matching atoms.

Speed: FilterCatalog tests ~765 SMARTS per molecule (≈4 ms) and QED another ~116; 82 of QED's
are also catalog SMARTS, so both sets form one screened list (``AlertCatalog``, 795 queries)
and a shared SMARTS is matched once. Each query is first screened with conditions it cannot
match without, so skipping the others changes no result (tests/core/test_chem_properties.py
compares with the unscreened calls and with FilterCatalog / QED.qed):
- atom, bond and angle conditions (``_LocalScreen``): each query atom, each query bond with its
  two atoms, and each pair of bonds of a query atom, needs an atom / bond / pair of bonds of the
  molecule meeting it; answered per signature, asked of RDKit once per signature seen; the
  conditions of a query's relaxed form and of the sub-patterns its recursive atoms need count
  too;
- atom kinds: k query atoms that can only match atoms of some elements need k such atoms;
- recursive SMARTS: see ``_QueryMatcher``; each recursive atom also has a weaker plain form
  (``_first_atom_union``: ``[$(C=O),$(C=S)]`` → ``[C,C]``) that the screens above use.
The rarest six conditions of each query, learnt from the first molecules, are tested first for
all queries at once. About 21 of the 795 queries reach RDKit's matcher on a typical MOSES
molecule (114 with the pattern-fingerprint screen this replaced). The same one pass over atoms
and bonds gives QED's acceptor and aromatic-ring counts (``_QedAtomFacts``), equal to RDKit's
own. logP is RDKit's ``Crippen.MolLogP``: summing contributions learnt per atom environment
(through RDKit's private ``_CalcCrippenContribs``) was only 1.4-1.6x faster, under the 2x that
keeping our own code needs; MolWt is the public ``Descriptors.MolWt`` (QED's ``_CalcMolWt``).
``describe_records`` runs on worker processes (``core/processes.py``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from rdkit import Chem
from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdMolDescriptors
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

from healthfm_desktop.core import processes

ALERT_CATALOGS = {
    "PAINS_A": FilterCatalogParams.FilterCatalogs.PAINS_A,
    "PAINS_B": FilterCatalogParams.FilterCatalogs.PAINS_B,
    "PAINS_C": FilterCatalogParams.FilterCatalogs.PAINS_C,
    "Brenk": FilterCatalogParams.FilterCatalogs.BRENK,
    "NIH": FilterCatalogParams.FilterCatalogs.NIH,
}
DESCRIBE_COLUMNS = ("id", "smiles", "mw", "logp", "tpsa", "hbd", "hba", "rotb", "qed", "lipinski_violations", "alerts")
EXTRA_COLUMNS = ("rings", "aromatic_rings", "heavy_atoms", "fsp3", "lipinski_pass", "veber_pass")
_PICKLE_MAGIC = b"\xef\xbe\xad\xde"
_KEY_CONDITIONS = 6
_LEARN_KEYS_FROM = 200
_SINGLE_OR_AROMATIC = (Chem.BondType.SINGLE, Chem.BondType.AROMATIC)


@dataclass(frozen=True)
class StructuralAlert:
    catalog: str
    name: str
    atoms: tuple[tuple[int, ...], ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return f"{self.catalog}:{self.name}"


def _entry_query(entry) -> Chem.Mol | None:
    """The single query molecule inside a FilterCatalog entry (its serialisation carries the
    pickled SMARTS query), or None for entries that are not one plain SMARTS matcher."""
    blob = entry.Serialize()
    if _PICKLE_MAGIC not in blob:
        return None
    start = blob.index(_PICKLE_MAGIC)
    match = re.search(rb"(\d+) $", blob[:start])
    if match is None:
        return None
    end = start + int(match.group(1))
    # one query, possibly with recursive SMARTS pickled inside it; not a list of queries
    if blob.count(_PICKLE_MAGIC) != blob[start:end].count(_PICKLE_MAGIC):
        return None
    try:
        query = Chem.Mol(blob[start:end])
    except Exception:  # an entry whose layout we do not know is simply never screened
        return None
    return query if query.GetNumAtoms() else None


def _prepared(query: Chem.Mol) -> Chem.Mol:
    query.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(query)
    return query


def _split_top_level(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` where it stands outside brackets and parentheses."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _one_recursive_part(text: str) -> bool:
    """Whether ``text`` is exactly ``$(...)``: one recursive SMARTS and nothing else."""
    if not (text.startswith("$(") and text.endswith(")")):
        return False
    depth = 0
    for i, char in enumerate(text[1:], start=1):
        depth += char in "(["
        depth -= char in ")]"
        if depth == 0:
            return i == len(text) - 1
    return False


def _first_atom_union(smarts: str) -> Chem.Atom:
    """An atom query without recursion that every atom matching the one-atom query ``smarts``
    matches, e.g. ``[$(A),$(B),x;R0]`` becomes ``[a,b,x;R0]`` (a, b: the first atoms of A and B,
    which an atom matching $(A) must match); ``*`` where nothing weaker is known."""
    body = smarts[1:-1] if smarts.startswith("[") and smarts.endswith("]") else smarts
    relaxed = _relaxed_atom_expression(body)
    atom = Chem.AtomFromSmarts(f"[{relaxed}]") if relaxed else None
    return atom if atom is not None else Chem.AtomFromSmarts("*")


def _first_atom_body(smarts: str) -> str | None:
    """The expression of the first atom of the SMARTS ``smarts`` (inside its brackets)."""
    sub = Chem.MolFromSmarts(smarts)
    if sub is None or sub.GetNumAtoms() == 0:
        return None
    first = sub.GetAtomWithIdx(0).GetSmarts()
    return first[1:-1] if first.startswith("[") and first.endswith("]") else first


def _relaxed_atom_expression(body: str, depth: int = 0) -> str | None:
    """``body`` (an atom's SMARTS inside its brackets) without recursive SMARTS, weaker: a
    ``$(A)`` alternative becomes A's first atom, recursive conjuncts of an AND are dropped, and a
    ``;`` conjunct that would become "any atom" is dropped. None: no condition is left."""
    conjuncts = []
    for conjunct in _split_top_level(body, ";"):
        parts: list[str] | None = []
        for alternative in _split_top_level(conjunct, ","):
            if _one_recursive_part(alternative):
                first = _first_atom_body(alternative[2:-1]) if depth < 3 else None
                if first is None:
                    parts = None
                    break
                relaxed = _relaxed_atom_expression(first, depth + 1)
            else:
                # an AND of primitives (',' and ';' bind looser than '&'): its conjuncts without
                # $, and for a $(A) conjunct A's first atom relaxed (if it is an AND too);
                # negated recursive conjuncts are dropped
                kept = []
                for part in _split_top_level(alternative, "&"):
                    if "$" not in part:
                        kept.append(part)
                    elif _one_recursive_part(part) and depth < 3:
                        first = _first_atom_body(part[2:-1])
                        first = _relaxed_atom_expression(first, depth + 1) if first else None
                        if first and "," not in first and ";" not in first:
                            kept.append(first)
                relaxed = "&".join(kept) or None
            # an alternative that may match any atom, or one whose ';' would change precedence
            # inside this comma list, leaves this conjunct without a condition
            if relaxed is None or ";" in relaxed:
                parts = None
                break
            parts.append(relaxed)
        if parts:
            conjuncts.append(",".join(parts))
    return ";".join(conjuncts) or None


def _is_any_atom(atom: Chem.Atom) -> bool:
    return atom.HasQuery() and atom.GetSmarts() == "*"


def _is_recursive(atom: Chem.Atom) -> bool:
    return atom.HasQuery() and "RecursiveStructure" in atom.DescribeQuery()


class _QueryMatcher:
    """``mol.HasSubstructMatch(query)``, exactly, with cheaper necessary conditions tried first.

    Recursive SMARTS ($(...)) cost the most: RDKit finds every match of each recursive part in
    the whole molecule before matching the query. Two exact rewrites avoid most of that work:
    - a one-atom query ``[$(A),$(B),X]`` matches iff A, B or [X] matches somewhere (an atom
      matches $(A) iff it starts a match of A), so it becomes an OR of smaller matchers, each
      with its own atom, bond and angle conditions;
    - in a larger query, replacing each recursive atom by ``*`` gives a weaker query (every
      match of the original is a match of it), so when the weaker one has no match neither has
      the original."""

    def __init__(self, query: Chem.Mol, depth: int = 0):
        self.query = _prepared(query)
        self.alternatives: list[_QueryMatcher] | None = None
        self.relaxed: Chem.Mol | None = None
        self.atom_bits = 0  # the _LocalScreen atoms it needs (set by _ScreenedQueries)
        self.single_atom = query.GetNumAtoms() == 1
        recursive = [a.GetIdx() for a in query.GetAtoms() if _is_recursive(a)]
        if not recursive or depth > 2:
            return
        relaxed = Chem.RWMol(query)
        for idx in recursive:
            relaxed.ReplaceAtom(idx, _first_atom_union(query.GetAtomWithIdx(idx).GetSmarts()))
        relaxed = _prepared(relaxed.GetMol())
        if any(not _is_any_atom(a) for a in relaxed.GetAtoms()):
            # screens with it in _ScreenedQueries; matched first only for a larger query
            self.relaxed = relaxed
        if query.GetNumAtoms() == 1:
            self.alternatives = self._alternatives(query.GetAtomWithIdx(0).GetSmarts(), depth)

    @staticmethod
    def _alternatives(smarts: str, depth: int) -> list[_QueryMatcher] | None:
        if not (smarts.startswith("[") and smarts.endswith("]")):
            return None
        body = smarts[1:-1]
        if len(_split_top_level(body, ";")) != 1:
            return None
        matchers = []
        for alternative in _split_top_level(body, ","):
            if _one_recursive_part(alternative):
                sub = Chem.MolFromSmarts(alternative[2:-1])
            else:
                sub = Chem.MolFromSmarts(f"[{alternative}]")
            if sub is None or sub.GetNumAtoms() == 0:
                return None
            matchers.append(_QueryMatcher(sub, depth + 1))
        return matchers

    def has_match(self, mol: Chem.Mol, present: int, screened: bool = False) -> bool:
        """``present``: the molecule's _LocalScreen mask."""
        if not screened and self.atom_bits & present != self.atom_bits:
            return False
        if self.alternatives is not None:
            return any(m.has_match(mol, present) for m in self.alternatives)
        if self.single_atom:
            return mol.HasSubstructMatch(self.query)
        if self.relaxed is not None and not mol.HasSubstructMatch(self.relaxed):
            return False
        return mol.HasSubstructMatch(self.query)


_ANY = None  # an atom query that can match atoms of any element


def _query_elements(description: str) -> frozenset[int] | None:
    """The atom kinds (atomic number, plus 1000 when aromatic) an atom query can match, from
    RDKit's DescribeQuery() tree (indented two spaces a level): an AtomType leaf names one kind,
    AtomAtomicNum the aliphatic and aromatic kinds of one element, AND intersects, OR unites;
    anything else (negations, recursive SMARTS, counts...) may match any kind."""
    lines = [line for line in description.splitlines() if line.strip()]

    def node(i: int, depth: int) -> tuple[frozenset[int] | None, int]:
        text = lines[i].strip()
        j = i + 1
        children = []
        while j < len(lines) and (len(lines[j]) - len(lines[j].lstrip(" "))) // 2 > depth:
            child, j = node(j, depth + 1)
            children.append(child)
        if text in ("AtomAnd", "AtomOr"):
            if text == "AtomAnd":
                known = [c for c in children if c is not _ANY]
                return (frozenset.intersection(*known) if known else _ANY), j
            return (_ANY if any(c is _ANY for c in children) else frozenset().union(*children)), j
        match = re.fullmatch(r"(AtomType|AtomAtomicNum) (\d+) = val", text)
        if match and not children:
            value = int(match.group(2))
            return (frozenset({value}) if match.group(1) == "AtomType" else frozenset({value, value + 1000})), j
        return _ANY, j

    if not lines:
        return _ANY
    result, _ = node(0, 0)
    return result


def _element_requirements(query: Chem.Mol) -> list[tuple[frozenset[int], int]]:
    """(kinds S, k): a molecule matching ``query`` has at least k atoms of a kind in S, since k
    query atoms can only match such atoms and a match maps them to distinct atoms."""
    sets = []
    for atom in query.GetAtoms():
        elements = (_query_elements(atom.DescribeQuery()) if atom.HasQuery()
                    else frozenset({atom.GetAtomicNum() + 1000 * atom.GetIsAromatic()}))
        if elements is not _ANY:
            sets.append(elements)
    return [(s, sum(1 for t in sets if t <= s)) for s in set(sets)]


# The atom properties RDKit's atom queries test, by DescribeQuery() leaf: an atom query built
# only of these leaves matches an atom or not according to _atom_signature alone.
_SIGNATURE_LEAVES = frozenset({
    "AtomType", "AtomAtomicNum", "AtomIsAromatic", "AtomIsAliphatic", "AtomFormalCharge",
    "AtomHCount", "AtomExplicitDegree", "AtomTotalDegree", "AtomInNRings", "AtomInRing",
    "AtomMinRingSize", "AtomTotalValence", "AtomIsotope", "AtomNull", "AtomAnd", "AtomOr",
})


def query_names(description: str) -> set[str]:
    """The node names (AtomAtomicNum, BondOrder, AtomOr...) of an RDKit DescribeQuery() text."""
    return {line.split()[0] for line in description.splitlines() if line.strip()}


def _signature_screenable(atom: Chem.Atom) -> bool:
    if not atom.HasQuery():
        return False  # a plain atom in a query mol: matched by element, aromaticity and charge only
    leaves = query_names(atom.DescribeQuery())
    return leaves <= _SIGNATURE_LEAVES and "AtomNull" not in leaves


_SIGNATURE_BOND_LEAVES = frozenset({
    "BondOrder", "SingleOrAromaticBond", "DoubleOrAromaticBond", "SingleOrDoubleBond",
    "SingleOrDoubleOrAromaticBond", "BondInRing", "BondNull", "BondAnd", "BondOr",
})


def _bond_screenable(bond: Chem.Bond) -> bool:
    if not bond.HasQuery():
        return False
    return query_names(bond.DescribeQuery()) <= _SIGNATURE_BOND_LEAVES


@dataclass(frozen=True)
class _MolFacts:
    """What _LocalScreen.present learns of a molecule in one pass over its atoms and bonds."""
    mask: int
    kinds: list[int]
    signatures: list[tuple]  # per atom: (Z, aromatic, charge, H, D, X, ring count, smallest ring, valence, isotope)
    bonds: list[tuple[int, int, Chem.BondType, bool]]  # (begin, end, type, in a ring)
    numbers: list[int]  # per atom: its signature's number (one per signature, for the process's life)


class _LocalScreen:
    """Which of the queries' atom, bond and angle conditions a molecule meets.

    An atom's signature (element, aromaticity, charge, H count, degrees, ring count, smallest
    ring, valence, isotope) decides every atom query built of the leaves in _SIGNATURE_LEAVES.
    A bond's type, ring membership and two atom signatures decide a bond query of the leaves in
    _SIGNATURE_BOND_LEAVES between two such atom queries; an atom's signature and two of its
    bonds (type, ring membership, other atom's signature) decide a pair of bond queries of one
    query atom (an "angle"). So the answers for one signature, asked of RDKit once
    (``Atom.Match``, ``Bond.Match``), hold for every atom, bond or angle with that signature. A
    query one of whose conditions nothing in the molecule meets cannot match: the screen is
    exact. Drug-like molecules have a few hundred atom signatures, a few thousand bond and angle
    signatures in all."""

    def __init__(self) -> None:
        self.atoms: list[tuple[int, Chem.Atom]] = []  # (condition index, atom query)
        # (condition index, begin atom condition index or None for any atom, bond query, end's)
        self.bonds: list[tuple[int, int | None, Chem.Bond, int | None]] = []
        # (condition index, centre atom condition, bond query, its end's condition, the other
        # bond query, its end's): two bonds of a query atom, met by two bonds of one atom
        self.angles: list[tuple[int, int, Chem.Bond, int | None, Chem.Bond, int | None]] = []
        self._angle_bits: dict[tuple, int] = {}
        self._index: dict[tuple, int] = {}
        self._signature_numbers: dict[tuple, int] = {}  # atom signature -> its number, for good
        self._atom_bits: dict[int, int] = {}  # signature number -> the conditions it meets
        self._bond_bits: dict[tuple, int] = {}
        self._bond_kinds: dict[int, np.ndarray] = {}  # bond kind (type, ring) -> which bond queries match
        self._tables: tuple[np.ndarray, ...] | None = None
        self._queries: list[Chem.Mol] = []  # the conditions' molecules stay alive with them

    def __len__(self) -> int:
        return len(self._index)

    def _condition(self, key: tuple, entry: tuple, into: list) -> int:
        if key not in self._index:
            self._index[key] = len(self._index)
            into.append((self._index[key], *entry))
        return 1 << self._index[key]

    def require(self, query: Chem.Mol | None) -> int:
        """Bit mask of the conditions ``query``'s screenable atoms and bonds need."""
        if query is None:
            return 0
        self._queries.append(query)
        mask = 0
        screenable = [_signature_screenable(atom) for atom in query.GetAtoms()]
        for atom, ok in zip(query.GetAtoms(), screenable):
            if ok:
                mask |= self._condition(("atom", atom.GetSmarts()), (atom,), self.atoms)
        for bond in query.GetBonds():
            ends = [bond.GetBeginAtom(), bond.GetEndAtom()]
            if not _bond_screenable(bond) or not any(screenable[a.GetIdx()] for a in ends):
                continue
            # an end that is not screenable is left open (any atom): a weaker condition
            begin, end = (self._index[("atom", a.GetSmarts())] if screenable[a.GetIdx()] else None for a in ends)
            mask |= self._condition(("bond", begin, bond.GetSmarts(), end), (begin, bond, end), self.bonds)
        for atom, ok in zip(query.GetAtoms(), screenable):
            if not ok:
                continue
            centre = self._index[("atom", atom.GetSmarts())]
            arms = sorted((((bond.GetSmarts(), -1 if not screenable[other.GetIdx()] else self._index[("atom", other.GetSmarts())]), bond)
                           for bond in atom.GetBonds() if _bond_screenable(bond)
                           for other in (bond.GetOtherAtom(atom),)), key=lambda arm: arm[0])
            for p in range(len(arms)):
                for r in range(p + 1, len(arms)):
                    (key_p, bond_p), (key_r, bond_r) = arms[p], arms[r]
                    ends = [None if key[1] < 0 else key[1] for key in (key_p, key_r)]
                    mask |= self._condition(("angle", centre, key_p, key_r),
                                            (centre, bond_p, ends[0], bond_r, ends[1]), self.angles)
        # new conditions: what was learnt per signature no longer covers them all
        self._tables = None
        self._atom_bits.clear()
        self._bond_bits.clear()
        self._angle_bits.clear()
        return mask

    def _bond_tables(self) -> tuple[np.ndarray, ...]:
        """The bond conditions as arrays: condition index, begin and end atom condition (the
        padding index ``len(self)`` for any atom), and which distinct bond query."""
        if self._tables is None:
            kinds: dict[str, int] = {}
            self._bond_queries = []
            for bond in [b for _, _, b, _ in self.bonds] + [b for _, _, b, _, _, _ in self.angles] + \
                    [b for _, _, _, _, b, _ in self.angles]:
                if bond.GetSmarts() not in kinds:
                    kinds[bond.GetSmarts()] = len(kinds)
                    self._bond_queries.append(bond)
            pad = len(self)

            def column(values) -> np.ndarray:
                return np.array([pad if v is None else v for v in values], dtype=np.int64)

            self._tables = (column(k for k, _, _, _ in self.bonds), column(a for _, a, _, _ in self.bonds),
                            column(b for _, _, _, b in self.bonds),
                            column(kinds[bond.GetSmarts()] for _, _, bond, _ in self.bonds))
            self._angle_tables = (column(k for k, _, _, _, _, _ in self.angles),
                                  column(c for _, c, _, _, _, _ in self.angles),
                                  column(kinds[b.GetSmarts()] for _, _, b, _, _, _ in self.angles),
                                  column(e for _, _, _, e, _, _ in self.angles),
                                  column(kinds[b.GetSmarts()] for _, _, _, _, b, _ in self.angles),
                                  column(e for _, _, _, _, _, e in self.angles))
            self._bond_kinds = {}
        return self._tables

    def _unpacked(self, mask: int) -> np.ndarray:
        """``mask`` as one bool per condition, then a True for "any atom"."""
        size = len(self)
        bits = np.unpackbits(np.frombuffer(mask.to_bytes((size + 7) // 8, "little"), dtype=np.uint8),
                             bitorder="little", count=size).astype(bool)
        return np.append(bits, True)

    def present(self, mol: Chem.Mol) -> "_MolFacts":
        """The conditions some atom or bond of ``mol`` meets (a bit mask), each atom's kind as in
        _query_elements (atomic number, plus 1000 when aromatic), signature, and the bonds."""
        ring_info = mol.GetRingInfo()
        n_atoms = mol.GetNumAtoms()
        # ring counts and smallest ring sizes from the ring lists, not one call per atom
        in_rings, smallest = [0] * n_atoms, [0] * n_atoms
        atom_rings = ring_info.AtomRings()
        for k in range(len(atom_rings)):  # indexing: RDKit's iterator over this vector is slow
            ring = atom_rings[k]
            size = len(ring)
            for i in ring:
                in_rings[i] += 1
                if not smallest[i] or size < smallest[i]:
                    smallest[i] = size
        bond_rings = ring_info.BondRings()
        ring_bonds = {i for k in range(len(bond_rings)) for i in bond_rings[k]}
        # without H atoms in the graph, H counts with and without H neighbours agree and the
        # total degree is degree + H count
        no_h_atoms = n_atoms == mol.GetNumHeavyAtoms()
        # each signature gets a small number for good (the keys below hash numbers, not nested
        # tuples); what it meets is remembered until require() adds conditions
        numbers, atom_bits = self._signature_numbers, self._atom_bits
        mask, kinds, signatures, ids = 0, [], [], []
        for i in range(n_atoms):
            atom = mol.GetAtomWithIdx(i)
            hydrogens, degree = atom.GetTotalNumHs(True), atom.GetDegree()
            signature = (atom.GetAtomicNum(), atom.GetIsAromatic(), atom.GetFormalCharge(), hydrogens, degree,
                         degree + hydrogens if no_h_atoms else atom.GetTotalDegree(), in_rings[i], smallest[i],
                         atom.GetTotalValence(), atom.GetIsotope())
            number = numbers.get(signature)
            if number is None:
                number = numbers[signature] = len(numbers)
            bits = atom_bits.get(number)
            if bits is None:
                bits = atom_bits[number] = sum(1 << k for k, query_atom in self.atoms if query_atom.Match(atom))
            mask |= bits
            kinds.append(signature[0] + 1000 * signature[1])
            signatures.append(signature)
            ids.append(number)
        known = self._bond_bits
        bonds = []
        arms: list[list[tuple[int, int]]] = [[] for _ in range(n_atoms)]
        for i in range(mol.GetNumBonds()):
            bond = mol.GetBondWithIdx(i)
            begin, end = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            bond_type, in_ring = bond.GetBondType(), i in ring_bonds
            kind = 2 * int(bond_type) + in_ring  # the bond's type and ring membership as one number
            key = (ids[begin], kind, ids[end])
            bits = known.get(key)
            if bits is None:
                bits = known[key] = self._bond_conditions(bond, kind, atom_bits[key[0]], atom_bits[key[2]])
            mask |= bits
            bonds.append((begin, end, bond_type, in_ring))
            arms[begin].append((kind, ids[end]))
            arms[end].append((kind, ids[begin]))
        known = self._angle_bits
        for i in range(n_atoms):
            around = arms[i]
            if len(around) < 2:
                continue
            around.sort()
            for p in range(len(around) - 1):
                for r in range(p + 1, len(around)):
                    key = (ids[i], around[p], around[r])
                    bits = known.get(key)
                    if bits is None:
                        bits = known[key] = self._angle_conditions(*key)
                    mask |= bits
        return _MolFacts(mask, kinds, signatures, bonds, ids)

    def _angle_conditions(self, centre: int, arm: tuple[int, int], other_arm: tuple[int, int]) -> int:
        """The angle conditions an atom of signature number ``centre`` meets with two of its
        bonds, each given as (bond kind, the other atom's signature number)."""
        self._bond_tables()
        condition, centres, query, end, other_query, other_end = self._angle_tables
        # both bonds were read in this molecule's bond loop: their kinds are known (they are
        # forgotten only together with every bond signature, in require)
        q, w = self._bond_kinds[arm[0]], self._bond_kinds[other_arm[0]]
        x = self._unpacked(self._atom_bits[centre])
        y, z = self._unpacked(self._atom_bits[arm[1]]), self._unpacked(self._atom_bits[other_arm[1]])
        met = x[centres] & ((q[query] & y[end] & w[other_query] & z[other_end])
                            | (w[query] & z[end] & q[other_query] & y[other_end]))
        bits = np.zeros(len(self), dtype=bool)
        bits[condition[met]] = True
        return int.from_bytes(np.packbits(bits, bitorder="little").tobytes(), "little")

    def _bond_conditions(self, bond: Chem.Bond, kind: int, begin_bits: int, end_bits: int) -> int:
        """The bond conditions ``bond`` meets, from its ends' atom conditions and which bond
        queries its type and ring membership ``kind`` meet (asked of RDKit once per kind)."""
        condition, begin, end, query = self._bond_tables()
        matching = self._bond_kinds.get(kind)
        if matching is None:
            matching = self._bond_kinds[kind] = np.array([q.Match(bond) for q in self._bond_queries], dtype=bool)
        x, y = self._unpacked(begin_bits), self._unpacked(end_bits)
        met = matching[query] & ((x[begin] & y[end]) | (x[end] & y[begin]))
        bits = np.zeros(len(self), dtype=bool)
        bits[condition[met]] = True
        return int.from_bytes(np.packbits(bits, bitorder="little").tobytes(), "little")


class _ScreenedQueries:
    """Queries with their screens: ``candidates(mol)`` gives the indices that may match;
    ``matchers[i].has_match`` decides exactly (None: a query that is not one SMARTS).

    A query is a candidate when the molecule meets each of its atom, bond and angle conditions
    (_LocalScreen; those of its relaxed form and of the sub-patterns its recursive atoms need
    too), and has enough atoms of the kinds its atoms can only be (_element_requirements).
    RDKit's pattern fingerprint (SubstructLibrary's screen) is not used: with these conditions
    it removed half the remaining candidates but cost more (~0.15 ms a molecule) than matching
    them."""

    def __init__(self, queries: list[Chem.Mol | None]):
        self.matchers = [None if q is None else _QueryMatcher(q) for q in queries]
        self.always = np.array([q is None for q in queries], dtype=bool)
        self.local_screen = _LocalScreen()
        for matcher in self.matchers:
            if matcher is not None:
                self._require_atoms(matcher)
        needs = [None if m is None else m.atom_bits | self._recursive_requirements(m.query) for m in self.matchers]
        self.words = (len(self.local_screen) + 63) // 64  # the conditions are all known now
        self.required = np.zeros((len(queries), self.words), dtype=np.uint64)
        for i, need in enumerate(needs):
            if need is not None:
                self.required[i] = self._words(need)
        # element-count screen: requirement r says: atoms of the kinds paired with r ≥ needed[r].
        # Only k ≥ 2: one atom of a kind is already required by an atom condition
        requirements = [(i, elements, k) for i, m in enumerate(self.matchers) if m is not None
                        for q in (m.query, m.relaxed) if q is not None
                        for elements, k in _element_requirements(q) if k >= 2]
        # (requirement, kind) pairs summed with bincount: no matmul, whose BLAS threads would
        # compete with the other describe worker for the cores
        pairs = [(r, e) for r, (_, elements, _) in enumerate(requirements) for e in sorted(elements)]
        self.pair_requirement = np.array([r for r, _ in pairs], dtype=np.int64)
        self.pair_kind = np.array([e for _, e in pairs], dtype=np.int64)
        self.needed = np.array([k for _, _, k in requirements], dtype=np.float64)
        self.owner = np.array([i for i, _, _ in requirements], dtype=np.int64)
        self.n = len(queries)
        # key conditions: per query, its _KEY_CONDITIONS rarest conditions, learnt from the first
        # molecules screened, are tested first for all queries at once; the few queries left
        # get the full test
        self.n_conditions = len(self.local_screen)
        self._condition_counts = np.zeros(self.n_conditions, dtype=np.int64)
        self._screened = 0
        self._keys: np.ndarray | None = None

    def _recursive_requirements(self, query: Chem.Mol) -> int:
        """Conditions a molecule needs for ``query``'s recursive atoms to match: an atom matches
        ``[$(A)&!$(B);$(C),$(D)]`` only if the molecule contains A, and C or D; so A's
        conditions are required, and those C and D share."""
        needed = 0
        for atom in query.GetAtoms():
            if not _is_recursive(atom):
                continue
            smarts = atom.GetSmarts()
            body = smarts[1:-1] if smarts.startswith("[") and smarts.endswith("]") else smarts
            for conjunct in _split_top_level(body, ";"):
                shared = None
                for alternative in _split_top_level(conjunct, ","):
                    conditions = 0
                    for part in _split_top_level(alternative, "&"):
                        sub = Chem.MolFromSmarts(part[2:-1]) if _one_recursive_part(part) else None
                        if sub is not None and sub.GetNumAtoms():
                            conditions |= self.local_screen.require(_prepared(sub))
                    shared = conditions if shared is None else shared & conditions
                needed |= shared or 0
        return needed

    def _require_atoms(self, matcher: _QueryMatcher) -> None:
        matcher.atom_bits = self.local_screen.require(matcher.query) | self.local_screen.require(matcher.relaxed)
        for alternative in matcher.alternatives or ():
            self._require_atoms(alternative)

    def _words(self, mask: int) -> np.ndarray:
        return np.frombuffer(mask.to_bytes(8 * self.words, "little"), dtype=np.uint64)

    def _learn_keys(self) -> None:
        rarity = np.argsort(self._condition_counts, kind="stable")
        rank = np.empty_like(rarity)
        rank[rarity] = np.arange(len(rarity))
        bits = np.unpackbits(self.required.view(np.uint8), axis=1, bitorder="little")[:, : self.n_conditions]
        keys = np.full((self.n, _KEY_CONDITIONS), self.n_conditions, dtype=np.int64)  # _unpacked's padding True
        for i, row in enumerate(bits):
            needed = np.flatnonzero(row)
            chosen = needed[np.argsort(rank[needed])[:_KEY_CONDITIONS]]
            keys[i, : len(chosen)] = chosen
        self._keys = keys

    def candidates(self, mol: Chem.Mol, facts: _MolFacts | None = None) -> np.ndarray:
        facts = facts or self.local_screen.present(mol)
        present, kinds = facts.mask, facts.kinds
        if self._keys is not None:
            rows = np.flatnonzero(self.local_screen._unpacked(present)[self._keys].all(axis=1))
        else:
            rows = np.arange(self.n)
            self._condition_counts += self.local_screen._unpacked(present)[:-1]
            self._screened += 1
            if self._screened == _LEARN_KEYS_FROM:
                self._learn_keys()
        rows = rows[~(self.required[rows] & ~self._words(present)).any(axis=1)]
        if len(self.needed):
            counts = np.bincount(kinds, minlength=1119)
            have = np.bincount(self.pair_requirement, weights=counts[self.pair_kind], minlength=len(self.needed))
            short = np.zeros(self.n, dtype=bool)
            short[self.owner[have < self.needed]] = True
            rows = rows[~short[rows]]
        return rows

    def matching(self, mol: Chem.Mol, facts: _MolFacts | None = None) -> Iterator[int]:
        """Indices whose query matches (and those without a query, for the caller to decide)."""
        facts = facts or self.local_screen.present(mol)
        for i in self.candidates(mol, facts):
            matcher = self.matchers[i]
            if matcher is None or matcher.has_match(mol, facts.mask, screened=True):
                yield int(i)


class AlertCatalog:
    """RDKit's PAINS A/B/C, Brenk and NIH catalogs and QED's structural alerts, screened together:
    a SMARTS in both (82 of QED's 116) is matched once per molecule."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, object]] = []
        queries: list[Chem.Mol | None] = []
        by_smarts: dict[str, int] = {}

        def query_index(query: Chem.Mol | None) -> int:
            # entries without one plain SMARTS query are never shared
            key = None if query is None else Chem.MolToSmarts(query)
            if key is not None and key in by_smarts:
                return by_smarts[key]
            queries.append(query)
            if key is not None:
                by_smarts[key] = len(queries) - 1
            return len(queries) - 1

        entry_queries = []
        for catalog_name, catalog_id in ALERT_CATALOGS.items():
            params = FilterCatalogParams()
            params.AddCatalog(catalog_id)
            catalog = FilterCatalog(params)
            for i in range(catalog.GetNumEntries()):
                entry = catalog.GetEntryWithIdx(i)
                self.entries.append((catalog_name, entry))
                entry_queries.append(query_index(_entry_query(entry)))
        qed_queries = [query_index(Chem.Mol(q)) for q in QED.StructuralAlerts]
        self.screen = _ScreenedQueries(queries)
        # query index -> the catalog entries it is necessary for / the QED alerts it is
        self.entries_of: dict[int, list[int]] = {}
        for entry_index, query in enumerate(entry_queries):
            self.entries_of.setdefault(query, []).append(entry_index)
        self.qed_count = np.bincount(qed_queries, minlength=len(queries))

    def matches_and_qed_alerts(self, mol: Chem.Mol, facts: _MolFacts | None = None) -> tuple[list[StructuralAlert], int]:
        """The catalog entries that match (in catalog order) and how many QED alerts match."""
        found_entries, qed_alerts = [], 0
        for i in self.screen.matching(mol, facts):
            qed_alerts += int(self.qed_count[i])
            found_entries += self.entries_of.get(i, ())
        found = []
        # a match of the entry's query is necessary for the entry to match; the entry itself
        # (counts, exclusions) decides
        for i in sorted(found_entries):
            catalog_name, entry = self.entries[i]
            hits = entry.GetFilterMatches(mol)
            if hits:
                atoms = tuple(tuple(sorted(int(a) for _, a in hit.atomPairs)) for hit in hits)
                found.append(StructuralAlert(catalog_name, entry.GetDescription(), atoms))
        return found, qed_alerts


@lru_cache(maxsize=1)
def alert_catalog() -> AlertCatalog:
    return AlertCatalog()


class _QedAtomFacts:
    """Two of QED.properties' numbers from _MolFacts, equal to what it computes:

    - HBA sums the matches of QED.Acceptors, eleven one-atom SMARTS; a one-atom match is one
      atom, and whether an atom matches a pattern of _SIGNATURE_LEAVES depends only on its
      signature (asked of RDKit once per signature). Another pattern (the amine one, recursive)
      is matched by RDKit, only when some atom meets its relaxed form.
    - AROM deletes the atoms matching QED.AliphaticRings, ``[$([A;R][!a])]`` (aliphatic ring
      atoms with a non-aromatic neighbour) and counts the SSSR of what is left. An SSSR has as
      many rings as the graph's cycle rank (bonds - atoms + connected parts), counted here
      without building the smaller molecule."""

    def __init__(self) -> None:
        self.simple: list[Chem.Atom] = []
        self.other: list[tuple[Chem.Mol, Chem.Atom | None]] = []
        for pattern in QED.Acceptors:
            atom = pattern.GetAtomWithIdx(0) if pattern.GetNumAtoms() == 1 else None
            if atom is not None and _signature_screenable(atom):
                self.simple.append(atom)
            else:
                relaxed = _first_atom_union(atom.GetSmarts()) if atom is not None else None
                self.other.append((pattern, relaxed if relaxed is not None and _signature_screenable(relaxed) else None))
        self._by_signature: dict[int, tuple[int, int]] = {}  # by signature number (_MolFacts.numbers)

    def acceptors(self, mol: Chem.Mol, facts: _MolFacts) -> int:
        count, others = 0, 0
        for i, number in enumerate(facts.numbers):
            known = self._by_signature.get(number)
            if known is None:
                atom = mol.GetAtomWithIdx(i)
                known = self._by_signature[number] = (
                    sum(1 for query in self.simple if query.Match(atom)),
                    sum(1 << k for k, (_, relaxed) in enumerate(self.other) if relaxed is None or relaxed.Match(atom)))
            count += known[0]
            others |= known[1]
        for k, (pattern, _) in enumerate(self.other):
            if others >> k & 1:
                count += len(mol.GetSubstructMatches(pattern))
        return count

    @staticmethod
    def aromatic_rings(facts: _MolFacts) -> int:
        signatures, n = facts.signatures, len(facts.signatures)
        deleted = [False] * n
        for a, b, kind, _ in facts.bonds:
            # [A;R] with a [!a] neighbour, both ways; SMARTS' implicit bond: single or aromatic
            if kind in _SINGLE_OR_AROMATIC and not signatures[a][1] and not signatures[b][1]:
                deleted[a] = deleted[a] or signatures[a][6] > 0
                deleted[b] = deleted[b] or signatures[b][6] > 0
        parent = list(range(n))

        def root(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        # bonds outside rings join nothing into a cycle (removing one leaves the cycle rank as
        # it is): only ring bonds and their atoms are counted
        kept_bonds, kept_atoms = 0, set()
        for a, b, _, in_ring in facts.bonds:
            if in_ring and not deleted[a] and not deleted[b]:
                kept_bonds += 1
                kept_atoms.add(a)
                kept_atoms.add(b)
                parent[root(a)] = root(b)
        return kept_bonds - len(kept_atoms) + sum(1 for i in kept_atoms if root(i) == i)


@lru_cache(maxsize=1)
def _qed_atom_facts() -> _QedAtomFacts:
    return _QedAtomFacts()


def qed_screened(mol: Chem.Mol, logp: float, n_alerts: int, known: dict | None = None) -> float:
    """QED.qed with its properties gathered as QED.properties does; ``n_alerts``: how many of
    QED.StructuralAlerts match (from ``AlertCatalog.matches_and_qed_alerts``). ``known`` may
    carry MW, HBD, PSA and ROTB already computed by the very calls QED.properties makes
    (``Descriptors.MolWt``, which is QED's ``_CalcMolWt``; ``CalcNumHBD``, ``CalcTPSA``, strict ``CalcNumRotatableBonds``), and HBA
    and AROM as _QedAtomFacts counts them."""
    known = known or {}
    props = QED.QEDproperties(
        MW=known["MW"] if "MW" in known else Descriptors.MolWt(mol),
        ALOGP=logp,
        # QED.properties skips GetSubstructMatches when HasSubstructMatch is False: no matches
        # either way, so the sum is the same without the extra call
        HBA=known["HBA"] if "HBA" in known else sum(len(mol.GetSubstructMatches(p)) for p in QED.Acceptors),
        HBD=known["HBD"] if "HBD" in known else rdMolDescriptors.CalcNumHBD(mol),
        PSA=known["PSA"] if "PSA" in known else QED.MolSurf.TPSA(mol),
        ROTB=known["ROTB"] if "ROTB" in known else
        rdMolDescriptors.CalcNumRotatableBonds(mol, rdMolDescriptors.NumRotatableBondsOptions.Strict),
        AROM=known["AROM"] if "AROM" in known else
        len(Chem.GetSSSR(Chem.DeleteSubstructs(Chem.Mol(mol), QED.AliphaticRings))),
        ALERTS=n_alerts,
    )
    return QED.qed(mol, qedProperties=props)


def _default_rotatable_is_strict() -> bool:
    """Whether ``CalcNumRotatableBonds(mol)`` counts as the Strict mode QED uses (RDKit's
    default, which a caller can change globally): checked on a molecule where they differ."""
    probe = Chem.MolFromSmiles("CC(=O)NC(C)C(F)(F)F")
    options = rdMolDescriptors.NumRotatableBondsOptions
    strict = rdMolDescriptors.CalcNumRotatableBonds(probe, options.Strict)
    return (strict != rdMolDescriptors.CalcNumRotatableBonds(probe, options.NonStrict)
            and rdMolDescriptors.CalcNumRotatableBonds(probe) == strict)


_DEFAULT_ROTATABLE_IS_STRICT = _default_rotatable_is_strict()


def lipinski_violations(mw: float, logp: float, hbd: int, hba: int) -> int:
    return int(mw > 500) + int(logp > 5) + int(hbd > 5) + int(hba > 10)


def describe_mol(mol: Chem.Mol, with_alert_atoms: bool = False) -> dict:
    """Every property column for one parsed molecule."""
    if mol.GetNumAtoms() != mol.GetNumHeavyAtoms():  # RemoveHs copies and re-sanitises (~0.17 ms)
        mol = Chem.RemoveHs(mol)
    catalog = alert_catalog()
    facts = catalog.screen.local_screen.present(mol)
    mw = Descriptors.MolWt(mol)
    logp = Crippen.MolLogP(mol)
    tpsa = rdMolDescriptors.CalcTPSA(mol)
    hbd = Lipinski.NumHDonors(mol)  # rdMolDescriptors.CalcNumHBD, as in QED.properties
    hba = Lipinski.NumHAcceptors(mol)
    rotb = rdMolDescriptors.CalcNumRotatableBonds(mol)
    # QED counts strict rotatable bonds; the default mode is strict unless someone changed it
    strict_rotb = (rotb if _DEFAULT_ROTATABLE_IS_STRICT else
                   rdMolDescriptors.CalcNumRotatableBonds(mol, rdMolDescriptors.NumRotatableBondsOptions.Strict))
    alerts, qed_alerts = catalog.matches_and_qed_alerts(mol, facts)
    qed_facts = _qed_atom_facts()
    violations = lipinski_violations(mw, logp, hbd, hba)
    row = {
        "mw": mw,
        "logp": logp,
        "tpsa": tpsa,
        "hbd": hbd,
        "hba": hba,
        "rotb": rotb,
        "qed": qed_screened(mol, logp, qed_alerts, {"MW": mw, "HBD": hbd, "PSA": tpsa, "ROTB": strict_rotb,
                                                    "HBA": qed_facts.acceptors(mol, facts),
                                                    "AROM": qed_facts.aromatic_rings(facts)}),
        "lipinski_violations": violations,
        "alerts": [a.label for a in alerts],
        "rings": rdMolDescriptors.CalcNumRings(mol),
        "aromatic_rings": rdMolDescriptors.CalcNumAromaticRings(mol),
        "heavy_atoms": mol.GetNumHeavyAtoms(),
        "fsp3": rdMolDescriptors.CalcFractionCSP3(mol),
        # Lipinski's rule of five allows one violation; Veber: ≤10 rotatable bonds, TPSA ≤ 140
        "lipinski_pass": violations <= 1,
        "veber_pass": rotb <= 10 and tpsa <= 140,
    }
    if with_alert_atoms:
        row["alert_atoms"] = {a.label: a.atoms for a in alerts}
    return row


def _describe_smiles_chunk(chunk: list[tuple[str, str]], with_alert_atoms: bool = False) -> list[dict]:
    from healthfm_desktop.core.chemistry.reading import parse_smiles

    rows = []
    for ident, text in chunk:
        mol, error = parse_smiles(text)
        if mol is None:
            rows.append({"id": ident, "smiles": text, "error": error})
        else:
            rows.append({"id": ident, "smiles": Chem.MolToSmiles(mol), **describe_mol(mol, with_alert_atoms)})
    return rows


def _describe_block_chunk(chunk: list[tuple[str, str]]) -> list[dict]:
    from healthfm_desktop.core.chemistry.reading import parse_molblock

    rows = []
    for ident, block in chunk:
        mol, error = parse_molblock(block)
        if mol is None:
            rows.append({"id": ident, "smiles": "", "error": error})
        else:
            rows.append({"id": ident, "smiles": Chem.MolToSmiles(mol), **describe_mol(mol)})
    return rows


def _error_rows(chunk: list[tuple[str, str, str]]) -> list[dict]:
    return [{"id": i, "smiles": s, "error": e} for i, s, e in chunk]


def _warm_worker() -> None:
    # the catalogs are built once per worker process, before the first chunk arrives, and one
    # molecule of each kind is described, so that the first record's time (which the time
    # budget counts) holds no imports or one-time set-up
    alert_catalog()
    _describe_smiles_chunk([("warm", "CCO")], True)
    _describe_block_chunk([("warm", "warm\n\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\n"
                                    "    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0\nM  END\n")])


#: seconds one molecule may take on a worker process before it is stopped and reported as its
#: row's error (the size limits of core/chemistry/reading.py keep real records far below it)
RECORD_BUDGET_S = 10.0


def _overrun_row(record: tuple[str, str], seconds: float) -> dict:
    ident, text = record
    return {"id": ident, "smiles": "" if "\n" in text else text,
            "error": f"took longer than the time budget of {seconds:g} s for one molecule (stopped)"}


def _map_ordered(chunks: Iterable[tuple], workers: int | None, budget_s: float | None = RECORD_BUDGET_S) -> Iterator[list]:
    # unreadable records (_error_rows) cost nothing to report: they stay in this process
    budget = processes.RecordBudget(budget_s, _overrun_row) if budget_s else None
    return processes.map_ordered(chunks, workers, initializer=_warm_worker, local=lambda fn: fn is _error_rows,
                                 purpose="describe", budget=budget,
                                 preload=[*processes.CHEMISTRY_PRELOAD, "healthfm_desktop.core.chemistry.describe_worker"])


def describe_smiles_parallel(smiles: list[str], workers: int | None = None, chunk_size: int = 500,
                             budget_s: float | None = RECORD_BUDGET_S) -> Iterator[tuple[int, list[dict]]]:
    """Describe SMILES (with alert atoms, indexed as in MolFromSmiles of that SMILES) on worker
    processes; yields (number done, rows of the chunk) in order, for a progress bar. A molecule
    past ``budget_s`` seconds on a worker is its row's error."""
    chunks = ((_describe_smiles_with_atoms, [(str(i), s) for i, s in enumerate(smiles[k : k + chunk_size], start=k)])
              for k in range(0, len(smiles), chunk_size))
    done = 0
    for rows in _map_ordered(chunks, workers, budget_s):
        done += len(rows)
        yield done, rows


def describe_smiles_on_cluster(smiles: list[str], client, chunk_size: int = 500) -> Iterator[tuple[int, list[dict]]]:
    """``describe_smiles_parallel`` on a Dask cluster (``client``, Settings > Compute): the same
    rows, in order, from the same chunk function run on its workers."""
    from healthfm_desktop.core.cluster import map_ordered

    chunks = ([(str(i), s) for i, s in enumerate(smiles[k : k + chunk_size], start=k)]
              for k in range(0, len(smiles), chunk_size))
    done = 0
    for rows in map_ordered(_describe_smiles_with_atoms, chunks, client=client, label="describe"):
        done += len(rows)
        yield done, rows


def _describe_smiles_with_atoms(chunk: list[tuple[str, str]]) -> list[dict]:
    return _describe_smiles_chunk(chunk, True)


def describe_records(records: Iterable, workers: int | None = None, chunk_size: int = 250,
                     budget_s: float | None = RECORD_BUDGET_S) -> Iterator[dict]:
    """Describe MoleculeRecords in input order, on ``workers`` processes (default: all cores).
    Records travel to the workers as text (SMILES or molblock) and are parsed there, so records
    read with ``parse=False`` cost the reading process nothing but the file reading. A record
    that takes a worker more than ``budget_s`` seconds is stopped and is its row's error."""

    def chunks() -> Iterator[tuple]:
        kind, batch = None, []
        for record in records:
            if record.mol is None and record.error is not None:
                if batch:
                    yield kind, batch
                    kind, batch = None, []
                yield _error_rows, [(record.id, record.smiles, record.error)]
                continue
            this_kind = _describe_block_chunk if "\n" in record.source else _describe_smiles_chunk
            if batch and (this_kind is not kind or len(batch) >= chunk_size):
                yield kind, batch
                batch = []
            kind = this_kind
            batch.append((record.id, record.source))
        if batch:
            yield kind, batch

    for rows in _map_ordered(chunks(), workers, budget_s):
        yield from rows
