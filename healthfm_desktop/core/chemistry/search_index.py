"""On-disk search index over a molecule library, and the searches it serves.

Similarity: 2048-bit Morgan r=2 fingerprints (RDKit's GetMorganGenerator(radius=2,
fpSize=2048)), molecules sorted by popcount so that BitBound (Swamidass & Baldi: Tanimoto
≤ min(a,b)/max(a,b)) turns a threshold into one contiguous slice. The fingerprints are stored
*bit-sliced*: for each of the 2048 bits, one packed bit-vector over the molecules. A query with
~45 bits set then reads only its 45 planes and adds them with a vertical (carry-save) counter in
uint64 words, 64 molecules per operation, which gives the intersection counts of every molecule
without a per-molecule popcount. Scores are RDKit's c / (a + b - c) in double precision.

Substructure: RDKit pattern fingerprints, bit-sliced the same way; the AND of the query's
planes is the exact screen SubstructLibrary applies, and RDKit's HasSubstructMatch decides."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem, DataStructs

from healthfm_desktop.core.chemistry.fingerprints import FP_BITS, FP_BYTES, morgan_generator
from healthfm_desktop.core.chemistry.reading import capture_rdkit_log, parse_smarts, parse_smiles, read_molecules
from healthfm_desktop.core.errors import UnreadableFileError, UserFacingError

INDEX_FORMAT = "healthfm-molecule-index"
INDEX_VERSION = 1
PATTERN_BITS = 2048
_CHUNK = 65536  # molecules per transpose step: a multiple of 64


@dataclass
class Hit:
    row: int  # 0-based position in the library as read
    id: str
    smiles: str
    score: float


def _fingerprint_chunk(smiles: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ok mask, packed Morgan bits, packed pattern bits) for SMILES already known to parse."""
    gen = morgan_generator()
    n = len(smiles)
    ok = np.zeros(n, dtype=bool)
    morgan = np.zeros((n, FP_BYTES), dtype=np.uint8)
    pattern = np.zeros((n, PATTERN_BITS // 8), dtype=np.uint8)
    for i, text in enumerate(smiles):
        with capture_rdkit_log():
            mol = Chem.MolFromSmiles(text)
        if mol is None:
            continue
        ok[i] = True
        morgan[i] = np.packbits(gen.GetFingerprintAsNumPy(mol).astype(np.uint8), bitorder="little")
        pattern[i] = _pattern_packed(mol)
    return ok, morgan, pattern


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


def _decode_counts(counter: list[np.ndarray]) -> np.ndarray:
    if not counter:
        return np.zeros(0, dtype=np.int32)
    # counts below 256 (8 levels) fit a byte: a quarter of the memory traffic of int32
    dtype = np.uint8 if len(counter) <= 8 else np.uint16
    total = np.zeros(len(counter[0]) * 64, dtype=dtype)
    for level, words in enumerate(counter):
        bits = np.unpackbits(words.view(np.uint8), bitorder="little").astype(dtype, copy=False)
        if level:
            np.left_shift(bits, level, out=bits)
        total += bits
    return total


class LibraryIndex:
    """A loaded index (memory-mapped). ``build`` writes one; ``open`` reads it."""

    def __init__(self, folder: Path, meta: dict, popcount: np.ndarray, order: np.ndarray, morgan: np.ndarray,
                 pattern: np.ndarray, offsets: np.ndarray, records: np.ndarray):
        self.folder = folder
        self.meta = meta
        self.popcount = popcount  # sorted, per position
        self.order = order  # position -> library row
        self.morgan = morgan  # (2048, words)
        self.pattern = pattern  # (2048, words)
        self.offsets = offsets  # row -> byte offset into records (row order), n+1 entries
        self.records = records  # uint8 memmap of "id\tsmiles\n" lines in library row order
        self.size = len(popcount)
        # first position of each popcount value, for BitBound slicing
        self.pop_start = np.searchsorted(popcount, np.arange(FP_BITS + 2), side="left")

    # ---- records -----------------------------------------------------------------------
    def record(self, row: int) -> tuple[str, str]:
        line = bytes(self.records[self.offsets[row] : self.offsets[row + 1]]).decode("utf-8").rstrip("\n")
        ident, _, smiles = line.partition("\t")
        return ident, smiles

    # ---- similarity --------------------------------------------------------------------
    def _scores_in(self, query_bits: np.ndarray, a: int, lo_pop: int, hi_pop: int) -> tuple[int, np.ndarray]:
        """(first position, exact Tanimoto of every molecule from there) over popcounts [lo_pop, hi_pop]."""
        p0 = int(self.pop_start[max(lo_pop, 0)])
        p1 = int(self.pop_start[min(hi_pop, FP_BITS) + 1])
        if p1 <= p0:
            return p0, np.zeros(0)
        w0, w1 = p0 // 64, (p1 + 63) // 64
        counts = _decode_counts(_vertical_count(self.morgan, query_bits, w0, w1))
        if len(counts) == 0:
            counts = np.zeros((w1 - w0) * 64, dtype=np.int32)
        counts = counts[p0 - w0 * 64 : p1 - w0 * 64]
        counts = counts.astype(np.float64)
        union = (a + self.popcount[p0:p1]) - counts
        return p0, counts / union

    def similar(self, query: Chem.Mol, threshold: float | None = None, top: int | None = None) -> list[Hit]:
        """Hits with Tanimoto ≥ threshold (default 0 when top is given, else 0.7), best first,
        at most ``top``; ties in library order."""
        fp = morgan_generator().GetFingerprint(query)
        query_bits = np.array(list(fp.GetOnBits()), dtype=np.int64)
        a = len(query_bits)
        if a == 0:
            return []
        if threshold is None:
            threshold = 0.0 if top else 0.7
        if not 0.0 <= threshold <= 1.0:
            raise UserFacingError("the similarity threshold must lie between 0 and 1")
        floor = threshold
        if top and threshold < 0.5:
            # a first pass near the query's popcount gives a k-th best score: a lower bound of the
            # final k-th score, so it both narrows BitBound and discards most molecules early
            _, scores = self._scores_in(query_bits, a, *self._bitbound(a, 0.75))
            scores = scores[scores >= threshold]
            if len(scores) >= top:
                floor = max(threshold, float(np.partition(scores, len(scores) - top)[len(scores) - top]))
        p0, scores = self._scores_in(query_bits, a, *self._bitbound(a, floor))
        keep = np.flatnonzero(scores >= floor)
        rows = self.order[p0 + keep]
        scores = scores[keep]
        if top and len(scores) > top:
            kth = np.partition(scores, len(scores) - top)[len(scores) - top]
            sel = scores >= kth
            rows, scores = rows[sel], scores[sel]
        ranking = np.lexsort((rows, -scores))
        if top:
            ranking = ranking[:top]
        return [Hit(int(rows[i]), *self.record(int(rows[i])), float(scores[i])) for i in ranking]

    @staticmethod
    def _bitbound(a: int, threshold: float) -> tuple[int, int]:
        if threshold <= 0:
            return 0, FP_BITS
        # widened by one on each side: the exact filter on scores decides
        return int(np.floor(a * threshold)) - 1, int(np.ceil(a / threshold)) + 1

    # ---- substructure ------------------------------------------------------------------
    def substructure(self, query: Chem.Mol, top: int | None = None,
                     progress: Callable[[float], None] | None = None) -> list[Hit]:
        query.UpdatePropertyCache(strict=False)
        Chem.FastFindRings(query)
        qfp = Chem.PatternFingerprint(query, fpSize=PATTERN_BITS)
        bits = np.array(list(qfp.GetOnBits()), dtype=np.int64)
        words = self.pattern.shape[1]
        mask = np.full(words, np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
        for bit in bits:
            np.bitwise_and(mask, self.pattern[bit], out=mask)
        positions = np.flatnonzero(np.unpackbits(mask.view(np.uint8), bitorder="little")[: self.size])
        rows = np.sort(self.order[positions])
        hits = []
        params = Chem.SubstructMatchParameters()
        for i, row in enumerate(rows):
            ident, smiles = self.record(int(row))
            mol = Chem.MolFromSmiles(smiles)
            if mol is not None and mol.HasSubstructMatch(query, params):
                hits.append(Hit(int(row), ident, smiles, 1.0))
                if top and len(hits) >= top:
                    break
            if progress and i % 5000 == 0:
                progress(i / max(len(rows), 1))
        return hits

    # ---- files -------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | Path) -> "LibraryIndex":
        folder = Path(folder)
        meta_path = folder / "index.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UnreadableFileError(f"not a molecule search index (no readable index.json): {exc}") from exc
        if meta.get("format") != INDEX_FORMAT or meta.get("version") != INDEX_VERSION:
            raise UnreadableFileError("not a molecule search index of this version; rebuild it with `molecules index`")
        try:
            load = lambda name: np.load(folder / name, mmap_mode="r", allow_pickle=False)  # noqa: E731
            return cls(folder, meta, np.asarray(load("popcount.npy")), np.asarray(load("order.npy")),
                       load("morgan_planes.npy"), load("pattern_planes.npy"), np.asarray(load("offsets.npy")),
                       np.memmap(folder / "records.tsv", dtype=np.uint8, mode="r") if meta["size"] else np.zeros(0, np.uint8))
        except (OSError, ValueError, KeyError) as exc:
            raise UnreadableFileError(f"damaged molecule search index: {exc}") from exc


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


def _library_records(files: list[Path], on_bad: Callable[[Path, str], None]) -> Iterator[tuple[str, str]]:
    row = 0
    for path in files:
        try:
            for record in read_molecules(path):
                row += 1
                if record.mol is None:
                    on_bad(path, f"record {record.index} ({record.id}): {record.error}")
                    continue
                # keep the library's SMILES; SDF/MOL records get RDKit's canonical SMILES
                smiles = record.source if "\n" not in record.source else Chem.MolToSmiles(record.mol)
                ident = record.id if record.id != str(record.index) or len(files) == 1 else f"{path.name}:{record.index}"
                yield ident.replace("\t", " ").replace("\n", " "), smiles
        except UserFacingError as exc:
            on_bad(path, str(exc))


def build_index(paths: Iterable[str | Path], out: str | Path, workers: int | None = None,
                on_bad: Callable[[Path, str], None] = lambda p, r: None,
                progress: Callable[[int], None] | None = None, chunk: int = 20000) -> LibraryIndex:
    """Read libraries, fingerprint them on ``workers`` processes and write the index folder."""
    out = Path(out)
    files = library_files(paths)
    if not files:
        raise UnreadableFileError("no library files given")
    out.mkdir(parents=True, exist_ok=True)
    ids: list[str] = []
    smiles: list[str] = []
    morgan_parts, pattern_parts = [], []
    workers = workers or os.cpu_count() or 1

    def batches():
        batch = []
        for ident, smi in _library_records(files, on_bad):
            batch.append((ident, smi))
            if len(batch) >= chunk:
                yield batch
                batch = []
        if batch:
            yield batch

    def collect(batch, result):
        ok, morgan, pattern = result
        for (ident, smi), good in zip(batch, ok):
            if good:
                ids.append(ident)
                smiles.append(smi)
        morgan_parts.append(morgan[ok])
        pattern_parts.append(pattern[ok])
        if progress:
            progress(len(ids))

    if workers <= 1:
        for batch in batches():
            collect(batch, _fingerprint_chunk([s for _, s in batch]))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pending = []
            for batch in batches():
                pending.append((batch, pool.submit(_fingerprint_chunk, [s for _, s in batch])))
                while len(pending) > workers * 2:
                    b, f = pending.pop(0)
                    collect(b, f.result())
            for b, f in pending:
                collect(b, f.result())
    n = len(ids)
    morgan = np.concatenate(morgan_parts) if morgan_parts else np.zeros((0, FP_BYTES), np.uint8)
    pattern = np.concatenate(pattern_parts) if pattern_parts else np.zeros((0, PATTERN_BITS // 8), np.uint8)
    from healthfm_desktop.core.chemistry.fingerprints import popcounts

    pops = popcounts(morgan)
    order = np.argsort(pops, kind="stable").astype(np.int64)
    np.save(out / "popcount.npy", pops[order].astype(np.int32))
    np.save(out / "order.npy", order)
    np.save(out / "morgan_planes.npy", _bit_planes(morgan[order]))
    np.save(out / "pattern_planes.npy", _bit_planes(pattern[order]))
    lines = [f"{i}\t{s}\n".encode("utf-8") for i, s in zip(ids, smiles)]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(line) for line in lines], out=offsets[1:])
    np.save(out / "offsets.npy", offsets)
    with open(out / "records.tsv", "wb") as handle:
        handle.writelines(lines)
    meta = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "size": n, "sources": [str(f) for f in files],
            "fingerprint": "Morgan radius 2, 2048 bits (RDKit GetMorganGenerator)",
            "pattern_fingerprint": f"RDKit PatternFingerprint, {PATTERN_BITS} bits"}
    (out / "index.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return LibraryIndex.open(out)


def parse_query_smiles(text: str) -> Chem.Mol:
    mol, error = parse_smiles(text or "")
    if mol is None:
        raise UserFacingError(f"invalid query SMILES {text!r}: {error}")
    return mol


def substructure_query(text: str) -> Chem.Mol:
    return parse_smarts(text)
