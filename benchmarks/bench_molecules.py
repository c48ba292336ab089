"""Benchmark the molecule index, searches and describe against the strongest library baselines.

    python benchmarks/bench_molecules.py LIBRARY [LIBRARY...] [--rows N] [--queries Q] [--repeat R]
        [--skip build,size,similarity,substructure,describe] [--describe N]

LIBRARY: SMILES/CSV files (e.g. the MOSES parts of the shared data; never committed); the first
``--rows`` rows are used for every part. Each line reads ``<what>: <ratio>x <baseline> (<ours> vs
<baseline>, ...)``; a ratio above 1 means we are faster (or smaller). Timings alternate
ours/baseline (ABAB) and the medians are compared; results are checked against the baseline's
before a ratio is printed (exit 1 on a mismatch). The load average is printed at start and end.

Baselines, all run in this process (FPSim2 comes with the ``bench`` extra):
- build: RDKit ``MolFromSmiles`` + ``GetMorganGenerator(radius=2, fpSize=2048)`` fingerprints on
  2 processes (ProcessPoolExecutor over chunks), against ``build_index(workers=2)`` (what
  similarity needs; the substructure data, built by the first substructure search, are timed
  once after it);
- size: FPSim2's ``create_db_file`` .h5 of the same molecules (Morgan r=2, 2048 bits), against
  what our similarity search reads (bit planes, popcounts, order) and the whole index;
- similarity: FPSim2 in memory (``FPSim2Engine(in_memory_fps=True)``) ``top_k(k=100)`` and
  ``similarity(0.7)``, one worker;
- substructure: RDKit ``SubstructLibrary(CachedTrustedSmilesMolHolder, PatternHolder)``
  ``GetMatches(q, numThreads=-1, maxResults=N)`` (its build time is printed, not counted);
- describe: ``FilterCatalog.RunFilterCatalog(catalog, smiles, numThreads=0)`` for the alerts plus
  ``QED.qed``, ``Crippen.MolLogP`` and RDKit's MolWt/TPSA/HBD/HBA/rotatable bonds on 2 processes,
  against ``describe_records(workers=2)``."""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from healthfm_desktop.core.chemistry import search_index  # noqa: E402
from healthfm_desktop.core.chemistry.fingerprints import morgan_generator  # noqa: E402
from healthfm_desktop.core.chemistry.search_index import LibraryIndex, build_index, is_index  # noqa: E402

RDLogger.DisableLog("rdApp.*")

SMARTS = {
    "aromatic nitro": "c[N+](=O)[O-]",
    "sulfonamide": "S(=O)(=O)N",
    "indole": "c1ccc2[nH]ccc2c1",
    "carboxylic acid": "C(=O)[OH]",
    "piperazine": "N1CCNCC1",
    "benzene (unselective)": "c1ccccc1",
    "any nitrogen (unselective)": "[#7]",
    "amide (unselective)": "C(=O)N",
    "ring atom in 5-ring (unselective)": "[r5]",
    "N-alkyl amide (unselective, matched)": "C(=O)NC",
    "alkyl benzene (unselective, matched)": "c1ccccc1C",
    "ring CH2 next to ring N (matched)": "[CH2;R]@[#7;R]",
    # rare scaffolds: few candidates after the pattern screen
    "adamantane (rare scaffold)": "C1C2CC3CC1CC(C2)C3",
    "cubane-like cage (rare scaffold)": "C12C3C4C1C5C2C3C45",
    "steroid core (rare scaffold)": "C1CCC2C(C1)CCC1C2CCC2CCCC12",
    # nothing in MOSES has them: no candidate after the screen (the per-query floor)
    "phenylsilane (no candidates)": "c1ccccc1[Si]",
    "phosphonate (no candidates)": "P(=O)(O)O",
}


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _library_rows(paths: list[str], n: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for path in paths:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", newline="") as handle:
            for row in csv.DictReader(handle):
                out.append((row.get("id") or str(len(out) + 1), row["smiles"]))
                if len(out) >= n:
                    return out
    return out


def _abab(ours, baseline, repeat: int, clock=time.perf_counter) -> tuple[float, float, object, object]:
    """Medians of ``repeat`` alternating runs (ours first) on ``clock``, and the last results of each."""
    ours_t, base_t = [], []
    got = expected = None
    for _ in range(max(repeat, 1)):
        t0 = clock()
        got = ours()
        t1 = clock()
        expected = baseline()
        t2 = clock()
        ours_t.append(t1 - t0)
        base_t.append(t2 - t1)
    return statistics.median(ours_t), statistics.median(base_t), got, expected


# ---- build ---------------------------------------------------------------------------------------
def _morgan_chunk(smiles: list[str]) -> np.ndarray:
    gen = morgan_generator()
    out = np.zeros((len(smiles), 256), dtype=np.uint8)
    for i, text in enumerate(smiles):
        out[i] = np.packbits(gen.GetFingerprintAsNumPy(Chem.MolFromSmiles(text)).astype(np.uint8), bitorder="little")
    return out


def rdkit_fingerprints(smiles: list[str], workers: int = 2) -> np.ndarray:
    # chunks of 4,096 as build_index's: both processes busy on a small library too
    chunks = [smiles[k:k + 4096] for k in range(0, len(smiles), 4096)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return np.concatenate(list(pool.map(_morgan_chunk, chunks)))


def bench_build(library: Path, smiles: list[str], folder: Path, repeat: int) -> LibraryIndex:
    runs = iter(range(10**6))
    index_box = {}

    def ours():
        out = folder / f"index{next(runs)}"
        shutil.rmtree(out, ignore_errors=True)  # no files of an earlier run counted in the sizes
        index_box["index"] = build_index([library], out, workers=2)
        return index_box["index"]

    ours_s, base_s, index, packed = _abab(ours, lambda: rdkit_fingerprints(smiles), repeat)
    # the index's Morgan bits are RDKit's: compare a sample, unpacked from the planes
    sample = np.random.default_rng(3).choice(len(smiles), min(2000, len(smiles)), replace=False)
    positions = np.argsort(index.order)[sample]
    words, shift = positions // 64, (positions % 64).astype(np.uint64)
    bits = ((np.asarray(index.morgan)[:, words] >> shift) & np.uint64(1)).astype(np.uint8).T
    if not np.array_equal(np.packbits(bits, axis=1, bitorder="little"), packed[sample]):
        print("MISMATCH: index fingerprints differ from RDKit's", file=sys.stderr)
        raise SystemExit(1)
    print(f"index build {len(smiles)} molecules: {base_s / ours_s:.2f}x RDKit parse + Morgan fingerprint on "
          f"2 processes ({ours_s:.1f} s vs {base_s:.1f} s, median of {repeat}; goal >= 0.67x); {_load()}")
    if not index.has_substructure_data:  # left to the first substructure search: timed once here
        t0 = time.perf_counter()
        index.build_substructure(workers=2)
        sub_s = time.perf_counter() - t0
        print(f"substructure data (built by the first substructure search, once per library): {sub_s:.1f} s on "
              f"2 processes, {sub_s / base_s:.2f}x the RDKit parse + fingerprint time; {_load()}")
    return index


# ---- size ----------------------------------------------------------------------------------------
SIMILARITY_FILES = ("morgan_planes.npy", "popcount.npy", "order.npy")


def fpsim2_file(library_smi: Path, folder: Path) -> Path:
    from FPSim2.io import create_db_file

    h5 = folder / "fpsim2.h5"
    if not h5.exists():
        t0 = time.perf_counter()
        create_db_file(str(library_smi), str(h5), "smi", "Morgan", {"radius": 2, "fpSize": 2048})
        print(f"FPSim2 create_db_file: {time.perf_counter() - t0:.1f} s (one process)")
    return h5


def bench_size(index: LibraryIndex, h5: Path) -> None:
    sizes = {f.name: f.stat().st_size for f in index.folder.iterdir()}
    similarity = sum(sizes.get(name, 0) for name in SIMILARITY_FILES)
    substructure = sum(sizes.get(name, 0) for name in search_index._SUBSTRUCTURE_FILES + (search_index.PATTERN_FILE,))
    total = sum(sizes.values())
    theirs = h5.stat().st_size
    print(f"index size, what similarity reads: {similarity / theirs:.2f}x FPSim2 .h5 ({similarity / 1e6:.1f} MB vs "
          f"{theirs / 1e6:.1f} MB; goal <= 2x); index as built (records included) {(total - substructure) / theirs:.2f}x "
          f"({(total - substructure) / 1e6:.1f} MB); with the substructure data (built at the first substructure "
          f"search) {total / theirs:.2f}x ({total / 1e6:.1f} MB)")
    for name, size in sorted(sizes.items(), key=lambda item: -item[1])[:8]:
        print(f"  {name}: {size / 1e6:.1f} MB")


# ---- similarity ----------------------------------------------------------------------------------
def bench_similarity(index: LibraryIndex, h5: Path, smiles: list[str], n_queries: int, repeat: int) -> int:
    from FPSim2 import FPSim2Engine

    engine = FPSim2Engine(str(h5), in_memory_fps=True)
    rng = np.random.default_rng(7)
    queries = [smiles[i] for i in rng.choice(len(smiles), n_queries, replace=False)]
    results = {"top-100": ([], []), "threshold 0.7": ([], [])}
    for text in queries:
        mol = Chem.MolFromSmiles(text)
        for name, ours, theirs in (
                ("top-100", lambda: index.similar(mol, top=100), lambda: engine.top_k(text, k=100, threshold=0.0)),
                ("threshold 0.7", lambda: index.similar(mol, threshold=0.7), lambda: engine.similarity(text, 0.7))):
            ours_s, base_s, hits, expected = _abab(ours, theirs, repeat)
            # FPSim2's mol_id is the 1-based line of the .smi; its scores are float32
            got = {h.row + 1: h.score for h in hits}
            want = {int(i): float(s) for i, s in expected}
            cut = min(want.values()) if name == "top-100" and want else None
            same_ids = set(got) == set(want) if cut is None else \
                {i for i, s in got.items() if s > cut + 1e-6} == {i for i, s in want.items() if s > cut + 1e-6}
            if not same_ids or any(abs(got[i] - want[i]) > 1e-6 for i in set(got) & set(want)):
                print(f"MISMATCH similarity {name} for {text}", file=sys.stderr)
                return 1
            results[name][0].append(ours_s)
            results[name][1].append(base_s)
    for name, (ours_t, base_t) in results.items():
        ours_m, base_m = statistics.median(ours_t), statistics.median(base_t)
        print(f"similarity {name} over {index.size} molecules: {base_m / ours_m:.1f}x FPSim2 in memory "
              f"({ours_m * 1e3:.2f} ms vs {base_m * 1e3:.2f} ms, median of {len(queries)} queries x {repeat}, "
              f"same hits and scores)")
    return 0


# ---- substructure --------------------------------------------------------------------------------
def substruct_library(smiles: list[str]):
    from rdkit.Chem import rdSubstructLibrary

    holder = rdSubstructLibrary.CachedTrustedSmilesMolHolder()
    patterns = rdSubstructLibrary.PatternHolder()
    for text in smiles:
        mol = Chem.MolFromSmiles(text)
        holder.AddSmiles(Chem.MolToSmiles(mol))
        patterns.AddFingerprint(patterns.MakeFingerprint(mol))
    return rdSubstructLibrary.SubstructLibrary(holder, patterns)


def bench_substructure(index: LibraryIndex, smiles: list[str], repeat: int, only: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    library = substruct_library(smiles)
    print(f"SubstructLibrary build: {time.perf_counter() - t0:.1f} s (not counted); {_load()}")
    t0 = time.perf_counter()
    warm = search_index.warm_substructure_workers(2)  # as the app does when it opens an index
    print(f"substructure workers: {'started' if warm else 'none'} in {(time.perf_counter() - t0) * 1e3:.0f} ms "
          f"(once per session, not counted)")
    index.prepare_substructure()
    index.substructure(Chem.MolFromSmarts("C"))  # first search: loads what searches read
    worst = 0.0
    for name, smarts in SMARTS.items():
        if only and not any(word in name for word in only):
            continue
        query = Chem.MolFromSmarts(smarts)
        n = len(smiles)
        ours_s, base_s, hits, expected = _abab(
            lambda: index.substructure(query),
            lambda: library.GetMatches(query, numThreads=-1, maxResults=n), repeat)
        got, want = [h.row for h in hits], sorted(expected)
        if got != want:
            # SubstructLibrary matches trusted (unsanitised) molecules; ours is RDKit's HasSubstructMatch on
            # MolFromSmiles: arbitrate on the rows where they differ
            differ = sorted(set(got) ^ set(want))
            if any((r in got) != Chem.MolFromSmiles(smiles[r]).HasSubstructMatch(query) for r in differ):
                print(f"MISMATCH substructure {name}: ours differs from HasSubstructMatch", file=sys.stderr)
                return 1
            note = f"; SubstructLibrary differs from HasSubstructMatch on {len(differ)} rows, ours does not"
        else:
            note = ""
        worst = max(worst, ours_s / base_s)
        print(f"substructure {name}: {base_s / ours_s:.2f}x SubstructLibrary+PatternHolder numThreads=-1 "
              f"({ours_s * 1e3:.1f} ms vs {base_s * 1e3:.1f} ms, median of {repeat}; {len(got)} hits in "
              f"{n} molecules{note})")
    print(f"substructure slowest relative to SubstructLibrary: {1 / worst:.2f}x; {_load()}")
    search_index.shutdown_substructure_workers()
    return 0


# ---- describe ------------------------------------------------------------------------------------
_CATALOG = None


def _catalog():
    global _CATALOG
    if _CATALOG is None:
        from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

        from healthfm_desktop.core.chemistry.properties import ALERT_CATALOGS

        params = FilterCatalogParams()
        for catalog in ALERT_CATALOGS.values():
            params.AddCatalog(catalog)
        _CATALOG = FilterCatalog(params)
    return _CATALOG


def _rdkit_descriptors(smiles: list[str]) -> list[tuple]:
    from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdMolDescriptors

    out = []
    for text in smiles:
        mol = Chem.MolFromSmiles(text)
        out.append((Descriptors.MolWt(mol), Crippen.MolLogP(mol), rdMolDescriptors.CalcTPSA(mol),
                    Lipinski.NumHDonors(mol), Lipinski.NumHAcceptors(mol),
                    rdMolDescriptors.CalcNumRotatableBonds(mol), QED.qed(mol)))
    return out


def rdkit_describe(smiles: list[str], pool: ProcessPoolExecutor) -> list[tuple]:
    from rdkit.Chem.FilterCatalog import RunFilterCatalog

    chunks = [smiles[k:k + 500] for k in range(0, len(smiles), 500)]
    futures = [pool.submit(_rdkit_descriptors, chunk) for chunk in chunks]  # descriptors on 2 processes...
    alerts = RunFilterCatalog(_catalog(), smiles, numThreads=0)  # ...while the catalog runs on every core
    values = [row for future in futures for row in future.result()]
    return [v + (sorted(e.GetDescription() for e in a),) for v, a in zip(values, alerts)]


def _describe_rows(described: list[dict]) -> list[tuple]:
    """Our rows in the baseline's shape (alert labels without their catalog prefix, sorted)."""
    return [(r["mw"], r["logp"], r["tpsa"], r["hbd"], r["hba"], r["rotb"], r["qed"],
             sorted(a.split(":", 1)[1] for a in r["alerts"])) for r in described]


def bench_describe(rows: list[tuple[str, str]], folder: Path, repeat: int) -> int:
    from healthfm_desktop.core.chemistry.properties import describe_records
    from healthfm_desktop.core.chemistry.reading import read_molecules

    table = folder / "describe.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "smiles"])
        writer.writerows(rows)
    smiles = [s for _, s in rows]
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_rdkit_descriptors, [smiles[:10]] * 2))  # workers started outside the timing

        def ours():
            return list(describe_records(read_molecules(table, parse=False), workers=2))

        ours_s, base_s, described, expected = _abab(ours, lambda: rdkit_describe(smiles, pool), repeat)
    if _describe_rows(described) != expected:
        print("MISMATCH describe", file=sys.stderr)
        return 1
    print(f"describe {len(rows)} molecules: {base_s / ours_s:.2f}x RunFilterCatalog(numThreads=0) + QED.qed + "
          f"MolLogP + descriptors on 2 processes ({ours_s:.1f} s vs {base_s:.1f} s wall, median of {repeat}, identical "
          f"values and alerts; our worker start with its catalog build included); {_load()}")
    return bench_describe_cpu(smiles, repeat)


def bench_describe_cpu(smiles: list[str], repeat: int) -> int:
    """The same per molecule in this process, CPU time: what our own code (the screened alert
    catalog, QED's counts) buys once the workers run, against the library calls it replaces."""
    from healthfm_desktop.core.chemistry.properties import describe_mol

    warm, test = smiles[:300], smiles[300:1500]
    for text in warm:  # the catalog built, its rare conditions learnt (as in a worker after a few chunks)
        describe_mol(Chem.MolFromSmiles(text))
    catalog = _catalog()

    def ours():
        return [describe_mol(Chem.MolFromSmiles(text)) for text in test]

    def baseline():
        return [v + (sorted(e.GetDescription() for e in catalog.GetMatches(Chem.MolFromSmiles(t))),)
                for v, t in zip(_rdkit_descriptors(test), test)]

    o, b, described, expected = _abab(ours, baseline, repeat, clock=time.process_time)
    if _describe_rows(described) != expected:
        print("MISMATCH describe (in-process)", file=sys.stderr)
        return 1
    print(f"describe per molecule, one process: {b / o:.2f}x FilterCatalog.GetMatches + QED.qed + MolLogP + descriptors "
          f"({o / len(test) * 1e3:.2f} vs {b / len(test) * 1e3:.2f} ms CPU a molecule, median of {repeat} over {len(test)} "
          f"molecules, identical; keep our code only at >= 2x); {_load()}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("libraries", nargs="+")
    parser.add_argument("--rows", type=int, default=50000, help="library rows used (default 50,000)")
    parser.add_argument("--queries", type=int, default=10, help="similarity queries (random library molecules)")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per measure (medians compared)")
    parser.add_argument("--describe", type=int, default=5000, metavar="N", help="rows described (default 5,000)")
    parser.add_argument("--only", nargs="+", metavar="WORD",
                        help="substructure: only the queries whose name holds one of these words (e.g. rare candidates)")
    parser.add_argument("--work", type=Path, help="folder kept between runs (library, FPSim2 file; with --skip build, "
                                                  "the index is reused)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: build,size,similarity,substructure,describe")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    print(f"start: {_load()} on {os.cpu_count()} cores")
    rows = _library_rows(args.libraries, args.rows)
    smiles = [s for _, s in rows]
    folder = args.work or Path(tempfile.mkdtemp(prefix="bench-molecules-"))
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / "library.smi"  # FPSim2's .smi format: SMILES and a numeric id (the 1-based row)
    text = "".join(f"{s} {i}\n" for i, s in enumerate(smiles, start=1))
    if not library.exists() or library.read_text() != text:
        library.write_text(text)
        for stale in (folder / "fpsim2.h5", folder / "index" / "index.json"):
            stale.unlink(missing_ok=True)
    status = 0
    if "describe" not in skip:
        status |= bench_describe(rows[:args.describe], folder, args.repeat)
    if "build" in skip:
        index = LibraryIndex.open(folder / "index") if is_index(folder / "index") else \
            build_index([library], folder / "index", workers=2)
    else:
        index = bench_build(library, smiles, folder, 1 if args.repeat < 3 else 2)
    if not {"size", "similarity"} <= skip:
        h5 = fpsim2_file(library, folder)
        if "size" not in skip:
            bench_size(index, h5)
        if "similarity" not in skip:
            status |= bench_similarity(index, h5, smiles, args.queries, args.repeat)
    if "substructure" not in skip:
        status |= bench_substructure(index, smiles, args.repeat, args.only)
    print(f"end: {_load()}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
