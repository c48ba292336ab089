"""Benchmark the molecule search and describe against RDKit, in the same process.

    python benchmarks/bench_molecules.py LIBRARY [LIBRARY...] [--index DIR] [--queries Q]
        [--describe N] [--substructure-rows N] [--substructure-in-process] [--skip-similarity]

LIBRARY: SMILES/CSV files (e.g. the MOSES parts; never committed). The index is built in DIR
(or reused when DIR already holds one). Prints `<what>: <ratio>x <baseline> (<ours> vs <baseline>)`.
Results are checked to be identical to RDKit's before a ratio is printed.

Baselines (what a user would write without this program):
- similarity: RDKit ``BulkTanimotoSimilarity`` over a list of ExplicitBitVects, then a sort.
  The bit vectors are made from the index's packed bits (making them from SMILES costs ~5 min
  for the full library); a random sample of them is first checked equal to RDKit's
  ``GetMorganGenerator(radius=2, fpSize=2048).GetFingerprint`` of the SMILES.
- substructure: ``Chem.MolFromSmiles`` of every library SMILES, then ``HasSubstructMatch``.
  The substructure worker processes are started first (``warm_substructure_workers``, as the
  app does when it opens an index; its cost is printed), so is the index's one-time
  preparation (its atom types: ``prepare_substructure``), and CPU time (this process plus the
  workers, from /proc) is printed beside wall time: on a shared machine the wall ratio
  depends on what else runs, the CPU ratio much less. Each query is timed ``--repeat`` times,
  baseline and ours alternating, and the fastest of each is compared (the least disturbed by
  other work on the machine); the slowest of ours is printed too.
  Also printed, for full disclosure: the ratio against a loop over molecules parsed beforehand
  (a user holding every molecule in memory; 1.94 M RDKit molecules would need ~10 GB).
- describe: per molecule, MolFromSmiles and RDKit's own MolWt, MolLogP, TPSA, NumHDonors,
  NumHAcceptors, NumRotatableBonds, QED.qed and one FilterCatalog (PAINS A/B/C, Brenk, NIH)
  GetMatches, on one process, timed on the first 2,000 molecules and extrapolated."""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rdkit import Chem, DataStructs

from healthfm_desktop.core.chemistry.fingerprints import morgan_generator
from healthfm_desktop.core.chemistry import search_index
from healthfm_desktop.core.chemistry.search_index import LibraryIndex, build_index, is_index

SMARTS = {
    "aromatic nitro": "c[N+](=O)[O-]",
    "sulfonamide": "S(=O)(=O)N",
    "indole": "c1ccc2[nH]ccc2c1",
    "carboxylic acid": "C(=O)[OH]",
    "piperazine": "N1CCNCC1",
    # unselective: most library molecules match, so the fingerprint screen removes few
    "benzene (unselective)": "c1ccccc1",
    "any nitrogen (unselective)": "[#7]",
    "amide (unselective)": "C(=O)N",
    "ring atom in 5-ring (unselective, ring perception)": "[r5]",
    # more ring queries: ring count (one atom, like [r5] decided by the atom types), a ring
    # closure, and ring bonds (two atoms: every ring-bearing molecule is matched with its rings)
    "atom in two rings (ring count)": "[R2]",
    "cyclopropane (ring closure)": "C1CC1",
    "ring bond (unselective, ring perception)": "*@*",
    # what the index cannot decide from atom types or ring systems (a chain, an atom and a
    # ring, an H count): matched molecule by molecule, ~15 µs a candidate
    "N-alkyl amide (unselective, matched)": "C(=O)NC",
    "alkyl benzene (unselective, matched)": "c1ccccc1C",
    "ring CH2 next to ring N (ring perception, matched)": "[CH2;R]@[#7;R]",
}


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("libraries", nargs="+")
    parser.add_argument("--index", type=Path)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--describe", type=int, default=0, metavar="N",
                        help="also time describing the first N library rows (2 processes) against plain RDKit calls")
    parser.add_argument("--substructure-rows", type=int, default=50000,
                        help="rows of the library for the substructure comparison (the baseline parses every SMILES)")
    parser.add_argument("--skip-similarity", action="store_true")
    parser.add_argument("--fingerprints-only", type=Path, metavar="DIR",
                        help="for the similarity part, build (or reuse) in DIR only what similarity search reads "
                             "(Morgan bit planes, popcounts, records): a third of a full build's work")
    parser.add_argument("--skip-substructure", action="store_true")
    parser.add_argument("--substructure-in-process", action="store_true",
                        help="match substructure candidates in this process only (to compare with the worker processes)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="substructure: time each query this many times, baseline and ours alternating (fastest kept)")
    parser.add_argument("--substructure-only", nargs="+", metavar="WORD",
                        help="substructure: only the queries whose name holds one of these words (e.g. for the whole library)")
    parser.add_argument("--no-premade-loop", action="store_true",
                        help="substructure: skip the disclosure loop over molecules parsed beforehand (the whole "
                             "library would need ~10 GB for them)")
    args = parser.parse_args(argv)
    print(f"start: {_load()} on {os.cpu_count()} cores")
    if args.describe:
        bench_describe(args.libraries, args.describe)
    if args.skip_similarity and args.skip_substructure:
        return 0
    if args.fingerprints_only:
        status = bench_similarity(fingerprint_index(args.libraries, args.fingerprints_only), args.queries)
        if not args.skip_substructure:
            status |= bench_substructure(build_index(args.libraries[:1], Path(tempfile.mkdtemp(prefix="bench-sub-"))),
                                         args.substructure_rows)
        print(f"end: {_load()}")
        return status
    folder = args.index or Path(tempfile.mkdtemp(prefix="bench-index-"))
    if is_index(folder):
        index = LibraryIndex.open(folder)
    else:
        start = time.perf_counter()
        index = build_index(args.libraries, folder)
        print(f"index build: {index.size} molecules in {time.perf_counter() - start:.0f} s on {os.cpu_count()} processes")
    size = sum(f.stat().st_size for f in Path(folder).iterdir())
    print(f"index: {index.size} molecules, {size / 1e6:.0f} MB on disk")
    status = 0
    if not args.skip_similarity:
        status |= bench_similarity(index, args.queries)
    if not args.skip_substructure:
        status |= bench_substructure(index, args.substructure_rows, args.substructure_in_process, args.repeat,
                                     args.substructure_only, not args.no_premade_loop)
    print(f"end: {_load()}")
    return status


def _morgan_chunk(smiles: list[str]) -> np.ndarray:
    gen = morgan_generator()
    out = np.zeros((len(smiles), 256), dtype=np.uint8)
    for i, text in enumerate(smiles):
        out[i] = np.packbits(gen.GetFingerprintAsNumPy(Chem.MolFromSmiles(text)).astype(np.uint8), bitorder="little")
    return out


def fingerprint_index(paths: list[str], folder: Path) -> LibraryIndex:
    """A LibraryIndex holding only what ``similar`` reads, built with the index's own code for
    the bit planes; the library SMILES are all valid (MOSES)."""
    from concurrent.futures import ProcessPoolExecutor

    from healthfm_desktop.core.chemistry.fingerprints import popcounts
    from healthfm_desktop.core.chemistry.search_index import _bit_planes

    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "morgan_planes.npy").exists():
        start = time.perf_counter()
        rows = _library_smiles(paths, 10**9)
        chunks = [[s for _, s in rows[k : k + 20000]] for k in range(0, len(rows), 20000)]
        with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
            packed = np.concatenate(list(pool.map(_morgan_chunk, chunks)))
        pops = popcounts(packed)
        order = np.argsort(pops, kind="stable").astype(np.int64)
        np.save(folder / "popcount.npy", pops[order].astype(np.int32))
        np.save(folder / "order.npy", order)
        np.save(folder / "morgan_planes.npy", _bit_planes(packed[order]))
        lines = [f"{i}\t{s}\n".encode() for i, s in rows]
        offsets = np.zeros(len(lines) + 1, dtype=np.int64)
        np.cumsum([len(line) for line in lines], out=offsets[1:])
        np.save(folder / "offsets.npy", offsets)
        (folder / "records.tsv").write_bytes(b"".join(lines))
        print(f"fingerprint-only index: {len(rows)} molecules in {time.perf_counter() - start:.0f} s")
    load = lambda name: np.load(folder / name, mmap_mode="r")  # noqa: E731
    index = LibraryIndex(folder, {}, np.asarray(load("popcount.npy")), np.asarray(load("order.npy")),
                         load("morgan_planes.npy"), None, np.asarray(load("offsets.npy")),
                         np.memmap(folder / "records.tsv", dtype=np.uint8, mode="r"), None, None)
    size = sum(f.stat().st_size for f in folder.iterdir())
    print(f"similarity index: {index.size} molecules, {size / 1e6:.0f} MB on disk (Morgan planes + records)")
    return index


def _bitvects_from_index(index: LibraryIndex) -> list:
    """ExplicitBitVects in library row order, from the index's bit planes."""
    n = index.size
    fps = [None] * n
    step = 65536
    for start in range(0, n, step):
        stop = min(start + step, n)
        w0, w1 = start // 64, (stop + 63) // 64
        planes = np.ascontiguousarray(index.morgan[:, w0:w1])  # (2048, words)
        bits = np.unpackbits(planes.view(np.uint8), axis=1, bitorder="little")[:, : stop - start]  # (2048, m)
        rows = np.packbits(np.ascontiguousarray(bits.T), axis=1, bitorder="little")  # (m, 256)
        for j, row in enumerate(rows):
            fps[int(index.order[start + j])] = DataStructs.CreateFromFPSText(row.tobytes().hex())
    return fps


def bench_similarity(index: LibraryIndex, n_queries: int) -> int:
    n = index.size
    gen = morgan_generator()
    start = time.perf_counter()
    fps = _bitvects_from_index(index)
    rng = np.random.default_rng(7)
    for row in rng.choice(n, min(n, 20000), replace=False):
        if fps[row] != gen.GetFingerprint(Chem.MolFromSmiles(index.record(int(row))[1])):
            print(f"MISMATCH: index fingerprint of row {row} differs from RDKit's", file=sys.stderr)
            return 1
    print(f"baseline bit vectors: {time.perf_counter() - start:.0f} s (20,000 random ones checked equal to RDKit's GetFingerprint)")
    queries = [Chem.MolFromSmiles(index.record(int(i))[1]) for i in rng.choice(n, n_queries, replace=False)]
    ours_k, base_k, ours_t, base_t = [], [], [], []
    rows = np.arange(n)
    for q in queries:
        qfp = gen.GetFingerprint(q)
        t0 = time.perf_counter()
        sims = np.array(DataStructs.BulkTanimotoSimilarity(qfp, fps))
        t1 = time.perf_counter()
        top = np.lexsort((rows, -sims))[:100]
        t2 = time.perf_counter()
        hits = index.similar(q, top=100)
        t3 = time.perf_counter()
        hits7 = index.similar(q, threshold=0.7)
        t4 = time.perf_counter()
        if [(h.row, h.score) for h in hits] != [(int(r), float(sims[r])) for r in top]:
            print("MISMATCH top-100", file=sys.stderr)
            return 1
        exp7 = sorted(((float(sims[r]), int(r)) for r in np.flatnonzero(sims >= 0.7)), key=lambda x: (-x[0], x[1]))
        if [(h.score, h.row) for h in hits7] != exp7:
            print("MISMATCH threshold 0.7", file=sys.stderr)
            return 1
        base_k.append(t2 - t0)
        base_t.append(t1 - t0)
        ours_k.append(t3 - t2)
        ours_t.append(t4 - t3)
    bk, ok, bt, ot = (float(np.median(x)) for x in (base_k, ours_k, base_t, ours_t))
    print(f"similarity top-100 over {n} molecules: {bk / ok:.1f}x RDKit BulkTanimotoSimilarity+sort "
          f"({ok * 1e3:.1f} ms vs {bk * 1e3:.1f} ms, median of {len(queries)} queries, identical hits and scores; "
          f"ours min {min(ours_k) * 1e3:.1f} / max {max(ours_k) * 1e3:.1f} ms)")
    print(f"similarity threshold 0.7 over {n} molecules: {bt / ot:.1f}x RDKit BulkTanimotoSimilarity "
          f"({ot * 1e3:.1f} ms vs {bt * 1e3:.1f} ms, identical hits and scores)")
    print(f"comparisons per second per core (top-100, full library equivalent): {n / ok / 1e6:.1f} M/s "
          f"vs RDKit {n / bt / 1e6:.1f} M/s (chemfp published: 130 M/s at 1024 bits)")
    print(f"after similarity: {_load()}")
    return 0


def _cpu_seconds() -> float:
    """CPU time of this process and of the substructure worker processes (Linux /proc)."""
    total = sum(os.times()[:2])
    pool = search_index._pool
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in list(getattr(pool, "_processes", None) or {}):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def bench_substructure(index: LibraryIndex, rows: int, in_process: bool = False, repeat: int = 2,
                       only: list[str] | None = None, premade_loop: bool = True) -> int:
    n = index.size
    rows = min(rows, n)
    if rows < n:
        sub_folder = Path(tempfile.mkdtemp(prefix="bench-sub-"))
        lib = sub_folder / "subset.smi"
        lib.write_text("".join(f"{index.record(i)[1]} {i}\n" for i in range(rows)))
        sub_index = build_index([lib], sub_folder / "index")
    else:
        sub_index = index
    smiles = [sub_index.record(i)[1] for i in range(rows)]
    premade = [Chem.MolFromSmiles(s) for s in smiles] if premade_loop else None
    t0 = time.perf_counter()
    if in_process:  # for comparison: never hand candidates to worker processes
        search_index._PARALLEL_MIN_CANDIDATES = search_index._PARALLEL_MIN_CANDIDATES_COLD = 1 << 62
    warm = not in_process and search_index.warm_substructure_workers()
    print(f"substructure workers: {'started' if warm else 'none (in-process)'} in {(time.perf_counter() - t0) * 1e3:.0f} ms "
          f"(once per session); {_load()}")
    t0 = time.perf_counter()
    sub_index.prepare_substructure()
    print(f"index preparation (atom types: {sub_index.meta.get('atom_types')} standing atoms parsed): "
          f"{(time.perf_counter() - t0) * 1e3:.0f} ms (once per opened index)")
    for name, smarts in SMARTS.items():
        if only and not any(word in name for word in only):
            continue
        query = Chem.MolFromSmarts(smarts)
        base_wall, base_cpu, ours_wall, ours_cpu = [], [], [], []
        for _ in range(max(repeat, 1)):
            t0, c0 = time.perf_counter(), _cpu_seconds()
            expected = [i for i in range(rows) if Chem.MolFromSmiles(smiles[i]).HasSubstructMatch(query)]
            t1, c1 = time.perf_counter(), _cpu_seconds()
            got = [h.row for h in sub_index.substructure(query)]
            t2, c2 = time.perf_counter(), _cpu_seconds()
            if got != expected:
                print(f"MISMATCH substructure {name}", file=sys.stderr)
                return 1
            base_wall.append(t1 - t0)
            base_cpu.append(c1 - c0)
            ours_wall.append(t2 - t1)
            ours_cpu.append(c2 - c1)
        ours, base = min(ours_wall), min(base_wall)
        premade_note = ""
        if premade is not None:
            t2 = time.perf_counter()
            again = [i for i in range(rows) if premade[i].HasSubstructMatch(query)]
            t3 = time.perf_counter()
            if again != expected:
                print(f"MISMATCH substructure {name} (molecules parsed beforehand)", file=sys.stderr)
                return 1
            premade_note = (f"; {(t3 - t2) / ours:.2f}x a HasSubstructMatch loop over molecules parsed beforehand, "
                            f"{(t3 - t2) * 1e3:.0f} ms")
        print(f"substructure {name} over {rows} molecules: {base / ours:.1f}x plain MolFromSmiles+HasSubstructMatch loop "
              f"({ours * 1e3:.0f} ms vs {base * 1e3:.0f} ms, fastest of {len(ours_wall)}; ours at most "
              f"{max(ours_wall) * 1e3:.0f} ms; {len(got)} identical hits{premade_note})")
        print(f"  CPU time: {min(base_cpu) / max(min(ours_cpu), 0.01):.1f}x ({min(ours_cpu) * 1e3:.0f} ms vs "
              f"{min(base_cpu) * 1e3:.0f} ms, workers included); {_load()}")
    print(f"after substructure: {_load()}")
    return 0


def _library_smiles(paths: list[str], n: int) -> list[tuple[str, str]]:
    out = []
    for path in paths:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", newline="") as handle:
            for row in csv.DictReader(handle):
                out.append((row.get("id") or str(len(out) + 1), row["smiles"]))
                if len(out) >= n:
                    return out
    return out


def bench_describe(paths: list[str], n: int) -> None:
    from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdMolDescriptors
    from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

    from healthfm_desktop.core.chemistry.properties import ALERT_CATALOGS, describe_records
    from healthfm_desktop.core.chemistry.reading import read_molecules

    rows = _library_smiles(paths, n)
    folder = Path(tempfile.mkdtemp(prefix="bench-describe-"))
    table = folder / "library.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "smiles"])
        writer.writerows(rows)
    params = FilterCatalogParams()
    for catalog in ALERT_CATALOGS.values():
        params.AddCatalog(catalog)
    catalog = FilterCatalog(params)
    baseline_n = min(len(rows), 2000)
    print(f"describe: {_load()}")
    t0 = time.perf_counter()
    expected = []
    for _, s in rows[:baseline_n]:
        mol = Chem.MolFromSmiles(s)
        expected.append((Descriptors.MolWt(mol), Crippen.MolLogP(mol), rdMolDescriptors.CalcTPSA(mol),
                         Lipinski.NumHDonors(mol), Lipinski.NumHAcceptors(mol), rdMolDescriptors.CalcNumRotatableBonds(mol),
                         QED.qed(mol), sorted(e.GetDescription() for e in catalog.GetMatches(mol))))
    per_mol = (time.perf_counter() - t0) / baseline_n
    print(f"describe baseline done: {_load()}")
    # what `healthfm molecules describe FILE` does: read without parsing, parse and describe on 2 processes
    t1, cpu1 = time.perf_counter(), time.process_time()
    described = list(describe_records(read_molecules(table, parse=False), workers=2))
    ours, parent_cpu = time.perf_counter() - t1, time.process_time() - cpu1
    got = [(r["mw"], r["logp"], r["tpsa"], r["hbd"], r["hba"], r["rotb"], r["qed"],
            sorted(a.split(":", 1)[1] for a in r["alerts"])) for r in described[:baseline_n]]
    if got != expected:
        print("MISMATCH describe", file=sys.stderr)
    baseline = per_mol * len(described)
    print(f"describe {len(described)} molecules: {baseline / ours:.1f}x plain RDKit calls on one process "
          f"({ours:.1f} s vs {baseline:.1f} s extrapolated from {baseline_n}; "
          f"100k would take {ours / len(described) * 1e5:.0f} s; {_load()})")
    # the reading (parent) process shares the cores with the workers: its CPU is time they lose
    print(f"describe parent process CPU: {parent_cpu:.1f} s ({parent_cpu / len(described) * 1e6:.0f} us/molecule, "
          f"{parent_cpu / ours:.0%} of one core over the run)")


if __name__ == "__main__":
    raise SystemExit(main())
