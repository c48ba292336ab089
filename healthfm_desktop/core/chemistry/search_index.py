"""On-disk search index over a molecule library, and the searches it serves.

Similarity: 2048-bit Morgan r=2 fingerprints (RDKit's GetMorganGenerator(radius=2,
fpSize=2048)), molecules sorted by popcount so that BitBound (Swamidass & Baldi: Tanimoto
≤ min(a,b)/max(a,b)) turns a threshold into one contiguous slice. The fingerprints are stored
*bit-sliced*: for each of the 2048 bits, one packed bit-vector over the molecules. A query with
~45 bits set then reads only its 45 planes: unpacked to a byte a molecule and summed down, they
give the intersection counts of every molecule in a range (a few numpy calls a block, no
per-molecule popcount); over long ranges a vertical (carry-save) counter in uint64 words keeps
them bit-sliced. Scores are RDKit's c / (a + b - c) in double precision.

Top-k: the bins nearest the query's popcount are scored first; their k-th best score bounds
the final one from below, so BitBound drops the bins that cannot reach it and, per remaining
bin, a minimum common-bit count is compared in bit-sliced form; only passing molecules are
unpacked and scored exactly.

Substructure: RDKit pattern fingerprints, bit-sliced the same way; the AND of the query's
planes is the exact screen SubstructLibrary applies, and RDKit's HasSubstructMatch decides on
molecules rebuilt from RDKit's canonical SMILES of the sanitised molecule (``trusted.smi``)
without re-sanitising them (see ``trusted_mol``). Each molecule's SSSR rings are stored too
(``rings.bin``), so a query about rings gets them without a ring perception per molecule.

Atom types: every atom of the library is reduced to a key of everything an atom query written
in SMARTS or SMILES can read about it (element, charge, isotope, aromaticity, H counts,
valences, degrees, radicals, hybridisation, chiral tag, the sizes of its SSSR rings, its ring
bonds, its neighbours' elements and aromaticity). The index keeps the distinct keys (a few
hundred for MOSES), one real atom standing for each (``atom_types.json``), and each molecule's
set of keys. RDKit matches each query atom against the standing atoms once per search: a
molecule can contain the query only if, for every query atom, it holds an atom of a matching
type (a screen for what the pattern fingerprint cannot see: ring sizes, ring counts, H counts,
charges), and a one-atom query is answered by that alone, exactly, without rebuilding any
molecule. Each neighbour is kept in the key with its bond, so a star-shaped query (one atom
and its neighbours, the outer atoms asking only element and aromaticity: C(=O)N, S(=O)(=O)N)
is decided by the types too, RDKit matching it around one standing atom per type. A query
with a recursive SMARTS (``$(...)``) is not typed (its atoms read beyond their own atom).

Ring systems: each molecule's ring systems (rings joined by ring bonds) are stored once per
distinct system (``ring_systems.smi``, with the molecule's own SSSR rings). A connected query
whose every bond must map to a ring bond and whose atoms and bonds read only what a ring system
keeps on its own (element, aromaticity, charge, isotope, ring sizes and counts, bond orders)
can only match inside one ring system, exactly as it matches there: it is matched against the
few hundred distinct systems instead of the molecules (benzene, pyridine, ``*@*``, fused
rings). Molecules the trusted SMILES do not rebuild (radicals) are always matched in full.

Everything substructure search reads (pattern planes, trusted SMILES, rings, atom types, ring
systems: ~4x the parse + Morgan work of a build, and most of the index on disk) is built by the
first substructure search, not by the index build (``LibraryIndex.build_substructure``).

Format version 4 (this one) made those substructure data optional (``"substructure"`` in
index.json); version 3 added the rings, atom types and ring systems and is still read (version
2 added ``trusted.smi``); an index of another version is refused with a message to rebuild it."""

from __future__ import annotations

import array
import dataclasses
import json
import logging
import mmap
import os
import pickle
import re
import tempfile
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem, DataStructs

from healthfm_desktop.core import processes
from healthfm_desktop.core.chemistry import properties
from healthfm_desktop.core.chemistry.fingerprints import FP_BITS, FP_BYTES, morgan_generator
from healthfm_desktop.core.chemistry.reading import parse_smarts, parse_smiles, read_molecules
from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError
from healthfm_desktop.core.storage.atomic import atomic_write_text

log = logging.getLogger(__name__)

INDEX_FORMAT = "healthfm-molecule-index"
INDEX_VERSION = 4  # 2: trusted.smi (RDKit's canonical SMILES); 3: rings.bin and the atom types; 4: those optional
PATTERN_BITS = 2048
_CHUNK = 65536  # molecules per transpose step: a multiple of 64
_DENSE_POSITIONS = 1 << 17  # similarity: ranges up to this many molecules are scored at once
_COUNT_BYTES = 1 << 20  # similarity: unpacked query bits per block of _common_counts (stays in cache)
_CORE_FRACTION = 0.02  # top-k: share of the library scored exactly first, around the query's popcount
# substructure: candidates (after the screen) from which matching on worker processes pays.
# Matching costs ~15 µs a candidate (~22 µs with the stored rings; index v2, which perceived
# them, ~25 and ~55 µs); handing chunks to a warm pool costs a few ms a search, starting one
# 0.3-0.9 s (each worker imports RDKit and numpy). Measured on 2 cores with index v2
# (benchmarks/bench_molecules.py, 20,000 MOSES molecules): on free cores the workers took
# unselective queries from ~450 ms to ~230 ms; with both cores busy elsewhere they gain
# nothing and lose ~5-10 %. (Index v3 decides most unselective queries without matching.)
_PARALLEL_MIN_CANDIDATES = 4000  # workers already running
_PARALLEL_MIN_CANDIDATES_COLD = 50000  # workers to be started first
_PARALLEL_CHUNK = 1000  # candidates per worker task: small enough to balance, large enough to amortise
# substructure: a candidate matched costs ~15-22 µs, the atom-type screen ~30 ns a molecule
# (~15 types each through one reduceat); below that break-even the candidates of the pattern
# screen are matched directly (rare scaffolds such as adamantane: 0.09x SubstructLibrary
# before, see benchmarks/bench_molecules.py)
_MATCH_SECONDS = 20e-6
_TYPE_SCREEN_SECONDS_PER_MOLECULE = 30e-9
_ATOM_MATCH_SECONDS = 1.5e-6  # one query atom against one standing atom of a type
_SCREEN_HEAD = 16  # substructure screen: the rarest query bits ANDed first, in one call
_SCREEN_FEW = 20000  # ... and below this many molecules left, the other bits are read at their positions only
_TOP_HEAD = 2000  # with a top: candidates matched in-process before the rest goes to the workers


class IndexBuildCancelled(UserFacingError):
    """The user stopped an index build; nothing was written."""


@dataclass(slots=True)
class Hit:
    row: int  # 0-based position in the library as read
    id: str
    smiles: str
    score: float


@dataclass
class _Chunk:
    """What one index-build task returns for a list of library SMILES; the arrays and lists
    hold the molecules that parse, in order. The similarity part (``morgan``) and the
    substructure part (the rest) are each None when not asked for."""
    errors: list  # error or None, per SMILES given
    morgan: np.ndarray | None  # packed Morgan bits
    pattern: np.ndarray | None = None  # packed pattern bits
    canonical: list | None = None  # RDKit canonical SMILES (the trusted molecules)
    rings: bytes = b""  # every molecule's ring blob (see _encode_rings), concatenated
    ring_lengths: np.ndarray | None = None  # bytes of each molecule's ring blob
    type_keys: list | None = None  # the atom-type keys met in this chunk (local type id = position)
    type_reps: list | None = None  # (molecule position in this chunk, atom index) standing for each local type
    types: np.ndarray | None = None  # each molecule's local type ids (distinct, ascending), concatenated
    type_counts: np.ndarray | None = None  # how many types each molecule holds
    full_parse: list | None = None  # positions of the molecules that trusted SMILES do not rebuild (radicals)
    system_keys: list | None = None  # the ring systems (SMILES, ring blob) met in this chunk (local id = position)
    systems: np.ndarray | None = None  # each molecule's local ring-system ids, concatenated
    system_counts: np.ndarray | None = None  # how many ring systems each molecule holds


def _similarity_chunk(smiles: list[str]) -> _Chunk:
    """The parse check and the Morgan fingerprints: what an index build does before it is
    searchable by similarity (the substructure data are built later, see
    LibraryIndex.build_substructure). Returns packed numpy rows, never molecules."""
    return _fingerprint_chunk(smiles, substructure=False)


def _substructure_chunk(smiles: list[str]) -> _Chunk:
    """The substructure data of library SMILES that parsed at the index build."""
    return _fingerprint_chunk(smiles, similarity=False)


def _fingerprint_chunk(smiles: list[str], similarity: bool = True, substructure: bool = True) -> _Chunk:
    gen = morgan_generator() if similarity else None
    errors: list[str | None] = []
    morgan, pattern, canonical, rings, ring_lengths = [], [], [], [], []
    type_ids: dict = {}
    type_reps: list = []
    types, type_counts, full_parse = [], [], []
    system_ids: dict = {}
    systems, system_counts = [], []
    for text in smiles:
        mol, error = parse_smiles(text)
        if mol is not None and max(mol.GetNumAtoms(), mol.GetNumBonds()) > _MAX_ATOMS:
            mol, error = None, f"too large for the search index (over {_MAX_ATOMS:,} atoms or bonds)"
        errors.append(error)
        if mol is None:
            continue
        if similarity:
            # the packed bits themselves (ExplicitBitVect's binary text: bit j at byte j // 8,
            # bit j % 8), not a 2048-byte array packed again
            morgan.append(DataStructs.BitVectToBinaryText(gen.GetFingerprint(mol)))
        if not substructure:
            continue
        pattern.append(_pattern_packed(mol))
        text_out = Chem.MolToSmiles(mol)
        canonical.append(text_out)
        keys = _atom_keys(mol)
        own_systems: list = []
        try:
            trusted, ring_list = _trusted_rings(mol, text_out, [key[0] for key in keys])
            blob = _encode_rings(ring_list)
            own_systems = _ring_systems(trusted, ring_list) if ring_list else []
        except ValueError as exc:  # not seen on real libraries: this molecule is matched on a full parse
            log.warning("search index: %s", exc)
            blob = _PERCEIVE_RINGS
            full_parse.append(len(canonical) - 1)
        rings.append(blob)
        ring_lengths.append(len(blob))
        if any(key[8] for key in keys) and (not full_parse or full_parse[-1] != len(canonical) - 1):
            # radicals: SanitizeMol assigns them, a trusted (unsanitised) parse would not
            full_parse.append(len(canonical) - 1)
        own_ids = {system_ids.setdefault(system, len(system_ids)) for system in own_systems}
        systems.extend(sorted(own_ids))
        system_counts.append(len(own_ids))
        ids = set()
        for atom_index, key in enumerate(keys):
            local = type_ids.get(key)
            if local is None:
                local = type_ids[key] = len(type_ids)
                type_reps.append((len(canonical) - 1, atom_index))
            ids.add(local)
        types.extend(sorted(ids))
        type_counts.append(len(ids))
    packed = np.frombuffer(b"".join(morgan), dtype=np.uint8).reshape(-1, FP_BYTES).copy() if similarity else None
    if not substructure:
        return _Chunk(errors, packed)
    return _Chunk(errors, packed, np.array(pattern, dtype=np.uint8).reshape(-1, PATTERN_BITS // 8), canonical,
                  b"".join(rings), np.array(ring_lengths, dtype=np.int64), list(type_ids), type_reps,
                  np.array(types, dtype=np.uint32), np.array(type_counts, dtype=np.int64), full_parse,
                  list(system_ids), np.array(systems, dtype=np.uint32), np.array(system_counts, dtype=np.int64))


class _SubstructureParts:
    """The substructure data of an index, gathered chunk by chunk (local type and ring-system
    ids made global) and written as the index's substructure files."""

    def __init__(self):
        self.canonical: list[str] = []
        self.pattern_parts, self.ring_parts, self.ring_length_parts = [], [], []
        self.type_parts, self.type_count_parts, self.full_parse = [], [], []
        self.system_ids: dict = {}  # (SMILES, ring blob) -> global ring-system id
        self.system_parts, self.system_count_parts = [], []
        self.type_ids: dict = {}  # atom-type key -> global type id
        self.type_reps: list[tuple[int, int]] = []  # (library row, atom index) standing for each type

    def add(self, first_row: int, result: _Chunk) -> None:
        self.canonical.extend(result.canonical)
        self.pattern_parts.append(result.pattern)
        self.ring_parts.append(result.rings)
        self.ring_length_parts.append(result.ring_lengths)
        to_global = np.zeros(len(result.type_keys), dtype=np.uint32)
        for local, (key, (position, atom)) in enumerate(zip(result.type_keys, result.type_reps)):
            global_id = self.type_ids.get(key)
            if global_id is None:
                global_id = self.type_ids[key] = len(self.type_ids)
                self.type_reps.append((first_row + position, atom))
            to_global[local] = global_id
        # global ids stay distinct per molecule; ascending order is not needed by the screen
        self.type_parts.append(to_global[result.types] if len(result.types) else result.types)
        self.type_count_parts.append(result.type_counts)
        self.full_parse.extend(first_row + position for position in result.full_parse)
        to_global = np.array([self.system_ids.setdefault(key, len(self.system_ids)) for key in result.system_keys],
                             dtype=np.uint32)
        self.system_parts.append(to_global[result.systems] if len(result.systems) else result.systems)
        self.system_count_parts.append(result.system_counts)

    def write(self, out: Path, order: np.ndarray) -> dict:
        """Write the substructure files into ``out`` (molecules in library row order; the
        pattern planes in ``order``, as the Morgan planes); returns their counts for index.json."""
        n = len(self.canonical)
        pattern = np.concatenate(self.pattern_parts) if self.pattern_parts else np.zeros((0, PATTERN_BITS // 8), np.uint8)
        _write_compressed_planes(out / PATTERN_FILE, _bit_planes(pattern[order]))
        counts = np.zeros(PATTERN_BITS, dtype=np.int64)  # molecules per pattern bit: the screen ANDs rare bits first
        for start in range(0, n, _CHUNK):
            counts += np.unpackbits(pattern[start:start + _CHUNK], axis=1, bitorder="little").sum(axis=0, dtype=np.int64)
        np.save(out / "pattern_counts.npy", counts)
        _write_lines(out / "trusted.smi", out / "trusted_offsets.npy", self.canonical)
        _write_blobs(out / "rings.bin", out / "ring_offsets.npy", self.ring_parts, self.ring_length_parts, n)
        type_counts = np.concatenate(self.type_count_parts) if self.type_count_parts else np.zeros(0, np.int64)
        type_offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(type_counts, out=type_offsets[1:])
        np.save(out / "molecule_types.npy", np.concatenate(self.type_parts) if self.type_parts else np.zeros(0, np.uint32))
        np.save(out / "molecule_type_offsets.npy", type_offsets)
        np.save(out / "full_parse_rows.npy", np.array(self.full_parse, dtype=np.int64))
        system_counts = np.concatenate(self.system_count_parts) if self.system_count_parts else np.zeros(0, np.int64)
        system_offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(system_counts, out=system_offsets[1:])
        np.save(out / "molecule_systems.npy",
                np.concatenate(self.system_parts) if self.system_parts else np.zeros(0, np.uint32))
        np.save(out / "molecule_system_offsets.npy", system_offsets)
        keys = list(self.system_ids)
        _write_lines(out / "ring_systems.smi", out / "ring_system_offsets.npy", [key[0] for key in keys])
        _write_blobs(out / "ring_system_rings.bin", out / "ring_system_ring_offsets.npy", [key[1] for key in keys],
                     [np.array([len(key[1]) for key in keys], dtype=np.int64)], len(keys))
        (out / "atom_types.json").write_text(
            json.dumps({"keys": list(self.type_ids), "representatives": self.type_reps}) + "\n", encoding="utf-8")
        return {"atom_types": len(self.type_ids), "ring_systems": len(self.system_ids)}


_MAX_ATOMS = 65535  # ring blobs hold atom and bond indices as uint16
_PERCEIVE_RINGS = np.zeros(1, dtype=np.uint16).tobytes()  # a ring blob saying: perceive the rings when matching
_EXPLICIT = Chem.ValenceType.EXPLICIT
_IMPLICIT = Chem.ValenceType.IMPLICIT


def _atom_keys(mol: Chem.Mol) -> list[tuple]:
    """Per atom of ``mol``, everything an atom query written in SMARTS or SMILES can read about
    it (RDKit's atom query primitives: #, symbol, a/A, isotope, +/-, H, h, D, X, d, v, R, r, x,
    z, Z, ^, radicals, chirality): atoms with equal keys match the same query atoms. More than
    needed (every ring size, not just the smallest; the neighbours' elements, not just how many
    are heteroatoms), so that a primitive counted differently still sees equal atoms as equal.
    Neighbours and ring bonds are gathered in one pass over the bonds (building an RDKit atom
    wrapper per neighbour would double the cost of an index build). Each neighbour comes with
    its bond to the atom, so that a star-shaped query (one atom and its neighbours) is decided
    by the types too (see LibraryIndex._star_screen)."""
    ring_info = mol.GetRingInfo()
    # GetAtomWithIdx, not iteration over GetAtoms(): RDKit's Python sequence wrapper costs ~2 µs an item
    atoms = [mol.GetAtomWithIdx(i) for i in range(mol.GetNumAtoms())]
    element = [a.GetAtomicNum() for a in atoms]
    aromatic = [a.GetIsAromatic() for a in atoms]
    neighbours: list[list] = [[] for _ in atoms]
    ring_bonds = [0] * len(atoms)
    ring_bond_ids = {b for ring in ring_info.BondRings() for b in ring}
    for k in range(mol.GetNumBonds()):
        bond = mol.GetBondWithIdx(k)
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        # the bond as a bond query can read it: order, aromaticity, ring membership (and which
        # end a dative bond starts from)
        kind = (int(bond.GetBondType()), bond.GetIsAromatic(), k in ring_bond_ids)
        dative = bond.GetBondType() == Chem.BondType.DATIVE
        neighbours[i].append((element[j], aromatic[j], *kind, dative))
        neighbours[j].append((element[i], aromatic[i], *kind, False))
        if k in ring_bond_ids:
            ring_bonds[i] += 1
            ring_bonds[j] += 1
    # left out as implied by what is kept: the degree (the number of neighbours), the total
    # degree (degree + H count), H counts including explicit H neighbours (H neighbours are listed)
    return [(element[i], a.GetIsotope(), a.GetFormalCharge(), aromatic[i], a.GetTotalNumHs(), a.GetNumExplicitHs(),
             a.GetValence(_EXPLICIT), a.GetValence(_IMPLICIT), a.GetNumRadicalElectrons(), int(a.GetHybridization()),
             int(a.GetChiralTag()), tuple(sorted(ring_info.AtomRingSizes(i))) if ring_bonds[i] else (), ring_bonds[i],
             tuple(sorted(neighbours[i])))
            for i, a in enumerate(atoms)]


def _trusted_rings(mol: Chem.Mol, canonical: str, elements: list[int]):
    """(the trusted molecule parsed from ``canonical``, the SSSR rings of ``mol`` - as RDKit
    perceived them on the library's own SMILES - as (atoms, bonds) of that trusted molecule);
    (None, []) for an acyclic molecule."""
    ring_info = mol.GetRingInfo()
    if not ring_info.NumRings():
        return None, []
    # the SMILES parser numbers atoms in the order MolToSmiles wrote them
    written = [int(x) for x in mol.GetProp("_smilesAtomOutputOrder").strip("[]").split(",") if x]
    trusted = trusted_mol(canonical, rings=False)
    if trusted is None or len(written) != trusted.GetNumAtoms() or any(
            elements[old] != trusted.GetAtomWithIdx(new).GetAtomicNum() for new, old in enumerate(written)):
        raise ValueError(f"RDKit's canonical SMILES {canonical!r} does not rebuild the molecule atom for atom")
    new_index = {old: new for new, old in enumerate(written)}
    return trusted, [_ring_bonds(trusted, [new_index[a] for a in ring]) for ring in ring_info.AtomRings()]


def _ring_bonds(mol: Chem.Mol, atoms: list[int]) -> tuple[list[int], list[int]]:
    """(atoms, bonds) of a ring given by its atoms in order around it."""
    bonds = []
    for k, a in enumerate(atoms):
        bond = mol.GetBondBetweenAtoms(a, atoms[(k + 1) % len(atoms)])
        if bond is None:
            raise ValueError(f"no ring bond between atoms {a} and {atoms[(k + 1) % len(atoms)]} after a SMILES round trip")
        bonds.append(bond.GetIdx())
    return atoms, bonds


def _encode_rings(rings) -> bytes:
    """A ring blob: uint16 values, per ring its size, its atoms, its bonds (see _add_rings)."""
    values: list[int] = []
    for atoms, bonds in rings:
        values += [len(atoms), *atoms, *bonds]
    return np.array(values, dtype=np.uint16).tobytes()


def _ring_systems(trusted: Chem.Mol, rings) -> list[tuple[str, bytes]]:
    """Each ring system of a molecule (its atoms joined by ring bonds: fused, spiro and bridged
    rings together) as (SMILES, rings): the system written with its ring bonds only, atoms as
    they are in the molecule (element, aromaticity, charge, isotope; RDKit's
    MolFragmentToSmiles), and its SSSR rings - the molecule's own - as atoms of that SMILES in
    order around each ring, each ring started at its smallest atom, rings sorted: equal systems
    of different molecules give equal pairs (uint16 values: size, atoms; per ring)."""
    parent = {a: a for atoms, _ in rings for a in atoms}

    def root(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for atoms, _ in rings:
        first = root(atoms[0])
        for a in atoms[1:]:
            parent[root(a)] = first
    systems: dict[int, list[int]] = {}
    for k, (atoms, _) in enumerate(rings):
        systems.setdefault(root(atoms[0]), []).append(k)
    out = []
    for ring_ids in systems.values():
        atoms = sorted({a for k in ring_ids for a in rings[k][0]})
        bonds = sorted({b for k in ring_ids for b in rings[k][1]})
        smiles = Chem.MolFragmentToSmiles(trusted, atomsToUse=atoms, bondsToUse=bonds)
        written = [int(x) for x in trusted.GetProp("_smilesAtomOutputOrder").strip("[]").split(",") if x]
        new_index = {old: new for new, old in enumerate(written)}
        renumbered = []
        for k in ring_ids:
            ring = [new_index[a] for a in rings[k][0]]
            start = ring.index(min(ring))
            ring = ring[start:] + ring[:start]
            if ring[-1] < ring[1]:  # the direction with the smaller second atom
                ring = [ring[0]] + ring[:0:-1]
            renumbered.append(ring)
        values: list[int] = []
        for ring in sorted(renumbered):
            values += [len(ring), *ring]
        out.append((smiles, np.array(values, dtype=np.uint16).tobytes()))
    return out


def _add_fragment_rings(fragment: Chem.Mol, blob: bytes) -> bool:
    """Fill a ring system's ring information from its stored rings (atoms in order around each
    ring); False if a ring bond is missing (the system is then not used)."""
    values = array.array("H", blob).tolist()
    ring_info = fragment.GetRingInfo()
    p = 0
    while p < len(values):
        size = values[p]
        atoms = values[p + 1 : p + 1 + size]
        bonds = []
        for k, a in enumerate(atoms):
            bond = fragment.GetBondBetweenAtoms(a, atoms[(k + 1) % size])
            if bond is None:
                return False
            bonds.append(bond.GetIdx())
        ring_info.AddRing(atoms, bonds)
        p += 1 + size
    return True


def _fragment_mol(smiles: str) -> Chem.Mol | None:
    """A ring system from its stored SMILES, as it was cut out (no sanitisation: a ring system
    alone may not be a valid molecule, e.g. pyridone's ring without its oxygen)."""
    mol = Chem.MolFromSmiles(smiles, _TRUSTED_PARSE)
    if mol is not None:
        mol.UpdatePropertyCache(strict=False)
    return mol


def _pattern_packed(mol: Chem.Mol) -> np.ndarray:
    fp = Chem.PatternFingerprint(mol, fpSize=PATTERN_BITS)
    return np.frombuffer(DataStructs.BitVectToBinaryText(fp), dtype=np.uint8)


def _bit_planes(packed_rows: np.ndarray) -> np.ndarray:
    """(n, nbytes) packed rows -> (nbits, ceil(n/64)) uint64 planes, molecule j at bit j%64 of
    word j//64."""
    n, nbytes = packed_rows.shape
    words = (n + 63) // 64
    planes = np.zeros((nbytes * 8, words), dtype=np.uint64)
    for start in range(0, n, _CHUNK):
        block = packed_rows[start : start + _CHUNK]
        bits = np.unpackbits(block, axis=1, bitorder="little")  # (m, nbits)
        m = bits.shape[0]
        if m % 64:
            bits = np.vstack([bits, np.zeros((64 - m % 64, bits.shape[1]), dtype=np.uint8)])
        sliced = np.ascontiguousarray(np.packbits(np.ascontiguousarray(bits.T), axis=1, bitorder="little"))
        planes[:, start // 64 : start // 64 + sliced.shape[1] // 8] = sliced.view(np.uint64)
    return planes


def _vertical_count(planes: np.ndarray, bits: np.ndarray, w0: int, w1: int) -> list[np.ndarray]:
    """Bit-sliced per-molecule counts of how many of ``bits`` are set, over words [w0, w1)."""
    counter: list[np.ndarray] = []
    carry = np.empty(w1 - w0, dtype=np.uint64)
    tmp = np.empty_like(carry)
    for bit in bits:
        np.copyto(carry, planes[bit, w0:w1])
        for level in counter:
            np.bitwise_and(level, carry, out=tmp)
            np.bitwise_xor(level, carry, out=level)
            carry, tmp = tmp, carry
        if carry.any():
            counter.append(carry.copy())
    return counter


def _common_counts(planes: np.ndarray, bits: np.ndarray, w0: int, w1: int) -> np.ndarray:
    """Per-molecule counts of how many of ``bits`` are set, over words [w0, w1): the query's
    planes gathered, unpacked to one byte a bit and summed down, a block of words at a time
    (three numpy calls a block, where a bit-sliced adder makes several per query bit)."""
    dtype = np.uint8 if len(bits) < 256 else np.uint16
    out = np.empty((w1 - w0) * 64, dtype=dtype)
    step = max(64, _COUNT_BYTES // (8 * max(len(bits), 1)) // 64 * 64)  # words a block
    for start in range(w0, w1, step):
        stop = min(start + step, w1)
        unpacked = np.unpackbits(planes[bits, start:stop].view(np.uint8), axis=1, bitorder="little")
        np.add.reduce(unpacked, axis=0, dtype=dtype, out=out[(start - w0) * 64 : (stop - w0) * 64])
    return out


def _kth_best(scores: np.ndarray, k: int) -> float:
    """The k-th largest of ``scores`` (1 <= k < len), exactly. A strided sample gives a score
    that about 2k of them reach; only those are partitioned (np.partition of every score is
    slow on their many equal values). Should fewer than k reach it, every score is."""
    stride = len(scores) // (16 * k)
    if stride >= 2:
        sample = scores[::stride]
        rank = min(2 * k // stride + 1, len(sample))
        guess = np.partition(sample, len(sample) - rank)[len(sample) - rank]
        head = scores[scores >= guess]
        if len(head) >= k:  # every score above the k-th best is in head, and the k-th too
            return float(np.partition(head, len(head) - k)[len(head) - k])
    return float(np.partition(scores, len(scores) - k)[len(scores) - k])


def _min_common(a: int, b: int, threshold: float) -> int | None:
    """The least common-bit count c with c / (a + b - c) ≥ threshold, computed in the same
    double-precision arithmetic as the scores (so the comparison agrees with them exactly)."""
    c = np.arange(min(a, b) + 1, dtype=np.float64)
    ok = np.flatnonzero(c / ((a + b) - c) >= threshold)
    return int(ok[0]) if len(ok) else None


def _at_least(levels: list[np.ndarray], value: int, words: int) -> np.ndarray:
    """Bit-sliced comparison: bit j set where the count held by ``levels`` (bit l of the count
    in levels[l]) is ≥ ``value``."""
    if value <= 0:
        return np.full(words, np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    if value >= 1 << len(levels):
        return np.zeros(words, dtype=np.uint64)
    greater = np.zeros(words, dtype=np.uint64)
    equal = np.full(words, np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    for level in range(len(levels) - 1, -1, -1):
        if value >> level & 1:
            np.bitwise_and(equal, levels[level], out=equal)
        else:
            greater |= equal & levels[level]
            np.bitwise_and(equal, ~levels[level], out=equal)
    return greater | equal


class LibraryIndex:
    """A loaded index (memory-mapped). ``build`` writes one; ``open`` reads it."""

    def __init__(self, folder: Path, meta: dict, popcount: np.ndarray, order: np.ndarray, morgan: np.ndarray,
                 pattern: np.ndarray, offsets: np.ndarray, records: np.ndarray, trusted_offsets: np.ndarray,
                 trusted: np.ndarray):
        self.folder = folder
        self.data_folder = folder  # where the substructure data are (see build_substructure)
        self.meta = meta
        self.popcount = popcount  # sorted, per position
        self.order = order  # position -> library row
        # plain ndarrays over the memmaps: indexing a np.memmap costs ~6 µs a plane in its
        # __getitem__/__array_finalize__, and a query reads tens (Morgan) to hundreds (pattern)
        self.morgan = np.asarray(morgan)  # (2048, words)
        self._pattern = np.asarray(pattern) if pattern is not None else None  # (2048, words), loaded when first read
        self._pattern_source = None  # the file it is loaded from
        self._counts = None  # molecules per pattern bit, loaded with the planes
        self.offsets = offsets  # row -> byte offset into records (row order), n+1 entries
        self.records = records  # uint8 memmap of "id\tsmiles\n" lines in library row order
        self.trusted_offsets = trusted_offsets  # row -> byte offset into trusted, n+1 entries
        self.trusted = trusted  # uint8 memmap of RDKit canonical SMILES lines, library row order
        self.size = len(popcount)
        self._trusted_map = None
        self._records_map = None
        self._files = None  # what substructure matching reads (see _substructure_files)
        self._types = None  # atom types, loaded at the first substructure search
        self._neighbours = None  # per atom type, its standing atom's neighbours (see _standing_neighbours)
        self._systems = None  # ring systems, loaded at the first search that reads them
        self._types_lock = threading.Lock()
        self._build_lock = threading.Lock()  # one substructure-data build at a time
        # first position of each popcount value, for BitBound slicing
        self.pop_start = np.searchsorted(popcount, np.arange(FP_BITS + 2), side="left")

    # ---- records -----------------------------------------------------------------------
    def record(self, row: int) -> tuple[str, str]:
        # slicing an mmap costs ~0.2 µs, a numpy memmap view several µs (unselective substructure
        # queries ask for tens of thousands of records)
        data = self._records_bytes()
        line = data[int(self.offsets[row]) : int(self.offsets[row + 1])].decode("utf-8").rstrip("\n")
        ident, _, smiles = line.partition("\t")
        return ident, smiles

    # ---- similarity ----------------------------------------------------------------------
    def _position_range(self, lo_pop: int, hi_pop: int) -> tuple[int, int]:
        """Positions [p0, p1) of the molecules with popcount in [lo_pop, hi_pop]."""
        lo_pop, hi_pop = max(lo_pop, 0), min(hi_pop, FP_BITS)
        if hi_pop < lo_pop:
            return 0, 0
        return int(self.pop_start[lo_pop]), int(self.pop_start[hi_pop + 1])

    def _candidates(self, query_bits: np.ndarray, a: int, p0: int, p1: int, threshold: float) -> np.ndarray:
        """Positions in [p0, p1) whose Tanimoto to the query is ≥ ``threshold``, exactly.

        Per popcount bin b the score c / (a + b - c) grows with the common-bit count c, so the
        threshold is one minimum count per bin; the bit-sliced counts are compared with it in
        their bit-sliced form (a few word operations per level), and only the passing molecules
        are ever unpacked."""
        if p1 <= p0:
            return np.zeros(0, dtype=np.int64)
        if p1 - p0 <= _DENSE_POSITIONS:
            # a short range: its exact scores at once cost less than a bit-sliced compare per bin
            scores = self._exact_scores_range(query_bits, a, p0, p1)
            return p0 + np.flatnonzero(scores >= threshold)
        w0, w1 = p0 // 64, (p1 + 63) // 64
        levels = _vertical_count(self.morgan, query_bits, w0, w1)
        found = []
        for b in range(int(self.popcount[p0]), int(self.popcount[p1 - 1]) + 1):
            b0, b1 = max(int(self.pop_start[b]), p0), min(int(self.pop_start[b + 1]), p1)
            if b1 <= b0:
                continue
            c_min = _min_common(a, b, threshold)
            if c_min is None:
                continue
            v0, v1 = b0 // 64 - w0, (b1 + 63) // 64 - w0
            mask = _at_least([level[v0:v1] for level in levels], c_min, v1 - v0)
            positions = np.flatnonzero(np.unpackbits(mask.view(np.uint8), bitorder="little"))
            positions += (v0 + w0) * 64
            found.append(positions[(positions >= b0) & (positions < b1)])
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def _exact_scores(self, query_bits: np.ndarray, a: int, positions: np.ndarray) -> np.ndarray:
        """RDKit's Tanimoto (double precision) of the molecules at ``positions``."""
        words = positions // 64
        shift = (positions % 64).astype(np.uint64)
        common = np.zeros(len(positions), dtype=np.int64)
        for bit in query_bits:
            common += ((self.morgan[bit][words] >> shift) & np.uint64(1)).astype(np.int64)
        union = a + self.popcount[positions].astype(np.int64) - common
        return common / union

    def similar(self, query: Chem.Mol, threshold: float | None = None, top: int | None = None) -> list[Hit]:
        """Hits with Tanimoto ≥ threshold (default 0 when top is given, else 0.7), best first,
        at most ``top``; ties in library order.

        top-k: the popcount bins nearest the query's (where the best scores are) are scored
        first; their k-th best score is a lower bound of the final k-th best, so BitBound then
        narrows the rest of the library to the bins that can still reach it, and within each
        bin only molecules with enough common bits are unpacked."""
        query_bits = np.flatnonzero(morgan_generator().GetFingerprintAsNumPy(query))
        a = len(query_bits)
        if a == 0 or self.size == 0:
            return []
        if threshold is None:
            threshold = 0.0 if top else 0.7
        if not 0.0 <= threshold <= 1.0:
            raise UserFacingError("the similarity threshold must lie between 0 and 1")
        if self.size <= _DENSE_POSITIONS:  # a small library: every exact score in BitBound's range at once
            p0, p1 = self._position_range(*self._bitbound(a, threshold))
            scores = self._exact_scores_range(query_bits, a, p0, p1)
            if threshold > 0:
                positions = np.flatnonzero(scores >= threshold)
                scores = scores[positions]
            else:
                positions = np.arange(len(scores))
            if top and len(scores) > top:  # the top-th best and its ties
                keep = scores >= _kth_best(scores, top)
                positions, scores = positions[keep], scores[keep]
            return self._ranked(positions + p0, scores, top)
        floor = threshold
        done = (0, 0)
        positions = np.zeros(0, dtype=np.int64)
        if top:
            core = self._core_range(a, top)
            core_positions = np.arange(*core, dtype=np.int64)
            core_scores = self._exact_scores_range(query_bits, a, *core)
            keep = core_scores >= threshold
            core_positions, core_scores = core_positions[keep], core_scores[keep]
            if len(core_scores) >= top:
                floor = max(threshold, float(np.partition(core_scores, len(core_scores) - top)[len(core_scores) - top]))
                keep = core_scores >= floor
                core_positions = core_positions[keep]
            positions = core_positions
            done = core
        lo, hi = self._bitbound(a, floor)
        p0, p1 = self._position_range(lo, hi)
        parts = [positions]
        if done[1] > done[0]:
            parts += [self._candidates(query_bits, a, p0, min(p1, done[0]), floor),
                      self._candidates(query_bits, a, max(p0, done[1]), p1, floor)]
        else:
            parts.append(self._candidates(query_bits, a, p0, p1, floor))
        positions = np.concatenate(parts)
        scores = self._exact_scores(query_bits, a, positions)
        keep = scores >= floor
        return self._ranked(positions[keep], scores[keep], top)

    def _ranked(self, positions: np.ndarray, scores: np.ndarray, top: int | None) -> list[Hit]:
        """Hits best first, ties in library order, at most ``top``."""
        rows = self.order[positions]
        ranking = np.lexsort((rows, -scores))
        if top:
            ranking = ranking[:top]
        rows, scores = rows[ranking].tolist(), scores[ranking].tolist()
        ascending = sorted(rows)
        lines = dict(zip(ascending, _lines(self._records_bytes(), self.offsets, ascending)))
        hits = []
        for row, score in zip(rows, scores):
            ident, _, smiles = lines[row].partition("\t")
            hits.append(Hit(row, ident, smiles, score))
        return hits

    def _core_range(self, a: int, top: int) -> tuple[int, int]:
        """Positions of the popcount bins around ``a``: at least ``_CORE_FRACTION`` of the
        library (and ``top``) molecules, grown one bin at a time on the side nearer in score."""
        want = max(top * 4, int(self.size * _CORE_FRACTION))
        lo = hi = min(max(a, int(self.popcount[0])), int(self.popcount[-1]))
        while True:
            p0, p1 = self._position_range(lo, hi)
            if p1 - p0 >= min(want, self.size):
                return p0, p1
            # the next bin on each side bounds the best score there: min/max of popcounts
            down = (lo - 1) / a if lo - 1 >= 0 else -1.0
            up = a / (hi + 1) if hi + 1 <= FP_BITS else -1.0
            if down < 0 and up < 0:
                return p0, p1
            if down >= up:
                lo -= 1
            else:
                hi += 1

    def _exact_scores_range(self, query_bits: np.ndarray, a: int, p0: int, p1: int) -> np.ndarray:
        if p1 <= p0:
            return np.zeros(0)
        w0, w1 = p0 // 64, (p1 + 63) // 64
        counts = _common_counts(self.morgan, query_bits, w0, w1)[p0 - w0 * 64 : p1 - w0 * 64].astype(np.float64)
        return counts / ((a + self.popcount[p0:p1]) - counts)

    @staticmethod
    def _bitbound(a: int, threshold: float) -> tuple[int, int]:
        if threshold <= 0:
            return 0, FP_BITS
        # widened by one on each side: the exact per-bin minimum counts decide
        return int(np.floor(a * threshold)) - 1, int(np.ceil(a / threshold)) + 1

    # ---- substructure ------------------------------------------------------------------
    def substructure(self, query: Chem.Mol, top: int | None = None,
                     progress: Callable[[float], None] | None = None) -> list[Hit]:
        """Library molecules that contain ``query`` (RDKit's HasSubstructMatch), in library order.

        Decided without matching molecules: a one-atom query and a star-shaped one by the atom
        types (``_type_screen``, ``_star_screen``), a query confined to ring systems on the
        library's distinct ring systems (``_ring_system_screen``). Otherwise two exact screens
        keep only molecules that can match: the pattern fingerprint (the AND of the query's bit
        planes) and the atom types (for each query atom, the molecule must hold an atom of a
        type RDKit matches it with, whose neighbours can take the query atom's neighbours). Each remaining molecule is rebuilt from RDKit's own
        canonical SMILES of the sanitised molecule without sanitising again (parsing such
        trusted SMILES costs a fifth of MolFromSmiles), with exactly what matching reads: valences
        and hydrogen counts always; when the query asks about rings, the stored SSSR rings
        (hybridisation too when it asks about that). With enough candidates to pay
        (``_PARALLEL_MIN_CANDIDATES``, or ``_PARALLEL_MIN_CANDIDATES_COLD`` while no workers run
        yet: see ``warm_substructure_workers``), worker processes match ranges of them (each
        reading the index files from its own mmap) and the hits are merged in library order:
        the same hits as in-process. An index built without its substructure data builds them
        first (``build_substructure``; ``progress`` reports that build too)."""
        self.build_substructure(progress=progress)
        query.UpdatePropertyCache(strict=False)
        Chem.FastFindRings(query)
        smarts = Chem.MolToSmarts(query)
        mode = _ring_mode(smarts)
        rows = self._screen(query)
        big = self._systems_that_may_hold(query, smarts) if len(rows) else None
        if big is not None and len(big) < len(rows):
            # a ring-system query that fewer of the library's ring systems can hold than there
            # are candidates (a steroid core, whose candidates cost ~0.1 ms each to reject)
            in_systems = self._ring_system_screen(query, smarts, big)
            if in_systems is not None:
                return self._decided_on_systems(in_systems, rows, query, mode, top)
        if self._few_candidates(len(rows), query, smarts):
            # few candidates (a rare scaffold, or none at all): matching them costs less than the
            # atom-type and ring-system screens would, which read every molecule's types; but a
            # query atom no atom of the library matches (a nitro group's N+ where there is none)
            # is found at ~1 µs a type, and then nothing matches
            if len(rows) >= _THREAD_MIN_ROWS and self._absent_atom(query, smarts):
                return []
            return self._hits(_match_candidates(self._substructure_files(), rows, query, mode, top, progress))
        star = self._star_screen(query, smarts)
        if star is not None:  # decided by the atom types and their neighbours
            rows = np.flatnonzero(star)
            return self._hits(rows[:top] if top else rows)
        typed = self._type_screen(query, smarts)
        if query.GetNumAtoms() == 1 and typed is not None:  # decided by the atom types alone
            rows = np.flatnonzero(typed) if isinstance(typed, np.ndarray) else np.arange(self.size)
            return self._hits(rows[:top] if top else rows)
        if isinstance(typed, np.ndarray):
            rows = rows[typed[rows]]
        in_systems = self._ring_system_screen(query, smarts)
        if in_systems is not None:
            return self._decided_on_systems(in_systems, rows, query, mode, top)
        if mode == NO_RINGS and _threads() > 1:
            # RDKit's own threads match trusted SMILES as this process does (no rings needed):
            # no hand-off to worker processes
            return self._hits(_match_threaded(self._substructure_files(), rows, query, top, progress))
        threshold = _PARALLEL_MIN_CANDIDATES if _pool is not None else _PARALLEL_MIN_CANDIDATES_COLD
        matched: list[int] = []
        if top and len(rows) >= threshold:
            # a top (the app asks for 100) is often met within the first candidates: those are
            # matched here, and only what is left of a selective query goes to the workers
            head, rows = rows[:_TOP_HEAD], rows[_TOP_HEAD:]
            matched = _match_rows(self._substructure_files(), head, query, mode, top)
            if len(matched) >= top:
                return self._hits(matched)
        left = top - len(matched) if top else None
        more = None
        if len(rows) >= threshold:
            more = _match_in_workers(self.folder, self.data_folder, query, mode, rows, left, progress)
        if more is None:  # few candidates, or no worker processes
            more = _match_rows(self._substructure_files(), rows, query, mode, left, progress)
        return self._hits(matched + more)

    def _pattern_counts(self) -> np.ndarray | None:
        """Molecules per pattern bit (None for an index built before they were stored)."""
        if self._counts is None:
            path = self.data_folder / "pattern_counts.npy"
            try:
                self._counts = np.load(path) if path.is_file() else False
            except (OSError, ValueError) as exc:
                raise UnreadableFileError(f"damaged molecule search index: {path.name}: {exc}") from exc
        return self._counts if self._counts is not False else None

    def _absent_atom(self, query: Chem.Mol, smarts: str) -> bool:
        """Whether one of the query's atoms other than a plain carbon (the rare ones: charged,
        isotopic, heteroatoms) matches no atom type of the library (RDKit's Match against each
        type's standing atom, stopping at the first that matches): then no molecule contains
        the query. False when the query or the index has no atom types."""
        if "$" in smarts or self.size == 0:
            return False
        rare = {}
        for atom in query.GetAtoms():
            if atom.GetAtomicNum() not in (0, 6) or atom.GetFormalCharge() or atom.GetIsotope():
                rare.setdefault((atom.DescribeQuery() if atom.HasQuery() else None, atom.GetSmarts()), atom)
        if not rare:
            return False
        types = self._atom_types()
        if types is None:
            return False
        standing = types[0]
        return any(not any(atom.Match(other) for other in standing) for atom in list(rare.values())[:4])

    def _few_candidates(self, candidates: int, query: Chem.Mol, smarts: str) -> bool:
        """Whether matching the candidates costs less than the screens that would narrow them:
        the atom-type screen (a pass over every molecule's types, each query atom against the
        standing atoms) and, for a query confined to ring systems, the ring-system screen (a
        match per distinct system). A recursive query has neither screen."""
        if candidates == 0:
            return True
        if "$" in smarts:
            return False
        cost = candidates * _MATCH_SECONDS
        screens = (self.size * _TYPE_SCREEN_SECONDS_PER_MOLECULE
                   + int(self.meta.get("atom_types", 0)) * query.GetNumAtoms() * _ATOM_MATCH_SECONDS)
        if cost <= screens:
            return True
        if query.GetNumBonds() and _ring_system_query(query):
            return cost <= screens + int(self.meta.get("ring_systems", 0)) * _MATCH_SECONDS
        return False

    def _systems_that_may_hold(self, query: Chem.Mol, smarts: str) -> np.ndarray | None:
        """The ring systems the ring-system screen would match ``query`` against (None when it
        does not take the query)."""
        if "$" in smarts or self.size == 0 or query.GetNumBonds() == 0 or not _ring_system_query(query):
            return None
        return self._ring_systems().big_enough(query)

    def _decided_on_systems(self, in_systems: np.ndarray, rows: np.ndarray, query: Chem.Mol, mode: int,
                            top: int | None) -> list[Hit]:
        """Hits decided on the ring systems, but for the candidates matched in full (radicals)."""
        files = self._substructure_files()
        undecided = np.array(sorted(files.full_parse), dtype=np.int64)
        undecided = undecided[np.isin(undecided, rows)]
        found = np.union1d(np.flatnonzero(in_systems), _match_rows(files, undecided, query, mode))
        return self._hits(found[:top] if top else found)

    def _hits(self, rows) -> list[Hit]:
        rows = [int(r) for r in rows]
        hits = []
        for row, line in zip(rows, _lines(self._records_bytes(), self.offsets, rows)):
            ident, _, smiles = line.partition("\t")
            hits.append(Hit(row, ident, smiles, 1.0))
        return hits

    def _screen(self, query: Chem.Mol) -> np.ndarray:
        """Library rows (sorted) whose pattern fingerprint holds every bit of the query's.

        Once the AND of the first planes has left few non-zero words (a selective query), only
        those words are read from the remaining planes; an empty AND stops early. A query sets
        hundreds of pattern bits: this keeps the per-query floor near one pass over a few planes."""
        qfp = Chem.PatternFingerprint(query, fpSize=PATTERN_BITS)
        on = np.zeros(PATTERN_BITS, dtype=np.uint8)
        DataStructs.ConvertToNumpyArray(qfp, on)
        pattern = self.pattern
        query_bits = np.flatnonzero(on)
        counts = self._pattern_counts()
        if counts is not None:  # the rarest bits first: the AND shrinks (or empties) within the first planes
            query_bits = query_bits[np.argsort(counts[query_bits], kind="stable")]
        words = pattern.shape[1]
        if counts is not None and len(query_bits):
            # the rarest planes ANDed in one call; when that leaves few molecules, every other
            # bit is checked at their positions only, 64 planes a call (not one call a plane)
            head, rest = query_bits[:_SCREEN_HEAD], query_bits[_SCREEN_HEAD:]
            mask = np.bitwise_and.reduce(pattern[head], axis=0)
            set_bits = np.flatnonzero(np.unpackbits(mask.view(np.uint8), bitorder="little")[: self.size])
            if len(set_bits) <= _SCREEN_FEW:
                positions = set_bits
                position_words, shift = positions // 64, (positions % 64).astype(np.uint64)
                for k in range(0, len(rest), 64):
                    if len(positions) == 0:
                        break
                    planes = pattern[rest[k:k + 64]][:, position_words]
                    keep = (((planes >> shift) & np.uint64(1)) != 0).all(axis=0)
                    positions, position_words, shift = positions[keep], position_words[keep], shift[keep]
                return np.sort(self.order[positions])
            query_bits = rest
        else:
            mask = np.full(words, np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
        kept = None  # word numbers still non-zero, once few
        for k, bit in enumerate(query_bits.tolist()):
            if kept is None:
                np.bitwise_and(mask, pattern[bit], out=mask)
            else:
                mask &= pattern[bit, kept]
            if k % 8 == 7:
                alive = np.flatnonzero(mask)
                if kept is not None:
                    kept, mask = kept[alive], mask[alive]
                elif len(alive) * 16 < words:
                    kept, mask = alive, mask[alive]
                if len(mask) == 0 or (kept is None and len(alive) == 0):
                    return np.zeros(0, dtype=np.int64)
        bits = np.unpackbits(mask.view(np.uint8), bitorder="little")
        if kept is None:
            positions = np.flatnonzero(bits[: self.size])
        else:
            set_bits = np.flatnonzero(bits)
            positions = kept[set_bits // 64] * 64 + set_bits % 64
            positions = positions[positions < self.size]
        return np.sort(self.order[positions])

    def _type_screen(self, query: Chem.Mol, smarts: str) -> np.ndarray | bool | None:
        """Per library row, whether it holds, for every query atom, an atom of a type that
        RDKit matches the query atom with and whose neighbours can take that query atom's arms
        (a bool array); True when every row does; None when the query cannot be typed
        (recursive SMARTS read other atoms) or the index has no types.

        An arm is a query neighbour with its bond, when the bond reads only what a type keeps
        of a bond (order, aromaticity, ring membership; other arms are left out, which only
        keeps more rows). A type fixes the element, aromaticity and bond of each neighbour, and
        the neighbour itself has one of the library's types: a neighbour can take an arm when
        the arm matches a standing atom of that element and aromaticity (exactly the arm's
        answer when the arm reads only those). In a match each query atom's arms go to distinct
        neighbours of its atom, so a molecule without such an atom cannot match (c1ccccc1C: an
        aromatic carbon bonded to two aromatic carbons and an aliphatic one, which the pattern
        fingerprint does not tell)."""
        if "$" in smarts or self.size == 0:
            return None
        types = self._atom_types()
        if types is None:
            return None
        standing, flat, starts = types
        mask: np.ndarray | bool = True
        seen: set[bytes] = set()
        asked: set[tuple] = set()
        arm_kinds: dict[tuple, set] = {}  # per arm atom key: the (element, aromaticity) it can take
        # heteroatoms first (the rarer types: an atom no molecule holds ends the screen early);
        # equal query atoms with equal arms (four of a toluene's six c) are matched once
        for query_atom in sorted(query.GetAtoms(), key=lambda atom: atom.GetAtomicNum() in (0, 6)):
            arms = []
            for bond in query_atom.GetBonds():
                if _bond_local(bond):
                    atom = bond.GetOtherAtom(query_atom)
                    arm_key = _query_atom_key(atom)
                    if arm_key not in arm_kinds:
                        arm_kinds[arm_key] = self._kinds_matched(atom)
                    arms.append((arm_key, bond))
            key = (_query_atom_key(query_atom), tuple(sorted((arm, _query_bond_key(bond)) for arm, bond in arms)))
            if key in asked:
                continue
            asked.add(key)
            ok = np.fromiter((query_atom.Match(atom) for atom in standing), dtype=bool, count=len(standing))
            if arms and ok.any():
                ok &= self._arms_fit(np.flatnonzero(ok), [(arm_kinds[arm], bond) for arm, bond in arms])
            if not ok.any():  # no molecule holds an atom this query atom (with its arms) matches
                return np.zeros(self.size, dtype=bool)
            if ok.all() or ok.tobytes() in seen:
                continue
            seen.add(ok.tobytes())
            # each molecule holds at least one atom type: no empty segment for reduceat
            has = np.logical_or.reduceat(ok[flat], starts)
            mask = has if mask is True else mask & has
        return mask

    def _kinds_matched(self, query_atom: Chem.Atom) -> set:
        """The (element, aromaticity) of the standing atoms ``query_atom`` matches."""
        kinds = set()
        for atom in self._atom_types()[0]:
            kind = (atom.GetAtomicNum(), atom.GetIsAromatic())
            if kind not in kinds and query_atom.Match(atom):
                kinds.add(kind)
        return kinds

    def _arms_fit(self, candidates: np.ndarray, arms: list) -> np.ndarray:
        """Per atom type, whether the standing atoms of ``candidates`` (type numbers) have
        distinct neighbours for ``arms`` ((the element and aromaticity an arm can take, its
        query bond), the bond reading only order, aromaticity and ring membership): each arm
        bond is matched once per kind of bond, not once per type."""
        around = self._standing_neighbours()
        fits = np.zeros(len(around), dtype=bool)
        answers: dict[tuple, bool] = {}
        for t in candidates.tolist():
            options = []
            for a, (kinds, arm_bond) in enumerate(arms):
                option = []
                for k, (atom_kind, bond_kind, bond) in enumerate(around[t]):
                    if atom_kind not in kinds:
                        continue
                    answer = answers.get((a, bond_kind))
                    if answer is None:
                        answer = answers[(a, bond_kind)] = bool(arm_bond.Match(bond))
                    if answer:
                        option.append(k)
                if not option:
                    break
                options.append(option)
            else:
                fits[t] = _assignable(options, set())
        return fits

    def _standing_neighbours(self) -> list:
        """Per atom type, its standing atom's neighbours as ((element, aromaticity), bond kind,
        bond), the bond kind being what a local bond query reads (order, aromaticity, ring
        membership, and which end of a dative bond the atom is); worked out once per index."""
        if self._neighbours is None:
            out = []
            for atom in self._atom_types()[0]:
                ring_info = atom.GetOwningMol().GetRingInfo()
                row = []
                for bond in atom.GetBonds():
                    other = bond.GetOtherAtom(atom)
                    bond_kind = (int(bond.GetBondType()), bond.GetIsAromatic(), ring_info.NumBondRings(bond.GetIdx()) > 0,
                                 bond.GetBeginAtomIdx() == atom.GetIdx())
                    row.append(((other.GetAtomicNum(), other.GetIsAromatic()), bond_kind, bond))
                out.append(row)
            self._neighbours = out
        return self._neighbours

    def _star_screen(self, query: Chem.Mol, smarts: str) -> np.ndarray | None:
        """Per library row, whether it contains a star-shaped query (one centre atom bonded to
        every other query atom, no other bond: C(=O)N, S(=O)(=O)N, cC, [#7;H1]C) whose outer
        atoms read only element and aromaticity and whose bonds read only what the atom types
        keep of a bond (order, aromaticity, ring membership); None for any other query. An
        atom type fixes the centre atom and the element, aromaticity and bond of each of its
        neighbours, so RDKit matching the query around one standing atom of a type answers for
        every atom of that type: each molecule is decided by the types it holds."""
        if "$" in smarts or self.size == 0 or query.GetNumAtoms() < 2 or query.GetNumBonds() != query.GetNumAtoms() - 1:
            return None
        centre = next((a for a in query.GetAtoms() if a.GetDegree() == query.GetNumAtoms() - 1), None)
        if centre is None:
            return None
        arms = [(bond.GetOtherAtom(centre), bond) for bond in centre.GetBonds()]
        if not all(_element_only(atom, query) and _bond_local(bond) for atom, bond in arms):
            if query.GetNumAtoms() != 2:
                return None
            centre, (other, bond) = arms[0][0], (centre, arms[0][1])  # a single bond: try its other end
            arms = [(other, bond)]
            if not (_element_only(other, query) and _bond_local(bond)):
                return None
        types = self._atom_types()
        if types is None:
            return None
        standing, flat, starts = types
        ok = np.zeros(len(standing), dtype=bool)
        for t, atom in enumerate(standing):
            if not centre.Match(atom):
                continue
            around = [(bond.GetOtherAtom(atom), bond) for bond in atom.GetBonds()]
            options = [[k for k, (neighbour, bond) in enumerate(around) if arm.Match(neighbour) and arm_bond.Match(bond)]
                       for arm, arm_bond in arms]
            ok[t] = _assignable(options, set())
        if not ok.any():
            return np.zeros(self.size, dtype=bool)
        return np.logical_or.reduceat(ok[flat], starts)

    def _ring_system_screen(self, query: Chem.Mol, smarts: str, big: np.ndarray | None = None) -> np.ndarray | None:
        """Per library row, whether one of its ring systems contains the query, when that
        decides whether the molecule does (else None): the query is connected, every query
        bond must map to a ring bond (it lies on a cycle of the query, or asks for a ring bond:
        ``@``) - so a match lies inside one ring system - and every query atom and bond reads
        only what a ring system cut out of its molecule keeps (element, aromaticity, charge,
        isotope, ring membership, sizes and counts, ring bonds; bond orders). Benzene, a
        pyridine, ``*@*``, ``[r5]@[r6]`` are decided so; ``[CH]1CC1`` (H count) or ``cC``
        (a bond that may leave the ring) are not. Only the systems with enough atoms, bonds and
        atoms of each repeated query atom are matched (``_RingSystems.big_enough``; a steroid
        core: one in 913 systems of 20,000 MOSES molecules). Rows matched on a full parse
        (radicals) are left False here and matched by the caller."""
        if big is None:  # ``big``: _systems_that_may_hold, when the caller has it
            big = self._systems_that_may_hold(query, smarts)
            if big is None:
                return None
        systems = self._ring_systems()
        ok = np.zeros(len(systems.atoms), dtype=bool)
        for k in big.tolist():
            fragment = systems.fragment(k)
            if fragment is None:
                break
            ok[k] = fragment.HasSubstructMatch(query)
        if systems.broken is not None:  # not expected (written by the index build): then decide nothing this way
            log.warning("search index %s: ring system %d does not rebuild; matching molecules in full",
                        self.data_folder, systems.broken)
            return None
        result = np.zeros(self.size, dtype=bool)
        cyclic = systems.per_row > 0
        if ok.any() and cyclic.any():
            # reduceat over the rows that hold ring systems (an acyclic row has an empty segment)
            result[cyclic] = np.logical_or.reduceat(ok[systems.flat], systems.row_starts[cyclic])
        return result

    def _ring_systems(self) -> "_RingSystems":
        """The library's distinct ring systems, read once (with each one's atom and bond counts)."""
        with self._types_lock:
            if self._systems is None or self._systems.folder != self.data_folder:
                try:
                    self._systems = _RingSystems(self.data_folder)
                except (OSError, ValueError) as exc:
                    raise UnreadableFileError(f"damaged molecule search index: {exc}") from exc
            return self._systems

    def prepare_substructure(self) -> None:
        """Build the substructure data if missing, then load what substructure searches read
        first (the atom types: a few hundred to a few thousand molecules parsed), e.g. on a
        worker when the index is opened."""
        self.build_substructure()
        self._atom_types()
        self._substructure_files()

    @property
    def has_substructure_data(self) -> bool:
        return self._pattern is not None or self._pattern_source is not None

    @property
    def pattern(self) -> np.ndarray | None:
        """The pattern-fingerprint planes, decompressed into memory at the first substructure
        search (a similarity-only session never reads them)."""
        if self._pattern is None and self._pattern_source is not None:
            with self._build_lock:
                if self._pattern is None:
                    source = self._pattern_source
                    try:
                        self._pattern = (_read_compressed_planes(source, PATTERN_BITS, (self.size + 63) // 64)
                                         if source.suffix == ".zlib" else np.asarray(np.load(source, mmap_mode="r")))
                    except (OSError, ValueError, zlib.error) as exc:
                        raise UnreadableFileError(f"damaged molecule search index: {source.name}: {exc}") from exc
        return self._pattern

    def build_substructure(self, workers: int | None = None, progress: Callable[[float], None] | None = None,
                           cancel: Callable[[], bool] | None = None) -> None:
        """Build the substructure data (pattern fingerprints, RDKit's canonical SMILES, rings,
        atom types, ring systems) of an index built without them, on ``workers`` processes
        (every core; in-process for a small library or inside a daemon process), and write them
        into the index folder (into a temporary folder, with a warning, when that folder is
        read-only); ``index.json`` says so last, so an interrupted build is simply redone.
        ``progress(fraction)``; ``cancel()`` true raises IndexBuildCancelled. Nothing happens
        when the data are there."""
        with self._build_lock:
            if self.has_substructure_data:
                return
            import multiprocessing

            if workers is None:
                small = self.size < 4 * _SUBSTRUCTURE_CHUNK
                workers = 1 if small or multiprocessing.current_process().daemon else (os.cpu_count() or 1)
            data = self._records_bytes()

            def tasks():
                for start in range(0, self.size, _SUBSTRUCTURE_CHUNK):
                    rows = list(range(start, min(start + _SUBSTRUCTURE_CHUNK, self.size)))
                    yield _substructure_chunk, [line.partition("\t")[2] for line in _lines(data, self.offsets, rows)]

            parts = _SubstructureParts()
            done = 0
            for result in processes.map_ordered(tasks(), workers, purpose="substructure data", cancel=cancel, preload=processes.CHEMISTRY_PRELOAD):
                if any(error is not None for error in result.errors):
                    raise UnreadableFileError(f"damaged molecule search index {self.folder}: a stored SMILES no longer "
                                              f"parses ({next(e for e in result.errors if e)}); rebuild the index")
                parts.add(done, result)
                done += len(result.errors)
                if progress:
                    progress(done / max(self.size, 1))
            if cancel and cancel():
                raise IndexBuildCancelled("substructure data build cancelled")
            target = self.folder
            try:
                counts = parts.write(target, self.order)
            except OSError as exc:
                target = Path(tempfile.mkdtemp(prefix="healthfm-substructure-"))
                log.warning("search index %s: cannot write its substructure data there (%s); kept in %s for this "
                            "session", self.folder, exc.strerror or exc, target)
                counts = parts.write(target, self.order)
            meta = dict(self.meta, substructure=True, **counts)
            if target == self.folder:
                atomic_write_text(self.folder / "index.json", json.dumps(meta, indent=2) + "\n")
            self.meta, self.data_folder = meta, target
            self._load_substructure()

    def _load_substructure(self) -> None:
        folder = self.data_folder
        # version 3 and the first version 4 indexes kept the planes uncompressed
        pattern = next((folder / name for name in (PATTERN_FILE, "pattern_planes.npy") if (folder / name).is_file()), None)
        missing = [name for name in _SUBSTRUCTURE_FILES if not (folder / name).is_file()] + ([PATTERN_FILE] if pattern is None else [])
        if missing:
            raise UnreadableFileError(f"damaged molecule search index: {', '.join(missing)} missing; rebuild the index")
        self._pattern_source = pattern
        try:
            self.trusted_offsets = np.asarray(np.load(folder / "trusted_offsets.npy", mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise UnreadableFileError(f"damaged molecule search index: {exc}") from exc

    def _atom_types(self):
        """(one standing atom per type, each row's types concatenated, each row's first
        position there), loaded once; the standing atoms are rebuilt with MolFromSmiles from
        the library's own SMILES (the molecule a plain HasSubstructMatch loop sees) and their
        keys checked against the stored ones (None, with a warning, if one differs: the screen
        is then skipped, never wrong)."""
        with self._types_lock:
            if self._types is None:
                self._types = self._load_atom_types() or False
            return self._types or None

    def _load_atom_types(self):
        try:
            meta = json.loads((self.data_folder / "atom_types.json").read_text(encoding="utf-8"))
            flat = np.load(self.data_folder / "molecule_types.npy", mmap_mode="r")
            offsets = np.load(self.data_folder / "molecule_type_offsets.npy")
        except (OSError, ValueError) as exc:
            raise UnreadableFileError(f"damaged molecule search index: {exc}") from exc
        molecules: dict[int, Chem.Mol] = {}
        keys: dict[int, list] = {}  # per standing molecule, its atoms' keys as stored (JSON)
        standing = []
        for key, (row, atom_index) in zip(meta["keys"], meta["representatives"]):
            mol = molecules.get(row)
            if mol is None:
                mol = molecules[row] = parse_smiles(self.record(row)[1])[0]
                keys[row] = json.loads(json.dumps(_atom_keys(mol))) if mol is not None else []
            atom = mol.GetAtomWithIdx(atom_index) if mol is not None and atom_index < mol.GetNumAtoms() else None
            if atom is None or keys[row][atom_index] != key:
                log.warning("search index %s: atom type %d no longer matches its atom; substructure searches "
                            "go without the atom-type screen (rebuild the index)", self.folder, len(standing))
                return None
            standing.append(atom)
        self._type_molecules = molecules  # the standing atoms live as long as their molecules
        return standing, np.asarray(flat), offsets[:-1]

    def _substructure_files(self) -> "_IndexFiles":
        if self._files is None:
            self._files = _IndexFiles(self._trusted_bytes(), self.trusted_offsets, self._records_bytes(), self.offsets,
                                      _map_file(self.data_folder / "rings.bin"),
                                      np.load(self.data_folder / "ring_offsets.npy", mmap_mode="r"),
                                      frozenset(np.load(self.data_folder / "full_parse_rows.npy").tolist()))
        return self._files

    def _records_bytes(self):
        if self._records_map is None:
            if self.size == 0 or not isinstance(self.records, np.memmap):
                return bytes(self.records)
            with open(self.records.filename, "rb") as handle:
                self._records_map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        return self._records_map

    def _trusted_bytes(self):
        if self._trusted_map is None:
            if self.size == 0:
                return b""
            self._trusted_map = _map_file(self.data_folder / "trusted.smi")
        return self._trusted_map

    # ---- files -------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | Path) -> "LibraryIndex":
        folder = Path(folder)
        meta_path = folder / "index.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UnreadableFileError(f"not a molecule search index (no readable index.json): {exc}") from exc
        if meta.get("format") != INDEX_FORMAT:
            raise UnreadableFileError("not a molecule search index (unknown format in index.json)")
        if meta.get("version") not in _READABLE_VERSIONS:
            raise UnreadableFileError(
                f"a molecule search index of format version {meta.get('version')}, this program reads version "
                f"{INDEX_VERSION}: rebuild the index with `healthfm molecules index LIBRARY... --out {folder}`")
        try:
            load = lambda name: np.load(folder / name, mmap_mode="r", allow_pickle=False)  # noqa: E731
            text = lambda name: np.memmap(folder / name, dtype=np.uint8, mode="r") if meta["size"] else np.zeros(0, np.uint8)  # noqa: E731
            index = cls(folder, meta, np.asarray(load("popcount.npy")), np.asarray(load("order.npy")),
                        load("morgan_planes.npy"), None, np.asarray(load("offsets.npy")), text("records.tsv"), None, None)
        except (OSError, ValueError, KeyError) as exc:
            raise UnreadableFileError(f"damaged molecule search index: {exc}") from exc
        if meta.get("substructure", True):  # version 3 always has them
            index._load_substructure()
        return index


_READABLE_VERSIONS = (3, 4)  # 4 only adds "substructure" to index.json (the data may be built later)
_SUBSTRUCTURE_CHUNK = 4096  # molecules per task of a substructure-data build
_SUBSTRUCTURE_FILES = ("trusted.smi", "trusted_offsets.npy", "rings.bin", "ring_offsets.npy", "atom_types.json",
                       "molecule_types.npy", "molecule_type_offsets.npy", "full_parse_rows.npy", "molecule_systems.npy",
                       "molecule_system_offsets.npy", "ring_systems.smi", "ring_system_offsets.npy",
                       "ring_system_rings.bin", "ring_system_ring_offsets.npy")


def is_index(path: str | Path) -> bool:
    return (Path(path) / "index.json").is_file()


def library_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                                and not p.name.lower().endswith((".md", ".json", ".py"))))
        elif path.exists():
            files.append(path)
        else:
            raise UnreadableFileError(f"{path}: no such file or folder")
    return files


def _library_records(files: list[Path], on_bad: Callable[[Path, str], None]) -> Iterator[tuple[Path, str, str]]:
    """(file, id, SMILES) of every record; SMILES are not parsed here (the fingerprinting
    workers parse them and report the ones that fail)."""
    for path in files:
        try:
            for record in read_molecules(path, parse=False):
                if record.mol is None and record.error is not None:
                    on_bad(path, f"record {record.index} ({record.id}): {record.error}")
                    continue
                # keep the library's SMILES; SDF/MOL records get RDKit's canonical SMILES
                smiles = record.source if "\n" not in record.source else Chem.MolToSmiles(record.mol)
                ident = record.id if record.id != str(record.index) or len(files) == 1 else f"{path.name}:{record.index}"
                yield path, ident.replace("\t", " ").replace("\n", " "), smiles, record.index
        except UserFacingError as exc:
            on_bad(path, str(exc))


def build_index(paths: Iterable[str | Path], out: str | Path, workers: int | None = None,
                on_bad: Callable[[Path, str], None] = lambda p, r: None,
                progress: Callable[[int], None] | None = None, chunk: int = 4096,
                cancel: Callable[[], bool] | None = None,
                records: Iterable[tuple[Path, str, str, int]] | None = None,
                substructure: bool = False) -> LibraryIndex:
    """Read libraries, fingerprint them on ``workers`` processes (core/processes.py, as describe)
    and write the index folder; ``progress(molecules done)``; ``cancel()`` true stops the build
    (``IndexBuildCancelled``) before anything is written. ``records`` (``(file, id, SMILES,
    record number)``, as ``_library_records`` reads them from ``paths``) stand in for reading:
    one shard of a sharded index (sharded_index.py).

    Only what similarity needs is built (parse, Morgan fingerprint): the substructure data
    (~4x that work) are built by the first substructure search (``build_substructure``), or
    here in the same pass with ``substructure=True``. Tasks send SMILES chunks and return
    packed numpy rows (a chunk of 4,096 keeps both cores busy on a small library)."""
    out = Path(out)
    files = library_files(paths) if records is None else [Path(p) for p in paths]
    if not files:
        raise UnreadableFileError("no library files given")
    out.mkdir(parents=True, exist_ok=True)
    ids: list[str] = []
    smiles: list[str] = []
    morgan_parts = []
    parts = _SubstructureParts() if substructure else None
    workers = workers or os.cpu_count() or 1
    task = _fingerprint_chunk if substructure else _similarity_chunk

    def batches():
        batch = []
        for record in _library_records(files, on_bad) if records is None else records:
            batch.append(record)
            if len(batch) >= chunk:
                yield batch
                batch = []
        if batch:
            yield batch

    def collect(batch, result: _Chunk):
        first_row = len(ids)
        for (path, ident, smi, number), error in zip(batch, result.errors):
            if error is None:
                ids.append(ident)
                smiles.append(smi)
            else:
                on_bad(path, f"record {number} ({ident}): {error}")
        morgan_parts.append(result.morgan)
        if parts is not None:
            parts.add(first_row, result)
        if progress:
            progress(len(ids))

    read: deque = deque()  # the batches handed out, in order: map_ordered returns their results so

    def tasks():
        for batch in batches():
            read.append(batch)
            yield task, [r[2] for r in batch]

    for result in processes.map_ordered(tasks(), workers, purpose="index build", cancel=cancel, preload=processes.CHEMISTRY_PRELOAD):
        collect(read.popleft(), result)
    if cancel and cancel():
        raise IndexBuildCancelled("index build cancelled")
    n = len(ids)
    morgan = np.concatenate(morgan_parts) if morgan_parts else np.zeros((0, FP_BYTES), np.uint8)
    from healthfm_desktop.core.chemistry.fingerprints import popcounts

    pops = popcounts(morgan)
    order = np.argsort(pops, kind="stable").astype(np.int64)
    np.save(out / "popcount.npy", pops[order].astype(np.int32))
    np.save(out / "order.npy", order)
    np.save(out / "morgan_planes.npy", _bit_planes(morgan[order]))
    lines = [f"{i}\t{s}\n".encode("utf-8") for i, s in zip(ids, smiles)]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(line) for line in lines], out=offsets[1:])
    np.save(out / "offsets.npy", offsets)
    with open(out / "records.tsv", "wb") as handle:
        handle.writelines(lines)
    meta = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "size": n, "sources": [str(f) for f in files],
            "fingerprint": "Morgan radius 2, 2048 bits (RDKit GetMorganGenerator)",
            "pattern_fingerprint": f"RDKit PatternFingerprint, {PATTERN_BITS} bits", "substructure": False}
    if parts is not None:
        meta.update(parts.write(out, order), substructure=True)
    atomic_write_text(out / "index.json", json.dumps(meta, indent=2) + "\n")
    return LibraryIndex.open(out)


PATTERN_FILE = "pattern_planes.zlib"  # the pattern planes, zlib-compressed (a third of their size)


def _write_compressed_planes(path: Path, planes: np.ndarray) -> None:
    """Bit planes as raw uint64 rows, zlib level 1 (the pattern planes shrink to about a third;
    their shape follows from the index size), written a plane at a time."""
    packer = zlib.compressobj(1)
    with open(path, "wb") as handle:
        for plane in planes:
            handle.write(packer.compress(np.ascontiguousarray(plane).tobytes()))
        handle.write(packer.flush())


def _read_compressed_planes(path: Path, rows: int, words: int) -> np.ndarray:
    """The planes ``_write_compressed_planes`` wrote, decompressed into one array."""
    planes = np.empty((rows, words), dtype=np.uint64)
    target = memoryview(planes.reshape(-1).view(np.uint8))
    unpacker = zlib.decompressobj()
    filled = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            data = unpacker.decompress(block)
            if filled + len(data) > len(target):
                raise ValueError("longer than the index's planes")
            target[filled:filled + len(data)] = data
            filled += len(data)
    data = unpacker.flush()
    target[filled:filled + len(data)] = data
    filled += len(data)
    if filled != len(target):
        raise ValueError(f"{filled} bytes, the index's planes are {len(target)}")
    return planes


def _write_blobs(path: Path, offsets_path: Path, parts: list[bytes], length_parts: list[np.ndarray], n: int) -> None:
    offsets = np.zeros(n + 1, dtype=np.int64)
    if length_parts:
        np.cumsum(np.concatenate(length_parts), out=offsets[1:])
    np.save(offsets_path, offsets)
    with open(path, "wb") as handle:
        handle.writelines(parts)


def _write_lines(path: Path, offsets_path: Path, texts: list[str]) -> None:
    encoded = [f"{t}\n".encode("ascii") for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    np.save(offsets_path, offsets)
    with open(path, "wb") as handle:
        handle.writelines(encoded)


_RINGS = re.compile(r"[Rrx@^]")
_HYBRIDISATION = re.compile(r"\^")
_TRUSTED_PREP = Chem.SanitizeFlags.SANITIZE_PROPERTIES
_TRUSTED_PARSE = Chem.SmilesParserParams()
_TRUSTED_PARSE.sanitize = False
_TRUSTED_PARSE.removeHs = False
_TRUSTED_PREP_RINGS = (_TRUSTED_PREP | Chem.SanitizeFlags.SANITIZE_SYMMRINGS | Chem.SanitizeFlags.SANITIZE_SETCONJUGATION
                       | Chem.SanitizeFlags.SANITIZE_SETHYBRIDIZATION)
NO_RINGS, RINGS, RINGS_AND_HYBRIDISATION = 0, 1, 2  # what a query needs the molecules to carry


# query primitives a ring system cut out of its molecule answers as the molecule does (RDKit's
# DescribeQuery names); anything else (H counts, degrees, valence, neighbours, hybridisation,
# recursion, chirality-related queries) keeps a query off the ring-system path
_SYSTEM_ATOM_QUERIES = {"AtomAnd", "AtomOr", "AtomXor", "AtomNot", "AtomType", "AtomAtomicNum", "AtomIsAromatic",
                        "AtomIsAliphatic", "AtomFormalCharge", "AtomNegativeFormalCharge", "AtomIsotope", "AtomNull",
                        "AtomInRing", "AtomInNRings", "AtomMinRingSize", "AtomRingBondCount", "AtomHasRingBond"}
_SYSTEM_BOND_QUERIES = {"BondAnd", "BondOr", "BondXor", "BondNot", "BondOrder", "SingleOrAromaticBond",
                        "SingleOrDoubleBond", "DoubleOrAromaticBond", "SingleOrDoubleOrAromaticBond", "BondNull",
                        "BondInRing"}


_ELEMENT_QUERIES = {"AtomAnd", "AtomOr", "AtomXor", "AtomNot", "AtomType", "AtomAtomicNum", "AtomIsAromatic",
                    "AtomIsAliphatic", "AtomNull"}
_LOCAL_BOND_QUERIES = _SYSTEM_BOND_QUERIES


def _element_only(atom: Chem.Atom, query: Chem.Mol) -> bool:
    """Whether a query atom reads only the element and aromaticity of the atom it is matched
    with (a SMILES atom: RDKit compares a charge, isotope or radical only when the query atom
    has one, and ring counts only when it is in a ring)."""
    if atom.HasQuery():
        return properties.query_names(atom.DescribeQuery()) <= _ELEMENT_QUERIES
    return (not atom.GetFormalCharge() and not atom.GetIsotope() and not atom.GetNumRadicalElectrons()
            and not query.GetRingInfo().NumAtomRings(atom.GetIdx()))


def _query_atom_key(atom: Chem.Atom) -> tuple:
    """What tells two query atoms apart for the atom-type screen (equal keys: the same matches;
    a SMILES atom's match reads its ring count in the query too)."""
    return (atom.DescribeQuery() if atom.HasQuery() else None, atom.GetSmarts(), atom.GetAtomicNum(),
            atom.GetFormalCharge(), atom.GetIsAromatic(), atom.GetIsotope(), atom.GetNumExplicitHs(),
            atom.GetNumRadicalElectrons(), atom.GetOwningMol().GetRingInfo().NumAtomRings(atom.GetIdx()))


def _query_bond_key(bond: Chem.Bond) -> tuple:
    return (bond.DescribeQuery() if bond.HasQuery() else None, bond.GetSmarts(), int(bond.GetBondType()),
            bond.GetIsAromatic())


def _bond_local(bond: Chem.Bond) -> bool:
    """Whether a query bond reads only order, aromaticity and ring membership (a SMILES bond:
    its order)."""
    return not bond.HasQuery() or properties.query_names(bond.DescribeQuery()) <= _LOCAL_BOND_QUERIES


def _assignable(options: list[list[int]], used: set[int]) -> bool:
    """Whether each arm can take a distinct neighbour among its options (arms are few)."""
    if not options:
        return True
    for k in options[0]:
        if k not in used:
            used.add(k)
            if _assignable(options[1:], used):
                return True
            used.discard(k)
    return False


def _ring_system_query(query: Chem.Mol) -> bool:
    """Whether a connected query with bonds can only match inside one ring system and reads only
    what a ring system cut out of its molecule keeps (see LibraryIndex._ring_system_screen)."""
    if len(Chem.GetMolFrags(query)) != 1:
        return False
    ring_info = query.GetRingInfo()  # FastFindRings was run on the query: ring membership
    for atom in query.GetAtoms():
        if atom.HasQuery() and not properties.query_names(atom.DescribeQuery()) <= _SYSTEM_ATOM_QUERIES:
            return False
    for bond in query.GetBonds():
        description = bond.DescribeQuery() if bond.HasQuery() else ""
        if description and not properties.query_names(description) <= _SYSTEM_BOND_QUERIES:
            return False
        lines = description.splitlines()
        asks_ring_bond = bool(lines) and (lines[0].strip() == "BondInRing 1 = val" or (
            lines[0].strip() == "BondAnd" and any(line == "  BondInRing 1 = val" for line in lines[1:])))
        if not (ring_info.NumBondRings(bond.GetIdx()) or asks_ring_bond):
            return False
    return True


def query_needs_rings(query: Chem.Mol) -> bool:
    """Whether a query may ask about rings (R, r, x, ring bonds @) or hybridisation (^):
    conservatively, any of those characters in its SMARTS (element symbols such as Br count
    too, which only costs time)."""
    return _ring_mode(Chem.MolToSmarts(query)) != NO_RINGS


def _ring_mode(smarts: str) -> int:
    if not _RINGS.search(smarts):
        return NO_RINGS
    return RINGS_AND_HYBRIDISATION if _HYBRIDISATION.search(smarts) else RINGS


def trusted_mol(smiles: bytes | str, rings: bool, ring_blob: bytes | None = None,
                hybridisation: bool = True) -> Chem.Mol | None:
    """A molecule from RDKit's canonical SMILES of a sanitised molecule, with the properties
    substructure matching reads: valences and H counts; if ``rings``, the SSSR rings (from
    ``ring_blob``, the index's stored rings, else perceived) and, if ``hybridisation``,
    conjugation and hybridisation."""
    mol = Chem.MolFromSmiles(smiles if isinstance(smiles, str) else smiles.decode("ascii"), _TRUSTED_PARSE)
    if mol is None:
        return None
    try:
        if rings and (ring_blob is None or ring_blob == _PERCEIVE_RINGS):
            Chem.SanitizeMol(mol, _TRUSTED_PREP_RINGS)
            return mol
        mol.UpdatePropertyCache()  # what SANITIZE_PROPERTIES does, without SanitizeMol's overhead
        if rings:
            _add_rings(mol, ring_blob)
            if hybridisation:
                Chem.SetConjugation(mol)
                Chem.SetHybridization(mol)
    except Exception:  # noqa: BLE001 - the caller falls back to a full parse
        return None
    return mol


def _add_rings(mol: Chem.Mol, blob: bytes) -> None:
    """Fill the ring information of a molecule rebuilt without sanitisation from its stored
    ring blob (see ``_encode_rings``): ~1 µs a ring instead of an SSSR perception (~30 µs)."""
    if not blob:
        Chem.FastFindRings(mol)  # acyclic: marks the ring information as found, with no ring
        return
    values = array.array("H", blob).tolist()
    ring_info = mol.GetRingInfo()
    p = 0
    while p < len(values):
        size = values[p]
        ring_info.AddRing(values[p + 1 : p + 1 + size], values[p + 1 + size : p + 1 + 2 * size])
        p += 1 + 2 * size


class _RingSystems:
    """A library's distinct ring systems as stored (SMILES, SSSR rings) and what each molecule
    holds, read once, with what bounds which systems can hold a query: each system's atom and
    bond counts (from its rings, which hold every atom and bond of a system) and, worked out
    when a query first needs them, its atoms by type (element, aromaticity, charge, isotope,
    radicals, H, degree, ring sizes and count: everything a query atom that the ring-system
    screen takes can read), one standing atom per type. A query is matched only against the
    systems with at least its atoms and bonds and, for each repeated query atom, at least as
    many atoms it matches as the query has of it (a match maps atoms one to one)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.texts = (folder / "ring_systems.smi").read_bytes().decode("ascii").split("\n")
        self.blobs = _map_file(folder / "ring_system_rings.bin")
        self.blob_offsets = np.load(folder / "ring_system_ring_offsets.npy").tolist()
        count = max(len(np.load(folder / "ring_system_offsets.npy")) - 1, 0)
        self.atoms, self.bonds = np.zeros(count, dtype=np.int32), np.zeros(count, dtype=np.int32)
        for k in range(count):
            values = array.array("H", self.blobs[self.blob_offsets[k]:self.blob_offsets[k + 1]]).tolist()
            members, pairs, p = set(), set(), 0
            while p < len(values):
                ring = values[p + 1 : p + 1 + values[p]]
                members.update(ring)
                pairs.update((min(x, y), max(x, y)) for x, y in zip(ring, ring[1:] + ring[:1]))
                p += 1 + values[p]
            self.atoms[k], self.bonds[k] = len(members), len(pairs)
        self.broken = None  # a system that did not rebuild (not expected): then no screen
        self._lock = threading.Lock()  # searches run on GUI worker threads: the types are worked out by one
        self._types = None  # (standing atoms, each system's types and counts concatenated, each one's start)
        self._fragments: dict[int, Chem.Mol] = {}  # the last systems matched, rebuilt (at most _FRAGMENTS_KEPT)
        self.flat = np.asarray(np.load(folder / "molecule_systems.npy", mmap_mode="r"))
        offsets = np.load(folder / "molecule_system_offsets.npy")
        self.per_row, self.row_starts = np.diff(offsets), offsets[:-1]

    def fragment(self, k: int) -> Chem.Mol | None:
        """System k as a molecule with its stored rings (kept for the next queries); None if it
        does not rebuild."""
        with self._lock:
            return self._fragment(k)

    def _fragment(self, k: int) -> Chem.Mol | None:
        fragment = self._fragments.get(k)
        if fragment is None:
            fragment = _fragment_mol(self.texts[k])
            if fragment is None or not _add_fragment_rings(fragment, self.blobs[self.blob_offsets[k]:self.blob_offsets[k + 1]]):
                self.broken = k
                return None
            if len(self._fragments) >= _FRAGMENTS_KEPT:
                self._fragments.pop(next(iter(self._fragments)))
            self._fragments[k] = fragment
        return fragment

    def _atom_types(self):
        """Every system's atoms by type, worked out at the first query that needs them."""
        if self._types is None:
            type_ids: dict[tuple, int] = {}
            standing, flat_types, flat_counts, starts = [], [], [], []
            for k in range(len(self.atoms)):
                fragment = _fragment_mol(self.texts[k])
                if fragment is None or not _add_fragment_rings(fragment, self.blobs[self.blob_offsets[k]:self.blob_offsets[k + 1]]):
                    self.broken = k
                    return None
                ring_info = fragment.GetRingInfo()
                held: dict[int, int] = {}
                for atom in fragment.GetAtoms():
                    # every bond of a system lies on one of its rings: the degree is the ring-bond count
                    key = (atom.GetAtomicNum(), atom.GetIsAromatic(), atom.GetFormalCharge(), atom.GetIsotope(),
                           atom.GetNumRadicalElectrons(), atom.GetNumExplicitHs(), atom.GetNoImplicit(),
                           atom.GetDegree(), tuple(sorted(ring_info.AtomRingSizes(atom.GetIdx()))))
                    t = type_ids.get(key)
                    if t is None:
                        t = type_ids[key] = len(standing)
                        standing.append((atom, fragment))  # the atom lives as long as its fragment
                    held[t] = held.get(t, 0) + 1
                starts.append(len(flat_types))
                flat_types += held
                flat_counts += held.values()
            self._types = ([atom for atom, _ in standing], standing, np.array(flat_types, dtype=np.int64),
                           np.array(flat_counts, dtype=np.int64), np.array(starts, dtype=np.int64))
        return self._types

    def big_enough(self, query: Chem.Mol) -> np.ndarray | None:
        """The systems that may hold ``query`` by the counts above (None if one does not rebuild)."""
        with self._lock:
            return self._big_enough(query)

    def _big_enough(self, query: Chem.Mol) -> np.ndarray | None:
        ok = (self.atoms >= query.GetNumAtoms()) & (self.bonds >= query.GetNumBonds())
        groups: dict[tuple, list] = {}
        for atom in query.GetAtoms():
            key = (atom.DescribeQuery() if atom.HasQuery() else None, atom.GetSmarts(), atom.GetAtomicNum(),
                   atom.GetFormalCharge(), atom.GetIsAromatic(), atom.GetIsotope())
            groups.setdefault(key, [atom, 0])[1] += 1
        repeated = [(atom, needed) for atom, needed in groups.values() if needed > 1]
        if repeated and ok.any():
            types = self._atom_types()
            if types is None:
                return None
            standing, _, flat_types, flat_counts, starts = types
            for atom, needed in repeated:
                matches = np.fromiter((atom.Match(other) for other in standing), dtype=bool, count=len(standing))
                ok &= np.add.reduceat(matches[flat_types] * flat_counts, starts) >= needed
        return np.flatnonzero(ok)


_FRAGMENTS_KEPT = 4096  # rebuilt ring systems kept for the next queries (a few KB each)


@dataclass
class _IndexFiles:
    """The bytes (or mmaps) substructure matching reads, with their row offsets."""
    trusted: object
    trusted_offsets: np.ndarray
    records: object
    offsets: np.ndarray
    rings: object
    ring_offsets: np.ndarray
    full_parse: frozenset  # rows matched on a full MolFromSmiles of the library SMILES


def _map_file(path: Path):
    """A read-only mmap of a file (b"" for an empty one, which mmap refuses)."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return b""
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)


def _lines(data, offsets: np.ndarray, rows: list[int]) -> list[str]:
    """The text lines (without their newline) of ``rows`` (ascending) in ``data``: rows close
    together are decoded as one block and split, ~0.3 µs a line instead of ~2 µs for a slice
    and decode each."""
    if not rows:
        return []
    first, last = rows[0], rows[-1]
    if last - first + 1 <= 8 * len(rows):
        block = data[int(offsets[first]):int(offsets[last + 1])].decode("utf-8").split("\n")
        return [block[row - first] for row in rows]
    starts = offsets[rows].tolist()
    ends = offsets[np.asarray(rows) + 1].tolist()
    return [data[start:end - 1].decode("utf-8") for start, end in zip(starts, ends)]


def _match_rows(files: _IndexFiles, rows: np.ndarray, query: Chem.Mol, mode: int, top: int | None = None,
                progress: Callable[[float], None] | None = None) -> list[int]:
    """The library rows among ``rows`` (ascending) whose molecule contains ``query``, in order.
    The loop is written out (no helper call per molecule): at ~15 µs a molecule, each Python
    call or slice is a visible share."""
    hits: list[int] = []
    row_list = rows.tolist()
    texts = _lines(files.trusted, files.trusted_offsets, row_list)
    rings = mode != NO_RINGS
    hybridisation = mode == RINGS_AND_HYBRIDISATION
    if rings:
        ring_starts = files.ring_offsets[rows].tolist()
        ring_ends = files.ring_offsets[rows + 1].tolist()
        ring_data = files.rings
    parse, params = Chem.MolFromSmiles, _TRUSTED_PARSE
    full_parse = files.full_parse
    for i, (row, text) in enumerate(zip(row_list, texts)):
        if full_parse and row in full_parse:
            mol = None
        elif rings:
            mol = trusted_mol(text, True, ring_data[ring_starts[i]:ring_ends[i]], hybridisation)
        else:
            mol = parse(text, params)
            try:
                mol.UpdatePropertyCache()  # what SANITIZE_PROPERTIES does, without SanitizeMol's overhead
            except Exception:  # noqa: BLE001 - not expected (a sanitised molecule's SMILES): full parse below
                mol = None
        if mol is None:  # radicals, or (not expected) a trusted parse that failed: RDKit's full parse
            line = files.records[int(files.offsets[row]):int(files.offsets[row + 1])].decode("utf-8").rstrip("\n")
            mol = Chem.MolFromSmiles(line.partition("\t")[2])
        if mol is not None and mol.HasSubstructMatch(query):
            hits.append(row)
            if top and len(hits) >= top:
                break
        if progress and i % 5000 == 0:
            progress(i / max(len(rows), 1))
    return hits


def _threads() -> int:
    return os.cpu_count() or 1


def _match_candidates(files: _IndexFiles, rows: np.ndarray, query: Chem.Mol, mode: int, top: int | None = None,
                      progress: Callable[[float], None] | None = None) -> list[int]:
    """``_match_rows``, on RDKit's threads when the query needs no rings and there are enough
    rows to share (the same hits)."""
    if mode == NO_RINGS and len(rows) >= _THREAD_MIN_ROWS and _threads() > 1:
        return _match_threaded(files, rows, query, top, progress)
    return _match_rows(files, rows, query, mode, top, progress)


_THREAD_MIN_ROWS = 32  # below this, starting RDKit's threads costs more than it shares
_THREAD_CHUNK = 4096  # rows per GetMatches call: progress, cancel and a top between calls


def _match_threaded(files: _IndexFiles, rows: np.ndarray, query: Chem.Mol, top: int | None = None,
                    progress: Callable[[float], None] | None = None) -> list[int]:
    """The rows among ``rows`` (ascending) whose molecule contains a query that reads no rings
    (``NO_RINGS``), matched by RDKit's SubstructLibrary on every core. Its
    CachedTrustedSmilesMolHolder rebuilds each molecule from the trusted SMILES exactly as
    ``_match_rows`` does (a parse without sanitisation, then the property cache), and
    SubstructMatchParameters' defaults are HasSubstructMatch's, so the hits are the same;
    the molecules trusted SMILES do not rebuild (radicals) go through ``_match_rows``."""
    from rdkit.Chem import rdSubstructLibrary

    full_parse = files.full_parse
    if full_parse:
        special = np.isin(rows, np.fromiter(full_parse, dtype=np.int64, count=len(full_parse)))
        if special.any():
            apart = _match_rows(files, rows[special], query, NO_RINGS)
            rest = _match_threaded(dataclasses.replace(files, full_parse=frozenset()), rows[~special], query, None,
                                   progress)
            merged = sorted(apart + rest)
            return merged[:top] if top else merged
    holder = rdSubstructLibrary.CachedTrustedSmilesMolHolder()
    for text in _lines(files.trusted, files.trusted_offsets, rows.tolist()):
        holder.AddSmiles(text)
    library = rdSubstructLibrary.SubstructLibrary(holder)
    params = Chem.SubstructMatchParameters()
    hits: list[int] = []
    for start in range(0, len(rows), _THREAD_CHUNK):
        end = min(start + _THREAD_CHUNK, len(rows))
        found = sorted(library.GetMatches(query, start, end, params, -1, end - start))
        hits.extend(rows[found].tolist())
        if top and len(hits) >= top:
            return hits[:top]
        if progress:
            progress(end / len(rows))
    return hits


# ---- substructure matching on worker processes ----------------------------------------------
_pool: ProcessPoolExecutor | None = None
_pool_workers = 0
_pool_lock = threading.Lock()  # searches run on GUI worker threads: one pool, started once
_worker_files: dict = {}  # in a worker: index folder -> (stamp, _IndexFiles)


def _worker_index_files(folder: str, data: str) -> _IndexFiles:
    """The index files a worker matches from (the records in ``folder``, the substructure data
    in ``data``, usually the same), memory-mapped once per worker and index version (the stamp
    notices an index rebuilt in the same folder)."""
    trusted_path = os.path.join(data, "trusted.smi")
    stat = os.stat(trusted_path)
    stamp = (stat.st_mtime_ns, stat.st_size, os.stat(os.path.join(folder, "records.tsv")).st_mtime_ns,
             os.stat(os.path.join(data, "rings.bin")).st_mtime_ns)
    cached = _worker_files.get((folder, data))
    if cached is None or cached[0] != stamp:
        load = lambda where, name: np.load(os.path.join(where, name), mmap_mode="r")  # noqa: E731
        files = _IndexFiles(_map_file(Path(trusted_path)), load(data, "trusted_offsets.npy"),
                            _map_file(Path(folder) / "records.tsv"), load(folder, "offsets.npy"),
                            _map_file(Path(data) / "rings.bin"), load(data, "ring_offsets.npy"),
                            frozenset(np.load(os.path.join(data, "full_parse_rows.npy")).tolist()))
        cached = (stamp, files)
        _worker_files[(folder, data)] = cached
    return cached[1]


def _match_chunk(folder: str, data: str, query: Chem.Mol, mode: int, rows: np.ndarray) -> list[int]:
    return _match_rows(_worker_index_files(folder, data), rows, query, mode)


def _substructure_pool(workers: int) -> ProcessPoolExecutor | None:
    """One pool for the life of the process: the GUI's second search finds its workers warm.
    Started by core/processes.py (forkserver, else spawn; never fork from a Qt process),
    without the describe pool's initializer (it builds the alert catalogs, ~1 s a worker)."""
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is not None and _pool_workers == workers:
            return _pool
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = processes.process_pool(workers, preload=processes.CHEMISTRY_PRELOAD, purpose="substructure")
        _pool_workers = workers
        return _pool


def _worker_ready() -> bool:
    return True


def warm_substructure_workers(workers: int | None = None) -> bool:
    """Start the substructure worker processes now (e.g. when a library index is opened), so
    that the next searches with a few thousand candidates already run on every core. Returns
    whether workers run; without them searches match in-process."""
    workers = workers or os.cpu_count() or 1
    pool = _substructure_pool(workers) if workers > 1 else None
    if pool is None:
        return False
    try:
        for future in [pool.submit(_worker_ready) for _ in range(workers)]:
            future.result()
    except (BrokenProcessPool, RuntimeError, OSError) as exc:
        log.warning("substructure worker processes unavailable, matching in-process (%s)", exc)
        _drop_pool()
        return False
    return True


def shutdown_substructure_workers() -> None:
    """Stop the substructure worker processes (app quit, tests); a later search starts new ones."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _drop_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def _match_in_workers(folder: Path, data: Path, query: Chem.Mol, mode: int, rows: np.ndarray, top: int | None,
                      progress: Callable[[float], None] | None, workers: int | None = None) -> list[int] | None:
    """``_match_rows`` over ``rows`` in chunks on worker processes, merged in row order; None
    when there are no worker processes or one of them fails (the caller then matches everything
    in-process), so the hits are the same either way."""
    workers = workers or os.cpu_count() or 1
    if workers < 2:
        return None
    pool = _substructure_pool(workers)
    if pool is None:
        return None
    chunks = [rows[k:k + _PARALLEL_CHUNK] for k in range(0, len(rows), _PARALLEL_CHUNK)]
    try:
        futures = [pool.submit(_match_chunk, str(folder), str(data), query, mode, chunk) for chunk in chunks]
    except (BrokenProcessPool, RuntimeError, OSError) as exc:
        log.warning("substructure workers failed to start (%s): matching in-process", exc)
        _drop_pool()
        return None
    hits: list[int] = []
    done = 0
    try:
        for chunk, future in zip(chunks, futures):
            try:
                found = future.result()
            except (BrokenProcessPool, OSError, pickle.PicklingError) as exc:
                log.warning("substructure worker failed (%s): matching its rows in-process", exc)
                _drop_pool()
                return None
            hits.extend(found)
            done += len(chunk)
            if top and len(hits) >= top:
                return hits[:top]
            if progress:
                progress(done / len(rows))
    finally:
        for future in futures:
            future.cancel()
    return hits


def parse_query_smiles(text: str) -> Chem.Mol:
    mol, error = parse_smiles(text or "")
    if mol is None:
        raise UserFacingError(f"invalid query SMILES {text!r}: {error}")
    return mol


def substructure_query(text: str) -> Chem.Mol:
    return parse_smarts(text)
