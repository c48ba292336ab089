"""Benchmark the molecule search and describe against RDKit, in the same process.

    python benchmarks/bench_molecules.py LIBRARY [LIBRARY...] [--index DIR] [--limit N] [--queries Q]

LIBRARY: SMILES/CSV files (e.g. the MOSES parts; never committed). The index is built in DIR
(or reused when DIR already holds one). Prints `<what>: <ratio>x <baseline> (<ours> vs <baseline>)`.
Results are checked to be identical to RDKit's before a ratio is printed."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rdkit import Chem, DataStructs

from healthfm_desktop.core.chemistry.fingerprints import morgan_generator
from healthfm_desktop.core.chemistry.search_index import LibraryIndex, build_index, is_index

SMARTS = {
    "aromatic nitro": "c[N+](=O)[O-]",
    "sulfonamide": "S(=O)(=O)N",
    "indole": "c1ccc2[nH]ccc2c1",
    "carboxylic acid": "C(=O)[OH]",
    "piperazine": "N1CCNCC1",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("libraries", nargs="+")
    parser.add_argument("--index", type=Path)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--describe", type=int, default=0, metavar="N",
                        help="also time `describe` on N library molecules (2 processes) against plain RDKit calls")
    parser.add_argument("--substructure-rows", type=int, default=50000,
                        help="rows of the library for the substructure baseline loop (it parses every SMILES)")
    args = parser.parse_args(argv)
    folder = args.index or Path(tempfile.mkdtemp(prefix="bench-index-"))
    if is_index(folder):
        index = LibraryIndex.open(folder)
    else:
        start = time.perf_counter()
        index = build_index(args.libraries, folder)
        print(f"index build: {index.size} molecules in {time.perf_counter() - start:.0f} s on {os.cpu_count()} processes")
    n = index.size
    smiles = [index.record(row)[1] for row in range(n)]
    start = time.perf_counter()
    gen = morgan_generator()
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]
    print(f"RDKit fingerprints for the baseline: {time.perf_counter() - start:.0f} s")
    rng = np.random.default_rng(7)
    queries = [Chem.MolFromSmiles(smiles[i]) for i in rng.choice(n, args.queries, replace=False)]

    ours_k, base_k, ours_t, base_t = [], [], [], []
    for q in queries:
        qfp = gen.GetFingerprint(q)
        t0 = time.perf_counter()
        sims = np.array(DataStructs.BulkTanimotoSimilarity(qfp, fps))
        t1 = time.perf_counter()
        top = np.lexsort((np.arange(n), -sims))[:100]
        t2 = time.perf_counter()
        hits = index.similar(q, top=100)
        t3 = time.perf_counter()
        hits7 = index.similar(q, threshold=0.7)
        t4 = time.perf_counter()
        expected = [(int(index.order[0] * 0 + r), float(sims[r])) for r in top]
        got = [(h.row, h.score) for h in hits]
        if got != expected:
            print("MISMATCH top-100", file=sys.stderr)
            return 1
        exp7 = sorted(((float(sims[r]), r) for r in np.flatnonzero(sims >= 0.7)), key=lambda x: (-x[0], x[1]))
        if [(h.score, h.row) for h in hits7] != exp7:
            print("MISMATCH threshold 0.7", file=sys.stderr)
            return 1
        base_k.append(t2 - t0)
        base_t.append(t1 - t0)
        ours_k.append(t3 - t2)
        ours_t.append(t4 - t3)
    bk, ok, bt, ot = (float(np.median(x)) for x in (base_k, ours_k, base_t, ours_t))
    print(f"similarity top-100 over {n} molecules: {bk / ok:.1f}x RDKit BulkTanimotoSimilarity+sort "
          f"({ok * 1e3:.1f} ms vs {bk * 1e3:.1f} ms, median of {len(queries)} queries, identical hits and scores)")
    print(f"similarity threshold 0.7 over {n} molecules: {bt / ot:.1f}x RDKit BulkTanimotoSimilarity "
          f"({ot * 1e3:.1f} ms vs {bt * 1e3:.1f} ms, identical hits and scores)")
    print(f"comparisons per second per core (top-100, full library equivalent): {n / ok / 1e6:.1f} M/s "
          f"vs RDKit {n / bt / 1e6:.1f} M/s (chemfp published: 130 M/s at 1024 bits)")

    if args.describe:
        bench_describe(smiles[: args.describe])

    rows = min(args.substructure_rows, n)
    if rows < n:
        sub_folder = Path(tempfile.mkdtemp(prefix="bench-sub-"))
        lib = sub_folder / "subset.smi"
        lib.write_text("".join(f"{smiles[i]} {i}\n" for i in range(rows)))
        sub_index = build_index([lib], sub_folder / "index")
    else:
        sub_index = index
    for name, smarts in SMARTS.items():
        query = Chem.MolFromSmarts(smarts)
        t0 = time.perf_counter()
        expected = [i for i in range(rows) if Chem.MolFromSmiles(smiles[i]).HasSubstructMatch(query)]
        t1 = time.perf_counter()
        got = [h.row for h in sub_index.substructure(query)]
        t2 = time.perf_counter()
        if got != expected:
            print(f"MISMATCH substructure {name}", file=sys.stderr)
            return 1
        print(f"substructure {name} over {rows} molecules: {(t1 - t0) / (t2 - t1):.1f}x plain MolFromSmiles+HasSubstructMatch loop "
              f"({(t2 - t1) * 1e3:.0f} ms vs {(t1 - t0) * 1e3:.0f} ms, {len(got)} identical hits)")
    return 0


def bench_describe(smiles: list[str]) -> None:
    from rdkit.Chem import QED, Crippen, Descriptors, Lipinski, rdMolDescriptors
    from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

    from healthfm_desktop.core.chemistry.properties import ALERT_CATALOGS, describe_records
    from healthfm_desktop.core.chemistry.reading import MoleculeRecord

    params = FilterCatalogParams()
    for catalog in ALERT_CATALOGS.values():
        params.AddCatalog(catalog)
    catalog = FilterCatalog(params)
    baseline_n = min(len(smiles), 2000)
    t0 = time.perf_counter()
    for s in smiles[:baseline_n]:
        mol = Chem.MolFromSmiles(s)
        (Descriptors.MolWt(mol), Crippen.MolLogP(mol), rdMolDescriptors.CalcTPSA(mol), Lipinski.NumHDonors(mol),
         Lipinski.NumHAcceptors(mol), rdMolDescriptors.CalcNumRotatableBonds(mol), QED.qed(mol),
         [e.GetDescription() for e in catalog.GetMatches(mol)])
    per_mol = (time.perf_counter() - t0) / baseline_n
    records = [MoleculeRecord(i + 1, str(i + 1), s, Chem.MolFromSmiles(s)) for i, s in enumerate(smiles)]
    t1 = time.perf_counter()
    count = sum(1 for _ in describe_records(records, workers=2))
    ours = time.perf_counter() - t1
    baseline = per_mol * count
    print(f"describe {count} molecules: {baseline / ours:.1f}x plain RDKit calls on one process "
          f"({ours:.1f} s vs {baseline:.1f} s extrapolated from {baseline_n}; 100k would take {ours / count * 1e5:.0f} s)")


if __name__ == "__main__":
    raise SystemExit(main())
